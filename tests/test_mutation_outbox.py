"""The claim outbox's public methods, each with its exact effect on the stored claims.

Added where mutation testing (scripts/mutation.sh) showed a change to the outbox that no
fast test noticed (the retention purge, file modes and bytes on disk are in
test_privacy_outbox.py).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.errors import ClaimConflict, ClaimSameVisit, OutboxUnavailable
from agent.nhso.outbox import SCHEMA_VERSION, Claim, Outbox, canonical, immediate
from agent.nhso.settings import NhsoSettings
from agent.nhso.validation import validate_claim
from testrig.nhso_support import HCODE, RECORDER_PID, SOURCE_ID, claim_body, patient_pid

SETTINGS = NhsoSettings(hcode=HCODE, source_id=SOURCE_ID, recorder_pid=RECORDER_PID)
BKK = dt.timezone(dt.timedelta(hours=7))


def body(n: int, **changes: Any) -> dict[str, Any]:
    return validate_claim(claim_body(n, **changes), SETTINGS)


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    box = Outbox(tmp_path / "outbox.sqlite3")
    await box.open()
    yield box
    await box.close()


async def sql(box: Outbox, statement: str, *params: Any) -> None:
    await box._run(box.db.execute, statement, params)


# -- submitting -------------------------------------------------------------------------------

async def test_submit_stores_the_claim_as_queued(outbox: Outbox) -> None:
    before = time.time()
    b = body(1)
    claim, created = await outbox.submit(b)
    assert created
    assert (claim.transaction_id, claim.body, claim.pid, claim.hcode, claim.service_code,
            claim.status, claim.in_doubt, claim.attempts, claim.authen_code, claim.seq,
            claim.recovered, claim.error_code, claim.error_message, claim.due_flagged,
            claim.sent_at) == (b["transactionId"], b, b["pid"], HCODE, "PG0060001", "queued",
                               False, 0, None, None, False, None, None, False, None)
    assert before <= claim.created_at == claim.updated_at == claim.next_attempt_at <= time.time()
    assert claim.service_date == dt.datetime.fromtimestamp(
        b["serviceDateTime"] / 1000, BKK).date().isoformat()
    assert await outbox.get(claim.id) == claim
    assert await outbox.by_transaction(b["transactionId"]) == claim
    assert await outbox.by_transaction("no-such-tx") is None
    assert await outbox.get("no-such-id") is None


async def test_the_same_body_again_is_the_same_claim(outbox: Outbox) -> None:
    b = body(2)
    first, _ = await outbox.submit(b)
    again, created = await outbox.submit(dict(reversed(list(b.items()))))  # key order
    assert not created and again == first
    assert await outbox.counts() == {"queued": 1, "sending": 0, "sent": 0, "failed": 0,
        "needs_review": 0}


@pytest.mark.parametrize("status", ["queued", "sending", "sent"])
async def test_a_different_body_under_the_same_id_conflicts(outbox: Outbox,
                                                            status: str) -> None:
    b = body(3)
    claim, _ = await outbox.submit(b)
    await sql(outbox, "UPDATE claims SET status = ? WHERE id = ?", status, claim.id)
    with pytest.raises(ClaimConflict) as caught:
        await outbox.submit({**b, "totalAmount": 999.0, "privilegeAmount": 999.0})
    assert caught.value.detail == (f"transactionId {b['transactionId']} is {status} "
                                   "with a different body")
    stored = await outbox.get(claim.id)
    assert stored is not None and stored.body == b and stored.status == status


async def test_a_corrected_claim_replaces_a_refused_one(outbox: Outbox) -> None:
    b = body(4)
    claim, _ = await outbox.submit(b)
    await outbox.mark_attempt(claim.id)
    await outbox.mark_failed(claim.id, "nhso_rejected", "wrong scheme")
    await sql(outbox, "UPDATE claims SET due_flagged = 1, recovered = 1, seq = 'x', "
              "authen_code = 'EPx', sent_at = 5, in_doubt = 1 WHERE id = ?", claim.id)
    later = int(time.time() * 1000) - 1000
    fixed = {**b, "mainInsclCode": "OFC", "pid": patient_pid(99),
             "claimServiceCode": "PG0130001", "serviceDateTime": later}
    before = time.time()
    again, created = await outbox.submit(fixed)
    assert created and again.id == claim.id
    assert (again.body, again.pid, again.service_code, again.status, again.in_doubt,
            again.attempts, again.authen_code, again.seq, again.recovered, again.error_code,
            again.error_message, again.due_flagged, again.sent_at) == (
        fixed, patient_pid(99), "PG0130001", "queued", False, 0, None, None, False, None,
        None, False, None)
    assert again.service_date == dt.datetime.fromtimestamp(later / 1000, BKK).date().isoformat()
    assert before <= again.next_attempt_at == again.updated_at <= time.time()
    assert again.created_at == claim.created_at
    assert await outbox.counts() == {"queued": 1, "sending": 0, "sent": 0, "failed": 0,
        "needs_review": 0}


def test_canonical_is_independent_of_key_order_and_keeps_thai() -> None:
    assert canonical({"b": 1, "a": "ไทย"}) == canonical({"a": "ไทย", "b": 1}) == \
        '{"a":"ไทย","b":1}'


# -- reading ----------------------------------------------------------------------------------

async def test_list_filters_orders_and_limits(outbox: Outbox) -> None:
    day1 = int(dt.datetime(2026, 3, 10, 9, tzinfo=BKK).timestamp() * 1000)
    day2 = int(dt.datetime(2026, 3, 11, 9, tzinfo=BKK).timestamp() * 1000)
    ids = []
    for n, when in enumerate([day1, day2, day1, day1]):
        claim, _ = await outbox.submit(validate_claim(
            claim_body(n, serviceDateTime=when, invoiceDateTime=when), SETTINGS,
            now_ms=day2 + 1000))
        ids.append(claim.id)
    # Created at the same instant: the id breaks the tie, so the order is stable.
    await sql(outbox, "UPDATE claims SET created_at = 100 WHERE id IN (?, ?)", ids[2], ids[3])
    await outbox.mark_failed(ids[0], "nhso_rejected", "no")
    by_id = sorted(ids[2:4])
    assert [c.id for c in await outbox.list()] == [*by_id, ids[0], ids[1]]
    assert [c.id for c in await outbox.list(day="2026-03-10")] == [*by_id, ids[0]]
    assert [c.id for c in await outbox.list(day="2026-03-11")] == [ids[1]]
    assert [c.id for c in await outbox.list(statuses=("failed",))] == [ids[0]]
    assert [c.id for c in await outbox.list(day="2026-03-10",
                                            statuses=("queued", "sending"))] == by_id
    assert [c.id for c in await outbox.list(limit=2)] == by_id
    assert await outbox.list(day="2026-03-12") == []


async def test_list_returns_at_most_1000_by_default(outbox: Outbox) -> None:
    b = body(5)

    def fill() -> None:
        outbox.db.execute("BEGIN")
        outbox.db.executemany(
            "INSERT INTO claims (id, transaction_id, body, pid, hcode, service_code, "
            "service_date, status, next_attempt_at, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, '2026-03-10', 'queued', 0, ?, 0)",
            [(f"id{i:05d}", f"tx{i}", canonical(b), b["pid"], HCODE, "PG0060001", i)
             for i in range(1001)])
        outbox.db.execute("COMMIT")
    await outbox._run(fill)
    listed = await outbox.list()
    assert len(listed) == 1000 and listed[-1].id == "id00999"


async def test_counts_cover_every_status(outbox: Outbox) -> None:
    assert await outbox.counts() == {"queued": 0, "sending": 0, "sent": 0, "failed": 0,
        "needs_review": 0}
    ids = [(await outbox.submit(body(n)))[0].id for n in range(10, 15)]
    await outbox.mark_sent(ids[0], "EP1", None)
    await outbox.mark_sent(ids[1], "EP2", None)
    await outbox.mark_failed(ids[2], "nhso_rejected", "x")
    assert await outbox.take_due() is not None
    assert await outbox.counts() == {"queued": 1, "sending": 1, "sent": 2, "failed": 1,
        "needs_review": 0}


async def test_codes_in_use_are_per_person_and_day(outbox: Outbox) -> None:
    a, _ = await outbox.submit(body(20))
    # Another visit of the same patient, a second earlier (not the same visit).
    b, _ = await outbox.submit(body(20, transactionId="T-20b", visitNumber="V2",
                                    serviceDateTime=a.body["serviceDateTime"] - 1000))
    c, _ = await outbox.submit(body(21))
    await outbox.mark_sent(a.id, "EP0000000020", None)
    await outbox.mark_sent(c.id, "EP0000000021", None)
    assert await outbox.codes_in_use(a.pid, a.service_date) == {"EP0000000020"}
    await outbox.mark_sent(b.id, "EP0000000022", None, recovered=True)
    assert await outbox.codes_in_use(a.pid, a.service_date) == {"EP0000000020",
                                                                  "EP0000000022"}
    assert await outbox.codes_in_use(a.pid, "2000-01-01") == set()
    assert await outbox.codes_in_use(patient_pid(22), a.service_date) == set()


# -- the sender's transitions ---------------------------------------------------------------------

async def test_take_due_takes_the_earliest_due_claim(outbox: Outbox) -> None:
    assert await outbox.take_due() is None and await outbox.next_attempt_at() is None
    a, _ = await outbox.submit(body(30))
    b, _ = await outbox.submit(body(31))
    c, _ = await outbox.submit(body(32))
    await outbox.reschedule(a.id, 60, in_doubt=False, error_code=None, error_message=None)
    await outbox.reschedule(b.id, -10, in_doubt=False, error_code=None, error_message=None)
    await outbox.reschedule(c.id, -5, in_doubt=False, error_code=None, error_message=None)
    before = time.time()
    taken = await outbox.take_due()
    assert taken is not None and taken.id == b.id and taken.status == "sending"
    assert before <= taken.updated_at <= time.time()
    assert (await outbox.take_due()).id == c.id
    assert await outbox.take_due() is None               # a waits a minute
    nxt = await outbox.next_attempt_at()
    assert nxt is not None and nxt == (await outbox.get(a.id)).next_attempt_at
    assert nxt > time.time() + 50


async def test_next_attempt_ignores_claims_that_are_not_queued(outbox: Outbox) -> None:
    a, _ = await outbox.submit(body(33))
    await outbox.mark_sent(a.id, "EP1", None)
    assert await outbox.next_attempt_at() is None


async def test_mark_attempt_and_mark_sent(outbox: Outbox) -> None:
    claim, _ = await outbox.submit(body(40))
    await outbox.reschedule(claim.id, 0, in_doubt=False, error_code="nhso_unavailable",
                            error_message="503")
    await outbox.mark_attempt(claim.id)
    await outbox.mark_attempt(claim.id)
    tried = await outbox.get(claim.id)
    assert tried is not None and (tried.in_doubt, tried.attempts) == (True, 2)
    before = time.time()
    sent = await outbox.mark_sent(claim.id, "EP0000000040", "12")
    assert (sent.status, sent.in_doubt, sent.authen_code, sent.seq, sent.recovered,
            sent.error_code, sent.error_message, sent.attempts) == (
        "sent", False, "EP0000000040", "12", False, None, None, 2)
    assert before <= sent.sent_at == sent.updated_at <= time.time()


async def test_mark_failed(outbox: Outbox) -> None:
    claim, _ = await outbox.submit(body(41))
    await outbox.mark_attempt(claim.id)
    before = time.time()
    failed = await outbox.mark_failed(claim.id, "nhso_rejected", "NHSO: bad pid")
    assert (failed.status, failed.in_doubt, failed.error_code, failed.error_message,
            failed.sent_at) == ("failed", False, "nhso_rejected", "NHSO: bad pid", None)
    assert before <= failed.updated_at <= time.time()


async def test_reschedule(outbox: Outbox) -> None:
    claim, _ = await outbox.submit(body(42))
    assert await outbox.take_due() is not None
    before = time.time()
    again = await outbox.reschedule(claim.id, 30, in_doubt=True, error_code="nhso_unavailable",
                                    error_message="timeout")
    assert (again.status, again.in_doubt, again.error_code, again.error_message) == (
        "queued", True, "nhso_unavailable", "timeout")
    assert before + 30 <= again.next_attempt_at <= time.time() + 30
    assert before <= again.updated_at <= time.time()


async def test_a_vanished_claim_is_an_outbox_error(outbox: Outbox) -> None:
    with pytest.raises(OutboxUnavailable) as caught:
        await outbox.mark_sent("gone", "EP1", None)
    assert caught.value.detail == "claim gone vanished"


async def test_wake_all_makes_only_queued_claims_due(outbox: Outbox) -> None:
    a, _ = await outbox.submit(body(50))
    b, _ = await outbox.submit(body(51))
    await outbox.reschedule(a.id, 3600, in_doubt=False, error_code=None, error_message=None)
    await outbox.mark_failed(b.id, "nhso_rejected", "x")
    await sql(outbox, "UPDATE claims SET next_attempt_at = 7 WHERE id = ?", b.id)
    before = time.time()
    await outbox.wake_all()
    woken = await outbox.get(a.id)
    assert woken is not None and before <= woken.next_attempt_at <= time.time()
    assert (await outbox.get(b.id)).next_attempt_at == 7


async def test_requeue_failed(outbox: Outbox) -> None:
    ids = [(await outbox.submit(body(n)))[0].id for n in range(60, 64)]
    await sql(outbox, "UPDATE claims SET created_at = 200 WHERE id = ?", ids[1])
    await sql(outbox, "UPDATE claims SET created_at = 100 WHERE id = ?", ids[2])
    for i in (1, 2):
        await outbox.mark_failed(ids[i], "nhso_rejected", "no")
    await outbox.mark_sent(ids[3], "EP3", None)
    await outbox.reschedule(ids[1], 0, in_doubt=False, error_code=None, error_message=None)
    await outbox.mark_failed(ids[1], "nhso_rejected", "no")
    await sql(outbox, "UPDATE claims SET next_attempt_at = 1e12 WHERE id IN (?, ?)",
              ids[1], ids[2])
    before = time.time()
    requeued = await outbox.requeue_failed()
    # Oldest first, as they were before the requeue (the returned views say "failed").
    assert [c.id for c in requeued] == [ids[2], ids[1]]
    assert all(c.status == "failed" for c in requeued)
    for i in (1, 2):
        c = await outbox.get(ids[i])
        assert c is not None
        assert (c.status, c.error_code, c.error_message) == ("queued", None, None)
        assert before <= c.next_attempt_at == c.updated_at <= time.time()
    assert (await outbox.get(ids[3])).status == "sent"
    assert await outbox.requeue_failed() == []


async def test_recover_interrupted(outbox: Outbox) -> None:
    plain, _ = await outbox.submit(body(70))
    doubtful, _ = await outbox.submit(body(71))
    waiting, _ = await outbox.submit(body(72))
    await outbox.reschedule(waiting.id, 999, in_doubt=True, error_code=None,
                            error_message=None)
    assert await outbox.take_due() is not None and await outbox.take_due() is not None
    await outbox.mark_attempt(doubtful.id)
    before = time.time()
    assert await outbox.recover_interrupted(40.0) == 2
    after = time.time()
    p = await outbox.get(plain.id)
    d, w = await outbox.get(doubtful.id), await outbox.get(waiting.id)
    assert p is not None and d is not None and w is not None
    assert (p.status, p.in_doubt) == ("queued", False) and before <= p.next_attempt_at <= after
    assert (d.status, d.in_doubt) == ("queued", True)
    assert before + 40 <= d.next_attempt_at <= after + 40
    assert w.next_attempt_at >= before + 990                  # not sending: untouched
    assert await outbox.recover_interrupted(40.0) == 0


# -- the due flag ---------------------------------------------------------------------------------

async def test_due_flags_unsent_claims_of_the_day_after_the_due_time(outbox: Outbox) -> None:
    ms = int(dt.datetime(2026, 3, 10, 9, 0, tzinfo=BKK).timestamp() * 1000)

    async def add(n: int) -> Claim:
        claim, _ = await outbox.submit(validate_claim(
            claim_body(n, serviceDateTime=ms, invoiceDateTime=ms), SETTINGS, now_ms=ms))
        return claim
    queued, sending, sent, failed = (await add(80), await add(81), await add(82),
                                     await add(83))
    await outbox.reschedule(queued.id, 999, in_doubt=False, error_code=None,
                            error_message=None)
    assert (await outbox.take_due()).id == sending.id
    await outbox.mark_sent(sent.id, "EP1", None)
    await outbox.mark_failed(failed.id, "nhso_rejected", "no")
    utc = dt.UTC
    # 19:59 Bangkok on the service day: not yet; 20:00: every unsent one, oldest first.
    assert await outbox.flag_due(dt.datetime(2026, 3, 10, 12, 59, tzinfo=utc), "20:00") == []
    flagged = await outbox.flag_due(dt.datetime(2026, 3, 10, 13, 0, tzinfo=utc), "20:00")
    assert [c.id for c in flagged] == [queued.id, sending.id, failed.id]
    for c in flagged:
        stored = await outbox.get(c.id)
        assert stored is not None and stored.due_flagged
    assert not (await outbox.get(sent.id)).due_flagged
    # Once only.
    assert await outbox.flag_due(dt.datetime(2026, 3, 11, 9, 0, tzinfo=BKK), "20:00") == []


async def test_due_on_a_later_day_at_any_hour(outbox: Outbox) -> None:
    ms = int(dt.datetime(2026, 3, 10, 9, 0, tzinfo=BKK).timestamp() * 1000)
    claim, _ = await outbox.submit(validate_claim(
        claim_body(90, serviceDateTime=ms, invoiceDateTime=ms), SETTINGS, now_ms=ms))
    assert await outbox.flag_due(dt.datetime(2026, 3, 10, 23, 58, tzinfo=BKK), "23:59") == []
    assert [c.id for c in await outbox.flag_due(dt.datetime(2026, 3, 11, 0, 0, tzinfo=BKK),
                                                "23:59")] == [claim.id]


async def test_due_time_minutes_count(outbox: Outbox) -> None:
    ms = int(dt.datetime(2026, 3, 10, 9, 0, tzinfo=BKK).timestamp() * 1000)
    claim, _ = await outbox.submit(validate_claim(
        claim_body(91, serviceDateTime=ms, invoiceDateTime=ms), SETTINGS, now_ms=ms))
    assert await outbox.flag_due(dt.datetime(2026, 3, 10, 18, 29, tzinfo=BKK), "18:30") == []
    assert [c.id for c in await outbox.flag_due(dt.datetime(2026, 3, 10, 18, 30, tzinfo=BKK),
                                                "18:30")] == [claim.id]


# -- the API view ---------------------------------------------------------------------------------

def test_view_is_the_documented_shape() -> None:
    ts = dt.datetime(2026, 3, 10, 9, 30, 15, 600_000, tzinfo=BKK).timestamp()
    claim = Claim(id="i", transaction_id="t", body={"x": 1}, pid="p", hcode="h",
                  service_code="s", service_date="2026-03-10", status="sent", in_doubt=False,
                  attempts=2, next_attempt_at=0.0, authen_code="EP1", seq="9", recovered=True,
                  error_code=None, error_message="ignored without a code", due_flagged=True,
                  created_at=ts, updated_at=ts + 60, sent_at=ts + 120)
    assert claim.view() == {
        "id": "i", "transactionId": "t", "status": "sent", "serviceDate": "2026-03-10",
        "attempts": 2, "authenCode": "EP1", "seq": "9", "recovered": True, "error": None,
        "due": True, "createdAt": "2026-03-10T09:30:15+07:00",
        "updatedAt": "2026-03-10T09:31:15+07:00", "sentAt": "2026-03-10T09:32:15+07:00",
        "review": None, "resolution": None, "claim": {"x": 1}}
    failed = Claim(**{**claim.__dict__, "error_code": "nhso_rejected", "sent_at": None})
    view = failed.view()
    assert view["error"] == {"code": "nhso_rejected", "message": "ignored without a code"}
    assert view["sentAt"] is None


# -- opening and closing --------------------------------------------------------------------------

async def test_a_closed_outbox_says_so(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    assert not box.is_open
    with pytest.raises(OutboxUnavailable) as caught:
        await box.counts()
    assert caught.value.detail == "the outbox is closed"
    await box.open()
    assert box.is_open and box.open_error is None
    await box.close()
    assert not box.is_open
    await box.close()                            # twice is harmless
    with pytest.raises(OutboxUnavailable):
        await box.get("x")


async def test_reopening_keeps_the_claims(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    await box.open()
    claim, _ = await box.submit(body(95))
    await box.close()
    box = Outbox(tmp_path / "o.sqlite3")
    await box.open()
    try:
        assert await box.get(claim.id) == claim
    finally:
        await box.close()


async def test_a_database_from_a_newer_agent_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    box = Outbox(path)
    with pytest.raises(OutboxUnavailable):
        await box.open()
    assert not box.is_open
    assert box.open_error == (f"{path} was written by a newer agent (schema "
                              f"{SCHEMA_VERSION + 1}); claims are refused until the agent "
                              f"restarts with a writable {tmp_path}")
    with pytest.raises(OutboxUnavailable) as caught:
        await box.counts()
    assert caught.value.detail == box.open_error


async def test_a_folder_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    box = Outbox(blocker / "sub" / "o.sqlite3")
    with pytest.raises(OutboxUnavailable) as caught:
        await box.open()
    assert caught.value.detail is not None
    assert caught.value.detail.startswith(f"cannot create {blocker / 'sub'}: ")
    assert box.open_error is not None and box.open_error.startswith(caught.value.detail)


async def test_sqlite_errors_become_outbox_errors(outbox: Outbox) -> None:
    with pytest.raises(OutboxUnavailable) as caught:
        await sql(outbox, "SELECT * FROM no_such_table")
    assert caught.value.detail == "OperationalError: no such table: no_such_table"


async def test_a_failed_submit_leaves_no_transaction_open(outbox: Outbox) -> None:
    broken = body(96)
    del broken["claimServiceCode"]           # fails inside the transaction
    with pytest.raises(KeyError):
        await outbox.submit(broken)
    claim, created = await outbox.submit(body(97))
    assert created and await outbox.get(claim.id) == claim


async def test_a_failed_update_is_rolled_back_and_the_outbox_goes_on(outbox: Outbox) -> None:
    claim, _ = await outbox.submit(body(98))
    await sql(outbox, "CREATE TRIGGER refuse BEFORE UPDATE ON claims WHEN NEW.attempts > 0 "
              "BEGIN SELECT RAISE(ABORT, 'refused by test'); END")
    with pytest.raises(OutboxUnavailable) as caught:
        await outbox.mark_attempt(claim.id)
    assert caught.value.detail == "IntegrityError: refused by test"
    await sql(outbox, "DROP TRIGGER refuse")
    assert (await outbox.get(claim.id)).attempts == 0
    await outbox.mark_attempt(claim.id)
    assert (await outbox.get(claim.id)).attempts == 1


async def test_open_creates_missing_parent_folders_and_close_cleans_up(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "a" / "b" / "c" / "o.sqlite3")
    assert box.open_error is None and not box.is_open
    await box.open()
    await box.submit(body(99))
    assert Path(f"{box.path}-wal").exists()
    await box.close()
    # The connection was closed: SQLite checkpointed and removed its WAL.
    assert not Path(f"{box.path}-wal").exists()
    assert box.path.exists()


async def test_a_review_is_recorded_and_a_taken_code_is_never_shared(outbox: Outbox) -> None:
    from agent.errors import ClaimConflict, ClaimNotFound, ClaimNotInReview
    from agent.nhso.validation import ValidationFailed
    first, _ = await outbox.submit(body(40))
    second, _ = await outbox.submit(body(40, transactionId="T-40b", visitNumber="VN40b",
                                         serviceDateTime=first.body["serviceDateTime"] - 600_000,
                                         invoiceDateTime=first.body["serviceDateTime"]))
    review = {"reason": "r", "reason_th": "ร", "candidates": [{"claimCode": "EP1"},
                                                               {"claimCode": "EP2"}]}
    with pytest.raises(ClaimNotInReview) as not_held:
        await outbox.resolve_review(first.id, "resend", None, "me")
    assert not_held.value.detail == f"claim {first.id} is queued"
    with pytest.raises(ClaimNotFound):
        await outbox.resolve_review("nope", "resend", None, "me")
    held = await outbox.mark_review(first.id, review)
    assert (held.status, held.in_doubt, held.review, held.error_code) == (
        "needs_review", True, review, None)
    assert await outbox.take_due() is not None          # the other claim, never this one
    with pytest.raises(ValidationFailed) as unlisted:
        await outbox.resolve_review(first.id, "take", "EP9", "me")
    assert unlisted.value.errors == [{"field": "claimCode", "message": "must be one of EP1, EP2",
                                      "message_th": "ต้องเป็นรหัสที่แสดงไว้"}]
    await outbox.mark_sent(second.id, "EP2", None)
    with pytest.raises(ClaimConflict) as taken:
        await outbox.resolve_review(first.id, "take", "EP2", "me")
    assert taken.value.detail == f"EP2 is already recorded for claim {second.id}"
    before = int(time.time())
    done = await outbox.resolve_review(first.id, "take", "EP1", "https://his")
    after = time.time()
    assert (done.status, done.authen_code, done.recovered, done.in_doubt) == (
        "sent", "EP1", True, False)
    assert done.resolution is not None
    at = dt.datetime.fromisoformat(done.resolution.pop("at"))
    assert done.resolution == {"action": "take", "claimCode": "EP1", "by": "https://his"}
    assert at.utcoffset() == dt.timedelta(hours=7) and before <= at.timestamp() <= after
    assert done.sent_at is not None and done.review == review


async def test_a_resend_choice_queues_the_claim_now(outbox: Outbox) -> None:
    claim, _ = await outbox.submit(body(41))
    await outbox.mark_attempt(claim.id)
    await outbox.note_absent(claim.id, 100.0)
    await outbox.mark_review(claim.id, {"reason": "r", "candidates": []})
    before = time.time()
    done = await outbox.resolve_review(claim.id, "resend", None, "a program")
    assert (done.status, done.in_doubt, done.status_checks) == ("queued", False, 0)
    assert before <= done.next_attempt_at <= time.time()
    assert done.resolution is not None and done.resolution["action"] == "resend"
    assert (await outbox.take_due()).id == claim.id


async def test_absent_at_nhso_is_counted_and_waits(outbox: Outbox) -> None:
    claim, _ = await outbox.submit(body(42))
    await outbox.mark_attempt(claim.id)
    before = time.time()
    after = await outbox.note_absent(claim.id, 30.0)
    assert (after.status, after.in_doubt, after.status_checks) == ("queued", True, 1)
    assert before + 30 <= after.next_attempt_at <= time.time() + 30
    assert (await outbox.note_absent(claim.id, 0.0)).status_checks == 2
    await outbox.mark_attempt(claim.id)
    assert (await outbox.get(claim.id)).status_checks == 0


async def test_in_doubt_claims_are_taken_first(outbox: Outbox) -> None:
    fresh, _ = await outbox.submit(body(43))
    doubtful, _ = await outbox.submit(body(44))
    await outbox.mark_attempt(doubtful.id)
    await outbox.reschedule(doubtful.id, 0.0, in_doubt=True, error_code=None,
                            error_message=None)
    assert (await outbox.take_due()).id == doubtful.id
    assert (await outbox.take_due()).id == fresh.id


async def test_the_same_visit_is_refused_unless_new(outbox: Outbox) -> None:
    from agent.errors import ClaimSameVisit
    first, _ = await outbox.submit(body(45))
    again = {**first.body, "transactionId": "T-45b"}
    with pytest.raises(ClaimSameVisit) as caught:
        await outbox.submit(again)
    assert caught.value.existing == {"id": first.id, "transactionId": first.transaction_id,
                                     "status": "queued"}
    assert caught.value.detail == (f"claim {first.id} (transactionId {first.transaction_id}, "
                                   "queued) is the same visit; send newVisit=true if this is "
                                   "another visit")
    assert caught.value.to_dict()["existing"]["id"] == first.id
    # Any of the four fields differing makes it another visit (raises nothing).
    for n, changed in enumerate(({"hcode": "10700"}, {"claimServiceCode": "PG0130001"},
                                 {"pid": body(46)["pid"]},
                                 {"serviceDateTime": first.body["serviceDateTime"] + 1})):
        _, created = await outbox.submit({**again, **changed, "transactionId": f"T-45-{n}"})
        assert created
    assert (await outbox.submit(again, new_visit=True))[1] is True


async def test_patient_day_lists_the_patients_claims_of_that_day(outbox: Outbox) -> None:
    a, _ = await outbox.submit(body(47))
    b, _ = await outbox.submit({**body(47), "transactionId": "T-47b", "visitNumber": "V2",
                                "serviceDateTime": a.body["serviceDateTime"] - 1000})
    await outbox.submit(body(48))
    assert [c.id for c in await outbox.patient_day(a.pid, a.service_date)] == [a.id, b.id]
    assert await outbox.patient_day(a.pid, "2000-01-01") == []


async def test_unsent_summary_is_the_oldest_waiting_claim_and_the_due_count(
        outbox: Outbox) -> None:
    """What /metrics shows of the queue: claims NHSO may still get (waiting, being sent,
    held for staff); refused and sent ones are not waiting for anything."""
    assert await outbox.unsent_summary() == (None, 0)
    ids = [(await outbox.submit(body(n)))[0].id for n in range(100, 106)]
    sent, failed, queued, sending, review, flagged = ids
    for n, claim_id in enumerate(ids):
        await sql(outbox, "UPDATE claims SET created_at = ? WHERE id = ?", 1000 + n, claim_id)
    await outbox.mark_sent(sent, "EP0000000100", None)
    await outbox.mark_failed(failed, "nhso_rejected", "no")
    await outbox.reschedule(queued, 60, in_doubt=False, error_code=None, error_message=None)
    await outbox.reschedule(flagged, 60, in_doubt=False, error_code=None, error_message=None)
    assert (await outbox.take_due()).id == sending
    await outbox.mark_review(review, {"reason": "r", "candidates": []})
    assert await outbox.unsent_summary() == (1002.0, 0)
    await sql(outbox, "UPDATE claims SET due_flagged = 1 WHERE id IN (?, ?, ?, ?)",
              sent, failed, review, flagged)
    assert await outbox.unsent_summary() == (1002.0, 2)
    await outbox.mark_sent(queued, "EP0000000102", None)
    assert (await outbox.unsent_summary())[0] == 1003.0


# The claims table as agents of schema 1 wrote it (before claims were settled by their own
# record): no service time, no count of status checks, no review.
SCHEMA_1 = """
CREATE TABLE claims (
    id TEXT PRIMARY KEY, transaction_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL,
    pid TEXT NOT NULL, hcode TEXT NOT NULL, service_code TEXT NOT NULL,
    service_date TEXT NOT NULL, status TEXT NOT NULL, in_doubt INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL, authen_code TEXT,
    seq TEXT, recovered INTEGER NOT NULL DEFAULT 0, error_code TEXT, error_message TEXT,
    due_flagged INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
    updated_at REAL NOT NULL, sent_at REAL);
