"""Logging for the resident agent: a rotating file in the platform's log dir, plus stderr.

The rule is that card data and the NHSO token are never passed to a logger. The
``RedactingFilter`` is the safety net behind that rule: it masks anything shaped like a
citizen id, a photo (long base64), or a bearer token, in messages and tracebacks alike, on
every handler (so records from aiohttp's access log are covered too: some NHSO paths carry
a citizen id).
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import re
from pathlib import Path

from . import osroom, paths

APP_NAME = paths.APP_NAME
LOG_FILE = "agent.log"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # 13-digit citizen ids, plain or in the printed 1-2345-67890-12-3 layout.
    (re.compile(r"(?<!\d)\d{13}(?!\d)"), "[pid]"),
    (re.compile(r"(?<!\d)\d-\d{4}-\d{5}-\d{2}-\d(?!\d)"), "[pid]"),
    # ... and as it reaches us in URLs and typed text: percent-encoded digits (%31%32...),
    # digits spaced or dotted, "+" for spaces in query strings.
    (re.compile(r"(?<![\d%])(?:\d|%3\d)(?:(?:[ .+-]|%20|%2[dD]|%2[eE])?(?:\d|%3\d)){12}"
                r"(?!\d|%3\d)"), "[pid]"),
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


# Characters that could end a log line or forge the next one: C0/C1 controls (newline, CR,
# NUL, escape sequences) and the Unicode line and paragraph separators.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MAX_MESSAGE = 4000


def _escape_control(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` as one log line: controls escaped (``\\n``, ``\\x00``), lone surrogates
    replaced, cut at ``limit`` characters."""
    text = _CONTROLS.sub(_escape_control, text)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + f"...[{len(text) - limit} more]"


def loggable(value: object, limit: int = 120) -> str:
    """Text a request controls (a path, a header, a value), quoted for a log message."""
    return '"' + one_line(str(value), limit).replace('"', '\\"') + '"'


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and traceback text) with ``redact`` before output."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad %-format must not lose the record
            message = str(record.msg)
        # Whatever reached the message, it stays one line: no request can forge another.
        record.msg, record.args = one_line(redact(message)), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            # A traceback has lines of its own; indented, none can pass for a log entry.
            record.exc_text = "\n".join("  " + one_line(line) for line in
                                        redact(record.exc_text).splitlines())
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Each log file (the first, and every one rotation starts) readable by the user only."""

    def _open(self) -> io.TextIOWrapper:
        stream = super()._open()
        osroom.current().restrict_to_user(Path(self.baseFilename))
        return stream


def default_log_dir() -> Path:
    return paths.user_log_dir()


def setup_logging(level: str = "INFO", *, log_dir: Path | None = None, to_file: bool = True,
                  console: bool = True, os_log: bool = True) -> Path | None:
    """Configure the root logger; returns the log file's path (None when not logging to file).

    ``os_log``: warnings and errors also to the OS event log (agent/oslog.py)."""
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
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            osroom.current().restrict_folder_to_user(directory)
            path = directory / LOG_FILE
            handlers.append(PrivateRotatingFileHandler(
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
    if os_log:
        from .oslog import os_event_log_handler  # its own format and filter, WARNING and up

        event_log = os_event_log_handler(redacting)
        if event_log is not None:
            root.addHandler(event_log)
    # aiohttp's access log is useful for support; it passes through the same filter.
    logging.getLogger("aiohttp.access").setLevel(level)
    return path
