"""Menu and actions with pystray's dummy backend: no display needed.

Every state gives its icon, tooltip and menu; every menu item runs its action, checked
through what the action leaves behind (files, child processes started, HTTP calls seen).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

os.environ["PYSTRAY_BACKEND"] = "dummy"     # before anything imports pystray

import pystray
import pytest
from aiohttp import web

from testrig.processes import wait_for
from tray import app as tray_app
from tray.app import LoopThread, TrayApp
from tray.autostart import XdgAutostart
from tray.icons import render
from tray.menu import Item, MenuView, build_menu, find, to_plain, to_pystray, tooltip
from tray.state import Claims, Status, TrayState

from .test_tray_model import CARD, READER, ev, reader, snapshot, state_for


class Recorder:
    """An Actions object that records which action ran."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args: self.calls.append((name, args))


def keys(items: tuple[Item, ...]) -> list[str]:
    out = []
    for item in items:
        out.append(item.key)
        out += keys(item.submenu)
    return out


EXPECTED_STATUS_TEXT = {
    Status.STARTING: "Starting", Status.OFFLINE: "not reachable",
    Status.PCSC_UNAVAILABLE: "PC/SC", Status.NO_READER: "No card reader",
    Status.IDLE: "insert a card", Status.CARD_PRESENT: "Card in the reader",
    Status.READING: "Reading", Status.ERROR: "failed",
}


@pytest.mark.parametrize("status", list(Status))
def test_each_state_gives_its_icon_tooltip_and_menu(status: Status) -> None:
    st = state_for(status)
    items = build_menu(st, MenuView(lang="en", version="1.2.3"), Recorder())
    assert EXPECTED_STATUS_TEXT[status] in items[0].text and not items[0].enabled
    assert EXPECTED_STATUS_TEXT[status] in tooltip(st, "en")
    assert tooltip(st, "en").startswith("Thai Card Agent")
    assert render(st.status, st.claims) is render(status, Claims.NONE)
    readers = find(items, "readers").submenu
    if status in (Status.STARTING, Status.OFFLINE, Status.PCSC_UNAVAILABLE, Status.NO_READER):
        assert [r.key for r in readers] == ["readers.none"]
    else:
        assert [r.key for r in readers] == [f"reader:{READER}"]
        assert readers[0].checked is (status is not Status.IDLE)
    assert ("last_card" in keys(items)) is (status is Status.CARD_PRESENT)
    if status is Status.ERROR:
        assert "(not_thai_id)" in tooltip(st, "en")


def test_thai_menu_and_last_card_masked() -> None:
    st = state_for(Status.CARD_PRESENT)
    items = build_menu(st, MenuView(lang="th"), Recorder())
    assert items[0].text == "มีบัตรอยู่ในเครื่องอ่าน"
    card_line = find(items, "last_card").text
    assert card_line == "บัตร: 1-9999-xxxxx-xx-5 นายทดสอบ ระบบอ่านบัตร"
    assert "1999900000005" not in json.dumps(to_plain(items), ensure_ascii=False)
    en = find(build_menu(st, MenuView(lang="en"), Recorder()), "last_card").text
    assert en.endswith("Mr. Demo Cardreader")
    assert find(items, "quit").text == "ออกจากโปรแกรม"


def test_claims_and_token_items_only_with_the_nhso_part() -> None:
    st = state_for(Status.IDLE)
    plain = keys(build_menu(st, MenuView(lang="en"), Recorder()))
    assert "claims" not in plain and "token.set" not in plain
    st.set_claims(3, 2)
    st.token_set = False
    items = build_menu(st, MenuView(lang="en", nhso=True), Recorder())
    assert find(items, "claims").text == "Claims: 3 waiting, 2 failed"
    assert find(items, "claims.retry").enabled
    assert find(items, "status.claims").text == "2 claim(s) failed"
    assert not find(items, "token.clear").enabled       # nothing to clear
    assert "2 claim(s) failed" in tooltip(st, "en")
    assert render(st.status, st.claims) is render(Status.IDLE, Claims.FAILED)


