"""A reference visit source: what a HIS serves so a kiosk can find a patient's visits.

It is the HIS's example (docs/kiosk.md) and the tests' stand-in for it:

    GET /visits?pid=<13 digits>&date=<YYYY-MM-DD>    Authorization: Bearer <key>
      200 {"visits": [{...the claim fields of POST /v1/claims..., "label": "..."}]}
      400 a bad pid or date, 401 a missing or wrong key

The visits of a day are those whose ``serviceDateTime`` falls on that Bangkok date. Test
control (not part of the contract):

    POST /_control/visits  [visit, ...]      add visits
    POST /_control/mode    {"mode": "ok" | "error" | "slow", "seconds": 30}
    GET  /_control/state   {"requests": n, "refused": n}

    python -m testrig.visit_source --port 0 --key KEY --cert cert.pem --cert-key key.pem

prints ``READY <port>`` once it serves HTTPS.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hmac
import re
import ssl
import sys
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BANGKOK = dt.timezone(dt.timedelta(hours=7))
PID_RE = re.compile(r"[0-9]{13}")
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass
class SourceState:
    key: str
    visits: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "ok"
    slow_seconds: float = 30.0
    requests: int = 0
    refused: int = 0


SOURCE = web.AppKey("source", SourceState)


def _day(visit: dict[str, Any]) -> str:
    return dt.datetime.fromtimestamp(visit["serviceDateTime"] / 1000, BANGKOK).date().isoformat()


async def visits(request: web.Request) -> web.Response:
    state = request.app[SOURCE]
    state.requests += 1
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {state.key}".encode()):
        state.refused += 1
        return web.json_response({"error": "unauthorized"}, status=401)
    pid, day = request.query.get("pid", ""), request.query.get("date", "")
    if not PID_RE.fullmatch(pid) or not DATE_RE.fullmatch(day):
        return web.json_response({"error": "pid (13 digits) and date (YYYY-MM-DD) please"},
                                 status=400)
    if state.mode == "error":
        return web.json_response({"error": "the HIS database is down"}, status=500)
    if state.mode == "slow":
        await asyncio.sleep(state.slow_seconds)
    found = [v for v in state.visits if v.get("pid") == pid and _day(v) == day]
    return web.json_response({"visits": found})


async def control_visits(request: web.Request) -> web.Response:
    request.app[SOURCE].visits.extend(await request.json())
    return web.json_response({"count": len(request.app[SOURCE].visits)})


async def control_mode(request: web.Request) -> web.Response:
    body = await request.json()
    state = request.app[SOURCE]
    state.mode = body["mode"]
    state.slow_seconds = float(body.get("seconds", state.slow_seconds))
    return web.json_response({"mode": state.mode})


async def control_state(request: web.Request) -> web.Response:
    state = request.app[SOURCE]
    return web.json_response({"requests": state.requests, "refused": state.refused,
                              "mode": state.mode})


def make_app(key: str) -> web.Application:
    app = web.Application()
    app[SOURCE] = SourceState(key)
    app.router.add_get("/visits", visits)
    app.router.add_post("/_control/visits", control_visits)
    app.router.add_post("/_control/mode", control_mode)
    app.router.add_get("/_control/state", control_state)
    return app


async def serve(port: int, key: str, cert: str, cert_key: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, cert_key)
    runner = web.AppRunner(make_app(key), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=context)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"READY {bound}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--cert-key", required=True)
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.port, args.key, args.cert, args.cert_key))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
