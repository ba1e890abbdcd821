"""The wiring: watch caches mark ModelDeployments dirty; workers reconcile them from the caches.

The operator's own watches (:mod:`vigil.reconcile.watched`) list and watch every kind the
reconcile reads, with server-side label selectors, and each change marks the ModelDeployment it
belongs to dirty; the echo of vigil's own writes changes nothing and marks nothing. kopf runs the
process (login, startup and cleanup, the liveness probe) but watches nothing itself: its
per-object handler machinery (and its progress annotations, which would write to the user's
object) has no part in it. A fixed pool of workers does the reconciling (see
:mod:`vigil.reconcile.queue`), so cost grows with events, not with tasks per object, and a
reconcile of an unchanged deployment makes no API request.

Replicas: every replica keeps its watches warm, and a ``coordination.k8s.io`` Lease decides which
one acts (:mod:`vigil.reconcile.leader`). The others reconcile nothing, evaluate nothing and write
nothing; the moment one acquires the lease it enqueues the keys its watches already know. Every
write re-checks the lease (``Kube.fence``).

Every background task runs supervised (:mod:`vigil.reconcile.supervise`): restarted with backoff
after any error, and the liveness probe fails when one stops beating.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import datetime
import gc
import logging
import math
import os
import random
import socket
import time
import typing
import uuid
import zlib
from typing import Any

import kopf
import prometheus_client
import pydantic
import urllib3
from kubernetes.client import exceptions

from vigil import labels
from vigil.api import conditions as cond
from vigil.api import invalid
from vigil.api import modeldeployment as mdapi
from vigil.api import slo as sloapi
from vigil.observe import fleet, merge, slo
from vigil.reconcile import (
    core,
    creations,
    events,
    healing,
    informer,
    kube,
    leader,
    memory,
    repository,
    scope,
    supervise,
    validate,
    watched,
)
from vigil.reconcile import queue as workqueue
from vigil.reconcile import settings as config
from vigil.render import route

log = logging.getLogger("vigil.reconcile")
INVALID_SPEC = "InvalidSpec"
RECONCILE_ALLOWANCE = 300.0  # one reconcile (a few API calls, 20 s timeout each) never takes this long
METRICS_CHECK_SECONDS = 10.0
RECONCILE_ERROR = "ReconcileError"
NO_PROMETHEUS = (
    "the operator runs without --prometheus-url: SLOs are not evaluated and no incident is opened or acted on"
)
STATUS_WRITES = prometheus_client.Counter(
    "vigil_status_writes_total",
    "ModelDeployment status writes, by why: refresh (only SLI numbers moved), heartbeat (only lastEvaluationTime"
    " moved) or the first field that changed.",
    ("why",),
)
LEADER = prometheus_client.Gauge("vigil_leader", "1 while this replica holds the leader lease and acts.")
Settings = config.Settings  # the operator's settings live in reconcile/settings.py, validated there


@dataclasses.dataclass
class Runtime:
    """What the handlers share, kept in kopf's memo."""

    settings: config.Settings
    kube: kube.Kube
    queue: workqueue.WorkQueue = dataclasses.field(default_factory=workqueue.WorkQueue)
    known: set[workqueue.Key] = dataclasses.field(default_factory=set)
    mds: dict[workqueue.Key, mdapi.ModelDeployment] = dataclasses.field(default_factory=dict)
    fleet: fleet.FleetResult | None = None
    refresh_at: dict[workqueue.Key, float] = dataclasses.field(default_factory=dict)
    """When a status that differs only in its SLI numbers may next be written (monotonic), per key."""
    unwritten_numbers: set[workqueue.Key] = dataclasses.field(default_factory=set)
    """Deployments whose last reconcile left moved SLI numbers unwritten (their refresh was not due)."""
    heartbeat_at: dict[workqueue.Key, float] = dataclasses.field(default_factory=dict)
    """When a status whose only drift is ``lastEvaluationTime`` is next written (epoch seconds), per
    key (see :meth:`next_heartbeat`)."""
    visited: dict[workqueue.Key, float] = dataclasses.field(default_factory=dict)
    """When each deployment's last reconcile ended (monotonic): the resync skips recent ones."""
    elector: leader.Elector | None = None
    """None with ``--standalone``: the only replica always acts."""
    supervisor: supervise.Supervisor = dataclasses.field(default_factory=supervise.Supervisor)
    refused: set[workqueue.Key] = dataclasses.field(default_factory=set)
    targets: FleetTargets = dataclasses.field(default_factory=lambda: FleetTargets())
    """The fleet loop's evaluation targets, kept while each deployment's object and status are."""
    poster: events.Poster = dataclasses.field(init=False)
    """Posts the Events reconciles decide, beside them (see :mod:`vigil.reconcile.events`)."""
    creator: creations.Creator = dataclasses.field(init=False)
    """Creates new deployments' Services beside the reconcile (see :mod:`vigil.reconcile.creations`)."""
    golden_files: repository.Files = dataclasses.field(init=False)
    """Golden sets read from model repositories, kept until they change (see :mod:`vigil.reconcile.repository`)."""

    def __post_init__(self) -> None:
        self.golden_files = repository.Files(self.settings.model_repository_roots, self.settings.golden_set_max_bytes)
        self.poster = events.Poster(lambda *event: self.kube.post_event(*event))
        self.creator = creations.Creator(lambda manifest: self.kube.apply(manifest), self._service_created)

    def _service_created(self, key: workqueue.Key) -> None:
        if key in self.known:
            self.enqueue(key)  # its next reconcile sees the Service (Available), or reports the refusal

    def leading(self) -> bool:
        return self.elector is None or self.elector.leading()

    def needs_healing(self, key: workqueue.Key) -> bool:
        """An open incident, or a breached SLO (as last reconciled, or in the latest evaluation)."""
        md = self.mds.get(key)
        if md is not None and (md.status.active_incident or healing.breached(md.status) is not None):
            return True
        report = self.fleet.deployment(*key) if self.fleet is not None else None
        return report is not None and any(s.state is sloapi.SLOState.BREACHED for s in report.slos)

    def enqueue(self, key: workqueue.Key) -> None:
        """Mark ``key`` dirty; in the urgent lane when it needs healing, so no routine work delays it."""
        self.queue.add(key, urgent=self.needs_healing(key))

    def refresh_due(self, key: workqueue.Key) -> bool:
        return time.monotonic() >= self.refresh_at.get(key, 0.0)

    def refreshed(self, key: workqueue.Key, stored: mdapi.ModelDeploymentStatus) -> None:
        """The stored status of ``key`` (``stored``) is as fresh as it needs to be: its numbers next
        in a jittered interval, its timestamps at its next heartbeat."""
        interval = self.settings.status_refresh_seconds
        self.refresh_at[key] = time.monotonic() + interval * random.uniform(1.0 - REFRESH_JITTER, 1.0)
        self.unwritten_numbers.discard(key)
        self.kept(key, stored)

    def kept(self, key: workqueue.Key, stored: mdapi.ModelDeploymentStatus) -> None:
        """``stored`` is what the API server holds for ``key`` now: note when its timestamps are due."""
        self.heartbeat_at[key] = self.next_heartbeat(key, stored)

    def next_heartbeat(self, key: workqueue.Key, stored: mdapi.ModelDeploymentStatus) -> float:
        """When ``stored``, differing from a new status only in ``lastEvaluationTime``, is rewritten
        (epoch seconds): once per ``--status-heartbeat``, at the deployment's own phase in it, and
        not within ``--status-refresh`` of its judgement (see :func:`vigil.observe.merge.heartbeat_at`)."""
        return merge.heartbeat_at(
            merge.stamped(stored),
            phase=zlib.crc32(f"{key[0]}/{key[1]}".encode()) / 2**32,
            period=self.settings.status_heartbeat_seconds,
            min_age=self.settings.status_refresh_seconds,
        )

    def started_leading(self) -> None:
        """Act from now on: start from a fresh SLO evaluation, then reconcile what the watches know."""
        LEADER.set(1)
        self.fleet = None  # verdicts from before a standby period must not drive actions
        for key in sorted(self.known):
            self.enqueue(key)

    def stopped_leading(self) -> None:
        LEADER.set(0)
        self.fleet = None

    @property
    def scope(self) -> scope.Scope:
        return scope.Scope(self.settings.namespaces)

    def admits(self, key: workqueue.Key) -> bool:
        """Whether ``key`` is in the namespaces this operator was told to watch (logged once when not)."""
        if self.scope.admits(key[0]):
            return True
        if key not in self.refused:
            self.refused.add(key)
            log.warning("ignoring %s/%s: namespace outside --namespace %s", *key, ",".join(self.settings.namespaces))
        return False


