"""The guard: Host and Origin allowlists, CORS and preflights, body rules, JSON errors."""

from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp import web

from agent.api.security import ALLOWED_REQUEST_HEADERS, MAX_BODY
from agent.assembly import build_app
from agent.config import NHSO_AUTHEN_ORIGIN, Config
from agent.readers.demo import DemoBackend
from tests.api_support import ALLOWED, FOREIGN, start_agent

CARD_PATHS = ("/api/smartcard/read?readImageFlag=true", "/api/smartcard/read-card-only",
              "/api/smartcard/terminals", "/api/preference", "/v1/status", "/v1/card",
              "/v1/readers", "/v1/openapi.json", "/")


def no_cors(resp) -> bool:
    return not any(h.lower().startswith("access-control-") for h in resp.headers)


async def assert_refused(resp, status: int, code: str) -> dict:
    assert resp.status == status
    assert resp.content_type == "application/json"
    assert no_cors(resp)
    body = await resp.json()
    assert body["code"] == code and body["status"] == status
    return body


# -- Host (DNS rebinding) -------------------------------------------------------------------
@pytest.mark.parametrize("host", ["evil.example:{port}", "127.0.0.1", "127.0.0.1:1",
                                  "localhost", "127.0.0.2:{port}", "0.0.0.0:{port}", ""])
async def test_host_not_allowed(aiohttp_client, host):
    agent = await start_agent(aiohttp_client)
    for path in ("/api/smartcard/read", "/v1/status", "/"):
        resp = await agent.client.get(path, headers={"Host": host.format(port=agent.port)})
        body = await assert_refused(resp, 421, "host_not_allowed")
        assert "pid" not in body


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}",
                                  "LOCALHOST:{port}"])
async def test_host_allowed(aiohttp_client, host):
    agent = await start_agent(aiohttp_client)
    resp = await agent.client.get("/api/smartcard/read-card-only",
                                  headers={"Host": host.format(port=agent.port)})
    assert resp.status == 200


