"""The agent as a real ``thaicard-agent serve`` process, with its footprint read from /proc.

Used by the robustness tests (``tests/test_robust_*.py``) and the benches
(``bench/bench_events.py``, ``bench/bench_footprint.py``), so it imports no pytest.
Linux only (``/proc``), like the PC/SC rig it is used with.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testrig.ports import free_port

REPO = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Footprint:
    """One look at a process: memory, CPU time so far, threads and open files."""
    rss_kib: int
    cpu_s: float
    threads: int
    fds: int

    def to_json(self) -> dict[str, Any]:
        return {"rss_mib": round(self.rss_kib / 1024, 1), "cpu_s": round(self.cpu_s, 3),
                "threads": self.threads, "fds": self.fds}


def footprint(pid: int) -> Footprint:
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS        # utime + stime
    return Footprint(rss_kib=int(status["VmRSS"].split()[0]), cpu_s=cpu,
                     threads=int(status["Threads"]), fds=len(os.listdir(f"/proc/{pid}/fd")))


class AgentProcess:
    """``python -m agent serve`` on a free loopback port with its own config and data dirs.

    ``wrap`` prefixes the command (e.g. ``unshare -m sh -c ...`` for a read-only data dir);
    ``env`` adds variables. stdout/stderr go to ``log`` so a failure can be read afterwards.
    """

    def __init__(self, *, backend: str = "demo", workdir: Path | None = None,
                 env: dict[str, str] | None = None, extra_args: tuple[str, ...] = (),
                 log_level: str = "WARNING") -> None:
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="thaicard-agent-")
        self.workdir = workdir or Path(self._tmp.name)
        self.backend = backend
        self.port = free_port()
        self.extra_args = extra_args
        self.log_level = log_level
        self.log = self.workdir / "agent-stderr.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("THAICARD_")}
        self.env.update(THAICARD_CONFIG_DIR=str(self.workdir / "config"),
                        THAICARD_DATA_DIR=str(self.workdir / "data"))
        self.env.update(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/events"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        return [sys.executable, "-m", "agent", "serve", "--backend", self.backend,
                "--port", str(self.port), "--log-level", self.log_level,
                "--log-dir", str(self.workdir / "logs"), *self.extra_args]

    def start(self, wrap: list[str] | None = None) -> AgentProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "data").mkdir(exist_ok=True)
        command = self.command()
        if wrap:
            command = [*wrap, *command]
        self.started_at = time.perf_counter()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    def wait_listening(self, timeout: float = 30.0) -> float:
        """Seconds from ``start`` until the port accepts a connection."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"agent exited with {self.process.returncode}: "
                                   f"{self.log_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return time.perf_counter() - self.started_at
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"agent not listening after {timeout} s") from None
                time.sleep(0.005)       # a port has no event to wait on

    def wait_status(self, ready: Any = lambda status: True, timeout: float = 30.0) -> dict:
        """Poll ``/v1/status`` until ``ready(status)``; returns that status."""
        deadline = time.monotonic() + timeout
        status: dict = {}
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"agent exited with {self.process.returncode}: "
                                   f"{self.log_text()[-2000:]}")
            try:
                code, body = self.get("/v1/status")
            except OSError:              # listening, but the app may still be starting
                code, body = 0, b""
            if code == 200:
                status = json.loads(body)
                if ready(status):
                    return status
            time.sleep(0.1)
        raise RuntimeError(f"agent status not ready in {timeout} s: {status}")

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        return request("GET", self.url + path, timeout=timeout)

    def footprint(self) -> Footprint:
        return footprint(self.pid)

    def log_text(self) -> str:
        if self.log.exists():
            return self.log.read_text(errors="replace")
        return getattr(self, "_kept_log", "")

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        code = self.process.returncode
        if self._tmp is not None:
            self._kept_log = self.log_text()       # the folder goes, what it logged stays
            self._tmp.cleanup()
            self._tmp = None
        return code

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def demo_agent_running(log_level: str = "INFO", keep_log: Path | None = None
                       ) -> Iterator[AgentProcess]:
    """A ``serve --demo`` process that has read its card; on exit it must stop cleanly
    with no traceback in its log (kept at ``keep_log`` when given)."""
    agent = AgentProcess(backend="demo", log_level=log_level)
    agent.start()
    try:
        agent.wait_listening()
        agent.wait_status(lambda s: s["reads"] >= 1)
        yield agent
    finally:
        code = agent.stop()
        log = agent.log_text()
        if keep_log is not None:
            keep_log.parent.mkdir(parents=True, exist_ok=True)
            keep_log.write_text(log)
        assert code == 0, log[-2000:]
        assert "Traceback" not in log, log[-4000:]


def request(method: str, url: str, body: Any = None, timeout: float = 10.0,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={
        **({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class WsInbox:
    """A ``/v1/events`` client on its own thread: every envelope kept, waited on in order.

    Several test threads can wait at once; each passes the index it starts looking from
    (``mark()`` before acting), so nobody consumes anyone else's events.
    """

    def __init__(self, url: str) -> None:
        import contextlib
        import threading

        from websockets.sync.client import connect

        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(url, max_size=None, open_timeout=10))
        self.messages: list[dict[str, Any]] = []
        self.closed: BaseException | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._pump, name="ws-inbox", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for text in self.ws:
                with self._cond:
                    self.messages.append(json.loads(text))
                    self._cond.notify_all()
        except Exception as exc:  # noqa: BLE001 - kept for the test to report
            self.closed = exc
        finally:
            with self._cond:
                self.closed = self.closed or ConnectionError("closed")
                self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.messages)

    def wait(self, type_: str, reader: str | None = None, after: int = 0,
             timeout: float = 15.0) -> tuple[int, dict[str, Any]]:
        """The first ``type_`` envelope (for ``reader``) at index >= ``after``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            at = after
            while True:
                while at < len(self.messages):
                    msg = self.messages[at]
                    at += 1
                    if msg["type"] == type_ and (reader is None or msg.get("reader") == reader):
                        return at, msg
                remaining = deadline - time.monotonic()
                if self.closed is not None or remaining <= 0:
                    seen = [(m["type"], m.get("reader")) for m in self.messages[-10:]]
                    raise AssertionError(f"no {type_} {reader or ''} within {timeout} s "
                                         f"(socket: {self.closed}); last: {seen}")
                self._cond.wait(remaining)

    def since(self, after: int, reader: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [m for m in self.messages[after:]
                    if reader is None or m.get("reader") == reader]

    def close(self) -> None:
        self._stack.close()
        self._thread.join(5)


def expected_cards(variants: int = 100) -> dict[str, dict[str, Any]]:
    """What ``/v1`` must answer for each demo card, by citizen id (read stats left out)."""
    from agent.card.demo import demo_profile
    from agent.card.encode import encode_card
    from agent.card.session import read_card
    from agent.card.simulator import SimulatedCard

    out = {}
    for variant in range(variants):
        card = SimulatedCard(encode_card(demo_profile(variant)))
        view = read_card(card.process, card.atr).to_json(photo_b64=True)
        view.pop("read")
        out[view["citizen_id"]] = view | {"variant": variant}
    return out
