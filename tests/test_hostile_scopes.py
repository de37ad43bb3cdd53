"""Least privilege per origin: each allowed page may do only what its scopes say.

The NHSO page keeps the card with its photo through the compat routes; other allowed pages
read the card (and its events) by default; the token and claims need the admin's grant.
Browsers without ``Sec-Fetch-*`` headers that send no Origin get the card routes only; the
token-spending routes refuse navigations and embeds; the photo works as
``<img crossorigin>`` for allowed pages only.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
import websockets
from aiohttp import web

from agent.api.access import ROUTE_SCOPES
from agent.assembly import build_app
from agent.config import ConfigInvalid, load_config
from agent.readers.demo import DEMO_READER
from agent.scopes import SCOPES
from testrig.nhso_support import patient_pid
from tests.api_support import FOREIGN, next_message, start_agent

NHSO_PAGE = "https://authenservice.nhso.go.th"
HIS = "https://his.example.test"
KIOSK = "https://kiosk.example.test"
OLD_SAFARI = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 " \
             "(KHTML, like Gecko) Version/15.6 Safari/605.1.15"
PID = patient_pid(1)


async def agent_with_scopes(aiohttp_client, tmp_path, monkeypatch, **config):
    monkeypatch.setenv("THAICARD_CONFIG_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("THAICARD_DATA_DIR", str(tmp_path / "d"))
    config.setdefault("allowed_origins", (NHSO_PAGE, HIS, KIOSK))
    config.setdefault("origin_scopes", {NHSO_PAGE: ("card", "photo"),
                                        HIS: ("card", "photo", "events", "nhso", "claims")})
    return await start_agent(aiohttp_client, extensions=True, **config)


async def status_and_code(agent, method, path, **headers):
    resp = await agent.client.request(method, path, headers=headers,
                                      **({"json": {}} if method == "POST" else {}))
    try:
        body = await resp.json()
    except ValueError:
        body = {}
    return resp.status, body.get("code") if isinstance(body, dict) else None


TOKEN_ROUTES = [("GET", "/v1/nhso/status"), ("GET", f"/v1/nhso/authen-status?pid={PID}"),
                ("GET", f"/api/nhso-service/latest-authen-code/{PID}"),
                ("GET", f"/api/nhso-service/latest-5-authen-code-all-hospital/{PID}")]
CLAIM_ROUTES = [("GET", "/v1/claims"), ("POST", "/v1/claims"), ("POST", "/v1/claims/retry"),
                ("GET", "/v1/claims/x"), ("POST", "/api/nhso-service/confirm-save")]


async def test_the_nhso_page_keeps_what_it_uses_and_nothing_more(aiohttp_client, tmp_path,
                                                                 monkeypatch):
    agent = await agent_with_scopes(aiohttp_client, tmp_path, monkeypatch)
    await agent.ready()
    for path in ("/api/smartcard/read?readImageFlag=true", "/api/smartcard/read-card-only",
                 "/api/smartcard/terminals", "/api/preference"):
        assert (await status_and_code(agent, "GET", path, Origin=NHSO_PAGE))[0] == 200, path
    for method, path in TOKEN_ROUTES + CLAIM_ROUTES + [("GET", "/v1/events")]:
        assert await status_and_code(agent, method, path, Origin=NHSO_PAGE) == \
            (403, "scope_denied"), path


async def test_a_his_page_given_claims_gets_past_the_guard(aiohttp_client, tmp_path,
                                                          monkeypatch):
    agent = await agent_with_scopes(aiohttp_client, tmp_path, monkeypatch)
    for method, path in TOKEN_ROUTES + CLAIM_ROUTES:
        status, code = await status_and_code(agent, method, path, Origin=HIS)
        assert code not in ("scope_denied", "origin_not_allowed"), (path, status, code)


async def test_other_allowed_pages_read_the_card_but_spend_no_token(aiohttp_client, tmp_path,
                                                                   monkeypatch):
    agent = await agent_with_scopes(aiohttp_client, tmp_path, monkeypatch)
    await agent.ready()
    assert (await status_and_code(agent, "GET", "/v1/card?photo=1", Origin=KIOSK))[0] == 200
    for method, path in TOKEN_ROUTES + CLAIM_ROUTES:
        assert await status_and_code(agent, method, path, Origin=KIOSK) == \
            (403, "scope_denied"), path


async def test_a_page_without_the_photo_scope_gets_no_photo(aiohttp_client, tmp_path,
                                                           monkeypatch):
    agent = await agent_with_scopes(aiohttp_client, tmp_path, monkeypatch,
                                    default_scopes=("card", "events"))
    await agent.ready()
    for path in ("/v1/card?photo=1", "/api/smartcard/read?readImageFlag=true",
                 f"/v1/readers/{quote(DEMO_READER)}/photo"):
        assert await status_and_code(agent, "GET", path, Origin=KIOSK) == \
            (403, "scope_denied"), path
    assert (await status_and_code(agent, "GET", "/v1/card", Origin=KIOSK))[0] == 200
    async with websockets.connect(agent.ws_url(), origin=KIOSK) as ws:
        snapshot = await next_message(ws, "snapshot")
        assert snapshot["filters"]["photo"] is False
        assert len(json.dumps(snapshot)) < 5000        # the card's text, no JPEG in base64
        await ws.send(json.dumps({"type": "subscribe", "photo": True}))
        error = await next_message(ws, "error")
        assert error["code"] == "scope_denied"


async def test_old_browsers_without_origin_get_the_card_routes_only(aiohttp_client, tmp_path,
                                                                    monkeypatch):
    agent = await agent_with_scopes(aiohttp_client, tmp_path, monkeypatch)
    await agent.ready()
    old = {"User-Agent": OLD_SAFARI}
    assert (await status_and_code(agent, "GET", "/api/smartcard/read", **old))[0] == 200
    for method, path in [*TOKEN_ROUTES, ("GET", "/v1/claims"), ("GET", "/v1/events")]:
        assert await status_and_code(agent, method, path, **old) == (403, "scope_denied"), path
    # A local program: its own User-Agent, or the header no page can send without Origin.
    for headers in ({"User-Agent": "python-requests/2.32"},
                    {"User-Agent": OLD_SAFARI, "X-Thaicard-Client": "his-bridge"}):
        _status, code = await status_and_code(agent, "GET", "/v1/nhso/status", **headers)
        assert code != "scope_denied", headers
    # A modern browser's own navigation (typed URL: Sec-Fetch-Site none) is the user's.
    _status, code = await status_and_code(agent, "GET", "/v1/nhso/status",
                                          **{"User-Agent": OLD_SAFARI, "Sec-Fetch-Site": "none",
                                             "Sec-Fetch-Mode": "navigate"})
    assert code != "scope_denied"


@pytest.mark.parametrize(("mode", "dest"), [("navigate", "document"), ("no-cors", "image"),
                                            ("no-cors", "script")])
async def test_token_routes_refuse_cross_site_navigations_and_embeds(aiohttp_client, tmp_path,
                                                                     monkeypatch, mode, dest):
    agent = await agent_with_scopes(aiohttp_client, tmp_path, monkeypatch)
    headers = {"Origin": HIS, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": mode,
               "Sec-Fetch-Dest": dest}
    for method, path in TOKEN_ROUTES:
        assert await status_and_code(agent, method, path, **headers) == (403, "scope_denied")
    cors = {**headers, "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}
    _status, code = await status_and_code(agent, "GET", "/v1/nhso/status", **cors)
    assert code != "scope_denied"


async def test_the_photo_as_an_image_for_allowed_pages_only(aiohttp_client, tmp_path,
                                                           monkeypatch):
    agent = await agent_with_scopes(aiohttp_client, tmp_path, monkeypatch)
    await agent.ready()
    path = f"/v1/readers/{quote(DEMO_READER)}/photo"
    # <img crossorigin src=...> on the allowed page: CORS, with the page's Origin.
    resp = await agent.client.get(path, headers={
        "Origin": KIOSK, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors",
        "Sec-Fetch-Dest": "image"})
    assert resp.status == 200 and resp.content_type == "image/jpeg"
    assert resp.headers["Access-Control-Allow-Origin"] == KIOSK
    assert resp.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    # A plain <img src=...> on any other site: no Origin, marked cross-site.
    resp = await agent.client.get(path, headers={"Sec-Fetch-Site": "cross-site",
                                                 "Sec-Fetch-Mode": "no-cors",
                                                 "Sec-Fetch-Dest": "image"})
    assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
    resp = await agent.client.get(path, headers={"Origin": FOREIGN})
    assert resp.status == 403


def test_every_route_has_a_scope():
    app = build_app(nhso=None)
    from agent.nhso.routes import setup_nhso

    nhso_app = web.Application()
    setup_nhso(nhso_app, None)
    templates = {r.resource.canonical for a in (app, nhso_app) for r in a.router.routes()
                 if r.resource is not None}
    assert templates <= set(ROUTE_SCOPES), templates - set(ROUTE_SCOPES)
    # "*": a route only the status page and local programs (every scope) may call.
    assert {s for s in ROUTE_SCOPES.values() if s} - {"*"} == set(SCOPES)


# -- configuration ------------------------------------------------------------------------------
def load(tmp_path, *, user=None, env=None, policy=None):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(user or {}))
    return load_config(config_file=path, env=env or {}, site_path=tmp_path / "none.json",
                       policy=lambda: (policy or {}, "test policy"))


def test_default_scopes(tmp_path):
    c = load(tmp_path, user={"allowedOrigins": [NHSO_PAGE, HIS]})
    assert c.scopes_for(NHSO_PAGE, 8189) == {"card", "photo"}
    assert c.scopes_for(HIS, 8189) == {"card", "photo", "events"}
    assert c.scopes_for("http://127.0.0.1:8189", 8189) == set(SCOPES)


def test_scopes_from_each_layer(tmp_path):
    c = load(tmp_path, user={"originScopes": {HIS + "/": ["card", "claims"]}})
    assert c.scopes_for(HIS, 8189) == {"card", "claims"}
    c = load(tmp_path, env={"THAICARD_ORIGIN_SCOPES": f"{HIS}=card,nhso; {KIOSK}=card"})
    assert c.scopes_for(HIS, 8189) == {"card", "nhso"} and c.scopes_for(KIOSK, 8189) == {"card"}
    c = load(tmp_path, user={"originScopes": {HIS: ["card", "claims"]}},
             policy={"originScopes": json.dumps({HIS: "card"}), "defaultScopes": "card"})
    assert c.scopes_for(HIS, 8189) == {"card"} and c.scopes_for(KIOSK, 8189) == {"card"}
    assert set(c.policy_keys) == {"origin_scopes", "default_scopes"}


@pytest.mark.parametrize("bad", [{"originScopes": {HIS: ["card", "admin"]}},
                                 {"originScopes": ["card"]}, {"defaultScopes": ["everything"]},
                                 {"originScopes": {"*": ["card"]}}])
def test_bad_scopes_are_a_clear_config_error(tmp_path, bad):
    with pytest.raises(ConfigInvalid):
        load(tmp_path, user=bad)
