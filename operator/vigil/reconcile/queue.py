"""A de-duplicating, rate-limited work queue of ModelDeployment keys, one key in flight at a time.

Watch events for a ModelDeployment, its Deployments and its pods all just mark the deployment
dirty. A fixed pool of workers takes keys; a key is never processed by two workers at once, and
a key marked dirty while in flight is processed once more afterwards. So bursts of pod events
cost one reconcile, and the number of asyncio tasks does not grow with the fleet (unlike a kopf
timer or daemon per resource).

Two lanes. Healing waits for nothing: a key added as *urgent* (a deployment with an open incident
or a fresh breach) is taken before every routine key, however many are queued (a resync of a
large fleet, a burst of creations), and a routine key added again as urgent moves to the urgent
lane. Within a lane, keys are taken in the order they were added.

Failures are paced like client-go's rate-limited queue: :meth:`WorkQueue.add_rate_limited` waits
the longest of the key's own exponential backoff (doubling per consecutive failure, with jitter,
up to a cap), one shared token bucket (so many failing keys cannot storm the API server) and the
server's ``Retry-After``. :meth:`WorkQueue.forget` after a success resets the key's backoff.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Awaitable, Callable

import prometheus_client

from vigil.reconcile import backoff, supervise

Key = tuple[str, str]  # (namespace, name)

RETRY_BACKOFF = backoff.Backoff(base=0.5, cap=300.0)
RETRY_RATE = 10.0  # retries a second across all keys, once the burst is spent (client-go: 10 qps, 100)
RETRY_BURST = 100
URGENT, ROUTINE = "urgent", "routine"
WAIT = prometheus_client.Histogram(
    "vigil_workqueue_wait_seconds",
    "Time a key waited in the work queue before a worker took it, by lane (urgent: healing).",
    ("lane",),
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
DEPTH = prometheus_client.Gauge("vigil_workqueue_depth", "Keys waiting in the work queue, by lane.", ("lane",))


class WorkQueue:
    def __init__(
        self,
        retry_backoff: backoff.Backoff = RETRY_BACKOFF,
        bucket: backoff.TokenBucket | None = None,
        draw: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._urgent: collections.deque[Key] = collections.deque()
        self._routine: collections.deque[Key] = collections.deque()
        self._tokens: asyncio.Queue[None] = asyncio.Queue()  # one per queued key: a worker may take one
        self._queued: dict[Key, bool] = {}  # queued key -> whether it waits in the urgent lane
        self._since: dict[Key, float] = {}  # queued key -> when it entered its lane
        self._active: set[Key] = set()
        self._dirty: dict[Key, bool] = {}  # in flight and added again -> urgent
        self._later: dict[Key, tuple[float, asyncio.TimerHandle]] = {}
        self._failures: dict[Key, int] = {}
        self.backoff = retry_backoff
        self.bucket = bucket if bucket is not None else backoff.TokenBucket(RETRY_RATE, RETRY_BURST)
        self.draw = draw
        self.clock = clock

    def add(self, key: Key, urgent: bool = False) -> None:
        """Queue ``key`` (once, however often it is added); ``urgent`` puts it ahead of routine keys."""
        if key in self._active:
            self._dirty[key] = self._dirty.get(key, False) or urgent
            return
        queued = self._queued.get(key)
        if queued is None:
            self._queued[key] = urgent
            self._since[key] = self.clock()
            (self._urgent if urgent else self._routine).append(key)
            self._tokens.put_nowait(None)
            DEPTH.labels(URGENT if urgent else ROUTINE).inc()
        elif urgent and not queued:  # promoted: its routine entry is skipped when reached
            self._queued[key] = True
            self._since[key] = self.clock()
            self._urgent.append(key)
            DEPTH.labels(ROUTINE).dec()
            DEPTH.labels(URGENT).inc()

    def urgent(self, key: Key) -> bool:
        """Whether ``key`` waits in the urgent lane."""
        return self._queued.get(key, False)

    def _take(self) -> Key:
        """The next key: urgent first; an entry left behind by a promotion is skipped."""
        while self._urgent:
            key = self._urgent.popleft()
            if self._queued.get(key) is True:
                return self._pop(key)
        while True:
            key = self._routine.popleft()
            if self._queued.get(key) is False:
                return self._pop(key)

    def _pop(self, key: Key) -> Key:
        lane = URGENT if self._queued.pop(key) else ROUTINE
        WAIT.labels(lane).observe(max(0.0, self.clock() - self._since.pop(key)))
        DEPTH.labels(lane).dec()
        return key

    def add_after(self, key: Key, delay: float) -> None:
        """Add ``key`` in ``delay`` seconds; an earlier pending schedule for it wins."""
        due = self.clock() + delay
        pending = self._later.get(key)
        if pending is not None:
            if pending[0] <= due:
                return
            pending[1].cancel()
        handle = asyncio.get_running_loop().call_later(delay, self._fire, key)
        self._later[key] = (due, handle)

    def _fire(self, key: Key) -> None:
        self._later.pop(key, None)
        self.add(key)  # a retry is routine: a failing key must not starve the urgent lane

    def add_rate_limited(self, key: Key, at_least: float = 0.0) -> float:
        """Retry ``key`` after one more failure; returns the delay chosen."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = max(self.backoff.delay(failures, self.draw()), self.bucket.reserve(self.clock()), at_least)
        self.add_after(key, delay)
        return delay

    def forget(self, key: Key) -> None:
        """The key succeeded: its next failure starts the backoff afresh."""
        self._failures.pop(key, None)

    def failures(self, key: Key) -> int:
        return self._failures.get(key, 0)

    def scheduled(self, key: Key) -> float | None:
        """Seconds until ``key``'s scheduled retry, or None when none is pending."""
        pending = self._later.get(key)
        return None if pending is None else pending[0] - self.clock()

    def discard(self, key: Key) -> None:
        """The object is gone: drop its backoff and any scheduled retry (a queued pass still runs)."""
        self._failures.pop(key, None)
        pending = self._later.pop(key, None)
        if pending is not None:
            pending[1].cancel()

    def __len__(self) -> int:
        return len(self._queued)

    async def worker(self, handle: Callable[[Key], Awaitable[None]], heartbeat: supervise.Heartbeat) -> None:
        """Process keys forever; an exception in ``handle`` is the handler's to report.

        ``heartbeat`` is idle while waiting for a key and promises a beat while one is handled, so
        a reconcile that hangs shows up as a stuck task.
        """
        while True:
            heartbeat.idle()
            await self._tokens.get()
            heartbeat.beat()
            key = self._take()
            self._active.add(key)
            try:
                await handle(key)
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self.add(key, urgent=self._dirty.pop(key))