def _runtime(memo: Any) -> Runtime:
    runtime: Runtime = memo.runtime
    return runtime


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    settings.posting.level = logging.INFO
    runtime = _runtime(memo)
    # Namespace mode (plain names) lists nothing cluster-wide: no namespace or CRD scanning (no RBAC
    # for it). Globs need kopf's namespace scanning to be resolved.
    settings.scanning.disabled = runtime.scope.exact_names is not None
    start(runtime)


def start(runtime: Runtime) -> None:
    """Start every background task under supervision (each restarts with backoff if it fails)."""
    cfg = runtime.settings
    spawn = runtime.supervisor.spawn
    if cfg.metrics_port:
        spawn("metrics", lambda beat: _serve_metrics(cfg, beat), allowance=3 * METRICS_CHECK_SECONDS)
    # Every blocking API call (asyncio.to_thread) runs in the loop's default executor: one thread per
    # worker and per event poster, plus a few for the fleet loop's queries and the leader's renewals.
    threads = api_threads(cfg)
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vigil-api")
    )
    caches = runtime.kube.caches
    if caches is not None:
        caches.spawn(runtime.supervisor)
    for number in range(cfg.workers):
        spawn(f"worker-{number}", lambda beat: _work(runtime, beat), allowance=RECONCILE_ALLOWANCE)
    for number in range(runtime.poster.concurrency):
        spawn(f"events-{number}", runtime.poster.run, allowance=RECONCILE_ALLOWANCE)
    spawn("resync", lambda beat: _resync(runtime, beat), allowance=3 * cfg.resync_seconds)
    if memory.available():  # glibc: what a burst freed goes back to the system
        spawn("memory", memory.run, allowance=3 * memory.TRIM_SECONDS)
    if cfg.prometheus_url:
        url = cfg.prometheus_url
        spawn("fleet", lambda beat: _fleet_loop(runtime, url, beat), allowance=3 * cfg.eval_interval + 60)
    else:
        log.warning("%s; deployments with SLOs get MetricsAvailable=False (PrometheusNotConfigured)", NO_PROMETHEUS)
    elector = runtime.elector
    if elector is not None:
        timing = elector.timing
        allowance = 3 * timing.retry_period * (1 + leader.JITTER) + timing.renew_deadline
        spawn("leader", lambda beat: elector.run(beat.beat), allowance=allowance)
    else:
        LEADER.set(1)


