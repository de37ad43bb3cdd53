"""Load: 200 WebSocket clients and 200 HTTP requests per second against the demo reader.

A real ``thaicard-agent serve --demo`` process. For ``LOAD_SECONDS`` (default 60) this
process sends requests on a fixed schedule (open loop: a slow agent does not slow the
schedule down) to the card endpoints, while the demo card is swapped every 2 s so every
WebSocket client has events to receive. Checked: every request answered (a card, or "no
card" during a swap), every client got every ``card.read`` of the right card, and the
agent's memory levelled off (RSS in the last third against the first third). Figures go
to test-output/robust/load.json; no figure is asserted against a time.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from agent.card.demo import demo_profile
from testrig.pcsc_rig import OUTPUT
from testrig.robust_support import AgentProcess, demo_agent_running

LOAD_SECONDS = float(os.environ.get("LOAD_SECONDS", "60"))
RATE = 200                       # HTTP requests per second
WS_CLIENTS = 200
SWAP_EVERY = 2.0                 # seconds between demo card swaps
RSS_LEVEL_KIB = 16 * 1024
TRANSIENT = {"no_card", "card_removed"}   # what a request may meet while the card is swapped
READER = "Thai Card Agent Demo Reader 0"
PATHS = ("/api/smartcard/read?readImageFlag=true", "/api/smartcard/read-card-only",
         "/v1/card?photo=1", f"/v1/readers/{READER.replace(' ', '%20')}/card",
         "/v1/status", "/v1/readers")


@pytest.fixture
def demo_agent() -> Iterator[AgentProcess]:
    with demo_agent_running("WARNING", OUTPUT / "robust" / "load-agent.log") as agent:
        yield agent


def citizen_id(answer: dict[str, Any]) -> str | None:
    return answer.get("pid") or answer.get("citizen_id") or (answer.get("card") or {}).get(
        "citizen_id")


@pytest.mark.timeout(LOAD_SECONDS + 120)
async def test_200_websockets_and_200_requests_per_second(demo_agent):
    agent = demo_agent
    inserted: list[int] = []                       # variants, in insertion order
    problems: list[str] = []
    answered = {"card": 0, "no_card": 0, "other": 0}
    latencies: list[float] = []
    rss: list[tuple[float, int]] = []

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as ws_session, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
        sockets = [await ws_session.ws_connect(agent.ws_url + "?photo=false", max_msg_size=0)
                   for _ in range(WS_CLIENTS)]
        received: list[list[str]] = [[] for _ in sockets]

        async def listen(i: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                event = json.loads(msg.data)
                if event["type"] == "card.read":
                    received[i].append(event["card"]["citizen_id"])

        listeners = [asyncio.create_task(listen(i, ws)) for i, ws in enumerate(sockets)]

        async def one_request(path: str) -> None:
            started = time.perf_counter()
            try:
                async with http.get(agent.url + path,
                                    timeout=aiohttp.ClientTimeout(total=30)) as resp:
                    body = await resp.json(content_type=None)
            except (TimeoutError, aiohttp.ClientError) as exc:
                problems.append(f"{path}: {type(exc).__name__} {exc}")
                return
            latencies.append(time.perf_counter() - started)
            if resp.status == 200:
                cid = citizen_id(body)
                recent = ([0] + inserted)[-2:]       # the card now, or the one just out
                if cid is not None and cid not in {demo_profile(v).text.citizen_id
                                                   for v in recent}:
                    problems.append(f"{path}: a card that is not in the reader")
                answered["card"] += 1
            elif body.get("code") in TRANSIENT:
                answered["no_card"] += 1             # between a removal and the next card
            else:
                answered["other"] += 1
                problems.append(f"{path}: {resp.status} {str(body)[:200]}")

        async def swapper(stop: asyncio.Event) -> None:
            variant = 1
            while not stop.is_set():
                await asyncio.sleep(SWAP_EVERY)
                async with http.delete(agent.url + "/v1/demo/card") as resp:
                    assert resp.status == 202
                await asyncio.sleep(0.05)
                inserted.append(variant)
                async with http.post(agent.url + "/v1/demo/card",
                                     json={"variant": variant}) as resp:
                    assert resp.status == 202
                variant = (variant + 1) % 100

        async def sample_memory(stop: asyncio.Event) -> None:
            t0 = time.perf_counter()
            while not stop.is_set():
                rss.append((time.perf_counter() - t0, agent.footprint().rss_kib))
                await asyncio.sleep(1)

        stop = asyncio.Event()
        background = [asyncio.create_task(swapper(stop)), asyncio.create_task(sample_memory(stop))]
        total = int(RATE * LOAD_SECONDS)
        t0 = time.perf_counter()
        requests = []
        for i in range(total):
            delay = t0 + i / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            requests.append(asyncio.create_task(one_request(PATHS[i % len(PATHS)])))
        await asyncio.gather(*requests)
        wall = time.perf_counter() - t0
        stop.set()
        await asyncio.gather(*background)
        # Until the last card.read has reached every client (or a generous deadline, after
        # which the assertions below name the clients that missed one).
        deadline = time.monotonic() + 30
        while (any(len(r) < len(inserted) for r in received)
               and time.monotonic() < deadline):
            await asyncio.sleep(0.05)
        for ws in sockets:
            await ws.close()
        await asyncio.gather(*listeners)

    expected = [demo_profile(v).text.citizen_id for v in inserted]
    late = [i for i, got in enumerate(received) if got != expected]
    OUTPUT.joinpath("robust").mkdir(parents=True, exist_ok=True)
    OUTPUT.joinpath("robust", "load.json").write_text(json.dumps({
        "seconds": LOAD_SECONDS, "requests": total, "achieved_rps": round(total / wall, 1),
        "answered": answered, "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(sorted(latencies)[int(len(latencies) * 0.99)] * 1000, 2),
        "ws_clients": WS_CLIENTS, "card_swaps": len(inserted),
        "rss_kib": rss}, indent=1) + "\n")

    assert not problems, problems[:10]
    assert answered["card"] + answered["no_card"] == total
    assert answered["card"] > total // 2
    assert len(inserted) >= 3 and not late, (
        f"{len(late)} clients missed card.read events; e.g. {received[late[0]][-3:]} "
        f"vs {expected[-3:]}" if late else "too few swaps")
    third = max(1, len(rss) // 3)
    first = max(kib for _, kib in rss[:third])
    last = max(kib for _, kib in rss[-third:])
    assert last - first < RSS_LEVEL_KIB, f"RSS grew {first} -> {last} KiB"


async def test_a_card_pulled_right_after_its_read_is_answered_as_removed(aiohttp_client,
                                                                         monkeypatch):
    """What the load test first caught: the read finished, the card left before the waiting
    request resumed, and the handler failed on the emptied slot (500 internal_error)."""
    from agent.readers.base import ReaderEvent
    from tests.api_support import DEMO_READER, start_agent

    agent = await start_agent(aiohttp_client)
    await agent.ready()
    real_get_card = agent.service.get_card

    async def read_then_pulled(*args: Any, **kwargs: Any):
        # Queued now, so it runs while get_card waits on the already finished read.
        asyncio.get_running_loop().call_soon(
            agent.service._on_reader_event, ReaderEvent("card_removed", DEMO_READER))
        return await real_get_card(*args, **kwargs)

    monkeypatch.setattr(agent.service, "get_card", read_then_pulled)
    body = await agent.get_json("/v1/card?photo=1", status=500)
    assert body["code"] == "card_removed"
