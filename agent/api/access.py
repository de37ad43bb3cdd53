"""Who is calling, and what it may do: the caller's scopes and each route's scope.

A request is one of:

* a page on an allowed origin (``Origin`` present): the origin's scopes from the config
  (``originScopes``, else ``defaultScopes``; the agent's own status page: all);
* a local program, or the user typing the URL (no ``Origin``, and ``Sec-Fetch-Site`` absent,
  ``none`` or ``same-origin``): all scopes;
* except a browser too old to send ``Sec-Fetch-*`` (its ``User-Agent`` says ``Mozilla/``)
  making a GET without ``Origin``: that is how an ``<img>`` or ``<script>`` of any site
  reaches us in such a browser, so it gets the card routes only (answers it cannot read,
  and no token spent). A local program that calls itself a browser adds the header
  ``X-Thaicard-Client`` (a page cannot add it without a CORS preflight, which carries
  ``Origin``). A POST without ``Origin`` is never a page: JSON bodies need a preflight.

Routes that spend the hospital's token (``nhso``, ``claims``) also refuse what a browser
marks as a cross-site navigation or no-cors load: only a page's own ``fetch`` may call them.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_urldispatcher import MatchInfoError

from ..config import Config
from ..errors import AgentError
from ..scopes import ALL_SCOPES
from .limits import LOCAL
from .query import parse_flag

# Each route's scope, by its path template. Routes without card data are public (None).
# A route missing here needs every scope: a new route is closed until it is listed.
ROUTE_SCOPES: dict[str, str | None] = {
    "/": None, "/kiosk": None, "/static/{file}": None, "/v1/client.js": None,
    "/v1/openapi.json": None,
    "/api/smartcard/terminals": "card", "/api/smartcard/read": "card",
    "/api/smartcard/read-card-only": "card", "/api/preference": "card",
    "/api/api/preference": "card",
    "/v1/status": "card", "/v1/readers": "card", "/v1/card": "card",
    "/v1/readers/{name}/card": "card", "/v1/demo/card": "card",
    "/v1/readers/{name}/photo": "photo",
    "/v1/events": "events",
    "/v1/nhso/authen-status": "nhso", "/v1/nhso/status": "nhso",
    "/api/nhso-service/latest-authen-code/{pid}": "nhso",
    "/api/nhso-service/latest-5-authen-code-all-hospital/{pid}": "nhso",
    "/v1/claims": "claims", "/v1/claims/retry": "claims", "/v1/claims/{id}": "claims",
    "/v1/claims/{id}/review": "claims",
    "/api/nhso-service/confirm-save": "claims",
    "/v1/visits": "claims", "/v1/visits/{id}": "claims", "/v1/visits/{id}/confirm": "claims",
    # A coverage lookup at NHSO for any citizen id: spends the hospital's token.
    "/api/smartcard/probe/{pid}": "nhso",
    "/api/nhso-service/save-as-draft": "claims",
    # Only the status page and local programs (which hold every scope) may allow a page.
    "/v1/allowed-origins": "*",
    # The admin's views: counts and checks, no card data (monitoring reads them locally).
    "/metrics": None, "/doctor": "*", "/v1/doctor": "*",
}
EVERY = "*"
# Query flags that add the photo to a card route's answer.
PHOTO_FLAGS = {"/api/smartcard/read": "readImageFlag",
               "/api/smartcard/read-card-only": "readImageFlag",
               "/v1/card": "photo", "/v1/readers/{name}/card": "photo", "/v1/events": "photo"}
TOKEN_SCOPES = frozenset({"nhso", "claims"})
OLD_BROWSER_SCOPES = frozenset({"card"})
TRUSTED_FETCH_SITES = ("same-origin", "none")
PAGE_FETCH_MODES = ("cors", "same-origin")
LOCAL_CLIENT_HEADER = "X-Thaicard-Client"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

# What the guard learnt about the caller, for handlers (the WebSocket's photo filter).
GRANTED = web.RequestKey("granted_scopes", frozenset)


@dataclass(frozen=True)
class Caller:
    key: str                    # for per-client limits and refusal counts
    scopes: frozenset[str]


def route_template(request: web.Request) -> str | None:
    """The matched route's path template; None when no route matched."""
    match = request.match_info
    if isinstance(match, MatchInfoError):
        return None
    resource = match.route.resource
    return resource.canonical if resource is not None else None


def required_scopes(request: web.Request) -> set[str]:
    """The scopes this request needs (empty: public, or no such route)."""
    template = route_template(request)
    if template is None:
        return set()
    scope = ROUTE_SCOPES.get(template, EVERY)
    if scope is None:
        return set()
    if scope == EVERY:
        return set(ALL_SCOPES)
    needed = {scope}
    flag = PHOTO_FLAGS.get(template)
    if flag is not None and flag in request.query:
        try:
            if parse_flag(request.query[flag], flag):
                needed.add("photo")
        except AgentError:
            pass                       # a bad flag is the handler's 400 to answer
    return needed


def has_fetch_metadata(request: web.Request) -> bool:
    return any(name.lower().startswith("sec-fetch-") for name in request.headers)


def looks_like_browser(request: web.Request) -> bool:
    return "mozilla/" in request.headers.get("User-Agent", "").lower()


def caller_of(request: web.Request, config: Config, port: int, *,
              loopback_v6: bool) -> Caller | None:
    """The caller, or None when it is not allowed at all (403 origin_not_allowed)."""
    origin = request.headers.get("Origin")
    if origin is not None:
        if origin not in config.origins_for(port, loopback_v6=loopback_v6):
            return None
        return Caller(origin, config.scopes_for(origin, port, loopback_v6=loopback_v6))
    if request.headers.get("Sec-Fetch-Site", "none") not in TRUSTED_FETCH_SITES:
        return None
    if (request.method in SAFE_METHODS and not has_fetch_metadata(request)
            and looks_like_browser(request) and LOCAL_CLIENT_HEADER not in request.headers):
        return Caller("(browser without Origin)", OLD_BROWSER_SCOPES)
    return Caller(LOCAL, ALL_SCOPES)


def page_fetch_only(request: web.Request, needed: set[str]) -> bool:
    """False for a cross-site navigation or no-cors load of a token-spending route."""
    if not needed & TOKEN_SCOPES:
        return True
    site = request.headers.get("Sec-Fetch-Site")
    mode = request.headers.get("Sec-Fetch-Mode")
    if site in (None, *TRUSTED_FETCH_SITES) or mode is None:
        return True
    return mode in PAGE_FETCH_MODES
