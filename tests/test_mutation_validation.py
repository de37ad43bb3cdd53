"""Exact answers of agent.nhso.validation, written from docs/nhso.md: every refusal names
its field with the English and Thai message a HIS developer or the staff will read, and
every boundary (amounts, times, coordinates, lengths) is tested on both sides.

These tests were added where mutation testing (scripts/mutation.sh) showed a change to the
validator that no test noticed: a message, a boundary, a default.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

from agent.nhso.settings import NhsoSettings
from agent.nhso.validation import (
    BANGKOK,
    FUTURE_SLACK_MS,
    MAX_AMOUNT,
    MIN_EPOCH_MS,
    SERVICE_CODES,
    ValidationFailed,
    parse_date,
    service_date,
    validate_claim,
    validate_confirm_save,
    validate_pid_param,
)
from testrig.nhso_support import HCODE, RECORDER_PID, SOURCE_ID, claim_body, patient_pid

SETTINGS = NhsoSettings(hcode=HCODE, source_id=SOURCE_ID, recorder_pid=RECORDER_PID)
NOW_MS = 1_773_108_000_000          # 2026-03-10 09:00 Bangkok: fixed, no midnight races
PID = patient_pid(1)
CODES = ", ".join(SERVICE_CODES)

REQUIRED = {"message": "is required", "message_th": "ต้องระบุ"}
NOT_STRING = {"message": "must be a string", "message_th": "ต้องเป็นข้อความ"}
PID_DIGITS = {"message": "must be 13 digits (a string)", "message_th": "ต้องเป็นตัวเลข 13 หลัก"}
PID_CHECK = {"message": "has a wrong check digit",
             "message_th": "เลขประจำตัวประชาชนไม่ถูกต้อง (หลักตรวจสอบผิด)"}
NUMBER = {"message": "must be a number", "message_th": "ต้องเป็นตัวเลข"}
AMOUNT_RANGE = {"message": "must be between 0 and 99,999,999.99",
                "message_th": "ต้องอยู่ระหว่าง 0 ถึง 99,999,999.99"}
DECIMALS = {"message": "must have at most 2 decimal places",
            "message_th": "ทศนิยมได้ไม่เกิน 2 ตำแหน่ง"}
EPOCH_INT = {"message": "must be an integer: epoch milliseconds",
             "message_th": "ต้องเป็นจำนวนเต็ม (มิลลิวินาทีนับจาก epoch)"}
SECONDS = {"message": "looks like seconds; send epoch milliseconds",
           "message_th": "ดูเหมือนเป็นวินาที ต้องส่งเป็นมิลลิวินาที"}
TIME_RANGE = {"message": "is out of range (before 2000 or more than a day ahead)",
              "message_th": "เวลาไม่อยู่ในช่วงที่ถูกต้อง"}
EXCEEDS = {"message": "must not exceed totalAmount", "message_th": "ต้องไม่เกิน totalAmount"}
UNKNOWN = {"message": "is not a known field", "message_th": "ไม่รู้จักฟิลด์นี้"}
SERVICE = {"message": "must be one of " + CODES, "message_th": "ต้องเป็นรหัสบริการที่ สปสช. กำหนด"}
HCODE_FORMAT = {"message": "must be 5 digits", "message_th": "ต้องเป็นตัวเลข 5 หลัก"}
HCODE_OTHER = {"message": f"must be this agent's hcode {HCODE} (the token is per hcode)",
               "message_th": f"ต้องเป็นรหัสหน่วยบริการของเครื่องนี้ ({HCODE})"}
INSCL = {"message": "must be a scheme code such as UCS, OFC, SSS, LGO, WEL",
         "message_th": "ต้องเป็นรหัสสิทธิ เช่น UCS, OFC, SSS, LGO, WEL"}
TX = {"message": "must be 1-64 letters, digits, '.', '_' or '-'",
      "message_th": "ต้องเป็นตัวอักษร ตัวเลข . _ หรือ - ไม่เกิน 64 ตัว"}
VISIT = {"message": "must be 1-50 letters, digits, '.', '/', '_' or '-'",
         "message_th": "ต้องเป็นตัวอักษรหรือตัวเลขไม่เกิน 50 ตัว"}
SOURCE = {"message": "must be 1-50 letters, digits, '.', '_' or '-'",
          "message_th": "ต้องเป็นตัวอักษรหรือตัวเลขไม่เกิน 50 ตัว"}
DEPARTMENT = {"message": "must be {code: string (1-20), name: string (<= 200)}",
              "message_th": "ต้องเป็น {code, name}"}
PHONE = {"message": "must be a phone number (3-20 digits, + - ( ) or spaces)",
         "message_th": "ต้องเป็นหมายเลขโทรศัพท์"}
RESERVED = {"message": "must be 1-64 letters, digits, '.', '_' or '-'",
            "message_th": "ต้องเป็นตัวอักษรหรือตัวเลขไม่เกิน 64 ตัว"}
LATITUDE = {"message": "must be a number between -90 and 90",
            "message_th": "ต้องเป็นตัวเลขระหว่าง -90 ถึง 90"}
LONGITUDE = {"message": "must be a number between -180 and 180",
             "message_th": "ต้องเป็นตัวเลขระหว่าง -180 ถึง 180"}


def errors_of(fn: Any, *args: Any, **kwargs: Any) -> list[dict[str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        fn(*args, **kwargs)
    return caught.value.errors


def claim_errors(**changes: Any) -> list[dict[str, str]]:
    body = claim_body(1, now_ms=NOW_MS)
    for name, value in changes.items():
        if value is DELETE:
            del body[name]
        else:
            body[name] = value
    return errors_of(validate_claim, body, SETTINGS, now_ms=NOW_MS)


DELETE = object()

# (field, bad value, the one error expected)
CLAIM_CASES: list[tuple[str, Any, dict[str, str]]] = [
    ("pid", DELETE, REQUIRED), ("pid", None, REQUIRED), ("pid", 3000000000013, PID_DIGITS),
    ("pid", PID[:12], PID_DIGITS), ("pid", PID + "0", PID_DIGITS),
    ("pid", "๓" * 13, PID_DIGITS), ("pid", PID[:12] + str((int(PID[12]) + 1) % 10), PID_CHECK),
    ("transactionId", 5, NOT_STRING), ("transactionId", "", TX), ("transactionId", "a" * 65, TX),
    ("visitNumber", "v" * 51, VISIT), ("visitNumber", "a b", VISIT),
    ("mainInsclCode", "ucs", INSCL), ("mainInsclCode", "ABCDEF", INSCL),
    ("claimServiceCode", "PG9999999", SERVICE), ("claimServiceCode", ["PG0060001"], SERVICE),
    ("claimServiceCode", DELETE, REQUIRED),
    ("serviceDateTime", True, EPOCH_INT), ("serviceDateTime", 1.7e12, EPOCH_INT),
    ("serviceDateTime", 99_999_999_999, SECONDS), ("serviceDateTime", 1, SECONDS),
    ("serviceDateTime", 100_000_000_000, TIME_RANGE), ("serviceDateTime", 0, TIME_RANGE),
    ("serviceDateTime", -5, TIME_RANGE), ("serviceDateTime", MIN_EPOCH_MS - 1, TIME_RANGE),
    ("serviceDateTime", NOW_MS + FUTURE_SLACK_MS + 1, TIME_RANGE),
    ("invoiceDateTime", "1773108000000", EPOCH_INT),
    ("totalAmount", True, NUMBER), ("totalAmount", "350", NUMBER),
    ("totalAmount", -0.01, AMOUNT_RANGE), ("totalAmount", MAX_AMOUNT + 0.01, AMOUNT_RANGE),
    ("totalAmount", math.inf, AMOUNT_RANGE), ("totalAmount", math.nan, AMOUNT_RANGE),
    ("totalAmount", 1.005, DECIMALS), ("totalAmount", DELETE, REQUIRED),
    ("paidAmount", 350.01, EXCEEDS), ("privilegeAmount", 351, EXCEEDS),
    ("hcode", "1234", HCODE_FORMAT), ("hcode", "11111", HCODE_OTHER), ("hcode", 10699, NOT_STRING),
    ("sourceId", "a b", SOURCE), ("sourceId", "s" * 51, SOURCE),
    ("recorderPid", "1" * 13, PID_CHECK),
    ("department", "OPD", DEPARTMENT), ("department", {"code": ""}, DEPARTMENT),
    ("department", {"code": "c" * 21}, DEPARTMENT), ("department", {"code": 1}, DEPARTMENT),
    ("department", {"code": "01", "name": "n" * 201}, DEPARTMENT),
    ("department", {"code": "01", "name": 5}, DEPARTMENT),
    ("department", {"code": "01", "other": ""}, DEPARTMENT),
    ("mobile", "12", PHONE), ("tel", "0" * 21, PHONE), ("tel", "call me", PHONE),
    ("reservedId", "r" * 65, RESERVED),
    ("latitude", 90.001, LATITUDE), ("latitude", -90.001, LATITUDE), ("latitude", True, LATITUDE),
    ("latitude", math.nan, LATITUDE), ("latitude", "13.7", LATITUDE),
    ("longitude", 180.5, LONGITUDE), ("longitude", -181, LONGITUDE),
    ("extra", 1, UNKNOWN),
]


@pytest.mark.parametrize(("field", "value", "error"), CLAIM_CASES,
                         ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(CLAIM_CASES)])
def test_each_claim_refusal_names_its_field_and_says_why(field: str, value: Any,
                                                          error: dict[str, str]) -> None:
    assert claim_errors(**{field: value}) == [{"field": field, **error}]


def test_every_error_at_once_in_a_stable_order() -> None:
    errors = claim_errors(zeta=1, alpha=2, pid="1", totalAmount=-1, mainInsclCode="x")
    assert [e["field"] for e in errors] == ["alpha", "zeta", "mainInsclCode", "totalAmount",
                                            "pid"]


def test_validation_failed_reads_as_one_line_and_a_dict() -> None:
    exc = ValidationFailed([{"field": "a", "message": "is bad", "message_th": "x"},
                            {"field": "b", "message": "is worse", "message_th": "y"}])
    assert str(exc) == "a: is bad; b: is worse"
    assert exc.detail == "a: is bad; b: is worse"
    assert exc.to_dict() == {"code": "bad_request", "message": exc.info.message_en,
                             "message_th": exc.info.message_th, "errors": exc.errors}


@pytest.mark.parametrize(("changes", "expected"), [
    # boundaries that are accepted
    ({"totalAmount": MAX_AMOUNT, "paidAmount": MAX_AMOUNT, "privilegeAmount": 0},
     {"totalAmount": MAX_AMOUNT, "paidAmount": MAX_AMOUNT, "privilegeAmount": 0}),
    ({"totalAmount": 0, "paidAmount": 0, "privilegeAmount": 0},
     {"totalAmount": 0, "paidAmount": 0, "privilegeAmount": 0}),
    ({"totalAmount": 0.1 + 0.2, "paidAmount": 0.3, "privilegeAmount": 0},    # float noise
     {"totalAmount": 0.3, "paidAmount": 0.3, "privilegeAmount": 0}),
    # Float noise up to a millionth of a cent is tolerated (1e-8 is exactly at the edge).
    ({"totalAmount": 1e-8, "paidAmount": 0, "privilegeAmount": 0},
     {"totalAmount": 0.0, "paidAmount": 0, "privilegeAmount": 0}),
    ({"serviceDateTime": MIN_EPOCH_MS}, {"serviceDateTime": MIN_EPOCH_MS}),
    ({"serviceDateTime": NOW_MS + FUTURE_SLACK_MS},
     {"serviceDateTime": NOW_MS + FUTURE_SLACK_MS}),
    ({"latitude": 90, "longitude": -180}, {"latitude": 90, "longitude": -180}),
    ({"latitude": -90.0, "longitude": 180.0}, {"latitude": -90.0, "longitude": 180.0}),
    ({"department": {"code": "c" * 20}}, {"department": {"code": "c" * 20, "name": ""}}),
    ({"department": {"code": "1", "name": "n" * 200}},
     {"department": {"code": "1", "name": "n" * 200}}),
    ({"mobile": "081-234 5678", "tel": "(02)123"},
     {"mobile": "081-234 5678", "tel": "(02)123"}),
    ({"reservedId": "R-1", "hcode": HCODE, "sourceId": "HIS.1", "recorderPid": PID},
     {"reservedId": "R-1", "hcode": HCODE, "sourceId": "HIS.1", "recorderPid": PID}),
    ({"transactionId": "t" * 64, "visitNumber": "v/" * 25},
     {"transactionId": "t" * 64, "visitNumber": "v/" * 25}),
])
def test_accepted_values_reach_nhso_unchanged(changes: dict[str, Any],
                                              expected: dict[str, Any]) -> None:
    out = validate_claim(claim_body(1, now_ms=NOW_MS, **changes), SETTINGS, now_ms=NOW_MS)
    assert {k: out[k] for k in expected} == expected
    for name in ("totalAmount", "paidAmount", "privilegeAmount"):
        assert out[name] == round(out[name], 2)


def test_defaults_come_from_the_settings_and_empty_ones_are_left_out() -> None:
    body = claim_body(1, now_ms=NOW_MS)
    assert validate_claim(body, SETTINGS, now_ms=NOW_MS) == {
        **body, "hcode": HCODE, "sourceId": SOURCE_ID, "recorderPid": RECORDER_PID}
    bare = NhsoSettings()
    # Without a configured hcode, any well-formed one is taken as given.
    assert validate_claim({**body, "hcode": "11111"}, bare, now_ms=NOW_MS)["hcode"] == "11111"


def test_now_defaults_to_the_clock() -> None:
    import time
    now = int(time.time() * 1000)
    body = claim_body(1, now_ms=now, serviceDateTime=now + FUTURE_SLACK_MS - 60_000)
    assert validate_claim(body, SETTINGS)["serviceDateTime"] == now + FUTURE_SLACK_MS - 60_000
    body["serviceDateTime"] = now + FUTURE_SLACK_MS + 60_000
    assert errors_of(validate_claim, body, SETTINGS) == [
        {"field": "serviceDateTime", **TIME_RANGE}]


@pytest.mark.parametrize("body", [None, [], "x", 5])
def test_the_body_must_be_an_object(body: Any) -> None:
    expected = [{"field": "", "message": "the body must be a JSON object",
                 "message_th": "ข้อมูลต้องเป็น JSON object"}]
    assert errors_of(validate_claim, body, SETTINGS) == expected
    assert errors_of(validate_confirm_save, body, SETTINGS) == expected


# -- dates and the service day ----------------------------------------------------------------

def test_service_day_is_the_bangkok_calendar_day() -> None:
    utc = dt.UTC
    assert service_date(int(dt.datetime(2026, 3, 9, 16, 59, 59, tzinfo=utc).timestamp()
                            * 1000)) == "2026-03-09"
    assert service_date(int(dt.datetime(2026, 3, 9, 17, 0, 0, tzinfo=utc).timestamp()
                            * 1000)) == "2026-03-10"


@pytest.mark.parametrize("value", [None, ""])
def test_a_missing_date_is_today_in_bangkok(value: str | None) -> None:
    before = dt.datetime.now(BANGKOK).date().isoformat()
    got = parse_date(value)
    after = dt.datetime.now(BANGKOK).date().isoformat()
    assert got in (before, after)


def test_today_is_bangkok_s_whatever_the_machine_s_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A workstation set to another zone still gets Bangkok's day (NHSO's service day).

    Of UTC-12 and UTC+14, one is always on another calendar day than Bangkok (UTC+7).
    """
    import time
    bangkok = dt.datetime.now(BANGKOK)
    for zone, hours in (("XXX+12", -12), ("YYY-14", 14)):  # noqa: B007 - the zone kept after break
        local = bangkok.astimezone(dt.timezone(dt.timedelta(hours=hours)))
        if local.date() != bangkok.date():
            break
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        assert dt.datetime.now().date() != bangkok.date() or \
            dt.datetime.now(BANGKOK).date() != bangkok.date()     # midnight passed
        assert parse_date(None) == dt.datetime.now(BANGKOK).date().isoformat()
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_date_is_taken_as_given() -> None:
    assert parse_date("2024-02-29") == "2024-02-29"


