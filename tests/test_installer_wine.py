"""The Windows bundle and MSI, built under Wine and run under it (private prefix).

Built once per test run by installer/windows/build_under_wine.py (tests/installer_support.py):
the official Windows embeddable CPython, Windows wheels, the same PyInstaller spec as every
other build, the MSI from build_msi.py. What Wine cannot stand for (real WinSCard, UAC, ICE
validation, signing, a second user's logon) is listed in installer/README.md.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testrig.nhso_support import wait_for
from testrig.ports import free_port
from tests.installer_support import (
    ROOT,
    get_status,
    package_version,
    pyz_modules,
    run_dir,
    status_when_up,
    wait_for_window,
    wine_build,
    xvfb,
)
from tests.test_tray_xvfb import steps_to

sys.path.insert(0, str(ROOT / "installer" / "windows"))
import build_msi
import build_under_wine as bw
import check_msi

pytestmark = [
    pytest.mark.timeout(1200),      # the first test pays for the build under Wine
    pytest.mark.skipif(not all(shutil.which(t) for t in ("wine", "wineserver", "wixl",
                                                         "msibuild", "Xvfb", "xdotool")),
                       reason="needs wine, wixl/msitools, Xvfb, xdotool "
                              "(scripts/setup.sh test)"),
]

HIS = "https://his.example.go.th"
INSTALL_DIR = ("Program Files", "Thai Card Agent")


@pytest.fixture(scope="module")
def built() -> Iterator[dict[str, Path]]:
    parts = wine_build()
    yield parts
    bw.stop_wine(parts["prefix"])
    shutil.rmtree(parts["prefix"], ignore_errors=True)     # ~700 MB in the temporary folder


def test_the_wine_prefix_is_not_in_the_source_tree(built):
    """Its dosdevices/z: links to /: inside the checkout, `pip install -e .` walked the machine."""
    assert (built["prefix"] / "dosdevices" / "z:").is_symlink()
    assert ROOT not in built["prefix"].parents


@pytest.fixture(scope="module")
def prefix(built: dict[str, Path]) -> Path:
    return built["prefix"]


def agent_exe(built: dict[str, Path]) -> str:
    return str(built["bundle"] / "thaicard-agent.exe")


def windows(prefix: Path, *args: str, input_text: str | None = None,
            **env: str) -> subprocess.CompletedProcess[str]:
    return bw.wine(prefix, list(args), check=False, input_text=input_text, **env)


class Served:
    """A Windows program serving under Wine, its output kept in a log file."""

    def __init__(self, prefix: Path, args: list[str], port: int, log: Path,
                 **env: str) -> None:
        self.port, self.log = port, log
        # A pipe, copied to the log: with a file for stdout Python under Wine cannot start.
        self.proc = subprocess.Popen(["wine", *args], env=bw.wine_env(prefix, **env),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self._copy = threading.Thread(target=self._keep, daemon=True)
        self._copy.start()

    def _keep(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log, "wb") as out:
            for line in self.proc.stdout:
                out.write(line)
                out.flush()

    def status(self) -> dict[str, Any]:
        def output() -> str:
            self._copy.join(30)           # all it printed, once it has ended
            return self.output()
        return status_when_up(self.port, self.proc, output, limit=180)  # Wine's first start

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._copy.join(30)


def serve(prefix: Path, exe: str, name: str, *args: str, port: int | None = None) -> Served:
    port = port or free_port()
    flags = [] if "--no-port" in args else ["--port", str(port)]
    rest = [a for a in args if a != "--no-port"]
    return Served(prefix, [exe, "serve", *flags, *rest], port, run_dir() / f"wine-{name}.log")


def get(port: int, path: str, origin: str | None = None) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Origin": origin} if origin else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


# -- the bundle ---------------------------------------------------------------------------------
def test_windows_exe_prints_the_package_version(built, prefix):
    out = windows(prefix, agent_exe(built), "--version")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == f"thaicard-agent {package_version()}"
    assert (built["bundle"] / "thaicard-agent-tray.exe").is_file()


def test_windows_bundle_has_the_windows_backends(built):
    """Loaded by name at run time, so PyInstaller must be told: the win32 tray, the
    Credential Manager keyring, the event log handler, the tray's Tk windows."""
    modules = pyz_modules(built["bundle"] / "thaicard-agent.exe")
    for name in ("pystray._win32", "keyring.backends.Windows", "win32evtlogutil",
                 "tray.popup", "tray.cli", "tkinter", "agent.server_cli", "agent.nhso.cli",
                 "agent.osroom.windows", "smartcard.scard"):
        assert name in modules, f"{name} is not in the Windows bundle"
    assert not {m for m in modules if m.split(".")[0] == "keyrings"}
    assert (pyz_modules(built["bundle"] / "thaicard-agent-tray.exe") == modules)


