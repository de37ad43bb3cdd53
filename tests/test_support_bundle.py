"""The support bundle after real reads: an agent process with the demo card read by every
route (compat with photo, /v1 with photo, the WebSocket), DEBUG logging to a file, then
``thaicard-agent support-bundle``; nothing of the card may be in the zip."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import aiohttp

from agent.card.demo import demo_profile
from testrig.ports import free_port
from tests.api_support import clean_env, get, serve_cmd, wait_until_up

ROOT = Path(__file__).resolve().parents[1]


def card_values() -> list[bytes]:
    """The demo card's values in every form they are written: plain, printed with dashes
    or spaces, the names, the address parts, the photo's bytes and their base64."""
    text = demo_profile(0).text
    photo = demo_profile(0).photo
    cid = text.citizen_id
    forms = [cid, f"{cid[0]}-{cid[1:5]}-{cid[5:10]}-{cid[10:12]}-{cid[12]}",
             f"{cid[0]} {cid[1:5]} {cid[5:10]} {cid[10:12]} {cid[12]}",
             f"{cid[0]}-{cid[1:5]}-xxxxx-xx-{cid[12]}",           # not even the masked id
             text.name_th.last, text.name_en.last,
             f"{text.name_th.first} {text.name_th.last}", f"{text.name_en.first} "
             f"{text.name_en.last}", text.request_number,
             *(p for p in text.address.parts if len(p) > 4)]
    values = [f.encode() for f in forms]
    values += [photo[i:i + 24] for i in range(200, len(photo) - 24, 300)]
    values += [base64.b64encode(photo[i:i + 48]) for i in range(300, len(photo) - 48, 300)]
    return values


async def read_everything(port: int) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/api/smartcard/read?readImageFlag=true", "/v1/card?photo=1",
                     "/api/smartcard/read-card-only?readImageFlag=true"):
            async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
                assert resp.status == 200, path
                body = await resp.text()
                assert demo_profile(0).text.citizen_id in body
        async with session.ws_connect(f"ws://127.0.0.1:{port}/v1/events") as ws:
            snapshot = await ws.receive_json(timeout=10)
            assert snapshot["type"] == "snapshot"


def test_bundle_has_the_report_logs_settings_and_no_card_value(tmp_path: Path) -> None:
    import asyncio

    port = free_port()
    env = clean_env(tmp_path)
    env.update(THAICARD_PORT=str(port), THAICARD_LOG_DIR=str(tmp_path / "logs"),
               THAICARD_LOG_LEVEL="DEBUG", THAICARD_BACKEND="demo")
    agent = subprocess.Popen(serve_cmd(port, "--log-level", "DEBUG"), env=env,
                             stderr=subprocess.DEVNULL)
    try:
        wait_until_up(port, agent)
        asyncio.run(read_everything(port))
        status, _ = get(port, "/api/nhso-service/probe")  # a 404 path lands in the log too
        assert status == 404
        out = tmp_path / "bundle.zip"
        proc = subprocess.run([sys.executable, "-m", "agent", "support-bundle", str(out)],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0, proc.stderr
    finally:
        agent.terminate()
        agent.wait(15)
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        contents = {name: zf.read(name) for name in names}
    assert {"doctor.txt", "doctor.json", "settings.json", "system.json",
            "logs/agent.log"} <= names
    assert b"GET /api/smartcard/read" in contents["logs/agent.log"]   # the reads were logged
    doctor = json.loads(contents["doctor.json"])
    assert {c["check"] for c in doctor["checks"]} >= {"config", "pcsc", "readers", "port"}
    settings = json.loads(contents["settings.json"])
    assert settings["agent"]["sources"]["port"] == "env"
    assert settings["agent"]["values"]["port"] == port
    assert settings["token"] == "never included"
    system = json.loads(contents["system.json"])
    assert system["readers"] and system["versions"]["thaicard-agent"]
    assert "prometheus_client" in system["versions"] and system["os"]
    everything = b"\n".join(contents.values())
    for value in card_values():
        assert value not in everything, value
