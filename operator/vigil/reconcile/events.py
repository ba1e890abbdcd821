"""Events are posted beside the reconcile, not inside it.

A new ModelDeployment earns half a dozen Events on its way to Available (RevisionCreated,
Progressing, Available, its SLOs' first verdicts...), each one a POST. Posted one after the other
inside the reconcile, they were most of its requests, and a worker waited for every one of them
before taking the next key: a burst of N creations queued behind N times that many round trips.
As client-go's event broadcaster does, the reconcile now only hands its Events over, and a few
posting tasks send them in the background:

* **In order per object.** One object's Events are posted one at a time, in the order they were
  decided (``kubectl describe`` reads them as a story); different objects' Events go concurrently,
  up to ``concurrency`` at once.
* **Bounded.** At most ``backlog`` Events wait; beyond that a new one is dropped, counted in
  ``vigil_events_dropped_total`` and logged, so a slow API server can never grow the operator's
  memory without limit (client-go drops too, at a queue of 1,000). Events are the record of a
  decision, never its state: the decision itself is in the status, written before its Events.
* **Only the reference kept.** A waiting Event holds the involved object's reference (apiVersion,
  kind, name, namespace, uid, resourceVersion), not the object the reconcile read: a burst of
  creations queues several Events per deployment, and each reconcile's copy of its ModelDeployment
  (spec, status, annotations) kept alive until its Events were posted.
* **Never fatal.** A refused or failed post is logged and dropped (not retried), as before; a
  replica that lost the lease posts nothing (the fence raises), so a former leader does not narrate
  decisions it no longer makes.

:meth:`Poster.flush` posts everything handed over so far and returns when it is sent (tests, and a
clean shutdown).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import prometheus_client
import urllib3
from kubernetes.client import exceptions

from vigil.reconcile import kube, leader, supervise

log = logging.getLogger("vigil.events")

Key = tuple[str, str]  # the involved object's (namespace, name)
Send = Callable[[dict[str, Any], str, str, str], Awaitable[None]]
"""``send(involved, type, reason, message)``: post one Event (``Kube.post_event``)."""

CONCURRENCY = 8
BACKLOG = 10_000
FLUSH_CHECK_SECONDS = 0.1
DROPPED = prometheus_client.Counter(
    "vigil_events_dropped_total", "Events not posted: the backlog was full, or the API server refused them."
)
PENDING = prometheus_client.Gauge("vigil_events_pending", "Events handed over and not posted yet.")


class Poster:
    """Posts Events in the background: in order per involved object, a few objects at a time."""

    def __init__(self, send: Send, concurrency: int = CONCURRENCY, backlog: int = BACKLOG) -> None:
        if concurrency < 1 or backlog < 1:
            raise ValueError("an event poster needs a concurrency and a backlog of at least 1")
        self.send = send
        self.concurrency = concurrency
        self.backlog = backlog
        self._pending: dict[Key, collections.deque[tuple[dict[str, Any], str, str, str]]] = {}
        self._ready: asyncio.Queue[Key] = asyncio.Queue()  # keys with Events and no poster on them
        self._active: set[Key] = set()
        self._count = 0
        self._running = 0  # posting tasks
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        """Events handed over and not posted yet (being posted included)."""
        return self._count

    def post(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Hand an Event about ``involved`` over; it is posted after that object's earlier ones."""
        if self._count >= self.backlog:
            DROPPED.inc()
            log.warning("event %s on %s dropped: %d events wait already", reason, _name(involved), self._count)
            return
        involved = reference(involved)
        meta = involved["metadata"]
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        queued = self._pending.get(key)
        if queued is None:
            queued = self._pending[key] = collections.deque()
            if key not in self._active:
                self._ready.put_nowait(key)
        queued.append((involved, type_, reason, message))
        self._count += 1
        PENDING.set(self._count)
        self._idle.clear()

    async def _drain(self, key: Key) -> None:
        """Post ``key``'s Events in order, including any handed over meanwhile."""
        self._active.add(key)
        try:
            while (queued := self._pending.get(key)) is not None and queued:
                involved, type_, reason, message = queued.popleft()
                if not queued:
                    del self._pending[key]
                try:
                    await self._send(involved, type_, reason, message)
                finally:
                    self._count -= 1
                    PENDING.set(self._count)
        finally:
            self._active.discard(key)
            if key in self._pending:  # handed over after the loop's last look
                self._ready.put_nowait(key)
            if self._count == 0:
                self._idle.set()

    async def _send(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        try:
            await self.send(involved, type_, reason, message)
        except leader.NotLeading:
            DROPPED.inc()  # no longer the leader: its decisions are not narrated
        except exceptions.ApiException as error:
            DROPPED.inc()
            log.warning("event %s on %s not posted: %s", reason, _name(involved), kube.api_message(error))
        except (OSError, urllib3.exceptions.HTTPError) as error:
            DROPPED.inc()
            log.warning("event %s on %s not posted: API server unreachable (%s)", reason, _name(involved), error)

    async def run(self, heartbeat: supervise.Heartbeat) -> None:
        """One posting task (the operator runs ``concurrency`` of them, supervised)."""
        self._running += 1
        try:
            while True:
                heartbeat.idle()
                key = await self._ready.get()
                heartbeat.beat()
                await self._drain(key)
        finally:
            self._running -= 1

    async def flush(self) -> None:
        """Return once everything handed over so far is sent: by the posting tasks when they run,
        else (tests, a poster never started) posted from here."""
        while self._count:
            if not self._running and not self._ready.empty():
                await self._drain(self._ready.get_nowait())
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), FLUSH_CHECK_SECONDS)


REFERENCE_METADATA = ("name", "namespace", "uid", "resourceVersion")


def reference(obj: dict[str, Any]) -> dict[str, Any]:
    """What an Event's ``involvedObject`` names of ``obj`` (all :meth:`vigil.reconcile.kube.Kube.post_event`
    reads), in the object's shape: a few short strings instead of the whole object."""
    meta = obj.get("metadata") or {}
    found: dict[str, Any] = {k: obj[k] for k in ("apiVersion", "kind") if k in obj}
    found["metadata"] = {k: meta[k] for k in REFERENCE_METADATA if k in meta}
    return found


def _name(involved: dict[str, Any]) -> str:
    meta = involved.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"
