"""A new deployment's stable Service is created beside the reconcile, not inside it.

Creating a ClusterIP Service is the slowest write a reconcile makes: the API server allocates its
cluster IP under one lock (kube-apiserver 1.36 holds it across the ``IPAddress`` object's create),
so a burst of new deployments creates Services one at a time, at 6-10 per second on the sandbox.
Inside the reconcile every worker waited for its Service: a burst of N first reconciles drained at
the rate of Service creation, and the reconciles that make the others Available queued behind
them. Now the reconcile applies the Deployment, writes the status and hands a Service that does
not exist yet over to :class:`Creator`, which creates a few at a time and then queues the
deployment again, so its next reconcile sees the Service.

The Service still has to exist before the deployment is ``Available`` (reason ``ServicePending``
until then): Available means clients can reach the model by its Service, as an InferenceService's
Ready does in KServe, and Argo CD's health follows it. What moves is everything else: the
Deployment and its pods no longer wait for other deployments' Services, and neither does any
other reconcile.

A refused creation (a quota, a full service range) is kept until the deployment's next reconcile,
which reports it as ``ReconcileError`` and is retried with backoff, as a refused apply always was;
that retry hands the Service over again. Only one creation per deployment is under way at a time.
A replica that lost the lease creates nothing (the apply is fenced).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from vigil.reconcile import leader

log = logging.getLogger("vigil.creations")

Key = tuple[str, str]
Apply = Callable[[dict[str, Any]], Awaitable[None]]
CONCURRENCY = 4
"""Creations at once: the API server allocates cluster IPs one at a time, so more would only wait there."""


class Creator:
    """Creates new Services in the background, at most ``concurrency`` at once, one per deployment."""

    def __init__(self, apply: Apply, created: Callable[[Key], None], concurrency: int = CONCURRENCY) -> None:
        if concurrency < 1:
            raise ValueError("a creator needs a concurrency of at least 1")
        self.apply = apply
        self.created = created
        """Called with the deployment's key once its creation ended (done or refused): reconcile it."""
        self._lanes = asyncio.Semaphore(concurrency)
        self._under_way: dict[Key, asyncio.Task[None]] = {}
        self._refused: dict[Key, BaseException] = {}

    def create(self, key: Key, manifest: dict[str, Any]) -> None:
        """Create ``manifest`` for deployment ``key`` unless a creation for it is under way."""
        if key in self._under_way:
            return
        self._under_way[key] = asyncio.get_running_loop().create_task(self._create(key, manifest))

    def under_way(self, key: Key) -> bool:
        return key in self._under_way

    def refusal(self, key: Key) -> BaseException | None:
        """Why the last creation for ``key`` failed, once (the reconcile that reports it takes it)."""
        return self._refused.pop(key, None)

    def forget(self, key: Key) -> None:
        """The deployment is gone: drop its refusal (a creation under way ends on its own)."""
        self._refused.pop(key, None)

    async def _create(self, key: Key, manifest: dict[str, Any]) -> None:
        try:
            async with self._lanes:
                await self.apply(manifest)
        except leader.NotLeading:
            pass  # no longer the leader: the new leader reconciles the deployment from the start
        except Exception as error:  # reported by the deployment's next reconcile, which retries
            self._refused[key] = error
            log.debug("creating Service %s/%s failed: %s", *key, error)
        finally:
            del self._under_way[key]
        self.created(key)

    async def flush(self) -> None:
        """Return once every creation handed over so far has ended (tests, a clean shutdown)."""
        while self._under_way:
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._under_way.values(), return_exceptions=True)

    def __len__(self) -> int:
        return len(self._under_way)
