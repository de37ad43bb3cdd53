"""Least privilege per web page: what each allowed origin may do (its scopes).

An origin on ``allowedOrigins`` gets the scopes ``originScopes`` lists for it, else
``defaultScopes``. The scopes, and what each opens:

* ``card``: the card's text (NHSO-compatible ``/api/smartcard/...``, ``/api/preference``,
  ``/v1/card``, ``/v1/readers``, ``/v1/status``); coverage on ``/api/smartcard/read`` comes
  with it, as the NHSO agent answers it.
* ``photo``: the photo (``readImageFlag=true``, ``photo=1``, ``/v1/readers/{name}/photo``,
  ``card.photo`` events).
* ``events``: the WebSocket ``/v1/events``.
* ``nhso``: lookups at NHSO with the hospital's token (``/v1/nhso/...``,
  ``/api/nhso-service/latest-...``).
* ``claims``: closing rights (``/v1/claims...``, ``/api/nhso-service/confirm-save``).

This module is pure (names, parsing, defaults); the web guard (``agent/api/security.py``)
maps routes to scopes and refuses with 403 ``scope_denied``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

SCOPES = ("card", "photo", "events", "nhso", "claims")
ALL_SCOPES = frozenset(SCOPES)
# The NHSO "New Authen Code" page uses the card with its photo through the compat routes.
NHSO_PAGE_SCOPES = ("card", "photo")
# Any other allowed page, until the admin says more: it reads the card, never spends the
# hospital's token or closes a claim.
DEFAULT_SCOPES = ("card", "photo", "events")


def parse_scope_list(value: Any) -> tuple[str, ...]:
    """``["card", "photo"]`` or ``"card photo"`` / ``"card,photo"``; ValueError if unknown."""
    if isinstance(value, str):
        items = value.replace(",", " ").split()
    elif isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value]
    else:
        raise ValueError(f"scopes must be a list, not {type(value).__name__}")
    unknown = [s for s in items if s not in ALL_SCOPES]
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r} (known: {', '.join(SCOPES)})")
    return tuple(dict.fromkeys(items))


def parse_origin_scopes(value: Any) -> dict[str, tuple[str, ...]]:
    """``{origin: scopes}`` from a JSON object, its JSON text (a registry string), or
    ``"https://a=card,photo; https://b=card claims"`` (an environment variable)."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        if text.startswith("{"):
            value = json.loads(text)
        else:
            value = {}
            for part in text.split(";"):
                if not part.strip():
                    continue
                origin, sep, scopes = part.partition("=")
                if not sep:
                    raise ValueError(f"{part.strip()!r}: write origin=scope,scope")
                value[origin.strip()] = scopes
    if not isinstance(value, Mapping):
        raise ValueError("originScopes must map each origin to its scopes")
    return {str(origin): parse_scope_list(scopes) for origin, scopes in value.items()}
