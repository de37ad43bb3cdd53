"""The macOS pkg sources, checked on Linux: plists parse and say what they must, the scripts
pass shellcheck, and build_pkg.sh stages the right tree (pkgbuild itself needs a Mac)."""

from __future__ import annotations

import plistlib
import re
import shutil
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.installer_support import ROOT, package_version, run

MACOS = ROOT / "installer" / "macos"
APP_EXE = "/Applications/Thai Card Agent.app/Contents/MacOS/thaicard-agent-tray"
NHSO = "https://authenservice.nhso.go.th"
needs_shellcheck = pytest.mark.skipif(shutil.which("shellcheck") is None,
                                      reason="needs shellcheck (scripts/setup.sh test)")


def load_plist(name: str) -> dict:
    with (MACOS / name).open("rb") as fh:
        return plistlib.load(fh)


def test_launch_agent_starts_the_tray_in_every_gui_session():
    agent = load_plist("th.thaicard.agent.tray.plist")
    from tray.autostart import LAUNCH_AGENT_LABEL

    # The tray's own per-user toggle uses the same label: launchd never runs both.
    assert agent["Label"] == LAUNCH_AGENT_LABEL
    assert agent["ProgramArguments"] == [APP_EXE, "tray"]
    assert agent["RunAtLoad"] is True
    assert agent["LimitLoadToSessionType"] == "Aqua"
    assert "KeepAlive" not in agent      # Quit in the menu must stay quit


def test_configuration_profile_sets_browser_and_agent_policies():
    profile = load_plist("th.thaicard.agent.mobileconfig")
    assert profile["PayloadType"] == "Configuration" and profile["PayloadScope"] == "System"
    uuids = [profile["PayloadUUID"]] + [p["PayloadUUID"] for p in profile["PayloadContent"]]
    assert len(set(uuids)) == len(uuids) and all(uuid.UUID(u) for u in uuids)
    settings = {}
    for payload in profile["PayloadContent"]:
        assert payload["PayloadType"] == "com.apple.ManagedClient.preferences"
        (domain, body), = payload["PayloadContent"].items()
        settings[domain] = body["Forced"][0]["mcx_preference_settings"]
    for browser in ("com.google.Chrome", "com.microsoft.Edge"):
        assert settings[browser] == {"LocalNetworkAccessAllowedForUrls": [NHSO],
                                     "LoopbackNetworkAllowedForUrls": [NHSO]}
    # Firefox reads a profile's policies only with EnterprisePoliciesEnabled (Mozilla's
    # mac README), and its SkipDomains lists host names, not origins.
    from agent.firefox_policy import skip_domains

    assert settings["org.mozilla.firefox"] == {
        "EnterprisePoliciesEnabled": True,
        "LocalNetworkAccess": {"SkipDomains": skip_domains([NHSO])}}
    # The agent refuses unknown policy keys: the profile must use its names.
    from agent.config import load_config

    agent_policy = settings["th.thaicard.agent"]
    config = load_config(env={"THAICARD_CONFIG": "/nonexistent/none.json"},
                         site_path=Path("/nonexistent/site.json"),
                         policy=lambda: (agent_policy, "managed preferences"))
    assert config.allowed_origins == (NHSO,) and config.port == 8189
    assert set(config.policy_keys) == {"allowed_origins", "port"}


def test_distribution_file():
    text = (MACOS / "distribution.xml").read_text(encoding="utf-8")
    tree = ET.fromstring(text)
    assert tree.tag == "installer-gui-script"
    options = tree.find("options")
    assert options is not None and options.get("hostArchitectures") == "@ARCH@"
    domains = tree.find("domains")
    assert domains is not None and domains.get("enable_localSystem") == "true"
    assert domains.get("enable_currentUserHome") == "false"
    ref = [r for r in tree.iter("pkg-ref") if r.text]
    assert [r.text for r in ref] == ["thaicard-agent-component.pkg"]
    assert ref[0].get("version") == "@VERSION@"


def test_bundle_spec_is_a_menu_bar_app():
    spec = (ROOT / "installer" / "thaicard-agent.spec").read_text(encoding="utf-8")
    assert re.search(r'"LSUIElement":\s*True', spec)
    assert 'bundle_identifier="th.thaicard.agent"' in spec


@needs_shellcheck
def test_pkg_scripts_pass_shellcheck():
    scripts = [MACOS / "scripts" / "preinstall", MACOS / "scripts" / "postinstall",
               MACOS / "uninstall.sh"]
    for script in scripts:
        assert script.stat().st_mode & 0o111, f"{script.name} is not executable"
    out = run(["shellcheck", "--shell=sh", *map(str, scripts)])
    assert out.returncode == 0, out.stdout
    out = run(["shellcheck", str(MACOS / "build_pkg.sh")])
    assert out.returncode == 0, out.stdout


