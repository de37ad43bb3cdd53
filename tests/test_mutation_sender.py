"""The claim sender's decisions, one at a time, against a real outbox and a scripted NHSO
client: what is recorded, which event is published with which payload, how long a claim
waits before its next try, and when a claim in doubt is looked up instead of resent.

Added where mutation testing (scripts/mutation.sh) showed the sender could be changed
without test_nhso_service.py (which runs it end to end) noticing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent.errors import (
    KeyringUnavailable,
    NhsoRejected,
    NhsoTokenInvalid,
    NhsoTokenMissing,
    NhsoUnavailable,
)
from agent.errors import OutboxUnavailable as OutboxUnavailableError
from agent.nhso import matching
from agent.nhso import sender as sender_mod
from agent.nhso.client import ClaimAnswer, unavailable
from agent.nhso.outbox import Claim, Outbox
from agent.nhso.sender import ClaimSender, backoff
from agent.nhso.settings import NhsoSettings
from agent.nhso.validation import validate_claim
from testrig.nhso_support import HCODE, RECORDER_PID, SOURCE_ID, claim_body

SETTINGS = NhsoSettings(hcode=HCODE, source_id=SOURCE_ID, recorder_pid=RECORDER_PID,
                        retry_base=2.0, retry_max=300.0, in_doubt_delay=20.0,
                        token_retry=300.0, sender_concurrency=1, due_check_interval=0.05)
BKK = dt.timezone(dt.timedelta(hours=7))


# -- backoff ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("attempts", "base"), [(0, 2), (1, 2), (2, 4), (3, 8), (8, 256),
                                                (9, 300), (50, 300)])
def test_backoff_doubles_from_base_to_max_with_jitter(monkeypatch: pytest.MonkeyPatch,
                                                      attempts: int, base: float) -> None:
    monkeypatch.setattr(sender_mod.random, "uniform", lambda low, high: low)
    assert backoff(SETTINGS, attempts) == pytest.approx(base * 0.8)
    monkeypatch.setattr(sender_mod.random, "uniform", lambda low, high: high)
    assert backoff(SETTINGS, attempts) == pytest.approx(base * 1.2)


def test_backoff_jitter_stays_within_twenty_percent() -> None:
    values = {backoff(SETTINGS, 3) for _ in range(200)}
    assert all(8 * 0.8 <= v <= 8 * 1.2 for v in values) and len(values) > 100


# -- Check Authen Status records (the matching rule itself: test_mutation_matching.py) --------

def history(code: Any = "EP0000000001", hcode: Any = HCODE, service: Any = "PG0060001",
            when: Any = "2026-03-10T09:00:00") -> dict[str, Any]:
    return {"claimCode": code, "hospital": {"hcode": hcode}, "service": {"code": service},
            "serviceDateTime": when}


def record_of(claim: Claim, code: str) -> dict[str, Any]:
    """NHSO's record of ``claim`` as Check Authen Status lists it (to the second)."""
    return history(code, when=claim.body["serviceDateTime"] // 1000 * 1000)


# -- delivering one claim ------------------------------------------------------------------------

class ScriptedClient:
    """NHSO as a script: each call takes the next answer (a value or an exception)."""

    def __init__(self, sends: list[Any] | None = None,
                 statuses: list[Any] | None = None) -> None:
        self.sends = list(sends or [])
        self.statuses = list(statuses or [])
        self.sent: list[dict[str, Any]] = []
        self.asked: list[tuple[str, str, str | None]] = []

    async def send_claim(self, body: dict[str, Any]) -> ClaimAnswer:
        self.sent.append(body)
        answer = self.sends.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def check_authen_status(self, pid: str, day: str,
                                  service_code: str | None = None) -> dict[str, Any]:
        self.asked.append((pid, day, service_code))
        answer = self.statuses.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def bangkok_noon() -> dt.datetime:
    """Noon of today's Bangkok day: claims made now are not yet due (after dueTime, 20:00
    Bangkok, every unsent claim of the day is flagged, and the tests' events would depend on
    the hour they run at)."""
    return dt.datetime.now(BKK).replace(hour=12, minute=0, second=0, microsecond=0)


class Rig:
    def __init__(self, outbox: Outbox, client: ScriptedClient,
                 settings: NhsoSettings = SETTINGS) -> None:
        self.outbox = outbox
        self.client = client
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.token_invalid = 0
        self.sender = ClaimSender(settings, outbox, client,
                                  lambda t, p: self.events.append((t, p)),
                                  token_retry_delay=self.token_delay, clock=bangkok_noon)

    def sent(self) -> list[dict[str, Any]]:
        """The claim.sent payloads. A running sender's housekeeping also publishes claim.due
        for today's claims once the due time (20:00 Bangkok) has passed: tests that wait for
        a send must not take that for it."""
        return [payload for kind, payload in self.events if kind == "claim.sent"]

    def token_delay(self) -> float:
        self.token_invalid += 1
        return 42.0

    async def claim(self, n: int = 1, *, in_doubt: bool = False, **changes: Any) -> Claim:
        body = validate_claim(claim_body(n, **changes), SETTINGS)
        # Several claims of one patient here are several visits (one visit, one claim has
        # its own tests).
        claim, _ = await self.outbox.submit(body, new_visit=True)
        if in_doubt:
            await self.outbox.mark_attempt(claim.id)
            await self.outbox.reschedule(claim.id, -1, in_doubt=True, error_code=None,
                                         error_message=None)
        taken = await self.outbox.take_due()
        assert taken is not None and taken.id == claim.id
        return taken

    async def deliver(self, claim: Claim) -> Claim:
        await self.sender._deliver(claim)
        after = await self.outbox.get(claim.id)
        assert after is not None
        return after


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    box = Outbox(tmp_path / "outbox.sqlite3")
    await box.open()
    yield box
    await box.close()


@pytest.fixture
def fixed_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sender_mod.random, "uniform", lambda low, high: 1.0)


