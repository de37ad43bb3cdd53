"""Set and clear the NHSO token the same way from the CLI, the tray menu and its dialog."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import keyring
import pytest

from agent import osroom, usecases
from agent.nhso import cli as nhso_cli
from agent.nhso import settings as nhso_settings
from agent.nhso.token import TokenStore
from agent.osroom import LinuxRoom
from testrig.nhso_support import HCODE, TOKEN, MemoryKeyring
from tests.test_tray_menu import app, loop_thread  # the tray fixture (dummy pystray)
from tray import popup
from tray.app import TrayApp


@pytest.fixture
def memory_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MemoryKeyring:
    """This user's settings in tmp_path, no machine-wide file or policy, an in-memory keyring."""
    monkeypatch.setenv("THAICARD_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("THAICARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(nhso_settings, "site_settings_path", lambda: tmp_path / "site.json")
    monkeypatch.setattr(osroom, "current", lambda: LinuxRoom(tmp_path / "policy.json"))
    previous = keyring.get_keyring()
    memory = MemoryKeyring()
    keyring.set_keyring(memory)
    yield memory
    keyring.set_keyring(previous)


def user_settings(tmp_path: Path) -> dict:
    path = tmp_path / "config" / "nhso.json"
    return json.loads(path.read_text()) if path.exists() else {}


def configure(tmp_path: Path, **values: str) -> None:
    (tmp_path / "config").mkdir(parents=True, exist_ok=True)
    (tmp_path / "config" / "nhso.json").write_text(json.dumps(values))


def stored(memory: MemoryKeyring) -> str | None:
    return memory.get_password("thaicard-agent", "nhso-token")


def test_the_token_dialog_records_the_hcode_like_the_cli(memory_keyring, tmp_path, monkeypatch):
    shown: list[str] = []
    monkeypatch.setattr(popup, "message_box", lambda _t, message, error=False: shown.append(
        message))
    configure(tmp_path, hcode=HCODE)
    assert popup._set_token("en", dialog=lambda _lang: TOKEN) == 0
    assert stored(memory_keyring) == TOKEN
    from_dialog = user_settings(tmp_path)
    assert from_dialog == {"hcode": HCODE, "tokenHcode": HCODE}
    assert shown == ["NHSO token saved in the system keyring."]

    # The CLI, from the same starting point, leaves the same settings behind.
    configure(tmp_path, hcode=HCODE)
    memory_keyring.secrets.clear()
    monkeypatch.setattr(nhso_cli, "read_token_input", lambda: TOKEN + "\n")
    assert nhso_cli.cmd_token_set(argparse.Namespace(hcode=None)) == 0
    assert stored(memory_keyring) == TOKEN and user_settings(tmp_path) == from_dialog


def test_the_token_dialog_cancelled_or_without_an_hcode(memory_keyring, tmp_path, monkeypatch):
    monkeypatch.setattr(popup, "message_box", lambda *_a, **_k: None)
    assert popup._set_token("en", dialog=lambda _lang: None) == 1
    assert stored(memory_keyring) is None and user_settings(tmp_path) == {}
    # No hospital code configured and no field for one in the dialog: the token is kept,
    # and no code is recorded for it (the CLI asks for --hcode instead).
    assert popup._set_token("en", dialog=lambda _lang: TOKEN) == 0
    assert stored(memory_keyring) == TOKEN and "tokenHcode" not in user_settings(tmp_path)


def test_the_cli_needs_an_hcode_and_warns_on_a_mismatch(memory_keyring, tmp_path, capsys):
    asked: list[str] = []
    with pytest.raises(nhso_settings.SettingsError, match="--hcode"):
        usecases.set_token(lambda: asked.append("x") or TOKEN)
    assert asked == []                         # refused before the secret was asked for
    configure(tmp_path, hcode="11111")
    saved = usecases.set_token(lambda: TOKEN, hcode=HCODE,
                               store=TokenStore(memory_keyring))
    assert saved is not None and saved.hcode_mismatch and saved.masked.endswith("characters)")
    assert user_settings(tmp_path) == {"hcode": "11111", "tokenHcode": HCODE}


def test_clearing_from_the_tray_forgets_the_token_hcode(memory_keyring, tmp_path,
                                                        app: TrayApp) -> None:
    configure(tmp_path, hcode=HCODE, tokenHcode=HCODE)
    memory_keyring.set_password("thaicard-agent", "nhso-token", TOKEN)
    app.nhso = True
    app.state.token_set = True
    app.render()
    app.invoke("token.clear")
    assert stored(memory_keyring) is None
    assert user_settings(tmp_path) == {"hcode": HCODE}
    assert app.messages[-1][0] == "NHSO token removed."
