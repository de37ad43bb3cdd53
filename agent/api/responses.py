"""JSON responses and the one error body shape.

Every error body has the Spring Boot fields that existing NHSO-agent callers read
(``timestamp, status, error, message, path``) plus our stable ``code`` and both languages.
``message`` is Thai on the NHSO-compatible paths (``/api/...``, what those pages show to
staff) and English elsewhere; ``message_th`` and ``message_en`` are always there.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from http import HTTPStatus
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import ERROR_TABLE, AgentError

log = logging.getLogger(__name__)

# Keys of AgentError.to_dict() that the body already carries under its own names.
_BASE_KEYS = {"code", "message", "message_th", "detail"}
MAX_DETAIL = 300           # an error detail is a reason, never a copy of what was sent
MAX_PATH = 200
# Absolute paths in a detail (POSIX, Windows drive or UNC): a page learns the file's name,
# never the folders (they hold the user's login name and the machine's layout).
_ABS_PATH = re.compile(r"(?:(?<![\w])[A-Za-z]:[\\/]|\\\\|(?<![\w.:/])/)(?:[^\s'\"<>|]+[\\/])+"
                       r"(?=[^\s'\"<>|\\/]*)")


def dumps(data: Any) -> str:
    """JSON text that can always be sent: a lone surrogate in a value is escaped, not fatal."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text


def public_text(text: str, limit: int = MAX_DETAIL) -> str:
    """Text safe to show a page: no home folder or absolute path, encodable, bounded."""
    home = os.path.expanduser("~")
    if home and home not in ("~", "/"):
        text = text.replace(home, "~")
        text = text.replace(str(Path(home).as_posix()), "~")
    return bounded_text(_ABS_PATH.sub("…/", text), limit)


def bounded_text(text: str, limit: int) -> str:
    """``text`` encodable as UTF-8 (lone surrogates become ``?``) and at most ``limit`` long."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "…"


def json_response(data: Any, *, status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


def is_compat_path(path: str) -> bool:
    return path.startswith("/api/")


def error_body(exc: AgentError, path: str, *, status: int | None = None) -> dict[str, Any]:
    info = exc.info
    status = status or info.http_status
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    body: dict[str, Any] = {
        "timestamp": dt.datetime.now().astimezone().isoformat(timespec="milliseconds"),
        "status": status,
        "error": reason,
        "message": info.message_th if is_compat_path(path) else info.message_en,
        "path": bounded_text(path, MAX_PATH),
        "code": exc.code,
        "message_en": info.message_en,
        "message_th": info.message_th,
    }
    if exc.detail:
        body["detail"] = public_text(str(exc.detail))
    # Extra structure a typed error carries (e.g. validation ``errors``).
    body.update({k: v for k, v in exc.to_dict().items() if k not in _BASE_KEYS})
    return body


def error_response(exc: AgentError, request: web.Request, *, status: int | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    """The error body; building it cannot fail (a broken detail falls back to the code)."""
    status = status or exc.info.http_status
    try:
        return json_response(error_body(exc, request.path, status=status), status=status,
                             headers=headers)
    except Exception as build_error:  # noqa: BLE001 - the answer must go out whatever it held
        log.error("cannot build the %s error body (%s)", exc.code, type(build_error).__name__)
        info = exc.info
        return json_response({"status": status, "code": exc.code,
                              "message": info.message_en, "message_en": info.message_en,
                              "message_th": info.message_th}, status=status, headers=headers)


def error(code: str, detail: str | None = None) -> AgentError:
    """An AgentError for a code of the table (for codes without their own class)."""
    assert code in ERROR_TABLE, code
    return AgentError(detail, code=code)