def waits(claim: Claim, delay: float, before: float) -> bool:
    return before + delay - 0.01 <= claim.next_attempt_at <= time.time() + delay + 0.01


async def test_a_sent_claim_is_recorded_and_announced(outbox: Outbox) -> None:
    rig = Rig(outbox, ScriptedClient([ClaimAnswer("EP0000000100", "7")]))
    claim = await rig.claim()
    done = await rig.deliver(claim)
    assert rig.client.sent == [claim.body] and rig.client.asked == []
    assert (done.status, done.authen_code, done.seq, done.attempts, done.in_doubt,
            done.recovered) == ("sent", "EP0000000100", "7", 1, False, False)
    assert rig.events == [("claim.sent", {"id": claim.id, "transactionId": claim.transaction_id,
                                          "status": "sent", "authenCode": "EP0000000100",
                                          "seq": "7", "recovered": False})]
    assert (rig.sender.sent, rig.sender.recovered) == (1, 0)
    assert rig.sender._locks == {}


@pytest.mark.parametrize("detail", ["bad visit number", None])
async def test_a_refused_claim_fails_at_once(outbox: Outbox, detail: str | None) -> None:
    rig = Rig(outbox, ScriptedClient([NhsoRejected(detail)]))
    claim = await rig.claim()
    done = await rig.deliver(claim)
    message = detail or ""
    assert (done.status, done.error_code, done.error_message, done.in_doubt,
            done.attempts) == ("failed", "nhso_rejected", message, False, 1)
    assert rig.events == [("claim.failed", {
        "id": claim.id, "transactionId": claim.transaction_id, "status": "failed",
        "error": {"code": "nhso_rejected", "message": message}, "message": message})]
    assert rig.sender.sent == 0


async def test_no_answer_is_retried_with_backoff(outbox: Outbox, fixed_jitter: None) -> None:
    rig = Rig(outbox, ScriptedClient([unavailable("close claim: cannot connect",
                                                  in_doubt=False)]))
    claim = await rig.claim()
    before = time.time()
    done = await rig.deliver(claim)
    assert (done.status, done.in_doubt, done.error_code, done.error_message) == (
        "queued", False, "nhso_unavailable", "close claim: cannot connect")
    assert waits(done, 2.0, before)          # backoff of the first attempt: retry_base
    assert rig.events == [] and rig.token_invalid == 0


async def test_a_later_attempt_waits_longer(outbox: Outbox, fixed_jitter: None) -> None:
    rig = Rig(outbox, ScriptedClient([unavailable("x", in_doubt=False)] * 3))
    claim = await rig.claim()
    for delay in (2.0, 4.0, 8.0):
        before = time.time()
        done = await rig.deliver(claim)
        assert waits(done, delay, before)
        await outbox.reschedule(claim.id, -1, in_doubt=False, error_code=None,
                                error_message=None)
        claim = await outbox.take_due()
        assert claim is not None


