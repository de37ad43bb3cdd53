#!/usr/bin/env python3
"""Footprint of ``thaicard-agent serve``: start-up time, idle cost, and memory after reads.

* Start-up: process start -> the port accepts a connection (median of ``--starts`` runs),
  with the demo reader and, when the PC/SC rig is there, with ``--backend pcsc``.
* Idle: RSS, CPU time and context switches of every thread over ``--idle`` seconds
  (default 60) with nothing happening, to show the agent does no busy polling. PC/SC
  backend with two empty readers when the rig is there, else the demo reader.
* After reads: ``--reads`` (default 1000) insertions through the demo reader, each one read
  by the core and fetched with ``GET /v1/card?photo=1`` (and checked against the card
  inserted), then RSS, threads and file descriptors against the numbers before.

Reads /proc (Linux). Prints a table and writes test-output/bench/bench_footprint.json.

    .venv/bin/python bench/bench_footprint.py [--idle 60] [--reads 1000] [--starts 5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from agent.card.demo import demo_profile
from testrig.pcsc_rig import OUTPUT, PcscDaemon, lock_rig, missing_requirements, settle_empty
from testrig.robust_support import AgentProcess, Footprint
from testrig.vpcd_card import READER_NAMES

REPO = Path(__file__).resolve().parent.parent

DEMO_VARIANTS = 100


def context_switches(pid: int) -> dict[str, int]:
    """Voluntary + involuntary switches per thread (tid): each wake-up counts."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total = 0
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
            out[task.name] = total
        except FileNotFoundError:        # a thread ended while we looked
            continue
    return out


def startups(backend: str, count: int) -> dict[str, Any]:
    times = []
    for _ in range(count):
        with AgentProcess(backend=backend) as agent:
            agent.start()
            times.append(agent.wait_listening() * 1000)
    return {"backend": backend, "starts": count, "median_ms": round(statistics.median(times)),
            "min_ms": round(min(times)), "max_ms": round(max(times))}


def idle(backend: str, seconds: float) -> dict[str, Any]:
    with AgentProcess(backend=backend) as agent:
        agent.start()
        agent.wait_listening()
        if backend == "pcsc":
            agent.wait_status(lambda s: {r["name"] for r in s["readers"]} >= set(READER_NAMES))
        else:
            agent.wait_status(lambda s: s["reads"] >= 1)
        time.sleep(2)                    # let start-up work (imports, first read) finish
        before, switches = agent.footprint(), context_switches(agent.pid)
        time.sleep(seconds)              # idling is what is measured
        after, switches_after = agent.footprint(), context_switches(agent.pid)
    per_thread = {tid: round((n - switches.get(tid, 0)) / seconds, 2)
                  for tid, n in switches_after.items()}
    return {"backend": backend, "seconds": seconds, "rss_mib": round(after.rss_kib / 1024, 1),
            "cpu_ms": round((after.cpu_s - before.cpu_s) * 1000, 1),
            "cpu_percent": round((after.cpu_s - before.cpu_s) / seconds * 100, 3),
            "wakeups_per_s": round(sum(per_thread.values()), 2),
            "wakeups_per_s_by_thread": per_thread,
            "threads": after.threads, "fds": after.fds}