def api_threads(cfg: config.Settings) -> int:
    """Threads (and pooled connections) for blocking API calls: one per worker and event poster, and
    a few for the fleet loop's PromQL queries and the leader's lease renewals."""
    return cfg.workers + events.CONCURRENCY + SPARE_THREADS


@kopf.on.probe(id="tasks")
def tasks_probe(memo: Any, **_: Any) -> dict[str, Any]:
    """Feeds ``--liveness``: raising marks the replica unhealthy, so Kubernetes restarts it."""
    runtime = _runtime(memo)
    stuck = runtime.supervisor.stuck()
    if stuck:
        raise kopf.PermanentError(f"background tasks stopped beating: {', '.join(stuck)}")
    return {"tasks": len(runtime.supervisor.heartbeats), "leading": runtime.leading()}


async def _serve_metrics(cfg: config.Settings, heartbeat: supervise.Heartbeat) -> None:
    """Serve the operator's /metrics; a failed bind (busy port) or a dead server thread is retried."""
    server, thread = prometheus_client.start_http_server(cfg.metrics_port, addr=cfg.metrics_address)
    try:
        while thread.is_alive():
            heartbeat.beat()
            await asyncio.sleep(METRICS_CHECK_SECONDS)
        raise RuntimeError("the /metrics server thread stopped")
    finally:
        server.shutdown()
        server.server_close()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Log in with ``$KUBECONFIG`` (set from ``--kubeconfig``) when given, else in-cluster or ~/.kube.

    kopf's default reads the kubernetes client's kubeconfig location, fixed when that module was
    imported, so a ``--kubeconfig`` option would not reach it.
    """
    if os.environ.get("KUBECONFIG"):
        return kopf.login_with_kubeconfig(**kwargs)
    return kopf.login_via_client(**kwargs)


@kopf.on.cleanup()
async def cleanup(memo: Any, **_: Any) -> None:
    runtime = _runtime(memo)
    with contextlib.suppress(TimeoutError):  # the Events decided last, if the API server takes them soon
        await asyncio.wait_for(runtime.poster.flush(), FLUSH_SECONDS)
    await runtime.supervisor.stop()
    if runtime.elector is not None:
        await runtime.elector.release()


async def _work(runtime: Runtime, heartbeat: supervise.Heartbeat) -> None:
    """One worker: it starts once the caches hold their first lists (a reconcile before that would
    take a missing child for a deleted one), then reconciles keys forever."""
    caches = runtime.kube.caches
    if caches is not None and not caches.synced():
        heartbeat.idle()
        try:
            await asyncio.wait_for(caches.wait_synced(), SYNC_GRACE_SECONDS)
        except TimeoutError:  # e.g. RBAC without list/watch on a kind: read it from the server
            log.warning(
                "watches not listed after %.0fs (%s): reading those kinds from the API server",
                SYNC_GRACE_SECONDS,
                ", ".join(caches.unsynced()),
            )
    await runtime.queue.worker(lambda key: reconcile(runtime, key), heartbeat)


def changed(runtime: Runtime, resource: informer.Resource, old: informer.Obj | None, new: informer.Obj | None) -> None:
    """A watched object changed (``new`` None: it is gone): mark the ModelDeployment it concerns dirty.

    Echoes of vigil's own writes never arrive here (the cache already holds what was written).
    """
    namespace, name = informer.key_of(new if new is not None else old or {})
    if resource is watched.MODEL_DEPLOYMENTS:
        key = (namespace, name)
        if not runtime.admits(key):
            return
        if new is None:
            _forget(runtime, key)
            return
        runtime.known.add(key)
        runtime.enqueue(key)
    elif resource is watched.RUNBOOKS:  # every deployment that names it resolves it again
        for key, md in list(runtime.mds.items()):
            ref = md.spec.runbook_ref
            if key[0] == namespace and ref is not None and ref.name == name:
                runtime.enqueue(key)
    else:
        meta = (new if new is not None else old or {}).get("metadata") or {}
        owner = (meta.get("labels") or {}).get(labels.MODEL_DEPLOYMENT)
        if owner is not None and runtime.admits((namespace, str(owner))):
            runtime.enqueue((namespace, str(owner)))


def _forget(runtime: Runtime, key: workqueue.Key) -> None:
    """The ModelDeployment is gone: drop everything the operator remembers about it."""
    runtime.known.discard(key)
    runtime.mds.pop(key, None)
    runtime.refresh_at.pop(key, None)
    runtime.unwritten_numbers.discard(key)
    runtime.heartbeat_at.pop(key, None)
    runtime.visited.pop(key, None)
    runtime.queue.discard(key)
    runtime.creator.forget(key)


async def _resync(runtime: Runtime, heartbeat: supervise.Heartbeat) -> None:
    """Re-reconcile every deployment once per period (jittered), spread evenly over it.

    A safety net for drift that produced no watch event; enqueueing the whole fleet at once would
    put a burst of N no-op reconciles in front of real work every period. A deployment reconciled
    in the last half period (a status refresh, a watch event) is passed over: it already got what
    a resync gives, so none goes longer than one and a half periods without a reconcile, and a
    fleet whose SLO numbers are refreshed more often than that costs no resync reconciles at all.
    """
    while True:
        heartbeat.beat()
        period = runtime.settings.resync_seconds * random.uniform(1.0 - RESYNC_JITTER, 1.0 + RESYNC_JITTER)
        keys = sorted(runtime.known)
        if not keys or not runtime.leading():
            await asyncio.sleep(period)
            continue
        step = period / len(keys)
        for key in keys:
            await asyncio.sleep(step)
            heartbeat.beat()
            recently = time.monotonic() - runtime.visited.get(key, -math.inf) < period / 2
            if key in runtime.known and runtime.leading() and not recently:
                runtime.enqueue(key)


RESYNC_JITTER = 0.1
SPARE_THREADS = 4
FLUSH_SECONDS = 5.0
SYNC_GRACE_SECONDS = 60.0
REFRESH_JITTER = 0.2


def serving_revisions(md: mdapi.ModelDeployment) -> list[slo.RevisionRef]:
    """Revisions receiving traffic, each with the time its SLIs are judged from: when it started
    to, or ``status.freshData`` if later (an incident's action took effect then).

    Normally the current revision. Under an incident's traffic override that splits the traffic
    over revisions of this deployment (a shift to the last-known-good, by HTTPRoute or replica
    ratio), the revisions with a share: a revision the shift took every request from is not
    judged (under replica ratios it runs no pods: it has no series at all), and one that took a
    share is, from when the shift began. A shift to fallback deployments only leaves the current
    revision judged (without traffic: InsufficientTraffic), as its own SLOs are not this one's.
    """
    status = md.status
    fresh = status.fresh_data
    shares = _revision_shares(status)
    refs: list[slo.RevisionRef] = []
    for rev in status.revisions:
        if rev.name == status.current_revision and (shares is None or shares.get(rev.name, 0) > 0):
            since = cond.parse_time(status.switched_at or rev.created)
            # The first revision "serves" from the start, before its pods can answer: its traffic
            # series begin once they are ready (rate windows are capped to that).
            started = max(since, cond.parse_time(rev.ready_since)) if rev.ready_since else since
        elif shares is not None and shares.get(rev.name, 0) > 0 and status.traffic is not None:
            since = started = cond.parse_time(status.traffic.since)
        else:
            continue
        origin = None
        if fresh is not None and cond.parse_time(fresh.since) > since:
            since = cond.parse_time(fresh.since)
            origin = f"the data since {fresh.since} (incident {fresh.incident}, step {fresh.step})"
        refs.append(slo.RevisionRef(name=rev.name, since=since, origin=origin, started=started))
    return refs


def _revision_shares(status: mdapi.ModelDeploymentStatus) -> dict[str, int] | None:
    """The traffic override's weights per revision of this deployment; None without one, or when
    it sends everything to fallback deployments (the current revision is judged as usual then)."""
    traffic = status.traffic
    if traffic is None:
        return None
    shares = {s.backend: s.weight for s in traffic.splits if not s.backend.startswith(route.FALLBACK_PREFIX)}
    if not any(weight > 0 for weight in shares.values()):
        return None
    return shares


def fleet_targets(mds: typing.Iterable[mdapi.ModelDeployment]) -> list[slo.Target]:
    """The deployments with SLOs, as evaluation targets; one whose status cannot be read is left out
    (and logged), so it cannot stop the others from being evaluated."""
    return [target for md in list(mds) if (target := _target(md)) is not None]


def _target(md: mdapi.ModelDeployment) -> slo.Target | None:
    if not md.spec.slos:
        return None
    try:
        return slo.Target.of(md, serving_revisions(md))
    except ValueError as error:
        log.warning(
            "SLOs of %s/%s not evaluated: unreadable status: %s",
            md.metadata.get("namespace"),
            md.metadata.get("name"),
            error,
        )
        return None


class FleetTargets:
    """:func:`fleet_targets`, each deployment's target built again only when its object or its
    status was replaced.

    A reconcile stores a new ModelDeployment object (read from the cache) with a new status object
    in ``Runtime.mds``, and replaces ``md.status`` whole when it writes one later; neither is
    changed in place once stored. So a deployment whose object and status are the very ones of
    the last cycle has the very same target: most of a steady fleet, every 5 s (building a target
    parses its timestamps and revisions: about 15-30 ms per cycle at 1,000 deployments). The
    fleet memo then finds the same target objects (its comparisons stop at identity).
    """

    def __init__(self) -> None:
        self._known: dict[int, tuple[mdapi.ModelDeployment, mdapi.ModelDeploymentStatus, slo.Target | None]] = {}

    def __call__(self, mds: typing.Iterable[mdapi.ModelDeployment]) -> list[slo.Target]:
        known: dict[int, tuple[mdapi.ModelDeployment, mdapi.ModelDeploymentStatus, slo.Target | None]] = {}
        targets = []
        for md in list(mds):
            entry = self._known.get(id(md))  # the entry holds md: its id is not reused while known
            if entry is None or entry[0] is not md or entry[1] is not md.status:
                entry = (md, md.status, _target(md))
            known[id(md)] = entry
            if entry[2] is not None:
                targets.append(entry[2])
        self._known = known
        return targets


async def _fleet_loop(runtime: Runtime, url: str, heartbeat: supervise.Heartbeat) -> None:
    """One batched evaluation of every deployment's SLOs per interval (cost independent of N)."""
    cfg = runtime.settings
    settings = slo.Settings(
        min_window_seconds=int(cfg.seconds("min_window")),
        current_rate_window_seconds=int(cfg.seconds("rate_window")),
        baseline_rate_window_seconds=int(cfg.seconds("baseline_window")),
    )
    observer = fleet.FleetObserver(
        url,
        settings=settings,
        bearer_token_file=cfg.prometheus_bearer_token_file,
        verify=cfg.prometheus_verify,
        scoped=not runtime.scope.clusterwide,  # a shard queries its own namespaces' series only
    )
    try:
        while True:
            heartbeat.beat()
            if not runtime.leading():
                await asyncio.sleep(runtime.settings.eval_interval)
                continue
            started = time.monotonic()
            now = datetime.datetime.now(datetime.UTC)
            targets = runtime.targets(runtime.mds.values())
            try:
                result = await observer.evaluate(targets, now)
            except Exception:
                log.exception("fleet evaluation failed")
                await asyncio.sleep(runtime.settings.eval_interval)
                continue
            if not runtime.leading():
                continue  # lost the lease while evaluating: this result belongs to nobody
            availability_changed = runtime.fleet is None or runtime.fleet.metrics_available != result.metrics_available
            runtime.fleet = result
            for target in targets:
                key = (target.namespace, target.name)
                md = runtime.mds.get(key)
                report = result.deployment(*key)
                if md is None:
                    continue
                if needs_pass(runtime, key, md.status, report, availability_changed):
                    runtime.enqueue(key)  # urgent when it needs healing: no routine key delays a heal
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, runtime.settings.eval_interval - elapsed))
    finally:
        observer.close()  # its kept-alive sessions (a restarted loop makes a new observer)