async def test_a_lost_answer_waits_the_in_doubt_delay(outbox: Outbox, fixed_jitter: None) -> None:
    rig = Rig(outbox, ScriptedClient([unavailable("close claim: TimeoutError",
                                                  in_doubt=True)]))
    claim = await rig.claim()
    before = time.time()
    done = await rig.deliver(claim)
    assert (done.status, done.in_doubt, done.error_code) == ("queued", True,
                                                             "nhso_unavailable")
    assert waits(done, 20.0, before)         # in_doubt_delay, longer than the backoff


async def test_a_long_backoff_is_not_cut_to_the_in_doubt_delay(outbox: Outbox,
                                                               fixed_jitter: None) -> None:
    settings = NhsoSettings(hcode=HCODE, source_id=SOURCE_ID, recorder_pid=RECORDER_PID,
                            retry_base=50.0, in_doubt_delay=20.0)
    rig = Rig(outbox, ScriptedClient([unavailable("x", in_doubt=True)]), settings)
    claim = await rig.claim()
    before = time.time()
    assert waits(await rig.deliver(claim), 50.0, before)


@pytest.mark.parametrize(("exc", "callback", "delay"), [
    (NhsoTokenInvalid("Invalid token."), 1, 42.0), (NhsoTokenMissing(), 0, 300.0),
    (KeyringUnavailable("no backend"), 0, 300.0)])
async def test_token_trouble_waits_for_a_token(outbox: Outbox, exc: Exception,
                                               callback: int, delay: float) -> None:
    rig = Rig(outbox, ScriptedClient([exc]))
    claim = await rig.claim()
    before = time.time()
    done = await rig.deliver(claim)
    assert done.status == "queued" and done.error_code == exc.code
    assert done.error_message == (exc.detail or exc.info.message_en)
    # A refused token: the token state's schedule (soon at first); no token: tokenRetry.
    assert waits(done, delay, before)
    assert rig.token_invalid == callback


async def test_token_invalid_without_a_schedule_waits_token_retry(outbox: Outbox) -> None:
    rig = Rig(outbox, ScriptedClient([NhsoTokenInvalid()]))
    rig.sender = ClaimSender(SETTINGS, outbox, rig.client, lambda t, p: None,
                             clock=bangkok_noon)
    before = time.time()
    done = await rig.deliver(await rig.claim())
    assert done.status == "queued" and done.error_message == NhsoTokenInvalid().info.message_en
    assert waits(done, 300.0, before)


async def test_an_in_doubt_claim_found_at_nhso_is_not_sent_again(outbox: Outbox) -> None:
    rig = Rig(outbox, ScriptedClient())
    claim = await rig.claim(in_doubt=True)
    rig.client.statuses = [{"serviceHistories": [record_of(claim, "EP0000000200")]}]
    done = await rig.deliver(claim)
    assert rig.client.sent == []
    assert rig.client.asked == [(claim.pid, claim.service_date, claim.service_code)]
    assert (done.status, done.authen_code, done.seq, done.recovered, done.in_doubt,
            done.attempts) == ("sent", "EP0000000200", None, True, False, 1)
    assert rig.events == [("claim.sent", {"id": claim.id, "transactionId": claim.transaction_id,
                                          "status": "sent", "authenCode": "EP0000000200",
                                          "seq": None, "recovered": True})]
    assert (rig.sender.sent, rig.sender.recovered) == (0, 1)


async def test_the_counters_count_every_claim(outbox: Outbox) -> None:
    rig = Rig(outbox, ScriptedClient([ClaimAnswer("EP0000000212", None),
                                      ClaimAnswer("EP0000000213", None)]))
    for n, in_doubt in ((1, True), (2, True), (3, False), (4, False)):
        claim = await rig.claim(n, in_doubt=in_doubt, transactionId=f"T-{n}",
                                visitNumber=f"V{n}")
        rig.client.statuses = [{"serviceHistories": [record_of(claim, f"EP000000021{n}")]}]
        await rig.deliver(claim)
    assert (rig.sender.sent, rig.sender.recovered) == (2, 2)


