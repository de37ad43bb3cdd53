"""The tray menu as plain data, built fresh from the state on every change.

``build_menu`` returns ``Item``s that know nothing of pystray, so the same menu is shown
by pystray (``to_pystray``) on Windows, macOS and GTK, by the popup of ``tray.popup`` where
the tray backend has no menus (plain X11), and checked by tests without any display.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from .i18n import text
from .state import Status, TrayState


class Actions(Protocol):
    def open_status_page(self) -> None: ...
    def copy_url(self) -> None: ...
    def open_settings(self) -> None: ...
    def set_default_reader(self, name: str | None) -> None: ...
    def set_language(self, choice: str) -> None: ...
    def set_token(self) -> None: ...
    def clear_token(self) -> None: ...
    def retry_claims(self) -> None: ...
    def toggle_autostart(self) -> None: ...
    def open_logs(self) -> None: ...
    def open_diagnostics(self) -> None: ...
    def support_bundle(self) -> None: ...
    def about(self) -> None: ...
    def quit(self) -> None: ...
    def demo_toggle(self) -> None: ...


@dataclass(frozen=True)
class Item:
    key: str                                  # stable name: tests and the popup use it
    text: str
    action: Callable[[], None] | None = None
    checked: bool | None = None               # None: not a check item
    radio: bool = False
    enabled: bool = True
    default: bool = False                     # the left-click action where supported
    submenu: tuple[Item, ...] = field(default=())

    @property
    def is_separator(self) -> bool:
        return self.key == "-"


SEPARATOR = Item("-", "-")


@dataclass(frozen=True)
class MenuView:
    """Everything besides the agent state that the menu shows."""

    lang: str
    language_choice: str = "auto"            # auto | th | en
    default_reader: str | None = None
    autostart: bool | None = None            # None: not supported here
    version: str = ""
    nhso: bool = False                       # the agent has the NHSO part (token, claims)
    demo_card_in: bool | None = None         # None: not the demo reader of this process


def status_line(state: TrayState, lang: str) -> str:
    return text("state." + state.status.value, lang)


def tooltip(state: TrayState, lang: str) -> str:
    """One line for the icon's tooltip; Windows cuts tooltips at 127 characters."""
    parts = ["Thai Card Agent", status_line(state, lang)]
    if state.status is Status.ERROR and state.error_codes:
        parts[-1] += f" ({state.error_codes[0]})"
    if state.token_refused:
        parts.append(text("token.refused", lang))
    if state.claims_review:
        parts.append(text("claims.review", lang, n=state.claims_review))
    elif state.claims_failed:
        parts.append(text("claims.failed", lang, n=state.claims_failed))
    elif state.claims_pending:
        parts.append(text("claims.pending", lang, n=state.claims_pending))
    line = " — ".join(parts)
    return line if len(line) <= 127 else line[:126] + "…"


def _reader_text(view: Any, lang: str) -> str:
    if not view.present:
        word = text("reader.empty", lang)
    else:
        word = text({"reading": "reader.reading", "error": "reader.error"}.get(
            view.status, "reader.card"), lang)
    return f"{view.name}: {word}"


