"""``/v1/events``: envelope, snapshot, event order, filters, heartbeats, client messages.

Clients here use the independent ``websockets`` library (as the tray does), not aiohttp's.
"""

from __future__ import annotations

import asyncio
import base64
import json
from urllib.parse import quote

import pytest
import websockets

from agent.card.demo import demo_profile
from agent.readers.demo import DEMO_READER, demo_card
from tests.api_support import ALLOWED, SECOND, collect, next_message, start_agent

ENVELOPE = {"v", "type", "seq", "time", "reader"}


async def test_snapshot_then_card_cycle(aiohttp_client):
    agent = await start_agent(aiohttp_client, readers=(DEMO_READER, SECOND))
    await agent.ready()
    async with websockets.connect(agent.ws_url()) as ws:
        snap = json.loads(await ws.recv())
        assert snap["type"] == "snapshot" and set(snap) >= ENVELOPE and snap["v"] == 1
        assert snap["backend"] == "demo" and snap["agent"]["version"]
        first, second = snap["readers"]
        assert first["name"] == DEMO_READER and first["status"] == "ready"
        assert first["card"]["citizen_id"] == demo_profile(0).text.citizen_id
        assert base64.b64decode(first["card"]["photo"]["base64"]) == demo_profile(0).photo
        assert second["card"] is None and not second["present"]

        agent.backend.insert(SECOND, demo_card(1))
        events = await collect(ws, "card.photo")
        types = [e["type"] for e in events]
        assert types == ["card.inserted", "card.read", "card.photo"]    # text first
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(seqs) and seqs[0] > snap["seq"]
        inserted, read, photo = events
        assert all(set(e) >= ENVELOPE and e["reader"] == SECOND for e in events)
        assert inserted["atr"]
        assert read["card"]["name_th"]["first"] == "ตัวอย่าง" and read["photo_pending"] is True
        assert base64.b64decode(photo["photo"]) == demo_profile(1).photo
        assert photo["format"] == "image/jpeg"

        agent.backend.remove(SECOND)
        removed = await next_message(ws, "card.removed")
        assert removed["reader"] == SECOND and removed["seq"] > photo["seq"]


async def test_allowed_origin_websocket(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    async with websockets.connect(agent.ws_url(), origin=ALLOWED) as ws:
        assert json.loads(await ws.recv())["type"] == "snapshot"


async def test_photo_filter_at_connect(aiohttp_client):
    agent = await start_agent(aiohttp_client, insert=False)
    async with websockets.connect(agent.ws_url("photo=0")) as ws:
        snap = json.loads(await ws.recv())
        assert snap["filters"]["photo"] is False
        await agent.insert(0, wait_for="card.photo")
        agent.backend.remove(DEMO_READER)
        events = await collect(ws, "card.removed")
        assert [e["type"] for e in events] == ["card.inserted", "card.read", "card.removed"]
    await agent.insert(0, wait_for="card.photo")
    async with websockets.connect(agent.ws_url("photo=false")) as ws:
        snap = json.loads(await ws.recv())
        assert "base64" not in (snap["readers"][0]["card"]["photo"] or {})


async def test_type_and_reader_filters(aiohttp_client):
    agent = await start_agent(aiohttp_client, readers=(DEMO_READER, SECOND), insert=False)
    query = f"types=card.removed,reader.*&readers={quote(SECOND)}"
    async with websockets.connect(agent.ws_url(query)) as ws:
        await ws.recv()                                   # snapshot
        await agent.insert(0, DEMO_READER, wait_for="card.photo")
        await agent.insert(1, SECOND, wait_for="card.photo")
        agent.backend.remove(DEMO_READER)
        agent.backend.remove(SECOND)
        msg = await next_message(ws, "card.removed")
        assert msg["reader"] == SECOND                  # the other reader's removal was filtered


async def test_subscribe_ping_snapshot_messages(aiohttp_client):
    agent = await start_agent(aiohttp_client, insert=False)
    async with websockets.connect(agent.ws_url()) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "subscribe", "types": ["card.read"], "photo": False}))
        sub = json.loads(await ws.recv())
        assert sub["type"] == "subscribed"
        assert sub["filters"] == {"types": ["card.read"], "readers": [], "photo": False}
        await ws.send(json.dumps({"type": "ping", "id": 42}))
        pong = await next_message(ws, "pong")
        assert pong["id"] == 42 and set(pong) >= ENVELOPE
        await agent.insert(0, wait_for="card.photo")
        read = json.loads(await ws.recv())              # inserted filtered, photo filtered
        assert read["type"] == "card.read"
        await ws.send(json.dumps({"type": "snapshot"}))
        snap = await next_message(ws, "snapshot")
        assert snap["readers"][0]["card"]["citizen_id"] == demo_profile(0).text.citizen_id


