"""The whole suite in two pytest processes at once: the PC/SC rig's tests and the rest.

Why: most of the rig lane's time is spent waiting on pcscd (it polls the virtual reader
every ~400 ms; the 500-cycle soak alone is over 3 minutes of it), and much of the other
lane's on browsers, Wine and subprocesses starting. Run one after the other they took
over 18 minutes on 2 cores; side by side, the rig's waits overlap the rest.

The rig lane takes every test whose fixtures reach the ``pcscd`` fixture
(testrig/pcsc_rig.py) or that is marked ``pcsc``, found from the test itself, not from a
list: only one lane ever touches the rig, so the machine-wide rig lock never makes a lane
wait. The rig's tests alone are about a quarter of the suite's time, so the rig lane also
takes the Linux bundle's installer tests (all of them: the bundle is built once per
process, so they share one build) and the NHSO outbox's crash test, which waits on held
answers more than it computes; measured on 2 cores, the lanes then take about as long as
each other. Each lane is an ordinary pytest session (its own skip policy, its own run
folder under test-output/installer/).

    python -m tests.lanes            # what scripts/test.sh runs when given no arguments

The main lane prints as it goes; the rig lane's output goes to test-output/lane-rig.log
and is printed after it, then one line per lane. The exit status is the first failing
lane's (0 when both passed).
"""

from __future__ import annotations

import fnmatch
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LANE_VARIABLE = "THAICARD_TEST_LANE"
RIG_FIXTURE = "pcscd"


# Modules that join the rig lane for balance (file name patterns). The Windows build's
# tests stay in the main lane: their build under Wine starts in the background at collection.
BALANCE = ("test_installer_*.py", "test_nhso_outbox.py")
NOT_BALANCE = ("test_installer_wine.py",)


def in_rig_lane(item: pytest.Item) -> bool:
    if (RIG_FIXTURE in getattr(item, "fixturenames", ())
            or item.get_closest_marker("pcsc") is not None):
        return True
    name = item.path.name
    return (any(fnmatch.fnmatchcase(name, p) for p in BALANCE)
            and not any(fnmatch.fnmatchcase(name, p) for p in NOT_BALANCE))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    lane = os.environ.get(LANE_VARIABLE)
    if lane not in ("rig", "main"):
        return
    keep, drop = [], []
    for item in items:
        (keep if in_rig_lane(item) == (lane == "rig") else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _pytest(lane: str, *args: str) -> list[str]:
    # Each lane its own cache folder: two sessions writing one lastfailed file lose entries.
    return [sys.executable, "-m", "pytest", "-o", f"cache_dir=.pytest_cache/{lane}", *args]


def main(args: list[str]) -> int:
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    log_path = out / "lane-rig.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        rig = subprocess.Popen(_pytest("rig", "--color=no", *args), cwd=ROOT,
                               env={**os.environ, LANE_VARIABLE: "rig"},
                               stdout=log, stderr=subprocess.STDOUT)
        try:
            main_lane = subprocess.run(_pytest("main", *args), cwd=ROOT,
                                       env={**os.environ, LANE_VARIABLE: "main"}, check=False)
            main_done = time.monotonic() - started
            rig_status = rig.wait()
        except BaseException as exc:
            # A stopped run must not leave the rig lane (and the pcscd it owns) behind. Ctrl-C
            # reached it too; otherwise it gets one: pytest then tears its fixtures down.
            if rig.poll() is None and not isinstance(exc, KeyboardInterrupt):
                rig.send_signal(signal.SIGINT)
            try:
                rig.wait(60)
            except subprocess.TimeoutExpired:
                rig.kill()
                rig.wait()
            raise
    rig_done = time.monotonic() - started
    print(f"\n{'=' * 30} rig lane ({log_path.relative_to(ROOT)}) {'=' * 30}", flush=True)
    sys.stdout.buffer.write(log_path.read_bytes())
    print(f"\nlanes: main exit {main_lane.returncode} after {main_done:.0f} s, "
          f"rig exit {rig_status} after {rig_done:.0f} s", flush=True)
    return next((s for s in (main_lane.returncode, rig_status) if s != 0), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