def build_menu(state: TrayState, view: MenuView, actions: Actions) -> tuple[Item, ...]:
    lang = view.lang
    items: list[Item] = [Item("status", status_line(state, lang), enabled=False)]
    if state.claims_failed or state.claims_pending:
        key = "claims.failed" if state.claims_failed else "claims.pending"
        n = state.claims_failed or state.claims_pending
        items.append(Item("status.claims", text(key, lang, n=n), enabled=False))
    if state.token_refused:
        # NHSO refuses the token: claims wait; the status page says what to do.
        items.append(Item("status.token", text("token.refused", lang),
                          actions.open_status_page))
    if state.claims_review:
        # Claims nothing will send until staff choose: the status page lists them.
        items.append(Item("status.review", text("claims.review", lang, n=state.claims_review),
                          actions.open_status_page))
    if state.refused_sources:
        # Refused pages / LAN servers: the status page lists them and can allow a page.
        items.append(Item("status.refused", text("refused.count", lang,
                                                 n=len(state.refused_sources)),
                          actions.open_status_page))

    readers = tuple(Item(f"reader:{r.name}", _reader_text(r, lang), checked=r.present,
                         enabled=False) for r in state.readers.values())
    items.append(Item("readers", text("menu.readers", lang),
                      submenu=readers or (Item("readers.none", text("menu.no_readers", lang),
                                               enabled=False),)))
    if state.last_card is not None:
        card = state.last_card
        items.append(Item("last_card", text("menu.last_card", lang, cid=card.masked_id,
                                            name=card.name(lang)), enabled=False))
    items += [
        SEPARATOR,
        Item("open_status", text("menu.open_status", lang), actions.open_status_page,
             default=True),
        Item("copy_url", text("menu.copy_url", lang), actions.copy_url),
        Item("settings", text("menu.settings", lang), submenu=_settings(state, view, actions)),
    ]
    if view.nhso:
        items.append(Item("claims", text("menu.claims", lang, pending=state.claims_pending,
                                         failed=state.claims_failed), submenu=(
            Item("claims.retry", text("menu.claims_retry", lang), actions.retry_claims,
                 enabled=state.claims_failed > 0),
        )))
    if view.autostart is not None:
        items.append(Item("autostart", text("menu.autostart", lang), actions.toggle_autostart,
                          checked=view.autostart))
    if view.demo_card_in is not None:
        items.append(Item("demo", text("menu.demo_remove" if view.demo_card_in
                                       else "menu.demo_insert", lang), actions.demo_toggle))
    items += [
        Item("diagnostics", text("menu.diagnostics", lang), actions.open_diagnostics),
        Item("support_bundle", text("menu.support_bundle", lang), actions.support_bundle),
        Item("logs", text("menu.logs", lang), actions.open_logs),
        Item("about", text("menu.about", lang, version=view.version), actions.about),
        SEPARATOR,
        Item("quit", text("menu.quit", lang), actions.quit),
    ]
    return tuple(items)


def _settings(state: TrayState, view: MenuView, actions: Actions) -> tuple[Item, ...]:
    lang = view.lang
    names = list(state.readers)
    if view.default_reader and view.default_reader not in names:
        names.append(view.default_reader)     # keep a configured reader that is unplugged
    reader_items = [Item("default_reader:", text("menu.default_reader_auto", lang),
                         lambda: actions.set_default_reader(None),
                         checked=view.default_reader is None, radio=True)]
    for name in names:
        reader_items.append(Item(f"default_reader:{name}", name,
                                 partial(actions.set_default_reader, name),
                                 checked=view.default_reader == name, radio=True))
    languages = (("auto", text("menu.language_auto", lang)), ("th", "ไทย"), ("en", "English"))
    items = [
        Item("settings.open", text("menu.settings_open", lang), actions.open_settings),
        Item("default_reader", text("menu.default_reader", lang), submenu=tuple(reader_items)),
        Item("language", text("menu.language", lang), submenu=tuple(
            Item(f"language:{code}", label, partial(actions.set_language, code),
                 checked=view.language_choice == code, radio=True)
            for code, label in languages)),
    ]
    if view.nhso:
        items += [SEPARATOR,
                  Item("token.set", text("menu.token_set", lang), actions.set_token),
                  Item("token.clear", text("menu.token_clear", lang), actions.clear_token,
                       enabled=state.token_set is not False)]
    return tuple(items)


def find(items: Sequence[Item], key: str) -> Item:
    """The item with ``key`` anywhere in the menu tree (tests and the popup use it)."""
    for item in items:
        if item.key == key:
            return item
        if item.submenu:
            try:
                return find(item.submenu, key)
            except KeyError:
                pass
    raise KeyError(key)


def to_pystray(items: Sequence[Item]) -> Any:
    """The same menu as pystray objects (imported here: pystray picks its backend on import)."""
    import pystray

    def convert(entries: Sequence[Item]) -> Any:
        out = []
        for item in entries:
            if item.is_separator:
                out.append(pystray.Menu.SEPARATOR)
                continue
            if item.submenu:
                action: Any = convert(item.submenu)
            elif item.action is not None:
                action = (lambda fn: lambda _icon, _item: fn())(item.action)
            else:
                action = None
            checked = None if item.checked is None else (lambda v: lambda _item: v)(item.checked)
            out.append(pystray.MenuItem(item.text, action, checked=checked, radio=item.radio,
                                        enabled=item.enabled, default=item.default))
        return pystray.Menu(*out)

    return convert(items)


def to_plain(items: Sequence[Item]) -> list[dict[str, Any]]:
    """A JSON-able copy (for the popup process)."""
    out: list[dict[str, Any]] = []
    for item in items:
        out.append({"key": item.key, "text": item.text, "checked": item.checked,
                    "radio": item.radio, "enabled": item.enabled and (
                        item.action is not None or bool(item.submenu) or item.is_separator),
                    "submenu": to_plain(item.submenu)})
    return out
