"""``thaicard-agent kiosk``: which browser, which command, and the real thing: Chromium
started by the command loads the agent's kiosk page (headless here, dumping its DOM)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from agent.osroom.linux import linux_kiosk_browsers
from agent.osroom.macos import mac_kiosk_browsers
from agent.osroom.windows import APP_PATHS, registry_kiosk_browsers
from tests.api_support import ROOT, clean_env, free_port, serve_cmd, wait_until_up
from tests.browser_support import CHROMIUM, browser_available


def kiosk_cli(env: dict[str, str], *args: str, timeout: float = 90
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "kiosk", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_browsers_found_per_os(tmp_path: Path) -> None:
    installed = {"google-chrome-stable": "/usr/bin/google-chrome-stable",
                 "chromium": "/usr/bin/chromium"}
    assert linux_kiosk_browsers(installed.get) == [
        ("Chrome", "/usr/bin/google-chrome-stable"), ("Chromium", "/usr/bin/chromium")]
    assert linux_kiosk_browsers(lambda _: None) == []

    paths = {APP_PATHS + "\\msedge.exe": '"C:\\Program Files (x86)\\Microsoft\\Edge\\'
                                         'Application\\msedge.exe"',
             APP_PATHS + "\\chrome.exe": "C:\\Program Files\\Google\\Chrome\\chrome.exe"}

    def query(root: str, key: str) -> str:
        if key not in paths:
            raise OSError(2, "not found")
        return paths[key]

    registry = types.SimpleNamespace(HKEY_LOCAL_MACHINE="HKLM", QueryValue=query)
    assert registry_kiosk_browsers(registry) == [
        ("Edge", "C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe"),
        ("Chrome", "C:\\Program Files\\Google\\Chrome\\chrome.exe")]

    edge = tmp_path / "Microsoft Edge.app" / "Contents" / "MacOS" / "Microsoft Edge"
    edge.parent.mkdir(parents=True)
    edge.write_text("")
    (tmp_path / "Firefox.app").mkdir()
    assert mac_kiosk_browsers(tmp_path) == [("Edge", str(edge))]


def test_the_command(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    out = kiosk_cli(env, "--port", "9123", "--browser", "/opt/edge/msedge", "--paper", "80",
                    "--idle", "30", "--silent-print", "--print-command")
    assert out.returncode == 0, out.stderr
    command = json.loads(out.stdout)
    assert command[0] == "/opt/edge/msedge" and command[-1] == (
        "http://127.0.0.1:9123/kiosk?paper=80&idle=30")
    assert {"--kiosk", "--edge-kiosk-type=fullscreen", "--kiosk-printing"} <= set(command)
    # A profile of its own, in the agent's data folder: an open browser window must not
    # swallow the kiosk flags.
    assert f"--user-data-dir={tmp_path / 'data' / 'kiosk-browser'}" in command
    # The configured port when none is given.
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.json").write_text(json.dumps({"port": 8444}))
    out = kiosk_cli(env, "--browser", "/usr/bin/chromium", "--print-command")
    assert json.loads(out.stdout)[-1] == "http://127.0.0.1:8444/kiosk"
    assert "--edge-kiosk-type=fullscreen" not in out.stdout


def test_no_browser_is_said_plainly(tmp_path: Path) -> None:
    env = {**clean_env(tmp_path), "PATH": str(tmp_path / "empty")}
    out = kiosk_cli(env, "--print-command")
    assert out.returncode == 17
    assert "ไม่พบเบราว์เซอร์" in out.stderr and "browser_not_found" in out.stderr


@pytest.mark.browser
def test_the_browser_opens_the_kiosk_page(tmp_path: Path) -> None:
    missing = browser_available()
    if missing and os.environ.get("CI"):
        raise RuntimeError(f"browser tests cannot run in CI: {missing}")
    if missing:
        pytest.skip(missing)
    port = free_port()
    env = {**clean_env(tmp_path), "HOME": str(tmp_path / "home")}
    agent = subprocess.Popen(serve_cmd(port), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_until_up(port, agent)
        out = kiosk_cli(env, "--port", str(port), "--browser", CHROMIUM, "--wait",
                        "--browser-arg=--headless", "--browser-arg=--no-sandbox",
                        "--browser-arg=--disable-gpu", "--browser-arg=--dump-dom",
                        timeout=120)
    finally:
        agent.terminate()
        agent.wait(15)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "<title>ยืนยันการเข้ารับบริการ · Confirm your visit</title>" in out.stdout
    assert 'src="/static/kiosk.js"' in out.stdout
    assert (tmp_path / "data" / "kiosk-browser").is_dir()


def test_an_agent_that_is_not_up_is_waited_for_then_said(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    port = free_port()                      # nothing listens there
    browser = tmp_path / "browser.sh"       # records that it was started, and how
    browser.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "started"}\nexit 3\n')
    browser.chmod(0o755)
    out = kiosk_cli(env, "--port", str(port), "--browser", str(browser), "--agent-timeout",
                    "1", "--wait")
    assert out.returncode == 3              # the browser ran, after the warning
    assert (tmp_path / "started").read_text().split()[-1] == f"http://127.0.0.1:{port}/kiosk"
    assert f"does not answer on port {port}" in out.stderr and "โปรแกรมอ่านบัตร" in out.stderr
