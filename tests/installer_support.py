"""Shared by the installer tests: the frozen bundle (built once per test run) and a way to
run an agent binary and ask it for ``/v1/status``."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from testrig.ports import free_port
from testrig.processes import end

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "test-output" / "installer"
BUILD_TIMEOUT = 900        # a first PyInstaller build on a busy 2-core machine
BUILD_DEB = ROOT / "installer" / "linux" / "build_deb.sh"


@contextlib.contextmanager
def machine_lock(name: str) -> Iterator[None]:
    """Serialises test runs that share a resource (PyInstaller's cache, dpkg) when two
    pytest processes run at once on one machine, from this checkout or another one (the
    package database is the machine's), so the lock files are in the temporary folder."""
    folder = Path(tempfile.gettempdir()) / "thaicard-agent-test-locks"
    folder.mkdir(exist_ok=True)
    with open(folder / f"{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@functools.cache
def run_dir() -> Path:
    """This test process's own output folder (the last run's stays for inspection; folders
    of processes that are gone are removed, with the Wine prefix of a run that was stopped
    before its Wine tests removed it: ~700 MB in the temporary folder)."""
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("run-*"):
        pid = old.name.removeprefix("run-")
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(_build_under_wine().default_prefix(old / "wine"), ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
    path = OUT / f"run-{os.getpid()}"
    path.mkdir(exist_ok=True)
    return path


def _build_under_wine() -> Any:
    sys.path.insert(0, str(ROOT / "installer" / "windows"))
    import build_under_wine

    return build_under_wine


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def package_version() -> str:
    sys.path.insert(0, str(ROOT))
    from agent import __version__

    return __version__


def frozen_bundle() -> Path:
    """``dist/thaicard-agent`` built by installer/build_binary.sh from this checkout, once per
    process (the binary, MSI and deb tests all use it). PyInstaller's work folder is kept
    under test-output/ so that a second local run reuses its analysis cache."""
    result = _build_once()
    if isinstance(result, Exception):
        raise result
    return result


@functools.cache
def _build_once() -> Path | Exception:      # a failed build is not retried by every test
    dist = run_dir() / "dist"
    env = {**os.environ, "PYTHON": sys.executable}
    with machine_lock("pyinstaller"):      # one PyInstaller at a time in the shared cache
        result = subprocess.run(["bash", str(ROOT / "installer" / "build_binary.sh"),
                                 str(dist), str(OUT / "pyinstaller-work")], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    (run_dir() / "build_binary.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    if result.returncode != 0:
        return RuntimeError(f"build_binary.sh failed:\n{result.stdout}\n{result.stderr}")
    return dist / "thaicard-agent"


def build_deb(out: Path, **env: str) -> Path:
    """installer/linux/build_deb.sh over the frozen bundle into ``out`` (``env``: its build
    options, KIOSK=1, ALLOWED_ORIGINS=...); zstd, which builds faster than the release's xz."""
    shutil.rmtree(out, ignore_errors=True)
    result = run(["bash", str(BUILD_DEB), str(frozen_bundle()), str(out)], timeout=300,
                 env={**os.environ, "DEB_COMPRESSION": "zstd", **env})
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


def deb_files(deb: Path) -> dict[str, str]:
    """Path -> ``ls -l`` style line, for every entry of the data archive."""
    listing = run(["dpkg-deb", "--contents", str(deb)]).stdout
    files = {}
    for line in listing.splitlines():
        path = line.split(None, 5)[5].split(" -> ")[0]
        files[path.removeprefix(".")] = line
    return files


@functools.cache
def kiosk_deb() -> Path:
    """The kiosk PC's package (``KIOSK=1``), built once per test process."""
    return build_deb(run_dir() / "deb-kiosk", KIOSK="1")


@contextlib.contextmanager
def dpkg_installed(deb: Path) -> Iterator[set[str]]:
    """``deb`` installed with ``dpkg -i`` (as root), purged afterwards, one test process at a
    time (the package database is the machine's). Yields the package's paths that existed
    before the install (folders such as /usr/bin: the removal must leave them)."""
    with machine_lock("dpkg"):
        subprocess.run(["dpkg", "--purge", "thaicard-agent"], capture_output=True)  # leftovers
        existed = {p for p in deb_files(deb) if os.path.lexists(p)}
        result = run(["dpkg", "-i", str(deb)], timeout=300)
        try:
            assert result.returncode == 0, result.stdout + result.stderr
            yield existed
        finally:
            subprocess.run(["dpkg", "--purge", "thaicard-agent"], capture_output=True,
                           timeout=300)


def deb_installed() -> bool:
    out = run(["dpkg-query", "-W", "-f=${Status}", "thaicard-agent"])
    return out.returncode == 0 and "installed" in out.stdout and "not-installed" not in out.stdout


def wine_build() -> dict[str, Path]:
    """The Windows bundle and MSI built under Wine (installer/windows/build_under_wine.py),
    once per test process; raises what the build raised."""
    return wine_build_started().result()


@functools.cache
def wine_build_started() -> Future[dict[str, Path]]:
    """Start the build under Wine in a thread, once: tests/conftest.py starts it as soon as
    the Wine tests are collected, so its minutes overlap the tests that run before them.
    The downloaded CPython is kept under test-output/ for the next local run."""
    executor = ThreadPoolExecutor(1, thread_name_prefix="wine-build")
    future = executor.submit(_build_under_wine().build, run_dir() / "wine",
                             cache=OUT / "wine-cache")
    executor.shutdown(wait=False)
    return future


def pyz_modules(executable: Path) -> set[str]:
    """Module names frozen into an executable's PYZ archive (a Windows .exe too)."""
    from PyInstaller.archive.readers import CArchiveReader

    archive = CArchiveReader(str(executable))
    return set(archive.open_embedded_archive("PYZ.pyz").toc)


def isolated_env(home: Path) -> dict[str, str]:
    """An environment whose config, data and logs live under ``home`` (no user settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THAICARD_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "config"),
               XDG_DATA_HOME=str(home / "data"), XDG_STATE_HOME=str(home / "state"),
               XDG_CACHE_HOME=str(home / "cache"), PYSTRAY_BACKEND="dummy")
    return env


def get_status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=5) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def status_when_up(port: int, proc: subprocess.Popen[Any], output: Callable[[], str],
                   limit: float = 60.0) -> dict[str, Any]:
    """/v1/status once the agent ``proc`` runs answers on ``port``. Fails at once when
    ``proc`` ends first (with ``output()``: what it printed) or at ``limit``, which only
    ends a hang (a wait for start-up, not a measurement)."""
    deadline = time.monotonic() + limit
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited with {proc.returncode}:\n{output()}")
        try:
            return get_status(port)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def serve_and_get_status(command: list[str], home: Path, *extra: str) -> dict[str, Any]:
    """Run ``command serve --demo`` on a free port until it answers, return /v1/status."""
    port = free_port()
    proc = subprocess.Popen([*command, "serve", "--demo", "--port", str(port), *extra],
                            env=isolated_env(home), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        return status_when_up(port, proc, lambda: "\n".join(proc.communicate()))
    finally:
        end(proc, 15)


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    kw.setdefault("timeout", 120)
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


@contextlib.contextmanager
def xvfb(screen: str = "1024x768x24") -> Iterator[str]:
    """A private X server (Xvfb picks a free display number itself, so two test processes
    never share one): its DISPLAY. ``-noreset``: by default the server resets when its last
    client leaves, dropping a client that connects at that moment (a tray probing for a
    notification area with a short-lived connection of its own while it makes its icon);
    a desktop session always has clients, so a test display keeps going too."""
    read_end, write_end = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0",
                               screen, "-nolisten", "tcp", "-noreset"], pass_fds=(write_end,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    try:
        with os.fdopen(read_end) as numbers:       # written once the server accepts clients
            number = numbers.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        end(server, 15)


def wait_for_window(display: str, name_regex: str, proc: subprocess.Popen[Any],
                    limit: float = 120.0) -> str:
    """The X window id whose title matches, once ``proc`` shows it; fails when ``proc`` ends
    first (a missing module in a frozen bundle) or at ``limit``, which only ends a hang."""
    deadline = time.monotonic() + limit
    while True:
        found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", name_regex],
                               env={**os.environ, "DISPLAY": display}, capture_output=True,
                               text=True, timeout=30).stdout.split()
        if found:
            return found[0]
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode} before showing "
                                 f"{name_regex!r}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no window {name_regex!r} within {limit:.0f} s")
        time.sleep(0.2)


def settings_dialog_opens(command: list[str], env: dict[str, str]) -> None:
    """``command tray-popup settings`` shows the tray's Tk settings window under Xvfb (a
    bundle without tkinter or Tcl/Tk's scripts fails here, as its tray's dialogs would)."""
    with xvfb() as display:
        proc = subprocess.Popen([*command, "tray-popup", "settings", "--lang", "en"],
                                env={**env, "DISPLAY": display}, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for_window(display, "^Settings", proc)
        except AssertionError as exc:
            proc.kill()
            raise AssertionError(f"{exc}: {proc.communicate()[1]}") from None
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
