"""The deb's Chromium policy file alone lets the allowed pages reach the agent: real
headless Chromium, and no permission granted by the test.

* The deb is built (installer/linux/build_deb.sh, a stand-in bundle) for three origins:
  an HTTPS page (Chromium treats its address as the public internet) and a plain-http
  intranet page on a private address inside a network namespace this test creates. Its
  ``/etc/chromium/policies/managed/thaicard-agent.json`` is copied byte for byte into the
  machine's managed policy folder (under a name of this run, so a deb installed by another
  test is never overwritten), and removed afterwards.
* Both pages read the card with ``fetch`` and get the WebSocket snapshot; without the file
  (a control run first) the HTTPS page is blocked.
* A page whose origin the agent allows but the policy does not name is blocked by the
  browser: its requests never reach the agent (no refusal is counted there).

Only origins of this test (unique host names and ports) are in the file, so browser tests
running beside it see no change; a lock keeps two runs of this test apart. Screenshots go
to test-output/browser-policy/.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.api_support import ROOT, clean_env, free_port, get, serve_cmd, wait_until_up
from tests.browser_support import PUBLIC_IP, Chromium, browser_available, start_public_site

pytestmark = pytest.mark.browser

MANAGED = Path("/etc/chromium/policies/managed")
LOCK = Path("/tmp/thaicard-agent-chromium-policy.lock")
OUTPUT = ROOT / "test-output" / "browser-policy"
ALLOWED_HOST = "policy-allowed.example.test"
BLOCKED_HOST = "policy-blocked.example.test"

missing = browser_available()
if missing and os.environ.get("CI"):
    raise RuntimeError(f"browser tests cannot run in CI: {missing}")
if missing:
    pytest.skip(missing, allow_module_level=True)
if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("dpkg-deb") is None:
    pytest.skip("needs root, iproute2 and dpkg-deb (a namespace and /etc/chromium)",
                allow_module_level=True)


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


def deb_policy_file(tmp: Path, origins: list[str]) -> bytes:
    """The Chromium policy file of a deb built for ``origins``."""
    bundle = tmp / "bundle"
    bundle.mkdir()
    (bundle / "thaicard-agent").write_text("#!/bin/sh\nexit 0\n")
    (bundle / "thaicard-agent").chmod(0o755)
    env = {**os.environ, "ALLOWED_ORIGINS": " ".join(origins), "DEB_COMPRESSION": "none"}
    subprocess.run(["installer/linux/build_deb.sh", str(bundle), str(tmp / "out")], cwd=ROOT,
                   env=env, check=True, capture_output=True, timeout=120)
    deb = next((tmp / "out").glob("*.deb"))
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True,
                         capture_output=True, timeout=60).stdout
    return subprocess.run(["tar", "-xO", "./etc/chromium/policies/managed/thaicard-agent.json"],
                          input=tar, check=True, capture_output=True, timeout=60).stdout


@contextlib.contextmanager
def policy_installed(content: bytes) -> Iterator[Path]:
    """The file in Chromium's managed folder for this test only; the folder as it was after."""
    LOCK.touch(exist_ok=True)
    with open(LOCK) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        created = [p for p in (MANAGED.parent.parent, MANAGED.parent, MANAGED) if not p.exists()]
        MANAGED.mkdir(parents=True, exist_ok=True)
        path = MANAGED / f"thaicard-agent-test-{os.getpid()}.json"
        path.write_bytes(content)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)
            for folder in reversed(created):
                with contextlib.suppress(OSError):
                    folder.rmdir()


@contextlib.contextmanager
def intranet_host() -> Iterator[tuple[str, str]]:
    """A namespace with a private address, joined to this one by a veth pair."""
    tag = secrets.token_hex(3)
    ns = f"tca-p-{tag}"
    third = int(tag[:2], 16)
    host_ip, ns_ip = f"10.213.{third}.1", f"10.213.{third}.2"
    _run("ip", "netns", "add", ns)
    try:
        _run("ip", "link", "add", f"vp{tag}", "type", "veth", "peer", "name", f"vq{tag}",
             "netns", ns)
        _run("ip", "addr", "add", f"{host_ip}/30", "dev", f"vp{tag}")
        _run("ip", "link", "set", f"vp{tag}", "up")
        _run("ip", "-n", ns, "addr", "add", f"{ns_ip}/30", "dev", f"vq{tag}")
        _run("ip", "-n", ns, "link", "set", f"vq{tag}", "up")
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        yield ns, ns_ip
    finally:
        _run("ip", "netns", "del", ns)          # the veth pair goes with it


