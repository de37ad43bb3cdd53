"""Helpers for the child processes tests start: waiting on a condition, and ending one."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any


def wait_for(check: Callable[[], Any], what: str, limit: float = 30.0,
             every: float = 0.1) -> Any:
    """Poll ``check`` until it returns something true (returned); the limit only ends a
    hung test, it measures nothing."""
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(every)


def end(proc: subprocess.Popen[Any], grace: float = 10.0) -> int:
    """Ask ``proc`` to stop (SIGTERM); killed if it has not after ``grace`` s. Its status."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)