def needs_pass(
    runtime: Runtime,
    key: workqueue.Key,
    status: mdapi.ModelDeploymentStatus,
    report: slo.DeploymentReport | None,
    availability_changed: bool,
) -> bool:
    """Whether an evaluation gives the worker something to do for this deployment.

    A flipped state, metrics that came or went, numbers that moved once their refresh is due,
    timestamps alone at the deployment's heartbeat; and an open incident, whose plan moves with
    time and with every verdict (verifyAt, timeouts, a verification waiting for data from after
    its action), so it is reconciled after every evaluation rather than at the next refresh; a
    give-back under way likewise (stabilization, each step's verification). Few deployments have
    either. ``status`` is the last reconciled one (perhaps not written: ``unwritten_numbers``).
    """
    if availability_changed or status.active_incident is not None or status.giving_back:
        return True
    if report is None:
        return runtime.refresh_due(key)
    if merge.material_change(status, report):
        return True
    if runtime.refresh_due(key) and (key in runtime.unwritten_numbers or merge.numbers_moved(status, report)):
        return True
    return time.time() >= runtime.heartbeat_at.get(key, -math.inf)  # unknown: the reconcile works it out


def _observe(
    runtime: Runtime, md: mdapi.ModelDeployment, status: mdapi.ModelDeploymentStatus, now: datetime.datetime
) -> tuple[mdapi.ModelDeploymentStatus, list[core.Event]]:
    """Fold the latest fleet evaluation into the status decided by the reconcile core."""
    result = runtime.fleet
    if md.spec.slos and runtime.settings.prometheus_url is None:
        generation = int(md.metadata.get("generation") or 0)
        flipped = _condition(
            status, merge.METRICS_AVAILABLE, False, "PrometheusNotConfigured", NO_PROMETHEUS, generation, now
        )
        return status, [flipped] if flipped is not None else []
    if not md.spec.slos or result is None:
        return status, []
    namespace, name = str(md.metadata["namespace"]), str(md.metadata["name"])
    merged = merge.merge(
        status,
        metrics_available=result.metrics_available,
        error=result.error,
        report=result.deployment(namespace, name),
        generation=int(md.metadata.get("generation") or 0),
        now=now,
        failure=result.failure(namespace, name),
    )
    events = [
        core.Event(
            "Warning" if t.new in ("Breached", "NoData") else "Normal",
            f"SLO{t.new}",
            f"SLO {t.slo}: {t.old or 'new'} -> {t.new}: {t.message}",
        )
        for t in merged.transitions
    ]
    for type_, value, reason, message in merged.condition_flips:
        warning = value is not cond.ConditionStatus.TRUE
        events.append(core.Event("Warning" if warning else "Normal", f"{type_}{value.value}", f"{reason}: {message}"))
    return merged.status, events