def test_radio_and_check_items_show_the_current_choice() -> None:
    st = state_for(Status.IDLE)
    view = MenuView(lang="en", language_choice="th", default_reader="Old reader",
                    autostart=True)
    items = build_menu(st, view, Recorder())
    assert find(items, "language:th").checked and not find(items, "language:auto").checked
    assert find(items, "default_reader:Old reader").checked     # unplugged, still listed
    assert not find(items, f"default_reader:{READER}").checked
    assert find(items, "autostart").checked is True
    assert "autostart" not in keys(build_menu(st, MenuView(lang="en"), Recorder()))


def test_pystray_menu_runs_the_same_actions() -> None:
    """The pystray objects (dummy backend) show the same texts and call the same actions."""
    st = state_for(Status.CARD_PRESENT)
    rec = Recorder()
    items = build_menu(st, MenuView(lang="en", nhso=True, autostart=False, demo_card_in=True),
                       rec)
    menu = to_pystray(items)
    icon = pystray.Icon("test", render(Status.IDLE), "t", menu)
    by_text = {item.text: item for item in menu.items}
    assert by_text["Open status page"].default
    assert by_text["Start at login"].checked is False
    settings = by_text["Settings"].submenu
    language = {i.text: i for i in settings.items}["Language / ภาษา"].submenu
    thai = {i.text: i for i in language.items}["ไทย"]
    assert thai.radio and thai.checked is False
    expected = {
        "Open status page": "open_status_page", "Copy agent URL": "copy_url",
        "Start at login": "toggle_autostart", "Open log folder": "open_logs",
        "Diagnostics…": "open_diagnostics", "Save a support bundle…": "support_bundle",
        "About (version )": "about", "Quit": "quit", "Demo: remove the card": "demo_toggle",
    }
    for text, action in expected.items():
        by_text[text](icon)
        assert rec.calls[-1][0] == action, text
    thai(icon)
    assert rec.calls[-1] == ("set_language", ("th",))
    default_reader = {i.text: i for i in settings.items}["Default reader"].submenu
    {i.text: i for i in default_reader.items}[READER](icon)
    assert rec.calls[-1] == ("set_default_reader", (READER,))
    {i.text: i for i in settings.items}["Set token…"](icon)
    assert rec.calls[-1][0] == "set_token"
    # Status lines are not clickable.
    assert not menu.items[0].enabled


# -- the app's actions -----------------------------------------------------------------------
class FakeProcess:
    def __init__(self, args: list[str], out: str = "", returncode: int = 0) -> None:
        self.args, self.out, self.returncode = args, out, returncode
        self.stdin_text: str | None = None

    def communicate(self, data: str | None = None, timeout: float | None = None) -> tuple:
        self.stdin_text = data
        return self.out, ""

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode


class Children:
    """Stands in for ``subprocess.Popen``: records the child processes the app starts."""

    def __init__(self) -> None:
        self.started: list[FakeProcess] = []
        self.answers: dict[str, str] = {}

    def __call__(self, args: list[str], **_kw: Any) -> FakeProcess:
        mode = next((a for a in args if a in self.answers), None)
        proc = FakeProcess(list(args), self.answers.get(mode or "", ""))
        self.started.append(proc)
        return proc

    def modes(self) -> list[str]:
        return [p.args[3] if p.args[1:3] == ["-m", "tray.popup"] else p.args[0]
                for p in self.started]


class FakeAgent:
    def __init__(self) -> None:
        self.restarts = 0
        self.card_in = True

    async def restart(self) -> str:
        self.restarts += 1
        return "http://127.0.0.1:8189"

    async def stop(self) -> None:
        pass

    def demo_card_in(self) -> bool:
        return self.card_in

    def demo_toggle(self) -> None:
        self.card_in = not self.card_in