class Http:
    """One keep-alive connection, as a page would use."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if data else {}
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None


def after_reads(count: int) -> dict[str, Any]:
    with AgentProcess(backend="demo") as agent:
        agent.start()
        agent.wait_listening()
        agent.wait_status(lambda s: s["reads"] >= 1)
        client = Http(agent.port)

        def until(card: bool) -> dict[str, Any]:
            # The demo reader's insert/remove answer 202: the core learns of the change
            # from its monitor thread a moment later, as it would from pcscd.
            for _ in range(2000):
                status, body = client.call("GET", "/v1/card?photo=1")
                if status != 200 and body.get("code") != "no_card":
                    raise RuntimeError(f"read failed: {status} {body}")
                if (status == 200) == card:
                    return body
                time.sleep(0.001)
            raise RuntimeError("the core did not follow the demo reader")

        def one(variant: int) -> None:
            client.call("DELETE", "/v1/demo/card")
            until(card=False)
            status, _ = client.call("POST", "/v1/demo/card", {"variant": variant})
            assert status == 202, status
            body = until(card=True)
            profile = demo_profile(variant)
            if body["card"]["citizen_id"] != profile.text.citizen_id:
                # A stale card served after a swap would make every figure meaningless.
                raise RuntimeError(f"wrong card: expected variant {variant}")

        for i in range(20):                   # warm up: caches and lazy imports settle
            one(i % DEMO_VARIANTS)
        before: Footprint = agent.footprint()
        started = time.perf_counter()
        for i in range(count):
            one(i % DEMO_VARIANTS)
        wall = time.perf_counter() - started
        after = agent.footprint()
        reads = json.loads(agent.get("/v1/status")[1])["reads"]
        client.conn.close()
    return {"reads": count, "core_reads": reads, "wall_s": round(wall, 1),
            "before": before.to_json(), "after": after.to_json(),
            "rss_growth_mib": round((after.rss_kib - before.rss_kib) / 1024, 1),
            "cpu_ms_per_read": round((after.cpu_s - before.cpu_s) / count * 1000, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=float, default=60.0, help="idle seconds to measure")
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--json", type=Path, default=OUTPUT / "bench" / "bench_footprint.json")
    args = parser.parse_args()
    if not (1 <= args.idle <= 600 and 1 <= args.reads <= 20000 and 1 <= args.starts <= 50):
        parser.error("keep it bounded: idle <= 600 s, reads <= 20000, starts <= 50")

    pcsc = not missing_requirements()
    result: dict[str, Any] = {"platform": platform.platform(), "cpus": os.cpu_count(),
                              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    result["startup"] = [startups("demo", args.starts)]
    if pcsc:
        lock = lock_rig()
        daemon = PcscDaemon(OUTPUT / "pcscd-bench.log", debug=False)
        daemon.start()
        try:
            settle_empty()
            result["startup"].append(startups("pcsc", args.starts))
            result["idle"] = idle("pcsc", args.idle)
        finally:
            daemon.stop()
            os.close(lock)
    else:
        result["idle"] = idle("demo", args.idle)
    result["after_reads"] = after_reads(args.reads)

    print(f"\nFootprint of `thaicard-agent serve` ({result['platform']}, {result['cpus']} CPUs)\n")
    print(f"{'start-up to a listening port':34} {'median ms':>10} {'min':>7} {'max':>7} {'n':>4}")
    for row in result["startup"]:
        print(f"{'  --backend ' + row['backend']:34} {row['median_ms']:>10} {row['min_ms']:>7} "
              f"{row['max_ms']:>7} {row['starts']:>4}")
    i = result["idle"]
    print(f"\nidle {i['seconds']:.0f} s ({i['backend']} backend): RSS {i['rss_mib']} MiB, "
          f"CPU {i['cpu_ms']} ms ({i['cpu_percent']} %), {i['wakeups_per_s']} wake-ups/s over "
          f"all {i['threads']} threads, {i['fds']} fds")
    a = result["after_reads"]
    b, f = a["before"], a["after"]
    print(f"\n{a['reads']} insertions read and fetched (demo reader) in {a['wall_s']} s, "
          f"{a['cpu_ms_per_read']} ms agent CPU each:")
    print(f"{'':12} {'RSS MiB':>9} {'threads':>8} {'fds':>6}")
    for name, row in (("before", b), ("after", f)):
        print(f"{name:12} {row['rss_mib']:>9} {row['threads']:>8} {row['fds']:>6}")
    print(f"RSS growth over {a['reads']} reads: {a['rss_growth_mib']} MiB")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
