"""Staff told why a page was refused: the refusal is counted and listed (``/v1/status``,
the status page), published once per origin (``access.refused``, the tray's notification),
and an admin can allow the page from the status page unless the policy fixes the list.
``null`` / ``file://`` origins of local apps pass only when listed exactly.
"""

from __future__ import annotations

import json
import os

import pytest
from aiohttp import web

from agent.config import load_config, normalize_origin
from tests.api_support import ALLOWED, FOREIGN, start_agent
from tray.i18n import text
from tray.state import TrayState


def own(agent) -> str:
    return f"http://127.0.0.1:{agent.port}"


@pytest.fixture(autouse=True)
def user_config(tmp_path, monkeypatch):
    monkeypatch.setenv("THAICARD_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("THAICARD_CONFIG", raising=False)
    return tmp_path / "config" / "config.json"


async def test_refusals_are_listed_and_published_once_per_origin(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    published: list[str] = []
    agent.service.events.add_listener(
        lambda ev: published.append(ev.payload["source"]) if ev.type == "access.refused"
        else None)
    for _ in range(3):
        resp = await agent.client.get("/api/smartcard/read", headers={"Origin": FOREIGN})
        assert resp.status == 403
    await agent.client.get("/v1/status", headers={"Origin": "null"})
    status = await agent.get_json("/v1/status")
    recent = {r["source"]: r for r in status["refusals"]["recent"]}
    assert recent[FOREIGN]["count"] == 3 and recent[FOREIGN]["kind"] == "origin"
    assert recent[FOREIGN]["path"] == "/api/smartcard/read"
    assert recent["null"]["reason"] == "origin_not_allowed"
    assert status["refusals"]["counts"] == {"origin.origin_not_allowed": 4}
    assert published == [FOREIGN, "null"]               # once per origin, not per request


async def test_admin_allows_a_refused_page_from_the_status_page(aiohttp_client, user_config):
    agent = await start_agent(aiohttp_client)
    assert (await agent.client.get("/v1/card", headers={"Origin": FOREIGN})).status == 403
    # Another page (even an allowed one) cannot let others in; the agent's own page can.
    resp = await agent.client.post("/v1/allowed-origins", json={"origin": FOREIGN},
                                   headers={"Origin": ALLOWED})
    assert resp.status == 403
    resp = await agent.client.post("/v1/allowed-origins", json={"origin": FOREIGN + "/"},
                                   headers={"Origin": own(agent)})
    answer = await resp.json()
    assert resp.status == 200 and answer["origin"] == FOREIGN
    assert (await agent.client.get("/v1/card", headers={"Origin": FOREIGN})).status == 200
    saved = json.loads(user_config.read_text())["allowedOrigins"]
    assert saved == [ALLOWED, FOREIGN]                 # what was allowed before stays
    assert FOREIGN in load_config(env={"THAICARD_CONFIG_DIR": str(user_config.parent)}
                                  ).allowed_origins
    listed = [r["source"] for r in (await agent.get_json("/v1/status"))["refusals"]["recent"]]
    assert FOREIGN not in listed
    bad = await agent.client.post("/v1/allowed-origins", json={"origin": "https://*.x"},
                                  headers={"Origin": own(agent)})
    assert bad.status == 400


async def test_policy_fixed_list_cannot_be_changed_from_the_page(aiohttp_client, user_config):
    agent = await start_agent(aiohttp_client, sources={"allowed_origins": "policy"})
    resp = await agent.client.post("/v1/allowed-origins", json={"origin": FOREIGN},
                                   headers={"Origin": own(agent)})
    body = await resp.json()
    assert resp.status == 403 and body["code"] == "setting_locked"
    assert not user_config.exists()


async def test_local_app_origins_only_when_listed(aiohttp_client):
    assert normalize_origin("null") == "null" and normalize_origin("file://") == "file://"
    default = await start_agent(aiohttp_client)
    for origin in ("null", "file://"):
        resp = await default.client.get("/api/smartcard/read", headers={"Origin": origin})
        assert resp.status == 403
    listed = await start_agent(aiohttp_client, allowed_origins=("null", "file://"))
    for origin in ("null", "file://"):
        resp = await listed.client.get("/api/smartcard/read", headers={"Origin": origin})
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == origin


def test_tray_notifies_once_per_source_in_both_languages():
    state = TrayState()
    ev = {"type": "access.refused", "kind": "origin", "source": FOREIGN,
          "reason": "origin_not_allowed", "count": 1}
    notices = state.apply(ev)
    assert [n.key for n in notices] == ["notify.page_refused"]
    assert state.apply(ev) == []
    lan = state.apply({**ev, "kind": "lan", "source": "10.0.5.9"})
    assert [n.key for n in lan] == ["notify.lan_refused"]
    th = text(notices[0].key, "th").format(**notices[0].kwargs())
    en = text(notices[0].key, "en").format(**notices[0].kwargs())
    assert FOREIGN in th and "ไม่ได้รับอนุญาต" in th and FOREIGN in en


@pytest.mark.browser
async def test_refused_page_allowed_from_the_status_page_in_chromium(aiohttp_client, tmp_path):
    """A real page is refused; the status page lists it; a click allows it; it reads."""
    from tests.browser_support import Chromium, browser_available
    missing = browser_available()
    if missing and not os.environ.get("CI"):
        pytest.skip(missing)

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>HIS</title>", content_type="text/html")

    site = web.Application()
    site.router.add_get("/", page)
    runner = web.AppRunner(site, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    his = f"http://127.0.0.1:{runner.addresses[0][1]}"
    agent = await start_agent(aiohttp_client)
    read = f"fetch('{own(agent)}/api/smartcard/read').then(r => r.status, e => 'blocked')"
    (tmp_path / "chromium").mkdir()
    browser = Chromium(tmp_path / "chromium", public_port=0, hosts=[])
    try:
        await browser.start({**os.environ, "HOME": str(tmp_path / "chromium")})
        context = await browser.new_context()
        his_page = await browser.open(his + "/", context)
        assert await his_page.evaluate(read) == "blocked"          # 403 without CORS
        status_page = await browser.open(own(agent) + "/", context)
        await status_page.wait_for(
            "document.querySelector('#refused button.allow-origin') !== null")
        listed = await status_page.evaluate("document.getElementById('refused').textContent")
        assert his in listed
        await status_page.evaluate(
            "document.querySelector('#refused button.allow-origin').click()")
        result = await status_page.wait_for(
            "!document.getElementById('refused-result').hidden && "
            "document.getElementById('refused-result').textContent")
        assert "อนุญาต" in result and his in result
        assert await his_page.evaluate(read) == 200
    finally:
        await browser.close()
        await runner.cleanup()


def test_a_flood_of_invented_origins_is_listed_but_not_all_published():
    from agent.api.refusals import MAX_PUBLISHED_PER_MINUTE, RefusalLog
    published: list[str] = []
    log = RefusalLog(lambda _type, payload: published.append(payload["source"]))
    for n in range(50):
        log.record("origin", f"https://x{n}.test", "origin_not_allowed", "/v1/card")
    assert len(published) == MAX_PUBLISHED_PER_MINUTE
    assert len(log.view()["recent"]) == 50 and log.counts["origin.origin_not_allowed"] == 50


def test_tray_menu_shows_refused_sources_and_opens_the_status_page():
    from unittest.mock import Mock

    from tray.menu import MenuView, build_menu
    state = TrayState()
    state.apply({"type": "access.refused", "kind": "origin", "source": FOREIGN})
    actions = Mock()
    items = {i.key: i for i in build_menu(state, MenuView(lang="en"), actions)}
    assert "1 page(s)" in items["status.refused"].text
    action = items["status.refused"].action
    assert action is not None
    action()
    actions.open_status_page.assert_called_once()
