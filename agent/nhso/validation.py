"""Strict checks of what callers send before anything reaches the outbox or NHSO.

Each check returns field-level errors (``{"field", "message", "message_th"}``) so a caller
sees every problem of a request at once. Unknown fields are errors too: a misspelt optional
field would otherwise be dropped silently.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..card.values import citizen_id_valid
from ..errors import AgentError
from .settings import HCODE_RE, SOURCE_ID_RE, NhsoSettings

BANGKOK = dt.timezone(dt.timedelta(hours=7), "Asia/Bangkok")   # no daylight saving time

# Service / claim type codes NHSO publishes (docs/nhso.md lists them with their sources).
SERVICE_CODES: dict[str, str] = {
    "PG0060001": "เข้ารับบริการรักษาทั่วไป (OPD/ IPD/ PP)",
    "PG0080001": "การดูแลรักษาในชุมชน (Community Isolation)",
    "PG0090001": "การดูแลรักษาในที่พัก (Home Isolation)",
    "PG0110001": "Self Isolation",
    "PG0120001": "UCEP PLUS (ผู้ป่วยกลุ่มอาการสีเหลืองและสีแดง)",
    "PG0130001": "บริการฟอกเลือดด้วยเครื่องไตเทียม (HD)",
    "PG0140001": "Homeward",
    "PG0180001": "บริการตรวจสุขภาพที่จำเป็นตามกลุ่มวัย (เฉพาะเขต กทม)",
}

INSCL_RE = re.compile(r"^[A-Z]{2,5}$")
TRANSACTION_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
VISIT_RE = re.compile(r"^[A-Za-z0-9./_-]{1,50}$")
PHONE_RE = re.compile(r"^[0-9+()\- ]{3,20}$")
MOBILE_RE = re.compile(r"^0[0-9]{8,9}$")
CORRELATION_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
HN_RE = re.compile(r"^[A-Za-z0-9./_-]{1,30}$")
DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")

MAX_AMOUNT = 99_999_999.99
MIN_EPOCH_MS = 946_684_800_000            # 2000-01-01: older times are typos
FUTURE_SLACK_MS = 24 * 3600 * 1000        # clocks of HIS servers drift; a day is plenty
SECONDS_NOT_MS = 100_000_000_000          # below this, the caller sent seconds


class ValidationFailed(AgentError):
    code = "bad_request"

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.info.message_en,
                               "message_th": self.info.message_th, "errors": self.errors}
        return out


@dataclass
class Checker:
    """Collects field errors while reading a JSON object."""

    data: dict[str, Any]
    errors: list[dict[str, str]] = field(default_factory=list)

    def fail(self, name: str, message: str, message_th: str) -> None:
        self.errors.append({"field": name, "message": message, "message_th": message_th})

    def present(self, name: str, required: bool) -> bool:
        if name in self.data and self.data[name] is not None:
            return True
        if required:
            self.fail(name, "is required", "ต้องระบุ")
        return False

    def string(self, name: str, pattern: re.Pattern[str], what: str, what_th: str, *,
               required: bool = True) -> str | None:
        if not self.present(name, required):
            return None
        value = self.data[name]
        if not isinstance(value, str):
            self.fail(name, "must be a string", "ต้องเป็นข้อความ")
            return None
        if not pattern.fullmatch(value):     # whole value: "$" lets a trailing newline in
            self.fail(name, f"must be {what}", f"ต้องเป็น{what_th}")
            return None
        return value

    def pid(self, name: str, *, required: bool = True) -> str | None:
        if not self.present(name, required):
            return None
        value = self.data[name]
        if not isinstance(value, str) or not (len(value) == 13 and value.isascii()
                                              and value.isdigit()):
            self.fail(name, "must be 13 digits (a string)", "ต้องเป็นตัวเลข 13 หลัก")
            return None
        if not citizen_id_valid(value):
            self.fail(name, "has a wrong check digit", "เลขประจำตัวประชาชนไม่ถูกต้อง (หลักตรวจสอบผิด)")
            return None
        return value

    def amount(self, name: str) -> float | None:
        if not self.present(name, True):
            return None
        value = self.data[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(name, "must be a number", "ต้องเป็นตัวเลข")
            return None
        if not math.isfinite(value) or value < 0 or value > MAX_AMOUNT:
            self.fail(name, f"must be between 0 and {MAX_AMOUNT:,.2f}",
                      f"ต้องอยู่ระหว่าง 0 ถึง {MAX_AMOUNT:,.2f}")
            return None
        cents = value * 100
        if abs(cents - round(cents)) > 1e-6:
            self.fail(name, "must have at most 2 decimal places", "ทศนิยมได้ไม่เกิน 2 ตำแหน่ง")
            return None
        return round(value, 2)

    def epoch_ms(self, name: str, now_ms: int) -> int | None:
        if not self.present(name, True):
            return None
        value = self.data[name]
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, "must be an integer: epoch milliseconds",
                      "ต้องเป็นจำนวนเต็ม (มิลลิวินาทีนับจาก epoch)")
            return None
        if 0 < value < SECONDS_NOT_MS:
            self.fail(name, "looks like seconds; send epoch milliseconds",
                      "ดูเหมือนเป็นวินาที ต้องส่งเป็นมิลลิวินาที")
            return None
        if value < MIN_EPOCH_MS or value > now_ms + FUTURE_SLACK_MS:
            self.fail(name, "is out of range (before 2000 or more than a day ahead)",
                      "เวลาไม่อยู่ในช่วงที่ถูกต้อง")
            return None
        return value

    def unknown(self, allowed: set[str]) -> None:
        for name in sorted(set(self.data) - allowed):
            self.fail(name, "is not a known field", "ไม่รู้จักฟิลด์นี้")

    def raise_if_failed(self) -> None:
        if self.errors:
            raise ValidationFailed(self.errors)


CLAIM_REQUIRED = ("pid", "transactionId", "visitNumber", "mainInsclCode", "claimServiceCode",
                  "serviceDateTime", "invoiceDateTime", "totalAmount", "paidAmount",
                  "privilegeAmount")
CLAIM_OPTIONAL = ("hcode", "sourceId", "recorderPid", "department", "mobile", "tel",
                  "reservedId", "latitude", "longitude")


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationFailed([{"field": "", "message": "the body must be a JSON object",
                                 "message_th": "ข้อมูลต้องเป็น JSON object"}])
    return body


def validate_claim(body: Any, settings: NhsoSettings, *,
                   now_ms: int | None = None) -> dict[str, Any]:
    """Check a close-claim request and return the exact body to send to NHSO.

    ``hcode``, ``sourceId`` and ``recorderPid`` default to the settings; an ``hcode`` other
    than the configured one is refused because the token only works for its own hcode.
    """
    data = require_object(body)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    c = Checker(data)
    c.unknown(set(CLAIM_REQUIRED) | set(CLAIM_OPTIONAL))
    out: dict[str, Any] = {}

    hcode = c.string("hcode", HCODE_RE, "5 digits", "ตัวเลข 5 หลัก", required=False)
    if hcode is not None and settings.hcode and hcode != settings.hcode:
        c.fail("hcode", f"must be this agent's hcode {settings.hcode} (the token is per hcode)",
               f"ต้องเป็นรหัสหน่วยบริการของเครื่องนี้ ({settings.hcode})")
    out["hcode"] = hcode or settings.hcode
    out["mainInsclCode"] = c.string("mainInsclCode", INSCL_RE,
                                     "a scheme code such as UCS, OFC, SSS, LGO, WEL",
                                     "รหัสสิทธิ เช่น UCS, OFC, SSS, LGO, WEL")
    out["serviceDateTime"] = c.epoch_ms("serviceDateTime", now_ms)
    out["invoiceDateTime"] = c.epoch_ms("invoiceDateTime", now_ms)
    out["transactionId"] = c.string("transactionId", TRANSACTION_ID_RE,
                                    "1-64 letters, digits, '.', '_' or '-'",
                                    "ตัวอักษร ตัวเลข . _ หรือ - ไม่เกิน 64 ตัว")
    total = out["totalAmount"] = c.amount("totalAmount")
    for name in ("paidAmount", "privilegeAmount"):
        value = out[name] = c.amount(name)
        if value is not None and total is not None and value > total:
            c.fail(name, "must not exceed totalAmount", "ต้องไม่เกิน totalAmount")
    if c.present("claimServiceCode", True):
        code = data["claimServiceCode"]
        if not isinstance(code, str) or code not in SERVICE_CODES:   # a list is unhashable
            c.fail("claimServiceCode", "must be one of " + ", ".join(SERVICE_CODES),
                   "ต้องเป็นรหัสบริการที่ สปสช. กำหนด")
        else:
            out["claimServiceCode"] = code
    out["pid"] = c.pid("pid")
    source_id = c.string("sourceId", SOURCE_ID_RE, "1-50 letters, digits, '.', '_' or '-'",
                         "ตัวอักษรหรือตัวเลขไม่เกิน 50 ตัว", required=False)
    out["sourceId"] = source_id or settings.source_id
    recorder = c.pid("recorderPid", required=False)
    out["recorderPid"] = recorder or settings.recorder_pid
    out["visitNumber"] = c.string("visitNumber", VISIT_RE, "1-50 letters, digits, '.', '/', "
                                  "'_' or '-'", "ตัวอักษรหรือตัวเลขไม่เกิน 50 ตัว")

    if c.present("department", False):
        dep = data["department"]
        if (not isinstance(dep, dict) or set(dep) - {"code", "name"}
                or not isinstance(dep.get("code"), str) or not 0 < len(dep["code"]) <= 20
                or not isinstance(dep.get("name", ""), str) or len(dep.get("name", "")) > 200):
            c.fail("department", "must be {code: string (1-20), name: string (<= 200)}",
                   "ต้องเป็น {code, name}")
        else:
            out["department"] = {"code": dep["code"], "name": dep.get("name", "")}
    for name in ("mobile", "tel"):
        phone = c.string(name, PHONE_RE, "a phone number (3-20 digits, + - ( ) or spaces)",
                         "หมายเลขโทรศัพท์", required=False)
        if phone is not None:
            out[name] = phone
    reserved = c.string("reservedId", TRANSACTION_ID_RE, "1-64 letters, digits, '.', '_' "
                        "or '-'", "ตัวอักษรหรือตัวเลขไม่เกิน 64 ตัว", required=False)
    if reserved is not None:
        out["reservedId"] = reserved
    for name, limit in (("latitude", 90), ("longitude", 180)):
        if c.present(name, False):
            value = data[name]
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or abs(value) > limit):
                c.fail(name, f"must be a number between -{limit} and {limit}",
                       f"ต้องเป็นตัวเลขระหว่าง -{limit} ถึง {limit}")
            else:
                out[name] = value
    c.raise_if_failed()
    return {k: v for k, v in out.items() if v is not None}


def service_date(epoch_ms: int) -> str:
    """The Bangkok calendar day of a service time: the day NHSO wants the claim sent."""
    return dt.datetime.fromtimestamp(epoch_ms / 1000, BANGKOK).date().isoformat()


def parse_date(value: str | None, name: str = "date") -> str:
    """A YYYY-MM-DD query parameter, defaulting to today in Bangkok."""
    if value is None or value == "":
        return dt.datetime.now(BANGKOK).date().isoformat()
    try:
        if not DATE_RE.fullmatch(value):
            raise ValueError(value)
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValidationFailed([{"field": name, "message": "must be a date YYYY-MM-DD",
                                 "message_th": "ต้องเป็นวันที่ในรูปแบบ YYYY-MM-DD"}]) from None


def validate_pid_param(value: str | None, name: str = "pid") -> str:
    c = Checker({name: value} if value else {})
    pid = c.pid(name)
    c.raise_if_failed()
    assert pid is not None
    return pid


CONFIRM_FIELDS = ("pid", "claimType", "mobile", "correlationId", "hn", "hcode")
# Thai mobile numbers as callers type them: 081-234-5678, "081 234 5678", +66812345678,
# 66812345678. Separators go, the country code becomes the leading 0.
PHONE_SEPARATORS = re.compile(r"[\s\-().]")


def normalise_mobile(value: str) -> str:
    """``0812345678`` from what callers send; unchanged when it is not a Thai number."""
    digits = PHONE_SEPARATORS.sub("", value)
    if digits.startswith("+66"):
        digits = "0" + digits[3:].lstrip("0")
    elif digits.startswith("66") and len(digits) in (11, 12):
        digits = "0" + digits[2:]
    return digits


def confirm_input(body: Any) -> dict[str, Any]:
    """The confirm-save fields as callers mean them: unknown keys dropped (callers send their
    whole form), empty strings and nulls treated as absent (``hn: ""`` when unknown)."""
    data = require_object(body)
    out: dict[str, Any] = {}
    for name in CONFIRM_FIELDS:
        value = data.get(name)
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "":
            continue
        out[name] = value
    return out


def validate_confirm_save(body: Any, settings: NhsoSettings) -> dict[str, Any]:
    """The compat ``confirm-save`` body ``{pid, claimType, mobile, correlationId, hn?, hcode?}``.

    An ``hcode`` other than this agent's is passed on: a patient registered elsewhere is
    NHSO's to judge, and NHSO answers for the token's hcode anyway.
    """
    data = confirm_input(body)
    c = Checker(data)
    out: dict[str, Any] = {"pid": c.pid("pid")}
    if c.present("claimType", True):
        if not isinstance(data["claimType"], str) or data["claimType"] not in SERVICE_CODES:
            c.fail("claimType", "must be one of " + ", ".join(SERVICE_CODES),
                   "ต้องเป็นรหัสบริการที่ สปสช. กำหนด")
        else:
            out["claimType"] = data["claimType"]
    if isinstance(data.get("mobile"), str):
        data["mobile"] = normalise_mobile(data["mobile"])
    out["mobile"] = c.string("mobile", MOBILE_RE, "a mobile number such as 0812345678",
                             "หมายเลขโทรศัพท์มือถือ เช่น 0812345678", required=False)
    out["correlationId"] = c.string("correlationId", CORRELATION_RE,
                                    "the correlationId returned by /api/smartcard/read",
                                    "correlationId ที่ได้จาก /api/smartcard/read")
    out["hn"] = c.string("hn", HN_RE, "1-30 letters or digits",
                         "ตัวอักษรหรือตัวเลขไม่เกิน 30 ตัว", required=False)
    hcode = c.string("hcode", HCODE_RE, "5 digits", "ตัวเลข 5 หลัก", required=False)
    out["hcode"] = hcode or settings.hcode
    c.raise_if_failed()
    return {k: v for k, v in out.items() if v is not None}
