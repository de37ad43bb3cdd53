"""Entry point of the frozen agent (PyInstaller): the same CLI as ``thaicard-agent``.

The bundle has two executables built from this script: ``thaicard-agent`` (a console
program) and ``thaicard-agent-tray`` (on Windows and macOS a windowed one, so logging on
starts the tray without a console window). The windowed one starts the tray when it is
given no arguments.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _frozen_args(argv: list[str]) -> list[str]:
    if not argv and Path(sys.executable).stem.endswith("-tray"):
        return ["tray"]
    return argv


def main() -> int:
    # A windowed executable has no console: print() and logging would fail on None streams.
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - likewise
    from agent.cli import main as cli_main
    from tray.cli import add_commands as tray_commands

    # A frozen bundle may carry no package metadata: name the tray's commands here
    # instead of relying on the entry point group.
    return cli_main(_frozen_args(sys.argv[1:]), commands=[tray_commands])


if __name__ == "__main__":
    sys.exit(main())
