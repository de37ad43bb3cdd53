"""The HTTP guard: Host and Origin allowlists, CORS, preflights, body rules, error JSON.

Lessons of earlier localhost agents (Zoom 2019 and others), enforced here on every request,
the WebSocket upgrade included, before any handler runs:

* ``Host`` must be ``127.0.0.1:PORT``, ``localhost:PORT`` or ``[::1]:PORT`` (else 421):
  a DNS-rebinding page reaches us under its own host name and is refused.
* ``Origin``, when present, must be on the exact allowlist (else 403, no CORS headers).
  CORS alone would only hide the answer from the page; the request would still run.
* No ``Origin`` is allowed (local tools, the tray), unless the browser says the request is
  cross-site (``Sec-Fetch-Site``): an ``<img>`` on a foreign page must not get the photo.
* Each caller may use only its scopes (``access.py``; else 403 ``scope_denied``) and only so
  many requests and WebSockets at once (``limits.py``; else 429).
* Refusals are counted per caller and minute (``refusal_summary.py``), never logged one by one.
* Bodies: JSON only on POST/PUT/PATCH (415), at most 64 KiB (413), parsed by handlers
  through ``read_json`` (400 on bad JSON).
* Every failure is JSON with a stable code; no traceback ever reaches a caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_urldispatcher import MatchInfoError

from ..errors import AgentError, ScopeDenied
from ..logging_setup import loggable
from . import strict_json
from .access import GRANTED, Caller, caller_of, page_fetch_only, required_scopes, route_template
from .keys import CLIENT_LIMITS, CONFIG, LOOPBACK_V6, REFUSAL_SUMMARY
from .limits import BODY_TIMEOUT
from .refusal_summary import REFUSED
from .refusals import allowed_now, note_refusal
from .responses import error, error_response

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
ALLOWED_REQUEST_HEADERS = ("Content-Type", "Accept", "Accept-Language", "Content-Language",
                           "Cache-Control", "Pragma", "X-Requested-With", "X-Thaicard-Client")
EXPOSED_HEADERS = ("X-Coverage", "X-Request-Id")
PREFLIGHT_MAX_AGE = "600"
BODY_METHODS = ("POST", "PUT", "PATCH")

# Errors after which the connection's unread body is dropped with the connection.
UNREAD_BODY_CODES = ("request_timeout", "payload_too_large")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bound_port(request: web.Request) -> int:
    """The port the listening socket really has (an ephemeral one in tests)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if sockname:
        return int(sockname[1])
    return request.app[CONFIG].port


def allowed_hosts(port: int, *, loopback_v6: bool = True) -> frozenset[str]:
    """Host values that name the agent: ``localhost`` and ``[::1]`` only while the agent
    holds ``[::1]:port`` too (else they may reach another program)."""
    hosts = {f"127.0.0.1:{port}"}
    if loopback_v6:
        hosts |= {f"localhost:{port}", f"[::1]:{port}"}
    return frozenset(hosts)


def _status_exception_code(exc: web.HTTPException) -> str:
    return {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
            413: "payload_too_large", 415: "unsupported_media_type"}.get(
                exc.status, "bad_request" if exc.status < 500 else "internal_error")


def _cors_headers(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin,
            "Access-Control-Expose-Headers": ", ".join(EXPOSED_HEADERS)}


def _common_headers(resp: web.StreamResponse) -> None:
    headers = resp.headers
    headers.setdefault("Cache-Control", "no-store")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    # No-CORS embedding (an <img> or <script> on a foreign page) gets nothing.
    headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    vary = headers.get("Vary")
    if not vary:
        headers["Vary"] = "Origin"
    elif "origin" not in vary.lower():
        headers["Vary"] = vary + ", Origin"


def _allowed_methods(request: web.Request) -> set[str] | None:
    """Methods the matched path answers; None when no route has this path."""
    match = request.match_info
    if isinstance(match, MatchInfoError):
        exc = match.http_exception
        if isinstance(exc, web.HTTPMethodNotAllowed):
            return set(exc.allowed_methods)
        return None
    route = match.route
    methods = {route.method}
    resource = route.resource
    if resource is not None:
        methods = {r.method for r in resource}
    if "GET" in methods:
        methods.add("HEAD")
    return methods - {"*"} or None


def _preflight(request: web.Request, origin: str) -> web.StreamResponse:
    methods = _allowed_methods(request)
    if methods is None:
        return error_response(error("not_found"), request, headers=_cors_headers(origin))
    headers = _cors_headers(origin)
    headers.update({
        "Access-Control-Allow-Methods": ", ".join(sorted(methods | {"OPTIONS"})),
        "Access-Control-Allow-Headers": ", ".join(ALLOWED_REQUEST_HEADERS),
        "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
    })
    # Private Network Access (older Chromium): allowed only because the origin is.
    if request.headers.get("Access-Control-Request-Private-Network", "").lower() == "true":
        headers["Access-Control-Allow-Private-Network"] = "true"
    return web.Response(status=204, headers=headers)


def _check_body(request: web.Request) -> None:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise error("payload_too_large", f"at most {MAX_BODY} bytes")
    if request.method in BODY_METHODS and request.content_type != "application/json":
        raise error("unsupported_media_type")


