"""The Windows MSI, built here with wixl from a staged payload and read back with msitools.

The payload is the Linux bundle under the Windows file names (PyInstaller cannot build the
Windows one here): the MSI's logic and tables do not depend on what the files contain.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.installer_support import ROOT, frozen_bundle, package_version, run, run_dir

sys.path.insert(0, str(ROOT / "installer" / "windows"))
import build_msi
import check_msi

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("wixl", "wixl-heat", "msiinfo",
                                                         "msibuild", "msiextract")),
                       reason="needs wixl and msitools (scripts/setup.sh test)"),
]


@pytest.fixture(scope="module")
def payload() -> Path:
    staged = run_dir() / "msi-payload"
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(frozen_bundle(), staged, symlinks=True)
    for name in ("thaicard-agent", "thaicard-agent-tray"):
        (staged / name).rename(staged / f"{name}.exe")
    return staged


@pytest.fixture(scope="module")
def msi(payload) -> Path:
    return build_msi.build_msi(payload, run_dir() / "thaicard-agent.msi",
                               work=run_dir() / "msi-work")


def table(msi: Path, name: str) -> check_msi.Table:
    return check_msi.read_table(msi, name)


def test_tables_keep_every_promise(msi):
    assert check_msi.check_msi(msi, build_msi.msi_version(package_version())) == []


def test_checker_catches_broken_packages(msi, tmp_path):
    """The checker itself can fail: remove a browser policy and the auto-start condition."""
    broken = tmp_path / "broken.msi"
    shutil.copyfile(msi, broken)
    for query in ("DELETE FROM `Registry` WHERE `Name` = '8189002' AND "
                  "`Key` = 'Software\\Policies\\Microsoft\\Edge\\LoopbackNetworkAllowedForUrls'",
                  "UPDATE `Component` SET `Condition` = '' WHERE `Component` = 'C.Autostart'",
                  "UPDATE `Component` SET `Condition` = '' WHERE `Component` = 'C.Kiosk'",
                  "UPDATE `Component` SET `Attributes` = 272 WHERE `Component` = 'C.InstallInfo'",
                  # conditioned as before the fix: false at uninstall, the value stayed
                  "UPDATE `Component` SET `Condition` = 'PORT' "
                  "WHERE `Component` = 'C.Policy.Port'"):
        subprocess.run(["msibuild", str(broken), "-q", query], check=True)
    problems = "\n".join(check_msi.check_msi(broken))
    assert "Edge\\LoopbackNetworkAllowedForUrls\\8189002" in problems
    assert "Run value not conditioned on AUTOSTART" in problems
    assert "kiosk Run value not conditioned on KIOSK" in problems
    assert "component C.InstallInfo is permanent" in problems
    assert "component C.Policy.Port is conditioned ('PORT') but not on uninstall" in problems


def test_checker_catches_broken_firefox_policy(msi, tmp_path):
    """A missing Firefox slot, a slot written over a hospital's list, and the NHSO default
    set after the component conditions were evaluated are each reported."""
    broken = tmp_path / "broken.msi"
    shutil.copyfile(msi, broken)
    for query in ("DELETE FROM `Registry` WHERE `Name` = '3' AND `Key` = "
                  "'Software\\Policies\\Mozilla\\Firefox\\LocalNetworkAccess\\SkipDomains'",
                  "UPDATE `Component` SET `Condition` = 'BROWSER_POLICIES = \"1\" AND "
                  "FIREFOX_DOMAIN1' WHERE `Component` = 'C.Firefox.1'",
                  "UPDATE `InstallExecuteSequence` SET `Sequence` = 1403 "
                  "WHERE `Action` = 'FirefoxDomainForNhso'"):
        subprocess.run(["msibuild", str(broken), "-q", query], check=True)
    problems = "\n".join(check_msi.check_msi(broken))
    assert "LocalNetworkAccess\\SkipDomains\\3" in problems
    assert "Firefox slot 1: condition" in problems
    assert "FirefoxDomainForNhso runs after the component conditions" in problems


def test_firefox_list_is_read_as_mozilla_reads_it(msi):
    """Values named 1..4 (Firefox reads a registry list only from value "1" on), host names
    from FIREFOX_DOMAINn, and the default host is the one doctor expects for the NHSO page."""
    from agent.firefox_policy import skip_domains

    rows = [r for r in table(msi, "Registry").rows
            if r["Key"] == check_msi.FIREFOX_KEY]
    assert sorted((r["Name"], r["Value"]) for r in rows) == [
        (str(n), f"[FIREFOX_DOMAIN{n}]") for n in range(1, 5)]
    default = table(msi, "CustomAction").where(Action="FirefoxDomainForNhso")[0]
    assert [default["Target"]] == skip_domains([check_msi.NHSO_AUTHEN_ORIGIN])


def test_payload_lands_in_program_files(msi, payload, tmp_path):
    out = run(["msiextract", "-C", str(tmp_path), str(msi)])
    assert out.returncode == 0, out.stderr
    installed = next(tmp_path.rglob("thaicard-agent-tray.exe")).parent
    assert installed.relative_to(tmp_path).parts[-1] == "Thai Card Agent"
    staged = sorted(p.relative_to(payload) for p in payload.rglob("*") if p.is_file())
    extracted = sorted(p.relative_to(installed) for p in installed.rglob("*") if p.is_file()
                       and p.relative_to(installed).parts[0] != "PolicyDefinitions")
    assert extracted == staged
    # The Group Policy templates ship beside the program (installer/windows/make_admx.py).
    templates = build_msi.HERE / "policy"
    shipped = sorted(p.relative_to(templates) for p in templates.rglob("*") if p.is_file())
    for rel in shipped:
        copied = installed / "PolicyDefinitions" / rel
        assert copied.read_bytes() == (templates / rel).read_bytes()
    assert len(shipped) == 3
    for exe in ("thaicard-agent.exe", "thaicard-agent-tray.exe"):
        assert (installed / exe).read_bytes() == (payload / exe).read_bytes()


def test_wxs_stays_wix3_source():
    """wixl's gaps are bridged at build time; the source keeps the WiX 3 elements."""
    source = build_msi.WXS.read_text(encoding="utf-8")
    stripped = build_msi.wixl_source(source)
    assert (stripped.conditions["C.Browser.3"]
            == '(BROWSER_POLICIES = "1" AND ORIGIN3) OR REMOVE~="ALL"')
    assert len(stripped.conditions) == 14           # 9, Firefox's 4, the kiosk
    assert stripped.conditions["C.Kiosk"] == '(KIOSK = "1") OR REMOVE~="ALL"'
    assert {"PORT", "ORIGIN1", "BROWSER_POLICIES", "AUTOSTART", "KIOSK"} <= set(stripped.secure)
    tree = ET.fromstring(stripped.xml)
    ns = {"w": build_msi.NS}
    assert not tree.findall(".//w:Component/w:Condition", ns)
    assert len(tree.findall("./w:Product/w:Condition", ns)) == 11    # launch conditions stay
    assert "Secure=" not in stripped.xml and 'Platform="x64"' in source