def test_windows_demo_read_is_the_card_linux_reads(built, prefix):
    out = windows(prefix, agent_exe(built), "read", "--demo", "--no-photo")
    assert out.returncode == 0, out.stdout + out.stderr
    card = json.loads(out.stdout)            # Thai text through a pipe: UTF-8 mode
    source = json.loads(subprocess.run([sys.executable, "-m", "agent", "read", "--demo",
                                        "--no-photo"], capture_output=True, text=True,
                                       check=True, cwd=ROOT).stdout)
    for reads in (card, source):
        for key in ("text_ms", "photo_ms", "total_ms"):
            reads["read"].pop(key)
    assert card == source
    assert card["name_th"]["full"] == "นายทดสอบ ระบบอ่านบัตร"


def test_windows_agent_serves_compat_and_v1_to_linux(built, prefix):
    agent = serve(prefix, agent_exe(built), "serve-demo", "--demo")
    try:
        status = agent.status()
        assert status["backend"] == "demo" and status["version"] == package_version()
        code, _, card = get(agent.port, "/api/smartcard/read")
        assert code == 200, card
        assert card["pid"] == "1999900000005"
        code, _, v1 = get(agent.port, "/v1/card")
        assert code == 200 and v1["card"]["citizen_id"] == "1999900000005"
    finally:
        agent.stop()


def test_wine_pcsc_stub_is_reported_unavailable_and_the_agent_keeps_serving(built, prefix):
    """Wine's winscard.dll is a stub: the real PC/SC path must say so and keep serving."""
    agent = serve(prefix, agent_exe(built), "serve-pcsc", "--backend", "pcsc")
    try:
        pcsc = agent.status()["pcsc"]
        assert pcsc["state"] == "unavailable" and pcsc["error"] == "pcsc_unavailable", pcsc
        assert pcsc["detail"].startswith("SCardEstablishContext: SCARD_"), pcsc
        code, _, body = get(agent.port, "/api/smartcard/read")
        assert code == 418 and "pcsc_unavailable" in json.dumps(body)
        assert agent.status()["pcsc"]["state"] == "unavailable"      # still serving
    finally:
        agent.stop()
    assert "PC/SC unavailable: SCardEstablishContext" in agent.output()


def _agent_credentials(built: dict[str, Path], prefix: Path) -> list[str]:
    """The agent's entries in the Windows Credential Manager, asked through the Win32 API."""
    out = windows(prefix, str(built["python"]), "-c",
                  "import json, pywintypes, win32cred\n"
                  "try: found = win32cred.CredEnumerate(None, 0)\n"
                  "except pywintypes.error: found = []\n"      # ERROR_NOT_FOUND: none at all
                  "print(json.dumps([c['TargetName'] for c in found]))")
    assert out.returncode == 0, out.stdout + out.stderr
    return [name for name in json.loads(out.stdout) if "thaicard-agent" in name]


def test_token_set_status_clear_through_the_credential_manager(built, prefix):
    exe = agent_exe(built)
    token = "0123456789abcdef0123456789abcdef"
    out = windows(prefix, exe, "token", "set", "--hcode", "12345", input_text=token + "\n")
    assert out.returncode == 0, out.stdout + out.stderr
    assert _agent_credentials(built, prefix), "no credential in the Credential Manager"
    out = windows(prefix, exe, "token", "status")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "12345" in out.stdout and token not in out.stdout      # masked
    assert "WinVaultKeyring" in out.stdout, out.stdout
    out = windows(prefix, exe, "token", "clear")
    assert out.returncode == 0, out.stdout + out.stderr
    out = windows(prefix, exe, "token", "status")
    assert out.returncode != 0 and "No NHSO token is stored" in out.stdout
    assert _agent_credentials(built, prefix) == []


def test_windows_tray_opens_its_settings_dialog(built, prefix, tmp_path):
    """The tray's Tk dialog from the Windows bundle (tkinter and Tcl/Tk travel with it)."""
    with xvfb() as display:
        dialog = Served(prefix, [agent_exe(built), "tray-popup", "settings", "--lang", "en"],
                        0, tmp_path / "settings.log", DISPLAY=display)
        try:
            wait_for_window(display, "^Settings", dialog.proc, limit=180)
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{dialog.output()}") from None
        finally:
            dialog.stop()
            bw.stop_wine(prefix)          # Wine's own windows hold the X display


