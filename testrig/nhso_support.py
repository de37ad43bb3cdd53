"""Helpers for the NHSO tests: a real Secret Service keyring, the contract server and agent
processes, and valid claim bodies."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

from agent.card.demo import make_citizen_id
from testrig import processes
from testrig.ports import free_port as free_port  # re-exported: NHSO tests take it from here

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token-0123456789abcdef"
HCODE = "10699"
SOURCE_ID = "TCAGENT"
RECORDER_PID = make_citizen_id("110170000001")


@contextlib.contextmanager
def secret_service(home: Path) -> Iterator[dict[str, str]]:
    """A private D-Bus session (``dbus-run-session``) with an unlocked gnome-keyring.

    Yields the environment for processes that should use it. The session ends when the
    context exits (its stdin is closed, the shell exits, dbus-run-session stops the bus).
    """
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DBUS_", "PYTHON_KEYRING", "GNOME_KEYRING"))}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"),
               XDG_CONFIG_HOME=str(home / "config"), XDG_CACHE_HOME=str(home / "cache"))
    script = ("printf pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null "
              "&& echo \"$DBUS_SESSION_BUS_ADDRESS\" && exec cat >/dev/null")
    proc = subprocess.Popen(["dbus-run-session", "--", "sh", "-c", script], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        if not address:
            raise RuntimeError("dbus-run-session / gnome-keyring-daemon did not start")
        yield {**env, "DBUS_SESSION_BUS_ADDRESS": address}
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def run_cli(args: list[str], env: dict[str, str],
            stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], input=stdin,
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


class Proc:
    """A child process that prints ``READY <port>`` once it serves."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._log_file = open(log, "a", encoding="utf-8")  # noqa: SIM115 - open as long as the process
        self.popen = subprocess.Popen([sys.executable, "-m", *args], env=env, cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=self._log_file, text=True)
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if not line.startswith("READY "):
            self.kill()
            raise RuntimeError(f"{args[0]} did not start; see {log}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            self.popen.wait(15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)
        self._log_file.close()


def start_contract_server(env: dict[str, str], log: Path) -> Proc:
    return Proc(["testrig.nhso_server", "--port", "0", "--token", TOKEN, "--hcode", HCODE],
                env, log)


def agent_env(base: dict[str, str], tmp: Path, nhso_url: str, **settings: str) -> dict[str, str]:
    env = dict(base)
    env.update(THAICARD_CONFIG_DIR=str(tmp / "config"), THAICARD_DATA_DIR=str(tmp / "data"),
               THAICARD_NHSO_BASE_URL=nhso_url, THAICARD_NHSO_HCODE=HCODE,
               THAICARD_NHSO_SOURCE_ID=SOURCE_ID, THAICARD_NHSO_RECORDER_PID=RECORDER_PID)
    for key, value in settings.items():
        env[key] = value
    return env


def http(method: str, url: str, body: Any = None,
         timeout: float = 10) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_for(predicate: Any, what: str, deadline: float = 120.0) -> Any:
    """``processes.wait_for`` with the NHSO tests' longer limit (claims wait on retries)."""
    return processes.wait_for(predicate, what, deadline, every=0.05)


def patient_pid(n: int) -> str:
    return make_citizen_id(f"3{n:011d}")


def claim_body(n: int, *, now_ms: int | None = None, **changes: Any) -> dict[str, Any]:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    body: dict[str, Any] = {
        "pid": patient_pid(n), "transactionId": f"{HCODE}-VN{n:06d}",
        "visitNumber": f"VN{n:06d}", "mainInsclCode": "UCS", "claimServiceCode": "PG0060001",
        "serviceDateTime": now_ms - 60_000, "invoiceDateTime": now_ms - 30_000,
        "totalAmount": 350.0, "paidAmount": 0.0, "privilegeAmount": 350.0,
    }
    body.update(changes)
    return body


class MemoryKeyring(KeyringBackend):
    """An in-process keyring for tests of one layer (the real one: test_nhso_token.py)."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.secrets.pop((service, username), None) is None:
            raise PasswordDeleteError("no such password")


def self_signed_cert(folder: Path) -> tuple[str, str]:
    """A certificate (and its key) for https://127.0.0.1, made with openssl."""
    cert, key = folder / "localhost-cert.pem", folder / "localhost-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


class VisitSourceProc(Proc):
    """The reference visit source (testrig/visit_source.py) as a process on HTTPS."""

    def __init__(self, folder: Path, key: str, env: dict[str, str]) -> None:
        self.cert, cert_key = self_signed_cert(folder)
        super().__init__(["testrig.visit_source", "--port", "0", "--key", key, "--cert",
                          self.cert, "--cert-key", cert_key], env, folder / "visit-source.log")
        self.url = f"https://127.0.0.1:{self.port}"

    def control(self, path: str, body: Any = None) -> Any:
        """A control route (``/_control/...``) over the source's own TLS."""
        context = ssl.create_default_context(cafile=self.cert)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data,
                                     method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=context, timeout=10) as resp:
            return json.loads(resp.read())
