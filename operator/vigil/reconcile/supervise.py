"""Supervision of the operator's background tasks: restart on failure, notice when one is stuck.

kopf supervises its own watchers, not the tasks an operator starts itself. Every vigil loop (the
reconcile workers, the resync, the fleet evaluation, the leader election, the /metrics server)
runs under :meth:`Supervisor.spawn`:

* Any exception, not only ``ApiException`` (urllib3's ``MaxRetryError``, a timeout, a bug), and
  even a loop that returns, is logged with its traceback, counted in
  ``vigil_task_restarts_total{task=...}``, and the task is started again after an exponential
  backoff with jitter (reset once it ran healthily for a while). A loop never dies silently.
* Each task beats a :class:`Heartbeat` once per iteration, promising the next beat within an
  allowance (a few of its intervals). :meth:`Supervisor.stuck` names the tasks that broke that
  promise; the liveness probe fails on it, so Kubernetes restarts a replica whose loop hangs.
  A worker waiting for work is idle, not stuck: it only promises while it reconciles.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable

import prometheus_client

from vigil.reconcile import backoff

log = logging.getLogger("vigil.supervise")

RESTARTS = prometheus_client.Counter(
    "vigil_task_restarts_total", "Background tasks restarted after an unexpected error, by task.", ("task",)
)
RESTART_BACKOFF = backoff.Backoff(base=1.0, cap=60.0)
HEALTHY_RUN_SECONDS = 120.0  # a task that ran this long before failing starts its backoff afresh


@dataclasses.dataclass
class Heartbeat:
    """When a task promised to show signs of life next (None: idle, nothing promised)."""

    task: str
    allowance: float
    clock: Callable[[], float] = time.monotonic
    deadline: float | None = None

    def beat(self, allowance: float | None = None) -> None:
        """Alive now; the next beat is due within ``allowance`` seconds (default: the task's)."""
        self.deadline = self.clock() + (self.allowance if allowance is None else allowance)

    def idle(self) -> None:
        """Waiting for work, which may take forever without being a fault."""
        self.deadline = None

    def overdue(self, now: float) -> float:
        """Seconds past the promised beat (0 when on time or idle)."""
        return 0.0 if self.deadline is None else max(0.0, now - self.deadline)


Loop = Callable[[Heartbeat], Awaitable[None]]


class Supervisor:
    """Starts, restarts and finally cancels the operator's background tasks."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        restart_backoff: backoff.Backoff = RESTART_BACKOFF,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.clock = clock
        self.backoff = restart_backoff
        self.draw = draw
        self.heartbeats: dict[str, Heartbeat] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def spawn(self, task: str, loop: Loop, allowance: float) -> Heartbeat:
        """Run ``loop(heartbeat)`` under supervision as task ``task`` (names must be unique)."""
        if task in self.heartbeats:
            raise ValueError(f"task {task} is already supervised")
        heartbeat = Heartbeat(task, allowance, self.clock)
        self.heartbeats[task] = heartbeat
        self.tasks.append(asyncio.create_task(self._supervise(task, loop, heartbeat), name=f"vigil:{task}"))
        return heartbeat

    async def _supervise(self, task: str, loop: Loop, heartbeat: Heartbeat) -> None:
        failures = 0
        while True:
            started = self.clock()
            heartbeat.beat()
            try:
                await loop(heartbeat)
                raise RuntimeError("the loop returned")  # loops run forever; returning is a fault too
            except Exception:
                if self.clock() - started >= HEALTHY_RUN_SECONDS:
                    failures = 0
                failures += 1
                delay = self.backoff.delay(failures, self.draw())
                RESTARTS.labels(task=task).inc()
                log.exception("task %s failed (%d in a row); restarting in %.1fs", task, failures, delay)
                heartbeat.beat(delay + heartbeat.allowance)
                await asyncio.sleep(delay)

    def stuck(self) -> list[str]:
        """Tasks past their promised heartbeat, with how late they are."""
        now = self.clock()
        late = [(hb.task, hb.overdue(now)) for hb in self.heartbeats.values()]
        return [f"{task} ({seconds:.0f}s late)" for task, seconds in late if seconds > 0]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        self.heartbeats.clear()
