"""Freed heap memory is returned to the system: after a burst the operator does not stay at its high-water mark."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from vigil.reconcile import memory, supervise

glibc = pytest.mark.skipif(not memory.available(), reason="the C library has no malloc_trim")

SCRIPT = textwrap.dedent(
    """
    import json
    from vigil.reconcile import memory

    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

    burst = [bytes(4000) for _ in range(12_000)]  # 48 MB from malloc, as parsed API answers are
    kept = burst[::64]  # a few survivors spread over the heap: its top is not free, so glibc keeps it all
    del burst
    before = rss()
    returned = memory.trim()
    print(json.dumps([before, rss(), returned, len(kept)]))
    """
)


@glibc
def test_a_trim_returns_what_a_burst_freed_to_the_system() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    before, after, returned, _ = json.loads(done.stdout.strip().splitlines()[-1])
    assert returned
    assert before - after > 30 * 2**20  # most of the 47 MB freed is no longer resident


async def test_the_memory_task_trims_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    third = threading.Event()

    def trim() -> bool:
        calls.append(time.monotonic())
        if len(calls) >= 3:
            third.set()
        return True

    monkeypatch.setattr(memory, "trim", trim)
    task = asyncio.create_task(memory.run(supervise.Heartbeat("memory", 10.0), interval=0.05))
    try:
        assert await asyncio.to_thread(third.wait, 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert all(b - a >= 0.04 for a, b in itertools.pairwise(calls))
