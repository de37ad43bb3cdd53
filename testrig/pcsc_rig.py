"""The real PC/SC test rig: one pcscd per test session, virtual cards, event capture.

pcscd's socket path is compiled in, so only one daemon can run on a machine: the session
owns it (started with ``--foreground``, its log under test-output/), and the recovery
tests kill and restart it through ``PcscDaemon``. Readers are the two slots of the
vsmartcard-vpcd driver; cards are ``testrig.vpcd_card.VirtualCard``s.

Outside CI a machine without the packages skips these tests with a loud reason; in CI
(``CI=true``) a missing package is a failure, since a skipped rig proves nothing.
The bench script reuses this module, so it does not depend on pytest at import time.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from agent.readers.base import ReaderEvent, ReaderState
from testrig.vpcd_card import READER_NAMES, VPCD_PORTS, VirtualCard

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "test-output"
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
VPCD_CONFIG = Path("/etc/reader.conf.d/vpcd")
# pcscd and the two vpcd slots are machine-wide: concurrent test runs (or the bench) on one
# machine take turns through this lock instead of inserting cards under each other.
RIG_LOCK = Path(tempfile.gettempdir()) / "thaicard-agent-pcsc-rig.lock"
RIG_LOCK_WAIT_S = 100.0
SETUP_HINT = ("run `scripts/setup.sh test` (apt: pcscd vsmartcard-vpcd libpcsclite-dev swig; "
              "pip: pyscard)")


def pcscd_binary() -> str | None:
    # Root shells usually have /usr/sbin on PATH, CI runners and sudo-less shells may not.
    return shutil.which("pcscd") or shutil.which("pcscd", path="/usr/sbin:/sbin")


def missing_requirements() -> list[str]:
    missing = []
    if pcscd_binary() is None:
        missing.append("pcscd (apt package pcscd)")
    if not VPCD_DRIVER.exists() or not VPCD_CONFIG.exists():
        missing.append("the vpcd virtual reader (apt package vsmartcard-vpcd)")
    if importlib.util.find_spec("smartcard") is None:
        missing.append("pyscard (pip)")
    return missing


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def socket_answers(path: Path = PCSCD_SOCKET) -> bool:
    """Whether a pcscd listens on the socket (a stale file after kill -9 does not count)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


RESERVED_PORTS = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")


def _port_set(spec: str) -> set[int]:
    ports: set[int] = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        low, _, high = part.partition("-")
        ports.update(range(int(low), int(high or low) + 1))
    return ports


def reserve_vpcd_ports() -> None:
    """Keep the kernel from handing vpcd's ports to outgoing connections.

    35963/35964 lie in Linux's ephemeral range: any client connection (the API and load
    tests make thousands) can get one as its local port and leave it in TIME_WAIT for
    60 s; such a TIME_WAIT (of a socket without SO_REUSEADDR) makes vpcd's bind fail, and
    pcscd then starts with no reader at all. Reserving them is a machine-wide setting, so it
    is done only where we may (root, as in CI); elsewhere ``wait_vpcd_ports_free`` waits
    the TIME_WAIT out.
    """
    try:
        current = RESERVED_PORTS.read_text().strip()
        if set(VPCD_PORTS) <= _port_set(current):
            return
        RESERVED_PORTS.write_text(",".join(filter(None, [current, "35963-35964"])) + "\n")
    except (OSError, ValueError):
        pass


# At import, i.e. when pytest collects the PC/SC tests, before the API and load tests can
# take these ports for their own connections.
reserve_vpcd_ports()


def wait_vpcd_ports_free(timeout: float = 75.0) -> None:
    """Wait until vpcd could bind its ports (a TIME_WAIT on one lasts up to 60 s)."""
    deadline = time.monotonic() + timeout
    for port in VPCD_PORTS:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                # As vpcd binds: SO_REUSEADDR, so its own connections' TIME_WAIT left by a
                # pcscd restart do not count, but other programs' connections do.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("0.0.0.0", port))
                    break
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"vpcd's port {port} is still in use after "
                                           f"{timeout:.0f} s (ss -tanp | grep {port})") from None
            time.sleep(0.25)                           # TIME_WAIT ends on its own


