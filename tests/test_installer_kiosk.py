"""The kiosk .deb (``KIOSK=1``) installed with dpkg on this machine, then a logon: the
package's XDG autostart entries are run as the session would run them, as an unprivileged
user under a private X server, and Chromium must show the agent's kiosk page full screen.

What a session manager does at logon is reproduced, nothing more: every autostart entry the
package installed is read from /etc/xdg/autostart and its ``Exec`` line run (the tray's
agent and ``thaicard-agent kiosk``), with the user's own settings (a free port, the demo
reader). The one addition is a ``chromium`` in front of /usr/bin/chromium on the session's
PATH that adds ``--remote-debugging-port=0`` to the flags ``thaicard-agent kiosk`` gives
it, so that the test can read the page in the real kiosk window; the X server's own
screenshot must be that page's own rendering (full screen, no browser frame or bubble;
identical in practice, a few hundred stray pixels are allowed), and a click at the page's
button position on the X screen must reach the page. The screenshots (no person's photo
on any of them) are kept in test-output/kiosk-install/ for docs/admin.md. Then
``dpkg -r`` must leave no autostart entry behind.
"""

from __future__ import annotations

import configparser
import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from testrig.ports import free_port
from testrig.processes import end
from tests.browser_support import Chromium, Page
from tests.installer_support import (
    ROOT,
    deb_files,
    deb_installed,
    dpkg_installed,
    get_status,
    isolated_env,
    kiosk_deb,
    machine_lock,
    run,
    status_when_up,
    wait_for_window,
    xvfb,
)

TOOLS = ("dpkg-deb", "Xvfb", "openbox", "xprop", "xdotool", "import", "chromium")
pytestmark = [
    pytest.mark.timeout(900),          # the frozen bundle's first build; the test is seconds
    pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                       reason=f"needs {', '.join(TOOLS)} (scripts/setup.sh test installs them)"),
]
OUT = ROOT / "test-output" / "kiosk-install"
AUTOSTART = "/etc/xdg/autostart/"
SESSION_USER = "nobody"        # a logon is never root (and Chromium refuses root's sandbox)
SCREEN = (1024, 768)           # installer_support.xvfb's screen
IDLE_TEXT = "กรุณาเสียบบัตรประชาชน"
# Only the debugging port is added; the pid and the arguments are recorded for the test.
BROWSER_SHIM = """#!/bin/sh
echo $$ > "$HOME/browser.pid"
printf '%s\\n' "$@" > "$HOME/browser.args"
exec /usr/bin/chromium --remote-debugging-port=0 "$@"
"""


def autostart_entries(deb: Path) -> dict[str, list[str]]:
    """Each autostart entry the package installed -> its Exec line as an argument list, as
    a session manager reads it (an entry switched off would not run)."""
    entries = {}
    for path in sorted(p for p in deb_files(deb) if p.startswith(AUTOSTART)
                       and p.endswith(".desktop")):
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(path, encoding="utf-8")
        entry = parser["Desktop Entry"]
        assert entry.get("Hidden", "false") != "true", path
        assert entry.get("X-GNOME-Autostart-enabled", "true") == "true", path
        exec_line = shlex.split(entry["Exec"])
        assert not [a for a in exec_line if a.startswith("%")], "field codes need a file"
        entries[path] = exec_line
    return entries


@pytest.fixture
def installed_kiosk() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("installing a .deb needs root (CI runs as root)")
    deb = kiosk_deb()
    with dpkg_installed(deb):
        yield deb


