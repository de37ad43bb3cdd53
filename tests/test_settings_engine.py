"""The one settings engine: NHSO keys in the admin policy, sources, the paths and the writer."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from agent import paths
from agent.atomic_file import PRIVATE, SHARED, write_atomic
from agent.config import ConfigInvalid, load_config
from agent.nhso.settings import SettingsError, load_settings, save_user_settings
from testrig.nhso_support import RECORDER_PID

# One policy source for the machine, as an admin writes it (registry names fold case).
POLICY = {"Port": 8190, "nhsoHcode": "10699", "NHSOZONE": "test", "nhsoRetentionDays": 30}


def policy_of(values: dict) -> object:
    return lambda: (values, "test-policy")


def nhso(tmp_path: Path, *, user: dict | None = None, site: dict | None = None,
         env: dict | None = None, policy: dict | None = None, **overrides: object):
    (tmp_path / "c").mkdir(exist_ok=True)
    if user is not None:
        (tmp_path / "c" / "nhso.json").write_text(json.dumps(user))
    site_path = tmp_path / "site-nhso.json"
    if site is not None:
        site_path.write_text(json.dumps(site))
    return load_settings(config_dir=tmp_path / "c", data_dir=tmp_path / "d", env=env or {},
                         site_path=site_path, policy=policy_of(policy or {}), **overrides)


def agent_config(tmp_path: Path, policy: dict):
    return load_config(env={"THAICARD_CONFIG_DIR": str(tmp_path / "c")},
                       site_path=tmp_path / "site.json", policy=policy_of(policy))


def test_nhso_takes_its_prefixed_policy_keys_and_the_agent_the_others(tmp_path, caplog):
    settings = nhso(tmp_path, user={"hcode": "22222", "zone": "production"},
                    env={"THAICARD_NHSO_RETENTION_DAYS": "7"}, policy=POLICY)
    assert (settings.hcode, settings.zone, settings.retention_days) == ("10699", "test", 30)
    assert settings.sources["hcode"] == "policy" and settings.sources["due_time"] == "default"
    assert settings.public_view()["policyKeys"] == ["hcode", "retentionDays", "zone"]
    assert "hcode is fixed by the admin policy" in caplog.text
    config = agent_config(tmp_path, POLICY)
    assert config.port == 8190 and config.policy_keys == ["port"]


def test_each_layer_is_recorded_as_its_source(tmp_path):
    settings = nhso(tmp_path, site={"zone": "test"}, user={"sourceId": "TCAGENT"},
                    env={"THAICARD_NHSO_DUE_TIME": "18:00"}, policy={"nhsoRetentionDays": 9},
                    recorder_pid=RECORDER_PID)
    assert {k: settings.sources[k] for k in ("zone", "source_id", "due_time",
                                              "recorder_pid", "retention_days", "hcode")} == {
        "zone": "site", "source_id": "user", "due_time": "env", "recorder_pid": "cli",
        "retention_days": "policy", "hcode": "default"}


@pytest.mark.parametrize("policy", [{"nhsoColour": "blue"}, {"nhsoTokenHcode": "10699"},
                                    {"nhsoHcode": "abc"}, {"nhsoRetentionDays": "many"}])
def test_bad_nhso_policy_keys_are_refused_by_nhso_only(tmp_path, policy):
    with pytest.raises(SettingsError):
        nhso(tmp_path, policy=policy)
    assert agent_config(tmp_path, policy).port == 8189       # not the agent's business


def test_an_unknown_agent_policy_key_is_refused_by_the_agent_only(tmp_path):
    with pytest.raises(ConfigInvalid, match="unknown"):
        agent_config(tmp_path, {"colour": "blue"})
    assert nhso(tmp_path, policy={"colour": "blue"}).hcode == ""


def test_the_user_cannot_change_a_key_the_policy_fixes(tmp_path):
    settings = nhso(tmp_path, policy={"nhsoZone": "test"})
    with pytest.raises(SettingsError, match="fixed by the admin policy"):
        save_user_settings(settings, {"zone": "production"})
    assert not (tmp_path / "c" / "nhso.json").exists()
    saved = save_user_settings(settings, {"hcode": "10699"})     # other keys still may
    assert saved.hcode == "10699"


def test_policy_keys_in_a_linux_policy_file(tmp_path, monkeypatch):
    """Both kinds read one file; each takes its own keys (docs/admin.md)."""
    from agent import osroom
    from agent.osroom import LinuxRoom

    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"allowedOrigins": ["https://his.hospital.test"],
                                  "nhsoHcode": "10699", "nhsoZone": "test"}))
    monkeypatch.setattr(osroom, "current", lambda: LinuxRoom(policy))
    settings = load_settings(config_dir=tmp_path / "c", data_dir=tmp_path / "d", env={},
                             site_path=tmp_path / "none.json")
    assert (settings.hcode, settings.zone) == ("10699", "test")
    config = load_config(env={"THAICARD_CONFIG_DIR": str(tmp_path / "c")},
                         site_path=tmp_path / "none.json")
    assert config.allowed_origins == ("https://his.hospital.test",)


def test_a_broken_policy_file_stops_with_each_kinds_error(tmp_path, monkeypatch):
    from agent import osroom
    from agent.osroom import LinuxRoom

    policy = tmp_path / "policy.json"
    policy.write_text("{not json")
    monkeypatch.setattr(osroom, "current", lambda: LinuxRoom(policy))
    with pytest.raises(ConfigInvalid, match="cannot read"):
        load_config(env={"THAICARD_CONFIG_DIR": str(tmp_path)}, site_path=tmp_path / "n.json")
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(config_dir=tmp_path, data_dir=tmp_path, env={}, site_path=tmp_path / "n")


# -- paths ---------------------------------------------------------------------------------
def test_overrides_are_read_in_the_paths_module(tmp_path):
    env = {"THAICARD_CONFIG_DIR": str(tmp_path / "c"), "THAICARD_DATA_DIR": str(tmp_path / "d")}
    assert paths.user_config_dir(env) == tmp_path / "c"
    assert paths.user_data_dir(env) == tmp_path / "d"
    assert paths.agent_config_file(env) == tmp_path / "c" / "config.json"
    assert paths.tray_prefs_file(env) == tmp_path / "c" / "tray.json"
    assert paths.agent_config_file({**env, "THAICARD_CONFIG": str(tmp_path / "x.json")}) == \
        tmp_path / "x.json"
    assert paths.user_config_dir({}).name == "thaicard-agent"
    assert paths.site_nhso_settings_file().name == "nhso.json"
    settings = load_settings(env=env, site_path=tmp_path / "none.json", policy=policy_of({}))
    assert settings.settings_path == tmp_path / "c" / "nhso.json"
    assert settings.outbox_path.parent == tmp_path / "d"


# -- the atomic writer -----------------------------------------------------------------------
def test_atomic_writer_mode_and_refusal_leave_no_trace(tmp_path):
    target = tmp_path / "sub" / "nhso.json"
    write_atomic(target, '{"a": 1}\n')
    assert target.read_text() == '{"a": 1}\n'
    assert stat.S_IMODE(target.stat().st_mode) == PRIVATE
    write_atomic(target, "{}\n", mode=SHARED)
    assert stat.S_IMODE(target.stat().st_mode) == SHARED

    def refuse(candidate: Path) -> None:
        assert candidate.parent == target.parent and candidate.read_text() == "new"
        raise ValueError("no")

    with pytest.raises(ValueError):
        write_atomic(target, "new", check=refuse)
    assert target.read_text() == "{}\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["nhso.json"]


def test_nhso_settings_file_is_private(tmp_path):
    settings = nhso(tmp_path)
    save_user_settings(settings, {"recorderPid": RECORDER_PID})
    assert stat.S_IMODE((tmp_path / "c" / "nhso.json").stat().st_mode) == PRIVATE
