#!/usr/bin/env python3
"""Card read figures through the real PC/SC stack (pyscard -> pcscd -> vpcd -> virtual card).

Prints APDUs per read, median read times with 0 ms and 30 ms per APDU (30 ms is what a
real card on a real reader costs), and how long pcscd takes to report an insertion or a
removal to the monitor. Starts its own pcscd when none runs (the test rig's code) and
writes the figures to test-output/bench/bench_card_read.json. Not a test: it asserts nothing.

    .venv/bin/python bench/bench_card_read.py [--reads 30] [--slow-reads 5] [--insertions 12]

In the same run, on the same virtual card, it also reads with:

* the peer reader ``pythaiidcard`` from PyPI, in its own venv (``--peer-python``, made by
  ``scripts/bench.sh``; skipped with a note when absent), and prints agent/peer ratios;
* the floor: the agent's exact APDUs replayed by a bare pyscard loop (context, connect,
  transmit, disconnect), which shows what the agent's own code adds.

Also reports the idle cost of the monitor (CPU and PC/SC calls while nothing happens).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from agent.card.session import CardRead, read_card
from agent.card.values import CardProfile
from agent.readers.pcsc import PcscBackend
from testrig.pcsc_rig import (
    OUTPUT,
    MonitorRig,
    PcscDaemon,
    card_present,
    lock_rig,
    missing_requirements,
    settle_empty,
    wait_states,
)
from testrig.vpcd_card import VirtualCard

REPO = Path(__file__).resolve().parent.parent


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


def recorded_apdus(backend: PcscBackend, card: VirtualCard) -> tuple[list[bytes], int]:
    """The command APDUs of one text-first read (what the core does), and how many came
    before the text fields were complete."""
    commands: list[bytes] = []
    text_after: list[int] = []
    with backend.connect(card.reader) as channel:
        def transmit(apdu: bytes) -> bytes:
            commands.append(apdu)
            return channel.transmit(apdu)
        read_card(transmit, channel.atr, on_text=lambda _c: text_after.append(len(commands)))
    return commands, text_after[0]


def floor_reads(card: VirtualCard, commands: list[bytes], text_after: int,
                count: int) -> dict[str, object]:
    """The same APDUs in a bare pyscard loop, with the same per-read context and connect."""
    from smartcard import scard

    totals, texts = [], []
    protocols = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
    for _ in range(count):
        started = time.perf_counter()
        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        hresult, handle, protocol = scard.SCardConnect(context, card.reader,
                                                       scard.SCARD_SHARE_SHARED, protocols)
        if hresult != scard.SCARD_S_SUCCESS:
            raise RuntimeError(f"floor: connect failed: {scard.SCardGetErrorMessage(hresult)}")
        for i, apdu in enumerate(commands, 1):
            hresult, response = scard.SCardTransmit(handle, protocol, list(apdu))
            if hresult != scard.SCARD_S_SUCCESS or len(response) < 2:
                raise RuntimeError("floor: transmit failed")
            if i == text_after:
                texts.append((time.perf_counter() - started) * 1000)
        scard.SCardDisconnect(handle, scard.SCARD_LEAVE_CARD)
        scard.SCardReleaseContext(context)
        totals.append((time.perf_counter() - started) * 1000)
        if response[-2:] != [0x90, 0x00]:
            raise RuntimeError("floor: the replayed read did not end with 90 00")
    return {"reads": count, "apdus": [len(commands)],
            "median_ms": round(statistics.median(totals), 1), "max_ms": round(max(totals), 1),
            "median_text_ms": round(statistics.median(texts), 1)}


def peer_reads(peer_python: Path, card: VirtualCard, count: int,
               profile: CardProfile | None = None) -> dict[str, object]:
    """``count`` reads by pythaiidcard in its own process; APDUs counted on the card."""
    from agent.card.demo import demo_profile

    before = card.apdus
    photo_out = OUTPUT / "bench" / "peer-photo.bin"
    photo_out.parent.mkdir(parents=True, exist_ok=True)
    run = subprocess.run([str(peer_python), str(REPO / "bench" / "peer_pythaiidcard.py"),
                          "--reader", card.reader, "--reads", str(count),
                          "--photo-out", str(photo_out)],
                         capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        raise RuntimeError(f"peer failed ({run.returncode}): {run.stdout[-500:]} "
                           f"{run.stderr[-1500:]}")
    out = json.loads(run.stdout.strip().splitlines()[-1])
    apdus = (card.apdus - before) / count
    profile = profile or demo_profile(0)
    decoded = out["decoded"]
    photo = photo_out.read_bytes()
    photo_out.unlink()

    def squeezed(name: str) -> str:
        return "".join(name.split())
    # A fast wrong read would be no figure at all: say what the peer got right.
    checks = {"citizen_id": decoded["cid"] == profile.text.citizen_id,
              "name_th": squeezed(decoded["name_th"]) == squeezed(profile.text.name_th.full(
                  thai=True)),
              "photo_complete": photo.startswith(profile.photo or b"-"),
              "photo_bytes": len(photo)}
    return {"reads": count, "apdus": [round(apdus)] if apdus == round(apdus) else [apdus],
            "median_ms": round(statistics.median(out["total_ms"]), 1),
            "max_ms": round(max(out["total_ms"]), 1),
            "median_text_ms": round(statistics.median(out["text_ms"]), 1),
            "peer": f"pythaiidcard {out['version']} on Python {out['python']}",
            "checks": checks}


def event_latency(rig: MonitorRig, insertions: int) -> dict[str, object]:
    """Card connected to vpcd -> ``card_inserted`` at the monitor; pulled -> ``card_removed``."""
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
    pcsc.scard.SCardGetStatusChange = lambda *a: calls.append(1) or real(*a)
    try:
        tid = rig.monitor._thread.native_id
        before = _thread_cpu_s(tid)
        time.sleep(seconds)                 # idling is the thing being measured
        used = _thread_cpu_s(tid) - before
    finally:
        pcsc.scard.SCardGetStatusChange = real
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


def compare(rows: dict[str, dict[str, object]]) -> dict[str, dict[str, float]]:
    """Peer over agent (how many times faster the agent is) and agent over floor (overhead).

    The agent's row is "text first, then photo": it is what the core does for an insertion,
    and like the peer it hands the text fields over before the photo is read.
    """
    out: dict[str, dict[str, float]] = {}
    for label in ("0 ms/APDU", "30 ms/APDU"):
        agent = rows.get(f"text first, then photo ({label})")
        peer = rows.get(f"peer: pythaiidcard ({label})")
        floor = rows.get(f"floor: bare pyscard, same APDUs ({label})")
        if agent is None:
            continue
        pairs = []
        if peer is not None:
            pairs += [("full read: peer / agent", peer["median_ms"], agent["median_ms"]),
                      ("time to text: peer / agent", peer["median_text_ms"],
                       agent["median_text_ms"]),
                      ("APDUs per full read: peer / agent", peer["apdus"][0],
                       agent["apdus"][0])]
        if floor is not None:
            pairs += [("full read: agent / bare pyscard floor (overhead)", agent["median_ms"],
                       floor["median_ms"])]
        for name, num, den in pairs:
            out.setdefault(name, {})[label] = round(num / den, 2)
    return out


# -- issue 12's goals: a card that states its photo's length, read as the agent reads ----------
GOAL_PHOTO_BYTES = 3900
GOALS = {"apdus": 40, "agent / floor": 1.05, "agent / peer": 0.72, "text after insertion ms": 250}


def jpeg_of(size: int, seed: int = 0) -> bytes:
    """A real JPEG of exactly ``size`` bytes (the demo photo and a comment segment)."""
    from agent.card.demo import demo_photo

    base = demo_photo("BENCH", seed)
    pad = size - len(base) - 4
    return base[:2] + b"\xff\xfe" + (pad + 2).to_bytes(2, "big") + b"\x20" * pad + base[2:]


def stated_card(photo_bytes: int, delay: float) -> tuple[CardProfile, VirtualCard]:
    from dataclasses import replace

    from agent.card.demo import demo_profile
    from agent.card.encode import encode_card
    from agent.card.simulator import SimulatedCard

    demo = demo_profile(0)
    photo = jpeg_of(photo_bytes)
    profile = CardProfile(replace(demo.text, photo_length=len(photo)), photo)
    return profile, VirtualCard(SimulatedCard(encode_card(profile)), apdu_delay=delay)


def exclusive_reads(backend: PcscBackend, card: VirtualCard, count: int,
                    profile: CardProfile) -> dict[str, object]:
    """What the core does per insertion: ``read_exclusive`` (one transaction, text first)."""
    from agent.core import read_exclusive

    totals, texts, apdus = [], [], set()
    for _ in range(count):
        text_at: list[float] = []
        started = time.perf_counter()
        result = read_exclusive(backend, card.reader,
                                on_text=lambda _c: text_at.append(time.perf_counter()))
        totals.append((time.perf_counter() - started) * 1000)
        texts.append((text_at[0] - started) * 1000)
        apdus.add(result.stats.apdus)
        if result.photo != profile.photo or result.text != profile.text:
            raise RuntimeError("the agent's read is not the card")
    return {"reads": count, "apdus": sorted(apdus),
            "median_ms": round(statistics.median(totals), 1), "max_ms": round(max(totals), 1),
            "median_text_ms": round(statistics.median(texts), 1)}


def text_after_insertion(card: VirtualCard, insertions: int) -> dict[str, object]:
    """A running ``CardService``: its ``card.inserted`` event -> the text's ``card.read``."""
    import asyncio

    from agent.core import CardService

    async def run() -> list[float]:
        service = CardService(PcscBackend())
        await service.start()
        gaps: list[float] = []
        try:
            for _ in range(insertions):
                sub = service.events.subscribe()
                await asyncio.to_thread(card.insert, 0)
                seen: dict[str, float] = {}
                while "card.photo" not in seen:
                    event = await asyncio.wait_for(sub.get(), 30)
                    assert event is not None
                    seen.setdefault(event.type, time.perf_counter())
                gaps.append((seen["card.read"] - seen["card.inserted"]) * 1000)
                service.events.unsubscribe(sub)
                await asyncio.to_thread(card.remove)
                await asyncio.to_thread(settle_empty)
        finally:
            await service.stop()
        return gaps

    gaps = asyncio.run(run())
    return {"samples": insertions, "median_ms": round(statistics.median(gaps), 1),
            "max_ms": round(max(gaps), 1)}


