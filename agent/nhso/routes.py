"""HTTP routes of the NHSO room, mounted on the agent's app by ``mount_nhso(app, service)``.

Origin/Host checks, CORS, JSON-only POST and body limits are middleware of the main app;
these handlers still validate every body strictly. ``/v1/...`` answers errors in the one
body of every ``/v1`` route (``agent.api.responses.error_body``: ``code``, both languages,
``errors`` for field problems); the compat ``/api/nhso-service/...`` routes answer the
Spring Boot shape the old agent's callers parse. The OpenAPI fragment of these routes is in
``openapi.py`` beside this file.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from ..api.query import is_ascii_digits
from ..api.responses import error_response, public_text
from ..api.security import read_body
from ..api.strict_json import loads as strict_loads
from ..errors import AgentError, ClaimNotFound
from .claims import Publish
from .lookups import local_now
from .openapi import document_nhso
from .outbox import STATUSES
from .service import NhsoService
from .settings import NhsoSettings, SettingsError, load_settings
from .token import TokenStore
from .validation import SERVICE_CODES, ValidationFailed, parse_date, validate_pid_param

log = logging.getLogger(__name__)

NHSO_SERVICE = web.AppKey("nhso_service", NhsoService)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_LIST = 1000


def _bad(field: str, message: str, message_th: str) -> ValidationFailed:
    return ValidationFailed([{"field": field, "message": message, "message_th": message_th}])


async def _json_body(request: web.Request) -> Any:
    # The agent's one strict reader (depth, surrogates, number sizes, read timeout).
    try:
        return strict_loads(await read_body(request))
    except AgentError as exc:
        if exc.code != "invalid_json":
            raise
        raise _bad("", f"the body is not valid JSON ({exc.detail})",
                   "ข้อมูลไม่ใช่ JSON ที่ถูกต้อง") from None


def v1(handler: Handler) -> Handler:
    """The one /v1 error body, also when the room is mounted without the agent's guard."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except AgentError as exc:
            return error_response(exc, request)
    return wrapped


def spring_error(request: web.Request, status: int, message: str,
                 errors: list[dict[str, Any]] | None = None) -> web.Response:
    body: dict[str, Any] = {
        "timestamp": dt.datetime.now().astimezone().isoformat(timespec="milliseconds"),
        "status": status, "error": HTTPStatus(status).phrase, "message": message,
        "path": request.path}
    if errors is not None:
        body["errors"] = errors
    return web.json_response(body, status=status)