def _x(display: str, *args: str) -> str:
    return subprocess.run(args, env={**os.environ, "DISPLAY": display}, capture_output=True,
                          text=True, timeout=30).stdout.strip()


def _geometry(display: str, window: str) -> tuple[int, int, int, int]:
    values = dict(line.split("=", 1) for line in _x(
        display, "xdotool", "getwindowgeometry", "--shell", window).splitlines())
    return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])


def _right_click_until_the_menu_shows(display: str, x: int,
                                      y: int) -> tuple[int, int, int, int]:
    """The tray area shows before the icon is in it: a click may land on nothing, so it is
    repeated every 5 s until the program shows a window of a menu's size (12 items); that
    window's geometry."""
    def menu() -> tuple[int, int, int, int] | None:
        found = [_geometry(display, w) for w in _x(
            display, "xdotool", "search", "--onlyvisible", "--class",
            "^thaicard-agent-tray.exe$").split()]
        return next((g for g in found if g[3] >= 150), None)

    deadline = time.monotonic() + 120
    while True:
        _x(display, "xdotool", "mousemove", str(x), str(y), "click", "3")
        clicked = time.monotonic()
        while time.monotonic() - clicked < 5:
            if (shown := menu()) is not None:
                return shown
            time.sleep(0.3)
        if time.monotonic() > deadline:
            raise AssertionError("the tray's menu never showed")


def _highlight(display: str, menu: tuple[int, int, int, int]) -> int | None:
    """The y of the menu's highlighted item (a blue bar at its left edge), or None."""
    from PIL import Image

    shot = subprocess.run(["import", "-window", "root", "png:-"],
                          env={**os.environ, "DISPLAY": display}, capture_output=True,
                          timeout=30).stdout
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    x, y, _, height = menu
    rows = [row for row in range(y, y + height)
            if (lambda r, g, b: b > 200 and r < 120)(*image.getpixel((x + 3, row)))]
    return (rows[0] + rows[-1]) // 2 if rows else None


