"""The real agent (``agent.assembly.start_server``: both loopback sockets, the connection
gate, the NHSO room) in a background thread, and raw HTTP over sockets, so tests can send
what no polite client would: bytes that are not UTF-8, half-sent heads, stalled bodies.

Log records of the agent are kept (``records``) to check that nothing logged a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.api.limits import ServerLimits
from agent.assembly import NhsoParts, RunningServer, start_server
from agent.config import Config
from agent.errors import AgentError
from agent.nhso.settings import load_settings
from agent.nhso.token import TokenStore
from agent.readers.demo import DemoBackend
from testrig.nhso_support import HCODE, RECORDER_PID, SOURCE_ID, MemoryKeyring
from testrig.ports import free_port

NHSO_PAGE = "https://authenservice.nhso.go.th"
HIS = "https://his.example.test"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def tracebacks(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" for r in self.records
                if r.exc_info or r.exc_text or "Traceback" in r.getMessage()
                or "unhandled" in r.getMessage()]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class LiveAgent:
    server: RunningServer
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    log: Records
    backend: DemoBackend
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.server.port

    def alive(self) -> bool:
        return self.thread.is_alive() and self.get("/v1/status").status == 200

    def raw(self, data: bytes, *, timeout: float = 10.0, host: str = "127.0.0.1") -> Answer:
        """Send ``data`` as is on a new connection; the answer (one response)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect((host, self.port))
            s.sendall(data)
            return read_answer(s)

    def request(self, method: str, target: str, *, headers: dict[str, str] | None = None,
                body: bytes = b"", host: str | None = None) -> Answer:
        head = [f"{method} {target} HTTP/1.1", f"Host: {host or f'127.0.0.1:{self.port}'}",
                "Connection: close"]
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}")
        if body or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body)}")
        return self.raw(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    def get(self, target: str, **kw: Any) -> Answer:
        return self.request("GET", target, **kw)

    def call(self, coro: Any, timeout: float = 20.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def read_answer(s: socket.socket) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed without an answer after {data[:200]!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "-1"))
    while length < 0 or len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return Answer(status, headers, rest if length < 0 else rest[:length])


@contextmanager
def live_agent(tmp_path: Path, *, limits: ServerLimits | None = None, token: bool = False,
               **config: Any) -> Iterator[LiveAgent]:
    """The agent on a free port with the demo reader and a configured NHSO room whose
    NHSO address answers nothing (no request ever leaves loopback)."""
    settings = load_settings(config_dir=tmp_path / "c", data_dir=tmp_path / "d", env={},
                             site_path=tmp_path / "none.json",
                             base_url=f"http://127.0.0.1:{free_port()}", hcode=HCODE,
                             source_id=SOURCE_ID, recorder_pid=RECORDER_PID)
    keyring = MemoryKeyring()
    if token:
        keyring.set_password("thaicard-agent", "nhso-token", "t" * 32)
    config.setdefault("backend", "demo")
    config.setdefault("allowed_origins", (NHSO_PAGE, HIS))
    backend = DemoBackend(("Demo Reader 0",), insert_demo_card=True)
    records = Records()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(records)
    root.setLevel(logging.INFO)
    loop = asyncio.new_event_loop()
    ready: dict[str, Any] = {}
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            for _ in range(5):
                try:
                    ready["server"] = loop.run_until_complete(start_server(
                        Config(port=free_port(), **config), backend=backend,
                        nhso=NhsoParts(settings, TokenStore(keyring)), limits=limits))
                    break
                except AgentError as exc:    # a port taken on ::1 between the two binds
                    ready["error"] = exc
        finally:
            started.set()
        if "server" in ready:
            loop.run_forever()

    thread = threading.Thread(target=run, name="live agent", daemon=True)
    thread.start()
    started.wait(30)
    if "server" not in ready:
        raise RuntimeError(f"the agent did not start: {ready.get('error')!r}")
    agent = LiveAgent(ready["server"], loop, thread, records, backend)
    try:
        agent.get("/v1/card?photo=1")           # waits for the demo card's whole read
        yield agent
    finally:
        try:
            agent.call(agent.server.stop())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()
            root.removeHandler(records)
            root.setLevel(old_level)
