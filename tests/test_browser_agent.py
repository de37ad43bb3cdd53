"""The agent in real headless Chromium (/usr/bin/chromium, driven over CDP).

* A page on an allowed HTTPS origin (treated by Chromium as the public internet, so Local
  Network Access applies; the permission granted as a user or admin policy would) reads the
  card with ``fetch`` and over the WebSocket through ``/v1/client.js``.
* A page on a foreign origin, with the same browser permission, gets nothing: the refusal
  is the agent's own.
* The status page renders the demo card and follows removal/insertion live; screenshots
  are kept under test-output/.
"""

from __future__ import annotations

import os
import subprocess

import pytest
import trustme

from agent.card.demo import demo_profile
from agent.readers.demo import DEMO_READER
from tests.api_support import ROOT, clean_env, free_port, serve_cmd, wait_until_up
from tests.browser_support import PUBLIC_IP, Chromium, browser_available, start_public_site

pytestmark = pytest.mark.browser

ALLOWED_HOST = "gov.example.test"
FOREIGN_HOST = "evil.example.test"
OUTPUT = ROOT / "test-output"

missing = browser_available()
if missing and os.environ.get("CI"):
    raise RuntimeError(f"browser tests cannot run in CI: {missing}")
if missing:
    pytest.skip(missing, allow_module_level=True)


def free_public_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((PUBLIC_IP, 0))
        return s.getsockname()[1]


@pytest.fixture
async def rig(tmp_path):
    """The agent (a real ``serve`` process), the HTTPS test site, and Chromium."""
    workdir = tmp_path / "browser"
    workdir.mkdir()
    public_port = free_public_port()
    allowed = f"https://{ALLOWED_HOST}:{public_port}"
    foreign = f"https://{FOREIGN_HOST}:{public_port}"
    agent_port = free_port()
    log_dir = tmp_path / "logs"
    stderr = open(tmp_path / "agent-stderr.log", "a")  # noqa: SIM115 - closed below

    def start_agent() -> subprocess.Popen:
        return subprocess.Popen(serve_cmd(agent_port, "--allow-origin", allowed, "--log-dir",
                                          str(log_dir)),
                                cwd=ROOT, env=clean_env(tmp_path), stdout=subprocess.DEVNULL,
                                stderr=stderr, text=True)

    agents = [start_agent()]
    ca = trustme.CA()
    site = await start_public_site(ca, [ALLOWED_HOST, FOREIGN_HOST], public_port)
    browser = Chromium(workdir, public_port=public_port, hosts=[ALLOWED_HOST, FOREIGN_HOST])
    def restart_agent() -> None:
        stop(agents[-1])
        agents.append(start_agent())
        wait_until_up(agent_port, agents[-1])

    try:
        wait_until_up(agent_port, agents[0])
        await browser.start(browser.trust(ca))
        yield {"browser": browser, "agent_port": agent_port, "allowed": allowed,
               "foreign": foreign, "log": log_dir / "agent.log", "stop": lambda: stop(agents[-1]),
               "restart": restart_agent}
    finally:
        await browser.close()
        await site.cleanup()
        for agent in agents:
            stop(agent)
        stderr.close()


def stop(agent: subprocess.Popen) -> None:
    if agent.poll() is None:
        agent.terminate()
        try:
            agent.wait(15)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(10)