async def test_a_code_another_claim_holds_is_not_taken(outbox: Outbox) -> None:
    rig = Rig(outbox, ScriptedClient([ClaimAnswer("EP0000000301", None)]))
    first = await rig.claim(1, in_doubt=False, transactionId="T-1")
    await outbox.mark_sent(first.id, "EP0000000300", None)
    # The same person, day and service, even the same second: its code is already ours.
    second = await rig.claim(1, in_doubt=True, transactionId="T-2", visitNumber="VN2",
                             serviceDateTime=first.body["serviceDateTime"])
    rig.client.statuses = [{"serviceHistories": [record_of(first, "EP0000000300")]}] * 2
    checked = await rig.deliver(second)
    assert (checked.status, checked.in_doubt, checked.status_checks) == ("queued", True, 1)
    assert rig.client.sent == []            # not listed: asked once more first
    done = await rig.deliver(checked)
    assert done.authen_code == "EP0000000301" and done.recovered is False
    assert len(rig.client.sent) == 1 and done.status_checks == 0


async def test_an_in_doubt_claim_nhso_does_not_have_is_sent(outbox: Outbox,
                                                            fixed_jitter: None) -> None:
    rig = Rig(outbox, ScriptedClient([unavailable("refused", in_doubt=False)],
                                      [{"serviceHistories": []}, {"serviceHistories": []}]))
    claim = await rig.claim(in_doubt=True)
    before = time.time()
    checked = await rig.deliver(claim)
    # Not listed at the first check: asked again inDoubtRecheck later, nothing sent.
    assert rig.client.sent == [] and rig.events == []
    assert (checked.status, checked.in_doubt, checked.status_checks) == ("queued", True, 1)
    assert waits(checked, SETTINGS.in_doubt_recheck, before)
    before = time.time()
    done = await rig.deliver(checked)
    assert len(rig.client.asked) == 2
    assert len(rig.client.sent) == 1 and done.attempts == 2
    # NHSO said it had nothing, and this try never reached it: no longer in doubt.
    assert (done.status, done.in_doubt) == ("queued", False)
    assert waits(done, 4.0, before)          # backoff of the second attempt


async def test_an_in_doubt_claim_stays_in_doubt_when_the_lookup_fails(
        outbox: Outbox, fixed_jitter: None) -> None:
    rig = Rig(outbox, ScriptedClient(statuses=[NhsoUnavailable("status: HTTP 503")]))
    claim = await rig.claim(in_doubt=True)
    before = time.time()
    done = await rig.deliver(claim)
    assert rig.client.sent == []
    assert (done.status, done.in_doubt, done.error_code, done.error_message,
            done.attempts) == ("queued", True, "nhso_unavailable", "status: HTTP 503", 1)
    assert waits(done, 20.0, before)


async def test_claims_of_one_person_day_and_service_go_one_at_a_time(outbox: Outbox) -> None:
    release = asyncio.Event()
    running: list[int] = []
    peak = 0

    class SlowClient(ScriptedClient):
        async def send_claim(self, body: dict[str, Any]) -> ClaimAnswer:
            nonlocal peak
            running.append(1)
            peak = max(peak, len(running))
            await release.wait()
            running.pop()
            return ClaimAnswer(f"EP{body['transactionId'][-10:]}", None)

    rig = Rig(outbox, SlowClient())
    a = await rig.claim(1, transactionId="SAME-0000000001")
    b = await rig.claim(1, transactionId="SAME-0000000002", visitNumber="VN2")
    other = await rig.claim(2, transactionId="OTHR-0000000003")
    tasks = [asyncio.create_task(rig.sender._deliver(c)) for c in (a, b, other)]
    # The other person's claim runs alongside; the second of the same key waits.
    deadline = time.monotonic() + 10
    while len(running) < 2:
        assert time.monotonic() < deadline, "the claims never started"
        await asyncio.sleep(0.01)
    assert len(rig.sender._locks) == 2
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 2 and rig.sender._locks == {}