def goals(backend: PcscBackend, args: argparse.Namespace,
          peer_note: str | None) -> dict[str, object]:
    """Issue 12, at 30 ms/APDU in one run: APDUs, agent/floor, agent/peer, text time, and
    the 5,112-byte late-end-marker photo read whole."""
    count = args.slow_reads
    profile, card = stated_card(GOAL_PHOTO_BYTES, 0.03)
    out: dict[str, object] = {"photo_bytes": GOAL_PHOTO_BYTES}
    agent = with_card(backend, card, lambda: exclusive_reads(backend, card, count, profile))

    def floor() -> dict[str, object]:
        commands, text_after = recorded_apdus(backend, card)
        return floor_reads(card, commands, text_after, count)
    bare = with_card(backend, card, floor)
    out.update({"agent": agent, "floor": bare})
    if peer_note is None:
        try:
            out["peer"] = with_card(backend, card,
                                    lambda: peer_reads(args.peer_python, card, count, profile))
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
            out["peer_note"] = f"peer failed: {exc}"
    out["text_after_insertion"] = text_after_insertion(card, max(3, args.insertions // 2))
    late_profile, late = stated_card(5112, 0.03)
    late_read = with_card(backend, late, lambda: exclusive_reads(backend, late, 1, late_profile))
    out["late_end_marker_5112"] = {"apdus": late_read["apdus"], "whole": True,
                                   "median_ms": late_read["median_ms"]}
    ratios: dict[str, float] = {
        "agent / floor": round(agent["median_ms"] / bare["median_ms"], 3),
    }
    if "peer" in out:
        ratios["agent / peer"] = round(agent["median_ms"]
                                       / out["peer"]["median_ms"], 3)
    out["ratios"] = ratios
    return out


def print_goals(result: dict[str, object]) -> None:
    agent, bare = result["agent"], result["floor"]
    text = result["text_after_insertion"]
    ratios = result["ratios"]
    print(f"\nissue 12 goals, 30 ms/APDU, a card stating its {result['photo_bytes']}-byte photo"
          f" (one run)")
    rows = [
        ("APDUs per full read", agent["apdus"][0], f"<= {GOALS['apdus']}"),
        ("full read: agent / bare pyscard floor", ratios.get("agent / floor"),
         f"<= {GOALS['agent / floor']}"),
        ("full read: agent / peer pythaiidcard", ratios.get("agent / peer", "n/a"),
         f"<= {GOALS['agent / peer']}"),
        ("text after card.inserted (median ms)", text["median_ms"],
         f"<= {GOALS['text after insertion ms']}"),
        ("5,112-byte late-end-marker photo: read whole, APDUs",
         result["late_end_marker_5112"]["apdus"][0], "whole"),
    ]
    for name, value, goal in rows:
        print(f"{name:54} {value!s:>8}   goal {goal}")
    print(f"  agent {agent['median_ms']} ms, floor {bare['median_ms']} ms"
          + (f", peer {result['peer']['median_ms']} ms ({result['peer']['apdus'][0]} APDUs)"
             if "peer" in result else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=30, help="reads per figure at 0 ms/APDU")
    parser.add_argument("--slow-reads", type=int, default=5, help="reads per figure at 30 ms/APDU")
    parser.add_argument("--insertions", type=int, default=12, help="insert/remove samples")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idle monitoring")
    parser.add_argument("--goals-only", action="store_true",
                        help="only issue 12's goals (the 3.9 KB stated-length card)")
    parser.add_argument("--json", type=Path, default=OUTPUT / "bench" / "bench_card_read.json")
    parser.add_argument("--peer-python", type=Path, default=REPO / ".venv-peer" / "bin" / "python",
                        help="python of the venv with pythaiidcard (scripts/bench.sh makes it)")
    args = parser.parse_args()
    peer_note = None
    if not args.peer_python.exists():
        peer_note = (f"peer skipped: {args.peer_python} not found "
                     "(scripts/bench.sh installs pythaiidcard there)")

    missing = missing_requirements()
    if missing:
        print("cannot run: missing " + ", ".join(missing), file=sys.stderr)
        return 2
    lock = lock_rig()
    daemon = PcscDaemon(OUTPUT / "pcscd-bench.log", debug=False)
    daemon.start()                      # no-op when a pcscd already runs (then it is not ours)
    backend = PcscBackend()
    rows: dict[str, dict[str, object]] = {}
    goal_figures: dict[str, object] = {}
    latency: dict[str, object] = {}
    idle: dict[str, object] = {}
    try:
        settle_empty()
        goal_figures = goals(backend, args, peer_note)
        for delay in (() if args.goals_only else (0.0, 0.03)):
            count = args.reads if delay == 0 else args.slow_reads
            label = f"{delay * 1000:.0f} ms/APDU"
            card = VirtualCard.demo(0, apdu_delay=delay)
            rows[f"full, one pass ({label})"] = with_card(
                backend, card, lambda: timed_reads(backend, card, count))
            rows[f"text first, then photo ({label})"] = with_card(
                backend, card, lambda: timed_reads(backend, card, count, text_first=True))
            rows[f"text only ({label})"] = with_card(
                backend, card, lambda: timed_reads(backend, card, count, photo=False))

            def floor() -> dict[str, object]:
                commands, text_after = recorded_apdus(backend, card)
                return floor_reads(card, commands, text_after, count)
            rows[f"floor: bare pyscard, same APDUs ({label})"] = with_card(backend, card, floor)
            if peer_note is None:
                try:
                    rows[f"peer: pythaiidcard ({label})"] = with_card(
                        backend, card, lambda: peer_reads(args.peer_python, card, count))
                except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                    peer_note = f"peer failed: {exc}"
        if not args.goals_only:
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

    print(f"\nThai ID card read through pyscard + pcscd + vpcd ({platform.platform()})")
    print_goals(goal_figures)
    if args.goals_only:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"goals": goal_figures}, indent=2) + "\n")
        return 0
    print()
    print(f"{'read':46} {'APDUs':>7} {'median ms':>10} {'text ms':>9} {'max ms':>8} {'n':>4}")
    for name, row in rows.items():
        apdus = "/".join(str(a) for a in row["apdus"])
        text = row.get("median_text_ms", "")
        print(f"{name:46} {apdus:>7} {row['median_ms']:>10} {text!s:>9} {row['max_ms']:>8} "
              f"{row['reads']:>4}")
    ins, rem = latency["insertion_to_event"], latency["removal_to_event"]
    print(f"\n{'event latency (monitor)':40} {'median':>10} {'min':>8} {'max':>8} {'n':>4}")
    for name, figures in (("card in vpcd -> card_inserted", ins),
                          ("card out of vpcd -> card_removed", rem)):
        print(f"{name:40} {figures['median_ms']:>10} {figures['min_ms']:>8} "
              f"{figures['max_ms']:>8} {latency['samples']:>4}")
    print(f"\nidle monitor over {idle['seconds']} s: {idle['monitor_cpu_ms']} ms CPU, "
          f"{idle['status_change_calls']} SCardGetStatusChange calls (it blocks, it does not poll)")
    full0 = rows["full, one pass (0 ms/APDU)"]["median_ms"]
    full30 = rows["full, one pass (30 ms/APDU)"]["median_ms"]
    print(f"\n30 ms/APDU over 0 ms/APDU, full read: {full30 / full0:.0f}x "
          "(the per-command round trip dominates: fewer APDUs is what makes reads fast)")
    ratios = compare(rows)
    if ratios:
        print(f"\n{'ratios of medians (peer/agent > 1: the agent is faster)':58} {'0 ms':>8} "
              f"{'30 ms':>8}")
        for name, by_delay in ratios.items():
            fast, slow = by_delay.get('0 ms/APDU', ''), by_delay.get('30 ms/APDU', '')
            print(f"{name:58} {fast:>8} {slow:>8}")
    for name, row in rows.items():
        if "checks" in row:
            print(f"{name}: {row['peer']}; read checked against the card: {row['checks']}")
    if peer_note:
        print(f"\n{peer_note}")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"goals": goal_figures, "reads": rows, "ratios": ratios,
                                     "peer_note": peer_note,
                                     "events": latency, "idle": idle,
                                     "platform": platform.platform(),
                                     "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                                    indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
