"""A real tray icon under Xvfb with trayer as the tray host, the agent on its demo reader.

The card goes in and out through the tray's own menu (clicked with xdotool), and the
icon's pixels on screen must change with it. Screenshots are kept in
``test-output/tray/`` as CI artifacts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from testrig.ports import free_port
from testrig.processes import end, wait_for
from tests.installer_support import xvfb

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "test-output" / "tray"
TOOLS = ("Xvfb", "trayer", "xdotool", "import", "xdpyinfo")

pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS),
    reason=f"needs {', '.join(TOOLS)} (scripts/setup.sh test installs them)")

PANEL_GREY = "0xd8d8d8"          # the tray's background, as tray.app.XORG_BACKGROUND


class Desktop:
    def __init__(self, display: str, home: Path) -> None:
        self.display = display
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("THAICARD_", "LC_"))}
        self.env.update(DISPLAY=display, PYSTRAY_BACKEND="xorg", HOME=str(home),
                        XDG_CONFIG_HOME=str(home / "config"), XDG_STATE_HOME=str(home / "state"),
                        XDG_CACHE_HOME=str(home / "cache"), XDG_RUNTIME_DIR=str(home / "run"),
                        THAICARD_CONFIG_DIR=str(home / "agent-config"), LANG="en_US.UTF-8")
        self.env.pop("WAYLAND_DISPLAY", None)
        (home / "run").mkdir(parents=True, exist_ok=True)

    def x(self, *args: str) -> str:
        return subprocess.run(args, env=self.env, capture_output=True, text=True,
                              timeout=30).stdout.strip()

    def screenshot(self, name: str) -> Image.Image:
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{name}.png"
        subprocess.run(["import", "-window", "root", str(path)], env=self.env, check=True,
                       timeout=30)
        return Image.open(path).convert("RGB")

    def icon_window(self) -> str:
        found = self.x("xdotool", "search", "--classname", "^thaicard-agentSystemTrayIcon$")
        return found.splitlines()[0] if found else ""

    def geometry(self, window: str) -> tuple[int, int, int, int]:
        values = dict(line.split("=", 1) for line in
                      self.x("xdotool", "getwindowgeometry", "--shell", window).splitlines())
        return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])

    def title(self, window: str) -> str:
        return self.x("xdotool", "getwindowname", window)

    def menu_open(self) -> bool:
        return bool(self.x("xdotool", "search", "--onlyvisible", "--class", "^Menu$"))

    def keyboard_grabbed(self) -> bool:
        """Whether a client holds the keyboard grab (Tk's popup menu takes it once posted).

        Keys typed before that go to whatever had the focus, not to the menu. Probing with a
        grab of our own is safe: Tk retries its grab for a second if it finds one held.
        """
        from Xlib import X, display

        conn = display.Display(self.display)
        try:
            status = conn.screen().root.grab_keyboard(False, X.GrabModeAsync,
                                                      X.GrabModeAsync, X.CurrentTime)
            if status == X.GrabSuccess:
                conn.ungrab_keyboard(X.CurrentTime)
                conn.sync()
            return status == X.AlreadyGrabbed
        finally:
            conn.close()

    def has_focus(self, window: str) -> bool:
        """Whether the X input focus is on ``window`` or one of its child windows."""
        focus = self.x("xdotool", "getwindowfocus", "-f")
        tree = self.x("xwininfo", "-tree", "-id", window)
        ids = {int(window)} | {int(w.split()[0], 16) for w in tree.splitlines()
                               if w.strip().startswith("0x")}
        return focus.isdigit() and int(focus) in ids

    def icon_shows(self, window: str, name: str,
                   check: Callable[[Image.Image], bool]) -> Image.Image:
        """Screenshots until the icon's pixels pass ``check`` (it is redrawn after its title)."""
        return wait_for(lambda: (lambda crop: crop if check(crop) else None)(
            icon_crop(self, self.screenshot(name), window)), f"icon as expected in {name}")


def start_panel(desk: Desktop) -> subprocess.Popen[bytes]:
    """trayer, a panel with a notification area, once its panel window is up."""
    trayer = subprocess.Popen(
        ["trayer", "--edge", "top", "--align", "right", "--widthtype", "request",
         "--height", "34", "--transparent", "false", "--tint", PANEL_GREY,
         "--SetDockType", "true"], env=desk.env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: "panel" in desk.x("xwininfo", "-root", "-tree"), "trayer up")
    except BaseException:
        end(trayer)
        raise
    return trayer


@pytest.fixture
def bare_desktop(tmp_path: Path) -> Iterator[Desktop]:
    """A display with no panel yet (a logon: the tray and the panel start together)."""
    with xvfb("800x600x24") as display:
        yield Desktop(display, tmp_path)


@pytest.fixture
def desktop(bare_desktop: Desktop) -> Iterator[Desktop]:
    trayer = start_panel(bare_desktop)
    try:
        yield bare_desktop
    finally:
        end(trayer)


def start(desk: Desktop, *args: str, lang: str = "en_US.UTF-8") -> subprocess.Popen[str]:
    env = dict(desk.env, LANG=lang)
    log = open(desk.home / f"{args[0]}.log", "a")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "agent", *args], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, text=True)


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def icon_crop(desk: Desktop, shot: Image.Image, window: str) -> Image.Image:
    x, y, w, h = desk.geometry(window)
    return shot.crop((x, y, x + w, y + h))


