"""Configuration layers: defaults < site file < user file < env < CLI < admin policy."""

from __future__ import annotations

import json
import plistlib
import sys
import types
from pathlib import Path

import pytest

from agent import config as cfg
from agent.config import Config, ConfigInvalid, load_config, normalize_origin
from agent.osroom import LinuxRoom, MacRoom, WindowsRoom, for_platform, linux


def no_policy():
    return {}, "none"


def policy_of(values):
    return lambda: (values, "test-policy")


def load(tmp_path: Path, *, site=None, user=None, env=None, cli=None, policy=no_policy,
         config_file=None) -> Config:
    site_path = tmp_path / "site.json"
    if site is not None:
        site_path.write_text(json.dumps(site))
    user_dir = tmp_path / "user"
    user_dir.mkdir(exist_ok=True)
    if user is not None:
        (user_dir / "config.json").write_text(json.dumps(user))
    environ = {"THAICARD_CONFIG_DIR": str(user_dir), **(env or {})}
    return load_config(cli=cli, env=environ, site_path=site_path, policy=policy,
                       config_file=config_file)


def test_defaults(tmp_path):
    c = load(tmp_path)
    assert c.port == 8189 and c.backend == "pcsc" and c.read_photo is True
    assert c.allowed_origins == ("https://authenservice.nhso.go.th",)
    assert set(c.sources.values()) == {"default"}
    assert c.origins_for(8189) >= {"http://127.0.0.1:8189", "http://localhost:8189",
                                   "https://authenservice.nhso.go.th"}


def test_layers_in_order(tmp_path):
    c = load(tmp_path, site={"port": 9001, "backend": "demo", "readPhoto": False},
             user={"port": 9002, "defaultTerminal": "Reader A"},
             env={"THAICARD_PORT": "9003", "THAICARD_DEFAULT_TERMINAL": "Reader B"},
             cli={"port": 9004, "default_terminal": None})
    assert c.port == 9004 and c.sources["port"] == "cli"
    assert c.default_terminal == "Reader B" and c.sources["default_terminal"] == "env"
    assert c.backend == "demo" and c.sources["backend"] == "site"
    assert c.read_photo is False


def test_policy_wins_over_everything(tmp_path, caplog):
    c = load(tmp_path, user={"port": 9002}, env={"THAICARD_PORT": "9003"},
             cli={"port": 9004, "extra_origins": ["https://his.example.test"]},
             policy=policy_of({"Port": 8189, "AllowedOrigins": ["https://his.hospital.test"],
                               "readphoto": 0}))
    assert c.port == 8189 and c.sources["port"] == "policy"
    assert c.allowed_origins == ("https://his.hospital.test",)    # CLI additions ignored
    assert c.read_photo is False
    assert c.policy_keys == ["allowed_origins", "port", "read_photo"]
    assert c.public_view()["policyKeys"] == ["allowedOrigins", "port", "readPhoto"]
    assert "fixed by the admin policy" in caplog.text


def test_allow_origin_flag_adds(tmp_path):
    c = load(tmp_path, user={"allowedOrigins": ["https://a.test"]},
             cli={"extra_origins": ["https://B.test:443/", "http://c.test:8080"]})
    assert c.allowed_origins == ("https://a.test", "https://b.test", "http://c.test:8080")


def test_env_origins_list(tmp_path):
    c = load(tmp_path, env={"THAICARD_ALLOWED_ORIGINS": "https://a.test, https://b.test:8443"})
    assert c.allowed_origins == ("https://a.test", "https://b.test:8443")


@pytest.mark.parametrize("value,expected", [
    ("https://Example.TEST", "https://example.test"), ("https://x.test:443", "https://x.test"),
    ("http://x.test:80/", "http://x.test"), ("http://[::1]:8189", "http://[::1]:8189"),
])
def test_normalize_origin(value, expected):
    assert normalize_origin(value) == expected


# "null" and "file://" (local apps) are accepted when an admin lists them exactly
# (test_refusals.py); a file path never is.
@pytest.mark.parametrize("value", ["*", "https://*.nhso.go.th", "file:///x", "https://x.test/a",
                                   "https://u@x.test", "x.test", "https://x.test?q=1", "nul"])
def test_bad_origins(value):
    with pytest.raises(ConfigInvalid):
        normalize_origin(value)


@pytest.mark.parametrize("layer", [
    {"user": {"port": 0}}, {"user": {"port": "eighty"}}, {"user": {"backend": "usb"}},
    {"user": {"readPhoto": "sometimes"}}, {"user": {"prot": 1}},
    {"env": {"THAICARD_READ_TIMEOUT": "0"}}, {"env": {"THAICARD_LOG_LEVEL": "chatty"}},
    {"policy": policy_of({"port": True})}, {"user": {"allowedOrigins": ["*"]}},
])
def test_invalid_values_are_refused(tmp_path, layer):
    with pytest.raises(ConfigInvalid):
        load(tmp_path, **layer)


def test_unreadable_files(tmp_path):
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "config.json").write_text("{not json")
    with pytest.raises(ConfigInvalid, match="cannot read"):
        load(tmp_path)
    with pytest.raises(ConfigInvalid, match="does not exist"):
        load(tmp_path, config_file=tmp_path / "missing.json")


def test_explicit_config_file(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"port": 9555, "#": "comments are allowed"}))
    assert load(tmp_path, config_file=path).port == 9555
    assert load(tmp_path, env={"THAICARD_CONFIG": str(path)}).port == 9555


def test_macos_managed_preferences(tmp_path):
    plist = tmp_path / "th.thaicard.agent.plist"
    plist.write_bytes(plistlib.dumps({"AllowedOrigins": ["https://his.hospital.test"],
                                      "Port": 8190, "PayloadUUID": "from-the-mdm"}))
    room = MacRoom(plist)
    c = load(tmp_path, policy=room.read_policy)
    assert c.port == 8190 and c.allowed_origins == ("https://his.hospital.test",)
    assert MacRoom(tmp_path / "absent.plist").read_policy()[0] == {}


def test_windows_registry_policy(tmp_path):
    """The registry reader over a stand-in winreg (the real one exists only on Windows)."""
    values = [("Port", 8191, 4), ("AllowedOrigins", ["https://his.hospital.test"], 7),
              ("ReadPhoto", 0, 4)]

    class Key:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def enum_value(key, index):
        if index >= len(values):
            raise OSError("no more data")
        return values[index]

    opened = []
    fake = types.SimpleNamespace(HKEY_LOCAL_MACHINE="HKLM",
                                 OpenKey=lambda root, path: opened.append((root, path)) or Key(),
                                 EnumValue=enum_value)
    room = WindowsRoom(registry=fake)
    read, where = room.read_policy()
    assert opened == [("HKLM", r"Software\Policies\ThaiCardAgent")]
    assert read == {"Port": 8191, "AllowedOrigins": ["https://his.hospital.test"], "ReadPhoto": 0}
    assert where == r"HKLM\Software\Policies\ThaiCardAgent"
    c = load(tmp_path, policy=room.read_policy)
    assert (c.port, c.read_photo) == (8191, False)
    assert c.allowed_origins == ("https://his.hospital.test",)


def test_linux_policy_file_is_read_from_etc(tmp_path):
    assert Path("/etc/thaicard-agent/policy.json") == linux.POLICY_FILE
    assert isinstance(for_platform("linux"), LinuxRoom)
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"allowedOrigins": "https://his.hospital.test"}))
    values, source = LinuxRoom(path).read_policy()
    assert source == str(path) and values == {"allowedOrigins": "https://his.hospital.test"}