@pytest.mark.parametrize("value", ["2025-02-29", "20250101", "2025-1-01", "01-01-2025",
                                   "2025-01-01T00:00", " 2025-01-01", "yesterday"])
def test_a_bad_date_names_its_parameter(value: str) -> None:
    message = {"message": "must be a date YYYY-MM-DD",
               "message_th": "ต้องเป็นวันที่ในรูปแบบ YYYY-MM-DD"}
    assert errors_of(parse_date, value) == [{"field": "date", **message}]
    assert errors_of(parse_date, value, "serviceDate") == [{"field": "serviceDate", **message}]


# -- pid parameters ---------------------------------------------------------------------------

def test_pid_parameter() -> None:
    assert validate_pid_param(PID) == PID
    assert errors_of(validate_pid_param, None) == [{"field": "pid", **REQUIRED}]
    assert errors_of(validate_pid_param, "") == [{"field": "pid", **REQUIRED}]
    assert errors_of(validate_pid_param, "123", "personalId") == [
        {"field": "personalId", **PID_DIGITS}]
    assert errors_of(validate_pid_param, "1" * 13) == [{"field": "pid", **PID_CHECK}]


# -- compat confirm-save ----------------------------------------------------------------------

CONFIRM = {"pid": PID, "claimType": "PG0060001", "mobile": "0812345678",
           "correlationId": "c0ffee-1"}
