"""Test-only agent process: an aiohttp app with just ``setup_nhso``, on a given port.

    python -m tests.nhso_agent_proc --port 8189 [--events events.jsonl]

Settings come from the usual files and ``THAICARD_NHSO_*`` environment variables, the
token from the OS keyring, exactly as in ``thaicard-agent serve``. Events are appended to
``--events`` as JSON lines (flushed one by one, so a ``kill -9`` loses none that were
published). Prints ``READY <port>`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any

from aiohttp import web

from agent.nhso.routes import setup_nhso
from agent.nhso.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--events", help="append events here as JSON lines")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("agent.nhso").setLevel(logging.DEBUG)
    events = open(args.events, "a", encoding="utf-8") if args.events else None  # noqa: SIM115 - open as long as the process

    def publish(type_: str, payload: dict[str, Any]) -> None:
        if events is not None:
            events.write(json.dumps({"type": type_, **payload}, ensure_ascii=False) + "\n")
            events.flush()

    async def serve() -> None:
        app = web.Application()
        setup_nhso(app, load_settings(), publish=publish)
        runner = web.AppRunner(app, access_log=None, handle_signals=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        print(f"READY {args.port}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