async def test_websocket_upgrade_checks_host(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await agent.client.ws_connect("/v1/events", headers={"Host": "evil.example"})
    assert err.value.status == 421


# -- Origin ---------------------------------------------------------------------------------
@pytest.mark.parametrize("origin", [FOREIGN, "null", "http://his.example.test",
                                   "https://his.example.test:8443", "https://his.example.test.",
                                   ALLOWED + "/", "https://HIS.example.test.evil.test"])
async def test_foreign_origin_gets_nothing(aiohttp_client, origin):
    agent = await start_agent(aiohttp_client)
    for path in CARD_PATHS:
        resp = await agent.client.get(path, headers={"Origin": origin})
        body = await assert_refused(resp, 403, "origin_not_allowed")
        assert "pid" not in body and "card" not in body


async def test_foreign_origin_cannot_act(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    await agent.ready()
    resp = await agent.client.delete("/v1/demo/card", headers={"Origin": FOREIGN})
    await assert_refused(resp, 403, "origin_not_allowed")
    resp = await agent.client.options("/v1/demo/card", headers={
        "Origin": FOREIGN, "Access-Control-Request-Method": "DELETE"})
    await assert_refused(resp, 403, "origin_not_allowed")
    # The handler never ran: the card is still in the (demo) reader.
    assert [state.present for state in agent.backend.snapshot()] == [True]


async def test_foreign_origin_websocket_refused(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    for origin in (FOREIGN, "null"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await agent.client.ws_connect("/v1/events", headers={"Origin": origin})
        assert err.value.status == 403


async def test_allowed_origin_gets_cors(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    resp = await agent.client.get("/api/smartcard/read", headers={"Origin": ALLOWED})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "Origin" in resp.headers["Vary"]
    assert "X-Coverage" in resp.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in resp.headers
    assert resp.headers["Cache-Control"] == "no-store"


async def test_errors_carry_cors_for_allowed_origins(aiohttp_client):
    """NHSO pages read the 418/500 body to show the message: it must be readable."""
    agent = await start_agent(aiohttp_client, readers=())
    resp = await agent.client.get("/api/smartcard/read", headers={"Origin": ALLOWED})
    assert resp.status == 418
    assert resp.headers["Access-Control-Allow-Origin"] == ALLOWED


async def test_default_origins(aiohttp_client):
    agent = await start_agent(aiohttp_client, allowed_origins=(NHSO_AUTHEN_ORIGIN,))
    for origin in (NHSO_AUTHEN_ORIGIN, f"http://127.0.0.1:{agent.port}",
                   f"http://localhost:{agent.port}"):
        resp = await agent.client.get("/api/smartcard/terminals", headers={"Origin": origin})
        assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == origin
    resp = await agent.client.get("/api/smartcard/terminals", headers={"Origin": ALLOWED})
    assert resp.status == 403
    # Another port on this machine is another origin.
    resp = await agent.client.get("/api/smartcard/terminals",
                                  headers={"Origin": "http://127.0.0.1:3000"})
    assert resp.status == 403


async def test_requests_without_origin_are_local_tools(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    resp = await agent.client.get("/v1/card")
    assert resp.status == 200 and no_cors(resp)
    resp = await agent.client.get("/v1/card", headers={"Sec-Fetch-Site": "none"})
    assert resp.status == 200


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
async def test_cross_site_without_origin_refused(aiohttp_client, site):
    """An <img src=.../photo> on a foreign page sends no Origin, but says it is cross-site."""
    agent = await start_agent(aiohttp_client)
    await agent.ready()
    resp = await agent.client.get(f"/v1/readers/{agent.service.reader_names()[0]}/photo",
                                  headers={"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "no-cors"})
    await assert_refused(resp, 403, "origin_not_allowed")


# -- preflight ------------------------------------------------------------------------------
async def test_preflight_exact(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    resp = await agent.client.options("/v1/demo/card", headers={
        "Origin": ALLOWED, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert resp.status == 204
    h = resp.headers
    assert h["Access-Control-Allow-Origin"] == ALLOWED
    assert set(h["Access-Control-Allow-Methods"].split(", ")) == {"POST", "DELETE", "OPTIONS"}
    assert h["Access-Control-Allow-Headers"].split(", ") == list(ALLOWED_REQUEST_HEADERS)
    assert "Access-Control-Allow-Private-Network" not in h
    assert "*" not in h["Access-Control-Allow-Origin"] + h["Access-Control-Allow-Methods"]

    resp = await agent.client.options("/api/smartcard/read", headers={
        "Origin": ALLOWED, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Private-Network": "true"})
    assert resp.status == 204
    assert set(resp.headers["Access-Control-Allow-Methods"].split(", ")) == {
        "GET", "HEAD", "OPTIONS"}
    assert resp.headers["Access-Control-Allow-Private-Network"] == "true"


async def test_preflight_unknown_path(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    resp = await agent.client.options("/nope", headers={
        "Origin": ALLOWED, "Access-Control-Request-Method": "GET"})
    assert resp.status == 404 and (await resp.json())["code"] == "not_found"


# -- bodies, methods, paths -------------------------------------------------------------------
async def test_post_must_be_json(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    for kw in ({"data": "variant=1"}, {"data": b"{}", "headers": {"Content-Type": "text/plain"}},
               {}):
        resp = await agent.client.post("/v1/demo/card", **kw)
        body = await resp.json()
        assert resp.status == 415 and body["code"] == "unsupported_media_type", body


async def test_malformed_json(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    for raw in (b"{", b"{'variant': 1}", b"\xff\xfe", b"[1,]"):
        resp = await agent.client.post("/v1/demo/card", data=raw,
                                       headers={"Content-Type": "application/json"})
        body = await resp.json()
        assert resp.status == 400 and body["code"] == "invalid_json", body


@pytest.mark.parametrize("body", [[1], {"variant": "1"}, {"variant": -1}, {"variant": True},
                                  {"reader": 5}, {"extra": 1}])
async def test_invalid_body(aiohttp_client, body):
    agent = await start_agent(aiohttp_client)
    resp = await agent.client.post("/v1/demo/card", json=body)
    assert resp.status == 400 and (await resp.json())["code"] == "bad_request"


async def test_oversize_body(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    big = json.dumps({"variant": 1, "pad": "x" * MAX_BODY})
    resp = await agent.client.post("/v1/demo/card", data=big,
                                   headers={"Content-Type": "application/json"})
    assert resp.status == 413 and (await resp.json())["code"] == "payload_too_large"

    async def chunks():                     # no Content-Length: the limit holds while reading
        for _ in range(MAX_BODY // 1024 + 8):
            yield b" " * 1024
    resp = await agent.client.post("/v1/demo/card", data=chunks(),
                                   headers={"Content-Type": "application/json"})
    assert resp.status == 413 and (await resp.json())["code"] == "payload_too_large"


async def test_wrong_method_and_unknown_path(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    resp = await agent.client.post("/api/smartcard/read", json={})
    body = await resp.json()
    assert resp.status == 405 and body["code"] == "method_not_allowed"
    assert "GET" in resp.headers["Allow"]
    resp = await agent.client.delete("/v1/status")
    assert resp.status == 405
    resp = await agent.client.get("/v1/nope")
    body = await resp.json()
    assert resp.status == 404 and body["code"] == "not_found" and body["message"]
    resp = await agent.client.get("/static/../config.py")
    assert resp.status == 404
    resp = await agent.client.get("/static/index.py")
    assert resp.status == 404 and (await resp.json())["code"] == "not_found"


async def test_unexpected_failure_is_json_without_traceback(aiohttp_client):
    async def broken(request: web.Request) -> web.Response:
        raise ZeroDivisionError("internal detail")

    # The guard wraps every handler the same way: check it on one that fails for real.
    app = build_app(Config(backend="demo"), backend=DemoBackend(), nhso=None)
    app.router.add_get("/v1/broken", broken)
    client = await aiohttp_client(app)
    resp = await client.get("/v1/broken")
    text = await resp.text()
    assert resp.status == 500
    assert json.loads(text)["code"] == "internal_error"
    assert "Traceback" not in text and "ZeroDivision" not in text and "internal detail" not in text
