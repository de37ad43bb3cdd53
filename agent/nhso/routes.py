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
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from ..api.keys import CARD_SERVICE
from ..api.query import is_ascii_digits, parse_flag
from ..api.responses import error_response, public_text
from ..api.security import read_body
from ..api.strict_json import loads as strict_loads
from ..errors import AgentError, ClaimNotFound, CompatUnsupported, NoCard, VisitCardMismatch
from .claims import Publish
from .openapi import document_nhso
from .outbox import STATUSES
from .service import NhsoService
from .settings import NhsoSettings, SettingsError, load_settings
from .token import TokenStore
from .validation import (
    SERVICE_CODES,
    ValidationFailed,
    parse_date,
    validate_confirm_save,
    validate_pid_param,
)
from .visits import VISIT_STATUSES, Visit

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


# Failures that must end a caller's retry loop get their table status (a 4xx), not 500.
COMPAT_FINAL_STATUS = {"compat_unsupported": 400}


def spring_error(request: web.Request, status: int, message: str,
                 errors: list[dict[str, Any]] | None = None,
                 exc: AgentError | None = None,
                 keys: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = dict(keys or {})
    body.update({
        "timestamp": dt.datetime.now().astimezone().isoformat(timespec="milliseconds"),
        "status": status, "error": HTTPStatus(status).phrase, "message": message,
        "path": request.path})
    if errors is not None:
        body["errors"] = errors
    if exc is not None:
        body.update(code=exc.code, message_th=exc.info.message_th,
                    message_en=exc.info.message_en)
    return web.json_response(body, status=status,
                             dumps=lambda d: json.dumps(d, ensure_ascii=False))


def compat_error(request: web.Request, exc: AgentError,
                 keys: dict[str, Any] | None = None) -> web.Response:
    """The old agent's error body for ``exc``: 400 for validation, 500 for every failure
    behind it (a final 4xx for what must end a caller's retry loop).

    Callers show ``errors[0].defaultMessage`` (or ``message``) to staff as is, so both are
    Thai first with the English beside it; ``code`` and ``message_en`` are for programs.
    ``keys``: what the route's callers index even on a failure (null), so a script that
    reads ``body["claimType"]`` before it checks the status does not crash.
    """
    if isinstance(exc, ValidationFailed):
        errors = [{"field": e["field"],
                   "defaultMessage": f"{e['field']}: {e['message_th']}".lstrip(": "),
                   "defaultMessageEn": f"{e['field']} {e['message']}".strip()}
                  for e in exc.errors]
        thai = "; ".join(e["defaultMessage"] for e in errors)
        return spring_error(request, 400, f"{exc.info.message_th}: {thai} / {exc}",
                            errors, exc, keys)
    status = COMPAT_FINAL_STATUS.get(exc.code, 500)
    words = f": {public_text(str(exc.detail))}" if exc.detail else ""
    thai = f"{exc.info.message_th}{words}"
    return spring_error(request, status, f"{thai} / {exc.info.message_en} [{exc.code}]",
                        [{"field": "", "defaultMessage": thai,
                          "defaultMessageEn": f"{exc.info.message_en}{words}"}], exc, keys)


def compat(handler: Handler, keys: dict[str, Any] | None = None) -> Handler:
    """A compat route: its failures answer ``compat_error``."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except AgentError as exc:
            return compat_error(request, exc, keys)
    return wrapped


def _service(request: web.Request) -> NhsoService:
    return request.app[NHSO_SERVICE]


# -- /v1 ---------------------------------------------------------------------------------

@v1
async def post_claim(request: web.Request) -> web.Response:
    unknown = sorted(set(request.query) - {"newVisit"})
    if unknown:
        raise _bad(unknown[0], "is not a known parameter", "ไม่รู้จักพารามิเตอร์นี้")
    # One visit, one claim: the same visit under a new transactionId is refused unless the
    # caller says it is another visit (claim_same_visit names the existing claim).
    new_visit = parse_flag(request.query.get("newVisit", ""), "newVisit")
    claim, created = await _service(request).claims.submit(await _json_body(request),
                                                           new_visit=new_visit)
    return web.json_response({"id": claim.id, "transactionId": claim.transaction_id,
                              "status": claim.status, "duplicate": not created}, status=202)


REVIEW_ACTIONS = ("resend", "take")


@v1
async def review_claim(request: web.Request) -> web.Response:
    """Staff's choice on a claim in ``needs_review``: ``{"action": "resend"}`` (NHSO does not
    have it: send it again) or ``{"action": "take", "claimCode": "EP..."}`` (it is at NHSO
    under that listed code). Recorded with the claim (``resolution``)."""
    body = await _json_body(request)
    if not isinstance(body, dict) or set(body) - {"action", "claimCode"}:
        raise _bad("", "expected {\"action\": \"resend\"|\"take\", \"claimCode\"?}",
                   "ต้องเป็น {action, claimCode}")
    action = body.get("action")
    if action not in REVIEW_ACTIONS:
        raise _bad("action", "must be \"resend\" or \"take\"", "ต้องเป็น resend หรือ take")
    code = body.get("claimCode")
    if action == "take" and not isinstance(code, str):
        raise _bad("claimCode", "the listed code to take", "ต้องระบุรหัสที่แสดงไว้")
    if action == "resend" and code is not None:
        raise _bad("claimCode", "only with \"take\"", "ใช้กับ take เท่านั้น")
    by = public_text(request.headers.get("Origin") or "a program on this computer")[:200]
    claim = await _service(request).claims.review(request.match_info["id"], action, code, by)
    return web.json_response(claim.view())


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


# -- visits waiting for the patient's card ----------------------------------------------

MAX_CONFIRM_WAIT = 30          # seconds a confirm may wait for NHSO's answer
CARD_WAIT = 10.0               # seconds for a card just inserted to be read


def _statuses(value: str | None, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        return ()
    statuses = tuple(s.strip() for s in value.split(",") if s.strip())
    if any(s not in allowed for s in statuses):
        raise _bad("status", "must be one or more of " + ", ".join(allowed),
                   "ต้องเป็น " + ", ".join(allowed))
    return statuses


def _limit(value: str | None) -> int:
    if not value:
        return MAX_LIST
    if not is_ascii_digits(value) or not 1 <= int(value) <= MAX_LIST:
        raise _bad("limit", f"must be 1-{MAX_LIST}", f"ต้องอยู่ระหว่าง 1-{MAX_LIST}")
    return int(value)


@v1
async def post_visit(request: web.Request) -> web.Response:
    visit, created = await _service(request).visits.register(await _json_body(request))
    return web.json_response({**visit.view(), "duplicate": not created},
                             status=201 if created else 200)


@v1
async def list_visits(request: web.Request) -> web.Response:
    query = request.query
    unknown = sorted(set(query) - {"pid", "date", "status", "limit"})
    if unknown:
        raise _bad(unknown[0], "is not a known parameter", "ไม่รู้จักพารามิเตอร์นี้")
    pid = validate_pid_param(query["pid"]) if "pid" in query else None
    day = None
    if "date" in query:
        day = parse_date(None if query["date"] == "today" else query["date"])
    visits = await _service(request).visits.find(
        pid=pid, day=day, statuses=_statuses(query.get("status"), VISIT_STATUSES),
        limit=_limit(query.get("limit")))
    return web.json_response({"visits": [v.view() for v in visits], "count": len(visits)})


@v1
async def get_visit(request: web.Request) -> web.Response:
    return web.json_response((await _service(request).visits.get(request.match_info["id"])
                              ).view())


@v1
async def cancel_visit(request: web.Request) -> web.Response:
    visit = await _service(request).visits.cancel(request.match_info["id"])
    return web.json_response(visit.view())


async def require_card_of(request: web.Request, pid: str) -> None:
    """A card with this citizen id is in a reader now: the patient's card is the consent.

    Asked of the core (its door, ``CardService``), never of the caller's word.
    """
    cards = request.app.get(CARD_SERVICE)
    present = [name for name, has in cards.terminals() if has] if cards is not None else []
    if cards is None or not present:
        raise NoCard("the patient's card must be in the reader to confirm")
    for name in present:
        try:
            _, card = await cards.get_card(name, timeout=CARD_WAIT)
        except AgentError:
            continue                       # an unreadable card is not the patient's
        if card.text.citizen_id == pid:
            return
    raise VisitCardMismatch()


def _wait_seconds(request: web.Request) -> float:
    value = request.query.get("wait", "0")
    if not is_ascii_digits(value) or int(value) > MAX_CONFIRM_WAIT:
        raise _bad("wait", f"must be 0-{MAX_CONFIRM_WAIT} (seconds)",
                   f"ต้องอยู่ระหว่าง 0-{MAX_CONFIRM_WAIT} วินาที")
    return float(value)


def confirm_view(visit: Visit, claim: Any) -> dict[str, Any]:
    return {"visit": visit.view(), "claimId": claim.id, "status": claim.status,
            "claimCode": claim.authen_code,
            "error": ({"code": claim.error_code, "message": claim.error_message}
                      if claim.error_code else None)}


@v1
async def confirm_visit(request: web.Request) -> web.Response:
    """``?wait=N``: up to N seconds for NHSO's answer, so a kiosk can show the EP code."""
    unknown = sorted(set(request.query) - {"wait"})
    if unknown:
        raise _bad(unknown[0], "is not a known parameter", "ไม่รู้จักพารามิเตอร์นี้")
    wait = _wait_seconds(request)
    raw = await read_body(request)
    if raw.strip() and strict_loads(raw) != {}:
        raise _bad("", "the body must be empty or {}", "ข้อมูลต้องว่าง หรือเป็น {}")
    desk = _service(request).visits
    visit = await desk.get(request.match_info["id"])
    await require_card_of(request, visit.pid)
    visit, claim = await desk.confirm(visit.id)
    if wait:
        claim = await desk.settled(claim.id, wait) or claim
    return web.json_response(confirm_view(visit, claim))


