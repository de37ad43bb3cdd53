"""What staff can change, done one way whoever asks: the CLI, the tray menu or its dialogs.

Setting the NHSO token also records the hospital code it was issued for (``tokenHcode``),
sets ``hcode`` when none is configured, and reports a mismatch; clearing it forgets that
code too. Before this module the tray wrote the keyring itself and skipped all of that.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic_file import SHARED, write_atomic
from .config import Config, ConfigInvalid, load_config, read_json_file, user_config_path
from .errors import SettingLocked
from .nhso.settings import NhsoSettings, SettingsError, load_settings, save_user_settings
from .nhso.token import TokenStore, backend_name, mask


@dataclass(frozen=True)
class TokenSaved:
    """What to tell the user after a token was stored (never the token itself)."""

    hcode: str | None           # the hospital code recorded for it (None: none known)
    masked: str                 # enough to tell two tokens apart on screen
    backend: str                # the keyring backend that holds it
    configured_hcode: str       # the hcode in the settings, to warn when it differs

    @property
    def hcode_mismatch(self) -> bool:
        return bool(self.hcode and self.configured_hcode and self.configured_hcode != self.hcode)


def set_token(read_token: Callable[[], str | None], *, hcode: str | None = None,
              require_hcode: bool = True, store: TokenStore | None = None,
              settings: NhsoSettings | None = None) -> TokenSaved | None:
    """Store the token ``read_token`` gives (None: the user cancelled, nothing changes).

    The token is asked for only after the hospital code and the keyring were checked: no
    point typing a secret into a store that will refuse it. ``hcode`` is the code the
    token was issued for, by default the configured one; without either, ``require_hcode``
    refuses (the CLI) or the token is stored with no code recorded (the tray's dialog,
    which has no field for it).
    """
    store = store or TokenStore()
    settings = settings or load_settings()
    hcode = hcode or settings.hcode or None
    if hcode is None and require_hcode:
        raise SettingsError("give --hcode (the hospital code the token was issued for)")
    store.check_backend()
    token = read_token()
    if token is None:
        return None
    store.set(token)
    if hcode is not None:
        changes: dict[str, Any] = {"tokenHcode": hcode}
        if not settings.hcode:
            changes["hcode"] = hcode
        save_user_settings(settings, changes)
    return TokenSaved(hcode=hcode, masked=mask(store.get() or ""),
                      backend=backend_name(store.backend), configured_hcode=settings.hcode)


def clear_token(*, store: TokenStore | None = None) -> bool:
    """Remove the token and forget its hospital code; False when none was stored."""
    store = store or TokenStore()
    removed = store.clear()
    settings = load_settings()
    if settings.token_hcode:
        save_user_settings(settings, {"tokenHcode": None})
    return removed


def update_nhso_settings(changes: Mapping[str, Any]) -> NhsoSettings:
    """Merge ``changes`` (JSON keys; None or "" removes one) into the user's NHSO settings."""
    settings = load_settings()
    if changes:
        settings = save_user_settings(settings, dict(changes))
    return settings


def allow_origin(origin: str, config: Config, *, path: Path | None = None) -> Path:
    """Add ``origin`` to the user's ``allowedOrigins`` (the status page's "allow" button).

    When the user's file has no list yet, the effective one (defaults, site file) is copied
    with the new origin added, so allowing one page never drops the NHSO page.
    """
    if "allowed_origins" in config.policy_keys:
        raise SettingLocked("allowedOrigins is set by the admin policy")
    target = path or user_config_path(os.environ)
    current = read_json_file(target).get("allowedOrigins")
    if isinstance(current, str):
        current = [current]
    base = list(current) if isinstance(current, list) else list(config.allowed_origins)
    update_agent_settings({"allowedOrigins": list(dict.fromkeys([*base, origin]))},
                          path=target)
    return target


def update_agent_settings(changes: Mapping[str, Any], *, path: Path | None = None,
                          editable: Iterable[str] | None = None,
                          locked: Iterable[str] = ()) -> Path:
    """Merge ``changes`` (JSON keys; None, "" or [] removes one) into the user's agent
    config file, after checking that the whole layered config still loads with it.

    ``editable`` limits the keys a caller may change; ``locked`` are keys the admin
    policy fixes (refused with a reason: the agent would ignore them anyway).
    """
    target = path or user_config_path(os.environ)
    allowed = None if editable is None else set(editable)
    fixed = set(locked)
    for key in changes:
        if allowed is not None and key not in allowed:
            raise ConfigInvalid(f"{key} cannot be changed here")
        if key in fixed:
            raise ConfigInvalid(f"{key} is fixed by the admin policy")
    data = read_json_file(target)
    for key, value in changes.items():
        if value is None or value == "" or value == []:
            data.pop(key, None)
        else:
            data[key] = value

    def loads(candidate: Path) -> None:
        # The whole layered config must still load with the new file in its place.
        load_config(config_file=candidate, env={k: v for k, v in os.environ.items()
                                                if k != "THAICARD_CONFIG"})

    write_atomic(target, json.dumps(data, indent=2, ensure_ascii=False) + "\n", mode=SHARED,
                 check=loads)
    return target
