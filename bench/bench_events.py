#!/usr/bin/env python3
"""Insert to event: a card inserted -> ``card.read`` on the WebSocket of a real agent.

Starts ``thaicard-agent serve --backend pcsc`` as its own process (and pcscd when none
runs, with the test rig's lock), connects to ``/v1/events``, and inserts the virtual card
again and again. Next to the agent, this script keeps its own PC/SC monitor: the moment
pcscd reports the card present to *it* is the zero of each sample, so the figures are the
agent's own latency (its monitor, read, event bus and WebSocket), not pcscd's polling
interval (~400 ms, shown separately for context).

    .venv/bin/python bench/bench_events.py [--insertions 15]

Prints a table and writes test-output/bench/bench_events.json. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from testrig.pcsc_rig import (
    OUTPUT,
    MonitorRig,
    PcscDaemon,
    lock_rig,
    missing_requirements,
    settle_empty,
)
from testrig.robust_support import AgentProcess
from testrig.vpcd_card import READER_NAMES, VirtualCard

REPO = Path(__file__).resolve().parent.parent

DELAYS = (0.0, 0.03)


class Inbox:
    """Every WebSocket message with the perf_counter() moment it arrived."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.changed = asyncio.Event()

    async def pump(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            self.messages.append((time.perf_counter(), json.loads(msg.data)))
            self.changed.set()

    async def wait(self, type_: str, reader: str, after: int, timeout: float = 30) -> float:
        async def find() -> float:
            while True:
                for at, msg in self.messages[after:]:
                    if msg["type"] == type_ and msg.get("reader") == reader:
                        return at
                self.changed.clear()
                await self.changed.wait()
        return await asyncio.wait_for(find(), timeout)


def summary(values: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(values), 1),
            "min_ms": round(min(values), 1), "max_ms": round(max(values), 1)}


async def run_samples(agent: AgentProcess, rig: MonitorRig, insertions: int
                      ) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(agent.ws_url, max_msg_size=0)
        inbox = Inbox()
        pump = asyncio.create_task(inbox.pump(ws))
        try:
            for delay in DELAYS:
                samples: dict[str, list[float]] = {k: [] for k in (
                    "vpcd_to_presence", "presence_to_inserted", "presence_to_read",
                    "presence_to_photo")}
                for i in range(insertions):
                    slot = i % 2
                    reader = READER_NAMES[slot]
                    card = VirtualCard.demo(slot, apdu_delay=delay)
                    mark = len(inbox.messages)
                    rig.events.skip_all()
                    plugged = time.perf_counter()
                    card.insert(slot)
                    event = await asyncio.to_thread(rig.events.wait_for, "card_inserted",
                                                    reader, 10.0)
                    presence = rig.events.arrival(event)
                    inserted = await inbox.wait("card.inserted", reader, mark)
                    read = await inbox.wait("card.read", reader, mark)
                    photo = await inbox.wait("card.photo", reader, mark)
                    samples["vpcd_to_presence"].append((presence - plugged) * 1000)
                    samples["presence_to_inserted"].append((inserted - presence) * 1000)
                    samples["presence_to_read"].append((read - presence) * 1000)
                    samples["presence_to_photo"].append((photo - presence) * 1000)
                    mark = len(inbox.messages)
                    await asyncio.to_thread(card.remove)
                    await inbox.wait("card.removed", reader, mark)
                results[f"{delay * 1000:.0f} ms/APDU"] = {
                    "samples": insertions, **{k: summary(v) for k, v in samples.items()}}
        finally:
            await ws.close()
            pump.cancel()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--insertions", type=int, default=15, help="samples per APDU delay")
    parser.add_argument("--json", type=Path, default=OUTPUT / "bench" / "bench_events.json")
    args = parser.parse_args()
    if not 1 <= args.insertions <= 500:
        parser.error("keep it bounded: 1-500 insertions")
    missing = missing_requirements()
    if missing:
        print("cannot run: missing " + ", ".join(missing), file=sys.stderr)
        return 2

    lock = lock_rig()
    daemon = PcscDaemon(OUTPUT / "pcscd-bench.log", debug=False)
    daemon.start()
    rig = MonitorRig()
    agent = AgentProcess(backend="pcsc")
    try:
        settle_empty()
        rig.start()
        agent.start()
        agent.wait_listening()
        agent.wait_status(lambda s: {r["name"] for r in s["readers"]} >= set(READER_NAMES))
        results = asyncio.run(run_samples(agent, rig, args.insertions))
    finally:
        agent.stop()
        rig.stop()
        daemon.stop()
        os.close(lock)

    print(f"\nInsert to event through pcscd + a real `serve --backend pcsc` "
          f"({platform.platform()}, {os.cpu_count()} CPUs)")
    print("zero = the moment pcscd reported the card present to this script's own monitor\n")
    print(f"{'':34}" + "".join(f"{label:>26}" for label in results))
    print(f"{'':34}" + "".join(f"{'median (min-max) ms':>26}" for _ in results))
    names = {"vpcd_to_presence": "card plugged -> pcscd reports it",
             "presence_to_inserted": "presence -> card.inserted (WS)",
             "presence_to_read": "presence -> card.read (WS)",
             "presence_to_photo": "presence -> card.photo (WS)"}
    for key, name in names.items():
        cells = [f"{r[key]['median_ms']} ({r[key]['min_ms']}-{r[key]['max_ms']})"
                 for r in results.values()]
        print(f"{name:34}" + "".join(f"{c:>26}" for c in cells))
    print(f"\n{next(iter(results.values()))['samples']} insertions per column, both vpcd slots "
          "in turn. card.read = every text field; card.photo = the whole read.")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"insert_to_event": results, "platform": platform.platform(),
                                     "cpus": os.cpu_count(),
                                     "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                                    indent=2) + "\n")
    print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
