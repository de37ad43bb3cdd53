#!/usr/bin/env python3
"""Card read figures through the real PC/SC stack (pyscard -> pcscd -> vpcd -> virtual card).

Prints APDUs per read, median read times with 0 ms and 30 ms per APDU (30 ms is what a
real card on a real reader costs), and how long pcscd takes to report an insertion or a
removal to the monitor. Starts its own pcscd when none runs (the test rig's code) and
writes the figures to test-output/bench_card_read.json. Not a test: it asserts nothing.

    .venv/bin/python bench/bench_card_read.py [--reads 30] [--slow-reads 5] [--insertions 12]

Also reports the idle cost of the monitor (CPU and PC/SC calls while nothing happens).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.card.session import CardRead, read_card  # noqa: E402
from agent.readers.pcsc import PcscBackend  # noqa: E402
from tests.pcsc_rig import (OUTPUT, MonitorRig, PcscDaemon, card_present,  # noqa: E402
                            lock_rig, missing_requirements, settle_empty, wait_states)
from tests.vpcd_card import VirtualCard  # noqa: E402


def timed_reads(backend: PcscBackend, card: VirtualCard, count: int,
                **options: object) -> dict[str, object]:
    """``count`` connect + read + disconnect rounds, as the agent does per insertion."""
    totals, texts, apdus = [], [], set()
    for _ in range(count):
        text_at: list[float] = []
        started = time.perf_counter()
        with backend.connect(card.reader) as channel:
            result: CardRead = read_card(
                channel.transmit, channel.atr,
                on_text=(lambda _c: text_at.append(time.perf_counter()))
                if options.get("text_first") else None,
                photo=bool(options.get("photo", True)))
        totals.append((time.perf_counter() - started) * 1000)
        if text_at:
            texts.append((text_at[0] - started) * 1000)
        apdus.add(result.stats.apdus)
    figures: dict[str, object] = {"reads": count, "apdus": sorted(apdus),
                                  "median_ms": round(statistics.median(totals), 1),
                                  "max_ms": round(max(totals), 1)}
    if texts:
        figures["median_text_ms"] = round(statistics.median(texts), 1)
    return figures


def event_latency(rig: MonitorRig, insertions: int) -> dict[str, object]:
    """Card connected to vpcd -> ``card_inserted`` at the monitor, and pulled -> ``card_removed``."""
    inserted_ms, removed_ms = [], []
    card = VirtualCard.demo(0)
    for _ in range(insertions):
        started = time.perf_counter()
        card.insert(0)
        event = rig.events.wait_for("card_inserted", card.reader)
        inserted_ms.append((rig.events.arrival(event) - started) * 1000)
        started = time.perf_counter()
        card.remove()
        event = rig.events.wait_for("card_removed", card.reader)
        removed_ms.append((rig.events.arrival(event) - started) * 1000)

    def summary(values: list[float]) -> dict[str, float]:
        return {"median_ms": round(statistics.median(values), 1),
                "min_ms": round(min(values), 1), "max_ms": round(max(values), 1)}

    return {"samples": insertions, "insertion_to_event": summary(inserted_ms),
            "removal_to_event": summary(removed_ms)}


def idle_cost(rig: MonitorRig, seconds: float) -> dict[str, object]:
    """CPU used by the monitor thread, and PC/SC calls it made, while nothing happens."""
    from agent.readers import pcsc

    calls = []
    real = pcsc.scard.SCardGetStatusChange
    pcsc.scard.SCardGetStatusChange = lambda *a: calls.append(1) or real(*a)  # type: ignore[assignment]
    try:
        tid = rig.monitor._thread.native_id  # type: ignore[union-attr]
        before = _thread_cpu_s(tid)
        time.sleep(seconds)                 # idling is the thing being measured
        used = _thread_cpu_s(tid) - before
    finally:
        pcsc.scard.SCardGetStatusChange = real  # type: ignore[assignment]
    return {"seconds": seconds, "monitor_cpu_ms": round(used * 1000, 2),
            "status_change_calls": len(calls)}


def _thread_cpu_s(tid: int) -> float:
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_card(backend: PcscBackend, card: VirtualCard,
              measure: Callable[[], dict[str, object]]) -> dict[str, object]:
    card.insert(0)
    try:
        wait_states(backend, card_present(card.reader))
        return measure()
    finally:
        card.remove()
        settle_empty()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=30, help="reads per figure at 0 ms/APDU")
    parser.add_argument("--slow-reads", type=int, default=5, help="reads per figure at 30 ms/APDU")
    parser.add_argument("--insertions", type=int, default=12, help="insert/remove samples")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idle monitoring")
    parser.add_argument("--json", type=Path, default=OUTPUT / "bench_card_read.json")
    args = parser.parse_args()

    missing = missing_requirements()
    if missing:
        print("cannot run: missing " + ", ".join(missing), file=sys.stderr)
        return 2
    lock = lock_rig()
    daemon = PcscDaemon(OUTPUT / "pcscd-bench.log", debug=False)
    daemon.start()                      # no-op when a pcscd already runs (then it is not ours)
    backend = PcscBackend()
    rows: dict[str, dict[str, object]] = {}
    try:
        settle_empty()
        for delay in (0.0, 0.03):
            count = args.reads if delay == 0 else args.slow_reads
            label = f"{delay * 1000:.0f} ms/APDU"
            card = VirtualCard.demo(0, apdu_delay=delay)
            rows[f"full, one pass ({label})"] = with_card(
                backend, card, lambda: timed_reads(backend, card, count))
            rows[f"text first, then photo ({label})"] = with_card(
                backend, card, lambda: timed_reads(backend, card, count, text_first=True))
            rows[f"text only ({label})"] = with_card(
                backend, card, lambda: timed_reads(backend, card, count, photo=False))
        rig = MonitorRig()
        rig.start()
        try:
            latency = event_latency(rig, args.insertions)
            idle = idle_cost(rig, args.idle)
        finally:
            rig.stop()
    finally:
        backend.close()
        daemon.stop()
        os.close(lock)

    print(f"\nThai ID card read through pyscard + pcscd + vpcd ({platform.platform()})\n")
    print(f"{'read':40} {'APDUs':>7} {'median ms':>10} {'text ms':>9} {'max ms':>8} {'n':>4}")
    for name, row in rows.items():
        apdus = "/".join(str(a) for a in row["apdus"])  # type: ignore[union-attr]
        text = row.get("median_text_ms", "")
        print(f"{name:40} {apdus:>7} {row['median_ms']:>10} {text!s:>9} {row['max_ms']:>8} "
              f"{row['reads']:>4}")
    ins, rem = latency["insertion_to_event"], latency["removal_to_event"]
    print(f"\n{'event latency (monitor)':40} {'median':>10} {'min':>8} {'max':>8} {'n':>4}")
    for name, figures in (("card in vpcd -> card_inserted", ins),
                          ("card out of vpcd -> card_removed", rem)):
        print(f"{name:40} {figures['median_ms']:>10} {figures['min_ms']:>8} "  # type: ignore[index]
              f"{figures['max_ms']:>8} {latency['samples']:>4}")
    print(f"\nidle monitor over {idle['seconds']} s: {idle['monitor_cpu_ms']} ms CPU, "
          f"{idle['status_change_calls']} SCardGetStatusChange calls (it blocks, it does not poll)")
    full0 = rows["full, one pass (0 ms/APDU)"]["median_ms"]
    full30 = rows["full, one pass (30 ms/APDU)"]["median_ms"]
    print(f"\n30 ms/APDU over 0 ms/APDU, full read: {full30 / full0:.0f}x "  # type: ignore[operator]
          "(the per-command round trip dominates: fewer APDUs is what makes reads fast)")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"reads": rows, "events": latency, "idle": idle,
                                     "platform": platform.platform(),
                                     "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                                    indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
