"""Waiting on events instead of sleeping: a busy machine takes as long as it takes to get there."""

from __future__ import annotations

import os
import time
from pathlib import Path


def blocked_on(path: Path | str) -> int:
    """How many threads or processes wait for a lock on ``path`` (Linux lists waiters in /proc/locks as ``->``)."""
    inode = os.stat(path).st_ino
    return sum("->" in line and f":{inode} " in line for line in Path("/proc/locks").read_text().splitlines())


def wait_until_blocked_on(path: Path | str, count: int = 1, timeout: float = 120.0) -> None:
    """Wait until ``count`` threads or processes wait for a lock on ``path``."""
    deadline = time.monotonic() + timeout
    while blocked_on(path) < count:
        assert time.monotonic() < deadline, f"fewer than {count} came to wait on the lock of {path}"
        time.sleep(0.005)
