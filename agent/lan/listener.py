"""The opt-in second listener for HIS servers that call the workstation over the LAN.

Some HIS back ends call ``http://<workstation-ip>:8189`` from the server (the NHSO agent
listens on every interface). This listener serves them, and nothing else:

* only on the workstation addresses the admin lists (never every interface);
* only the compat card routes (terminals, read, read-card-only): no claims, no token, no
  NHSO calls by citizen id, no /v1, no WebSocket; the photo only when enabled;
* only to the listed server addresses, only with the shared key (``X-Thaicard-Key``, kept
  in the OS keyring), never to a browser (a request with ``Origin`` is refused);
* rate limited per server address; every refusal counted (``/v1/status`` and the tray).

Checks run in that order: address, browser, rate, route, key; a stranger learns nothing
about the routes or the key, and a wrong key costs a rate-limit token.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ..api.compat import Handler, card_routes
from ..api.keys import CARD_SERVICE, CONFIG, COVERAGE, LAN_STATUS
from ..api.refusals import REFUSALS, RefusalLog
from ..api.responses import error, error_response
from ..errors import AgentError
from ..nhso.token import SERVICE, TokenStore
from .settings import LanSettings, load_lan_settings

log = logging.getLogger(__name__)

KEY_HEADER = "X-Thaicard-Key"
KEY_USERNAME = "lan-key"                 # beside the NHSO token, service "thaicard-agent"
MIN_KEY_LENGTH = 16
KEY_CACHE_SECONDS = 30.0                 # a key changed in the keyring applies this fast
MAX_CLIENTS_TRACKED = 1024


def key_store() -> TokenStore:
    return TokenStore(service=SERVICE, username=KEY_USERNAME)


class SharedKey:
    """The key from the keyring, re-read at most every ``KEY_CACHE_SECONDS``."""

    def __init__(self, store: TokenStore) -> None:
        self.store = store
        self._value: str | None = None
        self._until = 0.0
        self.problem: str | None = None

    async def get(self) -> str | None:
        now = time.monotonic()
        if now >= self._until:
            try:
                value = await asyncio.to_thread(self.store.get)
                self.problem = None
            except AgentError as exc:
                value, self.problem = None, f"{exc.code}: {exc.detail or exc}"
            if value is not None and len(value) < MIN_KEY_LENGTH:
                value, self.problem = None, f"the key is shorter than {MIN_KEY_LENGTH}"
            if value is None and self.problem is None:
                self.problem = "no key in the keyring (thaicard-agent lan key set)"
            self._value, self._until = value, now + KEY_CACHE_SECONDS
        return self._value


class RateLimit:
    """A token bucket per client address: ``per_minute`` requests, refilled evenly."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str) -> bool:
        now = time.monotonic()
        tokens, stamp = self._buckets.get(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > MAX_CLIENTS_TRACKED:      # only listed clients get here
            self._buckets.pop(next(iter(self._buckets)))
        return allowed


class LanListener:
    """Built by the assembly with the main app; started and stopped with it."""

    def __init__(self, settings: LanSettings, *, key: SharedKey | None = None,
                 settings_error: str | None = None) -> None:
        self.settings = settings
        self.key = key or SharedKey(key_store())
        self.rate = RateLimit(settings.rate_per_minute)
        self.settings_error = settings_error
        self.listening: list[str] = []
        self.problems: list[str] = []
        self.refusals: RefusalLog | None = None
        self._runner: web.AppRunner | None = None

    def view(self) -> dict[str, Any]:
        counts = self.refusals.counts if self.refusals is not None else {}
        return {"enabled": self.settings.enabled, "listening": list(self.listening),
                "problems": list(self.problems) + ([self.settings_error]
                                                   if self.settings_error else []),
                "keyProblem": self.key.problem if self.settings.enabled else None,
                "refused": {k.split(".", 1)[1]: v for k, v in counts.items()
                            if k.startswith("lan.")},
                "settings": self.settings.public_view()}

    def build_app(self, main: web.Application) -> web.Application:
        app = web.Application(middlewares=[lan_guard], client_max_size=1024)
        # The main app's state the compat handlers read; the services stay the main app's.
        app[CONFIG] = main[CONFIG]
        app[CARD_SERVICE] = main[CARD_SERVICE]
        if COVERAGE in main:
            app[COVERAGE] = main[COVERAGE]
        app[LISTENER] = self
        for path, handler in card_routes(photo=self.settings.photo):
            app.router.add_get(path, handler)
        return app

    async def start(self, main: web.Application) -> None:
        self.refusals = main.get(REFUSALS)
        if not self.settings.enabled:
            return
        if await self.key.get() is None:
            # Never open the port without a key: the listener would answer nobody anyway.
            self.problems.append(f"not listening: {self.key.problem}")
            log.error("LAN listener not started: %s", self.key.problem)
            return
        self._runner = web.AppRunner(self.build_app(main), handle_signals=False,
                                     access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        for address in self.settings.addresses:
            try:
                sock = _bind(address, self.settings.port)
            except OSError as exc:
                # The address may be gone (DHCP, cable): the card reader keeps working.
                self.problems.append(f"{address}:{self.settings.port}: {exc.strerror or exc}")
                log.error("LAN listener cannot listen on %s:%d: %s", address,
                          self.settings.port, exc)
                continue
            await web.SockSite(self._runner, sock).start()
            self.listening.append(_where(address, self.settings.port))
            log.warning("LAN listener on %s for %s", _where(address, self.settings.port),
                        ", ".join(self.settings.clients))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.listening.clear()


def _where(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _bind(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _refuse(request: web.Request, listener: LanListener, client: str,
            code: str) -> web.StreamResponse:
    if listener.refusals is not None:
        listener.refusals.record("lan", client, code, request.path)
    log.warning("LAN listener refused %s %s from %s: %s", request.method, request.path[:100],
                client, code)
    resp = error_response(error(code), request)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@web.middleware
async def lan_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    listener = request.app[LISTENER]
    client = request.remote or ""
    if not listener.settings.allows(client):
        return _refuse(request, listener, client, "lan_client_not_allowed")
    if "Origin" in request.headers:
        # Browsers use the loopback listener, with its own origin checks.
        return _refuse(request, listener, client, "origin_not_allowed")
    if not listener.rate.take(client):
        return _refuse(request, listener, client, "rate_limited")
    if request.method not in ("GET", "HEAD") or request.match_info.route.resource is None:
        return _refuse(request, listener, client, "not_found")
    expected = await listener.key.get()
    given = request.headers.get(KEY_HEADER, "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return _refuse(request, listener, client, "lan_key_invalid")
    try:
        resp = await handler(request)
    except AgentError as exc:
        resp = error_response(exc, request)
    resp.headers["Cache-Control"] = "no-store"
    return resp


LISTENER = web.AppKey("lan_listener", LanListener)


def lan_from_settings() -> LanListener:
    """The listener the settings describe; bad settings leave it off, with the reason shown
    in /v1/status (the card reader must not stop over them)."""
    try:
        return LanListener(load_lan_settings())
    except AgentError as exc:
        log.error("LAN listener settings ignored: %s", exc.detail or exc)
        return LanListener(LanSettings(), settings_error=str(exc.detail or exc))


def mount_lan(app: web.Application, listener: LanListener) -> None:
    """Show the listener in /v1/status and run it while ``app`` runs."""
    app[LAN_STATUS] = listener

    async def lan_context(app: web.Application) -> AsyncIterator[None]:
        await listener.start(app)
        try:
            yield
        finally:
            await listener.stop()

    app.cleanup_ctx.append(lan_context)
