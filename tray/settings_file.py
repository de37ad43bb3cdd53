"""Changing the agent's settings from the tray: the user's own config file, validated first.

The work is the shared use case (``agent/usecases.py``); the tray may change only these
keys, and keys fixed by the admin policy are refused there with a clear reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agent.config import user_config_path
from agent.usecases import update_agent_settings

EDITABLE = ("port", "allowedOrigins", "defaultTerminal")


def user_file(env: dict[str, str] | None = None) -> Path:
    return user_config_path(os.environ if env is None else env)


def save_user_settings(changes: dict[str, Any], *, path: Path | None = None,
                       locked: list[str] | tuple[str, ...] = ()) -> Path:
    """Merge ``changes`` (JSON keys; None removes a key) into the user file, atomically."""
    return update_agent_settings(changes, path=path, editable=EDITABLE, locked=locked)
