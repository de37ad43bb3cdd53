"""The tray's link to the agent: its public WebSocket event stream and HTTP calls.

It works the same whether the agent runs in this process or as a separate one. Local
tools send no Origin header, which the agent allows; the tray asks for no photos.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from .state import Notice, TrayState

log = logging.getLogger(__name__)

OnChange = Callable[[TrayState, list[Notice]], None]
RECONNECT_MIN = 0.5
RECONNECT_MAX = 10.0


def events_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://", 1).rstrip("/") + "/v1/events?photo=0"


class EventClient:
    """Keeps ``state`` in step with the agent; calls ``on_change`` after every change."""

    def __init__(self, base_url: str, state: TrayState, on_change: OnChange) -> None:
        self.base_url = base_url.rstrip("/")
        self.state = state
        self.on_change = on_change
        self._stopping = False

    async def run(self) -> None:
        delay = RECONNECT_MIN
        while not self._stopping:
            try:
                async with connect(events_url(self.base_url), open_timeout=5,
                                   max_size=2**20, ping_interval=20) as ws:
                    delay = RECONNECT_MIN
                    log.info("connected to the agent's event stream")
                    async for message in ws:
                        self._handle(message)
            except asyncio.CancelledError:
                raise
            except (OSError, WebSocketException, TimeoutError) as exc:
                log.debug("event stream: %s", exc)
            if self.state.connected or not self.state.ever_connected:
                self.state.disconnected()
                self.on_change(self.state, [])
            if self._stopping:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    def stop(self) -> None:
        self._stopping = True

    def _handle(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            log.warning("event stream sent something that is not JSON")
            return
        if not isinstance(event, dict):
            return
        if not self.state.connected and event.get("type") != "snapshot":
            # An agent without a snapshot message: we are connected all the same.
            self.state.connected = self.state.ever_connected = True
        notices = self.state.apply(event)
        if event.get("type") not in ("heartbeat", "ping", "card.photo"):
            self.on_change(self.state, notices)


def http_json(base_url: str, method: str, path: str, body: Any | None = None,
              timeout: float = 5.0) -> Any:
    """A blocking JSON call to the agent (menu actions run it off the UI thread)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base_url.rstrip("/") + path, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        # JSON is the only body the agent's guard accepts on POST (415 otherwise).
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def is_agent(base_url: str) -> bool:
    """Whether a Thai Card Agent answers at ``base_url`` (used when the port is taken)."""
    try:
        answer = http_json(base_url, "GET", "/v1/status", timeout=2.0)
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return isinstance(answer, dict)
