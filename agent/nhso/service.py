"""The app-scoped NHSO service: outbox + sender + client + token, behind a small async API.

``routes.py`` exposes it over HTTP; the card API asks ``coverage_for(pid)`` to fill the
coverage fields of ``/api/smartcard/read``. Events go to ``publish(type, payload)``
callbacks (the main app connects its WebSocket event bus).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..errors import (AgentError, KeyringUnavailable, NhsoNotConfigured, NhsoRejected,
                      NhsoTokenMissing, NhsoUnverified, OutboxUnavailable)
from .client import NhsoClient
from .outbox import Claim, Outbox
from .sender import ClaimSender
from .settings import NhsoSettings
from .token import TokenStore
from .validation import BANGKOK, SERVICE_CODES, validate_claim, validate_confirm_save

log = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, Any]], None]
TOKEN_CACHE_SECONDS = 30.0      # a token set with the CLI reaches a running agent this fast
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


class NhsoService:
    def __init__(self, settings: NhsoSettings, *, token_store: TokenStore | None = None,
                 publish: Publish | None = None,
                 token_check_interval: float = TOKEN_CACHE_SECONDS) -> None:
        self.settings = settings
        self.token_store = token_store or TokenStore()
        self.listeners: list[Publish] = [publish] if publish else []
        self.outbox = Outbox(settings.outbox_path)
        self.client = NhsoClient(settings, self.token)
        self.sender = ClaimSender(settings, self.outbox, self.client, self.publish,
                                  on_token_invalid=self.forget_token)
        self.settings_error: str | None = None   # why the settings files were not usable
        self._token: tuple[float, str | None] | None = None
        self._token_seen: str | None = None
        self.token_check_interval = token_check_interval
        self._watch: asyncio.Task[None] | None = None
        self._coverage: OrderedDict[tuple[str, str], tuple[float, dict[str, Any]]] = OrderedDict()
        self._confirmed: OrderedDict[str, tuple[dict[str, Any], dict[str, Any]]] = OrderedDict()

    async def start(self) -> None:
        try:
            await self.outbox.open()
        except OutboxUnavailable as exc:
            # Claims need the outbox, reading cards does not: the agent stays up and each
            # claim is refused with outbox_unavailable and this reason.
            log.error("claim outbox unavailable: %s", exc.detail)
        await self.client.start()
        if self.outbox.is_open:
            await self.sender.start()
        self._watch = asyncio.create_task(self._watch_token(), name="nhso-token-watch")

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self.sender.stop()
        await self.client.close()
        await self.outbox.close()

    # -- events -------------------------------------------------------------------------

    def publish(self, type_: str, payload: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            try:
                listener(type_, payload)
            except Exception:  # noqa: BLE001 - a broken listener must not stop delivery
                log.exception("event listener failed for %s", type_)

    # -- token --------------------------------------------------------------------------

    async def stored_token(self) -> str | None:
        now = time.monotonic()
        if self._token is None or self._token[0] < now:
            value = await asyncio.to_thread(self.token_store.get)
            self._token = (now + TOKEN_CACHE_SECONDS, value)
            if value and value != self._token_seen and self._token_seen is not None:
                # A new token (``token set`` in another process): claims that waited for
                # one are tried now rather than after ``tokenRetry``.
                log.info("NHSO token changed; retrying queued claims")
                await self.outbox.wake_all()
                self.sender.wake()
            self._token_seen = value or ""
        return self._token[1]

    async def _watch_token(self) -> None:
        while True:
            await asyncio.sleep(self.token_check_interval)
            self._token = None
            try:
                await self.stored_token()
            except AgentError as exc:
                log.debug("token check: %s", exc.code)

    async def token(self) -> str:
        value = await self.stored_token()
        if not value:
            raise NhsoTokenMissing()
        return value

    def forget_token(self) -> None:
        """Re-read the keyring at the next call (after NHSO refused the token)."""
        self._token = None

    async def token_configured(self) -> bool | None:
        """True/False, or None when the keyring cannot be asked."""
        try:
            return bool(await self.stored_token())
        except KeyringUnavailable:
            return None

    # -- claims -------------------------------------------------------------------------

    async def submit_claim(self, body: Any) -> tuple[Claim, bool]:
        claim_body = validate_claim(body, self.settings)
        missing = [name for name in ("hcode", "sourceId", "recorderPid")
                   if not claim_body.get(name)]
        if missing:
            raise NhsoNotConfigured(self.settings_error or "not set: " + ", ".join(missing))
        token_hcode = self.settings.token_hcode
        if token_hcode and claim_body["hcode"] != token_hcode:
            # NHSO would refuse every one of them: better to say so now.
            raise NhsoNotConfigured(f"the token is for hcode {token_hcode}, the claim for "
                                    f"{claim_body['hcode']}")
        await self.token()
        claim, created = await self.outbox.submit(claim_body)
        if created:
            self.publish("claim.queued", {"id": claim.id, "transactionId": claim.transaction_id,
                                          "status": claim.status})
            self.sender.wake()
        return claim, created

    async def retry_claims(self, status: str) -> dict[str, int]:
        """Send waiting claims now; with ``failed``, also queue refused claims again.

        A refused claim never reached NHSO's records, so sending it again cannot make a
        duplicate; it helps when the refusal came from a cause that is now fixed.
        """
        requeued = await self.outbox.requeue_failed() if status == "failed" else []
        for claim in requeued:
            self.publish("claim.queued", {"id": claim.id, "transactionId": claim.transaction_id,
                                          "status": "queued"})
        await self.outbox.wake_all()
        self.sender.wake()
        counts = await self.outbox.counts()
        return {"requeued": len(requeued), "queued": counts.get("queued", 0)}

    async def get_claim(self, claim_id: str) -> Claim | None:
        return await self.outbox.get(claim_id)

    async def list_claims(self, *, day: str | None, statuses: tuple[str, ...],
                          limit: int) -> list[Claim]:
        return await self.outbox.list(day=day, statuses=statuses, limit=limit)

    async def status(self) -> dict[str, Any]:
        return {"settings": self.settings.public_view(),
                "missing": self.settings.missing_for_claims(),
                "settingsError": self.settings_error,
                "tokenConfigured": await self.token_configured(),
                "outbox": await self.outbox.counts()}

    # -- lookups ------------------------------------------------------------------------

    async def authen_status(self, pid: str, day: str,
                            service_code: str | None = None) -> dict[str, Any]:
        return await self.client.check_authen_status(pid, day, service_code)

    async def authen_codes(self, pid: str) -> list[dict[str, Any]]:
        """Today's authen / claim codes of a person, newest first, in the callers' shape."""
        day = dt.datetime.now(BANGKOK).date().isoformat()
        answer = await self.client.check_authen_status(pid, day)
        items = []
        for h in answer.get("serviceHistories") or []:
            if not isinstance(h, dict) or not h.get("claimCode"):
                continue
            service = h.get("service") if isinstance(h.get("service"), dict) else {}
            hospital = h.get("hospital") if isinstance(h.get("hospital"), dict) else {}
            items.append({"claimType": service.get("code"), "claimCode": h["claimCode"],
                          "hcode": hospital.get("hcode"),
                          "claimDateTime": h.get("serviceDateTime"),
                          "checkDate": local_now()})
        items.sort(key=lambda i: str(i["claimDateTime"] or ""), reverse=True)
        return items

    async def coverage_for(self, pid: str) -> dict[str, Any] | None:
        """Coverage fields for ``/api/smartcard/read``; None when no token is configured.

        Raises a typed AgentError when NHSO cannot answer.
        """
        try:
            if not await self.stored_token():
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

    # -- compat confirm-save --------------------------------------------------------------

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
        except (NhsoTokenMissing, KeyringUnavailable):
            raise
        except AgentError as exc:
            raise NhsoUnverified(f"{exc.code}: {exc.detail or exc.info.message_en}") from None
        code = answer.get("authenCode") or answer.get("claimCode")
        if not (isinstance(code, str) and code.startswith("PP")):
            raise NhsoUnverified("the answer holds no PP authen code")
        result = {"pid": data["pid"], "claimType": data["claimType"],
                  "correlationId": data["correlationId"], "createdDate": local_now(),
                  "claimCode": code}
        for name in ("hn", "hcode", "mobile"):
            if data.get(name):
                result[name] = data[name]
        self._confirmed[data["correlationId"]] = (data, result)
        while len(self._confirmed) > CONFIRM_CACHE_SIZE:
            self._confirmed.popitem(last=False)
        return dict(result)
