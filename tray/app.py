"""The tray app: a pystray icon on the main thread, asyncio (the agent server, when this
process runs it, and the event client) on a worker thread with its own loop.

The icon follows the agent's public event stream only, so it shows the same whether the
agent runs here or as a separate process. Without a display or a tray host the agent
keeps running headless and the log says why there is no icon.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import shutil
import subprocess
import sys
import threading
import webbrowser
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from PIL import Image

from agent import __version__, osroom, paths

from . import icons
from .autostart import Autostart
from .client import EventClient, http_json
from .i18n import resolve_language, text
from .menu import Item, MenuView, build_menu, find, to_plain, to_pystray, tooltip
from .prefs import TrayPrefs
from .state import Notice, TrayState

log = logging.getLogger("tray")

# How often an icon no notification area holds asks again: soon at first, then at most
# once a minute (each try costs an X round trip and a line in pystray's log).
DOCK_FIRST_WAIT = 1.0
DOCK_LONGEST_WAIT = 60.0
DOCK_WATCH = 5.0              # how often a docked icon is checked (a panel may restart)


class X11Embedding:
    """Whether a notification area holds a pystray X11 icon's window (its parent is then the
    panel's window, not the root), asked on a connection of our own: pystray's is read by
    its own thread. Any X error answers True (cannot tell: do not ask the panel again)."""

    def __init__(self, icon: Any) -> None:
        self.icon = icon
        self.display: Any = None

    def __call__(self) -> bool:
        window = getattr(self.icon, "_window", None)
        if window is None:
            return True
        try:
            if self.display is None:
                import Xlib.display

                self.display = Xlib.display.Display()
            tree = self.display.create_resource_object("window", window.id).query_tree()
            return bool(tree.parent.id != tree.root.id)
        except Exception:  # noqa: BLE001 - Xlib raises its own errors; only a hint here
            return True

    def close(self) -> None:
        if self.display is not None:
            try:
                self.display.close()
            except Exception:  # noqa: BLE001 - the X server may be gone already
                pass


class LoopThread(threading.Thread):
    """A worker thread running one asyncio loop until ``stop``."""

    def __init__(self) -> None:
        super().__init__(name="agent-loop", daemon=True)
        self.loop = asyncio.new_event_loop()

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, timeout: float = 10.0) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.join(timeout)


def helper_command(*args: str) -> list[str]:
    """How to start this program's small windows (``tray.popup``), frozen or not."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "tray-popup", *args]
    return [sys.executable, "-m", "tray.popup", *args]


XORG_BACKGROUND = (216, 216, 216, 255)


def _object(value: Any) -> dict[str, Any]:
    """A JSON object from the agent's answer, or {} when it is something else."""
    return value if isinstance(value, dict) else {}


def _backend_name() -> str:
    import pystray

    return str(type.__getattribute__(pystray.Icon, "__module__"))


