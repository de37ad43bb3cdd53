"""The PyInstaller bundle: it starts, serves, and carries what the installers promise.

Built once per run from installer/thaicard-agent.spec (tests/installer_support.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.installer_support import (
    frozen_bundle,
    isolated_env,
    package_version,
    pyz_modules,
    run,
    serve_and_get_status,
    settings_dialog_opens,
)

pytestmark = pytest.mark.timeout(900)     # the first test pays for the PyInstaller build


@pytest.fixture(scope="module")
def bundle() -> Path:
    return frozen_bundle()


def test_version_is_the_package_version(bundle):
    for name in ("thaicard-agent", "thaicard-agent-tray"):
        out = run([str(bundle / name), "--version"])
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"thaicard-agent {package_version()}"


def test_demo_read_prints_the_card(bundle):
    out = run([str(bundle / "thaicard-agent"), "read", "--demo", "--no-photo"])
    assert out.returncode == 0, out.stderr
    card = json.loads(out.stdout)
    # The demo card's values, written out: Thai text comes through cp874, which a bundle
    # missing its codecs would garble, and the dates through the Buddhist-era decoder.
    assert card["citizen_id"] == "1999900000005" and card["citizen_id_valid"] is True
    assert card["name_th"]["full"] == "นายทดสอบ ระบบอ่านบัตร"
    assert card["name_en"]["full"] == "Mr. Demo Cardreader"
    assert card["birth_date"]["iso"] == "1987-01-15" and card["gender"]["en"] == "male"
    assert card["issue_date"]["raw"] == "25660401" and card["expiry_date"]["iso"] == "2032-01-14"
    assert card["address"]["parts"][7] == "จังหวัดนนทบุรี"
    assert card["photo"] is None and card["read"]["apdus"] == 7     # text only: 7 APDUs
    # Everything else as the source tree reads the same card (timings aside).
    source = json.loads(run([sys.executable, "-m", "agent", "read", "--demo",
                             "--no-photo"]).stdout)
    for reads in (card, source):
        for key in ("text_ms", "photo_ms", "total_ms"):
            reads["read"].pop(key)
    assert card == source


def test_serve_answers_status(bundle, tmp_path):
    status = serve_and_get_status([str(bundle / "thaicard-agent")], tmp_path)
    assert status["name"] == "thaicard-agent"
    assert status["version"] == package_version()
    assert status["backend"] == "demo"
    assert status["config"]["port"] > 0


def test_bundle_has_the_backends_loaded_by_name(bundle):
    """pystray, keyring and the CLI import these by name, which PyInstaller cannot see."""
    modules = pyz_modules(bundle / "thaicard-agent")
    for name in ("pystray._xorg", "pystray._gtk", "pystray._appindicator", "pystray._dummy",
                 "keyring.backends.SecretService", "keyring.backends.libsecret",
                 "keyring.backends.chainer", "agent.server_cli", "agent.api.server",
                 "agent.assembly",
                 "agent.nhso.cli", "tray.cli", "aiohttp.web", "smartcard.scard"):
        assert name in modules, f"{name} is not in the bundle"
    # keyring finds its backends through entry points: the metadata must travel too.
    assert list((bundle / "_internal").glob("keyring-*.dist-info/entry_points.txt"))


def test_bundle_never_ships_keyrings_alt(bundle):
    """keyrings.alt would silently become the token store and keep it base64-encoded."""
    modules = pyz_modules(bundle / "thaicard-agent")
    assert not {m for m in modules if m == "keyrings" or m.startswith("keyrings.")}
    internal = bundle / "_internal"
    assert not list(internal.glob("keyrings*")) and not list(internal.glob("keyrings.alt*"))


def test_frozen_tray_opens_its_settings_dialog(bundle, tmp_path):
    """The tray's windows are Tk: a bundle without tkinter (or Tcl/Tk's scripts) has a tray
    whose every dialog fails, silently from the windowed tray."""
    settings_dialog_opens([str(bundle / "thaicard-agent")], isolated_env(tmp_path))
    assert (bundle / "_internal" / "_tcl_data").is_dir()