def _die_with_parent() -> None:
    """In the child: a test run killed by a timeout must not leave its pcscd behind."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class SystemPcscd:
    """The OS's own pcscd under systemd, stopped while the tests run and started again after.

    pcscd 1.9's socket path is compiled in (only the client library honours
    ``PCSCLITE_CSOCK_NAME``) and vpcd's TCP ports are machine-wide, so a second daemon
    cannot run beside the OS's one: the recovery tests need the only one to be ours.
    systemd's units are stopped (the socket unit too, or the next client would start the
    service again) and started again when the session releases the rig. A daemon that
    systemd does not manage is left alone: the tests use it and cannot kill it.
    """

    UNITS = ("pcscd.socket", "pcscd.service")

    def __init__(self, systemctl: str | None = None) -> None:
        self.systemctl = systemctl or shutil.which("systemctl")
        self.stopped: list[str] = []

    def _ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert self.systemctl is not None
        return subprocess.run([self.systemctl, *args], capture_output=True, text=True,
                              timeout=60)

    def stop(self) -> bool:
        """Stop systemd's pcscd units if we may; whether pcscd's socket is now free."""
        if self.systemctl is None or os.geteuid() != 0:
            return False
        active = [u for u in self.UNITS if self._ctl("is-active", "--quiet", u).returncode == 0]
        if not active or self._ctl("stop", *self.UNITS).returncode != 0:
            return False
        self.stopped = active
        deadline = time.monotonic() + 10
        while socket_answers():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)              # systemd reaps it on its own; no event to wait on
        return True

    def restore(self) -> None:
        if self.stopped:
            self._ctl("start", *self.stopped)
            self.stopped = []


class PcscDaemon:
    """The session's pcscd, or an already running one we must not touch (``owned=False``)."""

    def __init__(self, log_path: Path = OUTPUT / "pcscd.log", *, debug: bool = True,
                 config_dir: Path | None = None, take_over_system: bool = False) -> None:
        self.log_path = log_path
        self.debug = debug
        self.config_dir = config_dir        # None: the system's reader.conf.d (vpcd's two slots)
        self.process: subprocess.Popen[bytes] | None = None
        self.owned = False
        # Only the test session stops the OS's pcscd (and restores it in release_daemon).
        self.system = SystemPcscd() if take_over_system else None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        if socket_answers():
            if self.owned:
                raise RuntimeError("our pcscd is gone but another one answers on its socket")
            if self.system is None or not self.system.stop():
                return                      # someone else's daemon: use it, never kill it
        PCSCD_SOCKET.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.config_dir is None:          # the system's config: vpcd will bind its ports
            reserve_vpcd_ports()
            wait_vpcd_ports_free()
        args = [pcscd_binary() or "pcscd", "--foreground"] + (["--debug"] if self.debug else [])
        if self.config_dir is not None:
            args += ["--config", str(self.config_dir)]
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== pcscd start #{self.starts + 1} ===\n".encode())
            log.flush()
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL,
                                            preexec_fn=_die_with_parent)
        self.owned = True
        self.starts += 1
        deadline = time.monotonic() + timeout
        while not socket_answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"pcscd exited with {self.process.returncode}; "
                                   f"see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"pcscd socket did not appear in {timeout} s")
            time.sleep(0.02)                # waiting for a file: there is no event to block on

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        """SIGTERM (clean exit) or SIGKILL (a crash); waits until the process is reaped."""
        if not self.owned or self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if kill:
            # A killed pcscd leaves its socket and pid file; the next start must not trip.
            for leftover in (PCSCD_SOCKET, PCSCD_SOCKET.with_name("pcscd.pid")):
                try:
                    leftover.unlink()
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        raise
        self.process = None

    def restart(self, *, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()


class RigBusy(RuntimeError):
    """Another process holds the PC/SC rig for longer than we are willing to wait."""


def lock_rig(wait: float = RIG_LOCK_WAIT_S) -> int:
    """Take the machine-wide rig lock (released when the fd closes or the process ends)."""
    fd = os.open(RIG_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise RigBusy(f"another process (pid {holder}) has used the PC/SC rig "
                              f"for over {wait:.0f} s ({RIG_LOCK})") from None
            time.sleep(0.2)             # flock has no timeout: the other run ends on its own
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


_shared: PcscDaemon | None = None
_users = 0
_lock_fd: int | None = None
_shared_lock = threading.Lock()


def acquire_daemon() -> PcscDaemon:
    """The one daemon of this process, started on first use (several fixtures share it)."""
    global _shared, _users, _lock_fd
    with _shared_lock:
        if _lock_fd is None:
            _lock_fd = lock_rig()
        if _shared is None:
            _shared = PcscDaemon(take_over_system=True)
        try:
            _shared.start()
        except BaseException:
            if _users == 0:
                os.close(_lock_fd)
                _lock_fd = None
            raise
        _users += 1
        return _shared


def release_daemon() -> None:
    global _shared, _users, _lock_fd
    with _shared_lock:
        _users -= 1
        if _users > 0:
            return
        try:
            if _shared is not None:
                _shared.stop()
                if _shared.system is not None:
                    _shared.system.restore()
        finally:
            _shared = None
            if _lock_fd is not None:
                os.close(_lock_fd)
                _lock_fd = None


class EventLog:
    """A monitor event sink that tests wait on, in order, with a timeout.

    Each reader has its own cursor (and so does "any reader"), so two threads that each
    follow one reader never consume each other's events.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.events: list[ReaderEvent] = []
        self.times: list[float] = []          # perf_counter() at arrival, for the bench
        self._cursors: dict[str | None, int] = {}
        self._floor = 0

    def __call__(self, event: ReaderEvent) -> None:
        with self._cond:
            self.events.append(event)
            self.times.append(time.perf_counter())
            self._cond.notify_all()

    def skip_all(self) -> None:
        """Forget what came so far: the next waits only see new events."""
        with self._cond:
            self._cursors = {key: len(self.events) for key in [*self._cursors, None]}
            self._floor = len(self.events)

    def wait_for(self, kind: str, reader: str | None = None,
                 timeout: float = 10.0) -> ReaderEvent:
        """The next event of ``kind`` (for ``reader``); the ones passed on the way are dropped."""
        return self.wait_until(lambda e: e.kind == kind, reader, timeout, kind)

    def wait_until(self, match: Callable[[ReaderEvent], bool], reader: str | None = None,
                   timeout: float = 10.0, what: str = "event") -> ReaderEvent:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                at = self._cursors.get(reader, self._floor)
                while at < len(self.events):
                    event = self.events[at]
                    at += 1
                    if reader is None or event.reader == reader:
                        if match(event):
                            self._cursors[reader] = at
                            return event
                self._cursors[reader] = at
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(e.kind, e.reader, e.error) for e in self.events[-12:]]
                    raise AssertionError(f"no {what} {reader or ''} within {timeout} s; "
                                         f"last events: {seen}")
                self._cond.wait(remaining)

    def arrival(self, event: ReaderEvent) -> float:
        """When ``event`` (this very object) reached the sink, in ``perf_counter`` time."""
        with self._cond:
            for i in range(len(self.events) - 1, -1, -1):
                if self.events[i] is event:
                    return self.times[i]
        raise KeyError(event)

    def kinds(self, reader: str | None = None) -> list[str]:
        with self._cond:
            return [e.kind for e in self.events if reader is None or e.reader == reader]


def wait_states(backend: object, until: Callable[[list[ReaderState]], bool],
                timeout: float = 10.0) -> list[ReaderState]:
    """Block on the backend's own status-change wait until ``until(states)`` holds."""
    deadline = time.monotonic() + timeout
    states = backend.snapshot()
    while not until(states):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"reader states did not settle in {timeout} s: {states}")
        states = backend.wait_for_change(states, remaining)
    return states


def slots_empty(states: list[ReaderState]) -> bool:
    by_name = {s.name: s for s in states}
    return all(name in by_name and not by_name[name].present for name in READER_NAMES)


def card_present(reader: str) -> Callable[[list[ReaderState]], bool]:
    return lambda states: any(s.name == reader and s.present for s in states)


class CardSlots:
    """Inserts virtual cards for one test and pulls every one of them out afterwards."""

    def __init__(self) -> None:
        self.cards: list[VirtualCard] = []

    def insert(self, card: VirtualCard, slot: int = 0) -> VirtualCard:
        self.cards.append(card)
        return card.insert(slot)

    def remove_all(self) -> None:
        for card in self.cards:
            card.remove()
        self.cards.clear()


class MonitorRig:
    """A started ``ReaderMonitor`` over a ``PcscBackend`` with its events captured."""

    def __init__(self, *, backoff: tuple[float, float] = (0.1, 1.0)) -> None:
        from agent.monitor import ReaderMonitor
        from agent.readers.pcsc import PcscBackend

        self.backend = PcscBackend()
        self.events = EventLog()
        self.monitor = ReaderMonitor(self.backend, self.events, backoff=backoff)

    def start(self, timeout: float = 10.0) -> MonitorRig:
        self.monitor.start()
        for name in READER_NAMES:
            self.events.wait_for("reader_added", name, timeout)
        return self

    def stop(self) -> None:
        self.monitor.stop()
        self.backend.close()


def settle_empty(timeout: float = 10.0) -> None:
    """Wait until pcscd reports both vpcd slots empty (so the next test starts clean)."""
    from agent.readers.pcsc import PcscBackend

    backend = PcscBackend()
    try:
        wait_states(backend, slots_empty, timeout)
    finally:
        backend.close()


# -- pytest fixtures (imported by the tests/test_pcsc_*.py modules) ---------------------------
try:
    import pytest
except ImportError:                          # the bench script runs without pytest
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="session")
    def pcscd() -> Iterator[PcscDaemon]:
        missing = missing_requirements()
        if missing:
            message = ("REAL PC/SC TESTS NOT RUN: missing " + ", ".join(missing)
                       + "; " + SETUP_HINT)
            if in_ci():
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        try:
            daemon = acquire_daemon()
        except RigBusy as busy:
            message = f"REAL PC/SC TESTS NOT RUN: {busy}"
            if in_ci():
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        if not daemon.owned and in_ci():
            # The recovery tests kill and restart pcscd: with a daemon we may not touch they
            # would prove nothing, so CI refuses to go on rather than skip them.
            release_daemon()
            pytest.fail("pcscd was started outside the tests and is not under systemd (which "
                        "the rig would stop and restore): stop it before running the "
                        "tests", pytrace=False)
        try:
            yield daemon
        finally:
            release_daemon()

    @pytest.fixture
    def pcsc_monitor(pcscd: PcscDaemon) -> Iterator[MonitorRig]:
        rig = MonitorRig()
        try:
            yield rig.start()
        finally:
            rig.stop()

    @pytest.fixture
    def slots(pcscd: PcscDaemon) -> Iterator[CardSlots]:
        slots = CardSlots()
        try:
            yield slots
        finally:
            slots.remove_all()
            if pcscd.owned and not pcscd.running:
                pcscd.start()             # a failed recovery test must not sink the next one
            settle_empty()