MOBILE = {"message": "must be a mobile number such as 0812345678",
          "message_th": "ต้องเป็นหมายเลขโทรศัพท์มือถือ เช่น 0812345678"}
CORRELATION = {"message": "must be the correlationId returned by /api/smartcard/read",
               "message_th": "ต้องเป็นcorrelationId ที่ได้จาก /api/smartcard/read"}
HN = {"message": "must be 1-30 letters or digits",
      "message_th": "ต้องเป็นตัวอักษรหรือตัวเลขไม่เกิน 30 ตัว"}
CONFIRM_HCODE = {"message": f"must be this agent's hcode {HCODE}",
                 "message_th": f"ต้องเป็นรหัสหน่วยบริการของเครื่องนี้ ({HCODE})"}
CLAIM_TYPE = {"message": "must be one of " + CODES,
              "message_th": "ต้องเป็นรหัสบริการที่ สปสช. กำหนด"}

CONFIRM_CASES: list[tuple[str, Any, dict[str, str]]] = [
    ("pid", DELETE, REQUIRED), ("pid", "1" * 13, PID_CHECK), ("pid", 1, PID_DIGITS),
    ("claimType", DELETE, REQUIRED), ("claimType", "PG1", CLAIM_TYPE),
    ("claimType", ["PG0060001"], CLAIM_TYPE),
    ("mobile", "12", MOBILE), ("mobile", "1812345678", MOBILE), ("mobile", "08123456789", MOBILE),
    ("mobile", 812345678, NOT_STRING),
    # An empty string is absent (callers send "" for what they do not know): required.
    ("correlationId", DELETE, REQUIRED), ("correlationId", "", REQUIRED),
    ("correlationId", "c" * 65, CORRELATION), ("correlationId", "a_b", CORRELATION),
    ("hn", "h n", HN), ("hn", "h" * 31, HN), ("hn", 5, NOT_STRING),
    # Another hospital's hcode is passed on for NHSO to judge; unknown fields are ignored.
    ("hcode", "9999", HCODE_FORMAT),
]


