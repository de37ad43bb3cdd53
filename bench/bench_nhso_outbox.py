#!/usr/bin/env python3
"""Claim outbox figures with real processes: the agent (token in gnome-keyring inside
dbus-run-session) and the local NHSO contract server.

1. Acceptance: claims/s answered ``202`` (each one committed to SQLite with
   synchronous=FULL first) from 1 and from 8 concurrent HIS clients, while the sender
   delivers them, and the time until all of them are at NHSO.
2. Delivery: claims/s reaching NHSO when it takes 100 ms per claim.
3. Restart: claims queued while NHSO refuses the token, agent ``kill -9``, token fixed,
   agent started again: time to listening, to the first delivery and until every claim is
   delivered (each exactly once).

Prints the figures and writes test-output/bench_nhso_outbox.json. Not a test: it asserts
only that nothing was lost or duplicated (figures from a broken run would mean nothing).

    .venv/bin/python bench/bench_nhso_outbox.py [--claims 300]
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from testrig.nhso_support import (
    HCODE,
    TOKEN,
    Proc,
    agent_env,
    claim_body,
    free_port,
    http,
    run_cli,
    secret_service,
    start_contract_server,
)

REPO = Path(__file__).resolve().parent.parent

OUTPUT = REPO / "test-output"


def submit_all(url: str, bodies: list[dict], clients: int) -> float:
    """Seconds to get 202 for every body, with ``clients`` concurrent submitters."""
    def one(body: dict) -> None:
        status, answer = http("POST", f"{url}/v1/claims", body)
        if status != 202:
            raise RuntimeError(f"claim refused: {status} {answer}")
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, bodies))
    return time.perf_counter() - started


def wait_delivered(server: str, expected: set[str], deadline: float = 600) -> float:
    started = time.perf_counter()
    while True:
        counts = http("GET", f"{server}/_control/state")[1]["claimCounts"]
        if expected <= set(counts):
            dup = {t: n for t, n in counts.items() if n != 1}
            if dup:
                raise RuntimeError(f"duplicates at NHSO: {dup}")
            return time.perf_counter() - started
        if time.perf_counter() - started > deadline:
            raise RuntimeError("claims not delivered in time")
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=int, default=300)
    args = parser.parse_args()
    n = args.claims
    figures: dict[str, object] = {"claims": n, "machine": platform.platform(),
                                  "cpus": __import__("os").cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-nhso-") as tmpname:
        tmp = Path(tmpname)
        with secret_service(tmp / "home") as env:
            server = start_contract_server(env, tmp / "server.log")
            try:
                # A refused token is retried after 1 s (default 300 s) to keep this short.
                aenv = agent_env(env, tmp, server.url, THAICARD_NHSO_TOKEN_RETRY="1")
                assert run_cli(["token", "set"], aenv, stdin=TOKEN + "\n").returncode == 0
                port = free_port()
                agent = Proc(["tests.nhso_agent_proc", "--port", str(port)], aenv,
                             tmp / "agent.log")
                now_ms = int(time.time() * 1000)
                batch = 0

                def bodies() -> list[dict]:
                    nonlocal batch
                    batch += 1
                    return [claim_body(batch * 100_000 + i, now_ms=now_ms) for i in range(n)]

                # 1. HIS clients submit while the sender delivers (NHSO answers at once)
                for clients in (1, 8):
                    group = bodies()
                    started = time.perf_counter()
                    seconds = submit_all(agent.url, group, clients)
                    delivered = wait_delivered(server.url, {b["transactionId"] for b in group})
                    figures[f"accept_per_s_{clients}_clients"] = round(n / seconds, 1)
                    figures[f"delivered_all_s_{clients}_clients"] = round(
                        time.perf_counter() - started, 2)
                    del delivered
                # 2. delivery when NHSO takes 100 ms per claim (4 senders)
                http("POST", f"{server.url}/_control/latency", {"seconds": 0.1})
                group = bodies()
                started = time.perf_counter()
                submit_all(agent.url, group, 8)
                wait_delivered(server.url, {b["transactionId"] for b in group})
                figures["deliver_per_s_nhso_100ms"] = round(
                    n / (time.perf_counter() - started), 1)
                http("POST", f"{server.url}/_control/latency", {"seconds": 0.0})
                # 3. NHSO refuses the token, claims pile up, kill -9, token fixed, restart
                http("POST", f"{server.url}/_control/tokens", {TOKEN: None})
                group = bodies()
                submit_all(agent.url, group, 8)
                agent.kill(signal.SIGKILL)
                http("POST", f"{server.url}/_control/tokens", {TOKEN: HCODE})
                before = len(http("GET", f"{server.url}/_control/state")[1]["claimCounts"])
                started = time.perf_counter()
                agent = Proc(["tests.nhso_agent_proc", "--port", str(port)], aenv,
                             tmp / "agent.log")
                ready = time.perf_counter() - started
                while len(http("GET", f"{server.url}/_control/state")[1]["claimCounts"]) \
                        == before:
                    time.sleep(0.005)
                first = time.perf_counter() - started
                wait_delivered(server.url, {b["transactionId"] for b in group})
                total = time.perf_counter() - started
                figures.update(restart_ready_s=round(ready, 2),
                               restart_first_delivery_s=round(first, 2),
                               restart_all_delivered_s=round(total, 2),
                               restart_deliver_per_s=round(n / (total - first), 1))
                agent.kill(signal.SIGTERM)
            finally:
                server.kill(signal.SIGTERM)
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "bench_nhso_outbox.json").write_text(json.dumps(figures, indent=2))
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    accept1, accept8 = figures["accept_per_s_1_clients"], figures["accept_per_s_8_clients"]
    print(f"{'accept ratio 8/1 clients':<{width}}  {accept8 / accept1:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