class TrayApp:
    """State, icon and menu actions. ``agent`` is the embedded agent, if this process runs one."""

    def __init__(self, base_url: str, loop: LoopThread, *, prefs_path: Path,
                 autostart: Autostart | None = None, agent: Any = None,
                 log_dir: Path | None = None, popen: Callable[..., Any] = subprocess.Popen,
                 ) -> None:
        self.base_url = base_url
        self.loop = loop
        self.prefs_path = prefs_path
        self.prefs = TrayPrefs.load(prefs_path)
        self.autostart = autostart
        self.agent = agent
        self.log_dir = log_dir or paths.user_log_dir()
        self.popen = popen
        self.state = TrayState()
        self.default_reader: str | None = None
        self.locked_keys: list[str] = []
        self.nhso = False
        self.icon: Any = None
        self.notices: list[tuple[str, str]] = []      # (key, text) shown, newest last
        self.messages: list[tuple[str, bool]] = []    # (text, is_error) shown, newest last
        self.client = EventClient(base_url, self.state, self._on_change)
        self._lock = threading.RLock()
        self._items: tuple[Item, ...] = ()
        self._stopped = threading.Event()
        self._client_future: concurrent.futures.Future[Any] | None = None

    # -- what is shown -----------------------------------------------------------------
    @property
    def lang(self) -> str:
        return resolve_language(self.prefs.language)

    def view(self) -> MenuView:
        demo = getattr(self.agent, "demo_card_in", None)
        return MenuView(lang=self.lang, language_choice=self.prefs.language,
                        default_reader=self.default_reader,
                        autostart=self.autostart.enabled() if self.autostart else None,
                        version=__version__, nhso=self.nhso,
                        demo_card_in=demo() if callable(demo) else None)

    def render(self) -> tuple[Image.Image, str, tuple[Item, ...]]:
        with self._lock:
            image = icons.render(self.state.status, self.state.claims)
            title = tooltip(self.state, self.lang)
            self._items = build_menu(self.state, self.view(), self)
            return image, title, self._items

    @property
    def items(self) -> tuple[Item, ...]:
        return self._items

    def title_for(self, icon: Any) -> str:
        """The tooltip; plain X11 keeps it as a Latin-1 window name, so English there."""
        backend = type(icon).__module__ if icon is not None else _backend_name()
        if backend.endswith("_xorg"):
            plain = tooltip(self.state, "en").replace("—", "-").replace("…", "...")
            return plain.encode("latin-1", "replace").decode("latin-1")
        return tooltip(self.state, self.lang)

    def image_for(self, icon: Any, image: Image.Image) -> Image.Image:
        """Plain X11 draws the icon without transparency: put it on a panel-like grey."""
        backend = type(icon).__module__ if icon is not None else _backend_name()
        if not backend.endswith("_xorg"):
            return image
        background = Image.new("RGBA", image.size, XORG_BACKGROUND)
        return Image.alpha_composite(background, image)

    def refresh(self) -> None:
        # Render and apply as one step: refresh runs on the event loop's thread, the docking
        # thread, the status sync and menu actions. Applied apart, an older render could land
        # after a newer one and keep, say, "Ready" on a tray whose card was just put back.
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        image, _title, items = self.render()
        icon = self.icon
        if icon is None:
            return
        try:
            icon.icon = self.image_for(icon, image)
            icon.title = self.title_for(icon)
            if getattr(icon, "HAS_MENU", True):
                icon.menu = to_pystray(items)
            # pystray's plain-X11 backend queues the new title on its X connection without
            # flushing it: the X server got it only with the next X event, so under load the
            # tray kept showing "Card in the reader" after the card left.
            display = getattr(icon, "_display", None)
            if display is not None and hasattr(display, "flush"):
                display.flush()
        except Exception:
            log.exception("could not update the tray icon")

    def _on_change(self, state: TrayState, notices: list[Notice]) -> None:
        if state.connected and not self._synced:
            self._synced = True
            self.loop.loop.run_in_executor(None, self.sync_from_agent)
        if not state.connected:
            self._synced = False
        self.refresh()
        for notice in notices:
            self.notify(notice)

    _synced = False

    def sync_from_agent(self) -> None:
        """What the event stream does not carry: settings, policy and claim counts."""
        try:
            status = http_json(self.base_url, "GET", "/v1/status")
        except Exception as exc:  # noqa: BLE001 - the agent may be gone; the event stream says so
            log.debug("status not available: %s", exc)
            return
        if isinstance(status, dict):
            config = _object(status.get("config"))
            self.default_reader = config.get("defaultTerminal") or None
            self.locked_keys = list(config.get("policyKeys") or [])
            nhso = _object(status.get("nhso"))
            self.nhso = bool(nhso.get("available"))
            if "tokenConfigured" in nhso:
                self.state.token_set = bool(nhso["tokenConfigured"])
            self.state.token_refused = _object(nhso.get("token")).get("state") == "refused"
        if self.nhso:
            # The outbox's own statuses: queued and sending wait, failed was refused.
            self.state.set_claims(self._claim_count("queued,sending"),
                                  self._claim_count("failed"),
                                  self._claim_count("needs_review"))
        self.refresh()

    def _claim_count(self, status: str) -> int | None:
        try:
            answer = http_json(self.base_url, "GET", f"/v1/claims?status={status}")
        except Exception as exc:  # noqa: BLE001 - counts are a nicety; the events keep them current
            log.debug("claims not available: %s", exc)
            return None
        if isinstance(answer, dict):
            if isinstance(answer.get("count"), int):
                return int(answer["count"])
            if isinstance(answer.get("claims"), list):
                return len(answer["claims"])
        return len(answer) if isinstance(answer, list) else None

    def notify(self, notice: Notice) -> None:
        message = text(notice.key, self.lang, **notice.kwargs())
        self.notices.append((notice.key, message))
        del self.notices[:-20]
        log.info("notice %s", notice.key)          # never the message: it may name a reader only,
        icon = self.icon                             # but keep logs free of any card context
        try:
            if icon is not None and getattr(icon, "HAS_NOTIFICATION", False):
                icon.notify(message, "Thai Card Agent")
            elif icon is not None and shutil.which("notify-send"):
                self.popen(["notify-send", "--app-name=Thai Card Agent", "Thai Card Agent",
                            message])
        except Exception:  # a missing notification service is not an error
            log.debug("notification not shown", exc_info=True)

    def message(self, msg: str, *, error: bool = False) -> None:
        """A message box in a child process; logged as well."""
        (log.warning if error else log.info)("%s", msg)
        self.messages.append((msg, error))
        del self.messages[:-20]
        if self.icon is None:
            return
        args = ["message", "--text", msg] + (["--error"] if error else [])
        try:
            self.popen(helper_command(*args))
        except OSError:
            log.debug("message box not shown", exc_info=True)

    # -- running -----------------------------------------------------------------------
    def start(self) -> None:
        """Start following the agent (call once the loop thread runs)."""
        self.render()
        self._client_future = self.loop.submit(self.client.run())

    def run_icon(self, icon: Any) -> None:
        """Show ``icon`` and block the main thread until quit."""
        self.icon = icon
        if not getattr(icon, "HAS_MENU", True):
            # Plain X11: no native menus, so a left click opens our own popup menu.
            import pystray

            icon.menu = pystray.Menu(pystray.MenuItem(
                "menu", lambda _i, _it: self.popup_menu(), default=True))

        def setup(icon: Any) -> None:
            icon.visible = True
            self.refresh()
            threading.Thread(target=self.keep_docked, args=(icon,), name="tray-dock",
                             daemon=True).start()

        icon.run(setup=setup)

    def keep_docked(self, icon: Any, first_wait: float = DOCK_FIRST_WAIT,
                    longest_wait: float = DOCK_LONGEST_WAIT, watch: float = DOCK_WATCH) -> None:
        """Ask the notification area to take the icon again whenever it has not.

        pystray's plain X11 backend asks once, when the icon is shown, and again only when
        its image changes: a tray started at logon before the panel's notification area
        (they start together), or whose request a panel still starting dropped, or that
        outlived a panel restart, stays invisible while the card's state stays the same.
        Only that backend keeps the ``_systray_manager`` it asked (None: none to ask); the
        others are docked by the OS itself."""
        if not hasattr(icon, "_systray_manager"):
            return
        embedded = X11Embedding(icon)
        wait, warned, drawn = first_wait, False, False
        try:
            while not self._stopped.wait(wait):
                if icon._systray_manager is not None and embedded():
                    if not drawn:
                        # Drawn once more now that the panel holds and sized the window: a
                        # draw before that is lost, and the panel showed an empty slot.
                        self.refresh()
                        drawn = True
                    wait, warned = watch, False
                    continue
                drawn = False
                if not warned:
                    log.warning("the tray icon is not in a notification area (none yet?); "
                                "asking again")
                    warned = True
                self.refresh()             # a new image: pystray asks again, then draws
                wait = first_wait if wait == watch else min(wait * 2, longest_wait)
        finally:
            embedded.close()

    def wait_headless(self) -> None:
        self._stopped.wait()

    def quit(self) -> None:
        log.info("quitting")
        self.client.stop()
        if self._client_future is not None:
            self._client_future.cancel()
        if self.agent is not None:
            try:
                self.loop.submit(self.agent.stop()).result(15)
            except Exception:
                log.exception("agent did not stop cleanly")
        self._stopped.set()
        if self.icon is not None:
            self.icon.stop()

    # -- the popup menu (backends without menus) -------------------------------------------
    def popup_menu(self, at: tuple[int, int] | None = None) -> None:
        threading.Thread(target=self._popup, args=(at,), name="popup", daemon=True).start()

    def _popup(self, at: tuple[int, int] | None) -> None:
        _, _, items = self.render()
        args = ["menu"] + ([f"--at={at[0]},{at[1]}"] if at else [])
        try:
            proc = self.popen(helper_command(*args), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
            out, _ = proc.communicate(json.dumps(to_plain(items)), timeout=600)
        except (OSError, subprocess.TimeoutExpired):
            log.exception("menu popup failed")
            return
        key = (out or "").strip()
        if key:
            self.invoke(key)

    def invoke(self, key: str) -> None:
        """Run the menu item ``key`` of the menu as shown now."""
        item = find(self._items or self.render()[2], key)
        if item.action is not None and item.enabled:
            item.action()

    # -- menu actions (Actions protocol) ----------------------------------------------------
    def open_status_page(self) -> None:
        webbrowser.open(self.base_url + "/")

    def copy_url(self) -> None:
        url = self.base_url
        for tool in osroom.current().clipboard_commands():
            if shutil.which(tool[0]):
                try:
                    proc = self.popen(tool, stdin=subprocess.PIPE, text=True)
                    proc.communicate(url, timeout=5)
                    self.notify(Notice("msg.copied", (("url", url),)))
                    return
                except (OSError, subprocess.TimeoutExpired):
                    continue
        # No clipboard tool: a Tk child keeps the X selection until someone copies over it.
        self.popen(helper_command("clip", "--text", url))
        self.notify(Notice("msg.copied", (("url", url),)))

    def open_settings(self) -> None:
        self.run_async(self._settings_dialog)

    def _settings_dialog(self) -> None:
        proc = self.popen(helper_command("settings", "--lang", self.lang,
                                         "--locked", ",".join(self.locked_keys)),
                          stdout=subprocess.PIPE, text=True)
        out, _ = proc.communicate()
        if proc.returncode == 0 and out.strip():
            self.apply_settings(json.loads(out))

    def apply_settings(self, changes: dict[str, Any]) -> None:
        from .settings_file import save_user_settings

        try:
            save_user_settings(changes, locked=self.locked_keys)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.message(text("msg.action_failed", self.lang, error=str(exc)), error=True)
            return
        if self.agent is not None and hasattr(self.agent, "restart"):
            try:
                self.base_url = self.loop.submit(self.agent.restart()).result(30)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                self.message(text("msg.action_failed", self.lang, error=str(exc)), error=True)
                return
            self.client.base_url = self.base_url
            self.message(text("msg.settings_saved", self.lang))
        else:
            self.message(text("msg.settings_restart", self.lang))

    def set_default_reader(self, name: str | None) -> None:
        self.default_reader = name
        self.run_async(lambda: self.apply_settings({"defaultTerminal": name}))

    def set_language(self, choice: str) -> None:
        self.prefs.language = choice
        try:
            self.prefs.save(self.prefs_path)
        except OSError:
            log.exception("could not save the tray preferences")
        self.refresh()

    def set_token(self) -> None:
        def run() -> None:
            proc = self.popen(helper_command("token", "--lang", self.lang))
            proc.wait()
            self.sync_from_agent()
        self.run_async(run)

    def clear_token(self) -> None:
        def run() -> None:
            try:
                from agent.usecases import clear_token

                clear_token()
            except Exception as exc:  # noqa: BLE001 - shown to the user
                self.message(text("msg.action_failed", self.lang, error=str(exc)), error=True)
                return
            self.state.token_set = False
            self.message(text("msg.token_cleared", self.lang))
            self.sync_from_agent()
        self.run_async(run)

    def retry_claims(self) -> None:
        def run() -> None:
            try:
                http_json(self.base_url, "POST", "/v1/claims/retry", {"status": "failed"})
            except Exception as exc:  # noqa: BLE001 - shown to the user
                self.message(text("msg.action_failed", self.lang, error=str(exc)), error=True)
            self.sync_from_agent()
        self.run_async(run)

    def toggle_autostart(self) -> None:
        if self.autostart is None:
            return
        try:
            self.autostart.set(not self.autostart.enabled())
        except OSError as exc:
            self.message(text("msg.action_failed", self.lang, error=str(exc)), error=True)
        self.refresh()

    def open_logs(self) -> None:
        path = self.log_dir
        path.mkdir(parents=True, exist_ok=True)
        if not osroom.current().open_folder(path, self.popen):
            self.message(str(path))              # no file manager to ask: show where it is

    def open_diagnostics(self) -> None:
        # The agent's /doctor page: the same report as `thaicard-agent doctor`.
        webbrowser.open(self.base_url + "/doctor")

    def support_bundle(self) -> None:
        def work() -> None:
            from agent.doctor.bundle import default_bundle_path, write_bundle

            try:
                path = write_bundle(default_bundle_path(paths.support_bundle_dir()))
            except OSError as exc:
                self.message(text("msg.action_failed", self.lang, error=str(exc)), error=True)
                return
            self.message(text("msg.bundle_saved", self.lang, path=str(path)))
            osroom.current().open_folder(path.parent, self.popen)

        self.run_async(work)

    def about(self) -> None:
        self.message(f"Thai Card Agent {__version__}\n{self.base_url}\nApache-2.0")

    def demo_toggle(self) -> None:
        toggle = getattr(self.agent, "demo_toggle", None)
        if callable(toggle):
            toggle()

    def run_async(self, fn: Callable[[], None]) -> None:
        """Menu actions that wait (dialogs, HTTP) run off the tray's thread."""
        threading.Thread(target=fn, name="tray-action", daemon=True).start()