READ_FROM_PAGE = """
(async () => {
  const base = "http://127.0.0.1:%(port)d";
  const out = {origin: location.origin, secure: isSecureContext};
  try {
    const r = await fetch(base + "/api/smartcard/read?readImageFlag=true");
    out.status = r.status;
    out.coverage = r.headers.get("X-Coverage");
    const body = await r.json();
    out.pid = body.pid; out.titleName = body.titleName; out.imageLength = (body.image || "").length;
  } catch (err) { out.fetchError = String(err); }
  try {
    const { ThaiCardAgent } = await import(base + "/v1/client.js");
    const agent = new ThaiCardAgent({ base });
    const snapshot = new Promise((resolve) => agent.on("snapshot", resolve));
    const states = [];
    agent.on("state", (s) => states.push(s));
    agent.connect();
    const snap = await Promise.race([snapshot,
      new Promise((_, reject) => setTimeout(() => reject(new Error("no snapshot")), 8000))]);
    out.snapshotPid = snap.readers[0].card.citizen_id;
    // A new card: POST with JSON (a preflighted request), then the live events.
    const read = new Promise((resolve) => agent.on("card.read", resolve));
    const photo = new Promise((resolve) => agent.on("card.photo", resolve));
    await agent.request("/v1/demo/card", {method: "POST",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify({variant: 1})});
    out.readName = (await read).card.name_th.first;
    out.photoLength = (await photo).photo.length;
    out.card = (await agent.read({ photo: true })).citizen_id;
    out.states = states;
    agent.close();
  } catch (err) { out.clientError = String(err); }
  return out;
})()
"""

FOREIGN_PAGE = """
(async () => {
  const base = "http://127.0.0.1:%(port)d";
  const out = {};
  for (const path of ["/api/smartcard/read?readImageFlag=true", "/v1/card", "/v1/status"]) {
    try { const r = await fetch(base + path); out[path] = "answered " + r.status; }
    catch (err) { out[path] = "blocked"; }
  }
  try { await import(base + "/v1/client.js"); out.module = "loaded"; }
  catch (err) { out.module = "blocked"; }
  out.ws = await new Promise((resolve) => {
    const ws = new WebSocket("ws://127.0.0.1:%(port)d/v1/events");
    let got = null;
    ws.onmessage = (m) => { got = m.data; };
    ws.onopen = () => setTimeout(() => resolve("open: " + got), 500);
    ws.onerror = () => resolve("error");
    setTimeout(() => resolve("timeout"), 8000);
  });
  try {
    const r = await fetch(base + "/v1/demo/card", {method: "DELETE"});
    out.remove = "answered " + r.status;
  } catch (err) { out.remove = "blocked"; }
  return out;
})()
"""


async def test_allowed_https_page_reads_the_card(rig):
    browser, port = rig["browser"], rig["agent_port"]
    context = await browser.new_context()
    await browser.allow_loopback(rig["allowed"], context)
    page = await browser.open(rig["allowed"] + "/", context)
    out = await page.evaluate(READ_FROM_PAGE % {"port": port}, timeout=60)
    first, second = demo_profile(0), demo_profile(1)
    assert out["origin"] == rig["allowed"] and out["secure"] is True
    assert "fetchError" not in out and "clientError" not in out, (out, browser.console)
    assert out["status"] == 200 and out["pid"] == first.text.citizen_id
    assert out["titleName"] == "003" and out["coverage"] == "unavailable"
    assert out["imageLength"] > 1000
    assert out["snapshotPid"] == first.text.citizen_id
    assert out["readName"] == second.text.name_th.first and out["photoLength"] > 1000
    assert out["card"] == second.text.citizen_id
    assert out["states"][:2] == ["connecting", "open"]


async def test_foreign_page_gets_nothing(rig):
    browser, port = rig["browser"], rig["agent_port"]
    context = await browser.new_context()
    # The browser lets it through (as if a user clicked Allow): the agent must refuse.
    await browser.allow_loopback(rig["foreign"], context)
    page = await browser.open(rig["foreign"] + "/", context)
    out = await page.evaluate(FOREIGN_PAGE % {"port": port}, timeout=60)
    assert out == {"/api/smartcard/read?readImageFlag=true": "blocked", "/v1/card": "blocked",
                   "/v1/status": "blocked", "module": "blocked", "ws": "error",
                   "remove": "blocked"}
    # The requests did reach the agent, which refused them itself: the first is logged,
    # the rest are counted into the minute's summary (docs/security.md).
    log = rig["log"].read_text(encoding="utf-8")
    assert f'from "origin {rig["foreign"]}": origin_not_allowed' in log
    # And the card is still there.
    context2 = await browser.new_context()
    await browser.allow_loopback(rig["allowed"], context2)
    good = await browser.open(rig["allowed"] + "/", context2)
    status = await good.evaluate(
        f'fetch("http://127.0.0.1:{port}/v1/readers").then(r => r.json())')
    assert status["readers"][0]["present"] is True


