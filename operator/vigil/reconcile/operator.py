"""The kopf wiring: watch events mark ModelDeployments dirty; workers reconcile them.

Handlers stay thin on purpose. kopf's per-object handler progress annotations would write to the
user's object (an Argo CD diff for nothing), so vigil uses only ``on.event`` handlers, which never
patch the watched object, and keeps its own state in ``status``. A fixed pool of workers does the
reconciling (see :mod:`vigil.reconcile.queue`), so cost grows with events, not with tasks per object.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import os
import socket
import time
import typing
from typing import Any

import kopf
import prometheus_client
import pydantic
from kubernetes.client import exceptions

from vigil import api, labels
from vigil.api import conditions as cond
from vigil.api import invalid
from vigil.api import modeldeployment as mdapi
from vigil.api import slo as sloapi
from vigil.observe import fleet, merge, slo
from vigil.reconcile import core, healing, kube, peering, scope
from vigil.reconcile import queue as workqueue

log = logging.getLogger("vigil.reconcile")
WORKERS = 4
RETRY_SECONDS = 5.0
INVALID_SPEC = "InvalidSpec"


@dataclasses.dataclass
class Settings:
    """Operator settings from the command line."""

    kubeconfig: str | None = None
    resync_seconds: float = 30.0
    prometheus_url: str | None = None
    eval_interval: float = 5.0
    min_window: str = "20s"
    metrics_port: int = 9102
    metrics_address: str = "127.0.0.1"
    rate_window: str = "5m"
    peering: str | None = None
    priority: int = 0
    namespaces: tuple[str, ...] = ()
    baseline_window: str = "30m"


def priority_from_hostname(hostname: str) -> int:
    """Distinct peering priorities for StatefulSet pods: ``vigil-0`` -> 100, ``vigil-1`` -> 99, ..."""
    ordinal = hostname.rsplit("-", 1)[-1]
    return 100 - int(ordinal) if ordinal.isdigit() else 0


@dataclasses.dataclass
class Runtime:
    """What the handlers share, kept in kopf's memo."""

    settings: Settings
    kube: kube.Kube
    queue: workqueue.WorkQueue = dataclasses.field(default_factory=workqueue.WorkQueue)
    known: set[workqueue.Key] = dataclasses.field(default_factory=set)
    mds: dict[workqueue.Key, mdapi.ModelDeployment] = dataclasses.field(default_factory=dict)
    fleet: fleet.FleetResult | None = None
    status_written: dict[workqueue.Key, float] = dataclasses.field(default_factory=dict)
    identity: str = ""
    active: bool = True
    tasks: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)
    refused: set[workqueue.Key] = dataclasses.field(default_factory=set)

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
    settings.watching.server_timeout = 60
    runtime = _runtime(memo)
    if runtime.settings.metrics_port:
        try:
            prometheus_client.start_http_server(runtime.settings.metrics_port, addr=runtime.settings.metrics_address)
        except OSError as error:  # a busy port costs the metrics, never the operator
            log.warning("operator /metrics not served on port %s: %s", runtime.settings.metrics_port, error)
    for _worker in range(WORKERS):
        runtime.tasks.append(asyncio.create_task(runtime.queue.worker(lambda key: reconcile(runtime, key))))
    runtime.tasks.append(asyncio.create_task(_resync(runtime)))
    if runtime.settings.prometheus_url:
        runtime.tasks.append(asyncio.create_task(_fleet_loop(runtime, runtime.settings.prometheus_url)))
    if runtime.settings.peering:
        runtime.active = False  # until the peering record says this replica may work
        runtime.tasks.append(asyncio.create_task(_peering_loop(runtime, runtime.settings.peering)))


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
    for task in runtime.tasks:
        task.cancel()
    await asyncio.gather(*runtime.tasks, return_exceptions=True)