def _choose_by_pointer(display: str, menu: tuple[int, int, int, int], steps: int) -> None:
    """Hover up from the menu's last item, counting the items the highlight passes, and
    click the ``steps``-th (1 = the last). Where the pointer is is state, not an event that
    can be lost (Wine's menu drops key presses sent before it takes the keyboard)."""
    x, y, width, height = menu
    seen: list[int] = []
    pointer = y + height - 4
    while len(seen) < steps:
        if pointer < y:
            raise AssertionError(f"only {len(seen)} menu items found")
        deadline = time.monotonic() + 5
        while True:
            for jiggle in (1, 0):       # a move to where the pointer is makes no motion
                _x(display, "xdotool", "mousemove", str(x + width // 2), str(pointer + jiggle))
            bar = _highlight(display, menu)
            if (bar is not None and abs(bar - pointer) <= 12) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if bar is not None and abs(bar - pointer) <= 12 and (not seen or bar != seen[-1]):
            seen.append(bar)
            if len(seen) == steps:
                break
        pointer -= 4
    _x(display, "xdotool", "click", "1")


def test_windows_tray_icon_menu_takes_the_demo_card_out(built, prefix, tmp_path, monkeypatch):
    """thaicard-agent-tray.exe under Xvfb: its icon in Wine's notification area, its win32
    menu on a right click, and a menu item acting on the agent it runs."""
    # As in the whole suite, where the tray unit tests set this for their own process: the
    # Windows program must not inherit it (it got pystray's dummy backend: no icon, no menu).
    monkeypatch.setenv("PYSTRAY_BACKEND", "dummy")
    port = free_port()
    with xvfb() as display:
        tray = Served(prefix, [str(built["bundle"] / "thaicard-agent-tray.exe"), "tray",
                               "--demo", "--port", str(port)], port, tmp_path / "tray.log",
                      DISPLAY=display)
        try:
            assert tray.status()["readers"][0]["present"] is True
            area = wait_for_window(display, "^Wine System Tray$", tray.proc)
            # The tray rebuilds its menu once it has the claim counts; a win32 menu open
            # while that happens stops answering (pystray swaps the menu under it).
            wait_for(lambda: "/v1/claims?status=failed" in tray.output(),
                   "the tray's first claim counts")
            x, y, _, _ = _geometry(display, area)
            menu = _right_click_until_the_menu_shows(display, x + 10, y + 10)  # first icon
            _choose_by_pointer(display, menu, steps_to("demo"))
            wait_for(lambda: get_status(port)["readers"][0]["present"] is False,
                   "the card taken out through the menu")
        except AssertionError as exc:
            shot = run_dir() / "wine-tray-menu.png"          # what the screen showed
            subprocess.run(["import", "-window", "root", str(shot)],
                           env={**os.environ, "DISPLAY": display}, timeout=30, check=False)
            raise AssertionError(f"{exc} (screen: {shot}):\n{tray.output()}") from None
        finally:
            tray.stop()
            bw.stop_wine(prefix)          # Wine's own windows hold the X display


# -- the MSI ------------------------------------------------------------------------------------
OUR_KEYS = (check_msi.POLICY_KEY, check_msi.RUN_KEY, r"Software\ThaiCardAgent",
            *check_msi.BROWSER_KEYS, check_msi.FIREFOX_KEY)
UNINSTALL_KEY = r"Software\Microsoft\Windows\CurrentVersion\Uninstall"
INSTALLED_EXE = "C:\\Program Files\\Thai Card Agent\\thaicard-agent.exe"


def reg_query(prefix: Path, *keys: str) -> dict[str, dict[str, tuple[str, str]]]:
    """``{key: {name: (type, data)}}`` of HKLM keys (and their subkeys), read by Wine's
    reg.exe, all in one Windows process (each Wine start costs seconds)."""
    assert not any(" " in key for key in keys)     # unquoted: Wine re-quotes cmd's line
    script = " & ".join(f"reg query HKLM\\{key} /s" for key in keys)
    out = windows(prefix, "cmd", "/c", script).stdout
    found: dict[str, dict[str, tuple[str, str]]] = {}
    key = None
    for line in out.splitlines():
        line = line.rstrip("\r")
        if line.startswith("HKEY_LOCAL_MACHINE\\"):
            key = line.removeprefix("HKEY_LOCAL_MACHINE\\")
        elif key and (m := re.match(r"^ {4}(\S.*?) {4}(REG_\w+) {4}(.*)$", line)):
            found.setdefault(key, {})[m.group(1)] = (m.group(2), m.group(3).rstrip())
    return found


def ours(prefix: Path) -> dict[str, dict[str, tuple[str, str]]]:
    """Every registry value the MSI writes, where it is now (others' values left out)."""
    found = reg_query(prefix, check_msi.POLICY_KEY, r"Software\Policies\Google\Chrome",
                      r"Software\Policies\Microsoft\Edge",
                      r"Software\Policies\Mozilla\Firefox", check_msi.RUN_KEY,
                      r"Software\ThaiCardAgent")
    mine = {}
    for key in OUR_KEYS:
        values = found.get(key, {})
        if key == check_msi.RUN_KEY:
            values = {k: v for k, v in values.items()
                      if k in ("ThaiCardAgent", "ThaiCardAgentKiosk")}
        elif key in check_msi.BROWSER_KEYS:
            values = {k: v for k, v in values.items() if k.startswith("818900")}
        if values:
            mine[key] = values
    return mine


def products(prefix: Path) -> list[str]:
    """DisplayVersion of every "Thai Card Agent" in Programs and Features."""
    return [values["DisplayVersion"][1]
            for values in reg_query(prefix, UNINSTALL_KEY).values()
            if values.get("DisplayName", ("", ""))[1] == "Thai Card Agent"]


def installed_files(prefix: Path) -> dict[str, bytes]:
    base = prefix / "drive_c" / Path(*INSTALL_DIR)
    return {p.relative_to(base).as_posix(): p.read_bytes()
            for p in sorted(base.rglob("*")) if p.is_file()} if base.exists() else {}


def shortcuts(prefix: Path) -> list[Path]:
    return list((prefix / "drive_c").rglob("Thai Card Agent.lnk"))


def msiexec(prefix: Path, *args: str, log: str) -> None:
    out = windows(prefix, "msiexec", *args, "/qn", "/l*v", bw.win_path(run_dir() / log))
    assert out.returncode == 0, (out.stdout + out.stderr + (run_dir() / log).read_text(
        encoding="utf-16", errors="replace")[-3000:])


NEWER = "0.99.0"
DEPLOYMENT = ("ORIGIN2=" + HIS, "AUTOSTART=1", "BROWSER_POLICIES=1", "KIOSK=1")


@pytest.fixture(scope="class")
def install(built: dict[str, Path], prefix: Path) -> Iterator[dict[str, Any]]:
    """The MSI installed with deployment properties, and a newer one to upgrade to."""
    port = free_port()
    newer = build_msi.build_msi(built["bundle"], run_dir() / "thaicard-agent-newer.msi",
                                version=NEWER, work=run_dir() / "msi-work-newer",
                                icon=built["icon"])
    msiexec(prefix, "/i", bw.win_path(built["msi"]), f"PORT={port}", *DEPLOYMENT,
            log="msi-install.log")
    yield {"port": port, "props": (f"PORT={port}", *DEPLOYMENT), "newer": newer}
    for msi in (newer, built["msi"]):         # a failed test may have left either
        if installed_files(prefix):
            windows(prefix, "msiexec", "/x", bw.win_path(msi), "/qn")


class TestMsiUnderWine:
    """Install with properties, check, run, upgrade over the running agent, uninstall: in
    this order, in one prefix (the tests before it run without the MSI's policy)."""

    def test_files_are_the_payload(self, built, prefix, install):
        payload = {p.relative_to(built["bundle"]).as_posix(): p.read_bytes()
                   for p in sorted(built["bundle"].rglob("*")) if p.is_file()}
        policy_dir = ROOT / "installer" / "windows" / "policy"
        payload |= {"PolicyDefinitions/" + p.relative_to(policy_dir).as_posix(): p.read_bytes()
                    for p in sorted(policy_dir.rglob("*")) if p.is_file()}
        installed = installed_files(prefix)
        assert sorted(installed) == sorted(payload)
        assert [n for n in payload if installed[n] != payload[n]] == []
        assert len(shortcuts(prefix)) == 1

    def test_registry_holds_what_the_admin_guide_promises(self, prefix, install):
        found = ours(prefix)
        target = "C:\\Program Files\\Thai Card Agent\\"
        assert found[check_msi.POLICY_KEY]["Port"] == ("REG_DWORD", hex(install["port"]))
        kind, origins = found[check_msi.POLICY_KEY]["AllowedOrigins"]
        assert kind == "REG_SZ" and origins.split() == [check_msi.NHSO_AUTHEN_ORIGIN, HIS]
        assert set(found[check_msi.POLICY_KEY]) == {"Port", "AllowedOrigins"}
        assert found[check_msi.RUN_KEY] == {
            "ThaiCardAgent": ("REG_SZ", f'"{target}thaicard-agent-tray.exe" tray'),
            "ThaiCardAgentKiosk": ("REG_SZ", f'"{target}thaicard-agent-tray.exe" kiosk')}
        assert found[r"Software\ThaiCardAgent"]["InstallDir"] == ("REG_SZ", target)
        for key in check_msi.BROWSER_KEYS:
            assert found[key] == {"8189001": ("REG_SZ", check_msi.NHSO_AUTHEN_ORIGIN),
                                  "8189002": ("REG_SZ", HIS)}, key
        # Firefox lists host names: the NHSO page's by default (FIREFOX_DOMAIN1).
        assert found[check_msi.FIREFOX_KEY] == {"1": ("REG_SZ", check_msi.NHSO_AUTHEN_HOST)}

    def test_installed_agent_obeys_the_policy_until_an_upgrade_stops_it(self, prefix,
                                                                       install):
        port = install["port"]
        agent = serve(prefix, INSTALLED_EXE, "installed", "--demo", "--no-port", port=port)
        try:
            status = agent.status()            # on the policy's port, not the default
            assert status["config"]["port"] == port
            assert HIS in status["config"]["allowedOrigins"]
            code, headers, _ = get(port, "/api/smartcard/read", origin=HIS)
            assert code == 200 and headers.get("Access-Control-Allow-Origin") == HIS
            code, _, _ = get(port, "/api/smartcard/read", origin="https://evil.example")
            assert code == 403
            # MajorUpgrade over the running agent, deployed with the same properties but
            # without KIOSK=1 (docs/admin.md: how a kiosk PC turns back into a plain one).
            msiexec(prefix, "/i", bw.win_path(install["newer"]),
                    *(p for p in install["props"] if p != "KIOSK=1"), log="msi-upgrade.log")
            agent.proc.wait(120)    # StopRunningAgent ended it (TimeoutExpired: it did not)
        finally:
            agent.stop()
        assert products(prefix) == [NEWER]
        found = ours(prefix)
        assert found[r"Software\ThaiCardAgent"]["Version"] == ("REG_SZ", NEWER)
        assert found[check_msi.POLICY_KEY]["Port"] == ("REG_DWORD", hex(port))
        assert set(found[check_msi.RUN_KEY]) == {"ThaiCardAgent"}

    def test_uninstall_leaves_no_file_value_or_shortcut(self, prefix, install):
        msiexec(prefix, "/x", bw.win_path(install["newer"]), log="msi-uninstall.log")
        left = {"files": sorted(installed_files(prefix)), "registry": ours(prefix),
                "shortcuts": [str(p) for p in shortcuts(prefix)], "products": products(prefix)}
        assert left == {"files": [], "registry": {}, "shortcuts": [], "products": []}
