"""The NHSO token in a real OS keyring: gnome-keyring's Secret Service inside
dbus-run-session, driven through the ``thaicard-agent token`` commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from keyring.backend import KeyringBackend
from keyring.backends.chainer import ChainerBackend

from agent.errors import ERROR_TABLE, KeyringInsecure, KeyringUnavailable
from agent.nhso.token import TokenStore, backend_problem, mask
from testrig.nhso_support import HCODE, ROOT, TOKEN, run_cli, secret_service

EXIT_KEYRING = ERROR_TABLE["keyring_unavailable"].exit_code
EXIT_NO_TOKEN = ERROR_TABLE["nhso_token_missing"].exit_code


@pytest.fixture(scope="module")
def keyring_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nhso-keyring")
    with secret_service(tmp / "home") as env:
        env = {**env, "THAICARD_CONFIG_DIR": str(tmp / "config"),
               "THAICARD_DATA_DIR": str(tmp / "data")}
        env.pop("THAICARD_NHSO_HCODE", None)
        yield env, tmp


def keyring_get(env: dict[str, str]) -> tuple[str, str | None]:
    """What the default keyring of that session holds, asked by a separate process."""
    code = ("import json, keyring; k = keyring.get_keyring(); "
            "print(json.dumps([type(k).__module__, "
            "keyring.get_password('thaicard-agent', 'nhso-token')]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=30).stdout
    module, value = json.loads(out)
    return module, value


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_set_status_clear_in_secret_service(keyring_env):
    env, tmp = keyring_env
    r = run_cli(["token", "status"], env)
    assert r.returncode == EXIT_NO_TOKEN and "No NHSO token" in r.stdout

    r = run_cli(["token", "set", "--hcode", HCODE], env, stdin=TOKEN + "\n")
    assert r.returncode == 0, r.stderr
    assert mask(TOKEN) in r.stdout and "SecretService" in r.stdout
    assert TOKEN not in r.stdout + r.stderr

    module, stored = keyring_get(env)
    assert module == "keyring.backends.SecretService" and stored == TOKEN
    # Only the keyring holds it, and gnome-keyring keeps it encrypted: no file anywhere in
    # this session's home, config or data directories shows the token.
    assert files_containing(tmp, TOKEN.encode()) == []
    settings = json.loads((tmp / "config" / "nhso.json").read_text())
    assert settings == {"hcode": HCODE, "tokenHcode": HCODE}

    r = run_cli(["token", "status"], env)
    assert r.returncode == 0 and mask(TOKEN) in r.stdout and f"hcode {HCODE}" in r.stdout
    assert TOKEN not in r.stdout + r.stderr

    r = run_cli(["nhso", "show"], env)
    assert r.returncode == 0 and TOKEN not in r.stdout
    assert json.loads(r.stdout)["tokenHcode"] == HCODE

    r = run_cli(["token", "clear"], env)
    assert r.returncode == 0 and "removed" in r.stdout
    assert keyring_get(env)[1] is None
    r = run_cli(["token", "status"], env)
    assert r.returncode == EXIT_NO_TOKEN
    r = run_cli(["token", "clear"], env)
    assert r.returncode == 0 and "no NHSO token" in r.stdout


def test_token_is_never_taken_from_argv(keyring_env):
    env, _ = keyring_env
    r = run_cli(["token", "set", "--hcode", HCODE, TOKEN], env)
    assert r.returncode == 2 and "unrecognized arguments" in r.stderr
    assert keyring_get(env)[1] is None


def test_empty_or_bad_token_is_refused(keyring_env):
    env, _ = keyring_env
    for given in ("\n", "two words\n"):
        r = run_cli(["token", "set", "--hcode", HCODE], env, stdin=given)
        assert r.returncode == ERROR_TABLE["bad_request"].exit_code, r.stderr
    assert keyring_get(env)[1] is None


def test_no_keyring_backend_is_a_clear_error(tmp_path):
    # No D-Bus session: keyring falls back to its "fail" backend.
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUS_", "PYTHON_KEYRING"))}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "c"),
               XDG_DATA_HOME=str(tmp_path / "d"), THAICARD_CONFIG_DIR=str(tmp_path / "cfg"))
    r = run_cli(["token", "set", "--hcode", HCODE], env, stdin=TOKEN + "\n")
    assert r.returncode == EXIT_KEYRING
    assert "[keyring_unavailable]" in r.stderr and "Secret Service" in r.stderr
    assert TOKEN not in r.stdout + r.stderr
    r = run_cli(["token", "status"], env)
    assert r.returncode == EXIT_KEYRING
    # The null backend would accept and silently discard it: refused as insecure.
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
    r = run_cli(["token", "set", "--hcode", HCODE], env, stdin=TOKEN + "\n")
    assert r.returncode == ERROR_TABLE["keyring_insecure"].exit_code
    assert "[keyring_insecure]" in r.stderr
    assert not (tmp_path / "cfg" / "nhso.json").exists()


class _PlaintextStore(KeyringBackend):
    """Stands in for a keyrings.alt backend (never installed here, never a dependency)."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def get_password(self, service: str, username: str) -> str | None:
        return "found-in-plaintext"

    def set_password(self, service: str, username: str, password: str) -> None:
        self.writes += 1

    def delete_password(self, service: str, username: str) -> None:
        pass


_PlaintextStore.__module__ = "keyrings.alt.file"


def test_keyrings_alt_backends_are_refused():
    store = _PlaintextStore()
    assert isinstance(backend_problem(store), KeyringInsecure)
    with pytest.raises(KeyringInsecure):
        TokenStore(store).set(TOKEN)
    assert store.writes == 0
    # A token found in such a store is not ours: the agent acts as if none were set.
    assert TokenStore(store).get() is None
    chained = ChainerBackend.__new__(ChainerBackend)
    chained.__dict__["backends"] = [store]
    assert isinstance(backend_problem(chained), KeyringInsecure)
    from keyring.backends import fail
    assert isinstance(backend_problem(fail.Keyring()), KeyringUnavailable)


def test_keyrings_alt_is_not_a_dependency():
    from importlib.metadata import requires
    needs = " ".join(requires("thaicard-agent") or []).lower()
    assert "keyrings.alt" not in needs and "keyrings-alt" not in needs
    text = (ROOT / "pyproject.toml").read_text().lower()
    assert "keyrings.alt" not in text and "keyrings-alt" not in text
