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


async def processed_order(queue: workqueue.WorkQueue, count: int, workers: int = 1) -> list[workqueue.Key]:
    """Run ``workers`` workers until ``count`` keys were handled; the keys in the order they started."""
    order: list[workqueue.Key] = []
    done = asyncio.Event()

    async def handle(key: workqueue.Key) -> None:
        order.append(key)
        await asyncio.sleep(0)
        if len(order) >= count:
            done.set()

    tasks = [
        asyncio.create_task(queue.worker(handle, supervise.Heartbeat(f"worker-{n}", 300.0))) for n in range(workers)
    ]
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return order


async def test_an_urgent_key_is_handled_before_a_thousand_routine_ones_queued_earlier() -> None:
    queue = workqueue.WorkQueue()
    for n in range(1000):
        queue.add(("ns", f"routine-{n}"))
    queue.add(("ns", "breached"), urgent=True)
    order = await processed_order(queue, 1001)
    assert order[0] == ("ns", "breached")
    assert order[1:] == [("ns", f"routine-{n}") for n in range(1000)]  # routine keys keep their order


async def test_a_routine_key_added_again_as_urgent_moves_ahead_once() -> None:
    queue = workqueue.WorkQueue()
    for n in range(50):
        queue.add(("ns", f"routine-{n}"))
    queue.add(("ns", "routine-40"), urgent=True)
    queue.add(("ns", "routine-40"))  # a routine add does not demote it
    assert queue.urgent(("ns", "routine-40"))
    assert len(queue) == 50
    order = await processed_order(queue, 50)
    assert order[0] == ("ns", "routine-40")
    assert sorted(order) == sorted(("ns", f"routine-{n}") for n in range(50))  # each once


async def test_an_urgent_add_while_in_flight_runs_again_ahead_of_routine_work() -> None:
    queue = workqueue.WorkQueue()
    started, release, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()
    order: list[workqueue.Key] = []

    async def handle(key: workqueue.Key) -> None:
        order.append(key)
        if len(order) == 1:
            started.set()
            await release.wait()
        if len(order) == 12:
            finished.set()

    queue.add(KEY)
    task = asyncio.create_task(queue.worker(handle, supervise.Heartbeat("worker", 300.0)))
    try:
        await asyncio.wait_for(started.wait(), 5)
        for n in range(10):
            queue.add(("ns", f"routine-{n}"))
        queue.add(KEY, urgent=True)  # e.g. a breach while its previous pass runs
        release.set()
        await asyncio.wait_for(finished.wait(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert order[:2] == [KEY, KEY]
