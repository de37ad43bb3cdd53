"""Small Tk windows the tray opens in a child process: the menu where the tray backend
has none (plain X11), the NHSO token dialog, and message boxes.

A child process keeps Tk away from the tray's own event loop (pystray owns the main
thread, and on macOS only the main thread may draw). The menu is passed as JSON on stdin;
the chosen item's key comes back on stdout.

    python -m tray.popup menu [--at X,Y] < menu.json
    python -m tray.popup token --lang th
    python -m tray.popup settings --lang th [--locked port,allowedOrigins]
    python -m tray.popup clip --text URL
    python -m tray.popup message --title T --text MESSAGE
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from .i18n import text

FONT = ("TkMenuFont",)


def _root() -> Any:
    import tkinter

    root = tkinter.Tk(className="thaicard-agent")
    root.withdraw()
    return root


def show_menu(items: list[dict[str, Any]], at: tuple[int, int] | None = None) -> str | None:
    """Pop the menu up at ``at`` (default: the pointer); the chosen key, or None."""
    import tkinter

    root = _root()
    chosen: list[str] = []
    radio_vars: list[Any] = []

    def pick(key: str) -> None:
        chosen.append(key)
        root.after(0, root.quit)

    def fill(menu: Any, entries: list[dict[str, Any]]) -> None:
        group = tkinter.StringVar(root)
        radio_vars.append(group)
        for entry in entries:
            if entry["key"] == "-":
                menu.add_separator()
                continue
            state = "normal" if entry["enabled"] else "disabled"
            if entry["submenu"]:
                sub = tkinter.Menu(menu, tearoff=0)
                fill(sub, entry["submenu"])
                menu.add_cascade(label=entry["text"], menu=sub, state=state)
            elif entry["radio"]:
                if entry["checked"]:
                    group.set(entry["key"])
                menu.add_radiobutton(label=entry["text"], variable=group, value=entry["key"],
                                     state=state, command=lambda k=entry["key"]: pick(k))
            elif entry["checked"] is not None:
                var = tkinter.BooleanVar(root, value=bool(entry["checked"]))
                radio_vars.append(var)
                menu.add_checkbutton(label=entry["text"], variable=var, state=state,
                                     command=lambda k=entry["key"]: pick(k))
            else:
                menu.add_command(label=entry["text"], state=state,
                                 command=lambda k=entry["key"]: pick(k))

    menu = tkinter.Menu(root, tearoff=0)
    fill(menu, items)

    def closed(_event: Any = None) -> None:
        # Unmapped without a choice: the user clicked elsewhere. A choice, when made,
        # arrives first, so a short grace period is enough.
        root.after(150, root.quit)

    menu.bind("<Unmap>", closed)
    x, y = at if at is not None else root.winfo_pointerxy()
    root.after(10, lambda: menu.tk_popup(x, y))
    root.mainloop()
    try:
        root.destroy()
    except tkinter.TclError:
        pass
    return chosen[0] if chosen else None


def token_dialog(lang: str) -> str | None:
    """Ask for the NHSO token; the token typed (stripped), or None when cancelled."""
    import tkinter

    root = _root()
    root.title(text("menu.token", lang) + " — Thai Card Agent")
    root.resizable(False, False)
    result: list[str] = []
    frame = tkinter.Frame(root, padx=16, pady=12)
    frame.pack(fill="both", expand=True)
    tkinter.Label(frame, text=text("dialog.token_prompt", lang), anchor="w").pack(fill="x")
    entry = tkinter.Entry(frame, show="•", width=48)
    entry.pack(fill="x", pady=8)
    buttons = tkinter.Frame(frame)
    buttons.pack(anchor="e")

    def ok(_event: Any = None) -> None:
        value = entry.get().strip()
        if value:
            result.append(value)
        root.quit()

    tkinter.Button(buttons, text=text("dialog.cancel", lang), command=root.quit).pack(
        side="right", padx=(6, 0))
    tkinter.Button(buttons, text=text("dialog.ok", lang), command=ok, default="active").pack(
        side="right")
    entry.bind("<Return>", ok)
    root.bind("<Escape>", lambda _e: root.quit())
    root.protocol("WM_DELETE_WINDOW", root.quit)
    root.deiconify()
    root.after(50, entry.focus_force)
    root.mainloop()
    root.destroy()
    return result[0] if result else None


def settings_dialog(lang: str, locked: list[str]) -> dict[str, Any] | None:
    """Port and allowed websites; the changed JSON keys, or None when cancelled."""
    import tkinter

    from agent.config import load_config

    current = load_config()
    root = _root()
    root.title(text("menu.settings", lang) + " — Thai Card Agent")
    frame = tkinter.Frame(root, padx=16, pady=12)
    frame.pack(fill="both", expand=True)
    tkinter.Label(frame, text=text("settings.port", lang), anchor="w").grid(
        row=0, column=0, sticky="w")
    port = tkinter.Entry(frame, width=8)
    port.insert(0, str(current.port))
    port.grid(row=0, column=1, sticky="w", pady=4)
    tkinter.Label(frame, text=text("settings.origins", lang), anchor="w").grid(
        row=1, column=0, columnspan=2, sticky="w")
    origins = tkinter.Text(frame, width=56, height=6)
    origins.insert("1.0", "\n".join(current.allowed_origins))
    origins.grid(row=2, column=0, columnspan=2, sticky="we", pady=4)
    for key, widget in (("port", port), ("allowedOrigins", origins)):
        if key in locked:
            widget.configure(state="disabled")
    if locked:
        tkinter.Label(frame, text=text("settings.locked", lang), fg="#a00").grid(
            row=3, column=0, columnspan=2, sticky="w")
    result: list[dict[str, Any]] = []

    def ok() -> None:
        changes: dict[str, Any] = {}
        if "port" not in locked and port.get().strip() != str(current.port):
            value = port.get().strip()
            changes["port"] = int(value) if value.isdigit() else value
        lines = [o.strip() for o in origins.get("1.0", "end").split() if o.strip()]
        if "allowedOrigins" not in locked and tuple(lines) != tuple(current.allowed_origins):
            changes["allowedOrigins"] = lines
        result.append(changes)
        root.quit()

    buttons = tkinter.Frame(frame)
    buttons.grid(row=4, column=0, columnspan=2, sticky="e", pady=(8, 0))
    tkinter.Button(buttons, text=text("dialog.cancel", lang), command=root.quit).pack(
        side="right", padx=(6, 0))
    tkinter.Button(buttons, text=text("dialog.ok", lang), command=ok).pack(side="right")
    port.bind("<Return>", lambda _e: ok())
    root.bind("<Escape>", lambda _e: root.quit())
    root.protocol("WM_DELETE_WINDOW", root.quit)
    root.deiconify()
    if "port" not in locked:
        # Typing replaces the port at once, like a selected field in any dialog.
        def focus_port() -> None:
            port.focus_force()
            port.select_range(0, "end")

        root.after(50, focus_port)
    root.mainloop()
    root.destroy()
    return result[0] if result else None


def hold_clipboard(value: str, limit_s: int = 600) -> None:
    """Own the X clipboard until another program takes it (X has no clipboard store)."""
    import tkinter

    root = _root()
    root.clipboard_clear()
    root.clipboard_append(value)
    root.update()

    def check(left: int) -> None:
        try:
            still = root.clipboard_get() == value
        except tkinter.TclError:
            still = False
        if not still or left <= 0:
            root.quit()
        else:
            root.after(1000, check, left - 1)

    root.after(1000, check, limit_s)
    root.mainloop()
    root.destroy()


def message_box(title: str, message: str, *, error: bool = False) -> None:
    from tkinter import messagebox

    root = _root()
    (messagebox.showerror if error else messagebox.showinfo)(title, message, parent=root)
    root.destroy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tray.popup")
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("menu")
    p.add_argument("--at", help="X,Y on screen (default: the pointer)")
    p = sub.add_parser("token")
    p.add_argument("--lang", default="en")
    p = sub.add_parser("settings")
    p.add_argument("--lang", default="en")
    p.add_argument("--locked", default="")
    p = sub.add_parser("clip")
    p.add_argument("--text", required=True)
    p = sub.add_parser("message")
    p.add_argument("--title", default="Thai Card Agent")
    p.add_argument("--text", required=True)
    p.add_argument("--error", action="store_true")
    args = parser.parse_args(argv)

    if args.what == "menu":
        at = None
        if args.at:
            x, y = (int(v) for v in args.at.split(",", 1))
            at = (x, y)
        key = show_menu(json.load(sys.stdin), at)
        if key is None:
            return 1
        print(key, flush=True)
        return 0
    if args.what == "token":
        return _set_token(args.lang)
    if args.what == "settings":
        changes = settings_dialog(args.lang, [k for k in args.locked.split(",") if k])
        if changes is None:
            return 1
        print(json.dumps(changes), flush=True)
        return 0
    if args.what == "clip":
        hold_clipboard(args.text)
        return 0
    message_box(args.title, args.text, error=args.error)
    return 0


def _set_token(lang: str, dialog: Callable[[str], str | None] | None = None) -> int:
    """The dialog stores the token itself: it never passes through the tray's pipes.

    Through the same use case as ``thaicard-agent token set``: the configured hospital
    code is recorded as the token's (``tokenHcode``).
    """
    from agent.errors import AgentError
    from agent.usecases import set_token

    ask = dialog or token_dialog
    try:
        saved = set_token(lambda: ask(lang), require_hcode=False)
    except AgentError as exc:
        detail = f" ({exc.detail})" if getattr(exc, "detail", None) else ""
        message_box("Thai Card Agent", text("msg.action_failed", lang, error=(
            exc.info.message_th if lang == "th" else exc.info.message_en) + detail), error=True)
        return 2
    if saved is None:
        return 1
    message_box("Thai Card Agent", text("msg.token_set", lang))
    return 0


if __name__ == "__main__":
    sys.exit(main())
