"""The outbox's durability and privacy promises (docs/nhso.md "Retention", "Settings"):

- the retention purge deletes only finished claims (``sent``, and ``failed``: NHSO refused
  them, so nothing is owed to it) and only once their last change is older than the
  retention; a claim that is queued, being sent, or in doubt (it may be at NHSO and is
  waiting to be looked up) is never deleted, however old;
- the database, its WAL and its shared-memory file are readable by their owner only;
- a purged claim's personal data is gone from the bytes of the database file and of its
  WAL (``secure_delete`` plus a truncating checkpoint), not merely unlinked from a table.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.nhso.outbox import Outbox
from agent.nhso.settings import NhsoSettings
from agent.nhso.validation import validate_claim
from testrig.nhso_support import HCODE, RECORDER_PID, SOURCE_ID, claim_body, patient_pid

DAY = 86_400
RETENTION = 30          # days; long enough that an off-by-a-second-per-day cutoff shows
SETTINGS = NhsoSettings(hcode=HCODE, source_id=SOURCE_ID, recorder_pid=RECORDER_PID)

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    box = Outbox(tmp_path / "data" / "nhso-outbox.sqlite3")
    await box.open()
    yield box
    await box.close()


async def submit(box: Outbox, n: int, **changes: Any) -> str:
    claim, created = await box.submit(validate_claim(claim_body(n, **changes), SETTINGS))
    assert created
    return claim.id


async def age(box: Outbox, claim_id: str, seconds: float) -> None:
    """Pretend the claim's last change was ``seconds`` ago (and its creation too)."""
    def run() -> None:
        box.db.execute("UPDATE claims SET updated_at = ?, created_at = ? WHERE id = ?",
                       (time.time() - seconds, time.time() - seconds, claim_id))
    await box._run(run)


async def one_of_each(box: Outbox) -> dict[str, str]:
    """A claim in every state the outbox has, keyed by a name for the assertions."""
    ids: dict[str, str] = {}
    # Taken by a sender first (take_due picks the oldest due claim): sending, and in
    # doubt once its request has left.
    ids["sending"] = await submit(box, 7)
    ids["sending_in_doubt"] = await submit(box, 8)
    for _ in range(2):
        assert await box.take_due() is not None
    await box.mark_attempt(ids["sending_in_doubt"])
    ids["queued"] = await submit(box, 1)
    # Failed once without an answer: queued again, in doubt (it may be at NHSO).
    ids["queued_in_doubt"] = await submit(box, 2)
    await box.mark_attempt(ids["queued_in_doubt"])
    await box.reschedule(ids["queued_in_doubt"], 0, in_doubt=True,
                         error_code="nhso_unavailable", error_message="timeout")
    # Retried after a 503 that NHSO did not process: queued with an error, not in doubt.
    ids["queued_retry"] = await submit(box, 3)
    await box.reschedule(ids["queued_retry"], 0, in_doubt=False,
                         error_code="nhso_unavailable", error_message="503")
    ids["sent"] = await submit(box, 4)
    await box.mark_sent(ids["sent"], "EP0000000004", "4")
    ids["recovered"] = await submit(box, 5)
    await box.mark_sent(ids["recovered"], "EP0000000005", None, recovered=True)
    ids["failed"] = await submit(box, 6)
    await box.mark_failed(ids["failed"], "nhso_rejected", "bad claim")
    return ids


async def states(box: Outbox) -> dict[str, tuple[str, bool]]:
    return {c.id: (c.status, c.in_doubt) for c in await box.list()}


async def test_one_of_each_really_covers_every_state(outbox: Outbox) -> None:
    ids = await one_of_each(outbox)
    seen = await states(outbox)
    assert {seen[ids[k]] for k in ids} == {("queued", False), ("queued", True),
                                           ("sending", False), ("sending", True),
                                           ("sent", False), ("failed", False)}


async def test_purge_deletes_only_finished_claims_past_the_retention(outbox: Outbox) -> None:
    ids = await one_of_each(outbox)
    for claim_id in ids.values():               # everything is a year old
        await age(outbox, claim_id, 365 * DAY)
    assert await outbox.purge(RETENTION) == 3
    left = await states(outbox)
    assert set(left) == {ids[k] for k in ("queued", "queued_in_doubt", "queued_retry",
                                          "sending", "sending_in_doubt")}
    assert await outbox.counts() == {"queued": 3, "sending": 2, "sent": 0, "failed": 0,
        "needs_review": 0}
    # Nothing more to purge: a second run deletes nothing and says so.
    assert await outbox.purge(RETENTION) == 0


async def test_purge_waits_for_the_retention_to_pass(outbox: Outbox) -> None:
    kept_sent, kept_failed = await submit(outbox, 10), await submit(outbox, 11)
    gone_sent, gone_failed = await submit(outbox, 12), await submit(outbox, 13)
    for claim_id in (kept_sent, gone_sent):
        await outbox.mark_sent(claim_id, f"EP{claim_id[:10]}", None)
    for claim_id in (kept_failed, gone_failed):
        await outbox.mark_failed(claim_id, "nhso_rejected", "no")
    # A few seconds either side of the cutoff: the test's clock runs on while purging.
    for claim_id in (kept_sent, kept_failed):
        await age(outbox, claim_id, RETENTION * DAY - 5)
    for claim_id in (gone_sent, gone_failed):
        await age(outbox, claim_id, RETENTION * DAY + 5)
    assert await outbox.purge(RETENTION) == 2
    assert set(await states(outbox)) == {kept_sent, kept_failed}
    # A day shorter retention: now they are past it too.
    assert await outbox.purge(RETENTION - 1) == 2
    assert await states(outbox) == {}


