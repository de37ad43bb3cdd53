"""``/v1/openapi.json``: a valid OpenAPI 3.1 document that matches the real responses."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
import websockets
from openapi_spec_validator import validate as validate_spec

from agent.readers.demo import DEMO_READER
from tests.api_support import FOREIGN, start_agent

READER = quote(DEMO_READER)


def schema_validator(doc: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Validator:
    # "#/components/..." references resolve against a root that carries the components.
    root = {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": doc["components"], **schema}
    return jsonschema.Draft202012Validator(root, format_checker=jsonschema.FormatChecker())


async def check(agent, doc, method: str, template: str, url: str, status: int,
                checked: set, **kw: Any) -> Any:
    resp = await agent.client.request(method, url, **kw)
    assert resp.status == status, (method, url, resp.status, await resp.text())
    op = doc["paths"][template][method.lower()]
    documented = op["responses"].get(str(status))
    assert documented is not None, f"{method} {template} {status} is not documented"
    content_type = resp.content_type
    assert content_type in documented["content"], (template, status, content_type)
    for name, header in documented.get("headers", {}).items():
        schema_validator(doc, header["schema"]).validate(resp.headers[name])
    if content_type == "application/json":
        body = await resp.json()
        schema_validator(doc, documented["content"][content_type]["schema"]).validate(body)
    else:
        body = await resp.read()
        assert body
    checked.add((template, method.lower(), str(status)))
    return body


@pytest.fixture
async def doc_and_agent(aiohttp_client, tmp_path, monkeypatch):
    # The user's config file of this test (POST /v1/allowed-origins writes it).
    monkeypatch.setenv("THAICARD_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("THAICARD_CONFIG", raising=False)
    agent = await start_agent(aiohttp_client)
    await agent.ready()
    doc = await agent.get_json("/v1/openapi.json")
    return doc, agent


async def test_document_is_valid_openapi_31(doc_and_agent):
    doc, _ = doc_and_agent
    assert doc["openapi"].startswith("3.1")
    validate_spec(doc)


async def test_every_route_is_documented_and_every_path_exists(doc_and_agent):
    doc, agent = doc_and_agent
    routes = set()
    for route in agent.app.router.routes():
        if route.method in ("HEAD", "*"):
            continue
        info = route.resource.get_info()
        path = info.get("path") or info.get("formatter")
        routes.add((path, route.method.lower()))
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes == documented


async def test_success_responses_match_the_schemas(doc_and_agent):
    doc, agent = doc_and_agent
    checked: set = set()
    for template, url in [
        ("/", "/"), ("/kiosk", "/kiosk"), ("/static/{file}", "/static/status.js"),
        ("/api/smartcard/terminals", "/api/smartcard/terminals"),
        ("/api/smartcard/read", "/api/smartcard/read?readImageFlag=true"),
        ("/api/smartcard/read-card-only", "/api/smartcard/read-card-only?readImageFlag=false"),
        ("/api/preference", "/api/preference"), ("/api/api/preference", "/api/api/preference"),
        ("/api/smartcard/probe/{pid}", "/api/smartcard/probe/1999900000005"),
        ("/v1/status", "/v1/status"), ("/v1/readers", "/v1/readers"),
        ("/v1/card", "/v1/card?photo=1"),
        ("/v1/readers/{name}/card", f"/v1/readers/{READER}/card"),
        ("/v1/readers/{name}/photo", f"/v1/readers/{READER}/photo"),
        ("/v1/openapi.json", "/v1/openapi.json"), ("/v1/client.js", "/v1/client.js"),
        ("/metrics", "/metrics"), ("/v1/doctor", "/v1/doctor"), ("/doctor", "/doctor"),
    ]:
        await check(agent, doc, "GET", template, url, 200, checked)
    await check(agent, doc, "DELETE", "/v1/demo/card", "/v1/demo/card", 202, checked)
    await check(agent, doc, "POST", "/v1/allowed-origins", "/v1/allowed-origins", 200, checked,
                json={"origin": "https://his2.example.test"})
    await check(agent, doc, "POST", "/v1/demo/card", "/v1/demo/card", 202, checked,
                json={"variant": 1})
    # Every documented success answer was seen for real (the WebSocket's 101 below).
    documented = {(p, m, s) for p, ops in doc["paths"].items() for m, op in ops.items()
                  for s in op["responses"] if s.startswith("2")}
    assert documented == checked


async def test_error_responses_match_the_schemas(aiohttp_client):
    checked: set = set()
    agent = await start_agent(aiohttp_client, insert=False)
    doc = await agent.get_json("/v1/openapi.json")
    await check(agent, doc, "GET", "/api/smartcard/read", "/api/smartcard/read", 500, checked)
    await check(agent, doc, "GET", "/v1/card", "/v1/card", 500, checked)
    await check(agent, doc, "GET", "/v1/readers/{name}/card", "/v1/readers/Nope/card", 404,
                checked)
    await check(agent, doc, "GET", "/api/smartcard/read", "/api/smartcard/read?terminal=Nope",
                404, checked)
    await check(agent, doc, "GET", "/v1/status", "/v1/status", 403, checked,
                headers={"Origin": FOREIGN})
    await check(agent, doc, "GET", "/v1/status", "/v1/status", 421, checked,
                headers={"Host": "evil.example"})
    await check(agent, doc, "POST", "/v1/demo/card", "/v1/demo/card", 415, checked, data="x")
    await check(agent, doc, "POST", "/v1/demo/card", "/v1/demo/card", 400, checked,
                data="{", headers={"Content-Type": "application/json"})
    await check(agent, doc, "POST", "/v1/demo/card", "/v1/demo/card", 413, checked,
                data="[" + " " * 70_000 + "]", headers={"Content-Type": "application/json"})
    await check(agent, doc, "GET", "/static/{file}", "/static/nope.js", 404, checked)
    await check(agent, doc, "GET", "/api/smartcard/probe/{pid}",
                "/api/smartcard/probe/1999900000006", 400, checked)
    await check(agent, doc, "GET", "/v1/events", "/v1/events", 400, checked)

    empty = await start_agent(aiohttp_client, readers=())
    await check(empty, doc, "GET", "/api/smartcard/read-card-only",
                "/api/smartcard/read-card-only", 418, checked)
    await check(empty, doc, "GET", "/v1/readers/{name}/photo", "/v1/readers/x/photo", 418,
                checked)

    slow = await start_agent(aiohttp_client, insert=False, apdu_delay=0.2, read_timeout=1)
    await slow.insert(0, wait_for="card.inserted")
    await check(slow, doc, "GET", "/v1/card", "/v1/card?photo=1", 504, checked)
    slow.backend.remove(DEMO_READER)


async def test_event_envelopes_match_the_schema(doc_and_agent):
    doc, agent = doc_and_agent
    validator = schema_validator(doc, {"$ref": "#/components/schemas/EventEnvelope"})
    async with websockets.connect(f"ws://127.0.0.1:{agent.port}/v1/events") as ws:
        snapshot = json.loads(await ws.recv())
        validator.validate(snapshot)
        await agent.remove()
        await agent.insert(1, wait_for="card.photo")
        for _ in range(4):                          # removed, inserted, read, photo
            validator.validate(json.loads(await ws.recv()))


@pytest.fixture
async def full_agent(aiohttp_client, tmp_path, monkeypatch):
    """The app as ``serve`` builds it, NHSO routes included (no keyring: no token)."""
    monkeypatch.setenv("THAICARD_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("THAICARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    for name in [n for n in os.environ if n.startswith("THAICARD_NHSO_")]:
        monkeypatch.delenv(name)
    agent = await start_agent(aiohttp_client, extensions=True)
    return await agent.get_json("/v1/openapi.json"), agent


async def test_with_nhso_routes_every_route_is_documented(full_agent):
    doc, agent = full_agent
    validate_spec(doc)
    routes = {(r.resource.get_info().get("path") or r.resource.get_info().get("formatter"),
               r.method.lower()) for r in agent.app.router.routes()
              if r.method not in ("HEAD", "*")}
    assert any(path.startswith("/api/nhso-service/") for path, _ in routes)
    assert routes == {(path, m) for path, ops in doc["paths"].items() for m in ops}


async def test_nhso_routes_answer_as_documented(full_agent):
    doc, agent = full_agent
    checked: set = set()
    pid = "1999900000005"
    await check(agent, doc, "GET", "/v1/nhso/status", "/v1/nhso/status", 200, checked)
    await check(agent, doc, "GET", "/v1/claims", "/v1/claims", 200, checked)
    await check(agent, doc, "GET", "/v1/claims", "/v1/claims?limit=0", 400, checked)
    await check(agent, doc, "GET", "/v1/claims/{id}", "/v1/claims/nope", 404, checked)
    await check(agent, doc, "POST", "/v1/claims", "/v1/claims", 400, checked, json={})
    await check(agent, doc, "POST", "/v1/claims", "/v1/claims", 415, checked, data="x")
    await check(agent, doc, "GET", "/api/nhso-service/latest-authen-code/{pid}",
                "/api/nhso-service/latest-authen-code/123", 400, checked)
    await check(agent, doc, "GET", "/api/nhso-service/latest-authen-code/{pid}",
                f"/api/nhso-service/latest-authen-code/{pid}", 500, checked)
    await check(agent, doc, "GET", "/api/nhso-service/latest-5-authen-code-all-hospital/{pid}",
                f"/api/nhso-service/latest-5-authen-code-all-hospital/{pid}", 500, checked)
    await check(agent, doc, "POST", "/api/nhso-service/confirm-save",
                "/api/nhso-service/confirm-save", 400, checked, json={})
    await check(agent, doc, "POST", "/api/nhso-service/save-as-draft",
                "/api/nhso-service/save-as-draft", 400, checked, json={})
    # Without a token the card read still answers, and says coverage is unavailable.
    body = await check(agent, doc, "GET", "/api/smartcard/read", "/api/smartcard/read", 200,
                       checked)
    # (no keyring in this test: the agent says so instead of guessing)
    assert body["coverageStatus"] in ("no_token", "keyring_unavailable")
    assert body["mainInscl"] is None and body["claimTypes"] == []


async def test_card_removal_forgets_cached_coverage(full_agent):
    _, agent = full_agent
    from agent.nhso.routes import NHSO_SERVICE

    nhso = agent.app[NHSO_SERVICE].lookups
    nhso._coverage[("1999900000005", "2026-01-01")] = (float("inf"), {"mainInscl": "(UCS) x"})
    await agent.remove()
    assert not nhso._coverage