def _formatted(value: str, props: dict[str, str]) -> str | int:
    """What Windows Installer writes for a Registry.Value: [PROP] expanded, #n a DWORD."""
    text = re.sub(r"\[([A-Z0-9_]+)\]", lambda m: props.get(m.group(1), ""), value)
    return int(text[1:]) if text.startswith("#") else text


def _policy_after_install(msi: Path, **command_line: str) -> dict[str, str | int]:
    """The HKLM policy values an install with these properties would write."""
    props = {r["Property"]: r["Value"] for r in table(msi, "Property").rows}
    props.update(command_line)
    if props.get("ALLOWED_ORIGINS"):                 # the OriginFromAllowedOrigins action
        props["ORIGIN1"] = props["ALLOWED_ORIGINS"]
    components = {r["Component"]: r for r in table(msi, "Component").rows}
    values: dict[str, str | int] = {}
    for row in table(msi, "Registry").where(Key=check_msi.POLICY_KEY):
        condition = check_msi.condition_at_install(components[row["Component_"]]["Condition"])
        if condition and not props.get(condition):   # these conditions name one property
            continue
        values[row["Name"]] = _formatted(row["Value"], props)
    return values


@pytest.mark.parametrize("command_line, expected", [
    ({}, {"port": 8189, "allowed_origins": ("https://authenservice.nhso.go.th",)}),
    ({"PORT": "8190", "ORIGIN2": "https://his.example.go.th", "BACKEND": "auto"},
     {"port": 8190, "backend": "auto",
      "allowed_origins": ("https://authenservice.nhso.go.th", "https://his.example.go.th")}),
    ({"ALLOWED_ORIGINS": "https://his.example.go.th:8443", "DEFAULT_TERMINAL": "ACS ACR39U 00"},
     {"allowed_origins": ("https://his.example.go.th:8443",),
      "default_terminal": "ACS ACR39U 00"}),
])
def test_agent_reads_what_the_msi_writes(msi, tmp_path, command_line, expected):
    """The registry values of an install, fed to the agent's own policy loader."""
    from agent.config import load_config

    policy = _policy_after_install(msi, **command_line)
    config = load_config(env={"THAICARD_CONFIG": str(tmp_path / "none.json")},
                         site_path=tmp_path / "none-site.json",
                         policy=lambda: (policy, "HKLM\\" + check_msi.POLICY_KEY))
    for name, value in expected.items():
        assert getattr(config, name) == value
    assert set(config.policy_keys) == {
        {"Port": "port", "AllowedOrigins": "allowed_origins", "Backend": "backend",
         "DefaultTerminal": "default_terminal", "LogLevel": "log_level"}[k] for k in policy}
