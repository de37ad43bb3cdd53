"""Service days are Bangkok days whatever the machine's time zone (NHSO pays a claim sent
on the day of service, a Bangkok day): the claim's day, the Check Authen Status lookup of a
claim in doubt, the due flag and the authen-code lookups, with the machine in UTC and in
Asia/Bangkok.

A claim at 00:00:30 Bangkok is on the previous day in UTC, at any hour the test runs, so a
UTC day anywhere in the chain shows: the lookup would miss the claim NHSO recorded and send
it a second time.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.nhso.outbox import Outbox
from agent.nhso.settings import NhsoSettings
from agent.nhso.validation import BANGKOK, parse_date, service_date, validate_claim
from testrig.nhso_server import Rule
from testrig.nhso_support import HCODE, RECORDER_PID, SOURCE_ID, claim_body
from tests.nhso_inprocess import make_agent, nhso, server_state, submit, wait_status

ZONES = ["UTC", "Asia/Bangkok"]


@pytest.fixture(params=ZONES)
def machine_zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    try:
        yield request.param
    finally:
        monkeypatch.undo()
        time.tzset()


def bangkok_midnight_plus(seconds: int) -> int:
    today = dt.datetime.now(BANGKOK).date()
    start = dt.datetime.combine(today, dt.time(0, 0), BANGKOK)
    return int((start.timestamp() + seconds) * 1000)


def test_the_machine_zone_is_what_the_test_says(machine_zone: str) -> None:
    offset = time.localtime().tm_gmtoff
    assert offset == (0 if machine_zone == "UTC" else 7 * 3600)


def test_a_claim_just_after_bangkok_midnight_is_on_the_bangkok_day(machine_zone: str) -> None:
    at = bangkok_midnight_plus(30)
    bangkok_day = dt.datetime.now(BANGKOK).date().isoformat()
    assert service_date(at) == bangkok_day
    assert parse_date(None) == bangkok_day
    utc_day = dt.datetime.fromtimestamp(at / 1000, dt.UTC).date().isoformat()
    assert utc_day != bangkok_day              # the case discriminates, at any hour


async def test_the_due_flag_counts_bangkok_days(machine_zone: str, tmp_path: Path) -> None:
    settings = NhsoSettings(hcode=HCODE, source_id=SOURCE_ID, recorder_pid=RECORDER_PID)
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    await outbox.open()
    try:
        at = bangkok_midnight_plus(30)
        body = validate_claim(claim_body(801, serviceDateTime=at, invoiceDateTime=at), settings)
        claim, _ = await outbox.submit(body)
        day = dt.datetime.fromtimestamp(at / 1000, BANGKOK).date()
        # 19:59 Bangkok that day: not due yet; 20:00: due (dueTime is Bangkok time).
        before = dt.datetime.combine(day, dt.time(19, 59), BANGKOK).astimezone(dt.UTC)
        assert await outbox.flag_due(before, "20:00") == []
        at_due = dt.datetime.combine(day, dt.time(20, 0), BANGKOK).astimezone(dt.UTC)
        assert [c.id for c in await outbox.flag_due(at_due, "20:00")] == [claim.id]
    finally:
        await outbox.close()


async def test_a_lost_answer_is_looked_up_on_the_bangkok_day(machine_zone, make_agent, nhso):
    client = await make_agent()
    state = server_state(nhso)
    at = bangkok_midnight_plus(30)
    body = claim_body(802, serviceDateTime=at, invoiceDateTime=at)
    state.rules = [Rule("claim", ["drop_after"], count=1, key=body["transactionId"])]
    view = await wait_status(client, (await submit(client, body))["id"], "sent")
    assert view["serviceDate"] == dt.datetime.now(BANGKOK).date().isoformat()
    assert view["recovered"] is True
    assert dict(state.claim_counts) == {body["transactionId"]: 1}
