"""Refused requests, counted and summarised: per origin (or Host), per minute.

A hostile page can fire thousands of refused requests a second. Logged one by one they
would rotate the log away (5 files of 1 MB) and with it what support needs. Instead the
first refusal of each origin and reason in a minute is logged (escaped, truncated), the rest
are counted, and one summary line per origin and reason closes the minute. The number of
keys per minute is bounded too: an attacker varying its Origin header lands in "(other)".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_log import AccessLogger

from ..logging_setup import loggable

log = logging.getLogger("agent.api.security")

WINDOW = 60.0                 # seconds per summary
MAX_KEYS = 32                 # distinct (origin, reason) pairs logged per window
OTHER = "(other)"
# Set on a refused response: the access log leaves it to the summary.
REFUSED = web.ResponseKey("thaicard_refused", bool)


class RefusalSummary:
    def __init__(self, *, window: float = WINDOW, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = MAX_KEYS) -> None:
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self.started = clock()
        self.counts: dict[tuple[str, str], int] = {}
        self.total = 0                      # since start, for /v1/status and tests
        self._timer: asyncio.TimerHandle | None = None

    def record(self, reason: str, who: str, method: str, path: str) -> None:
        """One refused request: ``reason`` (an error code), ``who`` (origin or Host)."""
        now = self.clock()
        if now - self.started >= self.window:
            self.flush()
        self.started = self.started if self.counts else now
        self.total += 1
        key = (who[:100], reason)
        if key not in self.counts and len(self.counts) >= self.max_keys:
            key = (OTHER, reason)
        seen = self.counts.get(key, 0)
        self.counts[key] = seen + 1
        if seen == 0:
            log.warning("refused %s %s from %s: %s (more from it this minute are counted)",
                        loggable(method, 10), loggable(path), loggable(key[0]), reason)
            self._arm()

    def _arm(self) -> None:
        """Close the minute even if no further refusal comes to do it."""
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._timer = loop.call_later(self.window, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """Log the window's counts (only where more than the first was refused), reset."""
        for (who, reason), count in self.counts.items():
            if count > 1:
                log.warning("refused %d requests from %s (%s) in the last %d s", count,
                            loggable(who), reason, int(self.window))
        self.counts.clear()
        self.started = self.clock()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()


class AccessLogWithoutRefusals(AccessLogger):
    """aiohttp's access log, minus refused requests (``RefusalSummary`` counts those)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse,
            time: float) -> None:
        # "UNKNOWN": aiohttp's stand-in for a request it could not parse (counted below).
        if response.get(REFUSED) or request.method == "UNKNOWN":
            return
        super().log(request, response, time)


class MalformedRequests(logging.Filter):
    """aiohttp logs a whole traceback for each request it cannot parse (a bad request line,
    a NUL in the path): a local program could fill the log with them. On the logger given to
    the server (``SERVER_LOGGER``) such records become one line per window, with a count.
    Other errors keep their traceback."""

    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window = window
        self.clock = clock
        self.count = 0
        self.started = clock() - window

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        self.count += 1
        now = self.clock()
        if now - self.started < self.window:
            return False
        record.msg = "refused %d malformed request(s) in the last %d s; the latest: %s"
        record.args = (self.count, int(self.window), loggable(exc.message or exc, 200))
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        self.count, self.started = 0, now
        return True


SERVER_LOGGER = "agent.api.server"


def server_logger() -> logging.Logger:
    """The logger for aiohttp's request handlers, with ``MalformedRequests`` on it once."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, MalformedRequests) for f in logger.filters):
        logger.addFilter(MalformedRequests())
    return logger