# -- compat /api/nhso-service ---------------------------------------------------------------

# What latest-authen-code callers index, also on a failure (a fresh install has no token).
AUTHEN_KEYS = {"claimType": None, "claimCode": None, "hcode": None, "claimDateTime": None}


async def _latest_authen_code(request: web.Request) -> web.Response:
    pid = validate_pid_param(request.match_info["pid"])
    return web.json_response(await _service(request).lookups.latest_authen_code(pid))


latest_authen_code = compat(_latest_authen_code, AUTHEN_KEYS)


@compat
async def latest_5_authen_codes(request: web.Request) -> web.Response:
    pid = validate_pid_param(request.match_info["pid"])
    return web.json_response((await _service(request).lookups.authen_codes(pid))[:5])


@compat
async def confirm_save(request: web.Request) -> web.Response:
    answer = await _service(request).lookups.confirm_save(await _json_body(request))
    return web.json_response(answer)


@compat
async def save_as_draft(request: web.Request) -> web.Response:
    """The old agent's ``save-as-draft``: what it does upstream is not public.

    The body is checked like confirm-save (a caller with a wrong field learns which), then
    the answer is a final 400 in the callers' shape: a script that retried on 404 stops,
    and staff read why in ``errors[0].defaultMessage``. Nothing is sent to NHSO.
    """
    validate_confirm_save(await _json_body(request), _service(request).settings)
    raise CompatUnsupported("save-as-draft: what the NHSO agent does with it is not public")


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
    r.add_post("/v1/claims/{id}/review", review_claim)
    r.add_get("/v1/claims/{id}", get_claim)
    r.add_post("/v1/visits", post_visit)
    r.add_get("/v1/visits", list_visits)
    r.add_get("/v1/visits/{id}", get_visit)
    r.add_delete("/v1/visits/{id}", cancel_visit)
    r.add_post("/v1/visits/{id}/confirm", confirm_visit)
    r.add_get("/v1/nhso/authen-status", authen_status)
    r.add_get("/v1/nhso/status", nhso_status)
    r.add_get("/api/nhso-service/latest-authen-code/{pid}", latest_authen_code)
    r.add_get("/api/nhso-service/latest-5-authen-code-all-hospital/{pid}",
              latest_5_authen_codes)
    r.add_post("/api/nhso-service/confirm-save", confirm_save)
    r.add_post("/api/nhso-service/save-as-draft", save_as_draft)
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
