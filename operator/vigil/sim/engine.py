"""The simulator: pods from a cluster source, loads routed to them, faults applied, ticks advanced.

``Simulator.advance(dt)`` is the whole simulation step and does no I/O, so tests drive it tick
by tick with a seeded random generator and a static cluster; ``Simulator.run`` merely calls it on
a timer inside the server's event loop (and stops when the server does).

A pod is played from the moment it is first seen Ready (counters at zero, as a fresh Triton
process) until it disappears or its uid or restart count changes (a new process, a new series).
It keeps its counters while it is temporarily not Ready. A crash fault takes the process down:
its endpoints stop answering and traffic still routed to it (kwok keeps the pod Ready) is lost;
when the fault clears, the process "restarts" with fresh counters.

Cost grows with traffic, not with idle pods, so one simulator plays a fleet of thousands: a pod
with nothing queued and nothing arriving is stepped once per :data:`IDLE_STEP_SECONDS` with the
time it sat idle (its smoothed rates decay exactly as over many small ticks; its gauges lag by
at most that long, as Triton's own, refreshed every ``--metrics-interval-ms`` = 2 s, do), and
the idle time is settled first the moment requests arrive. An unchanged cluster snapshot is not
re-read, and behaviours are re-resolved only when a fault changes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import prometheus_client

from vigil import labels
from vigil.sim import arrivals, behaviour, cluster, exposition, queueing, routing, schema

LOG = logging.getLogger(__name__)
DEFAULT_TICK_SECONDS = 0.1
MAX_TICK_SECONDS = 1.0
IDLE_STEP_SECONDS = 1.0
LOST_CRASHED = "crashed"


@dataclasses.dataclass
class Load:
    request: schema.LoadRequest
    arrivals: arrivals.Arrivals
    started: float
    elapsed: float = 0.0
    sent: int = 0
    delivered: int = 0
    lost: dict[str, int] = dataclasses.field(default_factory=dict)
    finished: bool = False

    @property
    def key(self) -> cluster.Key:
        return (self.request.namespace, self.request.name)

    def describe(self) -> dict[str, Any]:
        return {
            "namespace": self.request.namespace,
            "name": self.request.name,
            **self.arrivals.describe(),
            "batchSize": self.request.batch_size,
            "duration": self.request.duration,
            "elapsed": round(self.elapsed, 3),
            "sent": self.sent,
            "delivered": self.delivered,
            "lost": dict(self.lost),
            "finished": self.finished,
        }


@dataclasses.dataclass
class PodRecord:
    """A simulated Triton process on one pod."""

    pod: cluster.Pod
    model: str
    version: str
    state: queueing.PodState
    settings: behaviour.Behaviour
    registry: prometheus_client.CollectorRegistry = dataclasses.field(init=False)
    crashed: bool = False
    idle_seconds: float = 0.0
    """Time passed without requests that the pod's state has not been stepped over yet."""

    def __post_init__(self) -> None:
        self.registry = exposition.registry_for(self.view)

    @property
    def deployment(self) -> str:
        return self.pod.deployment or ""

    def view(self) -> exposition.PodView:
        return exposition.PodView(
            state=self.state,
            model=self.model,
            version=self.version,
            load_seconds=self.settings.load_seconds,
            gpu_memory_total_bytes=self.settings.gpu_memory_total_bytes,
            gpu_power_limit_watts=self.settings.gpu_power_limit_watts,
        )

    def metrics(self) -> bytes:
        return exposition.render(self.registry)


@dataclasses.dataclass
class Totals:
    sent: int = 0
    delivered: int = 0
    success: int = 0
    direct: int = 0
    failure: dict[str, int] = dataclasses.field(default_factory=dict)
    lost: dict[str, int] = dataclasses.field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class RevisionCount:
    """Requests that reached the pods of one revision (a revision serves one model version)."""

    version: str
    user: int = 0
    """Requests of the simulated users (loads), routed by the Service selector or HTTPRoute weights."""
    direct: int = 0
    """KServe v2 infer requests sent straight to a pod, such as the operator's golden requests."""


