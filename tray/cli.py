"""``thaicard-agent tray``: the agent and its tray icon in one process (what staff run).

``--connect URL`` shows the icon for an agent that runs as a separate process instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agent import osroom

log = logging.getLogger("tray")

EXIT_ALREADY_RUNNING = 0     # a second start is not an error: the first one is there


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "tray", help="run the agent with its tray icon (what auto-start launches)",
        description="Run the agent server and its tray icon in one process. Without a "
                    "display the agent runs headless and logs why the icon is missing.")
    p.add_argument("--demo", action="store_true", help="use the simulated demo reader")
    p.add_argument("--port", type=int, help="port on 127.0.0.1 (default: from the config)")
    p.add_argument("--connect", metavar="URL",
                   help="only show the icon for an agent already running at URL")
    p.add_argument("--lock-file", type=Path, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_tray)

    # The tray's small windows, started as child processes (frozen builds have no -m).
    p = sub.add_parser("tray-popup", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda a: __import__("tray.popup", fromlist=["main"]).main(a.rest))


def display_problem(environ: Mapping[str, str] | None = None) -> str | None:
    """Why no icon can be shown here, or None when one may be (the OS room knows)."""
    return osroom.current().display_problem(os.environ if environ is None else environ)


def tray_host_problem(environ: Mapping[str, str] | None = None) -> str | None:
    """Whether a program shows tray icons: asked of X11 on plain X11 only, never on Windows."""
    return osroom.current().tray_host_problem(os.environ if environ is None else environ)


def make_icon(image: Any, title: str) -> Any:
    import pystray

    icon = pystray.Icon("thaicard-agent", image, title)
    window = getattr(icon, "_window", None)
    if type(icon).__module__.endswith("_xorg") and window is not None:
        # pystray 0.19.5 creates the X11 icon window without ButtonPressMask, so clicks
        # never reach it; ask for them, or the popup menu could never be opened.
        import Xlib.X

        window.change_attributes(event_mask=Xlib.X.ExposureMask | Xlib.X.StructureNotifyMask
                                 | Xlib.X.ButtonPressMask)
        icon._display.flush()
    return icon


def cmd_tray(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.logging_setup import setup_logging

    from .app import LoopThread, TrayApp
    from .autostart import for_this_platform
    from .i18n import resolve_language, text
    from .prefs import TrayPrefs, default_path
    from .single import AlreadyRunning, InstanceLock

    config = load_config(cli={"port": args.port})      # ConfigInvalid: a clear message
    log_file = setup_logging("DEBUG" if args.debug else config.log_level,
                             log_dir=config.log_dir)
    prefs_path = default_path()
    lang = resolve_language(TrayPrefs.load(prefs_path).language)

    lock = InstanceLock(args.lock_file)
    try:
        lock.acquire()
    except AlreadyRunning:
        message = f"{text('msg.already_running', 'th')}\n{text('msg.already_running', 'en')}"
        print(message, file=sys.stderr)
        if display_problem() is None:
            import subprocess

            from .app import helper_command

            subprocess.Popen(helper_command("message", "--text", message))
        return EXIT_ALREADY_RUNNING

    loop = LoopThread()
    loop.start()
    agent = None
    if args.connect:
        base_url = args.connect.rstrip("/")
    else:
        from agent.errors import AgentError

        from .client import is_agent
        from .embedded import EmbeddedAgent

        agent = EmbeddedAgent({"port": args.port}, demo=args.demo)
        try:
            base_url = loop.submit(agent.start()).result(60)
        except AgentError as exc:
            if exc.code != "port_in_use":
                loop.stop()
                raise
            port = config.port
            url = f"http://127.0.0.1:{port}"
            if is_agent(url):
                # An agent runs already (a service, another user's session): just show it.
                log.warning("port %s is taken by a running agent; showing its state", port)
                agent, base_url = None, url
            else:
                loop.stop()
                print(f"{exc.info.message_th}\n{exc.info.message_en} ({exc.detail}) "
                      f"[{exc.code}]", file=sys.stderr)
                lock.release()
                return exc.info.exit_code

    app = TrayApp(base_url, loop, prefs_path=prefs_path, autostart=for_this_platform(),
                  agent=agent, log_dir=log_file.parent if log_file else None)
    app.start()
    problem = display_problem()
    icon = None
    if problem is None:
        try:
            image, _, _ = app.render()
            icon = make_icon(app.image_for(None, image), app.title_for(None))
        except Exception as exc:  # noqa: BLE001 - Xlib raises its own errors, not ImportError
            problem = f"the tray icon cannot be created: {type(exc).__name__}: {exc}"
    if problem is None:
        host = tray_host_problem()
        if host:
            log.warning("%s", host)
    _install_signal_handlers(app)
    try:
        if icon is None:
            log.warning("%s: %s (%s)", text("msg.headless", "en"), problem, base_url)
            print(f"{text('msg.headless', lang)}: {problem}", file=sys.stderr)
            app.wait_headless()
        else:
            first = icon

            def next_icon() -> Any:
                nonlocal first
                made, first = first, None
                if made is not None:
                    return made
                image, _, _ = app.render()
                return make_icon(app.image_for(None, image), app.title_for(None))

            show_icon(app, next_icon)
    except KeyboardInterrupt:
        app.quit()
    finally:
        if not app._stopped.is_set():
            app.quit()
        loop.stop()
        lock.release()
    return 0


ICON_RETRIES = 10
ICON_RETRY_SECONDS = 3.0


def show_icon(app: Any, make: Callable[[], Any], *, retries: int = ICON_RETRIES,
              delay: float = ICON_RETRY_SECONDS) -> None:
    """Show the icon until the tray is quit.

    pystray's loop returns at once when the OS has no notification area yet (a logon
    before the shell is up; Wine's explorer still starting). The agent in this process
    must not stop with it: the icon is tried again every ``delay`` s, and after
    ``retries`` the agent keeps serving without an icon."""
    for attempt in range(retries + 1):
        app.run_icon(make())
        if app._stopped.is_set():
            return
        if attempt < retries:
            log.warning("the tray icon closed without being asked to (no notification area "
                        "yet?); trying again in %.0f s", delay)
            if app._stopped.wait(delay):
                return
    log.warning("no tray icon after %d tries; the agent keeps serving without one",
                retries + 1)
    app.wait_headless()


def _install_signal_handlers(app: Any) -> None:
    import signal

    def stop(_signum: int, _frame: Any) -> None:
        app.quit()

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, stop)
        except (ValueError, OSError):
            pass
