"""The in-doubt settlement rule (agent/nhso/matching.py), one decision at a time.

Which record of Check Authen Status is this claim: every field NHSO gives must agree, the
time to the second, the record unused and not as good a fit for another claim of ours;
else NHSO does not have it (resend) or staff must choose (needs_review). Records are
written the way NHSO lists them (docs/reference.md, NHSO's services and NHSO in the
field), both reply formats.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from agent.nhso.matching import (
    EXACT_MS,
    NEAR_MS,
    Record,
    Verdict,
    Visit,
    exact,
    near,
    parse_time,
    records,
    settle,
)

BKK = dt.timezone(dt.timedelta(hours=7))
HCODE = "10699"
AT = int(dt.datetime(2026, 3, 10, 9, 30, 0, tzinfo=BKK).timestamp() * 1000)


def body(at: int = AT, **changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"hcode": HCODE, "claimServiceCode": "PG0060001",
                           "serviceDateTime": at, "transactionId": "10699-VN1",
                           "visitNumber": "VN1", "totalAmount": 350.0, "paidAmount": 0.0,
                           "privilegeAmount": 350.0}
    out.update(changes)
    return out


def entry(code: str = "EP0000000001", when: Any = "2026-03-10T09:30:00", *,
          hcode: Any = HCODE, service: Any = "PG0060001", **extra: Any) -> dict[str, Any]:
    """A format 1 entry (serviceHistories)."""
    return {"claimCode": code, "serviceDateTime": when, "service": {"code": service},
            "hospital": {"hcode": hcode}, "sourceChannel": "ENDPOINT", **extra}


def one(claim: dict[str, Any], *entries: dict[str, Any], used: tuple[str, ...] = ()) -> Verdict:
    return settle("c", [Visit.of("c", claim)], records({"serviceHistories": list(entries)}),
                  used)


# -- reading the two formats -------------------------------------------------------------------

def test_format_1_records_keep_every_field() -> None:
    [rec] = records({"serviceHistories": [entry(transactionId="T1", totalAmount=350.0)]})
    assert rec == Record("EP0000000001", HCODE, "PG0060001", AT, "ENDPOINT",
                         {"transactionId": "T1", "totalAmount": 350.0})


@pytest.mark.parametrize("results", [
    json.dumps([{"hospitalCode": "10699", "serviceDate": "2026-03-10T09:30:00",
                 "authCode": "EP0000000001"}]),
    [{"hospitalCode": "10699", "serviceDate": "2026-03-10T09:30:00",
      "authCode": "EP0000000001"}],
])
def test_format_2_records_as_a_string_or_a_list(results: Any) -> None:
    [rec] = records({"success": True, "message": "", "results": results})
    assert (rec.code, rec.hcode, rec.service_code, rec.service_ms, rec.channel) == (
        "EP0000000001", HCODE, None, AT, None)


@pytest.mark.parametrize("status", [
    {}, {"serviceHistories": None}, {"serviceHistories": {"claimCode": "EP1"}},
    {"results": "not json"}, {"results": "{\"a\": 1}"}, {"results": 5},
    {"serviceHistories": ["EP0000000001", None, 3]},
    {"serviceHistories": [entry(code="PP0000000001")]},       # an authen code, not a claim
    {"serviceHistories": [entry(code=None)]}, {"serviceHistories": [entry(code="  ")]},
    {"serviceHistories": [entry(code=True)]},
])
def test_nothing_to_read(status: dict[str, Any]) -> None:
    assert records(status) == []


def test_a_bad_entry_is_skipped_not_the_end() -> None:
    found = records({"serviceHistories": [None, "x", entry("PP1"), entry(code=None),
                                          entry("EP1"), entry("EP2")]})
    assert [r.code for r in found] == ["EP1", "EP2"]


def test_blank_fields_are_unknown() -> None:
    [rec] = records({"serviceHistories": [entry(hcode="  ", service=" ")]})
    assert (rec.hcode, rec.service_code) == (None, None)
    [rec] = records({"results": [{"hospitalCode": "", "serviceDate": "2026-03-10T09:30:00",
                                  "authCode": "EP7"}]})
    assert rec.hcode is None


def test_numbers_and_spaces_are_read_as_text() -> None:
    [rec] = records({"serviceHistories": [entry(" EP0000000001 ", hcode=int(HCODE))]})
    assert (rec.code, rec.hcode) == ("EP0000000001", HCODE)


def test_fields_of_other_shapes_are_unknown_not_wrong() -> None:
    [rec] = records({"serviceHistories": [{**entry(), "hospital": "10699", "service": ["x"]}]})
    assert (rec.hcode, rec.service_code) == (None, None)


@pytest.mark.parametrize(("value", "ms"), [
    (AT, AT), (float(AT) + 0.4, AT), ("2026-03-10T09:30:00", AT),
    ("2026-03-10T02:30:00+00:00", AT), ("2026-03-10T09:30:00.250", AT + 250),
    (" 2026-03-10T09:30:00 ", AT),
    ("2026-03-10", None), (" 2026-03-10 ", None), ("20260310", None),
    ("2026-03-10T09", AT - 30 * 60_000), ("2026-03-10 09:30", AT),
    ("10/03/2026 09:30", None), ("", None), (None, None),
    (True, None), ([AT], None), (float("nan"), None), ("2026-03-10T25:00:00", None),
])
def test_service_time(value: Any, ms: int | None) -> None:
    assert parse_time(value) == ms


def test_a_record_is_shown_to_staff_in_bangkok_time() -> None:
    [rec] = records({"serviceHistories": [entry(visitNumber="VN9")]})
    assert rec.view() == {"claimCode": "EP0000000001", "hcode": HCODE,
                          "serviceCode": "PG0060001",
                          "serviceDateTime": "2026-03-10T09:30:00+07:00",
                          "sourceChannel": "ENDPOINT", "visitNumber": "VN9"}
    assert Record("EP1", None, None, None, None, {}).view()["serviceDateTime"] is None


# -- one record, one claim ------------------------------------------------------------------------

def rec(when_ms: int | None = AT, **changes: Any) -> Record:
    values: dict[str, Any] = {"code": "EP1", "hcode": HCODE, "service_code": "PG0060001",
                              "service_ms": when_ms, "channel": None, "extra": {}}
    values.update(changes)
    return Record(**values)


VISIT = Visit.of("c", body())


@pytest.mark.parametrize(("record", "is_exact", "is_near"), [
    (rec(), True, False),
    (rec(AT + EXACT_MS), True, False), (rec(AT - EXACT_MS), True, False),
    (rec(AT + EXACT_MS + 1), False, True), (rec(AT - EXACT_MS - 1), False, True),
    (rec(AT + NEAR_MS), False, True), (rec(AT - NEAR_MS), False, True),
    (rec(AT + NEAR_MS + 1), False, False), (rec(AT - NEAR_MS - 1), False, False),
    (rec(None), False, True),
    (rec(hcode="11111"), False, False), (rec(hcode=None), False, False),
    (rec(service_code="PG0130001"), False, False), (rec(service_code=None), True, False),
    (rec(extra={"transactionId": "10699-VN1"}), True, False),
    (rec(extra={"transactionId": "10699-VN2"}), False, False),
    (rec(extra={"visitNumber": "VN1"}), True, False),
    (rec(extra={"visitNumber": "VN2"}), False, False),
    (rec(extra={"totalAmount": 350}), True, False),
    (rec(extra={"totalAmount": 350.004}), True, False),
    (rec(extra={"totalAmount": 350.01}), False, False),
    (rec(extra={"privilegeAmount": 0.0}), False, False),
    (rec(extra={"paidAmount": "0"}), False, False),
    (rec(extra={"paidAmount": 0}), True, False),
    (rec(extra={"paidAmount": 0.004}), True, False),     # under half a satang: the same
    (rec(extra={"paidAmount": 0.005}), False, False),    # half a satang is another amount
])
def test_a_record_against_a_claim(record: Record, is_exact: bool, is_near: bool) -> None:
    assert exact(VISIT, record) is is_exact
    assert near(VISIT, record) is is_near


def test_visit_reads_the_claim_body() -> None:
    visit = Visit.of("c9", body(totalAmount=12.5, paidAmount=3))
    assert visit == Visit("c9", HCODE, "PG0060001", AT, "10699-VN1", "VN1",
                          {"totalAmount": 12.5, "paidAmount": 3.0, "privilegeAmount": 350.0})
    assert isinstance(visit.amounts["paidAmount"], float)


# -- the verdict for one claim -----------------------------------------------------------------

def test_its_own_record_settles_it() -> None:
    assert one(body(), entry("EP1")) == Verdict(code="EP1")


def test_nhso_truncates_our_milliseconds() -> None:
    assert one(body(AT + 999), entry("EP1")).code == "EP1"


def test_no_record_means_nhso_does_not_have_it() -> None:
    verdict = one(body(), entry("EP1", "2026-03-10T13:45:00"),
                  entry("EP2", hcode="11111"), entry("PP0000000001"))
    assert verdict.absent and verdict == Verdict()


def test_a_record_already_ours_is_never_taken() -> None:
    assert one(body(), entry("EP1"), used=("EP1",)).absent


def test_another_visit_of_the_day_is_not_taken_for_ours() -> None:
    # The old rule took any unused EP code of the patient, day, service and hospital.
    verdict = one(body(), entry("EP2", "2026-03-10T13:45:00"))
    assert verdict.absent


def test_the_record_at_our_time_wins_wherever_it_is() -> None:
    verdict = one(body(), entry("EP2", "2026-03-10T15:00:00"), entry("EP1"))
    assert verdict == Verdict(code="EP1")


def test_two_records_at_our_second_need_review() -> None:
    verdict = one(body(), entry("EP1"), entry("EP2", "2026-03-10T09:30:01"))
    assert verdict.code is None and [r.code for r in verdict.candidates] == ["EP1", "EP2"]
    assert verdict.reason == "several records of NHSO fit this claim"


def test_a_record_minutes_away_needs_review() -> None:
    verdict = one(body(), entry("EP3", "2026-03-10T09:32:00"))
    assert [r.code for r in verdict.candidates] == ["EP3"] and verdict.code is None
    assert verdict.reason == "a record fits this claim but its time is not to the second"


def test_a_record_without_a_time_needs_review() -> None:
    verdict = settle("c", [Visit.of("c", body())], records({"results": [
        {"hospitalCode": HCODE, "serviceDate": "2026-03-10", "authCode": "EP4"}]}), ())
    assert [r.code for r in verdict.candidates] == ["EP4"]


def test_an_exact_record_with_near_ones_settles() -> None:
    assert one(body(), entry("EP1"), entry("EP5", "2026-03-10T09:31:00")).code == "EP1"


# -- claims of one patient and day, judged together ------------------------------------------

def group(*bodies: dict[str, Any]) -> list[Visit]:
    return [Visit.of(f"c{n}", b) for n, b in enumerate(bodies, 1)]


def test_two_claims_at_the_same_second_cannot_be_told_apart() -> None:
    visits = group(body(), body(transactionId="T2", visitNumber="VN2"))
    found = records({"serviceHistories": [entry("EP1")]})
    for target in ("c1", "c2"):
        verdict = settle(target, visits, found, ())
        assert verdict.code is None and [r.code for r in verdict.candidates] == ["EP1"]
        assert verdict.reason == "the record that fits this claim also fits another claim"


def test_each_claim_takes_its_own_record() -> None:
    # c1 09:30:00 fits EP1 exactly and EP2 only "near"; c2 09:31:00 the other way round.
    visits = group(body(), body(AT + 60_000, transactionId="T2", visitNumber="VN2"))
    found = records({"serviceHistories": [entry("EP2", "2026-03-10T09:31:00"), entry("EP1")]})
    assert settle("c1", visits, found, ()).code == "EP1"
    assert settle("c2", visits, found, ()).code == "EP2"


def test_records_told_apart_by_visit_number() -> None:
    # Three claims at one second: the visit numbers NHSO lists tell two of them apart; the
    # third has no record: NHSO does not have it.
    visits = group(body(), body(transactionId="T2", visitNumber="VN2"),
                   body(transactionId="T3", visitNumber="VN3"))
    found = records({"serviceHistories": [entry("EP1", visitNumber="VN1"),
                                           entry("EP2", visitNumber="VN2")]})
    assert settle("c1", visits, found, ()).code == "EP1"
    assert settle("c2", visits, found, ()).code == "EP2"
    assert settle("c3", visits, found, ()).absent


def test_a_claim_with_two_fitting_records_goes_to_review_with_the_claims_it_blocks() -> None:
    # c1 (visit A) fits EP1 (visit A) and EP2 (no visit number), both at its second; c2
    # fits only EP2, which c1 might be. No rule makes either certain: staff choose.
    visits = group(body(visitNumber="A"), body(transactionId="T2", visitNumber="B"))
    found = records({"serviceHistories": [entry("EP1", visitNumber="A"), entry("EP2")]})
    first, second = settle("c1", visits, found, ()), settle("c2", visits, found, ())
    assert [r.code for r in first.candidates] == ["EP1", "EP2"]
    assert [r.code for r in second.candidates] == ["EP2"]
    assert second.reason == "the record that fits this claim also fits another claim"


def test_a_record_fitting_two_of_ours_is_left_when_the_other_is_certain_elsewhere() -> None:
    visits = group(body(), body(transactionId="T2", visitNumber="VN2"))
    found = records({"serviceHistories": [entry("EP1", visitNumber="VN2")]})
    assert settle("c2", visits, found, ()).code == "EP1"
    assert settle("c1", visits, found, ()).absent


def test_every_reason_has_its_thai_text() -> None:
    from agent.nhso.matching import NOT_TO_THE_SECOND, REASONS_TH, SEVERAL, SHARED
    assert set(REASONS_TH) == {SEVERAL, SHARED, NOT_TO_THE_SECOND}
    assert all(REASONS_TH.values())
