"""The agent server inside the tray's process, on the tray's worker loop.

The tray still watches it through the public API like any other client; this module only
starts, stops and restarts it (after a settings change), and in demo mode lets staff
insert and remove the simulated card from the menu.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class EmbeddedAgent:
    def __init__(self, cli_overrides: dict[str, Any], *, demo: bool = False) -> None:
        self.cli_overrides = cli_overrides
        self.demo = demo
        self.backend: Any = None
        self.server: Any = None
        self.port: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> str:
        """Load the config, bind 127.0.0.1:port (PortInUse when taken), return the base URL."""
        from agent.api.server import start_server
        from agent.config import load_config
        from agent.readers.factory import make_backend

        config = load_config(cli=self.cli_overrides)
        self.backend = make_backend("demo" if self.demo else config.backend)
        self.server = await start_server(config, backend=self.backend)
        self.port = self.server.port
        log.info("agent listening on %s (%s reader)", self.base_url, self.backend.kind)
        return self.base_url

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def restart(self) -> str:
        await self.stop()
        return await self.start()

    # -- demo reader -------------------------------------------------------------------
    def demo_card_in(self) -> bool | None:
        from agent.readers.demo import DemoBackend

        if not isinstance(self.backend, DemoBackend):
            return None
        return any(s.present for s in self.backend.snapshot())

    def demo_toggle(self) -> None:
        from agent.readers.demo import DemoBackend, demo_card

        backend = self.backend
        if not isinstance(backend, DemoBackend):
            return
        states = backend.snapshot()
        if not states:
            return
        if states[0].present:
            backend.remove(states[0].name)
        else:
            backend.insert(states[0].name, demo_card())
