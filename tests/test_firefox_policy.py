"""Our entries in Firefox's one policies.json (agent/firefox_policy.py): merged into the
admin's file without touching the rest, taken out exactly, a broken file left alone; the file
chosen is the one Firefox reads; and ``doctor`` reads back what the installers write, on
each OS's form of the policy."""

from __future__ import annotations

import json
import plistlib
import stat
import types
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.config import Config
from agent.doctor.browsers import check_browsers
from agent.doctor.checks import Context
from agent.firefox_policy import PolicyFileInvalid, add, remove, skip_domains
from agent.osroom import BrowserPolicy, LinuxRoom, WindowsRoom
from agent.osroom.linux import firefox_policy_file, linux_browser_policies
from agent.osroom.macos import mac_browser_policies

NHSO = "https://authenservice.nhso.go.th"
ROOT = Path(__file__).resolve().parents[1]
ADMIN = {"policies": {"DisableTelemetry": True,
                      "LocalNetworkAccess": {"Enabled": True, "Locked": True,
                                             "SkipDomains": ["printer.hospital.local"]},
                      "Homepage": {"URL": "https://intranet.hospital.local/"}}}


def test_skip_domains_are_the_pages_host_names() -> None:
    assert skip_domains([NHSO, "http://his.hospital.go.th:8080", "https://HIS.hospital.go.th",
                         "http://127.0.0.1:3000", "http://localhost", "http://[::1]"]) == [
        "authenservice.nhso.go.th", "his.hospital.go.th"]


def test_new_file_is_created_and_removed_with_its_folders(tmp_path: Path) -> None:
    file = tmp_path / "etc" / "firefox" / "policies" / "policies.json"
    (tmp_path / "etc").mkdir()
    state = tmp_path / "state" / "firefox-policy.json"
    change = add(file, skip_domains([NHSO]), state)
    assert change.added == ["authenservice.nhso.go.th"] and change.created_file
    assert json.loads(file.read_text()) == {
        "policies": {"LocalNetworkAccess": {"SkipDomains": ["authenservice.nhso.go.th"]}}}
    assert stat.S_IMODE(file.stat().st_mode) == 0o644       # Firefox runs as the users
    remove(state)
    assert not file.exists() and not (tmp_path / "etc" / "firefox").exists()
    assert (tmp_path / "etc").is_dir() and not state.exists()


def test_admin_file_keeps_its_policies_and_loses_only_ours(tmp_path: Path) -> None:
    file = tmp_path / "policies.json"
    file.write_text(json.dumps(ADMIN, indent=4))
    file.chmod(0o640)
    state = tmp_path / "firefox-policy.json"
    add(file, ["authenservice.nhso.go.th", "printer.hospital.local"], state)
    merged = json.loads(file.read_text())
    assert merged["policies"]["LocalNetworkAccess"] == {
        "Enabled": True, "Locked": True,
        "SkipDomains": ["printer.hospital.local", "authenservice.nhso.go.th"]}
    assert {k: v for k, v in merged["policies"].items() if k != "LocalNetworkAccess"} == {
        "DisableTelemetry": True, "Homepage": {"URL": "https://intranet.hospital.local/"}}
    assert stat.S_IMODE(file.stat().st_mode) == 0o640       # the admin's mode is kept
    # Installing again (a reinstall, an upgrade) leaves one set of our entries.
    add(file, ["authenservice.nhso.go.th"], state)
    assert json.loads(file.read_text())["policies"]["LocalNetworkAccess"]["SkipDomains"] == [
        "printer.hospital.local", "authenservice.nhso.go.th"]
    remove(state)
    # The domain the admin listed first is theirs: it stays.
    assert json.loads(file.read_text()) == ADMIN and not state.exists()


def test_admin_containers_stay_even_when_emptied(tmp_path: Path) -> None:
    file = tmp_path / "policies.json"
    file.write_text(json.dumps({"policies": {"LocalNetworkAccess": {"SkipDomains": []}}}))
    state = tmp_path / "state.json"
    add(file, ["his.hospital.go.th"], state)
    remove(state)
    assert json.loads(file.read_text()) == {
        "policies": {"LocalNetworkAccess": {"SkipDomains": []}}}


def test_remove_follows_the_admins_later_edits(tmp_path: Path) -> None:
    """After install the admin took out their SkipDomains and added a policy: remove
    neither puts an empty SkipDomains back nor loses the new policy."""
    file = tmp_path / "policies.json"
    file.write_text(json.dumps({"policies": {"LocalNetworkAccess": {
        "Enabled": True, "SkipDomains": ["printer.hospital.local"]}}}))
    state = tmp_path / "state.json"
    add(file, ["his.hospital.go.th"], state)
    doc = json.loads(file.read_text())
    del doc["policies"]["LocalNetworkAccess"]["SkipDomains"]
    doc["policies"]["DisableTelemetry"] = True
    file.write_text(json.dumps(doc))
    remove(state)
    assert json.loads(file.read_text()) == {"policies": {
        "LocalNetworkAccess": {"Enabled": True}, "DisableTelemetry": True}}


