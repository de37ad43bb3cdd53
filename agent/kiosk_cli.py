"""``thaicard-agent kiosk``: the kiosk page (``/kiosk``) full screen in the installed
Chromium-based browser's kiosk mode (docs/kiosk.md).

The browser gets a profile of its own (in the agent's data folder): a browser already
open on the PC would otherwise take the request into its own window and ignore the kiosk
flags. Which browsers are installed is the per-OS room's question.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

from . import osroom, paths
from .config import load_config
from .errors import BrowserNotFound

PROFILE_FOLDER = "kiosk-browser"


def kiosk_url(port: int, *, paper: str | None = None, idle: int | None = None) -> str:
    query = {k: str(v) for k, v in (("paper", paper), ("idle", idle)) if v}
    return f"http://127.0.0.1:{port}/kiosk" + (f"?{urlencode(query)}" if query else "")


def pick_browser(given: str | None) -> tuple[str, str]:
    """(name, executable): the one given, else the first installed (osroom order)."""
    if given:
        name = "Edge" if "edge" in Path(given).name.lower() else "Chromium"
        return name, given
    found = osroom.current().kiosk_browsers()
    if not found:
        raise BrowserNotFound("install Microsoft Edge, Google Chrome or Chromium, or name "
                              "one with --browser")
    return found[0]


def kiosk_command(name: str, executable: str, url: str, profile: Path, *,
                  silent_print: bool = False, extra: tuple[str, ...] = ()) -> list[str]:
    command = [executable, "--kiosk", "--no-first-run", "--no-default-browser-check",
               f"--user-data-dir={profile}", "--overscroll-history-navigation=0",
               "--disable-pinch"]
    if name == "Edge":
        command.append("--edge-kiosk-type=fullscreen")
    if silent_print:
        command.append("--kiosk-printing")     # the slip goes to the default printer
    return [*command, *extra, url]


def add_kiosk_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "kiosk", help="open the self-service kiosk page full screen (docs/kiosk.md)",
        description="Open http://127.0.0.1:PORT/kiosk in the kiosk mode of Edge, Chrome or "
                    "Chromium (the first installed, or --browser). The agent must be running.")
    p.add_argument("--port", type=int, default=None, help="the agent's port (default: the "
                                                          "configured port)")
    p.add_argument("--browser", help="the browser's executable (default: the first of "
                                     "Edge/Chrome/Chromium installed)")
    p.add_argument("--paper", choices=["58", "80"], help="receipt printer width in mm for "
                                                          "the slip (default 58)")
    p.add_argument("--idle", type=int, help="seconds without a touch before the screen "
                                            "clears (default 60)")
    p.add_argument("--silent-print", action="store_true",
                   help="print slips to the default printer without a dialog")
    p.add_argument("--browser-arg", action="append", default=[], metavar="ARG",
                   help="one more argument for the browser (repeatable)")
    p.add_argument("--print-command", action="store_true",
                   help="print the command (a JSON array) instead of running it")
    p.add_argument("--agent-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="wait this long for the agent to answer before opening the page "
                        "(started at logon together with the tray; default 60)")
    p.add_argument("--wait", action="store_true",
                   help="wait for the browser to exit and exit with its code (for a "
                        "session script that restarts it)")
    p.set_defaults(func=cmd_kiosk)


def wait_for_agent(port: int, seconds: float) -> bool:
    """Whether the agent answers within ``seconds`` (a page opened before it listens would
    show the browser's error page until someone reloads it)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=2):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)


def cmd_kiosk(args: argparse.Namespace) -> int:
    port = args.port or load_config().port
    name, executable = pick_browser(args.browser)
    if not args.print_command and not wait_for_agent(port, args.agent_timeout):
        print(f"โปรแกรมอ่านบัตรยังไม่ตอบที่พอร์ต {port} จะเปิดหน้าจอต่อไป\n"
              f"The agent does not answer on port {port} yet; opening the page anyway.",
              file=sys.stderr)
    command = kiosk_command(
        name, executable, kiosk_url(port, paper=args.paper, idle=args.idle),
        paths.user_data_dir() / PROFILE_FOLDER, silent_print=args.silent_print,
        extra=tuple(args.browser_arg))
    if args.print_command:
        print(json.dumps(command, ensure_ascii=False))      # unambiguous on every OS
        return 0
    if args.wait:
        return subprocess.call(command)
    subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
    print(f"เปิดหน้าจอ KIOSK ด้วย {name} แล้ว\nKiosk opened in {name}: {command[-1]}",
          file=sys.stderr)
    return 0
