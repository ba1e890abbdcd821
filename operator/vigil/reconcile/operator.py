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
import typing
from typing import Any

import kopf
import pydantic
from kubernetes.client import exceptions

from vigil import api, labels
from vigil.api import conditions as cond
from vigil.api import modeldeployment as mdapi
from vigil.reconcile import core, kube
from vigil.reconcile import queue as workqueue

log = logging.getLogger("vigil.reconcile")
WORKERS = 4
RETRY_SECONDS = 5.0


@dataclasses.dataclass
class Settings:
    """Operator settings from the command line."""

    kubeconfig: str | None = None
    resync_seconds: float = 30.0
    prometheus_url: str | None = None
    eval_interval: float = 5.0
    min_window: str = "20s"


@dataclasses.dataclass
class Runtime:
    """What the handlers share, kept in kopf's memo."""

    settings: Settings
    kube: kube.Kube
    queue: workqueue.WorkQueue = dataclasses.field(default_factory=workqueue.WorkQueue)
    known: set[workqueue.Key] = dataclasses.field(default_factory=set)
    slo_met: dict[workqueue.Key, dict[str, bool | None]] = dataclasses.field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)


def _runtime(memo: Any) -> Runtime:
    runtime: Runtime = memo.runtime
    return runtime


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 60
    runtime = _runtime(memo)
    for _worker in range(WORKERS):
        runtime.tasks.append(asyncio.create_task(runtime.queue.worker(lambda key: reconcile(runtime, key))))
    runtime.tasks.append(asyncio.create_task(_resync(runtime)))


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
    if event.get("type") == "DELETED":
        runtime.known.discard(key)
        runtime.slo_met.pop(key, None)
        return
    runtime.known.add(key)
    runtime.queue.add(key)


@kopf.on.event("apps", "v1", "deployments", labels={labels.MODEL_DEPLOYMENT: kopf.PRESENT})
async def deployment_event(namespace: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    _runtime(memo).queue.add((namespace or "", body.metadata.labels[labels.MODEL_DEPLOYMENT]))


@kopf.on.event("", "v1", "pods", labels={labels.MODEL_DEPLOYMENT: kopf.PRESENT})
async def pod_event(namespace: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    _runtime(memo).queue.add((namespace or "", body.metadata.labels[labels.MODEL_DEPLOYMENT]))


async def _resync(runtime: Runtime) -> None:
    """Re-reconcile everything now and then: heals drift that produced no watch event."""
    while True:
        await asyncio.sleep(runtime.settings.resync_seconds)
        for key in list(runtime.known):
            runtime.queue.add(key)


def _event(body: dict[str, Any], ev: core.Event) -> None:
    kopf.event(typing.cast(kopf.Body, body), type=ev.type, reason=ev.reason, message=ev.message)


async def reconcile(runtime: Runtime, key: workqueue.Key) -> None:
    """One reconcile of one ModelDeployment; never raises (a failure is retried later)."""
    namespace, name = key
    try:
        await _reconcile(runtime, namespace, name)
    except exceptions.ApiException as error:
        log.warning("reconcile %s/%s: API error %s %s; retrying", namespace, name, error.status, error.reason)
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
        await _report_unparseable(runtime, raw, error, now)
        return
    observed = await runtime.kube.observe(namespace, name)
    outcome = core.decide(md, raw["metadata"]["uid"], observed, now, runtime.slo_met.get((namespace, name)))
    for manifest in outcome.deployments:
        await runtime.kube.apply(manifest)
    if outcome.service is not None:
        await runtime.kube.apply(outcome.service)
    for deployment_name in outcome.delete:
        await runtime.kube.delete_deployment(namespace, deployment_name)
    if outcome.status.wire() != md.status.wire():
        await runtime.kube.apply_md_status(namespace, name, outcome.status)
    for ev in outcome.events:
        _event(raw, ev)


async def _report_unparseable(
    runtime: Runtime, raw: dict[str, Any], error: pydantic.ValidationError, now: datetime.datetime
) -> None:
    """A spec the schema let through but the models reject: Degraded with the field named."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in issue['loc'])}: {issue['msg']}" for issue in error.errors(include_url=False)
    )
    status_raw = raw.get("status") or {}
    try:
        status = mdapi.ModelDeploymentStatus.model_validate(status_raw)
    except pydantic.ValidationError:
        status = mdapi.ModelDeploymentStatus()
    generation = int(raw["metadata"].get("generation") or 0)
    status.conditions, flipped = cond.set_condition(
        status.conditions, core.DEGRADED, cond.ConditionStatus.TRUE, "InvalidSpec", problems, generation, now
    )
    status.observed_generation = generation
    meta = raw["metadata"]
    await runtime.kube.apply_md_status(meta["namespace"], meta["name"], status)
    if flipped:
        _event(raw, core.Event("Warning", "InvalidSpec", problems))


def run(
    settings: Settings,
    namespaces: list[str],
    liveness: str | None,
    priority: int,
    peering: str | None,
    standalone: bool,
) -> None:
    """Run the operator until it is stopped."""
    runtime = Runtime(settings=settings, kube=kube.Kube(kube.load(settings.kubeconfig)))
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
        priority=priority,
        peering_name=peering,
        standalone=standalone,
        memo=kopf.Memo(runtime=runtime),
    )
