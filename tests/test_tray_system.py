"""Start at login, one instance per session, settings file, and the headless fallback."""

from __future__ import annotations

import json
import os
import plistlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent.config import ConfigInvalid
from tray.autostart import LaunchAgentAutostart, RegistryRunAutostart, XdgAutostart, tray_command
from tray.prefs import TrayPrefs
from tray.settings_file import save_user_settings
from tray.single import AlreadyRunning, InstanceLock

ROOT = Path(__file__).resolve().parents[1]
CMD = ["/opt/thaicard-agent/thaicard-agent", "tray"]


def test_xdg_user_toggle_overrides_the_system_entry(tmp_path: Path) -> None:
    system = tmp_path / "etc" / "autostart" / "thaicard-agent.desktop"
    auto = XdgAutostart(CMD, tmp_path / "home", [tmp_path / "etc"])
    assert not auto.enabled()
    system.parent.mkdir(parents=True)
    system.write_text("[Desktop Entry]\nType=Application\nExec=thaicard-agent tray\n")
    assert auto.enabled()                     # the installer's entry counts
    auto.set(False)
    assert "Hidden=true" in auto.user_file.read_text()
    assert not auto.enabled()
    auto.set(True)
    assert auto.enabled()
    text = auto.user_file.read_text()
    assert "Exec=/opt/thaicard-agent/thaicard-agent tray" in text and "Hidden" not in text


def test_launch_agent_plist(tmp_path: Path) -> None:
    auto = LaunchAgentAutostart(CMD, tmp_path / "LaunchAgents")
    assert not auto.enabled()
    auto.set(True)
    data = plistlib.loads(auto.file.read_bytes())
    assert data["ProgramArguments"] == CMD and data["RunAtLoad"] is True
    assert data["LimitLoadToSessionType"] == "Aqua"
    assert auto.enabled()
    auto.set(False)
    assert not auto.file.exists() and not auto.enabled()


class FakeWinreg:
    """The few ``winreg`` calls used, over a dict (Windows is not available in CI)."""

    HKEY_CURRENT_USER = "HKCU"
    REG_SZ = 1

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], dict[str, Any]] = {}

    class _Key:
        def __init__(self, values: dict[str, Any]) -> None:
            self.values = values

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    def OpenKey(self, root: str, path: str) -> Any:
        if (root, path) not in self.keys:
            raise FileNotFoundError(path)
        return self._Key(self.keys[(root, path)])

    def CreateKey(self, root: str, path: str) -> Any:
        return self._Key(self.keys.setdefault((root, path), {}))

    def QueryValueEx(self, key: Any, name: str) -> tuple[Any, int]:
        if name not in key.values:
            raise FileNotFoundError(name)
        return key.values[name], self.REG_SZ

    def SetValueEx(self, key: Any, name: str, _r: int, _t: int, value: Any) -> None:
        key.values[name] = value

    def DeleteValue(self, key: Any, name: str) -> None:
        if name not in key.values:
            raise FileNotFoundError(name)
        del key.values[name]


def test_registry_run_value() -> None:
    reg = FakeWinreg()
    auto = RegistryRunAutostart([r"C:\Program Files\Thai Card Agent\thaicard-agent.exe", "tray"],
                                reg)
    assert not auto.enabled()
    auto.set(True)
    value = reg.keys[("HKCU", r"Software\Microsoft\Windows\CurrentVersion\Run")]["ThaiCardAgent"]
    assert value == r'"C:\Program Files\Thai Card Agent\thaicard-agent.exe" tray'
    assert auto.enabled()
    auto.set(False)
    auto.set(False)                       # twice: no error
    assert not auto.enabled()


def test_tray_command_points_at_this_install() -> None:
    cmd = tray_command()
    assert cmd[-1] == "tray"
    assert Path(cmd[0]).exists()


def test_instance_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    path = tmp_path / "tray.lock"
    with InstanceLock(path):
        with pytest.raises(AlreadyRunning):
            InstanceLock(path).acquire()
        # Another process sees it too.
        code = ("import sys; from pathlib import Path; from tray.single import *\n"
                f"try:\n InstanceLock(Path({str(path)!r})).acquire()\n"
                "except AlreadyRunning:\n sys.exit(3)\n")
        assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 3
    InstanceLock(path).acquire().release()


def test_prefs_round_trip_and_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "tray.json"
    assert TrayPrefs.load(path).language == "auto"
    TrayPrefs(language="th").save(path)
    assert TrayPrefs.load(path).language == "th"
    path.write_text("{not json")
    assert TrayPrefs.load(path).language == "auto"
    path.write_text(json.dumps({"language": "fr"}))
    assert TrayPrefs.load(path).language == "auto"


def test_settings_file_keeps_other_keys_and_validates(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"readPhoto": False}))
    save_user_settings({"port": 8190}, path=path)
    assert json.loads(path.read_text()) == {"readPhoto": False, "port": 8190}
    with pytest.raises(ConfigInvalid):
        save_user_settings({"port": 70000}, path=path)
    with pytest.raises(ConfigInvalid):
        save_user_settings({"readPhoto": True}, path=path)       # not editable here
    with pytest.raises(ConfigInvalid):
        save_user_settings({"port": 8191}, path=path, locked=["port"])
    assert json.loads(path.read_text()) == {"readPhoto": False, "port": 8190}
    assert not list(tmp_path.glob("*.tmp"))


def tray_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PYSTRAY_BACKEND")}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_STATE_HOME=str(tmp_path / "state"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               XDG_RUNTIME_DIR=str(tmp_path / "run"), LANG="en_US.UTF-8", **extra)
    (tmp_path / "run").mkdir(exist_ok=True)
    return env


def test_second_start_says_it_is_already_running(tmp_path: Path) -> None:
    env = tray_env(tmp_path)
    lock = tmp_path / "tray.lock"
    cmd = [sys.executable, "-m", "agent", "tray", "--connect", "http://127.0.0.1:9",
           "--lock-file", str(lock)]
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        # The first one holds the lock once it says it runs headless.
        line = first.stderr.readline() if first.stderr else ""
        while "without a tray icon" not in line and first.poll() is None:
            line = first.stderr.readline() if first.stderr else ""
        assert "without a tray icon: no display" in line, line
        second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 0
        assert "already running" in second.stderr and "เปิดอยู่แล้ว" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.terminate()
        first.wait(30)
    assert first.returncode == 0


def test_without_a_display_the_agent_still_serves(tmp_path: Path) -> None:
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = tray_env(tmp_path, THAICARD_CONFIG_DIR=str(tmp_path / "agent-config"))
    proc = subprocess.Popen([sys.executable, "-m", "agent", "tray", "--demo", "--port", str(port),
                             "--lock-file", str(tmp_path / "tray.lock")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "without a tray icon" not in line and proc.poll() is None:
            line = proc.stderr.readline() if proc.stderr else ""
        assert "no display" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=10) as resp:
            status = json.loads(resp.read())
        assert status["backend"] == "demo"
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0
