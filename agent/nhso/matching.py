"""Which record of Check Authen Status is *this* claim: the in-doubt settlement rule.

A claim whose answer was lost may or may not be at NHSO. Check Authen Status lists the
patient's records of the day; a record settles the claim only when it is that claim's:

* it is a closed claim (an ``EP`` code; ``PP`` codes are authen codes, not claims);
* every field the record carries that the claim also carries agrees: the hospital, the
  service (claim type), the service date-time **to the second** (NHSO lists seconds, the
  claim carries milliseconds: up to ``EXACT_MS`` apart), and, where the record has them,
  the transaction id, the visit number and the amounts;
* its code is not already recorded for another claim of ours;
* no other claim of ours that may also be at NHSO fits it as well.

Claims of one patient and day are judged together (``settle``): a record that fits two
of our claims settles neither, and codes already recorded for our claims are never taken
again, so the verdicts do not depend on the order in which the claims are judged. The
sender judges them one patient-day at a time, claims that may be at NHSO before any new
claim of the day is sent.

What is left of a claim's fitting records decides: none → NHSO does not have it (the
sender checks once more, then sends it again); one or more that could not be told apart,
or records that agree on everything but the time is not to the second (or not given) →
``needs_review``: nothing is sent and staff choose.

Both reply formats seen in the field are read (``records``): format 1 with
``serviceHistories``, format 2 with ``results`` (a JSON string or a list of
``hospitalCode``, ``serviceDate``, ``authCode``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .validation import BANGKOK

EXACT_MS = 1_000            # NHSO lists seconds: truncated or rounded, at most 1 s apart
NEAR_MS = 5 * 60_000        # the same visit by every other field, the time off by minutes
AMOUNTS = ("totalAmount", "paidAmount", "privilegeAmount")
SEVERAL = "several records of NHSO fit this claim"
SHARED = "the record that fits this claim also fits another claim"
NOT_TO_THE_SECOND = "a record fits this claim but its time is not to the second"
# What staff read on the status page and in the tray (Thai first).
REASONS_TH = {
    SEVERAL: "มีรายการของ สปสช. มากกว่าหนึ่งรายการที่ตรงกับเคลมนี้",
    SHARED: "รายการของ สปสช. ที่ตรงกับเคลมนี้ ตรงกับเคลมอื่นของเราด้วย",
    NOT_TO_THE_SECOND: "มีรายการที่ตรงกับเคลมนี้ แต่เวลาไม่ตรงถึงระดับวินาที",
}


@dataclass(frozen=True)
class Record:
    """One entry of Check Authen Status, whatever the reply format."""

    code: str
    hcode: str | None
    service_code: str | None
    service_ms: int | None          # epoch ms; None when NHSO gave no usable time
    channel: str | None
    extra: Mapping[str, Any]        # transactionId, visitNumber, amounts where NHSO gives them

    def view(self) -> dict[str, Any]:
        """What staff see of a candidate (``/v1/claims``, the tray)."""
        when = (dt.datetime.fromtimestamp(self.service_ms / 1000, BANGKOK)
                .isoformat(timespec="seconds") if self.service_ms is not None else None)
        return {"claimCode": self.code, "hcode": self.hcode, "serviceCode": self.service_code,
                "serviceDateTime": when, "sourceChannel": self.channel, **self.extra}


@dataclass(frozen=True)
class Visit:
    """The fields of one of our claims that a record is compared with."""

    id: str
    hcode: str
    service_code: str
    service_ms: int
    transaction_id: str
    visit_number: str | None
    amounts: Mapping[str, float]

    @classmethod
    def of(cls, claim_id: str, body: Mapping[str, Any]) -> Visit:
        return cls(claim_id, str(body.get("hcode", "")), str(body.get("claimServiceCode", "")),
                   int(body.get("serviceDateTime", 0)), str(body.get("transactionId", "")),
                   None if body.get("visitNumber") is None else str(body["visitNumber"]),
                   {k: float(body[k]) for k in AMOUNTS if _number(body.get(k))})


@dataclass(frozen=True)
class Verdict:
    """``code`` set: settled with it. Else ``candidates`` empty: not at NHSO; non-empty:
    needs review (``reason`` says why)."""

    code: str | None = None
    candidates: tuple[Record, ...] = ()
    reason: str = ""

    @property
    def absent(self) -> bool:
        return self.code is None and not self.candidates


# -- reading both reply formats ------------------------------------------------------------

def _number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _text(value: Any) -> str | None:
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()
    return None


def parse_time(value: Any) -> int | None:
    """Epoch ms of a record's service time: epoch ms, or an ISO time (Bangkok when it has no
    zone). A bare date is no time at all."""
    if _number(value):
        return int(value)
    if not isinstance(value, str) or len(value.strip()) <= 10:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=BANGKOK)
    return round(parsed.timestamp() * 1000)


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _entries(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    histories = status.get("serviceHistories")
    if isinstance(histories, list):
        return [h for h in histories if isinstance(h, dict)]
    results = status.get("results")
    if isinstance(results, str):
        try:
            results = json.loads(results)
        except ValueError:
            return []
    if isinstance(results, list):
        return [r for r in results if isinstance(r, dict)]
    return []


def records(status: Mapping[str, Any]) -> list[Record]:
    """The closed-claim records (``EP`` codes) of a Check Authen Status answer."""
    out: list[Record] = []
    for entry in _entries(status):
        code = _text(entry.get("claimCode") or entry.get("authCode")
                     or entry.get("authenCode"))
        if code is None or not code.startswith("EP"):
            continue
        hospital, service = _obj(entry.get("hospital")), _obj(entry.get("service"))
        extra = {k: entry[k] for k in ("transactionId", "visitNumber", *AMOUNTS)
                 if entry.get(k) is not None}
        out.append(Record(
            code=code,
            hcode=_text(hospital.get("hcode") or entry.get("hospitalCode")
                        or entry.get("hcode")),
            service_code=_text(service.get("code") or entry.get("serviceCode")
                               or entry.get("claimServiceCode")),
            service_ms=parse_time(entry.get("serviceDateTime") or entry.get("serviceDate")),
            channel=_text(entry.get("sourceChannel")),
            extra=extra))
    return out


# -- one record against one claim ----------------------------------------------------------

def _agrees(visit: Visit, record: Record) -> bool:
    """No field the record carries contradicts the claim (the time aside)."""
    if record.hcode is not None and record.hcode != visit.hcode:
        return False
    if record.service_code is not None and record.service_code != visit.service_code:
        return False
    tid = record.extra.get("transactionId")
    if tid is not None and str(tid) != visit.transaction_id:
        return False
    vn = record.extra.get("visitNumber")
    if vn is not None and visit.visit_number is not None and str(vn) != visit.visit_number:
        return False
    for name, ours in visit.amounts.items():
        theirs = record.extra.get(name)
        if theirs is not None and not (_number(theirs) and abs(float(theirs) - ours) < 0.005):
            return False
    return record.hcode is not None     # a record with no hospital could be anyone's


def exact(visit: Visit, record: Record) -> bool:
    return (_agrees(visit, record) and record.service_ms is not None
            and abs(record.service_ms - visit.service_ms) <= EXACT_MS)


def near(visit: Visit, record: Record) -> bool:
    """Everything agrees but the time: not given, or minutes (not seconds) away."""
    if not _agrees(visit, record):
        return False
    if record.service_ms is None:
        return True
    return EXACT_MS < abs(record.service_ms - visit.service_ms) <= NEAR_MS


# -- the whole patient-day -------------------------------------------------------------------

def settle(target: str, visits: Sequence[Visit], found: Iterable[Record],
           codes_in_use: Iterable[str]) -> Verdict:
    """The verdict for claim ``target`` among ``visits`` (our claims of one patient and day
    that may be at NHSO, ``target`` included) and the records NHSO listed.

    ``codes_in_use``: codes already recorded for our claims; those records are someone
    else's. The verdict does not depend on the order in which the claims of the day are
    judged: a record settles a claim only when it is the claim's one fitting record and
    fits no other claim, and then no other claim's verdict could have used it."""
    used = set(codes_in_use)
    free = [r for r in found if r.code not in used]
    me = next(v for v in visits if v.id == target)
    others = [v for v in visits if v.id != target]
    exacts = tuple(r for r in free if exact(me, r))
    nears = tuple(r for r in free if near(me, r))
    if len(exacts) == 1:
        if not any(exact(other, exacts[0]) for other in others):
            return Verdict(code=exacts[0].code)
        return Verdict(candidates=exacts + nears,
                       reason=SHARED)
    if exacts:
        return Verdict(candidates=exacts + nears,
                       reason=SEVERAL)
    if nears:
        return Verdict(candidates=nears,
                       reason=NOT_TO_THE_SECOND)
    return Verdict()
