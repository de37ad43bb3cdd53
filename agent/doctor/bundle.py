"""The support bundle: one zip IT can attach to a ticket, with nothing personal in it.

Inside: the doctor report (made without a test read, so not even a masked id), the end of
the agent's logs (passed through the log redaction once more), the effective settings
with where each value came from (the NHSO recorder id only as set/unset, never the token),
versions, the OS and the reader names.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import __version__, osroom
from ..config import Config, load_config
from ..errors import AgentError
from ..logging_setup import LOG_FILE, default_log_dir, redact
from .run import run_doctor

LOG_TAIL_BYTES = 512_000           # per file: the last hours of a busy day
LOG_FILES = 3                      # agent.log, agent.log.1, agent.log.2
PACKAGES = ("aiohttp", "pyscard", "keyring", "truststore", "pystray", "prometheus_client")


def default_bundle_path(folder: Path) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return folder / f"thaicard-agent-support-{stamp}.zip"


def _versions() -> dict[str, Any]:
    found: dict[str, Any] = {"thaicard-agent": __version__, "python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _settings() -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        config = load_config()
        out["agent"] = {"values": config.public_view(), "sources": dict(config.sources)}
    except AgentError as exc:
        out["agent"] = {"error": exc.detail}
        config = Config()
    try:
        from ..nhso.settings import load_settings

        nhso = load_settings()
        out["nhso"] = {"values": nhso.public_view(), "sources": dict(nhso.sources)}
    except AgentError as exc:
        out["nhso"] = {"error": exc.detail}
    _values, where = osroom.current().read_policy() if "error" not in out["agent"] else ({}, "?")
    out["policySource"] = where
    out["token"] = "never included"
    out["logDir"] = str(config.log_dir or default_log_dir())
    return out


def _log_tails(folder: Path) -> dict[str, str]:
    tails = {}
    for n in range(LOG_FILES):
        path = folder / (LOG_FILE if n == 0 else f"{LOG_FILE}.{n}")
        try:
            with path.open("rb") as fh:
                size = fh.seek(0, 2)
                fh.seek(max(0, size - LOG_TAIL_BYTES))
                text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            continue
        # The file was written through the redacting filter; redact again in case an older
        # version or another program wrote there.
        tails[path.name] = redact(text)
    return tails


def write_bundle(path: Path) -> Path:
    report = run_doctor(test_read=False)
    settings = _settings()
    readers: list[dict[str, Any]] = next((f.detail.get("readers", []) for f in report.findings
                    if f.check == "readers"), [])
    system = {"os": osroom.current().describe(), "room": osroom.current().name,
              "readers": [r["name"] for r in readers], "versions": _versions(),
              "created": report.created}
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("doctor.txt", report.to_text())
        zf.writestr("doctor.json", json.dumps(report.to_json(), ensure_ascii=False, indent=2))
        zf.writestr("settings.json", json.dumps(settings, ensure_ascii=False, indent=2))
        zf.writestr("system.json", json.dumps(system, ensure_ascii=False, indent=2))
        for name, text in _log_tails(Path(settings["logDir"])).items():
            zf.writestr(f"logs/{name}", text)
    return path
