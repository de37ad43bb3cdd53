"""The agent server inside the tray's process, on the tray's worker loop.

The tray still watches it through the public API like any other client; this module only
starts, stops and restarts it (after a settings change) through ``agent.assembly``, and in
demo mode lets staff insert and remove the simulated card from the menu (through the core).
"""

from __future__ import annotations

import logging
from typing import Any

from agent.assembly import RunningServer, start_server
from agent.config import load_config
from agent.core import open_backend

log = logging.getLogger(__name__)


class EmbeddedAgent:
    def __init__(self, cli_overrides: dict[str, Any], *, demo: bool = False) -> None:
        self.cli_overrides = cli_overrides
        self.demo = demo
        self.server: RunningServer | None = None
        self.port: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> str:
        """Load the config, bind 127.0.0.1:port (PortInUse when taken), return the base URL."""
        config = load_config(cli=self.cli_overrides)
        # --demo wins over the configured backend, as for ``serve --demo``.
        backend = open_backend("demo") if self.demo else None
        self.server = await start_server(config, backend=backend)
        self.port = self.server.port
        log.info("agent listening on %s (%s reader)", self.base_url,
                 self.server.cards.backend_kind)
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
        """Whether the demo card is in; None when the agent does not run the demo reader."""
        if self.server is None:
            return None
        return self.server.cards.demo_card_present()

    def demo_toggle(self) -> None:
        if self.server is None or not self.server.cards.demo:
            return
        cards = self.server.cards
        if cards.demo_card_present():
            cards.demo_remove()
        else:
            cards.demo_insert()
