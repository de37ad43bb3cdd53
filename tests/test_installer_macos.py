"""The macOS pkg sources, checked on Linux: plists parse and say what they must, the scripts
pass shellcheck, build_pkg.sh stages the right tree (pkgbuild itself needs a Mac), and the
.app the spec's macOS branch makes, laid out from the Linux frozen bundle, is staged whole
and runs from the paths the LaunchAgent and postinstall use."""

from __future__ import annotations

import filecmp
import json
import os
import plistlib
import re
import shutil
import stat
import sys
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.installer_support import (
    OUT,
    ROOT,
    frozen_bundle,
    isolated_env,
    package_version,
    run,
    serve_and_get_status,
    settings_dialog_opens,
)

MACOS = ROOT / "installer" / "macos"
APP_EXE = "/Applications/Thai Card Agent.app/Contents/MacOS/thaicard-agent-tray"
NHSO = "https://authenservice.nhso.go.th"
frozen = pytest.mark.timeout(900)     # the first test pays for the PyInstaller build
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


# The .app the spec's macOS branch makes, laid out on Linux by PyInstaller's own BUNDLE from
# the Linux frozen bundle (tests/macos_app_from_spec.py says what stands in for a Mac), then
# staged by build_pkg.sh and run from the package root.
APP = "Thai Card Agent.app"
APP_CLI = f"/Applications/{APP}/Contents/MacOS/thaicard-agent"


@dataclass(frozen=True)
class MacApp:
    spec: dict[str, Any]      # what the spec's macOS branch passed to PyInstaller
    built: Path               # the .app BUNDLE laid out
    root: Path                # build_pkg.sh's package root (installed as / on a Mac)


@pytest.fixture(scope="module")
def mac_app(tmp_path_factory) -> MacApp:
    out = tmp_path_factory.mktemp("macos")
    bundle = frozen_bundle()
    icons = OUT / "pyinstaller-work" / "icons"          # build_binary.sh made them for it
    made = run([sys.executable, str(ROOT / "tests" / "macos_app_from_spec.py"), str(bundle),
                str(out), str(icons)], env={**os.environ, "PYSTRAY_BACKEND": "dummy"},
               timeout=300)
    assert made.returncode == 0, made.stderr
    spec = json.loads(made.stdout)
    built = Path(spec["app"])
    assert built == out / "dist" / APP
    # The one piece standing in for the macOS bootloader: in an .app it finds the bundle's
    # contents in Contents/Frameworks; the Linux bootloader looks next to itself.
    (built / "Contents" / "MacOS" / "_internal").symlink_to("../Frameworks")
    staged = run(["bash", str(MACOS / "build_pkg.sh"), str(out / "dist"), str(out / "pkg"),
                  "--stage-only"], env={"PATH": "/usr/bin:/bin", "PKG_ARCH": "arm64"})
    assert staged.returncode == 0, staged.stderr
    return MacApp(spec, built, out / "pkg" / "stage" / "root")


def in_root(root: Path, installed_path: str) -> Path:
    return root / installed_path.lstrip("/")


@frozen
def test_spec_macos_branch_bundles_the_mac_backends_and_tk(mac_app):
    analysis = mac_app.spec["analysis"]
    assert {"pystray._darwin", "pystray._dummy", "keyring.backends.macOS"} \
        <= set(analysis["hiddenimports"])
    assert not {"pystray._xorg", "pystray._gtk", "pystray._win32"} & set(analysis["hiddenimports"])
    assert "tkinter" not in analysis["excludes"] and "keyrings.alt" in analysis["excludes"]
    # The tray is windowed (no Terminal window at login), the CLI a console program.
    exes = mac_app.spec["exe"]
    assert exes["thaicard-agent-tray"]["console"] is False
    assert exes["thaicard-agent"]["console"] is True
    assert all(Path(e["icon"]).suffix == ".icns" for e in exes.values())


@frozen
def test_app_info_plist_makes_a_menu_bar_app_that_starts_the_tray(mac_app):
    """Info.plist as PyInstaller's BUNDLE writes it from the spec."""
    with (mac_app.built / "Contents" / "Info.plist").open("rb") as fh:
        info = plistlib.load(fh)
    # Opening the app (Finder, `open`, Launchpad) runs CFBundleExecutable: it must be the
    # tray, not the CLI, which would print its help and quit.
    assert info["CFBundleExecutable"] == "thaicard-agent-tray"
    assert os.access(mac_app.built / "Contents" / "MacOS" / info["CFBundleExecutable"], os.X_OK)
    assert info["CFBundleIdentifier"] == "th.thaicard.agent"
    assert info["CFBundleShortVersionString"] == info["CFBundleVersion"] == package_version()
    assert info["CFBundlePackageType"] == "APPL"
    # A menu-bar app: no Dock icon, but it may show windows (the settings and token dialogs);
    # LSBackgroundOnly would forbid those.
    assert info["LSUIElement"] is True
    assert info.get("LSBackgroundOnly", False) is False
    dist = ET.fromstring((MACOS / "distribution.xml").read_text(encoding="utf-8"))
    assert info["LSMinimumSystemVersion"] == dist.find(".//os-version").get("min")
    icon = mac_app.built / "Contents" / "Resources" / info["CFBundleIconFile"]
    assert icon.read_bytes()[:4] == b"icns"


def tree(top: Path) -> dict[str, tuple[str, int, str]]:
    """Every entry under ``top``: kind, mode, and a symlink's target or a file's size."""
    entries = {}
    for path in sorted(top.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            entries[str(path.relative_to(top))] = ("link", 0, os.readlink(path))
        elif path.is_dir():
            entries[str(path.relative_to(top))] = ("dir", stat.S_IMODE(st.st_mode), "")
        else:
            entries[str(path.relative_to(top))] = ("file", stat.S_IMODE(st.st_mode),
                                                   str(st.st_size))
    return entries


@frozen
def test_staging_keeps_the_app_whole(mac_app):
    staged = in_root(mac_app.root, f"/Applications/{APP}")
    built, copied = tree(mac_app.built), tree(staged)
    assert copied == built
    assert any(kind == "link" for kind, _, _ in built.values())   # cross-links were checked
    for name, (kind, _, _) in built.items():
        if kind == "file":
            assert filecmp.cmp(mac_app.built / name, staged / name, shallow=False), name


@frozen
def test_staged_app_runs_from_the_paths_the_pkg_uses(mac_app, tmp_path):
    """The LaunchAgent's and postinstall's executables, inside the staged package root: the
    CLI answers, serves, and the tray executable opens its settings dialog (Tk and Tcl/Tk's
    scripts reached through the bundle's Frameworks/Resources cross-links)."""
    agent = load_plist("th.thaicard.agent.tray.plist")
    tray = in_root(mac_app.root, agent["ProgramArguments"][0])
    assert tray.name == "thaicard-agent-tray" and os.access(tray, os.X_OK)
    postinstall = (MACOS / "scripts" / "postinstall").read_text(encoding="utf-8")
    assert f'"{APP_CLI}" firefox-policy add' in postinstall
    cli = in_root(mac_app.root, APP_CLI)
    version = run([str(cli), "--version"])
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"thaicard-agent {package_version()}"
    status = serve_and_get_status([str(cli)], tmp_path / "serve")
    assert status["version"] == package_version()
    settings_dialog_opens([str(tray)], isolated_env(tmp_path / "tray"))
