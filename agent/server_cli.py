"""``thaicard-agent serve``: the resident agent without a tray (headless)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from .config import BACKENDS, LOG_LEVELS, load_config
from .logging_setup import setup_logging


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve", help="run the local API on 127.0.0.1 (NHSO-compatible + /v1)",
        description="Run the agent headless: HTTP + WebSocket on 127.0.0.1 only. Settings "
                    "come from the config file, THAICARD_* variables, these flags, and the "
                    "admin policy above all (docs/admin.md).")
    p.add_argument("--port", type=int, default=None, help="TCP port (default 8189)")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="reader backend (default pcsc; auto = PC/SC, else the demo reader)")
    p.add_argument("--demo", dest="backend", action="store_const", const="demo",
                   help="use the simulated demo reader with a fake card")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="config file (default: config.json in the user config dir)")
    p.add_argument("--allow-origin", action="append", default=None, metavar="ORIGIN",
                   help="also allow this web origin, e.g. https://his.example.go.th "
                        "(repeatable)")
    p.add_argument("--default-terminal", default=None, metavar="READER",
                   help="reader to use when a request names none")
    p.add_argument("--log-level", choices=LOG_LEVELS, default=None, type=str.upper)
    p.add_argument("--log-dir", type=Path, default=None, help="where agent.log is written")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from .assembly import serve  # aiohttp only when serving

    config = load_config(config_file=args.config, cli={
        "port": args.port, "backend": args.backend, "default_terminal": args.default_terminal,
        "log_level": "DEBUG" if getattr(args, "debug", False) else args.log_level,
        "log_dir": args.log_dir, "extra_origins": args.allow_origin,
    })
    setup_logging(config.log_level, log_dir=config.log_dir)
    try:
        asyncio.run(serve(config))
    except KeyboardInterrupt:
        pass
    return 0