PRAGMA user_version=1;
"""


async def test_a_file_of_schema_1_is_upgraded_and_keeps_its_claims(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    old = body(110)
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_1)
    db.execute("INSERT INTO claims (id, transaction_id, body, pid, hcode, service_code, "
               "service_date, status, in_doubt, attempts, next_attempt_at, created_at, "
               "updated_at) VALUES ('old-1', ?, ?, ?, ?, 'PG0060001', '2026-03-10', "
               "'queued', 1, 1, 5, 5, 5)",
               (old["transactionId"], canonical(old), old["pid"], HCODE))
    db.commit()
    db.close()
    for _ in range(2):                       # upgraded once; the second open changes nothing
        box = Outbox(path)
        await box.open()
        try:
            claim = await box.get("old-1")
            assert claim is not None and claim.body == old
            assert (claim.status, claim.in_doubt, claim.attempts, claim.service_at,
                    claim.status_checks, claim.review, claim.resolution) == (
                "queued", True, 1, old["serviceDateTime"], 0, None, None)
            # The upgraded claim is one visit like any other: the same visit under another
            # transactionId is refused.
            with pytest.raises(ClaimSameVisit):
                await box.submit({**old, "transactionId": "T-110b"})
            version = await box.run(lambda db: db.execute("PRAGMA user_version").fetchone()[0])
            assert version == SCHEMA_VERSION == 2
        finally:
            await box.close()


def test_immediate_commits_the_block_or_rolls_it_back(tmp_path: Path) -> None:
    """The one write frame of the outbox and the visits: all of a block or none of it, and
    the connection is usable again after a failure."""
    db = sqlite3.connect(tmp_path / "t.sqlite3", isolation_level=None)
    other = sqlite3.connect(tmp_path / "t.sqlite3", isolation_level=None, timeout=0)
    try:
        db.execute("CREATE TABLE t (x INTEGER)")
        with immediate(db):
            db.execute("INSERT INTO t VALUES (1)")
            # The write lock is taken at BEGIN: no other writer can slip in between.
            with pytest.raises(sqlite3.OperationalError):
                other.execute("BEGIN IMMEDIATE")
        assert not db.in_transaction
        assert other.execute("SELECT x FROM t").fetchall() == [(1,)]    # committed
        with pytest.raises(KeyError), immediate(db):
            db.execute("INSERT INTO t VALUES (2)")
            raise KeyError("a failure inside the block")
        assert not db.in_transaction
        assert other.execute("SELECT x FROM t").fetchall() == [(1,)]    # rolled back
        with immediate(db):                  # a block that only read commits nothing
            assert db.execute("SELECT COUNT(*) FROM t").fetchone() == (1,)
        assert not db.in_transaction
        with pytest.raises(sqlite3.OperationalError, match="no such table"), immediate(db):
            db.execute("INSERT INTO t VALUES (3)")
            db.execute("ROLLBACK")           # SQLite ended the transaction itself
            db.execute("INSERT INTO no_such_table VALUES (4)")
        assert not db.in_transaction
        with immediate(db):
            db.execute("INSERT INTO t VALUES (5)")
            db.execute("COMMIT")             # ended inside the block: nothing left to commit
        assert other.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (5,)]
    finally:
        db.close()
        other.close()


async def test_a_review_without_candidates_can_only_be_resent(outbox: Outbox) -> None:
    from agent.nhso.validation import ValidationFailed
    claim, _ = await outbox.submit(body(111))
    await outbox.mark_attempt(claim.id)
    await outbox.mark_review(claim.id, {"reason": "r"})
    with pytest.raises(ValidationFailed) as caught:
        await outbox.resolve_review(claim.id, "take", "EP1", "me")
    assert caught.value.errors[0]["message"] == "must be one of "
    done = await outbox.resolve_review(claim.id, "resend", None, "me")
    assert done.status == "queued" and done.resolution is not None
    assert done.resolution["action"] == "resend"


async def test_a_refused_claim_does_not_hold_its_visit(outbox: Outbox) -> None:
    """NHSO holds nothing of a refused claim: the HIS may send that visit again under a new
    transactionId without saying newVisit."""
    first, _ = await outbox.submit(body(112))
    await outbox.mark_attempt(first.id)
    await outbox.mark_failed(first.id, "nhso_rejected", "wrong scheme")
    again, created = await outbox.submit({**first.body, "transactionId": "T-112b"})
    assert created and again.id != first.id and again.status == "queued"
