"""The double-send risk that remains when NHSO records a claim late (docs/nhso.md).

A claim whose answer was lost is looked up at NHSO twice before it is sent again: after
``inDoubtDelay`` and ``inDoubtRecheck`` more. If NHSO records it later than that, the
lookups miss it and it is sent a second time. NHSO publishes no bound on how late it
records, so this measures the window instead: claims whose recording the contract server
delays by 0 to 2x the window (uniformly), each answer lost, counted at the server. Timings
are scaled down (``--scale``) so a run takes seconds; the window scales with them.

    .venv/bin/python bench/bench_late_recording.py --claims 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.nhso.routes import NHSO_SERVICE, setup_nhso
from agent.nhso.settings import NhsoSettings, load_settings
from agent.nhso.token import TokenStore
from testrig.nhso_server import STATE, Rule, make_app
from testrig.nhso_support import HCODE, RECORDER_PID, SOURCE_ID, TOKEN, MemoryKeyring, claim_body

DEFAULTS = NhsoSettings()


async def run(claims: int, scale: float, seed: int) -> dict[str, Any]:
    timeout = DEFAULTS.request_timeout * scale
    delay = DEFAULTS.in_doubt_delay * scale
    recheck = DEFAULTS.in_doubt_recheck * scale
    # The last lookup happens about timeout + delay + recheck after the request arrived.
    window = timeout + delay + recheck
    rng = random.Random(seed)
    late = [rng.uniform(0, 2 * window) for _ in range(claims)]
    server = TestServer(make_app({TOKEN: HCODE}))
    await server.start_server()
    state = server.app[STATE]
    bodies = [claim_body(900 + n) for n in range(claims)]
    state.rules = [Rule("claim", ["late"], count=1, delay=d, key=b["transactionId"])
                   for d, b in zip(late, bodies, strict=True)]
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            config_dir=Path(tmp) / "c", data_dir=Path(tmp) / "d", env={},
            site_path=Path(tmp) / "none.json", base_url=str(server.make_url("")).rstrip("/"),
            hcode=HCODE, source_id=SOURCE_ID, recorder_pid=RECORDER_PID,
            request_timeout=timeout, in_doubt_delay=delay, in_doubt_recheck=recheck,
            retry_base=0.05, retry_max=0.2, sender_concurrency=8)
        keyring = MemoryKeyring()
        keyring.set_password("thaicard-agent", "nhso-token", TOKEN)
        app = web.Application()
        setup_nhso(app, settings, publish=lambda t, p: None, token_store=TokenStore(keyring))
        runner = web.AppRunner(app)
        await runner.setup()
        service = app[NHSO_SERVICE]
        try:
            started = time.monotonic()
            for body in bodies:
                await service.claims.submit(body)
            while True:
                counts = await service.outbox.counts()
                if counts["sent"] == claims:
                    break
                await asyncio.sleep(0.1)
            elapsed = time.monotonic() - started
        finally:
            await runner.cleanup()
    await server.close()
    twice = [d for d, b in zip(late, bodies, strict=True)
             if state.claim_counts[b["transactionId"]] > 1]
    inside = [d for d in late if d < window]
    return {"claims": claims, "scale": scale, "window_s": round(window / scale, 1),
            "late_within_window": len(inside),
            "sent_twice": len(twice),
            "sent_twice_within_window": sum(1 for d in twice if d < window),
            "earliest_double_x_window": round(min(twice) / window, 2) if twice else None,
            "lost_claims": sum(1 for b in bodies if not state.claim_counts[b["transactionId"]]),
            "elapsed_s": round(elapsed, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=int, default=60)
    parser.add_argument("--scale", type=float, default=0.02,
                        help="timings as a fraction of the defaults (0.02: 65 s -> 1.3 s)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.claims, args.scale, args.seed))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
