"""The work queue: de-duplication, one key in flight, and client-go-style paced retries."""

from __future__ import annotations

import asyncio

import pytest

from vigil.reconcile import backoff, supervise
from vigil.reconcile import queue as workqueue

KEY = ("ns", "md")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def paced(clock: Clock, burst: int = 100) -> workqueue.WorkQueue:
    return workqueue.WorkQueue(
        retry_backoff=backoff.Backoff(base=0.5, cap=8.0, jitter=0.0),
        bucket=backoff.TokenBucket(rate=10.0, burst=burst),
        draw=lambda: 0.0,
        clock=clock,
    )


async def test_failures_of_one_key_double_its_delay_up_to_the_cap_and_success_forgets() -> None:
    queue = paced(Clock())
    assert [queue.add_rate_limited(KEY) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert queue.failures(KEY) == 6
    assert queue.add_rate_limited(("ns", "other")) == 0.5  # per key
    queue.forget(KEY)
    assert queue.add_rate_limited(KEY) == 0.5


async def test_retry_after_from_the_server_is_a_floor() -> None:
    queue = paced(Clock())
    assert queue.add_rate_limited(KEY, at_least=7.0) == 7.0
    assert queue.add_rate_limited(KEY, at_least=0.2) == 1.0


async def test_many_failing_keys_share_one_overall_rate() -> None:
    queue = paced(Clock(), burst=2)
    delays = [queue.add_rate_limited(("ns", f"md-{n}")) for n in range(5)]
    assert delays[:2] == [0.5, 0.5]
    assert delays[2:] == pytest.approx([0.5, 0.5, 0.5])  # a token every 0.1 s: under the backoff
    more = [queue.add_rate_limited(("ns", f"more-{n}")) for n in range(10)]
    assert more[-1] == pytest.approx(1.3)  # the 13th token beyond the burst


async def test_a_scheduled_retry_fires_once_and_an_earlier_one_wins() -> None:
    queue = workqueue.WorkQueue()
    queue.add_after(KEY, 0.2)
    queue.add_after(KEY, 0.05)  # earlier: replaces
    queue.add_after(KEY, 5.0)  # later: ignored
    await asyncio.sleep(0.1)
    assert len(queue) == 1
    await asyncio.sleep(0.2)
    assert len(queue) == 1  # the 0.2 s schedule was cancelled


async def test_discarding_a_deleted_key_cancels_its_retry_and_backoff() -> None:
    queue = workqueue.WorkQueue()
    queue.add_rate_limited(KEY)
    queue.discard(KEY)
    assert queue.failures(KEY) == 0
    await asyncio.sleep(0.7)
    assert len(queue) == 0


async def test_a_key_marked_dirty_in_flight_runs_once_more_and_never_twice_at_once() -> None:
    queue = workqueue.WorkQueue()
    running: set[workqueue.Key] = set()
    calls: list[workqueue.Key] = []
    release = asyncio.Event()

    async def handle(key: workqueue.Key) -> None:
        assert key not in running
        running.add(key)
        calls.append(key)
        await release.wait()
        running.discard(key)

    workers = [asyncio.create_task(queue.worker(handle, supervise.Heartbeat(f"w{n}", 60))) for n in range(3)]
    try:
        queue.add(KEY)
        await asyncio.sleep(0.01)
        for _ in range(5):
            queue.add(KEY)
        release.set()
        await asyncio.sleep(0.05)
        assert calls == [KEY, KEY]
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