@kopf.on.event(api.GROUP, api.VERSION, mdapi.PLURAL)
async def modeldeployment_event(event: kopf.RawEvent, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    runtime = _runtime(memo)
    key = (namespace or "", name)
    if not runtime.admits(key):
        return
    if event.get("type") == "DELETED":
        runtime.known.discard(key)
        runtime.mds.pop(key, None)
        runtime.status_written.pop(key, None)
        return
    runtime.known.add(key)
    runtime.queue.add(key)


@kopf.on.event("apps", "v1", "deployments", labels={labels.MODEL_DEPLOYMENT: kopf.PRESENT})
async def deployment_event(namespace: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    _enqueue_owner(_runtime(memo), namespace, body)


@kopf.on.event("", "v1", "pods", labels={labels.MODEL_DEPLOYMENT: kopf.PRESENT})
async def pod_event(namespace: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    _enqueue_owner(_runtime(memo), namespace, body)


def _enqueue_owner(runtime: Runtime, namespace: str | None, body: kopf.Body) -> None:
    """A child changed: its ModelDeployment (named by the label) needs a reconcile, if in scope."""
    key = (namespace or "", body.metadata.labels[labels.MODEL_DEPLOYMENT])
    if runtime.admits(key):
        runtime.queue.add(key)


PEERING_CHECK_SECONDS = 5.0


async def _peering_record(runtime: Runtime, name: str) -> dict[str, Any]:
    custom = runtime.kube.custom
    try:
        if runtime.settings.namespaces:
            found = await asyncio.to_thread(
                custom.get_namespaced_custom_object,
                "kopf.dev",
                "v1",
                runtime.settings.namespaces[0],
                "kopfpeerings",
                name,
                _request_timeout=kube.REQUEST_TIMEOUT,
            )
        else:
            found = await asyncio.to_thread(
                custom.get_cluster_custom_object,
                "kopf.dev",
                "v1",
                "clusterkopfpeerings",
                name,
                _request_timeout=kube.REQUEST_TIMEOUT,
            )
    except exceptions.ApiException as error:
        if error.status == 404:
            return {}
        raise
    return typing.cast(dict[str, Any], found).get("status") or {}


async def _peering_loop(runtime: Runtime, name: str) -> None:
    """Follow kopf's peering record: only the active replica reconciles, evaluates and acts."""
    said: str | None = None
    while True:
        try:
            peers = await _peering_record(runtime, name)
            now = datetime.datetime.now(datetime.UTC)
            blocker = peering.blocking_peer(peers, runtime.identity, runtime.settings.priority, now)
            active = blocker is None and runtime.identity in peers
            if active and not runtime.active:
                for item in await runtime.kube.list_custom(mdapi.PLURAL, None):
                    key = (item["metadata"]["namespace"], item["metadata"]["name"])
                    if runtime.admits(key):
                        runtime.known.add(key)
                        runtime.queue.add(key)
            runtime.active = active
            why = f"peer {blocker[0]} has priority {blocker[1]}" if blocker else "not yet in the record"
            state = f"active (identity {runtime.identity})" if active else f"paused ({why})"
            if state != said:
                log.info("peering %s: %s", name, state)
                said = state
        except exceptions.ApiException as error:
            log.warning("peering %s: cannot read the peering record: %s", name, error.reason)
        await asyncio.sleep(PEERING_CHECK_SECONDS)


async def _resync(runtime: Runtime) -> None:
    """Re-reconcile everything now and then: heals drift that produced no watch event."""
    while True:
        await asyncio.sleep(runtime.settings.resync_seconds)
        for key in list(runtime.known):
            runtime.queue.add(key)


STATUS_REFRESH_SECONDS = 15.0


def serving_revisions(md: mdapi.ModelDeployment) -> list[slo.RevisionRef]:
    """Revisions receiving traffic, each with the time it started to (its SLIs are judged from then)."""
    status = md.status
    refs: list[slo.RevisionRef] = []
    for rev in status.revisions:
        if rev.name != status.current_revision:
            continue
        since = status.switched_at or rev.created
        refs.append(slo.RevisionRef(name=rev.name, since=cond.parse_time(since)))
    return refs


def fleet_targets(mds: typing.Iterable[mdapi.ModelDeployment]) -> list[slo.Target]:
    """The deployments with SLOs, as evaluation targets; one whose status cannot be read is left out
    (and logged), so it cannot stop the others from being evaluated."""
    targets = []
    for md in list(mds):
        if not md.spec.slos:
            continue
        try:
            targets.append(slo.Target.of(md, serving_revisions(md)))
        except ValueError as error:
            log.warning(
                "SLOs of %s/%s not evaluated: unreadable status: %s",
                md.metadata.get("namespace"),
                md.metadata.get("name"),
                error,
            )
    return targets


async def _fleet_loop(runtime: Runtime, url: str) -> None:
    """One batched evaluation of every deployment's SLOs per interval (cost independent of N)."""
    min_window = int(sloapi.duration_seconds(runtime.settings.min_window))
    settings = slo.Settings(
        min_window_seconds=min_window,
        current_rate_window_seconds=int(sloapi.duration_seconds(runtime.settings.rate_window)),
        baseline_rate_window_seconds=int(sloapi.duration_seconds(runtime.settings.baseline_window)),
    )
    observer = fleet.FleetObserver(url, settings=settings)
    while True:
        if not runtime.active:
            await asyncio.sleep(runtime.settings.eval_interval)
            continue
        started = time.monotonic()
        now = datetime.datetime.now(datetime.UTC)
        targets = fleet_targets(runtime.mds.values())
        try:
            result = await observer.evaluate(targets, now)
        except Exception:
            log.exception("fleet evaluation failed")
            await asyncio.sleep(runtime.settings.eval_interval)
            continue
        availability_changed = runtime.fleet is None or runtime.fleet.metrics_available != result.metrics_available
        runtime.fleet = result
        for target in targets:
            key = (target.namespace, target.name)
            md = runtime.mds.get(key)
            report = result.deployment(*key)
            stale = time.monotonic() - runtime.status_written.get(key, 0.0) > STATUS_REFRESH_SECONDS
            if md is None:
                continue
            if availability_changed or stale or (report is not None and merge.material_change(md.status, report)):
                runtime.queue.add(key)
        elapsed = time.monotonic() - started
        await asyncio.sleep(max(0.0, runtime.settings.eval_interval - elapsed))


def _observe(
    runtime: Runtime, md: mdapi.ModelDeployment, status: mdapi.ModelDeploymentStatus, now: datetime.datetime
) -> tuple[mdapi.ModelDeploymentStatus, list[core.Event]]:
    """Fold the latest fleet evaluation into the status decided by the reconcile core."""
    result = runtime.fleet
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


def _slo_met(runtime: Runtime, key: workqueue.Key) -> dict[str, bool | None]:
    result = runtime.fleet
    if result is None or not result.metrics_available:
        return {}
    report = result.deployment(*key)
    return report.slo_met_by_revision() if report is not None else {}


async def _event(runtime: Runtime, body: dict[str, Any], ev: core.Event) -> None:
    """Post an Event; losing one is logged, never fatal to the reconcile that decided it."""
    try:
        await runtime.kube.post_event(body, ev.type, ev.reason, ev.message)
    except exceptions.ApiException as error:
        log.warning("event %s on %s not posted: %s", ev.reason, body["metadata"].get("name"), kube.api_message(error))


async def reconcile(runtime: Runtime, key: workqueue.Key) -> None:
    """One reconcile of one ModelDeployment; never raises (a failure is retried later)."""
    namespace, name = key
    if not runtime.active or not runtime.admits(key):
        return  # another replica works (it gets the same events), or not ours to touch
    try:
        await _reconcile(runtime, namespace, name)
    except exceptions.ApiException as error:
        log.warning(
            "reconcile %s/%s: API error %s %s; retrying: %s",
            namespace,
            name,
            error.status,
            error.reason,
            kube.api_message(error),
        )
        asyncio.get_running_loop().call_later(RETRY_SECONDS, runtime.queue.add, key)
    except Exception:
        log.exception("reconcile %s/%s failed; retrying", namespace, name)
        asyncio.get_running_loop().call_later(RETRY_SECONDS * 6, runtime.queue.add, key)


async def _reconcile(runtime: Runtime, namespace: str, name: str) -> None:
    raw = await runtime.kube.get_custom(mdapi.PLURAL, namespace, name)
    if raw is None or raw["metadata"].get("deletionTimestamp"):
        return
    now = datetime.datetime.now(datetime.UTC)
    try:
        md = mdapi.ModelDeployment.model_validate(raw)
    except pydantic.ValidationError as error:
        await _report_invalid_spec(runtime, raw, invalid.describe(error), now)
        return
    refused = invalid.beyond_schema(md, min_window_seconds=sloapi.duration_seconds(runtime.settings.min_window))
    if refused:
        await _report_invalid_spec(runtime, raw, refused, now)
        return
    observed = await runtime.kube.observe(namespace, name)
    key = (namespace, name)
    gateway_api = await runtime.kube.has_gateway_api()
    outcome = core.decide(md, raw["metadata"]["uid"], observed, now, _slo_met(runtime, key), gateway_api=gateway_api)
    status, slo_events = _observe(runtime, md, outcome.status, now)
    heal_events: list[core.Event] = []
    if md.spec.slos and runtime.fleet is not None:
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
        if overrides != (outcome.status.rollback, outcome.status.scale, outcome.status.traffic):
            runtime.queue.add(key)  # a runbook action changed what should run: reconcile again now
    for manifest in outcome.deployments:
        await runtime.kube.apply(manifest)
    if outcome.service is not None:
        await runtime.kube.apply(outcome.service)
    for manifest in (*outcome.services, *outcome.routes):  # revision Services before the route that uses them
        await runtime.kube.apply(manifest)
    for deployment_name in outcome.delete:
        await runtime.kube.delete_deployment(namespace, deployment_name)
    if status.wire() != md.status.wire():
        await runtime.kube.apply_md_status(namespace, name, status)
        runtime.status_written[key] = time.monotonic()
    md.status = status
    runtime.mds[key] = md
    for ev in (*outcome.events, *slo_events, *heal_events):
        await _event(runtime, raw, ev)


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
        runtime.status_written[key] = time.monotonic()
    if before is None or (before.status, before.reason, before.message) != (
        cond.ConditionStatus.TRUE,
        INVALID_SPEC,
        message,
    ):
        log.warning("%s/%s: invalid spec: %s", key[0], key[1], message)
        await _event(runtime, raw, core.Event("Warning", INVALID_SPEC, message))


def run(
    settings: Settings,
    namespaces: list[str],
    liveness: str | None,
    priority: int,
    peering_name: str | None,
    standalone: bool,
) -> None:
    """Run the operator until it is stopped."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf").setLevel(logging.WARNING)  # per-event chatter; vigil logs its decisions
    if settings.kubeconfig:
        os.environ["KUBECONFIG"] = settings.kubeconfig  # kopf's own login reads the same file
    # kopf names this replica in the peering record by $POD_ID; knowing it lets our loops follow.
    os.environ.setdefault("POD_ID", f"{socket.gethostname()}-{os.getpid()}")
    settings = dataclasses.replace(settings, peering=peering_name, priority=priority, namespaces=tuple(namespaces))
    runtime = Runtime(settings=settings, kube=kube.Kube(kube.load(settings.kubeconfig)), identity=os.environ["POD_ID"])
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
        priority=priority,
        peering_name=peering_name,
        standalone=standalone,
        memo=kopf.Memo(runtime=runtime),
    )
