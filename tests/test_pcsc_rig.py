"""The rig's hand-over of an OS-managed pcscd (no PC/SC needed: systemctl is a fake)."""

from __future__ import annotations

import os
import stat

import pytest

from testrig import pcsc_rig
from testrig.pcsc_rig import SystemPcscd


@pytest.fixture
def fake_systemctl(tmp_path, monkeypatch):
    """A systemctl that logs its calls; only the units in ACTIVE are active."""
    log = tmp_path / "calls"
    script = tmp_path / "systemctl"
    script.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n'
                      'if [ "$1" = is-active ]; then case " $ACTIVE " in *" $3 "*) exit 0;; '
                      'esac; exit 3; fi\nexit 0\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(pcsc_rig, "socket_answers", lambda path=None: False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)

    def calls() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []
    return str(script), calls


def test_a_socket_activated_pcscd_is_stopped_then_started_again(fake_systemctl, monkeypatch):
    systemctl, calls = fake_systemctl
    monkeypatch.setenv("ACTIVE", "pcscd.socket pcscd.service")
    system = SystemPcscd(systemctl)
    assert system.stop() is True
    assert calls()[-1] == "stop pcscd.socket pcscd.service"
    system.restore()
    assert calls()[-1] == "start pcscd.socket pcscd.service"
    system.restore()                                  # only once
    assert calls().count("start pcscd.socket pcscd.service") == 1


def test_a_pcscd_systemd_does_not_run_is_left_alone(fake_systemctl, monkeypatch):
    systemctl, calls = fake_systemctl
    monkeypatch.setenv("ACTIVE", "")
    system = SystemPcscd(systemctl)
    assert system.stop() is False
    assert not [c for c in calls() if c.startswith("stop")]
    system.restore()
    assert not [c for c in calls() if c.startswith("start")]


def test_without_root_nothing_is_stopped(fake_systemctl, monkeypatch):
    systemctl, calls = fake_systemctl
    monkeypatch.setenv("ACTIVE", "pcscd.service")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert SystemPcscd(systemctl).stop() is False and calls() == []
