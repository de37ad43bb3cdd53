"""The one parser of yes/no flags and of numbers, for query strings and WebSocket messages.

Callers of the NHSO agent send ``readImageFlag=true|false``; our own routes document
``1|0`` too. Every route accepts the same words, and any other value is a 400 with the
flag's name, rather than silently meaning "no".

Numbers are ASCII digits only: ``str.isdigit()`` is true for ``"²"`` or ``"๓"`` (Thai
three), which ``int()`` then rejects or reads as a value nobody typed.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .responses import error

TRUE_WORDS = frozenset({"1", "true", "yes", "y", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "off", ""})


def parse_flag(value: Any, name: str) -> bool:
    """``value`` (a JSON boolean or one of the words above) as a bool; else bad_request."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise error("bad_request", f"{name} must be true or false")


def is_ascii_digits(text: str) -> bool:
    """True for ``"0"``-``"9"`` only, at least one."""
    return bool(text) and text.isascii() and text.isdigit()


def query_flag(request: web.Request, name: str) -> bool:
    """A flag of the query string; absent is False."""
    return parse_flag(request.query.get(name, ""), name)
