"""Delivers outbox claims to NHSO: retries with backoff, never the same claim twice.

A few workers take due claims from the outbox, those that may already be at NHSO first.
Before a claim that may be at NHSO (``in_doubt``: a crash or a lost answer after the
request left) is sent again, Check Authen Status is asked and its records are judged by
``matching.settle`` together with every other claim of that patient and day:

* one record that is certainly this claim → its code is recorded, nothing is sent;
* no record → asked once more after ``inDoubtRecheck`` seconds (NHSO may record late),
  then sent again;
* records that cannot be told apart → ``needs_review``: nothing is sent until staff
  choose (``ClaimDesk.review``).

Claims of the same patient and day are handled one at a time so two of them can never
take the same code. Network errors, timeouts and 5xx are retried with exponential backoff;
NHSO's 4xx answers fail the claim with NHSO's message; "Invalid token." keeps claims queued
(retried soon at first, then every ``tokenRetry``) and at once when a new token is set. A
housekeeping loop flags claims still unsent near the end of their service day
(``claim.due``) and purges old ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..errors import (
    AgentError,
    KeyringUnavailable,
    NhsoRejected,
    NhsoTokenInvalid,
    NhsoTokenMissing,
)
from . import matching
from .client import NhsoClient, is_in_doubt
from .outbox import Claim, Outbox
from .settings import NhsoSettings

log = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, Any]], None]
PURGE_INTERVAL = 3600.0
IDLE_POLL = 5.0            # re-check the outbox at least this often when idle
# Check Authen Status answers without the claim before it is sent again (docs/nhso.md:
# the second check is ``inDoubtRecheck`` s after the first, for NHSO's late recording).
STATUS_CHECKS = 2


def backoff(settings: NhsoSettings, attempts: int) -> float:
    base = min(settings.retry_max, settings.retry_base * 2.0 ** max(0, attempts - 1))
    return base * random.uniform(0.8, 1.2)


class ClaimSender:
    def __init__(self, settings: NhsoSettings, outbox: Outbox, client: NhsoClient,
                 publish: Publish, *,
                 token_retry_delay: Callable[[], float] | None = None,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.settings = settings
        self.outbox = outbox
        self.client = client
        self.publish = publish
        # How long claims wait after "Invalid token." (TokenState.retry_delay).
        self.token_retry_delay = token_retry_delay or (lambda: settings.token_retry)
        # The wall clock the end-of-day flag reads (tests fix it: the flag depends on the hour).
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._locks: dict[tuple[str, str], list[Any]] = {}
        self.sent = 0
        self.recovered = 0

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        interrupted = await self.outbox.recover_interrupted(self.settings.in_doubt_delay)
        if interrupted:
            log.warning("%d claim(s) were being sent when the agent stopped; they will be "
                        "checked at NHSO before any resend", interrupted)
        for n in range(self.settings.sender_concurrency):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"nhso-sender-{n}"))
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="nhso-housekeeping"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        # A send cut short stays in doubt on disk; put it back in the queue for next time.
        with contextlib.suppress(AgentError):
            await self.outbox.recover_interrupted(self.settings.in_doubt_delay)

    def wake(self) -> None:
        self._wake.set()

    # -- delivery -----------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            self._wake.clear()
            try:
                claim = await self.outbox.take_due()
            except AgentError:
                log.exception("outbox unavailable; retrying")
                await asyncio.sleep(IDLE_POLL)
                continue
            if claim is None:
                await self._idle()
                continue
            try:
                await self._deliver(claim)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("claim %s: unexpected error; will retry", claim.id)
                with contextlib.suppress(AgentError):
                    await self.outbox.reschedule(claim.id, backoff(self.settings, claim.attempts),
                                                 in_doubt=True, error_code="internal_error",
                                                 error_message="unexpected error in the agent")

    async def _idle(self) -> None:
        timeout = IDLE_POLL
        with contextlib.suppress(AgentError):
            nxt = await self.outbox.next_attempt_at()
            if nxt is not None:
                timeout = min(IDLE_POLL, max(0.01, nxt - time.time()))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    @contextlib.asynccontextmanager
    async def _exclusive(self, claim: Claim) -> AsyncIterator[None]:
        # One patient-day at a time: Check Authen Status lists the whole day's records.
        key = (claim.pid, claim.service_date)
        entry = self._locks.setdefault(key, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[key]

    async def _deliver(self, claim: Claim) -> None:
        async with self._exclusive(claim):
            in_doubt = claim.in_doubt
            if in_doubt:
                try:
                    verdict = await self._settle(claim)
                except AgentError as exc:
                    await self._retry(claim, exc, in_doubt=True)
                    return
                if not verdict.absent:
                    await self._settled(claim, verdict)
                    return
                if claim.status_checks + 1 < STATUS_CHECKS:
                    # Not listed (yet): NHSO may record a request it was still working on
                    # when the answer was lost. Ask again before anything is sent.
                    log.info("claim %s: not at NHSO yet; asking again in %.0f s", claim.id,
                             self.settings.in_doubt_recheck)
                    await self.outbox.note_absent(claim.id, self.settings.in_doubt_recheck)
                    return
                log.info("claim %s: not at NHSO after %d checks; sending it again",
                         claim.id, STATUS_CHECKS)
                in_doubt = False
            await self.outbox.mark_attempt(claim.id)
            log.debug("claim %s: attempt %d", claim.id, claim.attempts + 1)
            try:
                answer = await self.client.send_claim(claim.body)
            except NhsoRejected as exc:
                failed = await self.outbox.mark_failed(claim.id, exc.code, exc.detail or "")
                log.info("claim %s refused by NHSO", claim.id)
                self.publish("claim.failed", {
                    "id": failed.id, "transactionId": failed.transaction_id, "status": "failed",
                    "error": {"code": exc.code, "message": exc.detail or ""},
                    "message": exc.detail or ""})
                return
            except AgentError as exc:
                await self._retry(claim, exc, in_doubt=in_doubt or is_in_doubt(exc))
                return
            done = await self.outbox.mark_sent(claim.id, answer.authen_code, answer.seq)
            self.sent += 1
            self._published_sent(done)

    def _published_sent(self, claim: Claim) -> None:
        self.publish("claim.sent", {"id": claim.id, "transactionId": claim.transaction_id,
                                    "status": "sent", "authenCode": claim.authen_code,
                                    "seq": claim.seq, "recovered": claim.recovered})

    async def _settle(self, claim: Claim) -> matching.Verdict:
        """This claim's verdict, judged with every claim of ours of that patient and day
        that may be at NHSO (matching.settle)."""
        status = await self.client.check_authen_status(claim.pid, claim.service_date,
                                                       claim.service_code)
        found = matching.records(status)
        day = await self.outbox.patient_day(claim.pid, claim.service_date)
        used = {c.authen_code for c in day if c.authen_code and c.id != claim.id}
        group = [matching.Visit.of(c.id, c.body) for c in day
                 if c.id == claim.id
                 or (c.in_doubt and c.status in ("queued", "sending", "needs_review"))]
        return matching.settle(claim.id, group, found, used)

    async def _settled(self, claim: Claim, verdict: matching.Verdict) -> None:
        if verdict.code is not None:
            done = await self.outbox.mark_sent(claim.id, verdict.code, None, recovered=True)
            self.recovered += 1
            log.info("claim %s was already at NHSO; recorded without resending", claim.id)
            self._published_sent(done)
            return
        review = {"reason": verdict.reason, "reason_th": matching.REASONS_TH[verdict.reason],
                  "candidates": [r.view() for r in verdict.candidates]}
        held = await self.outbox.mark_review(claim.id, review)
        log.warning("claim %s needs review: %s (%d record(s)); nothing is sent until staff "
                    "choose", claim.id, verdict.reason, len(verdict.candidates))
        self.publish("claim.needs_review", {
            "id": held.id, "transactionId": held.transaction_id, "status": held.status,
            "reason": verdict.reason, "candidates": review["candidates"]})

    async def _retry(self, claim: Claim, exc: AgentError, *, in_doubt: bool) -> None:
        if isinstance(exc, NhsoTokenInvalid):
            delay = self.token_retry_delay()
        elif isinstance(exc, (NhsoTokenMissing, KeyringUnavailable)):
            delay = self.settings.token_retry
        else:
            delay = backoff(self.settings, claim.attempts + 1)
            if in_doubt:
                delay = max(delay, self.settings.in_doubt_delay)
        log.info("claim %s not delivered (%s); retry in %.1f s", claim.id, exc.code, delay)
        await self.outbox.reschedule(claim.id, delay, in_doubt=in_doubt, error_code=exc.code,
                                     error_message=exc.detail or exc.info.message_en)

    # -- housekeeping -------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        last_purge = 0.0
        while True:
            try:
                for claim in await self.outbox.flag_due(self.clock(),
                                                        self.settings.due_time):
                    log.warning("claim %s of %s is still %s near the end of its service day",
                                claim.id, claim.service_date, claim.status)
                    self.publish("claim.due", {
                        "id": claim.id, "transactionId": claim.transaction_id,
                        "status": claim.status, "serviceDate": claim.service_date,
                        "error": ({"code": claim.error_code, "message": claim.error_message}
                                  if claim.error_code else None)})
                if time.monotonic() - last_purge >= PURGE_INTERVAL or not last_purge:
                    purged = await self.outbox.purge(self.settings.retention_days)
                    last_purge = time.monotonic()
                    if purged:
                        log.info("purged %d claim(s) older than %d days", purged,
                                 self.settings.retention_days)
            except AgentError:
                log.exception("outbox housekeeping failed; will retry")
            await asyncio.sleep(self.settings.due_check_interval)