def compat(handler: Handler) -> Handler:
    """The old agent's error shape: 400 for validation, 500 for every failure behind it."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ValidationFailed as exc:
            return spring_error(request, 400, str(exc), [
                {"field": e["field"], "defaultMessage": f"{e['field']} {e['message']}".strip(),
                 "defaultMessageTh": e["message_th"]} for e in exc.errors])
        except AgentError as exc:
            detail = f" ({public_text(str(exc.detail))})" if exc.detail else ""
            return spring_error(request, 500,
                                f"{exc.info.message_en}{detail} / {exc.info.message_th} "
                                f"[{exc.code}]")
    return wrapped


def _service(request: web.Request) -> NhsoService:
    return request.app[NHSO_SERVICE]


# -- /v1 ---------------------------------------------------------------------------------

@v1
async def post_claim(request: web.Request) -> web.Response:
    claim, created = await _service(request).claims.submit(await _json_body(request))
    return web.json_response({"id": claim.id, "transactionId": claim.transaction_id,
                              "status": claim.status, "duplicate": not created}, status=202)


RETRYABLE = ("queued", "failed")


@v1
async def retry_claims(request: web.Request) -> web.Response:
    body = await _json_body(request)
    status = body.get("status") if isinstance(body, dict) else None
    if not isinstance(body, dict) or set(body) - {"status"} or status not in RETRYABLE:
        raise _bad("status", "must be \"queued\" (send waiting claims now) or \"failed\" "
                   "(queue refused claims again)", "ต้องเป็น queued หรือ failed")
    return web.json_response(await _service(request).claims.retry(status))


@v1
async def get_claim(request: web.Request) -> web.Response:
    claim = await _service(request).claims.get(request.match_info["id"])
    if claim is None:
        raise ClaimNotFound()
    return web.json_response(claim.view())


@v1
async def list_claims(request: web.Request) -> web.Response:
    query = request.query
    unknown = sorted(set(query) - {"date", "status", "limit"})
    if unknown:
        raise _bad(unknown[0], "is not a known parameter", "ไม่รู้จักพารามิเตอร์นี้")
    day = parse_date(query["date"]) if query.get("date") else None
    statuses: tuple[str, ...] = ()
    if query.get("status"):
        statuses = tuple(s.strip() for s in query["status"].split(",") if s.strip())
        bad = [s for s in statuses if s not in STATUSES]
        if bad:
            raise _bad("status", "must be one or more of " + ", ".join(STATUSES),
                       "ต้องเป็น " + ", ".join(STATUSES))
    limit = MAX_LIST
    if query.get("limit"):
        if not is_ascii_digits(query["limit"]) or not 1 <= int(query["limit"]) <= MAX_LIST:
            raise _bad("limit", f"must be 1-{MAX_LIST}", f"ต้องอยู่ระหว่าง 1-{MAX_LIST}")
        limit = int(query["limit"])
    claims = await _service(request).claims.find(day=day, statuses=statuses, limit=limit)
    return web.json_response({"claims": [c.view() for c in claims], "count": len(claims)})


@v1
async def authen_status(request: web.Request) -> web.Response:
    query = request.query
    pid = validate_pid_param(query.get("pid"))
    day = parse_date(query.get("date"))
    code = query.get("serviceCode") or None
    if code is not None and code not in SERVICE_CODES:
        raise _bad("serviceCode", "must be one of " + ", ".join(SERVICE_CODES),
                   "ต้องเป็นรหัสบริการที่ สปสช. กำหนด")
    return web.json_response(await _service(request).lookups.authen_status(pid, day, code))


@v1
async def nhso_status(request: web.Request) -> web.Response:
    status = await _service(request).status()
    if status.get("settingsError"):            # names a settings file: no folders to a page
        status["settingsError"] = public_text(str(status["settingsError"]))
    return web.json_response(status)


# -- compat /api/nhso-service ---------------------------------------------------------------

@compat
async def latest_authen_code(request: web.Request) -> web.Response:
    service = _service(request)
    pid = validate_pid_param(request.match_info["pid"])
    ours = [i for i in await service.lookups.authen_codes(pid)
            if str(i["hcode"]) == service.settings.hcode]
    if ours:
        return web.json_response(ours[0])
    # The old agent leaves claimCode out when there is none; callers test for the key.
    return web.json_response({"hcode": service.settings.hcode or None,
                              "checkDate": local_now()})


@compat
async def latest_5_authen_codes(request: web.Request) -> web.Response:
    pid = validate_pid_param(request.match_info["pid"])
    return web.json_response((await _service(request).lookups.authen_codes(pid))[:5])


@compat
async def confirm_save(request: web.Request) -> web.Response:
    answer = await _service(request).lookups.confirm_save(await _json_body(request))
    return web.json_response(answer)


def resolve_settings(config: Any = None) -> tuple[NhsoSettings, str | None]:
    """The settings, and why the configured ones could not be used (if so).

    ``config``: an ``NhsoSettings``, or None to load them from the files and environment.
    """
    if isinstance(config, NhsoSettings):
        return config, None
    try:
        return load_settings(), None
    except SettingsError as exc:
        # Broken NHSO settings must not take the card reader down with them: NHSO calls
        # are refused as "not configured", with the reason, until the file is fixed.
        log.error("NHSO settings ignored: %s", exc.detail)
        return NhsoSettings(), str(exc.detail)


def mount_nhso(app: web.Application, service: NhsoService) -> None:
    """The routes of ``service``, its life cycle (opened at startup, closed at cleanup) and
    its part of the OpenAPI document. ``app[NHSO_SERVICE]`` is the service."""
    app[NHSO_SERVICE] = service

    async def nhso_context(app: web.Application) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app.cleanup_ctx.append(nhso_context)
    r = app.router
    r.add_post("/v1/claims", post_claim)
    r.add_get("/v1/claims", list_claims)
    r.add_post("/v1/claims/retry", retry_claims)
    r.add_get("/v1/claims/{id}", get_claim)
    r.add_get("/v1/nhso/authen-status", authen_status)
    r.add_get("/v1/nhso/status", nhso_status)
    r.add_get("/api/nhso-service/latest-authen-code/{pid}", latest_authen_code)
    r.add_get("/api/nhso-service/latest-5-authen-code-all-hospital/{pid}",
              latest_5_authen_codes)
    r.add_post("/api/nhso-service/confirm-save", confirm_save)
    document_nhso(app)


def setup_nhso(app: web.Application, config: NhsoSettings | None = None, *,
               publish: Publish | None = None,
               token_store: TokenStore | None = None) -> NhsoService:
    """The NHSO room alone on ``app`` (its own tests and tools): a service from ``config``
    (or the settings files) with ``publish(type, payload)`` for claim events, mounted.
    The agent itself is assembled by ``agent.assembly``."""
    settings, problem = resolve_settings(config)
    service = NhsoService(settings, token_store=token_store, publish=publish)
    service.settings_error = problem
    mount_nhso(app, service)
    return service
