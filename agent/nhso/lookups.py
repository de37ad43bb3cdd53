"""NHSO lookups: coverage (right-search) for ``/api/smartcard/read``, authen codes and Check
Authen Status, and the compat confirm-save. No claim state lives here (``claims.py``).

This is the object the web room sees as ``agent.api.keys.CoverageLookup``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import OrderedDict
from typing import Any

from ..errors import (
    AgentError,
    KeyringUnavailable,
    NhsoNotConfigured,
    NhsoRejected,
    NhsoTokenInvalid,
    NhsoTokenMissing,
    NhsoUnverified,
)
from .client import NhsoClient, json_object
from .settings import NhsoSettings
from .token import TokenState
from .validation import BANGKOK, SERVICE_CODES, validate_confirm_save

log = logging.getLogger(__name__)

COVERAGE_CACHE_SIZE = 64
CONFIRM_CACHE_SIZE = 256


def _inscl(value: Any) -> str | None:
    """NHSO's ``{id, name}`` as callers expect it: "(CODE) name"."""
    if isinstance(value, dict) and value.get("id"):
        name = value.get("name") or ""
        return f"({value['id']}) {name}".strip()
    if isinstance(value, str) and value:
        return value
    return None


def _hosp(value: Any) -> dict[str, str] | None:
    if isinstance(value, dict) and value.get("hcode"):
        return {"hcode": str(value["hcode"]), "hname": str(value.get("hname") or "")}
    return None


def coverage_fields(answer: dict[str, Any]) -> dict[str, Any]:
    """Flat coverage fields of ``/api/smartcard/read`` from a right-search answer."""
    funds = answer.get("funds")
    fund = next((f for f in funds if isinstance(f, dict)), None) if isinstance(funds, list) \
        else None
    if fund is None:
        return {"mainInscl": None, "subInscl": None, "hospMain": None, "hospSub": None,
                "hospMainOp": None, "paidModel": None, "startDateTime": None,
                "expireDateTime": None, "claimTypes": []}
    claim_types = fund.get("claimTypes") if isinstance(fund.get("claimTypes"), list) else None
    if claim_types is None:
        # right-search carries no claim types in any public sample; general treatment is
        # the one every scheme can be closed with (docs/nhso.md).
        claim_types = [{"claimType": "PG0060001", "claimTypeName": SERVICE_CODES["PG0060001"]}]
    return {
        "mainInscl": _inscl(fund.get("mainInscl")),
        "subInscl": _inscl(fund.get("subInscl")),
        "hospMain": _hosp(fund.get("hospMain")),
        "hospSub": _hosp(fund.get("hospSub")),
        "hospMainOp": _hosp(fund.get("hospMainOp")),
        "paidModel": None if fund.get("paidModel") is None else str(fund["paidModel"]),
        "startDateTime": fund.get("startDateTime"),
        "expireDateTime": fund.get("expireDateTime"),
        "claimTypes": claim_types,
    }


def local_now() -> str:
    return dt.datetime.now(BANGKOK).replace(tzinfo=None).isoformat(timespec="seconds")