class Session:
    """One user's graphical session: a home of their own, the agent's settings in it."""

    def __init__(self, display: str, port: int) -> None:
        self.user = pwd.getpwnam(SESSION_USER)
        # Not pytest's tmp_path: its parent folder is root's own (0700).
        self.home = Path(tempfile.mkdtemp(prefix="thaicard-kiosk-"))
        (self.home / "bin").mkdir()
        (self.home / "run").mkdir(mode=0o700)
        config = self.home / "config" / "thaicard-agent" / "config.json"
        config.parent.mkdir(parents=True)
        config.write_text(json.dumps({"port": port, "backend": "demo"}), encoding="utf-8")
        shim = self.home / "bin" / "chromium"
        shim.write_text(BROWSER_SHIM, encoding="utf-8")
        shim.chmod(0o755)
        for folder, _, files in os.walk(self.home):
            for name in [folder, *(os.path.join(folder, f) for f in files)]:
                os.chown(name, self.user.pw_uid, self.user.pw_gid)
        self.env = isolated_env(self.home)
        # pystray picks its backend as in a real session (isolated_env names "dummy").
        for name in ("DBUS_SESSION_BUS_ADDRESS", "WAYLAND_DISPLAY", "SUDO_USER",
                     "PYSTRAY_BACKEND"):
            self.env.pop(name, None)
        self.env.update(DISPLAY=display, XDG_RUNTIME_DIR=str(self.home / "run"),
                        USER=SESSION_USER, LOGNAME=SESSION_USER, LANG="C.UTF-8",
                        PATH=f"{self.home / 'bin'}:/usr/local/bin:/usr/bin:/bin")
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, command: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            proc = subprocess.Popen(command, env=self.env, cwd=self.home,
                                    user=self.user.pw_uid, group=self.user.pw_gid,
                                    extra_groups=[], stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def start_desktop(self, log: Path, limit: float = 60.0) -> None:
        """The window manager, first, as a desktop session starts it. Without one Chromium
        cannot go full screen: it keeps a 10 px black frame around the page."""
        wm = self.start(["openbox"], log)
        deadline = time.monotonic() + limit
        while "window id #" not in subprocess.run(
                ["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"], env=self.env,
                capture_output=True, text=True, timeout=30).stdout:
            if wm.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"openbox did not start: {log.read_text()}")
            time.sleep(0.1)

    def run(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, env=self.env, cwd=self.home, user=self.user.pw_uid,
                              group=self.user.pw_gid, extra_groups=[], capture_output=True,
                              text=True, timeout=120)

    def browser_pid(self) -> int | None:
        pid_file = self.home / "browser.pid"
        return int(pid_file.read_text()) if pid_file.exists() else None

    def close(self) -> None:
        pid = self.browser_pid()       # started by the kiosk command in a session of its own
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            end(proc, 20)
        shutil.rmtree(self.home, ignore_errors=True)


