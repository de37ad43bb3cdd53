"""``thaicard-agent serve`` as a real process: single instance, clean stop, no card data in logs."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import socket
import subprocess
import urllib.request
from urllib.parse import quote

import pytest
import websockets

from agent.card.demo import demo_profile
from agent.readers.demo import DEMO_READER
from tests.api_support import ROOT, clean_env, free_port, get, serve_cmd, wait_until_up


@pytest.fixture
def agent_process(tmp_path):
    procs = []

    def start(*extra: str, port: int | None = None) -> tuple[subprocess.Popen, int]:
        port = port or free_port()
        proc = subprocess.Popen(serve_cmd(port, *extra), cwd=ROOT, env=clean_env(tmp_path),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc, port

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_port_taken_fails_loudly(agent_process):
    first, port = agent_process()
    wait_until_up(port, first)
    second, _ = agent_process(port=port)
    out, err = second.communicate(timeout=30)
    assert second.returncode == 15
    assert "port_in_use" in err and f"127.0.0.1:{port}" in err
    assert "พอร์ต" in err and "already in use" in err
    assert "Traceback" not in err
    assert get(port, "/v1/status")[0] == 200              # the first one is unharmed


def test_port_taken_by_another_program(agent_process):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        proc, port = agent_process(port=other.getsockname()[1])
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 15 and "port_in_use" in err


def test_listens_on_loopback_only(agent_process):
    proc, port = agent_process()
    wait_until_up(port, proc)
    if shutil.which("ss") is None:        # in CI this skip fails the run (tests/skip_policy.py)
        pytest.skip("needs ss (apt package iproute2; scripts/setup.sh test installs it)")
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    local = {line.split()[3] for line in out.stdout.splitlines() if line.strip()}
    # Both loopback addresses (browsers try ::1 first for localhost), and nothing else.
    expected = {f"127.0.0.1:{port}"} | ({f"[::1]:{port}"} if ipv6_loopback() else set())
    assert local == expected


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_port_taken_on_ipv6_loopback_only(agent_process):
    """Another program on [::1]:PORT would get every page's localhost requests."""
    if not ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback")
    with socket.socket(socket.AF_INET6) as other:
        other.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        other.bind(("::1", 0))
        other.listen()
        proc, port = agent_process(port=other.getsockname()[1])
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 15 and "port_in_use" in err and f"[::1]:{port}" in err


def test_bad_config_is_a_clear_error(agent_process, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"allowedOrigins": ["*"]}))
    proc, _ = agent_process("--config", str(bad))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 16 and "config_invalid" in err and "wildcards" in err


def test_logs_hold_no_card_data(agent_process, tmp_path):
    log_dir = tmp_path / "logs"
    proc, port = agent_process("--log-level", "DEBUG", "--log-dir", str(log_dir))
    wait_until_up(port, proc)
    reader = quote(DEMO_READER)
    # Read everything every way: compat with photo, v1 with photo, the photo, events.
    assert get(port, "/api/smartcard/read?readImageFlag=true")[0] == 200
    assert get(port, "/v1/card?photo=1")[0] == 200
    assert get(port, f"/v1/readers/{reader}/photo")[0] == 200
    pid = demo_profile(0).text.citizen_id
    get(port, f"/api/smartcard/probe/{pid}")              # a citizen id in a path
    get(port, f"/v1/readers/{pid}/card")

    import asyncio

    async def watch_a_new_card() -> None:
        async with websockets.connect(f"ws://127.0.0.1:{port}/v1/events") as ws:
            await ws.recv()
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/demo/card",
                                         data=b'{"variant": 1}', method="POST",
                                         headers={"Content-Type": "application/json"})
            await asyncio.to_thread(urllib.request.urlopen, req)
            while json.loads(await ws.recv())["type"] != "card.photo":
                pass
    asyncio.run(watch_a_new_card())
    assert json.loads(get(port, "/v1/card")[1])["card"]["citizen_id"] == \
        demo_profile(1).text.citizen_id

    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0                             # a clean stop
    log_text = (log_dir / "agent.log").read_text(encoding="utf-8")
    assert "listening on" in log_text and "GET /v1/card" in log_text   # it did log
    everything = log_text + stderr

    secrets = set()
    for variant in (0, 1):
        profile = demo_profile(variant)
        text = profile.text
        secrets |= {text.citizen_id, text.name_th.first, text.name_th.last, text.name_en.first,
                    text.name_en.last, text.number_under_photo, text.issuer, text.birth_date.raw,
                    text.address.raw, base64.b64encode(profile.photo).decode()[:40]}
        secrets |= {part for part in text.address.parts if len(part) > 3}
        secrets.add(f"{text.citizen_id[0]}-{text.citizen_id[1:5]}")
    # The demo English name "Demo" is also part of the reader's name, which is not card data.
    everything = everything.replace(DEMO_READER, "").replace(reader, "")
    leaked = sorted(s for s in secrets if s and s in everything)
    assert leaked == []
