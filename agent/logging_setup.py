"""Logging for the resident agent: a rotating file in the platform's log dir, plus stderr.

The rule is that card data and the NHSO token are never passed to a logger. The
``RedactingFilter`` is the safety net behind that rule: it masks anything shaped like a
citizen id, a photo (long base64), or a bearer token, in messages and tracebacks alike, on
every handler (so records from aiohttp's access log are covered too: some NHSO paths carry
a citizen id).
"""

from __future__ import annotations

import logging
import logging.handlers
import re
from pathlib import Path

from . import paths

APP_NAME = paths.APP_NAME
LOG_FILE = "agent.log"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # 13-digit citizen ids: plain, in the printed 1-2345-67890-12-3 layout, or grouped
    # the same way with spaces (as staff type them from the card).
    (re.compile(r"(?<!\d)\d([- ]?)\d{4}\1\d{5}\1\d{2}\1\d(?!\d)"), "[pid]"),
    # Photos and other long base64 blobs.
    (re.compile(r"[A-Za-z0-9+/]{120,}={0,2}"), "[base64]"),
    # Tokens: Authorization headers and token-ish query parameters or JSON keys.
    (re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+"), r"\1 [redacted]"),
    # Keys quoted for JSON or for a Python repr; the whole credential of an Authorization
    # value, whatever its scheme (Basic would otherwise leave its secret after the word).
    (re.compile(r"(?i)([\"']?(?:token|access_token|authorization)[\"']?\s*[:=]\s*[\"']?)"
                r"(?:(?:bearer|basic|digest|negotiate|token)\s+)?[^\s\"'&,;]+"),
     r"\1[redacted]"),
)


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and traceback text) with ``redact`` before output."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad %-format must not lose the record
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def default_log_dir() -> Path:
    return paths.user_log_dir()


def setup_logging(level: str = "INFO", *, log_dir: Path | None = None, to_file: bool = True,
                  console: bool = True) -> Path | None:
    """Configure the root logger; returns the log file's path (None when not logging to file)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    formatter = logging.Formatter(FORMAT)
    redacting = RedactingFilter()
    path: Path | None = None
    handlers: list[logging.Handler] = []
    if to_file:
        directory = log_dir or default_log_dir()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / LOG_FILE
            handlers.append(logging.handlers.RotatingFileHandler(
                path, maxBytes=1_000_000, backupCount=5, encoding="utf-8"))
        except OSError as exc:
            path = None
            logging.getLogger(__name__).warning("cannot write logs to %s: %s", directory, exc)
    if console:
        handlers.append(logging.StreamHandler())
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(redacting)
        root.addHandler(handler)
    # aiohttp's access log is useful for support; it passes through the same filter.
    logging.getLogger("aiohttp.access").setLevel(level)
    return path