def _judged(result: fleet.FleetResult, key: workqueue.Key) -> bool:
    """Whether the current evaluation speaks for ``key``: it judged it, or found metrics missing
    (for all, or for it alone: healing then holds as in an outage).

    A deployment a watch delivered after the cycle began (right after a restart or a failover, as
    after ``started_leading``) has only the verdicts stored in its status, which a killed
    predecessor may have left one write behind: healing them reopened resolved breaches and
    escalated verified plans. Such a pass leaves the incident alone; the fleet loop queues the
    deployment again once it has judged it.
    """
    return not result.metrics_available or result.deployment(*key) is not None or result.failure(*key) is not None


def _slo_met(runtime: Runtime, key: workqueue.Key) -> dict[str, bool | None]:
    result = runtime.fleet
    if result is None or not result.metrics_available:
        return {}
    report = result.deployment(*key)
    return report.slo_met_by_revision() if report is not None else {}


def _event(runtime: Runtime, body: dict[str, Any], ev: core.Event) -> None:
    """Hand an Event over to the poster: posted in the background, after the object's earlier ones;
    losing one is logged, never fatal to the reconcile that decided it."""
    runtime.poster.post(body, ev.type, ev.reason, ev.message)


def _condition(
    status: mdapi.ModelDeploymentStatus,
    type_: str,
    value: bool,
    reason: str,
    message: str,
    generation: int,
    now: datetime.datetime,
    event: tuple[str, str] | None = None,
) -> core.Event | None:
    """Set one condition on ``status``; the Event to post when its status, reason or message changed.

    ``event`` is the (type, reason) of that Event; by default a Warning ``<Type><Status>`` when the
    value is the bad one (False), as the merge of SLO conditions does.
    """
    before = cond.find(status.conditions, type_)
    truth = cond.ConditionStatus.TRUE if value else cond.ConditionStatus.FALSE
    status.conditions, _ = cond.set_condition(status.conditions, type_, truth, reason, message, generation, now)
    if before is not None and (before.status, before.reason, before.message) == (truth, reason, message):
        return None
    kind, event_reason = event or ("Normal" if value else "Warning", f"{type_}{truth.value}")
    return core.Event(kind, event_reason, f"{reason}: {message}")


