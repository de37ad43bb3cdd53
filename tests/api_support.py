"""Helpers for the API tests: the real app over the demo reader, on a real loopback port."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from agent.api.keys import CARD_SERVICE
from agent.assembly import FROM_SETTINGS_FILES, NhsoParts, build_app
from agent.config import Config
from agent.core import CardService
from agent.readers.demo import DEMO_READER, DemoBackend, demo_card
from testrig.ports import free_port

ALLOWED = "https://his.example.test"
FOREIGN = "https://evil.example.test"
SECOND = "Demo Reader 1"
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Agent:
    client: TestClient
    app: web.Application
    backend: DemoBackend

    @property
    def service(self) -> CardService:
        return self.app[CARD_SERVICE]

    @property
    def port(self) -> int:
        return self.client.port

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def get_json(self, path: str, status: int = 200, **kw: Any) -> Any:
        resp = await self.client.get(path, **kw)
        body = await resp.json()
        assert resp.status == status, (resp.status, body)
        return body

    async def ready(self, reader: str = DEMO_READER) -> None:
        """Wait until the card in ``reader`` is read, photo included."""
        await self.service.get_card(reader, photo=True)

    async def _change(self, action: Any, type_: str, reader: str) -> None:
        sub = self.service.events.subscribe()
        try:
            action()

            async def wait() -> None:
                while True:
                    ev = await sub.get()
                    assert ev is not None, "dropped"
                    if ev.type == type_ and ev.reader == reader:
                        return
            await asyncio.wait_for(wait(), 10)
        finally:
            self.service.events.unsubscribe(sub)

    async def insert(self, variant: int = 0, reader: str = DEMO_READER,
                     wait_for: str = "card.read") -> None:
        """Insert a demo card and wait until the agent has seen it (``wait_for`` event)."""
        await self._change(lambda: self.backend.insert(reader, demo_card(variant)),
                           wait_for, reader)

    async def remove(self, reader: str = DEMO_READER) -> None:
        await self._change(lambda: self.backend.remove(reader), "card.removed", reader)

    def ws_url(self, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/v1/events" + (f"?{query}" if query else "")


async def start_agent(aiohttp_client: Any, *, readers: tuple[str, ...] = (DEMO_READER,),
                      apdu_delay: float = 0.0, insert: bool = True,
                      coverage: Any = None, extensions: bool = False,
                      nhso: NhsoParts | None = None, lan: Any = None,
                      loopback_v6: bool = True,
                      **config: Any) -> Agent:
    backend = DemoBackend(readers, apdu_delay=apdu_delay, insert_demo_card=insert)
    config.setdefault("backend", "demo")
    config.setdefault("allowed_origins", (ALLOWED,))
    # ``extensions``: the NHSO room too (settings from the files the test points at);
    # ``nhso``: the NHSO room from these settings and keyring.
    parts = nhso if nhso is not None else FROM_SETTINGS_FILES if extensions else None
    app = build_app(Config(**config), backend=backend, nhso=parts, coverage=coverage, lan=lan,
                    loopback_v6=loopback_v6)
    client = await aiohttp_client(app)
    return Agent(client, app, backend)


async def next_message(ws: Any, type_: str, *, reader: str | None = None,
                       timeout: float = 10.0) -> dict[str, Any]:
    """The next envelope of ``type_`` on a ``websockets`` client (others are skipped)."""
    async def find() -> dict[str, Any]:
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == type_ and (reader is None or msg["reader"] == reader):
                return msg
    return await asyncio.wait_for(find(), timeout)


async def collect(ws: Any, until: str, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every envelope up to and including the first of type ``until``."""
    out: list[dict[str, Any]] = []

    async def run() -> None:
        while True:
            msg = json.loads(await ws.recv())
            out.append(msg)
            if msg["type"] == until:
                return
    await asyncio.wait_for(run(), timeout)
    return out


# -- the agent as a real process (``thaicard-agent serve``) ----------------------------------
def serve_cmd(port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "agent", "serve", "--demo", "--port", str(port), *extra]


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THAICARD_")}
    env["THAICARD_CONFIG_DIR"] = str(tmp_path / "config")
    env["THAICARD_DATA_DIR"] = str(tmp_path / "data")
    return env


def wait_until_up(port: int, proc: subprocess.Popen, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""     # None unless a pipe
            raise AssertionError(f"agent exited with {proc.returncode}: {err}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            time.sleep(0.1)
    raise AssertionError("agent did not come up")


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
