"""The durable claim outbox: SQLite (WAL, synchronous=FULL) in the user's data directory.

A claim is committed here before the caller hears ``202``; from then on only this file says
what happened to it, so a ``kill -9`` at any moment loses nothing. ``transactionId`` is the
idempotency key (UNIQUE). States:

    queued  -> sending -> sent          NHSO answered with an EP code
                       -> failed        NHSO refused it (4xx); a corrected resubmission requeues it
                       -> queued        no answer; retried later
                       -> needs_review  the answer was lost and Check Authen Status could not
                                        tell which record is this claim: nothing is sent until
                                        staff choose (send again, or take a listed code)

``in_doubt`` is set, and committed, before every send and cleared only when NHSO's answer
is recorded or Check Authen Status showed the claim never arrived: a claim found in doubt
after a crash or a lost answer is looked up at NHSO before it is ever sent again.

All SQLite work runs on one dedicated thread, which also makes each method atomic.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .. import osroom
from ..errors import (
    ClaimConflict,
    ClaimNotFound,
    ClaimNotInReview,
    ClaimSameVisit,
    OutboxUnavailable,
)
from .validation import BANGKOK, ValidationFailed, service_date

T = TypeVar("T")
STATUSES = ("queued", "sending", "sent", "failed", "needs_review")
UNSENT = ("queued", "sending", "failed", "needs_review")

SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    id              TEXT PRIMARY KEY,
    transaction_id  TEXT NOT NULL UNIQUE,
    body            TEXT NOT NULL,      -- the exact JSON sent to NHSO
    pid             TEXT NOT NULL,
    hcode           TEXT NOT NULL,
    service_code    TEXT NOT NULL,
    service_date    TEXT NOT NULL,      -- YYYY-MM-DD, Bangkok
    status          TEXT NOT NULL,
    in_doubt        INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    authen_code     TEXT,
    seq             TEXT,
    recovered       INTEGER NOT NULL DEFAULT 0,  -- the code came from Check Authen Status
    error_code      TEXT,
    error_message   TEXT,
    due_flagged     INTEGER NOT NULL DEFAULT 0,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    sent_at         REAL,
    service_at      INTEGER NOT NULL DEFAULT 0,  -- the body's serviceDateTime (epoch ms)
    status_checks   INTEGER NOT NULL DEFAULT 0,  -- Check Authen Status answers without it
    review          TEXT,               -- needs_review: {reason, candidates[]} (JSON)
    resolution      TEXT                -- staff's choice on a review (JSON), kept
);
CREATE INDEX IF NOT EXISTS claims_next ON claims (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS claims_day ON claims (service_date, status);
CREATE INDEX IF NOT EXISTS claims_pid ON claims (pid, service_date);
"""
SCHEMA_VERSION = 2
# Columns added by later schema versions, for files an older agent wrote.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: ("ALTER TABLE claims ADD COLUMN service_at INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE claims ADD COLUMN status_checks INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE claims ADD COLUMN review TEXT",
        "ALTER TABLE claims ADD COLUMN resolution TEXT",
        "UPDATE claims SET service_at = CAST(json_extract(body, '$.serviceDateTime') "
        "AS INTEGER)"),
}


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, BANGKOK).isoformat(timespec="seconds")


@contextlib.contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: ``BEGIN IMMEDIATE`` takes the write lock at once (a read
    then a write cannot be overtaken), COMMIT at the end, ROLLBACK on any error. A block
    that only read (an early return) commits nothing."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    if db.in_transaction:
        db.execute("COMMIT")