def _error_for(exc: BaseException) -> tuple[AgentError, dict[str, str]]:
    """Any exception -> (typed error, extra headers)."""
    if isinstance(exc, AgentError):
        return exc, {}
    if isinstance(exc, web.HTTPException):
        extra: dict[str, str] = {}
        if isinstance(exc, web.HTTPMethodNotAllowed):
            extra["Allow"] = ", ".join(sorted(exc.allowed_methods))
        return error(_status_exception_code(exc)), extra
    return error("internal_error"), {}


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    app = request.app
    config = app[CONFIG]
    port = bound_port(request)
    v6 = app.get(LOOPBACK_V6, True)
    host = request.headers.get("Host", "").lower()
    if host not in allowed_hosts(port, loopback_v6=v6):
        return _refuse(request, error("host_not_allowed"), f"Host {host}")

    caller = caller_of(request, config, port, loopback_v6=v6)
    origin = request.headers.get("Origin")
    if caller is None and origin is not None and allowed_now(request, origin):
        # Allowed from the status page while the agent runs (also saved for the next start).
        caller = Caller(origin, config.scopes_for(origin, port, loopback_v6=v6))
    if caller is None:
        who = (f"origin {origin}" if origin is not None else
               f"no Origin, Sec-Fetch-Site {request.headers.get('Sec-Fetch-Site', '')}")
        if origin is not None:
            # Staff see it in the tray and on the status page, with "allow this page".
            note_refusal(request, "origin", origin, "origin_not_allowed")
        return _refuse(request, error("origin_not_allowed"), who)

    cors = _cors_headers(origin) if origin is not None else {}
    if (request.method == "OPTIONS" and origin is not None
            and "Access-Control-Request-Method" in request.headers):
        return _finish(_preflight(request, origin))

    needed = required_scopes(request)
    missing = needed - caller.scopes
    if missing:
        denied = ScopeDenied(f"needs the scope {', '.join(sorted(missing))}")
        if origin is not None:
            note_refusal(request, "origin", origin, "scope_denied")
        return _refuse(request, denied, caller.key, cors)
    if not page_fetch_only(request, needed):
        denied = ScopeDenied("only a page's fetch() may call this, not a link or an embed")
        return _refuse(request, denied, caller.key, cors)
    request[GRANTED] = caller.scopes

    websocket = route_template(request) == "/v1/events"
    with app[CLIENT_LIMITS].hold(caller.key, websocket=websocket,
                                 transport=request.transport) as admitted:
        if not admitted:
            what = "WebSockets" if websocket else "requests"
            busy = error("too_many_requests", f"too many {what} at once from this caller")
            return _refuse(request, busy, caller.key, cors)
        return await _run(request, handler, cors)


async def _run(request: web.Request, handler: Handler,
               cors: dict[str, str]) -> web.StreamResponse:
    try:
        _check_body(request)
        resp = await handler(request)
    except Exception as exc:
        if isinstance(exc, web.HTTPException) and exc.status < 400:
            raise                                    # redirects and the like pass through
        typed, extra = _error_for(exc)
        if not isinstance(exc, (AgentError, web.HTTPException)):
            log.error("unhandled %s on %s %s", type(exc).__name__, request.method,
                      loggable(request.path), exc_info=exc)
        resp = error_response(typed, request, headers={**extra, **cors})
        if typed.code in UNREAD_BODY_CODES:
            resp.force_close()           # the rest of the body is not waited for
        return _finish(resp)
    if resp.prepared:                                # a WebSocket or a streamed body
        return resp
    resp.headers.update(cors)
    if cors:
        # A CORS-approved answer (an allowed Origin was sent, e.g. <img crossorigin>) may
        # be embedded by that page; no-cors loads (no Origin) keep "same-origin".
        resp.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    return _finish(resp)


def _refuse(request: web.Request, exc: AgentError, who: str,
            cors: dict[str, str] | None = None) -> web.StreamResponse:
    """A refusal: counted per caller and minute (``refusal_summary.py``), not logged one by one."""
    request.app[REFUSAL_SUMMARY].record(exc.code, who, request.method, request.path)
    resp = _finish(error_response(exc, request, headers=cors))
    resp[REFUSED] = True
    return resp


def _finish(resp: web.StreamResponse) -> web.StreamResponse:
    if not resp.prepared:
        _common_headers(resp)
    return resp


async def read_body(request: web.Request) -> bytes:
    """The raw body: 413 past the limit, 408 when it does not arrive in time (a client
    that sends its headers and then trickles the body must not hold a handler forever)."""
    limits = request.app.get(CLIENT_LIMITS)
    seconds = limits.body_timeout if limits is not None else BODY_TIMEOUT
    try:
        async with asyncio.timeout(seconds):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise error("payload_too_large", f"at most {MAX_BODY} bytes") from None
    except TimeoutError:
        raise error("request_timeout", f"the body must arrive within {seconds:g} s") \
            from None
    except (ConnectionError, RuntimeError):
        # aiohttp's "Connection closed." when the caller hangs up mid-body: its problem,
        # not a failure of ours (no traceback; the answer goes nowhere anyway).
        raise error("bad_request", "the connection closed before the body arrived") \
            from None


async def read_json(request: web.Request) -> Any:
    """The request body as JSON: 413 past the limit, 408 too slow, 400 when it does not
    parse (``strict_json``: depth, surrogates, number sizes)."""
    raw = await read_body(request)
    if not raw:
        return None
    return strict_json.loads(raw)
