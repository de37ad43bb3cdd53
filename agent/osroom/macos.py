"""macOS: a per-user LaunchAgent, managed preferences from a configuration profile."""

from __future__ import annotations

import plistlib
from pathlib import Path
from typing import Any

from .base import Autostart, OsRoom, PolicyInvalid

POLICY_FILE = Path("/Library/Managed Preferences/th.thaicard.agent.plist")
LAUNCH_AGENT_LABEL = "th.thaicard.agent.tray"


def read_managed_preferences(path: Path = POLICY_FILE) -> dict[str, Any]:
    """The policy domain ``th.thaicard.agent`` as an MDM profile deploys it."""
    try:
        with path.open("rb") as fh:
            data = plistlib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, plistlib.InvalidFileException, ValueError) as exc:
        raise PolicyInvalid(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        return {}
    # Some MDMs copy the profile's own Payload* keys into the managed preferences.
    return {k: v for k, v in data.items() if not k.startswith("Payload")}


class LaunchAgentAutostart:
    """``~/Library/LaunchAgents/th.thaicard.agent.tray.plist``."""

    def __init__(self, command: list[str], agents_dir: Path | None = None) -> None:
        self.command = command
        self.file = (agents_dir or Path.home() / "Library" / "LaunchAgents") / \
            f"{LAUNCH_AGENT_LABEL}.plist"

    def enabled(self) -> bool:
        try:
            with self.file.open("rb") as fh:
                data = plistlib.load(fh)
        except (OSError, plistlib.InvalidFileException):
            return False
        return bool(data.get("RunAtLoad")) and not data.get("Disabled", False)

    def set(self, on: bool) -> None:
        if not on:
            self.file.unlink(missing_ok=True)
            return
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with self.file.open("wb") as fh:
            plistlib.dump({"Label": LAUNCH_AGENT_LABEL, "ProgramArguments": self.command,
                           "RunAtLoad": True, "LimitLoadToSessionType": "Aqua",
                           "ProcessType": "Interactive"}, fh)


class MacRoom(OsRoom):
    name = "macos"

    def __init__(self, policy_file: Path = POLICY_FILE) -> None:
        self.policy_file = policy_file

    def read_policy(self) -> tuple[dict[str, Any], str]:
        return read_managed_preferences(self.policy_file), str(self.policy_file)

    def autostart(self, command: list[str]) -> Autostart | None:
        return LaunchAgentAutostart(command)

    def folder_opener(self) -> str | None:
        return "open"

    def clipboard_commands(self) -> list[list[str]]:
        return [["pbcopy"]]
