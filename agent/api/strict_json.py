"""The one JSON reader for what callers send: request bodies and WebSocket messages alike.

``json.loads`` alone accepts things that break the agent later: nesting deep enough to
raise ``RecursionError`` (not a ``ValueError``, so it escaped as a 500 or dropped the
WebSocket), lone surrogates (``"\\ud800"``, which cannot be encoded back when the value is
echoed or logged) and integers too long to mean anything. Here each of these is an
``invalid_json`` error with a reason, and nothing else can come out. ``NaN`` and
``Infinity`` still parse (as floats): the field validators refuse them by name.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import AgentError

MAX_DEPTH = 32              # our bodies nest 2-3 levels; 32 leaves room for any caller
MAX_INT_DIGITS = 30         # epoch ms has 13; anything longer is not a value we use


class InvalidJson(AgentError):
    code = "invalid_json"


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise InvalidJson(f"a number longer than {MAX_INT_DIGITS} digits")
    return int(text)


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidJson("a string with an unpaired surrogate (\\ud800-\\udfff)") \
                from None


def _check_tree(value: Any) -> None:
    """Depth and text of every node, without recursion (the tree is already parsed)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            _check_text(node)
            continue
        if not isinstance(node, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            raise InvalidJson(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            for key, item in node.items():
                _check_text(key)
                stack.append((item, depth + 1))
        else:
            stack.extend((item, depth + 1) for item in node)


def loads(raw: bytes | str) -> Any:
    """The JSON value of ``raw`` (UTF-8 if bytes), or ``InvalidJson`` with the reason."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        # Strict UTF-8: overlong forms and encoded surrogates are refused here.
        raise InvalidJson(f"not UTF-8 at byte {exc.start}") from None
    _check_text(text)
    try:
        value = json.loads(text, parse_int=_parse_int)
    except InvalidJson:
        raise
    except RecursionError:
        raise InvalidJson(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise InvalidJson(f"{type(exc).__name__} at {getattr(exc, 'pos', '?')}") from None
    _check_tree(value)
    return value
