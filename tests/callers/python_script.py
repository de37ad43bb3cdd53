"""A hospital Python script, as such scripts are written: ``urllib``, keys indexed directly
(``body["mainInscl"]``), no ``.get``, the "(CODE) name" split by a regex, the error body's
``errors[0]["defaultMessage"]`` shown to staff as is. A missing key is a KeyError: the crash
a script on a fresh install hit.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

INSCL = re.compile(r"^\((\w+)\)\s*(.*)$")


def call(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def split_inscl(value: str | None) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    m = INSCL.match(value)
    return (m.group(1), m.group(2)) if m else (None, value)


def register_patient(base: str, *, mobile: str = "081-234-5678") -> dict[str, Any]:
    """Read the card, show the coverage, confirm the visit, look up the latest code."""
    out: dict[str, Any] = {}
    status, card = call(base, "GET", "/api/smartcard/read?readImageFlag=false")
    out["read_status"] = status
    out["pid"] = card["pid"]
    out["name"] = card["fname"] + " " + card["lname"]
    out["birth_year_be"] = int(card["birthDate"][:4])
    out["main_code"], out["main_name"] = split_inscl(card["mainInscl"])
    out["sub_code"], _ = split_inscl(card["subInscl"])
    out["hosp_main"] = card["hospMain"]["hcode"] if card["hospMain"] else None
    out["hosp_sub"] = card["hospSub"]["hcode"] if card["hospSub"] else None
    out["hosp_main_op"] = card["hospMainOp"]["hcode"] if card["hospMainOp"] else None
    out["paid_model"] = card["paidModel"]
    out["valid"] = (card["startDateTime"], card["expireDateTime"])
    out["claim_types"] = [t["claimType"] for t in card["claimTypes"]]
    out["coverage_status"] = card["coverageStatus"]
    # The confirm form as a HIS posts it: blanks for what it does not know, its own fields.
    form = {"pid": card["pid"],
            "claimType": out["claim_types"][0] if out["claim_types"] else "PG0060001",
            "mobile": mobile, "correlationId": card["correlationId"], "hn": "", "hcode": "",
            "visitNo": "VN-0001", "clinic": "OPD"}
    status, saved = call(base, "POST", "/api/nhso-service/confirm-save", form)
    out["confirm_status"] = status
    if status == 200:
        out["confirm"] = (saved["status"], saved["claimCode"])
    else:
        out["confirm_error"] = saved["errors"][0]["defaultMessage"]
        out["confirm_message"] = saved["message"]
    status, latest = call(base, "GET", f"/api/nhso-service/latest-authen-code/{card['pid']}")
    out["latest_status"] = status
    out["latest"] = (latest["claimType"], latest["claimCode"], latest["claimDateTime"],
                     latest["hcode"])
    return out


def draft_until_done(base: str, body: dict[str, Any], limit: int = 50) -> list[int]:
    """The script that loops on save-as-draft until the answer is not a 404."""
    statuses = []
    while len(statuses) < limit:
        status, _answer = call(base, "POST", "/api/nhso-service/save-as-draft", body)
        statuses.append(status)
        if status != 404:
            break
    return statuses
