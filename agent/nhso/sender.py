"""Delivers outbox claims to NHSO: retries with backoff, never the same claim twice.

A few workers take due claims from the outbox. Before a claim that may already be at NHSO
(``in_doubt``: a crash or a lost answer after the request left) is sent again, Check Authen
Status is asked whether NHSO already holds a closed claim (an ``EP`` code) for that person,
day, service and hospital that no other claim of ours accounts for; if so, that code is
recorded and nothing is sent. Claims of the same person, day and service are handled one
at a time so two of them can never take the same code.

Network errors, timeouts and 5xx are retried with exponential backoff; NHSO's 4xx answers
fail the claim with NHSO's message; "Invalid token." keeps claims queued until a token works.
A housekeeping loop flags claims still unsent near the end of their service day
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
from .client import NhsoClient, is_in_doubt, json_object
from .outbox import Claim, Outbox
from .settings import NhsoSettings

log = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, Any]], None]
PURGE_INTERVAL = 3600.0
IDLE_POLL = 5.0            # re-check the outbox at least this often when idle


def backoff(settings: NhsoSettings, attempts: int) -> float:
    base = min(settings.retry_max, settings.retry_base * 2.0 ** max(0, attempts - 1))
    return base * random.uniform(0.8, 1.2)


def match_history(claim: Claim, status: dict[str, Any], codes_in_use: set[str]) -> str | None:
    """The EP code in a Check Authen Status answer that is this claim, if any."""
    histories = status.get("serviceHistories")
    if not isinstance(histories, list):
        return None
    candidates: list[dict[str, Any]] = []
    for item in histories:
        if not isinstance(item, dict):
            continue
        code = item.get("claimCode")
        hospital = json_object(item.get("hospital"))
        service = json_object(item.get("service"))
        if (isinstance(code, str) and code.startswith("EP") and code not in codes_in_use
                and str(hospital.get("hcode", "")) == claim.hcode
                and str(service.get("code", "")) == claim.service_code):
            candidates.append(item)
    if not candidates:
        return None
    # Among several (two visits of one person on one day), prefer the one at our time.
    ours = claim.body.get("serviceDateTime")
    for item in candidates:
        if _same_time(item.get("serviceDateTime"), ours):
            return str(item["claimCode"])
    return str(candidates[0]["claimCode"])


def _same_time(theirs: Any, ours_ms: Any) -> bool:
    if not isinstance(ours_ms, int):
        return False
    if isinstance(theirs, (int, float)) and not isinstance(theirs, bool):
        return abs(int(theirs) - ours_ms) < 60_000
    if isinstance(theirs, str):
        try:
            parsed = dt.datetime.fromisoformat(theirs)
        except ValueError:
            return False
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.timezone(dt.timedelta(hours=7)))
        return abs(parsed.timestamp() * 1000 - ours_ms) < 60_000
    return False


class ClaimSender:
    def __init__(self, settings: NhsoSettings, outbox: Outbox, client: NhsoClient,
                 publish: Publish, *, on_token_invalid: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.outbox = outbox
        self.client = client
        self.publish = publish
        self.on_token_invalid = on_token_invalid
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._locks: dict[tuple[str, str, str], list[Any]] = {}
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
        key = (claim.pid, claim.service_date, claim.service_code)
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
                    code = await self._find_at_nhso(claim)
                except AgentError as exc:
                    await self._retry(claim, exc, in_doubt=True)
                    return
                log.debug("claim %s: in doubt, NHSO has %s", claim.id, code or "nothing")
                if code is not None:
                    done = await self.outbox.mark_sent(claim.id, code, None, recovered=True)
                    self.recovered += 1
                    log.info("claim %s was already at NHSO; recorded without resending",
                             claim.id)
                    self._published_sent(done)
                    return
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

    async def _find_at_nhso(self, claim: Claim) -> str | None:
        status = await self.client.check_authen_status(claim.pid, claim.service_date,
                                                       claim.service_code)
        used = await self.outbox.codes_in_use(claim.pid, claim.service_date)
        return match_history(claim, status, used)

    async def _retry(self, claim: Claim, exc: AgentError, *, in_doubt: bool) -> None:
        if isinstance(exc, (NhsoTokenInvalid, NhsoTokenMissing, KeyringUnavailable)):
            delay = self.settings.token_retry
            if isinstance(exc, NhsoTokenInvalid) and self.on_token_invalid:
                self.on_token_invalid()
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
                for claim in await self.outbox.flag_due(dt.datetime.now(dt.UTC),
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
