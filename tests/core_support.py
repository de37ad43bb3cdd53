"""Helpers for tests that watch the core's event bus."""

from __future__ import annotations

import asyncio
from typing import Any


async def next_event(sub: Any, type_: str, reader: str | None = None,
                     timeout: float = 10.0) -> Any:
    """The next event of ``type_`` (for ``reader`` when given) on a bus subscription."""
    async def find() -> Any:
        while True:
            ev = await sub.get()
            assert ev is not None, "subscription dropped"
            if ev.type == type_ and (reader is None or ev.reader == reader):
                return ev
    return await asyncio.wait_for(find(), timeout)