@pytest.mark.parametrize(("field", "value", "error"), CONFIRM_CASES,
                         ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(CONFIRM_CASES)])
def test_each_confirm_save_refusal(field: str, value: Any, error: dict[str, str]) -> None:
    body = dict(CONFIRM)
    if value is DELETE:
        del body[field]
    else:
        body[field] = value
    assert errors_of(validate_confirm_save, body, SETTINGS) == [{"field": field, **error}]


def test_confirm_save_answers() -> None:
    assert validate_confirm_save(CONFIRM, SETTINGS) == {**CONFIRM, "hcode": HCODE}
    # Callers without a phone send an empty string: absent.
    assert "mobile" not in validate_confirm_save({**CONFIRM, "mobile": ""}, SETTINGS)
    # What callers send beside the documented fields is ignored; another hcode is passed on.
    assert validate_confirm_save({**CONFIRM, "other": 1}, SETTINGS) == {**CONFIRM, "hcode": HCODE}
    assert validate_confirm_save({**CONFIRM, "hcode": "99999"}, SETTINGS)["hcode"] == "99999"
    # No mobile at all: the key is left out.
    no_mobile = {k: v for k, v in CONFIRM.items() if k != "mobile"}
    assert validate_confirm_save(no_mobile, SETTINGS) == {**no_mobile, "hcode": HCODE}
    full = {**CONFIRM, "mobile": "021234567", "hn": "HN-1/2", "hcode": HCODE}
    assert validate_confirm_save(full, SETTINGS) == full
    # Without a configured hcode, the caller's stands.
    assert validate_confirm_save({**CONFIRM, "hcode": "11111"}, NhsoSettings())["hcode"] == \
        "11111"