def reconcile_error(
    status: mdapi.ModelDeploymentStatus, failure: ApplyFailed | None, generation: int, now: datetime.datetime
) -> core.Event | None:
    """Record on ``status`` whether the children could be written; an Event when that changed.

    True with the API server's own reason and message when a write was refused (a 403 from RBAC,
    a 422 from admission...), so the user sees why nothing happens; False once writes succeed
    again. A deployment that never failed carries no such condition.
    """
    if failure is not None:
        warning = ("Warning", RECONCILE_ERROR)
        return _condition(status, RECONCILE_ERROR, True, failure.reason, failure.message, generation, now, warning)
    if cond.find(status.conditions, RECONCILE_ERROR) is None:
        return None
    done = ("Normal", "Reconciled")
    return _condition(
        status, RECONCILE_ERROR, False, "Applied", "every child object was applied", generation, now, done
    )


class ApplyFailed(Exception):
    """The API server refused a child write; carries what to tell the user."""

    def __init__(self, what: str, error: exceptions.ApiException) -> None:
        self.error = error
        self.reason = kube.reason(error)
        self.message = f"{what}: {error.status} {kube.api_message(error)}"
        super().__init__(self.message)


async def reconcile(runtime: Runtime, key: workqueue.Key) -> None:
    """One reconcile of one ModelDeployment; never raises (a failure is retried with backoff)."""
    namespace, name = key
    if not runtime.leading() or not runtime.admits(key):
        return  # a standby (the leader gets the same events; all keys are enqueued on taking over), or not ours
    try:
        await _reconcile(runtime, namespace, name)
    except leader.NotLeading as error:
        log.info("reconcile %s/%s stopped before writing: %s", namespace, name, error)
        return
    except ApplyFailed as failure:
        delay = runtime.queue.add_rate_limited(key, informer.retry_after(failure.error))
        log.warning("reconcile %s/%s: %s; retrying in %.1fs", namespace, name, failure.message, delay)
    except exceptions.ApiException as error:
        delay = runtime.queue.add_rate_limited(key, informer.retry_after(error))
        log.warning(
            "reconcile %s/%s: API error %s %s; retrying in %.1fs: %s",
            namespace,
            name,
            error.status,
            error.reason,
            delay,
            kube.api_message(error),
        )
    except (OSError, urllib3.exceptions.HTTPError) as error:  # connection refused, timeouts, resets
        delay = runtime.queue.add_rate_limited(key)
        log.warning("reconcile %s/%s: API server unreachable (%s); retrying in %.1fs", namespace, name, error, delay)
    except Exception:
        delay = runtime.queue.add_rate_limited(key)
        log.exception("reconcile %s/%s failed; retrying in %.1fs", namespace, name, delay)
    else:
        runtime.visited[key] = time.monotonic()
        if not runtime.creator.under_way(key):  # a creation refused again keeps backing off
            runtime.queue.forget(key)


async def _apply_children(runtime: Runtime, outcome: core.Outcome, observed: core.Observed, namespace: str) -> None:
    """Apply the decided children in order; the first refusal stops and is reported as such.

    A stable Service that does not exist yet is created beside the reconcile (its cluster IP is
    allocated one at a time by the API server, see :mod:`vigil.reconcile.creations`); a refusal
    of the last such creation is reported here, after the Deployments were applied.
    """
    manifests = [*outcome.deployments]
    create: dict[str, Any] | None = None
    if outcome.service is not None and observed.service is False:
        create = outcome.service
    elif outcome.service is not None:
        manifests.append(outcome.service)
    manifests += [*outcome.services, *outcome.routes]  # revision Services before the route that uses them
    for manifest in manifests:
        try:
            await runtime.kube.apply(manifest)
        except exceptions.ApiException as error:
            raise ApplyFailed(f"apply {manifest['kind']} {manifest['metadata']['name']}", error) from error
    if create is not None:
        key = (namespace, str(create["metadata"]["name"]))
        refused = runtime.creator.refusal(key)
        if isinstance(refused, exceptions.ApiException):
            raise ApplyFailed(f"apply Service {key[1]}", refused) from refused
        if refused is not None:
            raise refused
        runtime.creator.create(key, create)
    for deployment_name in outcome.delete:
        try:
            await runtime.kube.delete_deployment(namespace, deployment_name)
        except exceptions.ApiException as error:
            raise ApplyFailed(f"delete Deployment {deployment_name}", error) from error


