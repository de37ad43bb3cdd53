"""The status page (``/``), the kiosk (``/kiosk``), their assets (``/static/...``) and
the JavaScript client."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from .security import bound_port

STATIC_FILES = {
    "status.js": "text/javascript",
    "status.css": "text/css",
    "example.html": "text/html",
    "kiosk.js": "text/javascript",
    "kiosk.css": "text/css",
}


def _read(name: str) -> bytes:
    return resources.files("agent").joinpath("static", name).read_bytes()


def _csp(port: int) -> str:
    sockets = " ".join(f"ws://{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]"))
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self' {sockets}; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'none'")


def _page(body: bytes, content_type: str, request: web.Request) -> web.Response:
    resp = web.Response(body=body, content_type=content_type, charset="utf-8")
    resp.headers["Content-Security-Policy"] = _csp(bound_port(request))
    resp.headers["X-Frame-Options"] = "DENY"
    return resp


async def index(request: web.Request) -> web.Response:
    return _page(_read("index.html"), "text/html", request)


async def kiosk(request: web.Request) -> web.Response:
    """The self-service kiosk (docs/kiosk.md). The agent's own origin, so it holds every
    scope like the status page; the CSP and ``frame-ancestors 'none'`` keep other sites
    from framing it or reading what it shows."""
    return _page(_read("kiosk.html"), "text/html", request)


async def static_file(request: web.Request) -> web.Response:
    name = request.match_info["file"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return _page(_read(name), STATIC_FILES[name], request)


async def client_js(request: web.Request) -> web.Response:
    resp = web.Response(body=_read("client.js"), content_type="text/javascript",
                        charset="utf-8")
    resp.headers["Cache-Control"] = "no-cache"
    return resp


def setup_pages(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/kiosk", kiosk)
    app.router.add_get("/static/{file}", static_file)
    app.router.add_get("/v1/client.js", client_js)