RevisionKey = tuple[str, str, str]
"""(namespace, ModelDeployment, revision label)."""


def _bump(table: dict[str, int], key: str, count: int) -> None:
    if count:
        table[key] = table.get(key, 0) + count


def make_arrivals(request: schema.LoadRequest) -> arrivals.Arrivals:
    if request.rate is not None:
        return arrivals.Poisson(request.rate)
    assert request.csv is not None  # guaranteed by LoadRequest's validator
    trace = arrivals.parse_csv(
        request.csv, column=request.column, speedup=request.speedup, size_column=request.size_column
    )
    return arrivals.Replay.of(trace, loop=request.loop)


class Simulator:
    """All simulated pods, loads and faults; ``advance`` is one tick."""

    def __init__(
        self,
        source: cluster.ClusterSource,
        book: behaviour.Book | None = None,
        rng: np.random.Generator | None = None,
        tick_seconds: float = DEFAULT_TICK_SECONDS,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.book = book or behaviour.Book()
        self.rng = rng or np.random.default_rng()
        self.tick_seconds = tick_seconds
        self.wall_clock = wall_clock
        self.now = 0.0
        self.snapshot = cluster.Cluster()
        self.records: dict[cluster.Key, PodRecord] = {}
        self.loads: dict[cluster.Key, Load] = {}
        self.totals = Totals()
        self.lost_by_deployment: dict[cluster.Key, dict[str, int]] = {}
        self.by_revision: dict[RevisionKey, RevisionCount] = {}
        self._book_generation = self.book.generation

    # -- pods ------------------------------------------------------------------------------

    def settings_for(self, pod: cluster.Pod, version: str) -> behaviour.Behaviour:
        return self.book.behaviour(pod.namespace, pod.deployment or "", version)

    def _new_record(self, pod: cluster.Pod) -> PodRecord:
        model, version = cluster.model_identity(pod, self.snapshot)
        settings = self.settings_for(pod, version)
        state = queueing.new_pod_state(pod.incarnation, pod.gpus, settings)
        return PodRecord(pod=pod, model=model, version=version, state=state, settings=settings)

    def sync(self) -> None:
        """Take the source's latest snapshot; start, keep or forget pod records to match it."""
        latest = self.source.snapshot()
        if latest is self.snapshot:
            return  # sources cache their snapshot until something changes
        self.snapshot = latest
        present: set[cluster.Key] = set()
        for pod in self.snapshot.pods:
            if pod.deployment is None:
                continue
            present.add(pod.key)
            record = self.records.get(pod.key)
            if record is not None and record.pod.incarnation != pod.incarnation:
                record = None
            if record is None:
                if pod.served:
                    self.records[pod.key] = self._new_record(pod)
                else:
                    self.records.pop(pod.key, None)
                continue
            record.pod = pod
        for key in [key for key in self.records if key not in present]:
            del self.records[key]

    def revision_count(self, record: PodRecord) -> RevisionCount:
        key = (record.pod.namespace, record.deployment, record.pod.labels.get(labels.REVISION, ""))
        count = self.by_revision.get(key)
        if count is None:
            count = self.by_revision[key] = RevisionCount(version=record.version)
        return count

    def requests_by_revision(self, namespace: str, name: str) -> dict[str, RevisionCount]:
        """What each revision of a ModelDeployment has answered so far, by revision label."""
        return {rev: count for (ns, md, rev), count in self.by_revision.items() if (ns, md) == (namespace, name)}

    def record(self, namespace: str, name: str) -> PodRecord | None:
        """The pod's simulated process if the pod is served (Ready, vigil-labelled) right now."""
        record = self.records.get((namespace, name))
        if record is None or not record.pod.served:
            return None
        return record

    def _refresh(self, record: PodRecord) -> None:
        settings = self.settings_for(record.pod, record.version)
        if record.crashed and not settings.crash:
            # The process comes back: a new Triton, counters from zero.
            fresh = self._new_record(record.pod)
            record.state, record.model = fresh.state, fresh.model
        record.crashed = settings.crash
        record.settings = settings

    # -- loads and faults ------------------------------------------------------------------

    def set_load(self, request: schema.LoadRequest) -> Load:
        load = Load(request=request, arrivals=make_arrivals(request), started=self.now)
        self.loads[load.key] = load
        return load

    def stop_load(self, namespace: str, name: str) -> bool:
        return self.loads.pop((namespace, name), None) is not None

    def set_fault(self, request: schema.FaultRequest) -> behaviour.BehaviourPatch:
        patch = self.book.set_fault(request.key, request.patch())
        for record in self.records.values():
            self._refresh(record)
        return patch

    def clear_faults(self, namespace: str, name: str, version: str | None = None) -> list[behaviour.Key]:
        cleared = self.book.clear_faults(namespace, name, version)
        for record in self.records.values():
            self._refresh(record)
        return cleared

    # -- the tick --------------------------------------------------------------------------

    def _lose(self, load: Load, reason: str, count: int) -> None:
        _bump(load.lost, reason, count)
        _bump(self.totals.lost, reason, count)
        _bump(self.lost_by_deployment.setdefault(load.key, {}), reason, count)

    def _route(self, load: Load, batch: arrivals.Batch, inbound: dict[cluster.Key, list[queueing.Incoming]]) -> None:
        """Send each request of ``load`` to a pod (or lose it) as the Service/HTTPRoute says."""
        namespace, name = load.key
        info = self.snapshot.deployments.get(load.key)
        model = (info.model if info else None) or name
        split = routing.split(self.snapshot, namespace, name, path=f"/v2/models/{model}/infer")
        targets = list(split.shares.items())
        reasons = list(split.lost.items())
        weights = np.array([share for _, share in targets] + [share for _, share in reasons], dtype=float)
        count = len(batch)
        if weights.sum() <= 0:
            self._lose(load, routing.LOST_NO_SERVICE, count)
            return
        choice = self.rng.choice(len(weights), size=count, p=weights / weights.sum())
        for slot, (key, _) in enumerate(targets):
            chosen = choice == slot
            sent = int(chosen.sum())
            if not sent:
                continue
            record = self.record(*key)
            if record is None:
                self._lose(load, routing.LOST_NO_READY_PODS, sent)
            elif record.crashed:
                self._lose(load, LOST_CRASHED, sent)
            else:
                inbound.setdefault(key, []).append(
                    queueing.Incoming(
                        batch.offsets[chosen], batch.sizes[chosen], np.full(sent, float(load.request.batch_size))
                    )
                )
                load.delivered += sent
                self.totals.delivered += sent
                self.revision_count(record).user += sent
        for slot, (reason, _) in enumerate(reasons, start=len(targets)):
            self._lose(load, reason, int((choice == slot).sum()))

    def advance(self, dt: float | None = None) -> None:
        """One tick of ``dt`` seconds (default: the configured tick)."""
        dt = self.tick_seconds if dt is None else dt
        if dt <= 0:
            raise ValueError("dt must be > 0")
        self.sync()
        if self.book.generation != self._book_generation:
            self._book_generation = self.book.generation
            for record in self.records.values():
                self._refresh(record)
        start, self.now = self.now, self.now + dt

        inbound: dict[cluster.Key, list[queueing.Incoming]] = {}
        for load in self.loads.values():
            if load.finished:
                continue
            begin, end = start - load.started, self.now - load.started
            if load.request.duration is not None:
                end = min(end, load.request.duration)
            # Offsets come relative to ``begin``, which is this tick's start on the load's clock.
            batch = load.arrivals.take(begin, end, self.rng) if end > begin else arrivals.EMPTY
            load.elapsed = self.now - load.started
            load.sent += len(batch)
            self.totals.sent += len(batch)
            if len(batch):
                self._route(load, batch, inbound)
            duration_over = load.request.duration is not None and load.elapsed >= load.request.duration
            load.finished = duration_over or load.arrivals.finished(load.elapsed)

        now_ms = int(self.wall_clock() * 1000)
        for key, record in self.records.items():
            if record.crashed:
                continue
            parts = inbound.get(key)
            if not parts and record.state.idle:
                record.idle_seconds += dt
                if record.idle_seconds >= IDLE_STEP_SECONDS:
                    self._settle_idle(record, now_ms)
                continue
            self._settle_idle(record, now_ms)
            self._step(record, queueing.Incoming.merge(parts) if parts else 0, dt, now_ms)

    def _settle_idle(self, record: PodRecord, now_ms: int) -> None:
        """Step the pod over the time it sat idle, with no arrivals (its clock catches up first)."""
        if record.idle_seconds > 0:
            self._step(record, 0, record.idle_seconds, now_ms)
            record.idle_seconds = 0.0

    def _step(self, record: PodRecord, incoming: int | queueing.Incoming, dt: float, now_ms: int) -> None:
        result = queueing.step(record.state, incoming, dt, record.settings, self.rng, now_ms=now_ms)
        self.totals.success += result.success
        for reason, count in result.failure.items():
            _bump(self.totals.failure, reason, count)

    def infer(self, record: PodRecord) -> queueing.Outcome:
        """A request sent straight to a pod's KServe v2 endpoint."""
        outcome = queueing.serve_one(record.state, record.settings, self.rng, int(self.wall_clock() * 1000))
        self.totals.direct += 1
        self.revision_count(record).direct += 1
        if outcome.ok:
            self.totals.success += 1
        else:
            _bump(self.totals.failure, outcome.reason or "OTHER", 1)
        return outcome

    async def run(self) -> None:
        """Tick on the event loop until cancelled; late ticks advance by the real elapsed time."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        deadline = last
        while True:
            deadline += self.tick_seconds
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            now = loop.time()
            try:
                # After a stall (suspended laptop, debugger) do not replay minutes of traffic at once.
                self.advance(min(max(now - last, 1e-6), MAX_TICK_SECONDS))
            except Exception:
                # One bad tick (say, an odd object from the cluster) must not freeze every pod.
                LOG.exception("simulation tick failed")
            last = now
            deadline = max(deadline, now - self.tick_seconds)

    # -- reporting -------------------------------------------------------------------------

    def pod_state(self, record: PodRecord) -> dict[str, Any]:
        pod, state = record.pod, record.state
        return {
            "namespace": pod.namespace,
            "name": pod.name,
            "uid": pod.uid,
            "modeldeployment": record.deployment,
            "revision": pod.labels.get(labels.REVISION),
            "model": record.model,
            "version": record.version,
            "gpus": pod.gpus,
            "ready": pod.ready,
            "served": pod.served,
            "crashed": record.crashed,
            "pending": state.pending,
            "inFlight": state.in_flight,
            "slots": record.settings.slots,
            "success": int(state.total("success")),
            "failure": state.failures(),
            "queueSeconds": round(state.last_queue_seconds, 6),
            "latencySeconds": round(state.last_latency_seconds, 6),
            "utilization": round(state.busy, 4),
        }

    def state(self) -> dict[str, Any]:
        return {
            "now": round(self.now, 3),
            "tickSeconds": self.tick_seconds,
            "pods": [self.pod_state(record) for _, record in sorted(self.records.items())],
            "loads": [load.describe() for _, load in sorted(self.loads.items())],
            "faults": self.book.fault_list(),
            "profile": self.book.profile_list(),
            "totals": self.totals.wire(),
            "lost": {f"{ns}/{name}": dict(table) for (ns, name), table in sorted(self.lost_by_deployment.items())},
            "revisions": [
                {
                    "namespace": ns,
                    "name": md,
                    "revision": rev,
                    "version": count.version,
                    "userRequests": count.user,
                    "directRequests": count.direct,
                }
                for (ns, md, rev), count in sorted(self.by_revision.items())
            ],
        }