PHOTO_PAGE = """
(async () => {
  const base = "http://127.0.0.1:%(port)d";
  const out = {};
  const load = (src, crossorigin) => new Promise((resolve) => {
    const img = new Image();
    if (crossorigin) img.crossOrigin = "anonymous";
    img.onload = () => resolve("loaded " + img.naturalWidth + "x" + img.naturalHeight);
    img.onerror = () => resolve("failed");
    img.src = src;
    setTimeout(() => resolve("timeout"), 8000);
  });
  try {
    const { ThaiCardAgent } = await import(base + "/v1/client.js");
    const agent = new ThaiCardAgent({ base });
    const reader = (await agent.listReaders())[0].name;
    out.withCrossorigin = await load(agent.photoUrl(reader), true);
    out.plain = await load(agent.photoUrl(reader) + "?plain", false);
    const url = await agent.photoObjectUrl(reader);
    out.objectUrl = url.startsWith("blob:") ? await load(url, false) : url;
    URL.revokeObjectURL(url);
    try { await agent.request("/v1/nhso/status"); out.nhso = "answered"; }
    catch (err) { out.nhso = err.code + " " + err.status; }
  } catch (err) { out.error = String(err); }
  return out;
})()
"""


async def test_photo_as_an_image_and_scopes_in_the_browser(rig):
    """The allowed page (default scopes: card, photo, events) shows the photo with
    <img crossorigin> or an object URL from client.js; a plain <img> (no Origin sent) is
    refused, and the NHSO lookups are outside its scopes."""
    browser, port = rig["browser"], rig["agent_port"]
    context = await browser.new_context()
    await browser.allow_loopback(rig["allowed"], context)
    page = await browser.open(rig["allowed"] + "/", context)
    out = await page.evaluate(PHOTO_PAGE % {"port": port}, timeout=60)
    assert "error" not in out, (out, browser.console)
    assert out["withCrossorigin"].startswith("loaded ") and out["withCrossorigin"] != "loaded 0x0"
    assert out["objectUrl"].startswith("loaded ") and out["objectUrl"] != "loaded 0x0"
    assert out["plain"] == "failed"
    assert out["nhso"] == "scope_denied 403"
    # Another site gets no photo however it asks.
    context2 = await browser.new_context()
    await browser.allow_loopback(rig["foreign"], context2)
    foreign = await browser.open(rig["foreign"] + "/", context2)
    img = await foreign.evaluate(
        "new Promise((resolve) => { const i = new Image(); i.crossOrigin = 'anonymous';"
        f" i.onload = () => resolve('loaded'); i.onerror = () => resolve('failed');"
        f" i.src = 'http://127.0.0.1:{port}/v1/readers/' +"
        f" encodeURIComponent('{DEMO_READER}') + '/photo'; }})", timeout=30)
    assert img == "failed"


