"""``thaicard-agent``: the command line.

Every failure prints a short Thai and English message and exits with the code from
``errors.ERROR_TABLE``; no traceback reaches the user (``--debug`` shows one).

Commands of other packages (the tray's ``tray``) register themselves through the entry
point group ``thaicard_agent.commands`` (pyproject.toml), or are passed to ``main`` by a
launcher (the frozen bundle's ``installer/entry.py``): ``agent`` never imports ``tray``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import entry_points
from pathlib import Path

from . import __version__
from .config import BACKENDS
from .core import list_readers, open_backend, read_once
from .doctor.cli import add_commands as add_doctor_commands
from .errors import AgentError
from .firefox_policy import add_commands as add_firefox_policy_commands
from .kiosk_cli import add_kiosk_command
from .lan.cli import add_lan_commands
from .nhso.cli import add_token_commands
from .server_cli import add_commands as add_server_commands

log = logging.getLogger("agent")

CommandRegistrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]
COMMAND_GROUP = "thaicard_agent.commands"


def installed_commands() -> list[CommandRegistrar]:
    """Command registrars of installed packages (the tray), in name order."""
    found = sorted(entry_points(group=COMMAND_GROUP), key=lambda ep: ep.name)
    return [ep.load() for ep in found]


def _backend_args(p: argparse.ArgumentParser, default: str = "pcsc") -> None:
    p.add_argument("--backend", choices=BACKENDS, default=default,
                   help=f"reader backend (default: {default}; auto = PC/SC, else the demo reader)")
    p.add_argument("--demo", dest="backend", action="store_const", const="demo",
                   help="use the simulated demo reader (same as --backend demo)")


def build_parser(extra: Iterable[CommandRegistrar] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thaicard-agent",
        description="Thai Card Agent: reads Thai national ID cards for web pages "
                    "(อ่านบัตรประชาชนให้หน้าเว็บ)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="verbose logs and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("read", help="read the card once and print it as JSON",
                       description="Read the card once and print every field as JSON "
                                   "(raw and parsed). Exit codes: see docs/errors.md.")
    p.add_argument("--reader", help="reader name (default: the one with a card, else the first)")
    p.add_argument("--photo", metavar="FILE", type=Path, help="write the photo (JPEG) to FILE")
    p.add_argument("--no-photo", action="store_true", help="skip the photo (faster)")
    p.add_argument("--nhso", action="store_true",
                   help="also read the NHSO coverage applet (nhso_applet: null when the card "
                        "has none)")
    p.add_argument("--laser", action="store_true",
                   help="also read the laser id printed on the back (laser_id, and "
                        "laser_id_command: which of its three command forms answered; "
                        "laser_error laser_unavailable when the card has none)")
    _backend_args(p)
    p.set_defaults(func=cmd_read)

    p = sub.add_parser("readers", help="list readers and whether a card is in",
                       description="List the readers (by name) and card presence as JSON.")
    _backend_args(p)
    p.set_defaults(func=cmd_readers)

    registrars = [add_server_commands, add_token_commands, add_lan_commands, add_doctor_commands,
                  add_kiosk_command,
                  add_firefox_policy_commands,
                  *(installed_commands() if extra is None else extra)]
    for register in registrars:
        register(sub)
    return parser


def cmd_read(args: argparse.Namespace) -> int:
    backend = open_backend(args.backend)
    try:
        reader, result = read_once(backend, args.reader, photo=not args.no_photo,
                                   nhso=args.nhso, laser=args.laser)
    finally:
        backend.close()
    out = result.to_json()
    out["reader"] = reader
    if args.photo is not None:
        if result.photo is None:
            print("No photo on the card / ไม่มีรูปในบัตร", file=sys.stderr)
        else:
            args.photo.write_bytes(result.photo)
            out["photo"]["file"] = str(args.photo)
    json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0


def cmd_readers(args: argparse.Namespace) -> int:
    backend = open_backend(args.backend)
    try:
        states = list_readers(backend)
    finally:
        backend.close()
    json.dump([{"name": s.name, "present": s.present,
                "atr": s.atr.hex(" ").upper() if s.atr else None} for s in states],
              sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0


def main(argv: Sequence[str] | None = None, *,
         commands: Iterable[CommandRegistrar] | None = None) -> int:
    """Run one command. ``commands``: extra registrars instead of the installed ones."""
    # JSON and messages carry Thai: never let a legacy console code page (Windows) fail them.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8")
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AgentError as exc:
        if args.debug:
            log.exception("failed")
        detail = f" ({exc.detail})" if exc.detail else ""
        print(f"{exc.info.message_th}\n{exc.info.message_en}{detail} [{exc.code}]",
              file=sys.stderr)
        return exc.info.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"เกิดข้อผิดพลาดภายในโปรแกรม\nUnexpected error: {type(exc).__name__}: {exc} "
              "[internal_error] (run with --debug for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