@pytest.mark.parametrize("raw,code", [
    ("{", "invalid_json"), ("[]", "bad_request"), ('{"type": 5}', "bad_request"),
    ('{"type": "launch"}', "bad_request"),
    ('{"type": "subscribe", "types": ["card.read", "<script>"]}', "bad_request"),
    ('{"type": "subscribe", "photo": "maybe"}', "bad_request"),
    ('{"type": "subscribe", "readers": "x" }', None),
])
async def test_bad_client_messages(aiohttp_client, raw, code):
    agent = await start_agent(aiohttp_client)
    async with websockets.connect(agent.ws_url()) as ws:
        await ws.recv()
        await ws.send(raw)
        # The demo card's own events may come first (its read can still be under way).
        if code is None:
            await next_message(ws, "subscribed")
        else:
            reply = await next_message(ws, "error")
            assert reply["code"] == code and reply["message_th"]
        await ws.send(json.dumps({"type": "ping"}))      # the connection is still usable
        assert (await next_message(ws, "pong"))["type"] == "pong"


async def test_binary_and_oversize_messages(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    async with websockets.connect(agent.ws_url(), max_size=None) as ws:
        await ws.recv()
        await ws.send(b"\x00\x01")
        assert json.loads(await ws.recv())["code"] == "bad_request"
        await ws.send("x" * (64 * 1024 + 10))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd.code == 1009               # message too big


async def test_bad_filter_query_is_400(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    resp = await agent.client.get("/v1/events?types=%3Cscript%3E")
    assert resp.status == 400 and (await resp.json())["code"] == "bad_request"
    resp = await agent.client.get("/v1/events")          # not an upgrade
    assert resp.status == 400


async def test_heartbeat(aiohttp_client):
    agent = await start_agent(aiohttp_client, heartbeat_interval=1)
    await agent.ready()                       # nothing else happens from here on
    async with websockets.connect(agent.ws_url()) as ws:
        snap = json.loads(await ws.recv())
        beat = await next_message(ws, "heartbeat")
        assert beat["seq"] == snap["seq"] and set(beat) >= ENVELOPE


async def test_card_error_event_has_stable_code(aiohttp_client):
    from agent.card.encode import encode_card
    from agent.card.simulator import ATR_NOT_THAI, SimulatedCard

    agent = await start_agent(aiohttp_client, insert=False)
    async with websockets.connect(agent.ws_url()) as ws:
        await ws.recv()
        agent.backend.insert(DEMO_READER, SimulatedCard(encode_card(demo_profile(0)),
                                                        atr=ATR_NOT_THAI, is_thai_id=False))
        err = await next_message(ws, "card.error")
        assert err["code"] == "not_thai_id" and err["message_th"] and err["reader"] == DEMO_READER
    body = await agent.get_json("/v1/card", 500)
    assert body["code"] == "not_thai_id"


async def test_many_clients_get_the_same_event(aiohttp_client):
    agent = await start_agent(aiohttp_client, insert=False)
    clients = [await websockets.connect(agent.ws_url("photo=0")) for _ in range(30)]
    try:
        for ws in clients:
            await ws.recv()
        await agent.insert(0)
        reads = await asyncio.gather(*(next_message(ws, "card.read") for ws in clients))
        assert len({r["seq"] for r in reads}) == 1
        assert all(r["card"]["citizen_id"] == demo_profile(0).text.citizen_id for r in reads)
        status = await agent.get_json("/v1/status")
        assert status["events"]["clients"] == 30
        assert agent.service.reads == 1
    finally:
        await asyncio.gather(*(ws.close() for ws in clients))


async def test_shutdown_closes_clients_going_away(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    ws = await websockets.connect(agent.ws_url())
    await ws.recv()
    await agent.client.close()
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