def demo_card(port: int, method: str) -> None:
    """Insert (POST) or pull (DELETE) the demo reader's card, as a local tool."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/demo/card", method=method,
                                     data=b"{}" if method == "POST" else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 202


async def state(page: Page, name: str, reason: str = "") -> None:
    await page.wait_for(f"document.body.dataset.state === {json.dumps(name)}"
                        + (f" && document.body.dataset.reason === {json.dumps(reason)}"
                           if reason else ""), timeout=45)


async def screen_matches_page(display: str, page: Page, name: str) -> Path:
    """The X server's whole screen, saved as ``name``, must be the page's own rendering: the
    kiosk window covers the screen and shows no browser frame."""
    OUT.mkdir(parents=True, exist_ok=True)
    page_shot = OUT / f"{name}.page.png"
    await page.screenshot(page_shot)
    screen_shot = OUT / f"{name}.png"
    subprocess.run(["import", "-window", "root", str(screen_shot)], check=True, timeout=30,
                   env={**os.environ, "DISPLAY": display})
    screen = Image.open(screen_shot).convert("RGB")
    rendered = Image.open(page_shot).convert("RGB")
    assert screen.size == rendered.size == SCREEN
    diff = ImageChops.difference(screen, rendered).convert("L").point(lambda v: v and 255)
    differing = diff.histogram()[255]
    assert differing < SCREEN[0] * SCREEN[1] // 1000, f"{name}: {differing} pixels differ"
    # A copy small enough for docs/images (the screens are a few flat colours and text).
    small = screen.quantize(colors=32, method=Image.Quantize.MEDIANCUT,
                            dither=Image.Dither.NONE)
    small.save(OUT / f"{name}.small.png", optimize=True)
    return screen_shot


async def test_kiosk_deb_opens_the_kiosk_page_full_screen_at_logon(installed_kiosk: Path
                                                                   ) -> None:
    deb = installed_kiosk
    entries = autostart_entries(deb)
    kiosk_entry = AUTOSTART + "thaicard-agent-kiosk.desktop"
    assert set(entries) == {AUTOSTART + "thaicard-agent.desktop", kiosk_entry}
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    port = free_port()
    with xvfb() as display:
        session = Session(display, port)
        try:
            session.start_desktop(OUT / "openbox.log")
            # The logon: every entry at once (the kiosk waits for the tray's agent itself;
            # GNOME's X-GNOME-Autostart-Delay is not waited for).
            started = {path: session.start(argv, OUT / f"{Path(path).stem}.log")
                       for path, argv in entries.items()}
            tray = started[AUTOSTART + "thaicard-agent.desktop"]
            status = status_when_up(port, tray, (OUT / "thaicard-agent.log").read_text,
                                     limit=90)
            assert status["backend"] == "demo"
            demo_card(port, "DELETE")         # the demo reader starts with a card in it
            # The admin's check on the PC (docs/admin.md): the agent answers on its port.
            doctor = session.run(["/usr/bin/thaicard-agent", "doctor", "--json", "--no-read"])
            verdicts = {c["check"]: c["verdict"] for c in json.loads(doctor.stdout)["checks"]}
            assert verdicts["port"] == "ok", doctor.stdout
            kiosk = started[kiosk_entry]
            assert kiosk.wait(90) == 0, (OUT / "thaicard-agent-kiosk.log").read_text()
            args = (session.home / "browser.args").read_text(encoding="utf-8").splitlines()
            url = f"http://127.0.0.1:{port}/kiosk"
            assert args[-1] == url and "--kiosk" in args
            profile = Path(next(a for a in args if a.startswith("--user-data-dir="))
                           .split("=", 1)[1])

            def gone() -> str | None:
                pid = session.browser_pid()
                if pid is not None and not Path(f"/proc/{pid}").exists():
                    return f"chromium {pid} exited"
                return None

            browser = Chromium(OUT, public_port=0, hosts=[])
            await browser.attach(profile, gone)
            try:
                await check_kiosk(browser, display, port, url, tray)
            finally:
                await browser.close()
        finally:
            session.close()

    # Removing the package takes the kiosk off the PC: no autostart entry is left.
    shipped = set(deb_files(deb))
    result = run(["dpkg", "-r", "thaicard-agent"], timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not deb_installed()
    assert not [p for p in shipped if p.startswith(AUTOSTART) and p != AUTOSTART
                and os.path.lexists(p)]
    assert not os.path.lexists("/opt/thaicard-agent")


async def check_kiosk(browser: Chromium, display: str, port: int, url: str,
                      tray: subprocess.Popen[bytes]) -> None:
    page = await browser.page_showing(url)
    await state(page, "idle")
    await page.wait_for("document.getElementById('connection').textContent === ''")
    assert IDLE_TEXT in await page.evaluate("document.body.innerText")
    # What docs/admin.md has the admin look at: the page is one of the agent's event clients
    # (the tray is the other).
    assert get_status(port)["events"]["clients"] >= 2
    # Kiosk mode: the browser's window is full screen and the page fills it.
    window = await browser.send("Browser.getWindowForTarget", {"targetId": page.target})
    assert window["bounds"]["windowState"] == "fullscreen"
    assert await page.evaluate("[innerWidth, innerHeight, screen.width, screen.height]") == [
        *SCREEN, *SCREEN]
    found = wait_for_window(display, "Confirm your visit", tray)
    geometry = subprocess.run(["xdotool", "getwindowgeometry", "--shell", found],
                              env={**os.environ, "DISPLAY": display}, capture_output=True,
                              text=True, timeout=30, check=True).stdout
    assert {"X=0", "Y=0", f"WIDTH={SCREEN[0]}", f"HEIGHT={SCREEN[1]}"} <= set(
        geometry.split()), geometry
    await screen_matches_page(display, page, "kiosk-logon-idle")

    # A card with no visit waiting: the staff screen (no photo is shown on it).
    demo_card(port, "POST")
    await state(page, "staff", "none")
    await screen_matches_page(display, page, "kiosk-logon-no-visit")
    # The photo follows the text fields within milliseconds (long arrived by now): a screen
    # without a visit does not keep it.
    assert await page.evaluate("!document.getElementById('photo').getAttribute('src')")
    demo_card(port, "DELETE")
    await state(page, "idle")

    # A click on the X screen where the page has its language button reaches the page.
    x, y = await page.evaluate("(() => { const r = document.getElementById('lang')"
                               ".getBoundingClientRect(); return [Math.round(r.x + r.width / 2),"
                               " Math.round(r.y + r.height / 2)]; })()")
    subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", "1"], check=True,
                   env={**os.environ, "DISPLAY": display}, timeout=30)
    await page.wait_for("document.body.dataset.lang === 'en'")
    assert "Please insert your ID card" in await page.evaluate("document.body.innerText")
    await screen_matches_page(display, page, "kiosk-logon-idle-en")
