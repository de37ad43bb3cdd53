"""HTTP calls to NHSO with the hospital's token.

TLS is verified against the operating system's trust store (``truststore``), every call has
a connect and a total timeout, and failures become typed errors. ``NhsoUnavailable`` carries
``in_doubt``: True when the request may have reached NHSO (a timeout after sending, a dropped
connection, a 5xx), which the sender resolves with Check Authen Status before sending again.
Neither the token nor any body is logged.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import truststore

from .. import __version__
from ..errors import (
    AgentError,
    NhsoEmptyReply,
    NhsoProxyPage,
    NhsoRejected,
    NhsoTlsFailed,
    NhsoTokenInvalid,
    NhsoUnavailable,
    NhsoUnverified,
)
from .settings import NhsoSettings

log = logging.getLogger(__name__)

INVALID_TOKEN = "invalid token"
TokenProvider = Callable[[], Awaitable[str]]


def json_object(value: Any) -> dict[str, Any]:
    """``value`` when NHSO sent an object there, else an empty one (fields may be absent,
    null or of another type in the field)."""
    return value if isinstance(value, dict) else {}


def unavailable(detail: str, *, in_doubt: bool,
                kind: type[NhsoUnavailable] = NhsoUnavailable) -> NhsoUnavailable:
    exc = kind(detail)
    exc.in_doubt = in_doubt
    return exc


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def html_page(content_type: str, text: str) -> str | None:
    """The title (or "web page") when a reply is an HTML page: a hospital proxy's or
    firewall's error page, a captive portal; never NHSO's JSON."""
    head = text.lstrip()[:64].lower()
    if "html" not in content_type.lower() and not head.startswith(("<!doctype html", "<html")):
        return None
    match = _TITLE.search(text[:4096])
    title = " ".join(match.group(1).split())[:120] if match else ""
    return title or "web page"


def tls_failure(what: str, exc: aiohttp.ClientError) -> NhsoTlsFailed | None:
    """Which certificate or protocol failed, when a connection failed in TLS."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert = exc.certificate_error
        reason = getattr(cert, "verify_message", None) or getattr(cert, "reason", None) \
            or str(cert)
        detail = f"{what}: the server's certificate was refused ({reason}); Certificate " \
                 f"of {exc.host}:{exc.port}"
    elif isinstance(exc, aiohttp.ClientSSLError):
        cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
        reason = getattr(cause, "reason", None) or str(cause)
        detail = f"{what}: TLS handshake failed ({reason})"
    else:
        return None
    failed = NhsoTlsFailed(detail)
    failed.in_doubt = False              # nothing was sent before the handshake
    return failed


def is_in_doubt(exc: BaseException) -> bool:
    return bool(getattr(exc, "in_doubt", False))


