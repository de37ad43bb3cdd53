"""The .deb: built from the bundle, installed with dpkg on this machine, run, and removed.

Installing needs root (CI runs as root) and changes the machine, so the install test
removes the package again even when it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.installer_support import (
    BUILD_DEB,
    build_deb,
    deb_files,
    deb_installed,
    dpkg_installed,
    frozen_bundle,
    isolated_env,
    kiosk_deb,
    machine_lock,
    package_version,
    run,
    run_dir,
    serve_and_get_status,
    settings_dialog_opens,
)

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian)"),
]
NHSO = "https://authenservice.nhso.go.th"
BROWSER_POLICY_FILES = ("/etc/chromium/policies/managed/thaicard-agent.json",
                        "/etc/opt/chrome/policies/managed/thaicard-agent.json",
                        "/etc/opt/edge/policies/managed/thaicard-agent.json")
FIREFOX_POLICY = Path("/etc/firefox/policies/policies.json")
FIREFOX_STATE = Path("/var/lib/thaicard-agent/firefox-policy.json")


@pytest.fixture(scope="module")
def deb() -> Path:
    return build_deb(run_dir() / "deb")


def test_control_fields(deb):
    fields = {name: run(["dpkg-deb", "--field", str(deb), name]).stdout.strip()
              for name in ("Package", "Version", "Depends", "Architecture")}
    assert fields["Package"] == "thaicard-agent"
    assert fields["Version"] == package_version()
    assert {d.strip() for d in fields["Depends"].split(",")} == {"pcscd", "libpcsclite1"}
    assert fields["Architecture"] == run(["dpkg", "--print-architecture"]).stdout.strip()


def test_layout(deb):
    files = deb_files(deb)
    for path in ("/opt/thaicard-agent/thaicard-agent", "/opt/thaicard-agent/thaicard-agent-tray",
                 "/etc/xdg/autostart/thaicard-agent.desktop",
                 "/usr/share/applications/thaicard-agent.desktop",
                 "/usr/lib/systemd/user/thaicard-agent.service",
                 "/usr/share/icons/hicolor/256x256/apps/thaicard-agent.png",
                 *BROWSER_POLICY_FILES):
        assert path in files, path
    assert "-> /opt/thaicard-agent/thaicard-agent" in files["/usr/bin/thaicard-agent"]
    assert files["/opt/thaicard-agent/thaicard-agent"].startswith("-rwxr-xr-x root/root")
    # No admin policy unless the builder asked for one: it would override user settings.
    assert "/etc/thaicard-agent/policy.json" not in files
    assert "/etc/xdg/autostart/thaicard-agent-kiosk.desktop" not in files     # KIOSK=1 only


def test_kiosk_build_opens_the_kiosk_at_login(tmp_path):
    # Installed and logged on to for real in tests/test_installer_kiosk.py.
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(kiosk_deb()), str(root)], check=True)
    entry = (root / "etc/xdg/autostart/thaicard-agent-kiosk.desktop").read_text()
    assert "\nExec=/usr/bin/thaicard-agent kiosk\n" in entry
    assert (root / "etc/xdg/autostart/thaicard-agent.desktop").exists()    # the tray too
    refused = run(["bash", str(BUILD_DEB), str(frozen_bundle()), str(tmp_path / "bad")],
                  env={**os.environ, "KIOSK": "yes"})
    assert refused.returncode == 1 and "KIOSK" in refused.stderr


def maintainer_scripts(deb: Path, into: Path) -> dict[str, str]:
    subprocess.run(["dpkg-deb", "-e", str(deb), str(into)], check=True)
    return {p.name: p.read_text(encoding="utf-8") for p in into.iterdir()
            if p.name in ("postinst", "prerm", "postrm")}


def test_firefox_policy_is_merged_by_the_scripts_not_shipped(deb, tmp_path):
    # A shipped policies.json would replace the hospital's one file: none is in the package.
    assert not [p for p in deb_files(deb) if "firefox" in p]
    scripts = maintainer_scripts(deb, tmp_path / "control")
    assert set(scripts) == {"postinst", "prerm"}        # a postrm would leave state "rc"
    assert f"firefox-policy add {NHSO} ||" in scripts["postinst"]
    assert "firefox-policy remove ||" in scripts["prerm"]
    out = run(["shellcheck", "--shell=sh", *(str(tmp_path / "control" / n) for n in scripts)])
    assert out.returncode == 0, out.stdout


def test_site_build_writes_the_origins_everywhere(tmp_path):
    origins = ["https://his.example.go.th", "https://lab.example.go.th:8443"]
    deb = build_deb(tmp_path / "out", ALLOWED_ORIGINS=" ".join(origins))
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    scripts = maintainer_scripts(deb, tmp_path / "control")
    assert f"firefox-policy add {' '.join(origins)} ||" in scripts["postinst"]
    for path in BROWSER_POLICY_FILES:
        policy = json.loads((root / path.lstrip("/")).read_text(encoding="utf-8"))
        assert policy == {"LocalNetworkAccessAllowedForUrls": origins,
                          "LoopbackNetworkAllowedForUrls": origins}
    # The agent's own loader accepts the policy file the package ships.
    from agent.config import load_config, read_json_file

    policy_file = root / "etc/thaicard-agent/policy.json"
    config = load_config(env={"THAICARD_CONFIG": str(tmp_path / "none.json")},
                         site_path=tmp_path / "none-site.json",
                         policy=lambda: (read_json_file(policy_file), str(policy_file)))
    assert config.allowed_origins == tuple(origins) and config.policy_keys == ["allowed_origins"]


def test_bad_origin_is_refused(tmp_path):
    result = run(["bash", str(BUILD_DEB), str(frozen_bundle()), str(tmp_path)],
                 env={**os.environ, "ALLOWED_ORIGINS": "https://his.example.go.th/path"})
    assert result.returncode == 1 and "is not an origin" in result.stderr
    assert not list(tmp_path.glob("*.deb"))


@pytest.fixture
def installed_package(deb):
    if os.geteuid() != 0:
        pytest.skip("installing a .deb needs root (CI runs as root)")
    with dpkg_installed(deb) as existed:
        yield existed


def test_install_run_remove(deb, installed_package, tmp_path):
    shipped = [p for p in deb_files(deb) if p not in installed_package]
    from agent.osroom.linux import firefox_policy_file

    firefox_file = firefox_policy_file()
    if firefox_file is None:                # no Firefox here: nothing is written for it
        assert not FIREFOX_STATE.exists()
        created_firefox_file = None
    else:                                   # CI has firefox-esr: the postinst merged into it
        policy = json.loads(firefox_file.read_text(encoding="utf-8"))
        assert "authenservice.nhso.go.th" in policy["policies"]["LocalNetworkAccess"][
            "SkipDomains"]
        change = json.loads(FIREFOX_STATE.read_text(encoding="utf-8"))
        created_firefox_file = firefox_file if change["created_file"] else None
    # Installed and runnable from PATH.
    out = run(["/usr/bin/thaicard-agent", "--version"])
    assert out.returncode == 0 and out.stdout.strip() == f"thaicard-agent {package_version()}"
    status = serve_and_get_status(["/usr/bin/thaicard-agent"], tmp_path)
    assert status["version"] == package_version() and status["backend"] == "demo"
    assert NHSO in status["config"]["allowedOrigins"]
    for path in BROWSER_POLICY_FILES:
        with open(path, encoding="utf-8") as fh:
            policy = json.load(fh)
        assert policy["LocalNetworkAccessAllowedForUrls"] == [NHSO]
        assert policy["LoopbackNetworkAllowedForUrls"] == [NHSO]
    desktop = Path("/etc/xdg/autostart/thaicard-agent.desktop").read_text(encoding="utf-8")
    assert "Exec=/usr/bin/thaicard-agent tray" in desktop
    # The installed tray's dialogs work (Tk in the bundle).
    settings_dialog_opens(["/usr/bin/thaicard-agent"], isolated_env(tmp_path))

    # dpkg -r leaves nothing of ours behind: no conffiles, no generated files.
    result = run(["dpkg", "-r", "thaicard-agent"], timeout=300)
    assert result.returncode == 0, result.stderr
    assert not deb_installed()
    assert [p for p in shipped if os.path.lexists(p)] == []      # files and the folders we made
    assert not FIREFOX_STATE.parent.exists()
    if created_firefox_file is not None:    # a file only we had written goes with the package
        assert not created_firefox_file.exists()
    status_line = run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "thaicard-agent"]).stdout
    assert not status_line.startswith("rc"), "config files were left behind"


@pytest.fixture
def admin_firefox_policy():
    """The hospital's own /etc/firefox/policies/policies.json (this machine's is kept aside
    and put back)."""
    if os.geteuid() != 0:
        pytest.skip("installing a .deb needs root (CI runs as root)")
    # The lock is also taken by the install test above and the real-Firefox test: all
    # three change /etc/firefox and the package database.
    with machine_lock("dpkg"):
        saved = FIREFOX_POLICY.read_bytes() if FIREFOX_POLICY.exists() else None
        made = [d for d in (FIREFOX_POLICY.parent.parent, FIREFOX_POLICY.parent)
                if not d.exists()]
        FIREFOX_POLICY.parent.mkdir(parents=True, exist_ok=True)
        admin = {"policies": {
            "DisableTelemetry": True,
            "LocalNetworkAccess": {"Enabled": True, "SkipDomains": ["printer.hospital.local"]},
            "Homepage": {"URL": "https://intranet.hospital.local/", "Locked": True}}}
        FIREFOX_POLICY.write_text(json.dumps(admin, indent=4) + "\n", encoding="utf-8")
        try:
            yield admin
        finally:
            if saved is None:
                FIREFOX_POLICY.unlink(missing_ok=True)
                for folder in reversed(made):
                    folder.rmdir()
            else:
                FIREFOX_POLICY.write_bytes(saved)


def test_install_merges_into_the_admins_firefox_policy_and_remove_restores_it(
        deb, admin_firefox_policy):
    subprocess.run(["dpkg", "--purge", "thaicard-agent"], capture_output=True)
    try:
        result = run(["dpkg", "-i", str(deb)], timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        merged = json.loads(FIREFOX_POLICY.read_text(encoding="utf-8"))
        expected = json.loads(json.dumps(admin_firefox_policy))
        expected["policies"]["LocalNetworkAccess"]["SkipDomains"].append(
            "authenservice.nhso.go.th")
        assert merged == expected               # the admin's keys, plus our host name
        # The same version again (dpkg runs the old prerm, then the new postinst).
        result = run(["dpkg", "-i", str(deb)], timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(FIREFOX_POLICY.read_text(encoding="utf-8")) == expected
        # doctor reads the merged file as Firefox would.
        from agent.osroom.linux import linux_browser_policies

        firefox = next(p for p in linux_browser_policies() if p.browser == "Firefox")
        assert "authenservice.nhso.go.th" in firefox.origins
        assert firefox.where == (str(FIREFOX_POLICY),)

        result = run(["dpkg", "-r", "thaicard-agent"], timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(FIREFOX_POLICY.read_text(encoding="utf-8")) == admin_firefox_policy
        assert not FIREFOX_STATE.exists() and not FIREFOX_STATE.parent.exists()
    finally:
        subprocess.run(["dpkg", "--purge", "thaicard-agent"], capture_output=True,
                       timeout=300)


def test_a_broken_admin_firefox_policy_is_left_alone_and_install_succeeds(
        deb, admin_firefox_policy):
    broken = '{"policies": {"DisableTelemetry": true,}}\n'     # a trailing comma
    FIREFOX_POLICY.write_text(broken, encoding="utf-8")
    subprocess.run(["dpkg", "--purge", "thaicard-agent"], capture_output=True)
    try:
        result = run(["dpkg", "-i", str(deb)], timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "left unchanged" in result.stderr and "Firefox" in result.stderr
        assert FIREFOX_POLICY.read_text(encoding="utf-8") == broken
        result = run(["dpkg", "-r", "thaicard-agent"], timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        assert FIREFOX_POLICY.read_text(encoding="utf-8") == broken
    finally:
        subprocess.run(["dpkg", "--purge", "thaicard-agent"], capture_output=True,
                       timeout=300)