class NhsoLookups:
    def __init__(self, settings: NhsoSettings, client: NhsoClient, tokens: TokenState) -> None:
        self.settings = settings
        self.client = client
        self.tokens = tokens
        self._coverage: OrderedDict[tuple[str, str], tuple[float, dict[str, Any]]] = OrderedDict()
        self._confirmed: OrderedDict[str, tuple[dict[str, Any], dict[str, Any]]] = OrderedDict()

    async def token_configured(self) -> bool | None:
        return await self.tokens.configured()

    def token_health(self) -> dict[str, Any]:
        return self.tokens.health()

    async def authen_status(self, pid: str, day: str,
                            service_code: str | None = None) -> dict[str, Any]:
        return await self.client.check_authen_status(pid, day, service_code)

    async def authen_codes(self, pid: str, *, days: int = 1,
                           hcode: str | None = None) -> list[dict[str, Any]]:
        """Authen / claim codes of a person, newest first, in the callers' shape.

        Check Authen Status answers one service day per request, so the days are asked one
        by one from today back, ``days`` of them at most; with ``hcode`` the search stops at
        the first day holding a code of that hospital (the "latest" one).
        """
        today = dt.datetime.now(BANGKOK).date()
        items: list[dict[str, Any]] = []
        for back in range(max(days, 1)):
            day = (today - dt.timedelta(days=back)).isoformat()
            answer = await self.client.check_authen_status(pid, day)
            found = self._history_items(answer)
            items.extend(found)
            if hcode is not None and any(str(i["hcode"]) == hcode for i in found):
                break
        items.sort(key=lambda i: str(i["claimDateTime"] or ""), reverse=True)
        return items

    @staticmethod
    def _history_items(answer: dict[str, Any]) -> list[dict[str, Any]]:
        items = []
        for h in answer.get("serviceHistories") or []:
            if not isinstance(h, dict) or not h.get("claimCode"):
                continue
            service = json_object(h.get("service"))
            hospital = json_object(h.get("hospital"))
            items.append({"claimType": service.get("code"), "claimCode": h["claimCode"],
                          "hcode": hospital.get("hcode"),
                          "claimDateTime": h.get("serviceDateTime"),
                          "checkDate": local_now()})
        return items

    async def latest_authen_code(self, pid: str) -> dict[str, Any]:
        """This hospital's newest code within ``authenLookbackDays``; every key callers
        index is there, null when there is no code (they read ``claimType`` unconditionally)."""
        hcode = self.settings.hcode or ""
        codes = await self.authen_codes(pid, days=self.settings.authen_lookback_days,
                                        hcode=hcode)
        ours = [i for i in codes if str(i["hcode"]) == hcode]
        if ours:
            return ours[0]
        return {"claimType": None, "claimCode": None, "hcode": hcode or None,
                "claimDateTime": None, "checkDate": local_now()}

    async def coverage_for(self, pid: str) -> dict[str, Any] | None:
        """Coverage fields for ``/api/smartcard/read``; None when no token is configured.

        Raises a typed AgentError when NHSO cannot answer.
        """
        try:
            if not await self.tokens.stored():
                return None
        except KeyringUnavailable:
            log.warning("keyring unavailable: coverage lookup skipped")
            return None
        day = dt.datetime.now(BANGKOK).date().isoformat()
        key = (pid, day)
        now = time.monotonic()
        hit = self._coverage.get(key)
        if hit and hit[0] > now:
            return dict(hit[1])
        fields = coverage_fields(await self.client.right_search(pid, day))
        if self.settings.coverage_cache_seconds > 0:
            self._coverage[key] = (now + self.settings.coverage_cache_seconds, fields)
            self._coverage.move_to_end(key)
            while len(self._coverage) > COVERAGE_CACHE_SIZE:
                self._coverage.popitem(last=False)
        return dict(fields)

    def forget_coverage(self, pid: str | None = None) -> None:
        """Drop cached coverage (of one card, or all), e.g. when a card is removed."""
        if pid is None:
            self._coverage.clear()
        else:
            for key in [k for k in self._coverage if k[0] == pid]:
                del self._coverage[key]

    async def confirm_save(self, body: Any) -> dict[str, Any]:
        """Ask NHSO for an Authen Code (PP...) the way the old agent's confirm-save did.

        The upstream AuthenCode API is not publicly documented: the request is built from
        what public hospital code sends, and any failure says so. No code is ever invented.
        """
        data = validate_confirm_save(body, self.settings)
        previous = self._confirmed.get(data["correlationId"])
        if previous is not None:
            if previous[0] == data:
                return dict(previous[1])     # a retry of the same confirmation
            raise NhsoRejected("this correlationId was already confirmed with other data")
        if not self.settings.authen_code_api:
            raise NhsoUnverified("confirm-save is switched off in the NHSO settings "
                                 "(authenCodeApi=false)")
        if not data.get("hcode") or not self.settings.source_id:
            raise NhsoNotConfigured("hcode and sourceId are needed for confirm-save")
        upstream = {"hcode": data["hcode"], "pid": data["pid"], "serviceCode": data["claimType"],
                    "sourceId": self.settings.source_id, "transId": data["correlationId"]}
        if data.get("mobile"):
            upstream["mobile"] = data["mobile"]
        if data.get("hn"):
            upstream["hn"] = data["hn"]
        try:
            answer = await self.client.request_authen_code(upstream)
        except (NhsoTokenMissing, NhsoTokenInvalid, KeyringUnavailable):
            raise
        except NhsoRejected as exc:
            # NHSO answered and said no in its own words (another hospital's hcode, too many
            # authen requests for the person today): staff must see those words. A bare
            # "HTTP 4xx" without words may mean the unverified API is not what NHSO runs.
            if exc.detail and not exc.detail.startswith("authen code: HTTP"):
                raise NhsoRejected(exc.detail) from None
            raise NhsoUnverified(f"{exc.code}: {exc.detail}") from None
        except NhsoUnverified:
            raise
        except AgentError as exc:
            raise NhsoUnverified(f"{exc.code}: {exc.detail or exc.info.message_en}") from None
        code = answer.get("authenCode") or answer.get("claimCode")
        if not (isinstance(code, str) and code.startswith("PP")):
            raise NhsoUnverified("the answer holds no PP authen code")
        # ``status`` beside ``claimCode``: callers test it before showing the code. 200, like
        # the ``status`` of the Spring error bodies, so one branch reads both (unverified).
        result = {"pid": data["pid"], "claimType": data["claimType"],
                  "correlationId": data["correlationId"], "createdDate": local_now(),
                  "claimCode": code, "status": 200}
        for name in ("hn", "hcode", "mobile"):
            if data.get(name):
                result[name] = data[name]
        self._confirmed[data["correlationId"]] = (data, result)
        while len(self._confirmed) > CONFIRM_CACHE_SIZE:
            self._confirmed.popitem(last=False)
        return dict(result)
