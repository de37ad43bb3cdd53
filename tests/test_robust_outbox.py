"""The NHSO claim outbox on a read-only or full disk: a clear error, and cards still served.

The agent runs as a real ``thaicard-agent serve --demo`` process inside its own mount
namespace (``unshare -m``), where its data directory is a tmpfs that is read-only, or tiny
and then filled up from outside (through ``/proc/<pid>/root``). The NHSO token sits in a
real gnome-keyring (dbus-run-session), as in the NHSO tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from testrig.nhso_support import TOKEN, agent_env, claim_body, run_cli, secret_service
from testrig.pcsc_rig import in_ci
from testrig.robust_support import AgentProcess, request

ERROR_TH = "ไม่สามารถใช้ฐานข้อมูลคิวส่งปิดสิทธิในเครื่องได้"   # outbox_unavailable, Thai


def can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def mount_ns() -> None:
    if not can_unshare():
        message = "needs `unshare -m` (root or user namespaces) for a private tmpfs"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def tmpfs_agent(workdir: Path, env: dict[str, str], options: str) -> AgentProcess:
    """A demo agent whose data dir is a fresh tmpfs mounted with ``options`` for it alone."""
    agent = AgentProcess(backend="demo", workdir=workdir, env=env, log_level="INFO")
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    # The agent's env sets THAICARD_DATA_DIR to workdir/data (AgentProcess), so the mount
    # below is where the outbox lives. "$@" is the agent's command line.
    script = f'mount -t tmpfs -o {options} thaicard-test "{data}" && exec "$@"'
    agent.start(wrap=["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh"])
    agent.wait_listening()
    agent.wait_status(lambda s: s["reads"] >= 1)
    return agent


def check_cards_still_served(agent: AgentProcess) -> None:
    status, body = agent.get("/v1/card?photo=1")
    assert status == 200, body
    assert json.loads(body)["card"]["photo"]["size"] > 0
    # (/api/smartcard/read would also ask NHSO for coverage, unreachable here by design.)
    status, body = agent.get("/api/smartcard/read-card-only?readImageFlag=true")
    assert status == 200 and json.loads(body)["pid"]


def post_claim(agent: AgentProcess, n: int) -> tuple[int, dict]:
    status, body = request("POST", agent.url + "/v1/claims", claim_body(n))
    return status, json.loads(body)


@pytest.fixture
def keyring_env(tmp_path: Path):
    with secret_service(tmp_path / "home") as env:
        env = agent_env(env, tmp_path, "http://127.0.0.1:9")    # NHSO unreachable: queued
        assert run_cli(["token", "set"], env, stdin=TOKEN + "\n").returncode == 0
        yield env


def test_read_only_data_dir_refuses_claims_clearly_and_keeps_serving_cards(
        mount_ns, keyring_env, tmp_path):
    agent = tmpfs_agent(tmp_path, keyring_env, "ro,size=1m")
    try:
        check_cards_still_served(agent)
        status, body = post_claim(agent, 1)
        assert status == 503 and body["code"] == "outbox_unavailable", body
        assert body["message_th"] == ERROR_TH
        assert "read-only" in body.get("detail", "").lower() or \
            "unable to open" in body.get("detail", "").lower(), body
        check_cards_still_served(agent)
    finally:
        code = agent.stop()
    log = agent.log_text()
    assert code == 0, log[-2000:]
    assert "outbox" in log and "Traceback" not in log, log[-3000:]


def test_full_disk_refuses_claims_clearly_keeps_serving_and_recovers(mount_ns, keyring_env,
                                                                       tmp_path):
    agent = tmpfs_agent(tmp_path, keyring_env, "size=2m")
    try:
        status, body = post_claim(agent, 1)
        assert status == 202, body
        # Fill the agent's tmpfs from outside its mount namespace.
        data = Path(f"/proc/{agent.pid}/root") / str(tmp_path / "data").lstrip("/")
        filler = data / "filler"
        with open(filler, "wb") as out:
            try:
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
                    os.fsync(out.fileno())
            except OSError:
                pass                           # ENOSPC: the disk is full
        refused = [post_claim(agent, n) for n in range(2, 12)]
        assert all(status == 503 and body["code"] == "outbox_unavailable"
                   for status, body in refused), refused
        assert "full" in refused[0][1].get("detail", ""), refused[0]
        check_cards_still_served(agent)
        status, _ = request("GET", agent.url + "/v1/claims/" + body["id"])
        assert status == 200                   # what is stored can still be read

        filler.unlink()                        # space again: claims are taken, no restart
        status, body = post_claim(agent, 20)
        assert status == 202, body
        check_cards_still_served(agent)
    finally:
        code = agent.stop()
    assert code == 0, agent.log_text()[-2000:]