async def test_the_clock_is_the_last_change_not_the_creation(outbox: Outbox) -> None:
    """A claim created long ago but sent today (it waited for a token) is kept."""
    claim_id = await submit(outbox, 20)
    await age(outbox, claim_id, 365 * DAY)
    await outbox.mark_sent(claim_id, "EP0000000020", "20")      # updated_at = now
    assert await outbox.purge(RETENTION) == 0
    assert set(await states(outbox)) == {claim_id}


async def test_fresh_finished_claims_are_kept(outbox: Outbox) -> None:
    ids = await one_of_each(outbox)
    assert await outbox.purge(1) == 0
    assert set(await states(outbox)) == set(ids.values())


# -- files --------------------------------------------------------------------------------

def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@posix_only
async def test_database_wal_and_shm_are_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)           # the usual umask: new files would be world-readable
    try:
        box = Outbox(tmp_path / "new-dir" / "nhso-outbox.sqlite3")
        await box.open()
        await submit(box, 30)
        path = box.path
        wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
        assert wal.exists() and shm.exists()
        assert {p.name: mode(p) for p in (path, wal, shm)} == {
            path.name: 0o600, wal.name: 0o600, shm.name: 0o600}
        assert mode(path.parent) == 0o700
        await box.close()
    finally:
        os.umask(old)


async def test_connection_settings(outbox: Outbox) -> None:
    def pragmas() -> tuple[Any, ...]:
        db = outbox.db
        return tuple(db.execute(f"PRAGMA {p}").fetchone()[0]
                     for p in ("journal_mode", "synchronous", "secure_delete", "user_version"))
    # WAL, synchronous=FULL (2): the 202 is on disk; secure_delete: purged rows overwritten.
    assert await outbox._run(pragmas) == ("wal", 2, 1, 2)


# -- purged data is gone from the bytes on disk ----------------------------------------------

def raw(path: Path) -> bytes:
    data = path.read_bytes() if path.exists() else b""
    wal = Path(f"{path}-wal")
    return data + (wal.read_bytes() if wal.exists() else b"")


@pytest.mark.parametrize("checkpointed", [False, True],
                         ids=["rows-only-in-wal", "rows-in-main-file"])
async def test_purged_personal_data_is_gone_from_file_and_wal(outbox: Outbox,
                                                              checkpointed: bool) -> None:
    keep_pid, gone_pid = patient_pid(41), patient_pid(42)
    kept = await submit(outbox, 41)
    # Five visits of one patient: a second apart (two submitted within one millisecond
    # would be the same visit, which the outbox refuses).
    first = int(time.time() * 1000) - 60_000
    gone = [await submit(outbox, 42, transactionId=f"{HCODE}-GONE{n}",
                         visitNumber=f"GONEVISIT{n}", serviceDateTime=first - n * 1000)
            for n in range(5)]
    for claim_id in gone:
        await outbox.mark_sent(claim_id, f"EP{claim_id[:10]}", None)
    if checkpointed:
        await outbox._run(outbox.db.execute, "PRAGMA wal_checkpoint(TRUNCATE)")
    for claim_id in gone:
        await age(outbox, claim_id, (RETENTION + 1) * DAY)
    before = raw(outbox.path)
    # The probe works: before the purge both people's data is on disk.
    assert gone_pid.encode() in before and keep_pid.encode() in before
    assert b"GONEVISIT" in before

    assert await outbox.purge(RETENTION) == 5

    after = raw(outbox.path)
    assert gone_pid.encode() not in after
    assert b"GONEVISIT" not in after and f"{HCODE}-GONE".encode() not in after
    assert keep_pid.encode() in after            # the kept claim is still readable
    assert Path(f"{outbox.path}-wal").stat().st_size == 0
    # And from a fresh connection (what a copy of the file would show).
    await outbox.close()
    db = sqlite3.connect(outbox.path)
    try:
        assert [r[0] for r in db.execute("SELECT id FROM claims")] == [kept]
    finally:
        db.close()
    await outbox.open()


@posix_only
async def test_an_existing_database_open_to_others_is_closed_again(tmp_path: Path) -> None:
    """A restored or copied outbox (0644, as cp or a backup tool leaves it) is made
    owner-only when the agent opens it, with its WAL and shared-memory files."""
    path = tmp_path / "nhso-outbox.sqlite3"
    box = Outbox(path)
    await box.open()
    await submit(box, 50)
    await box.close()
    db = sqlite3.connect(path)             # leave a WAL behind, as a crash does
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS scratch (x)")
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    for p in (path, wal, shm):
        if p.exists():
            os.chmod(p, 0o644)
    box = Outbox(path)
    await box.open()
    db.close()
    try:
        assert wal.exists() and shm.exists()
        assert [mode(p) for p in (path, wal, shm)] == [0o600, 0o600, 0o600]
        assert len(await box.list()) == 1
    finally:
        await box.close()