def candidate(claim: Claim, code: str) -> dict[str, Any]:
    """What staff see of ``record_of(claim, code)``: Bangkok time to the second."""
    at = dt.datetime.fromtimestamp(claim.body["serviceDateTime"] // 1000, BKK)
    return {"claimCode": code, "hcode": HCODE, "serviceCode": "PG0060001",
            "serviceDateTime": at.isoformat(), "sourceChannel": None}


async def test_two_records_at_its_second_hold_the_claim_for_staff(outbox: Outbox) -> None:
    rig = Rig(outbox, ScriptedClient())
    claim = await rig.claim(in_doubt=True)
    rig.client.statuses = [{"serviceHistories": [record_of(claim, "EP0000000401"),
                                                 record_of(claim, "EP0000000402")]}]
    done = await rig.deliver(claim)
    assert rig.client.sent == []                    # nothing is sent until staff choose
    candidates = [candidate(claim, "EP0000000401"), candidate(claim, "EP0000000402")]
    assert (done.status, done.in_doubt, done.authen_code, done.error_code) == (
        "needs_review", True, None, None)
    assert done.review == {"reason": matching.SEVERAL,
                           "reason_th": "มีรายการของ สปสช. มากกว่าหนึ่งรายการที่ตรงกับเคลมนี้",
                           "candidates": candidates}
    assert rig.events == [("claim.needs_review", {
        "id": claim.id, "transactionId": claim.transaction_id, "status": "needs_review",
        "reason": matching.SEVERAL, "candidates": candidates})]
    assert (rig.sender.sent, rig.sender.recovered) == (0, 0)
    assert await outbox.take_due() is None          # held: never taken again by a worker


@pytest.mark.parametrize("other_state", ["queued", "sending", "needs_review"])
async def test_a_record_that_fits_another_claim_in_doubt_settles_neither(
        outbox: Outbox, other_state: str) -> None:
    """Two visits of the patient at the same second, both maybe at NHSO, one record: it
    could be either claim's, whether the other is waiting, being sent or held for staff."""
    rig = Rig(outbox, ScriptedClient())
    claim = await rig.claim(1, in_doubt=True)
    other = await rig.claim(1, in_doubt=True, transactionId="T-2", visitNumber="VN2",
                            serviceDateTime=claim.body["serviceDateTime"])
    if other_state == "queued":
        await outbox.reschedule(other.id, 60, in_doubt=True, error_code=None,
                                error_message=None)
    elif other_state == "needs_review":
        await outbox.mark_review(other.id, {"reason": matching.SEVERAL, "candidates": []})
    rig.client.statuses = [{"serviceHistories": [record_of(claim, "EP0000000403")]}]
    done = await rig.deliver(claim)
    assert rig.client.sent == [] and done.status == "needs_review"
    assert done.review is not None and done.review["reason"] == matching.SHARED
    assert done.review["reason_th"] == "รายการของ สปสช. ที่ตรงกับเคลมนี้ ตรงกับเคลมอื่นของเราด้วย"
    assert rig.events[0][1]["reason"] == matching.SHARED
    assert (await outbox.get(other.id)).status == other_state     # judged on its own turn


@pytest.mark.parametrize("other_state", ["never sent", "sent", "failed"])
async def test_a_claim_that_cannot_be_at_nhso_does_not_share_the_record(
        outbox: Outbox, other_state: str) -> None:
    """A claim of the same second that never left, or whose answer is known, is not a
    candidate for the record: ours is settled by it."""
    rig = Rig(outbox, ScriptedClient())
    claim = await rig.claim(1, in_doubt=True)
    other = await rig.claim(1, transactionId="T-2", visitNumber="VN2",
                            serviceDateTime=claim.body["serviceDateTime"])
    if other_state == "never sent":
        await outbox.reschedule(other.id, 60, in_doubt=False, error_code=None,
                                error_message=None)
    elif other_state == "sent":
        await outbox.mark_attempt(other.id)
        await outbox.mark_sent(other.id, "EP0000000499", None)
    else:
        await outbox.mark_attempt(other.id)
        await outbox.mark_failed(other.id, "nhso_rejected", "no")
    rig.client.statuses = [{"serviceHistories": [record_of(claim, "EP0000000404")]}]
    done = await rig.deliver(claim)
    assert rig.client.sent == []
    assert (done.status, done.authen_code, done.recovered) == ("sent", "EP0000000404", True)


# -- the workers and housekeeping ---------------------------------------------------------------

async def until(predicate: Any, what: str, deadline: float = 10.0) -> Any:
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_start_recovers_interrupted_claims_and_stop_leaves_none_sending(
        outbox: Outbox) -> None:
    rig = Rig(outbox, ScriptedClient(statuses=[NhsoUnavailable("down")] * 10))
    plain = await rig.claim(1)                  # sending, never attempted
    doubtful = await rig.claim(2)
    await outbox.mark_attempt(doubtful.id)      # sending, the request had left
    before = time.time()
    await rig.sender.start()
    try:
        assert len(rig.sender._tasks) == SETTINGS.sender_concurrency + 1
        claims = {c.id: c for c in await outbox.list()}
        # The plain one is due now (the worker may already hold it); the doubtful one
        # waits the in-doubt delay before NHSO is asked.
        assert claims[doubtful.id].status == "queued" and claims[doubtful.id].in_doubt
        assert claims[doubtful.id].next_attempt_at >= before + 20.0 - 0.01
        assert claims[plain.id].next_attempt_at <= time.time()
    finally:
        await rig.sender.stop()
    assert rig.sender._tasks == []
    assert (await outbox.counts())["sending"] == 0


async def test_workers_deliver_what_is_submitted_after_a_wake(outbox: Outbox) -> None:
    rig = Rig(outbox, ScriptedClient([ClaimAnswer("EP0000000400", "1")]))
    await rig.sender.start()
    try:
        claim, _ = await outbox.submit(validate_claim(claim_body(4), SETTINGS))
        rig.sender.wake()
        await until(rig.sent, "the claim to be sent", deadline=4.0)
        assert rig.sent()[0]["id"] == claim.id
    finally:
        await rig.sender.stop()


async def test_an_unexpected_error_keeps_the_claim_in_doubt(outbox: Outbox,
                                                            fixed_jitter: None) -> None:
    rig = Rig(outbox, ScriptedClient([RuntimeError("bug")]))
    claim, _ = await outbox.submit(validate_claim(claim_body(5), SETTINGS))
    before = time.time()
    await rig.sender.start()
    try:
        async def rescheduled() -> Claim | None:
            c = await outbox.get(claim.id)
            return c if c is not None and c.error_code else None
        done = await until(rescheduled, "the claim to be rescheduled")
    finally:
        await rig.sender.stop()
    assert (done.status, done.in_doubt, done.error_code, done.error_message) == (
        "queued", True, "internal_error", "unexpected error in the agent")
    assert waits(done, 2.0, before)


async def test_housekeeping_flags_due_claims_and_purges_old_ones(outbox: Outbox) -> None:
    rig = Rig(outbox, ScriptedClient(), NhsoSettings(
        hcode=HCODE, source_id=SOURCE_ID, recorder_pid=RECORDER_PID, retention_days=3,
        sender_concurrency=1, due_check_interval=0.02))
    yesterday = int((time.time() - 86_400) * 1000)
    late = await rig.claim(6, serviceDateTime=yesterday, invoiceDateTime=yesterday)
    await outbox.reschedule(late.id, 3600, in_doubt=False, error_code="nhso_unavailable",
                            error_message="down")
    old = await rig.claim(7)
    await outbox.mark_sent(old.id, "EP0000000700", None)
    await outbox._run(outbox.db.execute, "UPDATE claims SET updated_at = ? WHERE id = ?",
                      (time.time() - 4 * 86_400, old.id))
    await rig.sender.start()
    try:
        await until(lambda: rig.events, "claim.due")
        assert await until(lambda: _gone(outbox, old.id),
                           "the purge")
    finally:
        await rig.sender.stop()
    assert rig.events == [("claim.due", {
        "id": late.id, "transactionId": late.transaction_id, "status": "queued",
        "serviceDate": late.service_date,
        "error": {"code": "nhso_unavailable", "message": "down"}})]


async def _gone(outbox: Outbox, claim_id: str) -> bool:
    return await outbox.get(claim_id) is None


class WatchedOutbox(Outbox):
    """An outbox that says when a worker asked for the next due time (it is idle then)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.idle = asyncio.Event()

    async def next_attempt_at(self) -> float | None:
        value = await super().next_attempt_at()
        self.idle.set()
        return value


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[WatchedOutbox]:
    box = WatchedOutbox(tmp_path / "watched.sqlite3")
    await box.open()
    yield box
    await box.close()


async def test_an_idle_worker_is_woken_by_wake(watched: WatchedOutbox) -> None:
    rig = Rig(watched, ScriptedClient([ClaimAnswer("EP0000000500", None)]))
    await rig.sender.start()
    try:
        await asyncio.wait_for(watched.idle.wait(), 10)   # nothing queued: waiting 5 s
        await watched.submit(validate_claim(claim_body(8), SETTINGS))
        started = time.monotonic()
        rig.sender.wake()
        await until(rig.sent, "the claim to be sent", deadline=10.0)
        # Well before the idle poll (5 s) would have found it.
        assert time.monotonic() - started < sender_mod.IDLE_POLL - 1
        assert len(rig.sender._tasks) == 2
    finally:
        await rig.sender.stop()


async def test_an_idle_worker_wakes_itself_when_a_retry_is_due(watched: WatchedOutbox) -> None:
    rig = Rig(watched, ScriptedClient([ClaimAnswer("EP0000000600", None)]))
    claim, _ = await watched.submit(validate_claim(claim_body(9), SETTINGS))
    await watched.reschedule(claim.id, 0.3, in_doubt=False, error_code=None,
                             error_message=None)
    started = time.monotonic()
    await rig.sender.start()
    try:
        await until(rig.sent, "the retry to be sent", deadline=10.0)
        assert time.monotonic() - started < sender_mod.IDLE_POLL - 1   # no wake() call
    finally:
        await rig.sender.stop()



async def test_an_idle_worker_waits_until_the_next_retry_and_no_longer(
        watched: WatchedOutbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """How long an idle worker sleeps (what it asks of asyncio, on a clock the test sets,
    not measured): the time left to the next retry when that is sooner than the idle poll."""
    sleeps: list[float] = []
    later = time.time() + 3600.0           # the retry's time: never due for the outbox

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

        @staticmethod
        async def wait_for(aw: Any, timeout: float) -> Any:
            sleeps.append(timeout)
            return await asyncio.wait_for(aw, timeout)

    monkeypatch.setattr(sender_mod, "asyncio", Recording())
    # The sender's clock: 0.3 s before the retry.
    monkeypatch.setattr(sender_mod, "time", SimpleNamespace(time=lambda: later - 0.3,
                                                            monotonic=time.monotonic))
    rig = Rig(watched, ScriptedClient())
    claim, _ = await watched.submit(validate_claim(claim_body(15), SETTINGS))
    await watched.reschedule(claim.id, later - time.time(), in_doubt=False, error_code=None,
                             error_message=None)
    await rig.sender.start()
    try:
        await until(lambda: sleeps, "the worker to wait")
    finally:
        await rig.sender.stop()
    assert sleeps[0] == pytest.approx(0.3, abs=0.01)

async def test_stop_waits_for_the_tasks_and_survives_a_closed_outbox(outbox: Outbox) -> None:
    rig = Rig(outbox, ScriptedClient())
    await rig.sender.start()
    tasks = list(rig.sender._tasks)
    await outbox.close()              # recover_interrupted will fail: stop must not
    await rig.sender.stop()
    assert all(t.done() for t in tasks) and rig.sender._tasks == []
    await outbox.open()


async def test_a_worker_keeps_going_when_the_outbox_fails(outbox: Outbox,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """An outbox error while taking a claim is retried after a pause, not fatal."""
    monkeypatch.setattr(sender_mod, "IDLE_POLL", 0.05)
    rig = Rig(outbox, ScriptedClient([ClaimAnswer("EP0000000700", None)]))
    real = outbox.take_due
    failures = 0

    async def flaky() -> Claim | None:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise OutboxUnavailableError("disk busy")
        return await real()
    monkeypatch.setattr(outbox, "take_due", flaky)
    await outbox.submit(validate_claim(claim_body(10), SETTINGS))
    await rig.sender.start()
    try:
        await until(rig.sent, "the claim to be sent after the outbox recovered")
    finally:
        await rig.sender.stop()
    assert failures == 2


async def test_an_unexpected_error_does_not_stop_the_worker(outbox: Outbox,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setattr(sender_mod, "IDLE_POLL", 0.05)
    rig = Rig(outbox, ScriptedClient([RuntimeError("bug"), ClaimAnswer("EP0000000800", None)],
                                     [{"serviceHistories": []}] * 2),
              dataclasses.replace(SETTINGS, in_doubt_recheck=0.0))
    claim, _ = await outbox.submit(validate_claim(claim_body(11), SETTINGS))
    await rig.sender.start()
    try:
        async def retried_and_due() -> bool:
            c = await outbox.get(claim.id)
            return c is not None and c.error_code == "internal_error"
        await until(retried_and_due, "the failed try to be recorded")
        await outbox.reschedule(claim.id, -1, in_doubt=True, error_code="internal_error",
                                error_message="x")
        rig.sender.wake()
        await until(rig.sent, "the same worker to send it next time")
    finally:
        await rig.sender.stop()
    assert rig.sent()[0]["authenCode"] == "EP0000000800"


async def test_outbox_errors_around_a_send_do_not_stop_the_worker(
        outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """The outbox fails while recording an unexpected error, and while telling the next
    due time: the worker carries on with the next claim."""
    monkeypatch.setattr(sender_mod, "IDLE_POLL", 0.05)
    rig = Rig(outbox, ScriptedClient([RuntimeError("bug"), ClaimAnswer("EP0000000900", None)]))
    real_reschedule, real_next = outbox.reschedule, outbox.next_attempt_at
    broken = {"reschedule": 1, "next": 1}

    async def reschedule(*args: Any, **kwargs: Any) -> Claim:
        if broken["reschedule"]:
            broken["reschedule"] -= 1
            raise OutboxUnavailableError("disk full")
        return await real_reschedule(*args, **kwargs)

    async def next_attempt_at() -> float | None:
        if broken["next"]:
            broken["next"] -= 1
            raise OutboxUnavailableError("disk full")
        return await real_next()
    monkeypatch.setattr(outbox, "reschedule", reschedule)
    monkeypatch.setattr(outbox, "next_attempt_at", next_attempt_at)
    first, _ = await outbox.submit(validate_claim(claim_body(12), SETTINGS))
    await rig.sender.start()
    try:
        await until(lambda: broken == {"reschedule": 0, "next": 0}, "both failures")
        # No wake(): after its failed look at the outbox, the worker polls again.
        second, _ = await outbox.submit(validate_claim(claim_body(13), SETTINGS))
        await until(rig.sent, "the next claim to be sent")
    finally:
        await rig.sender.stop()
    assert rig.sent()[0]["id"] == second.id
    assert rig.client.sent == [first.body, second.body]


async def test_housekeeping_keeps_flagging_and_purges_once_an_hour(
        outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(outbox, ScriptedClient(), NhsoSettings(
        hcode=HCODE, source_id=SOURCE_ID, recorder_pid=RECORDER_PID, sender_concurrency=0,
        due_check_interval=0.01))          # no workers: only the housekeeping loop runs
    calls = {"flag": 0, "purge": 0}
    real_flag, real_purge = outbox.flag_due, outbox.purge

    async def flag_due(now: dt.datetime, due_time: str) -> list[Claim]:
        calls["flag"] += 1
        assert now.tzinfo is not None
        return await real_flag(now, due_time)

    async def purge(days: int) -> int:
        calls["purge"] += 1
        return await real_purge(days)
    monkeypatch.setattr(outbox, "flag_due", flag_due)
    monkeypatch.setattr(outbox, "purge", purge)
    await rig.sender.start()
    try:
        await until(lambda: calls["flag"] >= 3, "three housekeeping passes")
        # A claim that becomes due later is still flagged: the loop goes on.
        yesterday = int((time.time() - 86_400) * 1000)
        late, _ = await outbox.submit(validate_claim(
            claim_body(14, serviceDateTime=yesterday, invoiceDateTime=yesterday), SETTINGS))
        await until(lambda: rig.events, "claim.due for the later claim")
    finally:
        await rig.sender.stop()
    assert calls["purge"] == 1             # at start, then not before an hour has passed
    assert rig.events == [("claim.due", {
        "id": late.id, "transactionId": late.transaction_id, "status": "queued",
        "serviceDate": late.service_date, "error": None})]


async def test_purges_at_start_and_then_every_hour_on_the_senders_clock(
        outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """The purge runs when the sender starts, even on a PC booted a moment ago (a small
    monotonic clock), and again once an hour has passed on that clock (set by the test)."""
    clock = {"now": 5.0}                   # seconds since boot
    monkeypatch.setattr(sender_mod, "time", SimpleNamespace(time=time.time,
                                                            monotonic=lambda: clock["now"]))
    rig = Rig(outbox, ScriptedClient(), NhsoSettings(
        hcode=HCODE, source_id=SOURCE_ID, recorder_pid=RECORDER_PID, sender_concurrency=0,
        due_check_interval=0.01))
    passes = {"flag": 0, "purge": 0}
    real_flag, real_purge = outbox.flag_due, outbox.purge

    async def flag_due(now: dt.datetime, due_time: str) -> list[Claim]:
        passes["flag"] += 1
        return await real_flag(now, due_time)

    async def purge(days: int) -> int:
        passes["purge"] += 1
        return await real_purge(days)
    monkeypatch.setattr(outbox, "flag_due", flag_due)
    monkeypatch.setattr(outbox, "purge", purge)
    await rig.sender.start()
    try:
        await until(lambda: passes["purge"] == 1, "the purge at start")
        seen = passes["flag"]
        clock["now"] = 5.0 + 3599.0
        await until(lambda: passes["flag"] >= seen + 3, "three more passes")
        assert passes["purge"] == 1        # not yet an hour
        clock["now"] = 5.0 + 3600.0
        await until(lambda: passes["purge"] == 2, "the purge an hour later")
    finally:
        await rig.sender.stop()