async def test_status_page_live(rig):
    browser, port = rig["browser"], rig["agent_port"]
    context = await browser.new_context()
    page = await browser.open(f"http://127.0.0.1:{port}/", context)
    text = demo_profile(0).text
    await page.wait_for("document.querySelector('.reader .cid')?.textContent")
    await page.wait_for("!document.querySelector('.reader .photo').hidden && "
                        "document.querySelector('.reader .photo').naturalWidth > 0")
    shown = await page.evaluate("""({
      cid: document.querySelector('.reader .cid').textContent,
      name: document.querySelector('.reader .name-th').textContent,
      nameEn: document.querySelector('.reader .name-en').textContent,
      version: document.getElementById('version').textContent,
      connection: document.getElementById('connection').textContent,
      demo: !document.getElementById('backend').hidden,
      body: document.body.innerText,
      photoWidth: document.querySelector('.reader .photo').naturalWidth,
    })""")
    cid = text.citizen_id
    assert shown["cid"] == f"{cid[0]}-{cid[1:5]}-xxxxx-xx-{cid[12]}"
    assert cid not in shown["body"]                         # masked, never in full
    assert shown["name"] == text.name_th.full(thai=True)
    assert shown["nameEn"] == text.name_en.full(thai=False)
    assert shown["version"].startswith("v") and shown["demo"] is True
    assert "Connected" in shown["connection"] and shown["photoWidth"] == 148
    assert "Chrome" in shown["body"] and "อนุญาต" in shown["body"]
    await page.screenshot(OUTPUT / "status-page.png")

    # Live: removal clears the card at once; a new card shows up without a reload.
    await page.evaluate("document.querySelector('.reader .demo-remove').click()")
    await page.wait_for("document.querySelector('.reader .card').hidden")
    assert await page.evaluate("document.querySelector('.reader .cid') === null || "
                               "!document.body.innerText.includes('xxxxx')")
    await page.screenshot(OUTPUT / "status-page-no-card.png")
    await page.evaluate("document.querySelector('.reader .demo-insert').click()")
    await page.wait_for("document.querySelector('.reader .cid')?.textContent")


async def test_without_browser_permission_nothing_reaches_the_agent(rig):
    """Why admins deploy the LocalNetworkAccessAllowedForUrls policy (docs/admin.md)."""
    browser, port = rig["browser"], rig["agent_port"]
    context = await browser.new_context()
    page = await browser.open(rig["allowed"] + "/", context)
    result = await page.evaluate(
        f'fetch("http://127.0.0.1:{port}/v1/status").then(r => "answered " + r.status, '
        f'e => "blocked")', timeout=60)
    assert result == "blocked"
    log = rig["log"].read_text(encoding="utf-8")
    assert "Chrome/" not in log              # no request from the browser at all


async def test_status_page_reconnects_after_agent_restart(rig):
    browser, port = rig["browser"], rig["agent_port"]
    context = await browser.new_context()
    page = await browser.open(f"http://127.0.0.1:{port}/", context)
    await page.wait_for("document.querySelector('.reader .cid')?.textContent")
    rig["stop"]()
    await page.wait_for("document.getElementById('connection').className.includes('closed')")
    rig["restart"]()                      # same port; the client retries with backoff
    await page.wait_for("document.getElementById('connection').className.includes('open') && "
                        "document.querySelector('.reader .cid')?.textContent", timeout=40)


DENIED_PAGE = """
(async () => {
  const { ThaiCardAgent, loopbackPermission } = await import("/client.js");
  const agent = new ThaiCardAgent({ base: "http://127.0.0.1:%(port)d", reconnect: false });
  const unreachable = new Promise((resolve) => agent.on("unreachable", resolve));
  agent.connect();
  const why = await unreachable;
  let readError = null;
  try { await agent.read(); } catch (err) { readError = {name: err.name, code: err.code}; }
  return {permission: await loopbackPermission(), why, readError};
})()
"""


async def test_client_explains_a_denied_permission(rig):
    browser, port = rig["browser"], rig["agent_port"]
    context = await browser.new_context()
    await browser.allow_loopback(rig["allowed"], context, "denied")
    page = await browser.open(rig["allowed"] + "/", context)
    out = await page.evaluate(DENIED_PAGE % {"port": port}, timeout=60)
    assert out["permission"] == "denied"
    assert out["why"]["code"] == "permission_denied"
    assert "Local network access" in out["why"]["en"] and "อนุญาต" in out["why"]["th"]
    assert out["readError"] == {"name": "AgentError", "code": "permission_denied"}
