"""The tray against the real agent (demo reader) through its public WebSocket and HTTP API."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from tests.ports import free_port

os.environ["PYSTRAY_BACKEND"] = "dummy"

import pytest  # noqa: E402

from tray.app import LoopThread, TrayApp  # noqa: E402
from tray.embedded import EmbeddedAgent  # noqa: E402
from tray.menu import find  # noqa: E402
from tray.state import Status  # noqa: E402


def wait_for(check: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Poll until ``check`` holds; the limit only stops a hung test, it measures nothing."""
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


@pytest.fixture
def tray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TrayApp]:
    monkeypatch.setenv("THAICARD_CONFIG_DIR", str(tmp_path / "config"))
    loop = LoopThread()
    loop.start()
    agent = EmbeddedAgent({"port": free_port()}, demo=True)
    base_url = loop.submit(agent.start()).result(30)
    app = TrayApp(base_url, loop, prefs_path=tmp_path / "tray.json", agent=agent)
    app.prefs.language = "en"
    app.run_async = lambda fn: fn()  # type: ignore[method-assign]
    app.start()
    yield app
    app.quit()
    loop.stop()


def test_follows_the_demo_card_in_and_out(tray: TrayApp) -> None:
    wait_for(lambda: tray.state.status is Status.CARD_PRESENT, "demo card shown")
    tray.render()
    assert find(tray.items, "last_card").text.startswith("Card: 1-")
    assert "xxxxx" in find(tray.items, "last_card").text
    assert ("notify.card_read" in [k for k, _ in tray.notices]
            or tray.state.last_card is not None)     # read before we connected: snapshot
    tray.invoke("demo")
    wait_for(lambda: tray.state.status is Status.IDLE, "card removed")
    tray.render()
    assert tray.state.last_card is None
    assert "last_card" not in [i.key for i in tray.items]
    assert find(tray.items, "demo").text == "Demo: insert a card"
    tray.invoke("demo")
    wait_for(lambda: tray.state.status is Status.CARD_PRESENT, "card back in")
    assert tray.notices[-1][0] == "notify.card_read"


def test_sees_the_agent_go_away_and_come_back(tray: TrayApp) -> None:
    wait_for(lambda: tray.state.connected, "connected")
    agent = tray.agent
    tray.loop.submit(agent.stop()).result(10)
    wait_for(lambda: tray.state.status is Status.OFFLINE, "offline shown")
    tray.loop.submit(agent.start()).result(10)
    wait_for(lambda: tray.state.status is Status.CARD_PRESENT, "reconnected")


def test_default_reader_setting_restarts_the_agent_with_it(tray: TrayApp) -> None:
    wait_for(lambda: tray.state.status is Status.CARD_PRESENT, "demo card shown")
    reader = next(iter(tray.state.readers))
    tray.render()
    tray.invoke(f"default_reader:{reader}")
    wait_for(lambda: tray.state.connected and tray.default_reader == reader,
             "default reader from /v1/status after the restart")
    assert tray.messages[-1][1] is False