def test_already_listed_means_nothing_to_undo(tmp_path: Path) -> None:
    file = tmp_path / "policies.json"
    file.write_text(json.dumps(ADMIN))
    before = file.read_bytes()
    state = tmp_path / "state.json"
    assert add(file, ["printer.hospital.local"], state).added == []
    assert file.read_bytes() == before and not state.exists()
    assert remove(state) is None and file.read_bytes() == before


@pytest.mark.parametrize("text", [
    '{"policies": {"DisableTelemetry": true,}}',            # a trailing comma: not JSON
    '["policies"]',
    '{"policies": ["LocalNetworkAccess"]}',
    '{"policies": {"LocalNetworkAccess": true}}',
    '{"policies": {"LocalNetworkAccess": {"SkipDomains": "example.org"}}}',
])
def test_a_file_we_cannot_merge_safely_is_left_untouched(tmp_path: Path, text: str,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    file = tmp_path / "policies.json"
    file.write_text(text)
    state = tmp_path / "state.json"
    with pytest.raises(PolicyFileInvalid, match="left unchanged"):
        add(file, ["his.hospital.go.th"], state)
    assert file.read_text() == text and not state.exists()
    # The command says so (Thai and English) and exits with config_invalid's code.
    code = main(["firefox-policy", "add", NHSO, "--file", str(file), "--state", str(state)],
                commands=[])
    err = capsys.readouterr().err
    assert code == 16 and "ไม่ได้แก้ไขไฟล์นี้" in err and "left unchanged" in err
    assert file.read_text() == text and not list(tmp_path.glob(".policies.json.*"))


def test_remove_after_the_admin_broke_or_deleted_the_file(tmp_path: Path) -> None:
    file = tmp_path / "policies.json"
    state = tmp_path / "state.json"
    add(file, ["his.hospital.go.th"], state)
    file.write_text("{ broken")
    with pytest.raises(PolicyFileInvalid):
        remove(state)
    assert file.read_text() == "{ broken" and not state.exists()   # nothing left to retry
    add(file.with_name("other.json"), ["his.hospital.go.th"], state)
    file.with_name("other.json").unlink()
    assert remove(state) is not None and not state.exists()


def test_cli_adds_and_removes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "policies.json"
    state = tmp_path / "state.json"
    assert main(["firefox-policy", "add", NHSO, "http://his.hospital.go.th",
                 "--file", str(file), "--state", str(state)], commands=[]) == 0
    assert json.loads(file.read_text())["policies"]["LocalNetworkAccess"]["SkipDomains"] == [
        "authenservice.nhso.go.th", "his.hospital.go.th"]
    assert main(["firefox-policy", "remove", "--state", str(state)], commands=[]) == 0
    assert not file.exists()
    assert "authenservice.nhso.go.th" in capsys.readouterr().out
    # Only loopback origins: nothing to write, and it says so.
    assert main(["firefox-policy", "add", "http://127.0.0.1:3000", "--file", str(file),
                 "--state", str(state)], commands=[]) == 0
    assert not file.exists() and "No page host names" in capsys.readouterr().out


# -- which file: the one Firefox reads ----------------------------------------------------------
def test_the_file_in_force_is_chosen(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    nobody = lambda _p: None       # noqa: E731 - a stand-in for shutil.which
    assert firefox_policy_file(etc, nobody) is None                 # no Firefox: nothing
    (tmp_path / "usr/lib/firefox-esr").mkdir(parents=True)          # Debian's firefox-esr
    assert firefox_policy_file(etc, nobody) == etc / "firefox/policies/policies.json"
    dist = tmp_path / "usr/lib/firefox-esr/distribution/policies.json"
    dist.parent.mkdir()
    dist.write_text("{}")
    # Creating the /etc file now would hide this one from Firefox: merge into it instead.
    assert firefox_policy_file(etc, nobody) == dist
    system = etc / "firefox/policies/policies.json"
    system.parent.mkdir(parents=True)
    system.write_text("{}")
    assert firefox_policy_file(etc, nobody) == system               # /etc wins when present
    assert firefox_policy_file(tmp_path / "empty" / "etc", lambda p: f"/usr/bin/{p}") == \
        tmp_path / "empty/etc/firefox/policies/policies.json"


# -- doctor reads what the installers write -----------------------------------------------------
def firefox_finding(room: Any, origins: tuple[str, ...] = (NHSO,)) -> Any:
    ctx = Context(config=Config(allowed_origins=origins), room=room)
    return next(f for f in check_browsers(ctx) if f.check == "browser:firefox")


class LinuxWithFirefox(LinuxRoom):
    def browser_policies(self) -> list[BrowserPolicy]:
        return linux_browser_policies(self.etc, which=lambda _p: None)


def test_doctor_agrees_with_the_linux_merge(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (tmp_path / "usr/lib/firefox").mkdir(parents=True)
    room = LinuxWithFirefox(etc=etc)
    missing = firefox_finding(room)
    assert missing.verdict == "warn" and "FIREFOX_DOMAINn" in missing.action_en
    assert "ชื่อโฮสต์" in missing.action_th          # the remedy names host names, not origins
    distribution = tmp_path / "usr/lib/firefox/distribution/policies.json"
    distribution.parent.mkdir()
    distribution.write_text(json.dumps(ADMIN))
    file = firefox_policy_file(etc, lambda _p: None)
    assert file == distribution
    state = tmp_path / "state.json"
    add(file, skip_domains([NHSO]), state)
    finding = firefox_finding(room)
    assert finding.verdict == "ok" and finding.detail["where"] == [str(distribution)]
    remove(state)
    assert firefox_finding(room).verdict == "warn"


def test_doctor_matches_hosts_as_firefox_does(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "firefox/policies").mkdir(parents=True)
    room = LinuxWithFirefox(etc=etc)
    page = ("https://his.example.go.th",)
    for listed, verdict in ((["example.go.th"], "warn"),         # a parent domain: not matched
                            (["*.example.go.th"], "ok"), (["his.example.go.th"], "ok"),
                            (["*"], "ok"), (["*.other.go.th"], "warn")):
        (etc / "firefox/policies/policies.json").write_text(json.dumps(
            {"policies": {"LocalNetworkAccess": {"SkipDomains": listed}}}))
        assert firefox_finding(room, page).verdict == verdict, listed


def registry(values: list[tuple[str, str]]) -> Any:
    """A ``winreg`` stand-in where only Firefox's SkipDomains key exists."""
    class Key:
        def __init__(self, path: str) -> None:
            self.path = path

        def __enter__(self) -> Key:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def Close(self) -> None:
            pass

    def open_key(_root: str, path: str) -> Key:
        if path.endswith(r"LocalNetworkAccess\SkipDomains") or path.endswith("firefox.exe"):
            return Key(path)
        raise OSError("absent")

    def enum_value(key: Key, index: int) -> tuple[str, str, int]:
        if "SkipDomains" not in key.path or index >= len(values):
            raise OSError("no more data")
        return (*values[index], 1)

    return types.SimpleNamespace(HKEY_LOCAL_MACHINE="HKLM", OpenKey=open_key,
                                 EnumValue=enum_value)


def test_doctor_reads_the_registry_list_as_firefox_does() -> None:
    # What the MSI writes by default (value "1", tests/test_installer_msi.py checks the name).
    assert firefox_finding(WindowsRoom(registry=registry(
        [("1", "authenservice.nhso.go.th")]))).verdict == "ok"
    # A list not starting at "1" is an object to Firefox, which rejects the policy.
    assert firefox_finding(WindowsRoom(registry=registry(
        [("8189001", "authenservice.nhso.go.th")]))).verdict == "warn"


def test_doctor_reads_the_profiles_firefox_payload(tmp_path: Path) -> None:
    with (ROOT / "installer/macos/th.thaicard.agent.mobileconfig").open("rb") as fh:
        profile = plistlib.load(fh)
    payload = next(p["PayloadContent"]["org.mozilla.firefox"] for p in profile["PayloadContent"]
                   if "org.mozilla.firefox" in p["PayloadContent"])
    managed = tmp_path / "Managed Preferences"
    managed.mkdir()
    settings = payload["Forced"][0]["mcx_preference_settings"]
    (managed / "org.mozilla.firefox.plist").write_bytes(plistlib.dumps(settings))
    apps = tmp_path / "Applications"
    (apps / "Firefox.app").mkdir(parents=True)

    def firefox(found: list[BrowserPolicy]) -> BrowserPolicy:
        return next(p for p in found if p.browser == "Firefox")

    policy = firefox(mac_browser_policies(managed, apps))
    assert policy.installed and policy.origins == {"authenservice.nhso.go.th"}
    # Without the profile, the pkg's policies.json in Firefox.app is the one in force.
    (managed / "org.mozilla.firefox.plist").unlink()
    dist = apps / "Firefox.app/Contents/Resources/distribution/policies.json"
    assert firefox(mac_browser_policies(managed, apps)).origins == frozenset()
    add(dist, ["his.hospital.go.th"], tmp_path / "state.json")
    assert firefox(mac_browser_policies(managed, apps)).origins == {"his.hospital.go.th"}
