"""Serving figures of ``thaicard-agent serve --demo``: cached reads and WebSocket fan-out.

    .venv/bin/python bench/bench_serving.py [--requests 1000] [--ws-clients 200] [--rounds 5]

Starts the agent as its own process on a free loopback port (demo reader, temporary
config and data dirs), then measures from this process:

* cached-read latency (p50/p99) and throughput at 1, 10 and 100 concurrent HTTP clients,
  for the NHSO-compatible read and for ``/v1/card`` with the photo;
* WebSocket fan-out: N clients connected to ``/v1/events``; a demo card is inserted and the
  time until each client has ``card.read`` (and ``card.photo``) is recorded.

Prints a table and writes ``test-output/bench_serving.json``. Bounded and loopback only.
The client shares the CPU with the agent, so figures are a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from testrig.ports import free_port

ROOT = Path(__file__).resolve().parents[1]

OUTPUT = ROOT / "test-output" / "bench_serving.json"
ENDPOINTS = {"compat read (no image)": "/api/smartcard/read-card-only?readImageFlag=false",
             "compat read + image": "/api/smartcard/read?readImageFlag=true",
             "v1 card + photo": "/v1/card?photo=1"}
CONCURRENCY = (1, 10, 100)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def start_agent(port: int, workdir: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THAICARD_")}
    env.update(THAICARD_CONFIG_DIR=str(workdir / "config"), THAICARD_DATA_DIR=str(workdir / "data"))
    return subprocess.Popen([sys.executable, "-m", "agent", "serve", "--demo", "--port", str(port),
                             "--log-level", "WARNING", "--log-dir", str(workdir / "logs")],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


async def wait_up(base: str, proc: subprocess.Popen[str]) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            if proc.poll() is not None:
                raise SystemExit(f"agent exited: {proc.stderr.read() if proc.stderr else ''}")
            try:
                async with session.get(base + "/v1/card?photo=1") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("agent did not come up")


async def bench_reads(base: str, path: str, concurrency: int, total: int) -> dict[str, Any]:
    latencies: list[float] = []
    per_client = max(1, total // concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def client() -> None:
            for _ in range(per_client):
                started = time.perf_counter()
                async with session.get(base + path) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise SystemExit(f"{path}: HTTP {resp.status}")
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(client() for _ in range(min(concurrency, 10))))   # warm-up
        latencies.clear()
        wall = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - wall
    return {"concurrency": concurrency, "requests": len(latencies),
            "p50_ms": round(pct(latencies, 50) * 1000, 3),
            "p99_ms": round(pct(latencies, 99) * 1000, 3),
            "throughput_rps": round(len(latencies) / wall, 1)}


async def bench_fanout(base: str, clients: int, rounds: int) -> dict[str, Any]:
    ws_url = base.replace("http", "ws") + "/v1/events"
    results = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        sockets = [await session.ws_connect(ws_url, max_msg_size=0) for _ in range(clients)]
        try:
            for ws in sockets:
                assert (await ws.receive_json())["type"] == "snapshot"

            async def until(ws: Any, kind: str) -> float:
                while True:
                    msg = await ws.receive_json()
                    if msg["type"] == kind:
                        return time.perf_counter()

            for variant in range(rounds):
                async with session.delete(base + "/v1/demo/card") as resp:
                    assert resp.status == 202
                await asyncio.gather(*(until(ws, "card.removed") for ws in sockets))
                t0 = time.perf_counter()
                async with session.post(base + "/v1/demo/card", json={"variant": variant}) as resp:
                    assert resp.status == 202

                async def both(ws: Any) -> tuple[float, float]:
                    read = await until(ws, "card.read")
                    return read, await until(ws, "card.photo")
                times = await asyncio.wait_for(asyncio.gather(*(both(ws) for ws in sockets)), 60)
                reads = [r - t0 for r, _ in times]
                photos = [p - t0 for _, p in times]
                results.append({"read_first_ms": min(reads) * 1000,
                                "read_p50_ms": pct(reads, 50) * 1000,
                                "read_last_ms": max(reads) * 1000,
                                "read_spread_ms": (max(reads) - min(reads)) * 1000,
                                "photo_last_ms": max(photos) * 1000})
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))
    summary = {key: round(statistics.median(r[key] for r in results), 2) for key in results[0]}
    return {"clients": clients, "rounds": rounds, **summary,
            "note": "from the insert request to each client's card.read / card.photo; "
                    "includes the demo card's read (text + photo)"}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="thaicard-bench-") as tmp:
        proc = start_agent(port, Path(tmp))
        try:
            await wait_up(base, proc)
            reads = {}
            for name, path in ENDPOINTS.items():
                reads[name] = [await bench_reads(base, path, c, args.requests)
                               for c in CONCURRENCY]
            fanout = await bench_fanout(base, args.ws_clients, args.rounds)
        finally:
            proc.terminate()
            proc.wait(15)
    return {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "platform": platform.platform()},
            "cached_reads": reads, "ws_fanout": fanout}


def print_table(result: dict[str, Any]) -> None:
    print("Cached reads (demo reader; one read per insertion, then served from the cache)")
    print(f"{'endpoint':<26}{'clients':>8}{'requests':>10}{'p50 ms':>10}{'p99 ms':>10}"
          f"{'req/s':>10}")
    for name, rows in result["cached_reads"].items():
        for row in rows:
            print(f"{name:<26}{row['concurrency']:>8}{row['requests']:>10}{row['p50_ms']:>10.2f}"
                  f"{row['p99_ms']:>10.2f}{row['throughput_rps']:>10.0f}")
    f = result["ws_fanout"]
    print(f"\nWebSocket fan-out: {f['clients']} clients, median of {f['rounds']} insertions")
    print(f"  card.read reached the first client {f['read_first_ms']:.1f} ms, half "
          f"{f['read_p50_ms']:.1f} ms, all {f['read_last_ms']:.1f} ms after the insert "
          f"(spread {f['read_spread_ms']:.1f} ms); card.photo at all {f['photo_last_ms']:.1f} ms")
    print(f"\nMachine: {result['machine']['cpus']} CPUs, Python {result['machine']['python']}; "
          "client and agent share them.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per level")
    parser.add_argument("--ws-clients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not (1 <= args.requests <= 100_000 and 1 <= args.ws_clients <= 1000
            and 1 <= args.rounds <= 50):
        parser.error("keep it bounded: requests <= 100000, ws-clients <= 1000, rounds <= 50")
    result = asyncio.run(main_async(args))
    print_table(result)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nWritten: {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
