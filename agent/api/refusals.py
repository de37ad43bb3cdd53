"""Requests the agent refused, so staff and admins learn why a page "cannot find the agent".

A page from an origin not on the allowlist (or a HIS server on the LAN without the key)
used to fail in silence: the page told staff to "install the NHSO agent". Every refusal is
counted here by kind and reason; the first one from each source is published as
``access.refused`` (the tray shows it once per source), and ``/v1/status`` lists the
recent ones for the status page, where an admin can allow an origin.

Only what identifies the caller is kept (an origin, a peer address): never a card field.
"""

from __future__ import annotations

import collections
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

Publish = Callable[[str, dict[str, Any]], None]
RECENT = 50            # sources remembered for the status page
MAX_SOURCES = 500      # distinct sources notified once each; older ones are forgotten
# New sources published per minute at most: a program inventing Origin headers must not
# bury the tray in notifications (the status page still lists every one).
MAX_PUBLISHED_PER_MINUTE = 10


@dataclass
class Refusal:
    kind: str           # "origin" (the loopback guard) or "lan" (the LAN listener)
    source: str         # the Origin header, or the peer address
    reason: str         # an error code: origin_not_allowed, lan_key_invalid, ...
    count: int
    first: str
    last: str
    path: str

    def view(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "reason": self.reason,
                "count": self.count, "first": self.first, "last": self.last,
                "path": self.path}


class RefusalLog:
    def __init__(self, publish: Publish | None = None) -> None:
        self.publish = publish
        self.allowed: set[str] = set()
        self._published: collections.deque[float] = collections.deque()
        self.counts: collections.Counter[str] = collections.Counter()
        self._sources: collections.OrderedDict[tuple[str, str], Refusal] = (
            collections.OrderedDict())

    def record(self, kind: str, source: str, reason: str, path: str) -> None:
        source = source[:200]          # headers are the caller's: bound what we keep
        now = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        self.counts[f"{kind}.{reason}"] += 1
        key = (kind, source)
        entry = self._sources.get(key)
        if entry is not None:
            entry.count += 1
            entry.last, entry.reason, entry.path = now, reason, path[:200]
            self._sources.move_to_end(key)
            return
        entry = Refusal(kind, source, reason, 1, now, now, path[:200])
        self._sources[key] = entry
        while len(self._sources) > MAX_SOURCES:
            self._sources.popitem(last=False)
        if self.publish is not None and self._may_publish():
            # Once per source: a page polling every 2 s must not flood the tray.
            self.publish("access.refused", entry.view())

    def _may_publish(self) -> bool:
        now = time.monotonic()
        while self._published and now - self._published[0] > 60:
            self._published.popleft()
        if len(self._published) >= MAX_PUBLISHED_PER_MINUTE:
            return False
        self._published.append(now)
        return True

    def forget(self, kind: str, source: str) -> None:
        self._sources.pop((kind, source), None)

    def view(self) -> dict[str, Any]:
        recent = list(self._sources.values())[-RECENT:]
        return {"counts": dict(self.counts),
                "recent": [r.view() for r in reversed(recent)]}



# The app's log (re-exported by keys.py with the other app state).
REFUSALS = web.AppKey("refusals", RefusalLog)


def note_refusal(request: web.Request, kind: str, source: str, reason: str) -> None:
    """Record a refusal of ``request`` when the app keeps a log."""
    refusals = request.app.get(REFUSALS)
    if refusals is not None:
        refusals.record(kind, source, reason, request.path)


def allowed_now(request: web.Request, origin: str) -> bool:
    """An origin an admin allowed from the status page while the agent runs (it is also
    written to the config file, for the next start)."""
    refusals = request.app.get(REFUSALS)
    return refusals is not None and origin in refusals.allowed