def colourful(img: Image.Image) -> float:
    """Share of pixels that are clearly coloured (not the grey panel, not black/white)."""
    hsv = img.convert("HSV")
    sat = hsv.getchannel("S").point(lambda s: 255 if s > 80 else 0)
    return sat.histogram()[255] / (img.width * img.height)


def centre_is_panel(img: Image.Image) -> bool:
    r, g, b = img.getpixel((img.width // 2, img.height * 45 // 100))
    return abs(r - 0xD8) < 20 and abs(g - 0xD8) < 20 and abs(b - 0xD8) < 20


def open_menu(desk: Desktop, window: str) -> None:
    x, y, w, h = desk.geometry(window)
    assert not desk.keyboard_grabbed()        # so the wait below waits for the menu's grab
    desk.x("xdotool", "mousemove", str(x + w // 2), str(y + h // 2), "click", "1")
    wait_for(desk.menu_open, "popup menu shown")
    wait_for(desk.keyboard_grabbed, "popup menu holds the keyboard")


def choose_from_bottom(desk: Desktop, steps: int) -> None:
    """Walk up from the menu's last item with the keyboard (Tk menus wrap around)."""
    desk.x("xdotool", "key", *(["Up"] * steps), "Return")
    wait_for(lambda: not desk.menu_open(), "popup menu closed")


def steps_to(key: str) -> int:
    """How many Up presses from the bottom reach ``key`` in the top-level menu."""
    from tray.menu import MenuView, build_menu
    from tray.state import TrayState

    class Nothing:
        def __getattr__(self, name: str) -> object:
            return lambda *a: None

    items = build_menu(TrayState(), MenuView(lang="en", autostart=False, demo_card_in=True),
                       Nothing())
    keys = [i.key for i in items if not i.is_separator]
    return len(keys) - keys.index(key)


def test_icon_follows_a_demo_card_in_and_out(desktop: Desktop) -> None:
    port = free_port()
    tray = start(desktop, "tray", "--demo", "--port", str(port))
    try:
        window = str(wait_for(desktop.icon_window, "icon docked in the tray"))
        wait_for(lambda: "Card in the reader" in desktop.title(window), "card shown")
        card_in = desktop.icon_shows(window, "1-card-in",   # a solid, coloured card
                                     lambda i: not centre_is_panel(i) and colourful(i) > 0.3)

        open_menu(desktop, window)
        desktop.screenshot("2-menu")
        choose_from_bottom(desktop, steps_to("demo"))        # "Demo: remove the card"
        wait_for(lambda: "Ready" in desktop.title(window), "idle shown")
        card_out = desktop.icon_shows(window, "3-card-out", centre_is_panel)   # an empty slot
        diff = ImageChops.difference(card_in, card_out).convert("L").point(
            lambda p: 255 if p > 48 else 0)
        assert diff.histogram()[255] > card_in.width * card_in.height // 5

        open_menu(desktop, window)
        choose_from_bottom(desktop, steps_to("demo"))        # "Demo: insert a card"
        wait_for(lambda: "Card in the reader" in desktop.title(window), "card back")
        desktop.icon_shows(window, "4-card-in-again", lambda i: not centre_is_panel(i))
    except AssertionError as exc:      # what the tray did is in its log
        log = (desktop.home / "tray.log").read_text(errors="replace")[-3000:]
        now = desktop.x("xdotool", "search", "--classname", "^thaicard-agentSystemTrayIcon$")
        names = {w: desktop.title(w) for w in now.split()}
        raise AssertionError(f"{exc}\nicon window {window}; now {names}\n"
                             f"--- tray.log (end) ---\n{log}") from None
    finally:
        code = stop(tray)
    assert code == 0, (desktop.home / "tray.log").read_text()
    log = (desktop.home / "tray.log").read_text()
    assert "1999900000005" not in log and "Cardreader" not in log


def test_a_tray_started_before_the_panel_shows_its_icon_once_the_panel_is_up(
        bare_desktop: Desktop) -> None:
    """At logon the tray and the panel start together: the tray may ask for a notification
    area before there is one. Its icon must appear when the panel does, without a change of
    the card's state (pystray alone asks again only when the image changes)."""
    desk, port = bare_desktop, free_port()
    tray = start(desk, "tray", "--demo", "--port", str(port))
    trayer = None
    try:
        wait_for(lambda: "no tray host" in (desk.home / "tray.log").read_text(errors="replace"),
                 "the tray saying it has no notification area yet")
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, "agent up")
        trayer = start_panel(desk)
        window = str(wait_for(desk.icon_window, "icon window"))
        desk.icon_shows(window, "0-late-panel", lambda i: i.width >= 16
                        and not centre_is_panel(i) and colourful(i) > 0.3)
    except AssertionError as exc:
        log = (desk.home / "tray.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"{exc}\n--- tray.log (end) ---\n{log}") from None
    finally:
        code = stop(tray)
        if trayer is not None:
            end(trayer)
    assert code == 0


def test_tray_for_a_separate_agent_in_thai_goes_offline_with_it(desktop: Desktop) -> None:
    port = free_port()
    agent = start(desktop, "serve", "--demo", "--port", str(port))
    tray = None
    try:
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, "agent up")
        tray = start(desktop, "tray", "--connect", f"http://127.0.0.1:{port}",
                     lang="th_TH.UTF-8")
        window = str(wait_for(desktop.icon_window, "icon docked in the tray"))
        wait_for(lambda: "Card in the reader" in desktop.title(window), "card shown")
        desktop.icon_shows(window, "5-connected", lambda i: colourful(i) > 0.3)
        open_menu(desktop, window)
        desktop.screenshot("6-menu-thai")
        desktop.x("xdotool", "key", "Escape")
        wait_for(lambda: not desktop.menu_open(), "menu closed")

        assert stop(agent) == 0
        wait_for(lambda: "not reachable" in desktop.title(window), "offline shown")
        desktop.icon_shows(window, "7-agent-gone", lambda i: colourful(i) < 0.05)  # grey sign
        assert tray.poll() is None                 # the tray waits for the agent to return
    finally:
        if agent.poll() is None:
            stop(agent)
        if tray is not None:
            assert stop(tray) == 0


def test_settings_dialog_as_a_person_uses_it(desktop: Desktop) -> None:
    """The Tk settings window: type a port, press Enter; the change comes back as JSON."""
    env = dict(desktop.env)
    config = desktop.home / "agent-config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.json").write_text('{"allowedOrigins": ["https://his.example.go.th"]}')
    proc = subprocess.Popen([sys.executable, "-m", "tray.popup", "settings", "--lang", "en"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        window = str(wait_for(lambda: desktop.x("xdotool", "search", "--name", "^Settings"),
                              "settings window")).splitlines()[0]
        # The dialog focuses its port field itself (focus_force) 50 ms after it shows: keys
        # typed before that are lost, so type only once that focus has arrived.
        wait_for(lambda: desktop.has_focus(window), "settings dialog focused")
        desktop.x("xdotool", "type", "--delay", "30", "8190")
        desktop.screenshot("8-settings")
        desktop.x("xdotool", "key", "Return")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert json.loads(out) == {"port": 8190}         # the origins were left as they were
