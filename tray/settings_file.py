"""Changing the agent's settings from the tray: the user's own config file, validated first.

Keys fixed by the admin policy are refused here with a clear reason; the agent would
ignore them anyway.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from agent.config import ConfigInvalid, load_config, read_json_file, user_config_path

EDITABLE = ("port", "allowedOrigins", "defaultTerminal")


def user_file(env: dict[str, str] | None = None) -> Path:
    return user_config_path(os.environ if env is None else env)


def save_user_settings(changes: dict[str, Any], *, path: Path | None = None,
                       locked: list[str] | tuple[str, ...] = ()) -> Path:
    """Merge ``changes`` (JSON keys; None removes a key) into the user file, atomically."""
    target = path or user_file()
    for key in changes:
        if key not in EDITABLE:
            raise ConfigInvalid(f"{key} cannot be changed from the tray")
        if key in locked:
            raise ConfigInvalid(f"{key} is fixed by the admin policy")
    data = read_json_file(target)
    for key, value in changes.items():
        if value is None or value == "" or value == []:
            data.pop(key, None)
        else:
            data[key] = value
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    try:
        # The whole layered config must still load with the new file in place.
        load_config(config_file=tmp, env={k: v for k, v in os.environ.items()
                                          if k != "THAICARD_CONFIG"})
    except ConfigInvalid:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)
    return target