PAGE_READS = """
(async () => {
  const base = "http://127.0.0.1:%(port)d";
  const out = {origin: location.origin, secure: isSecureContext};
  try {
    const r = await fetch(base + "/api/smartcard/read?readImageFlag=false");
    out.status = r.status; out.pid = (await r.json()).pid;
  } catch (err) { out.fetch = "blocked: " + err; }
  out.ws = await new Promise((resolve) => {
    const ws = new WebSocket("ws://127.0.0.1:%(port)d/v1/events?photo=0");
    ws.onmessage = (m) => { const e = JSON.parse(m.data); ws.close();
                            resolve(e.type + ":" + (e.readers[0].card || {}).citizen_id); };
    ws.onerror = () => resolve("error");
    setTimeout(() => resolve("timeout"), 8000);
  });
  document.body.innerText = JSON.stringify(out, null, 1);
  return out;
})()
"""


async def test_the_deb_policy_alone_lets_allowed_pages_in(tmp_path: Path) -> None:
    public_port = free_port()
    intranet_port = free_port()
    agent_port = free_port()
    allowed_https = f"https://{ALLOWED_HOST}:{public_port}"
    blocked_https = f"https://{BLOCKED_HOST}:{public_port}"
    with intranet_host() as (ns, ns_ip):
        intranet = f"http://{ns_ip}:{intranet_port}"
        content = deb_policy_file(tmp_path, [allowed_https, intranet])
        assert json.loads(content)["LoopbackNetworkAllowedForUrls"] == [allowed_https, intranet]
        site_dir = tmp_path / "intranet"
        site_dir.mkdir()
        (site_dir / "index.html").write_text("<!doctype html><title>HIS</title><p>intranet")
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, "python3", "-m", "http.server", "--bind", ns_ip,
             str(intranet_port), "--directory", str(site_dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The agent allows all three: whatever stops the third page is the browser.
        agent = subprocess.Popen(
            serve_cmd(agent_port, "--allow-origin", allowed_https, "--allow-origin", intranet,
                      "--allow-origin", blocked_https, "--log-dir", str(tmp_path / "logs")),
            cwd=ROOT, env=clean_env(tmp_path), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        ca = trustme.CA()
        site = await start_public_site(ca, [ALLOWED_HOST, BLOCKED_HOST], public_port)
        browser = Chromium(tmp_path / "browser", public_port=public_port,
                           hosts=[ALLOWED_HOST, BLOCKED_HOST])
        (tmp_path / "browser").mkdir()
        try:
            wait_until_up(agent_port, agent)
            # Control: the same browser set-up without the file blocks both pages.
            before = Chromium(tmp_path / "before", public_port=public_port,
                              hosts=[ALLOWED_HOST, BLOCKED_HOST])
            (tmp_path / "before").mkdir()
            try:
                await before.start(before.trust(ca))
                context = await before.new_context()
                unmanaged = [await (await before.open(url + "/", context)).evaluate(
                    PAGE_READS % {"port": agent_port}) for url in (allowed_https, intranet)]
            finally:
                await before.close()
            with policy_installed(content):
                await browser.start(browser.trust(ca))
                context = await browser.new_context()        # no permission set on it
                results = {}
                for name, url in (("https", allowed_https), ("intranet", intranet),
                                  ("blocked", blocked_https)):
                    page = await browser.open(url + "/", context)
                    results[name] = await page.evaluate(PAGE_READS % {"port": agent_port})
                    await page.screenshot(OUTPUT / f"{name}.png")
            _code, body = get(agent_port, "/v1/status")
            status = json.loads(body)
        finally:
            await browser.close()
            await site.cleanup()
            for proc in (agent, server):
                proc.terminate()
                proc.wait(15)
    # Without the file the public HTTPS page is blocked. The intranet page on a private
    # address is let through by Chromium 156 even without it (private -> loopback is not
    # enforced there yet); kept as an observation, so a browser that starts enforcing it
    # is noticed here while the policy run below must pass either way.
    assert unmanaged[0]["fetch"].startswith("blocked"), unmanaged[0]
    assert unmanaged[0]["ws"] in ("error", "timeout"), unmanaged[0]
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "without-policy.json").write_text(json.dumps(unmanaged, indent=1))
    https, intra, blocked = results["https"], results["intranet"], results["blocked"]
    assert https["secure"] is True and intra["secure"] is False
    for out in (https, intra):
        assert out.get("status") == 200, out
        assert out["ws"].startswith("snapshot:"), out
        assert len(out["pid"]) == 13
    assert blocked["fetch"].startswith("blocked"), blocked
    assert blocked["ws"] in ("error", "timeout"), blocked
    # The browser stopped it: the agent never saw the page, so refused nothing.
    assert status["refusals"]["counts"] == {}, status["refusals"]
