"""A de-duplicating work queue of ModelDeployment keys, one key in flight at a time.

Watch events for a ModelDeployment, its Deployments and its pods all just mark the deployment
dirty. A fixed pool of workers takes keys; a key is never processed by two workers at once, and
a key marked dirty while in flight is processed once more afterwards. So bursts of pod events
cost one reconcile, and the number of asyncio tasks does not grow with the fleet (unlike a kopf
timer or daemon per resource).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Key = tuple[str, str]  # (namespace, name)


class WorkQueue:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._active: set[Key] = set()
        self._dirty: set[Key] = set()

    def add(self, key: Key) -> None:
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def __len__(self) -> int:
        return len(self._queued)

    async def worker(self, handle: Callable[[Key], Awaitable[None]]) -> None:
        """Process keys forever; an exception in ``handle`` is the handler's to report."""
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._active.add(key)
            try:
                await handle(key)
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)
                self._queue.task_done()