def canonical(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Claim:
    id: str
    transaction_id: str
    body: dict[str, Any]
    pid: str
    hcode: str
    service_code: str
    service_date: str
    status: str
    in_doubt: bool
    attempts: int
    next_attempt_at: float
    authen_code: str | None
    seq: str | None
    recovered: bool
    error_code: str | None
    error_message: str | None
    due_flagged: bool
    created_at: float
    updated_at: float
    sent_at: float | None
    service_at: int = 0
    status_checks: int = 0
    review: dict[str, Any] | None = None
    resolution: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Claim:
        values = dict(row)
        values["body"] = json.loads(values["body"])
        for flag in ("in_doubt", "recovered", "due_flagged"):
            values[flag] = bool(values[flag])
        for name in ("review", "resolution"):
            values[name] = json.loads(values[name]) if values[name] else None
        return cls(**values)

    def view(self) -> dict[str, Any]:
        """The API shape: the caller's own claim plus what happened to it."""
        return {
            "id": self.id, "transactionId": self.transaction_id, "status": self.status,
            "serviceDate": self.service_date, "attempts": self.attempts,
            "authenCode": self.authen_code, "seq": self.seq, "recovered": self.recovered,
            "error": ({"code": self.error_code, "message": self.error_message}
                      if self.error_code else None),
            "due": self.due_flagged, "createdAt": _iso(self.created_at),
            "updatedAt": _iso(self.updated_at), "sentAt": _iso(self.sent_at),
            "review": self.review, "resolution": self.resolution,
            "claim": self.body,
        }


# Outbox has a method named ``list``: inside the class that name is not the builtin.
ClaimList = list[Claim]


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self.open_error: str | None = None      # why ``open`` failed, told to every caller

    @property
    def is_open(self) -> bool:
        return self._executor is not None and self._db is not None

    # -- plumbing ---------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise OutboxUnavailable(self.open_error or "the outbox is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise OutboxUnavailable(f"{type(exc).__name__}: {exc}") from None

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nhso-outbox")
        try:
            await self._run(self._open)
        except OutboxUnavailable as exc:
            # Closed again, with the reason kept: every later call says why (e.g. a
            # read-only data folder) instead of failing on a missing database.
            self._executor.shutdown(wait=True)
            self._executor = None
            self.open_error = (f"{exc.detail or exc}; claims are refused until the agent "
                               f"restarts with a writable {self.path.parent}")
            raise
        self.open_error = None

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            osroom.current().restrict_folder_to_user(self.path.parent)   # also when it existed
        except OSError as exc:
            raise OutboxUnavailable(f"cannot create {self.path.parent}: {exc}") from None
        new = not self.path.exists()
        db = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        try:
            self._setup(db, new)
        except BaseException:
            db.close()                   # e.g. a read-only folder: no half-open handle
            raise
        self._db = db

    def _setup(self, db: sqlite3.Connection, new: bool) -> None:
        db.row_factory = sqlite3.Row
        # Personal data: readable by this user only, also when the file was copied or
        # restored with looser permissions (SQLite gives a new WAL the file's mode).
        for path in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            if path.exists():
                osroom.current().restrict_to_user(path)
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: the commit that precedes a 202 is on disk, not only in the OS cache.
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=10000")
        # Purged claims are overwritten, not left readable in free pages (PDPA).
        db.execute("PRAGMA secure_delete=ON")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise OutboxUnavailable(f"{self.path} was written by a newer agent "
                                    f"(schema {version})")
        db.executescript(SCHEMA)
        if 0 < version < SCHEMA_VERSION:
            with immediate(db):
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[step]:
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    async def close(self) -> None:
        if self._executor is None:
            return
        await self._run(self._close)
        self._executor.shutdown(wait=True)
        self._executor = None

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(db)`` on the outbox's thread: other tables of this file (``visits.py``)
        share its connection, its durability settings and its one-at-a-time order."""
        return await self._run(lambda: fn(self.db))

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None
        return self._db

    def _one(self, sql: str, *params: Any) -> Claim | None:
        row = self.db.execute(sql, params).fetchone()
        return Claim.from_row(row) if row else None

    def _write(self, sql: str, *params: Any) -> None:
        with immediate(self.db):
            self.db.execute(sql, params)

    # -- submitting ---------------------------------------------------------------------

    async def submit(self, body: dict[str, Any], *,
                     new_visit: bool = False) -> tuple[Claim, bool]:
        """Store a validated NHSO claim body; (claim, True) when new or requeued.

        One visit, one claim: the same patient, hospital, service and service time under
        another transactionId is refused (ClaimSameVisit) unless ``new_visit``."""
        return await self._run(self._submit, body, new_visit)

    def _submit(self, body: dict[str, Any], new_visit: bool) -> tuple[Claim, bool]:
        now = time.time()
        text = canonical(body)
        db = self.db
        with immediate(db):
            row = db.execute("SELECT * FROM claims WHERE transaction_id = ?",
                             (body["transactionId"],)).fetchone()
            existing = Claim.from_row(row) if row is not None else None
            if existing is not None:
                if canonical(existing.body) == text:
                    return existing, False
                if existing.status != "failed":
                    raise ClaimConflict(f"transactionId {existing.transaction_id} is "
                                        f"{existing.status} with a different body")
            if not new_visit:
                self._refuse_same_visit(body)
            fields = (body["pid"], body["hcode"], body["claimServiceCode"],
                      service_date(body["serviceDateTime"]), int(body["serviceDateTime"]))
            if existing is not None:
                # NHSO refused the earlier body, so it holds nothing under this id: the
                # corrected claim takes the old one's place.
                db.execute(
                    """UPDATE claims SET body=?, pid=?, hcode=?, service_code=?, service_date=?,
                       service_at=?, status='queued', in_doubt=0, attempts=0,
                       next_attempt_at=?, authen_code=NULL, seq=NULL, recovered=0,
                       error_code=NULL, error_message=NULL, due_flagged=0, status_checks=0,
                       review=NULL, resolution=NULL, updated_at=?, sent_at=NULL WHERE id=?""",
                    (text, *fields, now, now, existing.id))
                claim_id = existing.id
            else:
                claim_id = str(uuid.uuid4())
                db.execute(
                    """INSERT INTO claims (id, transaction_id, body, pid, hcode, service_code,
                       service_date, service_at, status, next_attempt_at, created_at,
                       updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)""",
                    (claim_id, body["transactionId"], text, *fields, now, now, now))
        claim = self._one("SELECT * FROM claims WHERE id = ?", claim_id)
        assert claim is not None
        return claim, True

    def _refuse_same_visit(self, body: dict[str, Any]) -> None:
        """A claim of ours for the same visit under another transactionId (a HIS that made
        a new id on a retry) would reach NHSO twice. A refused one does not count: NHSO
        holds nothing of it."""
        row = self.db.execute(
            "SELECT id, transaction_id, status FROM claims WHERE pid=? AND hcode=? AND "
            "service_code=? AND service_at=? AND transaction_id != ? AND status != 'failed' "
            "ORDER BY created_at LIMIT 1",
            (body["pid"], body["hcode"], body["claimServiceCode"],
             int(body["serviceDateTime"]), body["transactionId"])).fetchone()
        if row is not None:
            raise ClaimSameVisit(
                f"claim {row['id']} (transactionId {row['transaction_id']}, {row['status']}) "
                f"is the same visit; send newVisit=true if this is another visit",
                existing={"id": row["id"], "transactionId": row["transaction_id"],
                          "status": row["status"]})

    # -- reading -------------------------------------------------------------------------

    async def get(self, claim_id: str) -> Claim | None:
        return await self._run(self._one, "SELECT * FROM claims WHERE id = ?", claim_id)

    async def by_transaction(self, transaction_id: str) -> Claim | None:
        return await self._run(self._one, "SELECT * FROM claims WHERE transaction_id = ?",
                               transaction_id)

    async def list(self, *, day: str | None = None, statuses: tuple[str, ...] = (),
                   limit: int = 1000) -> ClaimList:
        return await self._run(self._list, day, statuses, limit)

    def _list(self, day: str | None, statuses: tuple[str, ...], limit: int) -> ClaimList:
        sql = "SELECT * FROM claims WHERE 1=1"
        params: list[Any] = []
        if day:
            sql += " AND service_date = ?"
            params.append(day)
        if statuses:
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            params.extend(statuses)
        sql += " ORDER BY created_at, id LIMIT ?"
        params.append(limit)
        return [Claim.from_row(r) for r in self.db.execute(sql, params)]

    async def counts(self) -> dict[str, int]:
        return await self._run(self._counts)

    def _counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for status, n in self.db.execute("SELECT status, COUNT(*) FROM claims GROUP BY status"):
            out[status] = n
        return out

    async def unsent_summary(self) -> tuple[float | None, int]:
        """When the oldest unsent claim was queued (epoch s) and how many are flagged due."""
        return await self._run(self._unsent_summary)

    def _unsent_summary(self) -> tuple[float | None, int]:
        oldest, due = self.db.execute(
            "SELECT MIN(created_at), SUM(due_flagged) FROM claims "
            "WHERE status IN ('queued', 'sending', 'needs_review')").fetchone()
        return oldest, int(due or 0)

    async def patient_day(self, pid: str, day: str) -> ClaimList:
        """Every claim of one patient on one service day (Check Authen Status lists them
        together: they are settled together)."""
        return await self._run(self._patient_day, pid, day)

    def _patient_day(self, pid: str, day: str) -> ClaimList:
        rows = self.db.execute("SELECT * FROM claims WHERE pid = ? AND service_date = ? "
                               "ORDER BY created_at, id", (pid, day))
        return [Claim.from_row(r) for r in rows]

    async def codes_in_use(self, pid: str, day: str) -> set[str]:
        """EP codes already matched to claims of this person and day."""
        return await self._run(self._codes_in_use, pid, day)

    def _codes_in_use(self, pid: str, day: str) -> set[str]:
        rows = self.db.execute("SELECT authen_code FROM claims WHERE pid = ? AND service_date = ?"
                               " AND authen_code IS NOT NULL", (pid, day))
        return {r[0] for r in rows}

    # -- the sender's transitions ---------------------------------------------------------

    async def recover_interrupted(self, in_doubt_delay: float) -> int:
        """After a crash: claims caught mid-send go back to the queue (in_doubt is kept).

        Those that may be at NHSO wait ``in_doubt_delay`` first, so a request NHSO was
        still working on when the agent died is recorded before we ask about it.
        """
        return await self._run(self._recover, in_doubt_delay)

    def _recover(self, in_doubt_delay: float) -> int:
        now = time.time()
        with immediate(self.db):
            n = self.db.execute("UPDATE claims SET status='queued', next_attempt_at=CASE "
                                "in_doubt WHEN 1 THEN ? ELSE ? END WHERE status='sending'",
                                (now + in_doubt_delay, now)).rowcount
        return n

    async def take_due(self) -> Claim | None:
        """The next queued claim whose time has come, now marked ``sending``."""
        return await self._run(self._take_due)

    def _take_due(self) -> Claim | None:
        now = time.time()
        # Claims that may be at NHSO first: they are settled before anything else is sent.
        row = self.db.execute("SELECT id FROM claims WHERE status='queued' AND next_attempt_at "
                              "<= ? ORDER BY in_doubt DESC, next_attempt_at LIMIT 1",
                              (now,)).fetchone()
        if row is None:
            return None
        self._write("UPDATE claims SET status='sending', updated_at=? WHERE id=?", now, row[0])
        return self._one("SELECT * FROM claims WHERE id = ?", row[0])

    async def next_attempt_at(self) -> float | None:
        return await self._run(self._next_attempt_at)

    def _next_attempt_at(self) -> float | None:
        row = self.db.execute("SELECT MIN(next_attempt_at) FROM claims "
                              "WHERE status='queued'").fetchone()
        when: float | None = row[0]
        return when

    async def mark_attempt(self, claim_id: str) -> None:
        """Committed before the request leaves: from here the claim may be at NHSO."""
        await self._run(self._write, "UPDATE claims SET in_doubt=1, attempts=attempts+1, "
                        "status_checks=0, updated_at=? WHERE id=?", time.time(), claim_id)

    async def mark_sent(self, claim_id: str, authen_code: str, seq: str | None, *,
                        recovered: bool = False) -> Claim:
        now = time.time()
        await self._run(self._write,
                        "UPDATE claims SET status='sent', in_doubt=0, authen_code=?, seq=?, "
                        "recovered=?, error_code=NULL, error_message=NULL, updated_at=?, "
                        "sent_at=? WHERE id=?", authen_code, seq, int(recovered), now, now,
                        claim_id)
        return await self._must_get(claim_id)

    async def mark_failed(self, claim_id: str, error_code: str, message: str) -> Claim:
        await self._run(self._write,
                        "UPDATE claims SET status='failed', in_doubt=0, error_code=?, "
                        "error_message=?, updated_at=? WHERE id=?", error_code, message,
                        time.time(), claim_id)
        return await self._must_get(claim_id)

    async def reschedule(self, claim_id: str, delay: float, *, in_doubt: bool,
                         error_code: str | None, error_message: str | None) -> Claim:
        now = time.time()
        await self._run(self._write,
                        "UPDATE claims SET status='queued', in_doubt=?, next_attempt_at=?, "
                        "error_code=?, error_message=?, updated_at=? WHERE id=?",
                        int(in_doubt), now + delay, error_code, error_message, now, claim_id)
        return await self._must_get(claim_id)

    async def note_absent(self, claim_id: str, delay: float) -> Claim:
        """Check Authen Status did not list this claim: counted, and asked again after
        ``delay`` before it is ever sent again (NHSO may record it late)."""
        now = time.time()
        await self._run(self._write,
                        "UPDATE claims SET status='queued', in_doubt=1, "
                        "status_checks=status_checks+1, next_attempt_at=?, updated_at=? "
                        "WHERE id=?", now + delay, now, claim_id)
        return await self._must_get(claim_id)

    async def mark_review(self, claim_id: str, review: dict[str, Any]) -> Claim:
        """Check Authen Status could not tell which record is this claim: held for staff.
        It stays in doubt (it may be at NHSO) and is never sent until staff choose."""
        await self._run(self._write,
                        "UPDATE claims SET status='needs_review', in_doubt=1, review=?, "
                        "error_code=NULL, error_message=NULL, updated_at=? WHERE id=?",
                        json.dumps(review, ensure_ascii=False), time.time(), claim_id)
        return await self._must_get(claim_id)

    async def resolve_review(self, claim_id: str, action: str, code: str | None,
                             by: str) -> Claim:
        """Staff's choice on a claim in review, recorded with it: ``take`` one of the
        listed codes (the claim is at NHSO under it) or ``resend`` (it is not)."""
        return await self._run(self._resolve_review, claim_id, action, code, by)

    def _resolve_review(self, claim_id: str, action: str, code: str | None,
                        by: str) -> Claim:
        now = time.time()
        db = self.db
        with immediate(db):
            claim = self._one("SELECT * FROM claims WHERE id = ?", claim_id)
            if claim is None:
                raise ClaimNotFound()
            if claim.status != "needs_review":
                raise ClaimNotInReview(f"claim {claim_id} is {claim.status}")
            listed = [c.get("claimCode") for c in (claim.review or {}).get("candidates", [])]
            if action == "take" and code not in listed:
                raise ValidationFailed([{"field": "claimCode",
                                         "message": "must be one of " + ", ".join(map(str, listed)),
                                         "message_th": "ต้องเป็นรหัสที่แสดงไว้"}])
            holder = db.execute("SELECT id FROM claims WHERE authen_code = ? AND pid = ? AND "
                                "service_date = ? AND id != ?",
                                (code, claim.pid, claim.service_date, claim_id)).fetchone()
            if action == "take" and holder is not None:
                # Another claim took that record since the review began: one code, one claim.
                raise ClaimConflict(f"{code} is already recorded for claim {holder[0]}")
            resolution = json.dumps({"action": action, "claimCode": code, "by": by,
                                     "at": _iso(now)}, ensure_ascii=False)
            if action == "take":
                db.execute("UPDATE claims SET status='sent', in_doubt=0, authen_code=?, "
                           "recovered=1, resolution=?, updated_at=?, sent_at=? WHERE id=?",
                           (code, resolution, now, now, claim_id))
            else:
                db.execute("UPDATE claims SET status='queued', in_doubt=0, status_checks=0, "
                           "next_attempt_at=?, resolution=?, updated_at=? WHERE id=?",
                           (now, resolution, now, claim_id))
        done = self._one("SELECT * FROM claims WHERE id = ?", claim_id)
        assert done is not None
        return done

    async def wake_all(self) -> None:
        """Make every queued claim due now (e.g. after a new token was set)."""
        await self._run(self._write, "UPDATE claims SET next_attempt_at=? WHERE status='queued'",
                        time.time())

    async def requeue_failed(self) -> ClaimList:
        """Queue refused claims again (staff asked to retry; NHSO holds none of them)."""
        return await self._run(self._requeue_failed)

    def _requeue_failed(self) -> ClaimList:
        rows = self.db.execute("SELECT * FROM claims WHERE status='failed' "
                               "ORDER BY created_at").fetchall()
        claims = [Claim.from_row(r) for r in rows]
        if claims:
            now = time.time()
            with immediate(self.db):
                self.db.executemany(
                    "UPDATE claims SET status='queued', next_attempt_at=?, error_code=NULL, "
                    "error_message=NULL, updated_at=? WHERE id=? AND status='failed'",
                    [(now, now, c.id) for c in claims])
        return claims

    async def _must_get(self, claim_id: str) -> Claim:
        claim = await self.get(claim_id)
        if claim is None:
            raise OutboxUnavailable(f"claim {claim_id} vanished")
        return claim

    # -- housekeeping ---------------------------------------------------------------------

    async def flag_due(self, now: dt.datetime, due_time: str) -> ClaimList:
        """Unsent claims whose service day is over or nearly over, flagged once each."""
        return await self._run(self._flag_due, now, due_time)

    def _flag_due(self, now: dt.datetime, due_time: str) -> ClaimList:
        local = now.astimezone(BANGKOK)
        today = local.date().isoformat()
        hh, mm = (int(x) for x in due_time.split(":"))
        late_today = (local.hour, local.minute) >= (hh, mm)
        cutoff_op = "<=" if late_today else "<"
        rows = self.db.execute(
            f"SELECT * FROM claims WHERE due_flagged=0 AND status IN ('queued','sending',"
            f"'failed','needs_review') AND service_date {cutoff_op} ? "
            f"ORDER BY service_date, created_at",
            (today,)).fetchall()
        claims = [Claim.from_row(r) for r in rows]
        if claims:
            with immediate(self.db):
                self.db.executemany("UPDATE claims SET due_flagged=1 WHERE id=?",
                                    [(c.id,) for c in claims])
        return claims

    async def purge(self, retention_days: int) -> int:
        """Forget sent and failed claims older than the retention period (PDPA)."""
        return await self._run(self._purge, retention_days)

    def _purge(self, retention_days: int) -> int:
        cutoff = time.time() - retention_days * 86400
        with immediate(self.db):
            n = self.db.execute("DELETE FROM claims WHERE status IN ('sent','failed') "
                                "AND updated_at < ?", (cutoff,)).rowcount
        if n:
            # Deleted rows must not linger in the WAL file either.
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return n
