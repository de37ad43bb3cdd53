"""Real headless Chromium driven over the DevTools protocol (CDP) with ``websockets``.

Also: a test CA trusted by that Chromium (an NSS db in its own HOME), and an HTTPS server
for "public" test origins on 127.0.0.2, which Chromium is told to treat as the public
internet, so its Local Network Access rules apply exactly as for a real hospital page.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import ssl
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trustme
import websockets
from aiohttp import web

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PUBLIC_IP = "127.0.0.2"
LAUNCH_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage", "--window-size=1100,1200"]


def browser_available() -> str | None:
    """None when Chromium and certutil are installed, else what is missing."""
    if not os.path.exists(CHROMIUM):
        return "chromium is not installed (scripts/setup.sh test installs it)"
    if shutil.which("certutil") is None:
        return "certutil is not installed (package libnss3-tools)"
    return None


class CdpError(Exception):
    pass


class Chromium:
    def __init__(self, workdir: Path, *, public_port: int, hosts: list[str]) -> None:
        self.workdir = workdir
        self.public_port = public_port
        self.hosts = hosts
        self.proc: subprocess.Popen[bytes] | None = None
        self.ws: Any = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._events: dict[str | None, asyncio.Queue[dict[str, Any]]] = defaultdict(
            asyncio.Queue)
        self._reader: asyncio.Task[None] | None = None
        self.console: list[str] = []

    def trust(self, ca: trustme.CA) -> dict[str, str]:
        """An NSS db holding the test CA, in a HOME of our own; returns the environment."""
        home = self.workdir / "home"
        nssdb = home / ".pki" / "nssdb"
        nssdb.mkdir(parents=True, exist_ok=True)
        ca_file = self.workdir / "test-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"],
                       check=True, capture_output=True)
        subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,",
                        "-n", "thaicard-test-ca", "-i", str(ca_file)],
                       check=True, capture_output=True)
        return {**os.environ, "HOME": str(home)}

    async def start(self, env: dict[str, str]) -> None:
        profile = self.workdir / "profile"
        rules = ", ".join(f"MAP {host} {PUBLIC_IP}" for host in self.hosts)
        args = [CHROMIUM, *LAUNCH_FLAGS, f"--user-data-dir={profile}",
                "--remote-debugging-port=0", f"--host-resolver-rules={rules}",
                f"--ip-address-space-overrides={PUBLIC_IP}:{self.public_port}=public",
                "about:blank"]
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.workdir / "chromium.log", "wb"))  # noqa: SIM115 - lives as long as the browser
        proc = self.proc

        def gone() -> str | None:
            if proc.poll() is None:
                return None
            return (self.workdir / "chromium.log").read_text(errors="replace")[-2000:]
        await self.attach(profile, gone, limit=30)

    async def attach(self, profile: Path, gone: Callable[[], str | None],
                     limit: float = 60) -> None:
        """Connect to the Chromium using ``profile`` once it was started with
        ``--remote-debugging-port=0`` (it writes the port it took into the profile);
        ``gone`` says why the browser cannot come any more (it exited), else None."""
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + limit
        while not port_file.exists() or len(port_file.read_text().split()) < 2:
            why = gone()
            if why is not None or time.monotonic() > deadline:
                raise CdpError(f"chromium did not start: {why or 'no DevToolsActivePort'}")
            await asyncio.sleep(0.05)
        port, path = port_file.read_text().split()[:2]
        self.ws = await websockets.connect(f"ws://127.0.0.1:{port}{path}", max_size=None)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg:
                fut = self._pending.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    if "error" in msg:
                        fut.set_exception(CdpError(json.dumps(msg["error"])))
                    else:
                        fut.set_result(msg.get("result", {}))
            else:
                if msg.get("method") == "Runtime.consoleAPICalled":
                    args = msg["params"].get("args", [])
                    self.console.append(" ".join(str(a.get("value", a.get("description")))
                                                 for a in args))
                self._events[msg.get("sessionId")].put_nowait(msg)

    async def send(self, method: str, params: dict[str, Any] | None = None, *,
                   session: str | None = None, timeout: float = 30) -> Any:
        msg_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        await self.ws.send(json.dumps(msg))
        return await asyncio.wait_for(fut, timeout)

    async def wait_event(self, method: str, session: str | None, timeout: float = 30
                         ) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            while True:
                msg = await self._events[session].get()
                if msg.get("method") == method:
                    return msg["params"]
        return await asyncio.wait_for(find(), timeout)

    async def new_context(self) -> str:
        return (await self.send("Target.createBrowserContext"))["browserContextId"]

    async def allow_loopback(self, origin: str, context: str, setting: str = "granted") -> None:
        """What a user's "Allow" (or the admin policy) does; the context id is required."""
        await self.send("Browser.setPermission", {
            "permission": {"name": "loopback-network"}, "setting": setting,
            "origin": origin, "browserContextId": context})

    async def open(self, url: str, context: str) -> Page:
        target = (await self.send("Target.createTarget", {
            "url": "about:blank", "browserContextId": context}))["targetId"]
        session = (await self.send("Target.attachToTarget", {
            "targetId": target, "flatten": True}))["sessionId"]
        page = Page(self, session, target)
        await self.send("Page.enable", session=session)
        await self.send("Runtime.enable", session=session)
        await page.goto(url)
        return page

    async def page_showing(self, url: str) -> Page:
        """The open tab at ``url`` (a page this browser was started with)."""
        targets = (await self.send("Target.getTargets"))["targetInfos"]
        found = [t for t in targets if t["type"] == "page" and t["url"] == url]
        if not found:
            raise CdpError(f"no tab at {url}: {[t['url'] for t in targets]}")
        session = (await self.send("Target.attachToTarget", {
            "targetId": found[0]["targetId"], "flatten": True}))["sessionId"]
        await self.send("Runtime.enable", session=session)
        return Page(self, session, found[0]["targetId"])

    async def close(self) -> None:
        if self.ws is not None:
            try:
                await self.send("Browser.close", timeout=5)
            except (CdpError, TimeoutError, websockets.ConnectionClosed):
                pass
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Page:
    def __init__(self, browser: Chromium, session: str, target: str) -> None:
        self.browser = browser
        self.session = session
        self.target = target

    async def goto(self, url: str) -> None:
        result = await self.browser.send("Page.navigate", {"url": url}, session=self.session)
        if result.get("errorText"):
            raise CdpError(f"navigation to {url} failed: {result['errorText']}")
        await self.browser.wait_event("Page.loadEventFired", self.session)

    async def evaluate(self, expression: str, timeout: float = 30) -> Any:
        result = await self.browser.send("Runtime.evaluate", {
            "expression": expression, "awaitPromise": True, "returnByValue": True},
            session=self.session, timeout=timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CdpError(f"page script failed: {text}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20) -> Any:
        """Poll ``expression`` in the page until it is truthy."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression}")
            await asyncio.sleep(0.1)

    async def screenshot(self, path: Path) -> None:
        data = await self.browser.send("Page.captureScreenshot", {"format": "png"},
                                       session=self.session)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))


async def start_public_site(ca: trustme.CA, hosts: list[str], port: int) -> web.AppRunner:
    """An HTTPS server on 127.0.0.2 that serves an empty page under every test host."""
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>hospital page</title><p>test page",
                            content_type="text/html")

    async def client_js(request: web.Request) -> web.Response:
        # A hospital may host the client itself, next to its pages.
        return web.Response(body=(Path(__file__).resolve().parents[1] / "agent" / "static" /
                                  "client.js").read_bytes(), content_type="text/javascript")

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/client.js", client_js)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*hosts).configure_cert(ctx)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, PUBLIC_IP, port, ssl_context=ctx).start()
    return runner
