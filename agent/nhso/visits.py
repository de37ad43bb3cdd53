"""Visits waiting for the patient's confirmation (the kiosk, ``client.js confirmVisit``).

The HIS registers a visit with the claim it will become (the same fields and checks as
``POST /v1/claims``) and a label staff and patients recognise. The patient confirms it with
their own card in a reader; only then does the claim enter the outbox, through
``ClaimDesk.submit`` like any other claim. States:

    waiting -> confirmed     the patient's card confirmed it; claim_id names the claim
            -> cancelled     the HIS or staff took it back
            -> expired       its Bangkok service day ended unconfirmed

Exactly once: the visit's claim keeps the visit's ``transactionId``, the outbox's
idempotency key. A confirm that dies between the claim's commit and the visit's is
finished by the next confirm (the outbox answers the same claim) or, at start-up, by
``reconcile`` (a waiting visit whose claim exists is confirmed). The rows live in a table
of the outbox's own SQLite file, written on its thread (``Outbox.run``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..errors import VisitClosed, VisitConflict, VisitNotFound
from .claims import ClaimDesk, Publish
from .outbox import Claim, Outbox, canonical, immediate
from .settings import NhsoSettings
from .validation import BANGKOK, ValidationFailed, require_object, service_date, validate_claim
from .visit_source import VisitSource

log = logging.getLogger(__name__)

VISIT_STATUSES = ("waiting", "confirmed", "cancelled", "expired")
LABEL_MAX = 80
SWEEP_SECONDS = 60.0
# Claim states after which the claim's fate is known (the rest are still on their way).
SETTLED = ("sent", "failed", "needs_review")

SCHEMA = """
CREATE TABLE IF NOT EXISTS visits (
    id              TEXT PRIMARY KEY,
    transaction_id  TEXT NOT NULL UNIQUE,   -- becomes the claim's transactionId
    pid             TEXT NOT NULL,
    service_date    TEXT NOT NULL,          -- YYYY-MM-DD, Bangkok: the day it must close
    label           TEXT NOT NULL,
    body            TEXT NOT NULL,          -- the validated claim body
    status          TEXT NOT NULL,
    claim_id        TEXT,
    due_flagged     INTEGER NOT NULL DEFAULT 0,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS visits_pid ON visits (pid, service_date, status);
CREATE INDEX IF NOT EXISTS visits_day ON visits (service_date, status);
"""


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, BANGKOK).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Visit:
    id: str
    transaction_id: str
    pid: str
    service_date: str
    label: str
    body: dict[str, Any]
    status: str
    claim_id: str | None
    due_flagged: bool
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Visit:
        values = dict(row)
        values["body"] = json.loads(values["body"])
        values["due_flagged"] = bool(values["due_flagged"])
        return cls(**values)

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "transactionId": self.transaction_id, "status": self.status,
                "label": self.label, "serviceDate": self.service_date,
                "claimId": self.claim_id, "due": self.due_flagged,
                "createdAt": _iso(self.created_at), "updatedAt": _iso(self.updated_at),
                "claim": self.body}

    def event(self) -> dict[str, Any]:
        """An event's payload: no citizen id (events reach every ``events`` subscriber)."""
        return {"id": self.id, "transactionId": self.transaction_id, "status": self.status,
                "label": self.label, "serviceDate": self.service_date,
                "claimId": self.claim_id}


def validate_visit(body: Any, settings: NhsoSettings) -> tuple[dict[str, Any], str]:
    """A visit's body: a claim body (``validate_claim``) plus an optional ``label``."""
    data = dict(require_object(body))
    label = data.pop("label", None)
    problems: list[dict[str, str]] = []
    if label is None:
        label = ""
    elif (not isinstance(label, str) or len(label) > LABEL_MAX
          or any(ch < " " for ch in label)):
        problems.append({"field": "label",
                         "message": f"must be text of at most {LABEL_MAX} characters",
                         "message_th": f"ต้องเป็นข้อความไม่เกิน {LABEL_MAX} ตัวอักษร"})
        label = ""
    try:
        claim = validate_claim(data, settings)
    except ValidationFailed as exc:
        raise ValidationFailed(problems + exc.errors) from None
    if problems:
        raise ValidationFailed(problems)
    return claim, label.strip()


def bangkok_today(now: dt.datetime) -> str:
    return now.astimezone(BANGKOK).date().isoformat()


class VisitDesk:
    def __init__(self, settings: NhsoSettings, outbox: Outbox, claims: ClaimDesk,
                 publish: Publish, *, source: VisitSource | None = None,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.settings = settings
        self.source = source
        self.outbox = outbox
        self.claims = claims
        self.publish = publish
        self.clock = clock
        self._ready = False
        self._confirming = asyncio.Lock()
        # Replaced (and the old one set) on every claim event: waiters take the current one
        # before they look at their claim, so no news between the two is missed.
        self._claim_news = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """The table (once), a confirm that a crash cut short finished, the day's sweep."""
        if not self.outbox.is_open:
            return                 # claims are refused with the reason; visits are too
        await self._table()
        for visit in await self.outbox.run(self._reconcile):
            self.publish("visit.confirmed", visit.event())
        self._task = asyncio.create_task(self._sweeper(), name="nhso-visits")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _table(self) -> None:
        if not self._ready:
            await self.outbox.run(lambda db: db.executescript(SCHEMA))
            self._ready = True

    def on_event(self, type_: str, payload: dict[str, Any]) -> None:
        """A listener of the room's events (in the loop): wakes ``settled`` waiters."""
        if type_.startswith("claim."):
            news, self._claim_news = self._claim_news, asyncio.Event()
            news.set()

    async def _sweeper(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("visit sweep failed; trying again in %ss", SWEEP_SECONDS)
            await asyncio.sleep(SWEEP_SECONDS)

    # -- registering, reading, cancelling ------------------------------------------------

    async def register(self, body: Any) -> tuple[Visit, bool]:
        """Store a visit; (visit, False) when the same visit was registered before."""
        claim, label = validate_visit(body, self.settings)
        await self._table()
        visit, created = await self.outbox.run(lambda db: self._insert(db, claim, label))
        if created:
            self.publish("visit.registered", visit.event())
        return visit, created

    def _insert(self, db: sqlite3.Connection, claim: dict[str, Any],
                label: str) -> tuple[Visit, bool]:
        now = time.time()
        with immediate(db):
            row = db.execute("SELECT * FROM visits WHERE transaction_id = ?",
                             (claim["transactionId"],)).fetchone()
            if row is not None:
                existing = Visit.from_row(row)
                if canonical(existing.body) == canonical(claim) and existing.label == label:
                    return existing, False
                raise VisitConflict(f"transactionId {existing.transaction_id} is a "
                                    f"{existing.status} visit with a different body")
            visit_id = str(uuid.uuid4())
            db.execute("""INSERT INTO visits (id, transaction_id, pid, service_date, label,
                          body, status, created_at, updated_at)
                          VALUES (?, ?, ?, ?, ?, ?, 'waiting', ?, ?)""",
                       (visit_id, claim["transactionId"], claim["pid"],
                        service_date(claim["serviceDateTime"]), label, canonical(claim),
                        now, now))
        return self._one(db, visit_id), True

    async def _from_source(self, pid: str, day: str) -> None:
        """Register what the HIS lists (VisitSourceUnavailable when it cannot be asked).

        An item that is not a valid visit of this patient and day, or that conflicts with a
        visit already here, is left out and counted in the log (never its content)."""
        assert self.source is not None
        skipped = 0
        for item in await self.source.fetch(pid, day):
            try:
                claim, label = validate_visit(item, self.settings)
                if claim["pid"] != pid or service_date(claim["serviceDateTime"]) != day:
                    skipped += 1
                    continue
                visit, created = await self.outbox.run(partial(self._insert, claim=claim,
                                                               label=label))
            except (ValidationFailed, VisitConflict):
                skipped += 1
                continue
            if created:
                self.publish("visit.registered", visit.event())
        if skipped:
            log.warning("visit source: %d listed visit(s) left out (not valid visits of the "
                        "patient and day asked for, or conflicting with one here)", skipped)

    @staticmethod
    def _one(db: sqlite3.Connection, visit_id: str) -> Visit:
        row = db.execute("SELECT * FROM visits WHERE id = ?", (visit_id,)).fetchone()
        if row is None:
            raise VisitNotFound()
        return Visit.from_row(row)

    async def get(self, visit_id: str) -> Visit:
        await self._table()
        await self.sweep()
        return await self.outbox.run(lambda db: self._one(db, visit_id))

    async def find(self, *, pid: str | None, day: str | None, statuses: tuple[str, ...],
                   limit: int) -> list[Visit]:
        """Visits here; for one patient, first those the visit source lists (if any)."""
        await self._table()
        await self.sweep()
        if pid and self.source is not None and self.source.configured:
            await self._from_source(pid, day or bangkok_today(self.clock()))
        sql = "SELECT * FROM visits WHERE 1=1"
        params: list[Any] = []
        if pid:
            sql += " AND pid = ?"
            params.append(pid)
        if day:
            sql += " AND service_date = ?"
            params.append(day)
        if statuses:
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            params.extend(statuses)
        sql += " ORDER BY created_at, id LIMIT ?"
        params.append(limit)
        return await self.outbox.run(
            lambda db: [Visit.from_row(r) for r in db.execute(sql, params)])

    async def cancel(self, visit_id: str) -> Visit:
        """Take back a waiting visit; a confirmed one stays confirmed (its claim is out)."""
        await self._table()
        visit, changed = await self.outbox.run(
            lambda db: self._move(db, visit_id, "cancelled"))
        if not changed and visit.status != "cancelled":
            raise VisitClosed(f"the visit is {visit.status}")
        return visit

    def _move(self, db: sqlite3.Connection, visit_id: str, status: str,
              claim_id: str | None = None) -> tuple[Visit, bool]:
        with immediate(db):
            n = db.execute("UPDATE visits SET status=?, claim_id=COALESCE(?, claim_id), "
                           "updated_at=? WHERE id=? AND status='waiting'",
                           (status, claim_id, time.time(), visit_id)).rowcount
        return self._one(db, visit_id), n == 1

    # -- confirming -----------------------------------------------------------------------

    async def confirm(self, visit_id: str) -> tuple[Visit, Claim]:
        """The visit's claim, queued in the outbox once; the caller checked the card.

        Confirming a confirmed visit answers its claim again (a second tap, a retry).
        """
        async with self._confirming:
            visit = await self.get(visit_id)
            if visit.status == "confirmed" and visit.claim_id:
                claim = await self.claims.get(visit.claim_id)
                if claim is not None:
                    return visit, claim
            elif visit.status != "waiting":
                raise VisitClosed(f"the visit is {visit.status}")
            claim, _ = await self.claims.submit(visit.body)
            visit, changed = await self.outbox.run(
                lambda db: self._move(db, visit_id, "confirmed", claim.id))
            if changed:
                self.publish("visit.confirmed", visit.event())
            return visit, claim

    async def settled(self, claim_id: str, timeout: float) -> Claim | None:
        """The claim once its fate is known (sent, refused...), or as it is at ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            news = self._claim_news
            claim = await self.claims.get(claim_id)
            left = deadline - loop.time()
            if claim is None or claim.status in SETTLED or left <= 0:
                return claim
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(news.wait(), left)

    # -- the day's end ------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Expire waiting visits of past Bangkok days; flag today's after the due time."""
        if not self._ready:
            return
        now = self.clock()
        expired, due = await self.outbox.run(lambda db: self._sweep(db, now))
        for visit in expired:
            self.publish("visit.expired", visit.event())
        for visit in due:
            self.publish("visit.due", visit.event())

    def _sweep(self, db: sqlite3.Connection,
               now: dt.datetime) -> tuple[list[Visit], list[Visit]]:
        local = now.astimezone(BANGKOK)
        today = local.date().isoformat()
        hh, mm = (int(x) for x in self.settings.due_time.split(":"))
        late = (local.hour, local.minute) >= (hh, mm)
        stale = [Visit.from_row(r) for r in db.execute(
            "SELECT * FROM visits WHERE status='waiting' AND service_date < ?", (today,))]
        due = [Visit.from_row(r) for r in db.execute(
            "SELECT * FROM visits WHERE status='waiting' AND due_flagged=0 "
            "AND service_date = ?", (today,))] if late else []
        if not stale and not due:
            return [], []
        stamp = time.time()
        with immediate(db):
            db.executemany("UPDATE visits SET status='expired', updated_at=? "
                           "WHERE id=? AND status='waiting'", [(stamp, v.id) for v in stale])
            db.executemany("UPDATE visits SET due_flagged=1 WHERE id=?",
                           [(v.id,) for v in due])
        return ([self._one(db, v.id) for v in stale], [self._one(db, v.id) for v in due])

    def _reconcile(self, db: sqlite3.Connection) -> list[Visit]:
        """Waiting visits whose claim is already in the outbox: confirmed (a crash cut
        the confirm between the two commits)."""
        rows = db.execute("SELECT v.id, c.id FROM visits v JOIN claims c "
                          "ON c.transaction_id = v.transaction_id "
                          "WHERE v.status='waiting'").fetchall()
        return [visit for visit_id, claim_id in rows
                for visit, changed in [self._move(db, visit_id, "confirmed", claim_id)]
                if changed]