async def _reconcile(runtime: Runtime, namespace: str, name: str) -> None:
    key = (namespace, name)
    raw = await runtime.kube.get_custom(mdapi.PLURAL, namespace, name)
    if raw is None:
        _forget(runtime, key)  # deleted, perhaps while a watch was down
        return
    if raw["metadata"].get("deletionTimestamp"):
        return
    now = datetime.datetime.now(datetime.UTC)
    try:
        md = mdapi.ModelDeployment.model_validate(raw)
    except pydantic.ValidationError as error:
        await _report_invalid_spec(runtime, raw, invalid.describe(error), now)
        return
    refused = invalid.beyond_schema(md, min_window_seconds=runtime.settings.seconds("min_window"))
    if refused:
        await _report_invalid_spec(runtime, raw, refused, now)
        return
    observed = await runtime.kube.observe(namespace, name)
    gateway_api = await runtime.kube.has_gateway_api()
    outcome = core.decide(md, raw["metadata"]["uid"], observed, now, _slo_met(runtime, key), gateway_api=gateway_api)
    status, slo_events = _observe(runtime, md, outcome.status, now)
    heal_events: list[core.Event] = []
    if md.spec.slos and runtime.fleet is not None and _judged(runtime.fleet, key):
        ctx = healing.Context(
            raw=raw,
            md=md,
            observed=observed,
            report=runtime.fleet.deployment(namespace, name),
            metrics_available=runtime.fleet.metrics_available and runtime.fleet.failure(namespace, name) is None,
            now=now,
        )
        status, heal_events = await healing.tend(runtime.kube, ctx, status)
        overrides = (status.rollback, status.scale, status.traffic)
        opened = status.active_incident not in (None, md.status.active_incident)
        if opened or overrides != (outcome.status.rollback, outcome.status.scale, outcome.status.traffic):
            # A runbook action changed what should run, or an incident was opened (its name is written
            # below before its plan runs): reconcile again now, not after the next evaluation (up to
            # --eval-interval later: a first action that waited for it came seconds late at N = 1,000).
            runtime.queue.add(key, urgent=True)
    status, gate_events = await validate.bookkeep(runtime.kube, raw, md, status)
    failure: ApplyFailed | None = None
    try:
        await _apply_children(runtime, outcome, observed, namespace)
    except ApplyFailed as error:
        failure = error
    generation = int(raw["metadata"].get("generation") or 0)
    apply_event = reconcile_error(status, failure, generation, now)
    drift = merge.drift(md.status, status)
    why = _worth_writing(runtime, key, md.status, status, drift, now)
    if why is not None:
        await runtime.kube.apply_md_status(namespace, name, status)
        STATUS_WRITES.labels(why).inc()
        runtime.refreshed(key, status)
    elif drift is merge.Drift.NONE:
        runtime.refreshed(key, md.status)
    else:
        if drift is merge.Drift.NUMBERS:
            runtime.unwritten_numbers.add(key)
        runtime.kept(key, md.status)
    md.status = status
    if key in runtime.known:  # a DELETED event during this reconcile forgot it: keep it forgotten
        runtime.mds[key] = md
        wake = _next_deadline(md, now)
        if wake is not None:
            runtime.queue.add_after(key, wake)
    for ev in (*outcome.events, *slo_events, *heal_events, *gate_events, *([apply_event] if apply_event else [])):
        _event(runtime, raw, ev)
    if failure is not None:
        raise failure
    if outcome.validate is not None:
        await _validate(runtime, raw, md, observed, outcome.validate)
    elif outcome.retry_in is not None:
        runtime.queue.add_after(key, outcome.retry_in + 0.1)


async def _validate(
    runtime: Runtime, raw: dict[str, Any], md: mdapi.ModelDeployment, observed: core.Observed, request: core.Validate
) -> None:
    """Send the golden requests the decision asked for; record the verdict before anything acts on it.

    The verdict is written first, then the BadModel Incident it names is created (and recorded as
    such), then the deployment is reconciled again at once: traffic moves on the written verdict.
    """
    namespace, name = str(md.metadata["namespace"]), str(md.metadata["name"])
    settings = runtime.settings
    status, events = await validate.run(
        runtime.kube, settings.inference_url, md, observed, request, runtime.golden_files
    )
    await runtime.kube.apply_md_status(namespace, name, status)
    md.status = status
    recorded, more = await validate.bookkeep(runtime.kube, raw, md, status)
    if recorded.wire() != status.wire():
        await runtime.kube.apply_md_status(namespace, name, recorded)
        md.status = recorded
    runtime.refreshed((namespace, name), md.status)
    for ev in (*events, *more):
        _event(runtime, raw, ev)
    runtime.queue.add((namespace, name))


def _next_deadline(md: mdapi.ModelDeployment, now: datetime.datetime) -> float | None:
    """Seconds until time alone changes this deployment's decision (its bake time ends: the previous
    revision cools down, a good run becomes last-known-good), so that moment needs no resync."""
    bake = sloapi.duration_seconds(md.spec.bake_time)
    status = md.status
    starts = [status.switched_at] if status.previous_revision is not None else []
    starts += [r.good_since for r in status.revisions if r.name == status.current_revision and not r.last_known_good]
    waits = [bake - (now - cond.parse_time(t)).total_seconds() for t in starts if t]
    pending = [w for w in waits if w > 0]
    return min(pending) + 1.0 if pending else None


def _worth_writing(
    runtime: Runtime,
    key: workqueue.Key,
    stored: mdapi.ModelDeploymentStatus,
    status: mdapi.ModelDeploymentStatus,
    drift: merge.Drift,
    now: datetime.datetime,
) -> str | None:
    """Why ``status`` must be written over ``stored`` (None: it need not be), by its ``drift``: at
    once when it says something new (a state, a condition, a revision, an override: the name of
    the first such field); when only SLI numbers moved, once the refresh is due
    (``--status-refresh``: "refresh"); when only ``lastEvaluationTime`` moved (an idle
    deployment's same numbers, judged again), at the deployment's heartbeat (``--status-heartbeat``:
    "heartbeat"). So a fleet's steady state does not cost one write per deployment per cycle, nor
    an idle deployment one per refresh interval."""
    if drift is merge.Drift.MATERIAL:
        return _first_difference(merge.material(status), merge.material(stored))
    if drift is merge.Drift.NUMBERS:
        return "refresh" if runtime.refresh_due(key) else None
    if drift is merge.Drift.STAMPS and now.timestamp() >= runtime.next_heartbeat(key, stored):
        return "heartbeat"
    return None