def test_kiosk_launch_agent_opens_the_kiosk():
    kiosk = load_plist("th.thaicard.agent.kiosk.plist")
    assert kiosk["Label"] == "th.thaicard.agent.kiosk"
    assert kiosk["ProgramArguments"] == [APP_EXE, "kiosk"]
    assert kiosk["RunAtLoad"] is True and kiosk["LimitLoadToSessionType"] == "Aqua"


def test_kiosk_build_stages_the_kiosk_launch_agent(tmp_path):
    app = tmp_path / "dist" / "Thai Card Agent.app" / "Contents" / "MacOS"
    app.mkdir(parents=True)
    (app / "thaicard-agent-tray").write_text("#!/bin/sh\n")
    agents = {}
    for kiosk in ("0", "1"):
        out = run(["bash", str(MACOS / "build_pkg.sh"), str(tmp_path / "dist"),
                   str(tmp_path / f"out{kiosk}"), "--stage-only"],
                  env={"PATH": "/usr/bin:/bin", "PKG_ARCH": "arm64", "KIOSK": kiosk})
        assert out.returncode == 0, out.stderr
        folder = tmp_path / f"out{kiosk}" / "stage" / "root" / "Library" / "LaunchAgents"
        agents[kiosk] = sorted(p.name for p in folder.iterdir())
    assert agents == {"0": ["th.thaicard.agent.tray.plist"],
                      "1": ["th.thaicard.agent.kiosk.plist", "th.thaicard.agent.tray.plist"]}
    refused = run(["bash", str(MACOS / "build_pkg.sh"), str(tmp_path / "dist"),
                   str(tmp_path / "bad"), "--stage-only"],
                  env={"PATH": "/usr/bin:/bin", "PKG_ARCH": "arm64", "KIOSK": "yes"})
    assert refused.returncode == 1 and "KIOSK" in refused.stderr


def test_build_pkg_stages_the_package_root(tmp_path):
    """build_pkg.sh up to pkgbuild, with a stand-in app bundle."""
    app = tmp_path / "dist" / "Thai Card Agent.app" / "Contents" / "MacOS"
    app.mkdir(parents=True)
    (app / "thaicard-agent-tray").write_text("#!/bin/sh\n")
    out = run(["bash", str(MACOS / "build_pkg.sh"), str(tmp_path / "dist"), str(tmp_path / "out"),
               "--stage-only"], env={"PATH": "/usr/bin:/bin", "PKG_ARCH": "arm64"})
    assert out.returncode == 0, out.stderr
    stage = tmp_path / "out" / "stage"
    root = stage / "root"
    assert (root / APP_EXE.lstrip("/")).is_file()
    agent = root / "Library" / "LaunchAgents" / "th.thaicard.agent.tray.plist"
    assert agent.read_bytes() == (MACOS / "th.thaicard.agent.tray.plist").read_bytes()
    assert oct(agent.stat().st_mode & 0o777) == "0o644"
    dist = ET.fromstring((stage / "distribution.xml").read_text(encoding="utf-8"))
    assert dist.find("options").get("hostArchitectures") == "arm64"
    assert next(r for r in dist.iter("pkg-ref") if r.text).get("version") == package_version()


def test_pkg_merges_the_firefox_policy_and_uninstall_takes_it_out():
    """The pkg's scripts call the same tested merge as the deb (tests/test_firefox_policy.py),
    from the installed app, and uninstall.sh removes our entries before the app is gone."""
    app_cli = '"/Applications/Thai Card Agent.app/Contents/MacOS/thaicard-agent"'
    postinstall = (MACOS / "scripts" / "postinstall").read_text(encoding="utf-8")
    assert re.search(re.escape(app_cli) + r" firefox-policy add \\\n\s+" + re.escape(NHSO)
                     + r" \|\|", postinstall)
    uninstall = (MACOS / "uninstall.sh").read_text(encoding="utf-8")
    remove_at = uninstall.index(f"{app_cli} firefox-policy remove")
    assert remove_at < uninstall.index('rm -rf "/Applications/Thai Card Agent.app"')
    from agent.osroom.macos import FIREFOX_DISTRIBUTION, INSTALLER_STATE_DIR

    assert str(INSTALLER_STATE_DIR) in uninstall
    assert FIREFOX_DISTRIBUTION.parts[0] == "Firefox.app"
