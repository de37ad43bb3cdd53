"""The NHSO room in one process against the contract server's app, for the NHSO tests:
an agent app with the NHSO routes and sender (``make_agent``), the contract server
(``nhso``), and waits on conditions with generous deadlines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from agent.nhso.routes import NHSO_SERVICE, setup_nhso
from agent.nhso.settings import load_settings
from agent.nhso.token import TokenStore
from testrig.nhso_server import STATE, make_app
from testrig.nhso_support import HCODE, RECORDER_PID, SOURCE_ID, TOKEN, MemoryKeyring


async def until(predicate: Callable[[], Any], what: str, deadline: float = 30.0) -> Any:
    """Poll until ``predicate()`` (sync or async) is truthy; fail after ``deadline`` s."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def nhso(aiohttp_server):
    return await aiohttp_server(make_app({TOKEN: HCODE}))


@pytest.fixture
def make_agent(aiohttp_client, nhso, tmp_path):
    async def make(token: str | None = TOKEN, **overrides: Any):
        values: dict[str, Any] = dict(
            base_url=str(nhso.make_url("")).rstrip("/"), hcode=HCODE, source_id=SOURCE_ID,
            recorder_pid=RECORDER_PID, retry_base=0.01, retry_max=0.1, in_doubt_delay=0.05,
            in_doubt_recheck=0.05,
            request_timeout=1.0, token_retry=0.3, due_check_interval=0.05)
        values.update(overrides)
        settings = load_settings(config_dir=tmp_path / "config", data_dir=tmp_path / "data",
                                 env={}, site_path=tmp_path / "no-site.json", **values)
        keyring = MemoryKeyring()
        if token:
            keyring.set_password("thaicard-agent", "nhso-token", token)
        events: list[tuple[str, dict[str, Any]]] = []
        app = web.Application()
        setup_nhso(app, settings, publish=lambda t, p: events.append((t, p)),
                   token_store=TokenStore(keyring))
        app[NHSO_SERVICE].tokens.check_interval = 0.05
        client = await aiohttp_client(app)
        client.events = events
        client.keyring = keyring
        client.service = app[NHSO_SERVICE]
        return client
    return make


def server_state(nhso):
    return nhso.app[STATE]


async def claim_status(client, claim_id: str) -> dict[str, Any]:
    resp = await client.get(f"/v1/claims/{claim_id}")
    assert resp.status == 200
    return await resp.json()


async def submit(client, body: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post("/v1/claims", json=body)
    assert resp.status == 202, await resp.text()
    return await resp.json()


async def events_of(client, type_: str, count: int) -> list[dict[str, Any]]:
    """The payloads of ``type_`` once ``count`` of them were published. The outbox records a
    claim's new status before the sender publishes the event, so a status read through the
    API can be ahead of the events."""
    def enough() -> list[dict[str, Any]] | None:
        found = [p for t, p in client.events if t == type_]
        return found if len(found) >= count else None
    return await until(enough, f"{count} {type_} event(s)")


async def wait_status(client, claim_id: str, status: str) -> dict[str, Any]:
    async def check():
        view = await claim_status(client, claim_id)
        return view if view["status"] == status else None
    return await until(check, f"claim {claim_id} {status}")
