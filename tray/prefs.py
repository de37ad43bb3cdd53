"""The tray's own preferences (only the language so far), in the user's config folder."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from agent import paths
from agent.atomic_file import SHARED, write_atomic

log = logging.getLogger(__name__)


def default_path() -> Path:
    return paths.tray_prefs_file()


@dataclass
class TrayPrefs:
    language: str = "auto"            # auto | th | en

    @classmethod
    def load(cls, path: Path) -> TrayPrefs:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable tray preferences %s: %s", path, exc)
            return cls()
        prefs = cls()
        if data.get("language") in ("auto", "th", "en"):
            prefs.language = data["language"]
        return prefs

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(asdict(self), indent=2), mode=SHARED)
