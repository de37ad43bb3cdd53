"""JSON responses and the one error body shape.

Every error body has the Spring Boot fields that existing NHSO-agent callers read
(``timestamp, status, error, message, path``) plus our stable ``code`` and both languages.
``message`` is Thai on the NHSO-compatible paths (``/api/...``, what those pages show to
staff) and English elsewhere; ``message_th`` and ``message_en`` are always there.
"""

from __future__ import annotations

import datetime as dt
import json
from http import HTTPStatus
from typing import Any

from aiohttp import web

from ..errors import ERROR_TABLE, AgentError

# Keys of AgentError.to_dict() that the body already carries under its own names.
_BASE_KEYS = {"code", "message", "message_th", "detail"}


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


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
        "path": path,
        "code": exc.code,
        "message_en": info.message_en,
        "message_th": info.message_th,
    }
    if exc.detail:
        body["detail"] = exc.detail
    # Extra structure a typed error carries (e.g. validation ``errors``).
    body.update({k: v for k, v in exc.to_dict().items() if k not in _BASE_KEYS})
    return body


def error_response(exc: AgentError, request: web.Request, *, status: int | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    status = status or exc.info.http_status
    return json_response(error_body(exc, request.path, status=status), status=status,
                         headers=headers)


def error(code: str, detail: str | None = None) -> AgentError:
    """An AgentError for a code of the table (for codes without their own class)."""
    assert code in ERROR_TABLE, code
    return AgentError(detail, code=code)
