"""The tray against the real agent (demo reader) through its public WebSocket and HTTP API."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from testrig.ports import free_port
from testrig.processes import wait_for

os.environ["PYSTRAY_BACKEND"] = "dummy"

import pytest

from tray.app import LoopThread, TrayApp
from tray.embedded import EmbeddedAgent
from tray.menu import find
from tray.state import Status


@pytest.fixture
def tray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TrayApp]:
    monkeypatch.setenv("THAICARD_CONFIG_DIR", str(tmp_path / "config"))
    loop = LoopThread()
    loop.start()
    agent = EmbeddedAgent({"port": free_port()}, demo=True)
    base_url = loop.submit(agent.start()).result(30)
    app = TrayApp(base_url, loop, prefs_path=tmp_path / "tray.json", agent=agent)
    app.prefs.language = "en"
    app.run_async = lambda fn: fn()
    app.start()
    yield app
    app.quit()
    loop.stop()


def test_follows_the_demo_card_in_and_out(tray: TrayApp) -> None:
    wait_for(lambda: tray.state.status is Status.CARD_PRESENT, "demo card shown")
    tray.render()
    # The demo card 1999900000005, Mr. Demo Cardreader: masked, with the English name.
    assert find(tray.items, "last_card").text == "Card: 1-9999-xxxxx-xx-5 Mr. Demo Cardreader"
    tray.invoke("demo")
    wait_for(lambda: tray.state.status is Status.IDLE, "card removed")
    tray.render()
    assert tray.state.last_card is None
    assert "last_card" not in [i.key for i in tray.items]
    assert find(tray.items, "demo").text == "Demo: insert a card"
    tray.invoke("demo")
    wait_for(lambda: tray.state.status is Status.CARD_PRESENT, "card back in")
    assert tray.notices[-1] == ("notify.card_read", "Card read on Thai Card Agent Demo Reader 0")
    assert not [t for _, t in tray.notices if "1999900000005" in t]   # never the full id


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
    server_before = tray.agent.server
    tray.render()
    tray.invoke(f"default_reader:{reader}")      # run_async is synchronous in this fixture
    # Saved where the agent reads its settings, and the agent was restarted with it: a new
    # server whose own /v1/status reports it (not the tray's memory of the click).
    saved = json.loads((Path(os.environ["THAICARD_CONFIG_DIR"]) / "config.json").read_text())
    assert saved["defaultTerminal"] == reader
    assert tray.agent.server is not server_before
    with urllib.request.urlopen(tray.base_url + "/v1/status", timeout=10) as resp:
        assert json.load(resp)["config"]["defaultTerminal"] == reader
    assert tray.messages[-1] == ("Settings saved; the agent restarted with them.", False)
    wait_for(lambda: tray.state.connected, "tray reconnected to the restarted agent")