def nhso_message(body: Any) -> str:
    """NHSO's own words from an error body: one of error, message, dataError, errors[]."""
    if isinstance(body, str):
        return body.strip()[:300]
    if not isinstance(body, dict):
        return ""
    parts: list[str] = []
    for key in ("message", "error", "dataError"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            parts.append(value.strip())
        elif isinstance(value, (list, dict)) and value:
            parts.append(nhso_message({"errors": value if isinstance(value, list) else [value]}))
    errors = body.get("errors")
    if isinstance(errors, list):
        for item in errors[:10]:
            if isinstance(item, str):
                parts.append(item)
            elif isinstance(item, dict):
                text = (item.get("message") or item.get("defaultMessage")
                        or item.get("error") or "")
                where = item.get("field") or ""
                if text:
                    parts.append(f"{where}: {text}" if where else str(text))
    seen: list[str] = []
    for part in parts:
        if part and part not in seen:
            seen.append(part)
    return "; ".join(seen)[:500]


@dataclass(frozen=True)
class ClaimAnswer:
    authen_code: str
    seq: str | None


def make_ssl_context() -> ssl.SSLContext:
    # The OS store, so a hospital's own TLS-inspecting proxy CA (installed by IT) is trusted
    # like in the browser, and nothing is ever unverified.
    return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class NhsoClient:
    def __init__(self, settings: NhsoSettings, token: TokenProvider) -> None:
        self.settings = settings
        self._token = token
        self._session: aiohttp.ClientSession | None = None
        # (call, outcome, seconds) after every request; the assembly connects /metrics.
        self.observe: Callable[[str, str, float], None] | None = None
        # (accepted, NHSO's words) after every answer that says whether the token works.
        self.on_token: Callable[[bool, str], None] | None = None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=make_ssl_context(),
                                             limit=self.settings.sender_concurrency + 8)
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=True,   # hospitals often need their proxy
                timeout=aiohttp.ClientTimeout(total=self.settings.request_timeout,
                                              sock_connect=self.settings.connect_timeout),
                headers={"User-Agent": f"thaicard-agent/{__version__}",
                         "Accept": "application/json"})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, url: str, *, what: str,
                    params: dict[str, str] | None = None,
                    json_body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """Status and parsed body. Raises NhsoUnavailable / NhsoTokenInvalid.

        Each call's outcome and duration go to ``observe`` (the /metrics counters)."""
        started = time.monotonic()
        outcome = "error"
        try:
            status, body = await self._request(method, url, what=what, params=params,
                                               json_body=json_body)
            outcome = "ok" if status < 400 else f"http_{status // 100}xx"
            return status, body
        except AgentError as exc:
            outcome = exc.code
            raise
        finally:
            if self.observe is not None:
                self.observe(what, outcome, time.monotonic() - started)

    async def _request(self, method: str, url: str, *, what: str,
                       params: dict[str, str] | None,
                       json_body: dict[str, Any] | None) -> tuple[int, Any]:
        await self.start()
        assert self._session is not None
        token = await self._token()
        headers = {"Authorization": f"Bearer {token}"}
        sent = False
        try:
            async with self._session.request(method, url, params=params, json=json_body,
                                             headers=headers) as resp:
                sent = True
                text = await resp.text(errors="replace")
                status = resp.status
                content_type = resp.headers.get("Content-Type", "")
        except aiohttp.ClientSSLError as exc:
            # Never retried with weaker settings: the message says what to fix.
            raise (tls_failure(what, exc)
                   or unavailable(f"{what}: {type(exc).__name__}", in_doubt=False)) from None
        except aiohttp.ClientConnectorError as exc:
            # Nothing reached NHSO: the connection was never made.
            raise unavailable(f"{what}: cannot connect ({type(exc).__name__})",
                              in_doubt=False) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            connect_timeout = isinstance(exc, getattr(aiohttp, "ConnectionTimeoutError", ()))
            raise unavailable(f"{what}: {type(exc).__name__}",
                              in_doubt=sent or not connect_timeout) from None
        # NHSO replies may start with a UTF-8 BOM (docs/reference.md); json.loads refuses it, and
        # a success read as text would be taken for a refusal of a claim NHSO recorded.
        text = text.removeprefix("\ufeff")
        page = html_page(content_type, text)
        if page is not None:
            # Not NHSO's answer (so not a verdict on the token either). A 4xx page is a
            # proxy that kept the request; anything else may have passed it on to NHSO.
            raise unavailable(f"{what}: HTTP {status} \"{page}\" instead of NHSO's answer "
                              f"(a proxy or firewall answered)", in_doubt=not 400 <= status < 500,
                              kind=NhsoProxyPage)
        try:
            body: Any = json.loads(text) if text.strip() else None
        except ValueError:
            body = text
        message = nhso_message(body)
        if status in (401, 403) or INVALID_TOKEN in message.lower():
            self._token_verdict(False, message or f"HTTP {status}")
            raise NhsoTokenInvalid(message or f"HTTP {status}")
        if status >= 500:
            raise unavailable(f"{what}: HTTP {status}" + (f" {message}" if message else ""),
                              in_doubt=True)
        if body is None:
            # NHSO answers an empty body when the token has expired (docs/reference.md).
            raise unavailable(f"{what}: HTTP {status} with an empty body (NHSO does this when "
                              f"the token has expired)", in_doubt=method != "GET",
                              kind=NhsoEmptyReply)
        self._token_verdict(True, "")
        return status, body

    def _token_verdict(self, accepted: bool, message: str) -> None:
        if self.on_token is not None:
            self.on_token(accepted, message)

    async def send_claim(self, claim: dict[str, Any]) -> ClaimAnswer:
        status, body = await self._call("POST", self.settings.urls.claim_url,
                                        what="close claim", json_body=claim)
        if 200 <= status < 300 and isinstance(body, dict):
            code = body.get("authenCode")
            if isinstance(code, str) and code.startswith("EP"):
                seq = body.get("seq")
                return ClaimAnswer(code, None if seq is None else str(seq))
        message = nhso_message(body)
        if 400 <= status < 500 or (message and status < 300):
            raise NhsoRejected(message or f"HTTP {status}")
        # A success status with no code: NHSO may well have recorded it.
        raise unavailable(f"close claim: unexpected answer HTTP {status}", in_doubt=True)

    async def check_authen_status(self, pid: str, service_date: str,
                                  service_code: str | None = None) -> dict[str, Any]:
        params = {"personalId": pid, "serviceDate": service_date}
        if service_code:
            params["serviceCode"] = service_code
        status, body = await self._call("GET", self.settings.urls.authen_status_url,
                                        what="check authen status", params=params)
        return self._json_object(status, body, "check authen status")

    async def right_search(self, pid: str, check_date: str) -> dict[str, Any]:
        status, body = await self._call(
            "GET", self.settings.urls.right_search_url, what="right search",
            params={"pid": pid, "checkDate": f"{check_date}T00:00:00"})
        return self._json_object(status, body, "right search")

    async def request_authen_code(self, body: dict[str, Any]) -> dict[str, Any]:
        status, answer = await self._call("POST", self.settings.urls.authen_code_url,
                                          what="authen code", json_body=body)
        if status in (404, 405):
            # No such API where public code says it is: that is the unverified part, not a
            # refusal of this request by NHSO.
            raise NhsoUnverified(f"authen code: HTTP {status}")
        return self._json_object(status, answer, "authen code")

    @staticmethod
    def _json_object(status: int, body: Any, what: str) -> dict[str, Any]:
        if 200 <= status < 300 and isinstance(body, dict):
            return body
        message = nhso_message(body)
        if 400 <= status < 500:
            raise NhsoRejected(message or f"{what}: HTTP {status}")
        raise unavailable(f"{what}: unexpected answer HTTP {status}", in_doubt=False)