@pytest.fixture
def loop_thread():
    thread = LoopThread()
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture
def app(tmp_path: Path, loop_thread: LoopThread, monkeypatch: pytest.MonkeyPatch) -> TrayApp:
    monkeypatch.setenv("THAICARD_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setattr(tray_app.TrayApp, "run_async", lambda self, fn: fn())
    autostart = XdgAutostart(["thaicard-agent", "tray"], tmp_path / "xdg", [tmp_path / "etc"])
    a = TrayApp("http://127.0.0.1:9", loop_thread, prefs_path=tmp_path / "tray.json",
                autostart=autostart, agent=FakeAgent(), log_dir=tmp_path / "logs",
                popen=Children())
    a.prefs.language = "en"
    a.state.apply(snapshot(reader()))
    a.render()
    return a


def test_language_switch_is_saved_and_changes_the_menu(app: TrayApp, tmp_path: Path) -> None:
    app.invoke("language:th")
    assert json.loads((tmp_path / "tray.json").read_text())["language"] == "th"
    assert app.items[0].text == "พร้อมใช้งาน — เสียบบัตรได้"
    app.invoke("language:auto")
    assert find(app.items, "language:auto").checked


def test_autostart_toggle_writes_and_hides_the_xdg_entry(app: TrayApp, tmp_path: Path) -> None:
    desktop = tmp_path / "xdg" / "autostart" / "thaicard-agent.desktop"
    assert find(app.items, "autostart").checked is False
    app.invoke("autostart")
    assert "Exec=thaicard-agent tray" in desktop.read_text()
    assert find(app.items, "autostart").checked is True
    app.invoke("autostart")
    assert "Hidden=true" in desktop.read_text()
    assert find(app.items, "autostart").checked is False


def test_demo_item_inserts_and_removes_the_card(app: TrayApp) -> None:
    assert find(app.items, "demo").text == "Demo: remove the card"
    app.invoke("demo")
    app.render()
    assert app.agent.card_in is False
    assert find(app.items, "demo").text == "Demo: insert a card"


def test_settings_dialog_result_is_saved_and_the_agent_restarted(app: TrayApp,
                                                                  tmp_path: Path) -> None:
    children: Children = app.popen
    children.answers["settings"] = json.dumps({"port": 8190,
                                               "allowedOrigins": ["https://his.example.go.th"]})
    app.invoke("settings.open")
    saved = json.loads((tmp_path / "config" / "config.json").read_text())
    assert saved == {"port": 8190, "allowedOrigins": ["https://his.example.go.th"]}
    assert app.agent.restarts == 1
    assert children.modes() == ["settings"]
    assert app.messages[-1] == ("Settings saved; the agent restarted with them.", False)


def test_invalid_settings_are_refused_with_a_message(app: TrayApp, tmp_path: Path) -> None:
    children: Children = app.popen
    children.answers["settings"] = json.dumps({"allowedOrigins": ["https://*.example.com"]})
    app.invoke("settings.open")
    assert not (tmp_path / "config" / "config.json").exists()
    assert app.agent.restarts == 0
    assert app.messages[-1][1] is True and "wildcards" in app.messages[-1][0]


def test_policy_locked_settings_are_refused(app: TrayApp, tmp_path: Path) -> None:
    app.locked_keys = ["port"]
    app.apply_settings({"port": 9000})
    assert not (tmp_path / "config" / "config.json").exists()


def test_default_reader_choice_goes_to_the_user_config(app: TrayApp, tmp_path: Path) -> None:
    app.invoke(f"default_reader:{READER}")
    saved = json.loads((tmp_path / "config" / "config.json").read_text())
    assert saved == {"defaultTerminal": READER}
    app.invoke("default_reader:")
    assert json.loads((tmp_path / "config" / "config.json").read_text()) == {}


def test_popup_menu_sends_the_menu_and_runs_the_chosen_item(app: TrayApp) -> None:
    children: Children = app.popen
    children.answers["menu"] = "language:th\n"
    app._popup(None)
    sent = json.loads(children.started[0].stdin_text or "[]")
    assert sent[0]["key"] == "status" and sent[0]["enabled"] is False
    assert app.prefs.language == "th"


def test_simple_actions_start_the_right_child(app: TrayApp, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    opened: list[str] = []
    monkeypatch.setattr(tray_app.webbrowser, "open", opened.append)
    monkeypatch.setattr(tray_app.shutil, "which", lambda name: None)   # no clipboard tools
    children: Children = app.popen
    app.invoke("open_status")
    assert opened == ["http://127.0.0.1:9/"]
    app.invoke("copy_url")
    assert children.started[-1].args[-2:] == ["--text", "http://127.0.0.1:9"]
    assert app.notices[-1][0] == "msg.copied"
    app.invoke("about")
    assert app.messages[-1][0].startswith("Thai Card Agent ")
    app.invoke("logs")
    assert (tmp_path / "logs").is_dir()
    assert app.messages[-1][0] == str(tmp_path / "logs")          # no opener: shown
    app.invoke("diagnostics")                 # the agent's /doctor page, as the CLI prints it
    assert opened[-1] == "http://127.0.0.1:9/doctor"
    # The support bundle is written off the tray's thread, to the Desktop, then shown.
    import agent.doctor.bundle as bundle

    written: list[Path] = []
    monkeypatch.setattr(tray_app.paths, "support_bundle_dir", lambda: tmp_path / "desk")
    monkeypatch.setattr(bundle, "write_bundle", lambda path: written.append(path) or path)
    monkeypatch.setattr(app, "run_async", lambda fn: fn())
    app.invoke("support_bundle")
    assert written and written[0].parent == tmp_path / "desk"
    assert written[0].name.startswith("thaicard-agent-support-")
    assert str(written[0]) in app.messages[-1][0]
    app.nhso = True
    app.render()
    app.invoke("token.set")
    assert children.started[-1].args[3:] == ["token", "--lang", "en"]


def test_notifications_use_the_icon_when_it_can(app: TrayApp) -> None:
    shown: list[tuple[str, str]] = []

    class NotifyingIcon:
        HAS_NOTIFICATION = True
        HAS_MENU = True

        def notify(self, message: str, title: str) -> None:
            shown.append((title, message))

    app.icon = NotifyingIcon()
    notices = app.state.apply(ev("card.inserted")) + app.state.apply(ev("card.read", card=CARD))
    app._on_change(app.state, notices)
    assert shown == [("Thai Card Agent", f"Card read on {READER}")]
    assert "Demo" not in shown[0][1] and "1-9999" not in shown[0][1]   # no card data


def test_an_older_refresh_never_lands_after_a_newer_one(app: TrayApp) -> None:
    """refresh runs on several threads (events, docking, status sync, menu actions). One that
    read the state before a card came back must not set its title after the refresh that
    showed the card: the tray then said "Ready" with the card in (a CI flake)."""
    entered, go = threading.Event(), threading.Event()

    class SlowIcon:
        HAS_MENU = True
        icon: Any = None
        menu: Any = None
        _title = ""
        held = True

        @property
        def title(self) -> str:
            return self._title

        @title.setter
        def title(self, value: str) -> None:
            if self.held:                   # the first setter pauses with what it was given
                self.held = False
                entered.set()
                assert go.wait(30)
            self._title = value

    icon = app.icon = SlowIcon()
    older = threading.Thread(target=app.refresh)
    older.start()
    assert entered.wait(30)                  # holding the title of "Ready"
    app.state.apply(ev("card.inserted"))
    app.state.apply(ev("card.read", card=CARD))
    newer = threading.Thread(target=app.refresh)
    newer.start()
    newer.join(1)                            # a wrong program finishes now; ours waits
    go.set()
    older.join(30)
    newer.join(30)
    assert icon.title == tooltip(app.state, "en") and "Card" in icon.title


def agent_contract(path: str, method: str) -> Any:
    """The agent's own OpenAPI schema of a 200 answer, as a validator (the fake below must
    answer only what the agent answers: /v1/openapi.json is the contract)."""
    from jsonschema import Draft202012Validator

    from agent.api.openapi import build_document
    from agent.nhso.openapi import document_nhso
    app = web.Application()
    document_nhso(app)
    doc = build_document(app)
    schema = doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]
    return Draft202012Validator({**schema["schema"], "components": doc["components"]})


def agent_claim_view(n: int, status: str) -> dict[str, Any]:
    """One claim as the agent's ``GET /v1/claims`` lists it: the outbox's own view."""
    from agent.nhso.outbox import Claim
    from agent.nhso.settings import NhsoSettings
    from agent.nhso.validation import validate_claim
    from testrig.nhso_support import HCODE, RECORDER_PID, SOURCE_ID, claim_body
    body = validate_claim(claim_body(n), NhsoSettings(hcode=HCODE, source_id=SOURCE_ID,
                                                      recorder_pid=RECORDER_PID))
    failed = status == "failed"
    return Claim(id=f"claim-{n}", transaction_id=body["transactionId"], body=body,
                 pid=body["pid"], hcode=HCODE, service_code=body["claimServiceCode"],
                 service_date="2026-03-10", status=status, in_doubt=False,
                 attempts=int(failed), next_attempt_at=0.0, authen_code=None, seq=None,
                 recovered=False, error_code="nhso_rejected" if failed else None,
                 error_message="refused" if failed else None, due_flagged=False,
                 created_at=1.7e9, updated_at=1.7e9, sent_at=None).view()


class ClaimsServer:
    """A stand-in for the agent's claims API: records the retry call.

    Its answers have the agent's shapes: claims are the outbox's own views, and every
    answer is checked against the agent's OpenAPI document before it is sent.
    """

    def __init__(self) -> None:
        self.retries: list[Any] = []
        self.failed = 2
        self.pending = 1

    @staticmethod
    def answer(path: str, method: str, body: dict[str, Any]) -> web.Response:
        agent_contract(path, method).validate(body)
        return web.json_response(body)

    async def status(self, request: web.Request) -> web.Response:
        from agent import __version__
        from agent.config import Config
        config = Config(default_terminal=READER, sources={"allowed_origins": "policy"})
        return self.answer("/v1/status", "get", {
            "name": "thaicard-agent", "version": __version__,
            "started_at": "2026-03-10T09:00:00+07:00", "uptime_s": 1.0, "backend": "pcsc",
            "pcsc": {"state": "available", "error": None, "detail": None}, "readers": [],
            "reads": 0,
            "events": {"clients": 0, "last_seq": 0}, "refused": 0,
            "refusals": {"counts": {}, "recent": []}, "lan": {"enabled": False},
            "nhso": {"available": True, "tokenConfigured": True,
                     "token": {"state": "accepted", "since": None, "message": "",
                               "action_en": "", "action_th": ""}},
            "config": config.public_view()})

    async def claims(self, request: web.Request) -> web.Response:
        wanted = {"failed": [agent_claim_view(n, "failed") for n in range(self.failed)],
                  "queued,sending": [agent_claim_view(10 + n, "queued")
                                     for n in range(self.pending)],
                  "needs_review": []}[request.query["status"]]
        return self.answer("/v1/claims", "get", {"claims": wanted, "count": len(wanted)})

    async def retry(self, request: web.Request) -> web.Response:
        self.retries.append((await request.json(), request.headers.get("Origin")))
        requeued, self.failed = self.failed, 0
        self.pending += requeued
        return self.answer("/v1/claims/retry", "post",
                           {"requeued": requeued, "queued": self.pending})


def test_the_fake_claims_server_keeps_to_the_agent_contract() -> None:
    """The old fake answered ``{"retried": 2}``, a field the agent never sends."""
    from jsonschema import ValidationError
    with pytest.raises(ValidationError):
        agent_contract("/v1/claims/retry", "post").validate({"retried": 2})
    with pytest.raises(ValidationError):
        agent_contract("/v1/claims", "get").validate({"claims": [{}]})


async def test_sync_and_retry_claims_over_http(aiohttp_server: Any, tmp_path: Path) -> None:
    fake = ClaimsServer()
    web_app = web.Application()
    web_app.router.add_get("/v1/status", fake.status)
    web_app.router.add_get("/v1/claims", fake.claims)
    web_app.router.add_post("/v1/claims/retry", fake.retry)
    server = await aiohttp_server(web_app)
    loop = LoopThread()
    loop.start()
    try:
        a = TrayApp(str(server.make_url("")), loop, prefs_path=tmp_path / "p.json",
                    popen=Children())
        a.prefs.language = "en"
        await __import__("asyncio").to_thread(a.sync_from_agent)
        assert (a.nhso, a.default_reader, a.locked_keys) == (True, READER, ["allowedOrigins"])
        assert (a.state.claims_pending, a.state.claims_failed, a.state.token_set) == (1, 2, True)
        a.run_async = lambda fn: fn()
        await __import__("asyncio").to_thread(a.invoke, "claims.retry")
        assert fake.retries == [({"status": "failed"}, None)]      # no Origin header
        assert (a.state.claims_failed, a.state.claims_pending) == (0, 3)
    finally:
        loop.stop()


def test_quit_stops_the_agent_and_the_wait(app: TrayApp) -> None:
    waiter = threading.Thread(target=app.wait_headless)
    waiter.start()
    app.invoke("quit")
    waiter.join(5)
    assert not waiter.is_alive()


def test_review_and_refused_token_items_open_the_status_page() -> None:
    st = TrayState(connected=True, ever_connected=True, pcsc="available")
    st.claims_review, st.token_refused = 2, True
    actions = Recorder()
    items = build_menu(st, MenuView(lang="en", nhso=True), actions)
    assert find(items, "status.review").text == "2 claim(s) need your review: open"
    assert find(items, "status.token").text == "NHSO refuses the token: claims wait"
    find(items, "status.review").action()
    find(items, "status.token").action()
    assert [name for name, _ in actions.calls] == ["open_status_page"] * 2
    th = build_menu(st, MenuView(lang="th", nhso=True), actions)
    assert "รอเจ้าหน้าที่ตรวจสอบ" in find(th, "status.review").text
    tip = tooltip(st, "en")
    assert "NHSO refuses the token" in tip and "need your review" in tip


def test_an_icon_that_closes_by_itself_is_tried_again_and_the_agent_keeps_serving() -> None:
    """pystray's loop returns at once when the OS has no notification area yet (a logon
    before the shell, Wine's explorer starting): the tray tries the icon again instead of
    quitting the agent it runs, and keeps serving without an icon after the last try."""
    from tray.cli import show_icon

    class Stub:
        def __init__(self, quit_on: int | None) -> None:
            self._stopped = threading.Event()
            self.runs = 0
            self.quit_on = quit_on
            self.headless = 0

        def run_icon(self, icon: object) -> None:
            self.runs += 1
            if self.runs == self.quit_on:
                self._stopped.set()           # shown until staff chose Quit

        def wait_headless(self) -> None:
            self.headless += 1

    made: list[int] = []
    app = Stub(quit_on=3)
    show_icon(app, lambda: made.append(1) or object(), retries=5, delay=0.01)
    assert (app.runs, len(made), app.headless) == (3, 3, 0)
    app = Stub(quit_on=None)
    show_icon(app, object, retries=2, delay=0.01)
    assert (app.runs, app.headless) == (3, 1)
    app = Stub(quit_on=None)
    threading.Timer(0.05, app._stopped.set).start()      # quit while waiting to retry
    show_icon(app, object, retries=100, delay=0.5)
    assert app.runs == 1 and app.headless == 0


class UndockedIcon:
    """pystray's plain X11 icon as keep_docked sees it: ``_systray_manager`` is None until a
    notification area took it; pystray asks for one whenever the image is set."""

    def __init__(self, docks_on: int) -> None:
        self._systray_manager: object | None = None
        self.docks_on, self.sets = docks_on, 0
        self.title, self.HAS_MENU = "", False
        self._image: Any = None

    @property
    def icon(self) -> Any:
        return self._image

    @icon.setter
    def icon(self, image: Any) -> None:
        self.sets += 1
        self._image = image
        if self.sets >= self.docks_on:
            self._systray_manager = object()

    def stop(self) -> None:
        pass


def test_an_icon_no_notification_area_took_asks_again_until_one_does(app: TrayApp) -> None:
    icon = UndockedIcon(docks_on=3)
    app.icon = icon
    watcher = threading.Thread(target=app.keep_docked, args=(icon,),
                               kwargs={"first_wait": 0.01, "longest_wait": 0.02,
                                       "watch": 0.05})
    watcher.start()
    try:
        wait_for(lambda: icon._systray_manager is not None, "asked until it was taken",
                 every=0.01)
        asked = icon.sets
        wait_for(lambda: icon.sets != asked, "drawn once more, once it is held", every=0.01)
        asked += 1
        assert icon.sets == asked
        time.sleep(0.2)
        assert icon.sets == asked                         # then no more asking
        assert icon.icon is not None                      # with the current state's image
        icon._systray_manager = None                      # the panel restarted
        wait_for(lambda: icon.sets > asked, "asked again after the panel restarted",
                 every=0.01)
    finally:
        app.quit()
        watcher.join(30)
    assert not watcher.is_alive()


def test_an_icon_of_a_backend_the_os_docks_is_left_alone(app: TrayApp) -> None:
    icon = UndockedIcon(docks_on=1)
    del icon._systray_manager
    app.keep_docked(icon, first_wait=0.01)               # returns at once
    assert icon.sets == 0
