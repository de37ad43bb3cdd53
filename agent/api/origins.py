"""``POST /v1/allowed-origins``: the status page's "allow this page" button.

Staff see on the status page which pages were refused (``/v1/status`` ``refusals``); an
admin, or the user where the admin policy does not fix ``allowedOrigins``, allows one from
there. Only the agent's own page (or a local program, no ``Origin``) may do it: a page that
is allowed already must not be able to let others in. The origin takes effect at once and
is written to the user's config file for the next start.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..config import ConfigInvalid, normalize_origin
from .keys import ALLOW_ORIGIN
from .refusals import REFUSALS
from .responses import error, json_response
from .security import bound_port, read_json


def own_origins(port: int) -> frozenset[str]:
    return frozenset({f"http://127.0.0.1:{port}", f"http://localhost:{port}",
                      f"http://[::1]:{port}"})


async def allow_origin(request: web.Request) -> web.Response:
    sent = request.headers.get("Origin")
    if sent is not None and sent not in own_origins(bound_port(request)):
        raise error("origin_not_allowed", "only the agent's own status page may allow a page")
    body = await read_json(request)
    if not isinstance(body, dict) or set(body) != {"origin"} or \
            not isinstance(body["origin"], str):
        raise error("bad_request", 'the body must be {"origin": "https://..."}')
    try:
        origin = normalize_origin(body["origin"])
    except ConfigInvalid as exc:
        raise error("bad_request", str(exc.detail or exc)) from None
    save = request.app.get(ALLOW_ORIGIN)
    if save is None:
        raise error("not_found", "allowing pages is not available in this agent")
    path = await asyncio.to_thread(save, origin)
    refusals = request.app.get(REFUSALS)
    if refusals is not None:
        refusals.allowed.add(origin)
        refusals.forget("origin", origin)
    return json_response({"origin": origin, "allowed": True, "savedTo": str(path)})


def setup_origins(app: web.Application) -> None:
    app.router.add_post("/v1/allowed-origins", allow_origin)