def _first_difference(new: dict[str, Any], old: dict[str, Any]) -> str:
    """The first status field that differs (a condition by its type), a bounded metric label."""
    for field in sorted(set(new) | set(old)):
        if new.get(field) == old.get(field):
            continue
        if field == "conditions":
            before = {c.get("type"): c for c in old.get(field) or []}
            for found in new.get(field) or []:
                if before.get(found.get("type")) != found:
                    return f"conditions/{found.get('type')}"
        return field
    return "status"


async def _report_invalid_spec(
    runtime: Runtime, raw: dict[str, Any], problems: list[str], now: datetime.datetime
) -> None:
    """A spec vigil refuses: Degraded=True, reason InvalidSpec, naming each field, on this object only.

    Nothing else is decided for it: its children are left as they are (no rollout of a spec vigil
    cannot honour, no teardown either), and it leaves the fleet evaluation, so a bad object can
    neither act nor disturb another's verdicts. A Warning Event accompanies every new message.
    """
    meta = raw["metadata"]
    key = (meta["namespace"], meta["name"])
    runtime.mds.pop(key, None)
    message = "; ".join(problems)
    try:
        status = mdapi.ModelDeploymentStatus.model_validate(raw.get("status") or {})
    except pydantic.ValidationError:
        status = mdapi.ModelDeploymentStatus()
    before = cond.find(status.conditions, core.DEGRADED)
    unchanged = status.wire()
    generation = int(meta.get("generation") or 0)
    status.conditions, _flipped = cond.set_condition(
        status.conditions, core.DEGRADED, cond.ConditionStatus.TRUE, INVALID_SPEC, message, generation, now
    )
    status.observed_generation = generation
    if status.wire() != unchanged:  # a resync of an unchanged refusal writes nothing
        await runtime.kube.apply_md_status(key[0], key[1], status)
    if before is None or (before.status, before.reason, before.message) != (
        cond.ConditionStatus.TRUE,
        INVALID_SPEC,
        message,
    ):
        log.warning("%s/%s: invalid spec: %s", key[0], key[1], message)
        _event(runtime, raw, core.Event("Warning", INVALID_SPEC, message))


def _caches(runtime: Runtime, api_client: Any, watch_scope: scope.Scope) -> watched.Caches:
    """The watch caches, HTTPRoutes among them when the cluster serves the Gateway API now (one
    installed later is read from the server: correct, at a request per reconcile)."""
    try:
        gateway_api = runtime.kube.discover_httproutes()
    except Exception as error:  # an unreachable API server: the routes are read from it later
        log.warning("Gateway API discovery failed (%s): HTTPRoutes are read from the server", error)
        gateway_api = False
    return watched.build(api_client, watch_scope, lambda *change: changed(runtime, *change), gateway_api)


GC_THRESHOLDS = (20_000, 20, 20)
"""The cyclic garbage collector's thresholds for a long-running operator (CPython's are 700, 10, 10).

Nearly everything vigil allocates is freed by reference counting the moment it is dropped; the
collector exists for the rare cycles. With the defaults it ran a full collection every cycle or
two of the fleet loop at 1,000 deployments (each cycle's answers, some 40,000 objects, outlive two
younger generations and count towards the next full collection), and each full collection walks
every live object: the watch caches, the memoised reports. Measured on the fleet loop's own work
at 1,000 deployments: 15 full collections in 20 cycles, a third of the loop's CPU; with these
thresholds one young collection per cycle and no full one (those come after 400 young ones). Cyclic
garbage promoted to the oldest generation waits longer to be freed: a few MiB at most here.
"""


def run(cfg: config.Settings) -> None:
    """Run the operator until it is stopped; bad settings raise :class:`config.ConfigError` first."""
    found = config.problems(cfg)
    kubeconfig_problem = config.kubeconfig_problem(cfg.kubeconfig)
    if kubeconfig_problem is not None:
        found.insert(0, kubeconfig_problem)
    if found:
        raise config.ConfigError("; ".join(found))
    try:
        api_client = kube.load(cfg.kubeconfig, connections=api_threads(cfg))
    except Exception as error:  # no in-cluster token and no ~/.kube/config, or a malformed file
        raise config.ConfigError(f"cannot load a kubeconfig: {error}") from error
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf").setLevel(logging.WARNING)  # per-event chatter; vigil logs its decisions
    gc.set_threshold(*GC_THRESHOLDS)
    if cfg.kubeconfig:
        os.environ["KUBECONFIG"] = cfg.kubeconfig  # kopf's own login reads the same file
    watch_scope = scope.Scope(cfg.namespaces)
    cluster_scope = watch_scope.exact_names is None
    runtime = Runtime(settings=cfg, kube=kube.Kube(api_client, cluster_scope=cluster_scope))
    runtime.kube.caches = _caches(runtime, api_client, watch_scope)
    if not cfg.standalone:
        identity = f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        runtime.elector = leader.Elector(
            leader.KubeLeases(api_client, timeout=cfg.timing.renew_deadline),
            config.lease_namespace(cfg),
            cfg.lease_name,
            identity,
            cfg.timing,
            on_started=runtime.started_leading,
            on_stopped=runtime.stopped_leading,
        )
        runtime.kube.fence = runtime.elector.fence
        log.info("replica %s campaigns for lease %s", identity, runtime.elector.lease)
    # kopf runs standalone on every replica: its watches stay warm, and the Lease decides who acts.
    kopf.run(
        clusterwide=not cfg.namespaces,
        namespaces=list(cfg.namespaces),
        liveness_endpoint=cfg.liveness,
        standalone=True,
        memo=kopf.Memo(runtime=runtime),
    )
