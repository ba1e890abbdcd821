"""The incident edge: open an Incident on a breach, keep its record, resolve it when the SLO is met.

Runs inside the per-deployment worker, after the reconcile decision and the SLO merge, so a
deployment's status and its Incidents have one writer. The decisions (diagnosis, the record,
the plan) are pure functions elsewhere; this module only gathers their inputs and writes their
outputs. Safety rule 1 lives here: with metrics unavailable nothing is opened or resolved.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import typing
from typing import Any

import pydantic
from kubernetes.client import exceptions

from vigil import labels
from vigil.act import guards, machine, notify, restart
from vigil.act import intents as acts
from vigil.act import runbooks as playbooks
from vigil.api import conditions as cond
from vigil.api import incident as incapi
from vigil.api import modeldeployment as mdapi
from vigil.api import runbook as rbapi
from vigil.api import slo as sloapi
from vigil.diagnose import cause
from vigil.observe import slo
from vigil.reconcile import core, kube
from vigil.record import incidents as record

log = logging.getLogger("vigil.healing")
HISTORY_LIMIT = 10
MAX_STEPS_PER_PASS = 6


@dataclasses.dataclass(frozen=True)
class Context:
    """What one pass over a deployment's incidents needs."""

    raw: dict[str, Any]
    md: mdapi.ModelDeployment
    observed: core.Observed
    report: slo.DeploymentReport | None
    metrics_available: bool
    now: datetime.datetime

    @property
    def namespace(self) -> str:
        return str(self.md.metadata["namespace"])

    @property
    def name(self) -> str:
        return str(self.md.metadata["name"])


def symptoms(ctx: Context, status: mdapi.ModelDeploymentStatus, breach: sloapi.SLOStatus) -> cause.Symptoms:
    """The evidence diagnosis looks at, from status, the observed pods and the fleet report."""
    spec = record.find_slo(ctx.md, breach.name)
    kind = spec.kind if spec is not None else sloapi.SLOKind.AVAILABILITY
    revision_report = None
    burns: dict[str, float | None] = {}
    if ctx.report is not None:
        revision_report = next((r for r in ctx.report.revisions if r.revision == breach.revision), None)
        for rev in ctx.report.revisions:
            judgement = next((j for j in rev.judgements if j.slo == breach.name), None)
            shorts = [p.short.burn_rate for p in judgement.measurement.pairs] if judgement is not None else []
            known = [b for b in shorts if b is not None]
            burns[rev.revision] = max(known) if known else None
    traffic = revision_report.traffic if revision_report is not None else None
    pending = tuple(
        cause.PendingPod(name=p.pod, message=p.message, reason=p.reason, revision=p.revision)
        for p in ctx.observed.problems
        if p.reason == "Unschedulable"
    )
    unhealthy = tuple(
        cause.UnhealthyPod(name=p.pod, restarts=3, ready=False, reason=p.reason, revision=p.revision)
        for p in ctx.observed.problems
        if p.reason != "Unschedulable"
    )
    return cause.Symptoms(
        now=ctx.now,
        slo_name=breach.name,
        slo_kind=kind,
        breach_started=cond.parse_time(breach.last_transition_time) if breach.last_transition_time else None,
        current_revision=status.current_revision,
        breached_revision=breach.revision,
        previous_revision=status.previous_revision,
        revision_switched_at=cond.parse_time(status.switched_at) if status.switched_at else None,
        request_rate=traffic.request_rate if traffic else None,
        baseline_request_rate=traffic.baseline_request_rate if traffic else None,
        pending_pods=pending,
        unhealthy_pods=unhealthy,
        per_revision_burn=burns,
    )


async def load_incident(client: kube.Kube, namespace: str, name: str) -> incapi.Incident | None:
    raw = await client.get_custom(incapi.PLURAL, namespace, name)
    if raw is None:
        return None
    try:
        return incapi.Incident.model_validate(raw)
    except pydantic.ValidationError:
        log.exception("incident %s/%s cannot be read; treating it as gone", namespace, name)
        return None


async def write_incident_status(client: kube.Kube, incident: incapi.Incident) -> None:
    meta = incident.metadata
    await client.apply_status(
        incapi.PLURAL, incapi.KIND, str(meta["namespace"]), str(meta["name"]), incident.status.wire()
    )


async def open_incident(
    client: kube.Kube, ctx: Context, status: mdapi.ModelDeploymentStatus, breach: sloapi.SLOStatus
) -> tuple[incapi.Incident, core.Event]:
    """Create (or adopt, after a restart) the Incident for ``breach``; its name is deterministic."""
    diagnosis = cause.diagnose(symptoms(ctx, status, breach))
    md = ctx.md.model_copy(update={"status": status})
    manifest = record.new_incident(md, str(ctx.raw["metadata"]["uid"]), breach, diagnosis, ctx.now)
    name = manifest["metadata"]["name"]
    existing = await load_incident(client, ctx.namespace, name)
    if existing is None:
        body = {k: v for k, v in manifest.items() if k != "status"}
        try:
            await client.create_custom(incapi.PLURAL, ctx.namespace, body)
        except exceptions.ApiException as error:
            if error.status != 409:
                raise
        incident = incapi.Incident.model_validate(manifest)
        await write_incident_status(client, incident)
    else:
        incident = existing
    event = core.Event(
        "Warning",
        "IncidentOpened",
        f"incident {name}: SLO {breach.name} breached on revision {breach.revision}; "
        f"diagnosis {diagnosis.cause}: {diagnosis.summary}",
    )
    return incident, event


async def prune_history(client: kube.Kube, namespace: str, md_name: str) -> None:
    items = await client.list_custom(incapi.PLURAL, namespace, f"{labels.MODEL_DEPLOYMENT}={md_name}")
    rows = [
        (
            str(i["metadata"]["name"]),
            (i.get("status") or {}).get("openedAt"),
            str((i.get("status") or {}).get("phase", incapi.Phase.OPEN.value)),
        )
        for i in items
    ]
    for name in record.prune(rows, HISTORY_LIMIT):
        await client.delete_custom(incapi.PLURAL, namespace, name)


def breached(status: mdapi.ModelDeploymentStatus) -> sloapi.SLOStatus | None:
    return next((s for s in status.slos if s.state is sloapi.SLOState.BREACHED), None)


def slo_state(status: mdapi.ModelDeploymentStatus, name: str) -> sloapi.SLOState | None:
    found = next((s for s in status.slos if s.name == name), None)
    return found.state if found is not None else None


async def tend(
    client: kube.Kube, ctx: Context, status: mdapi.ModelDeploymentStatus
) -> tuple[mdapi.ModelDeploymentStatus, list[core.Event]]:
    """Open, follow and resolve this deployment's incident; returns the md status to write."""
    events: list[core.Event] = []
    status = status.model_copy(deep=True)
    active = await load_incident(client, ctx.namespace, status.active_incident) if status.active_incident else None
    if active is not None and active.status.phase is incapi.Phase.RESOLVED:
        active = None
    if active is None:
        status.active_incident = None
        breach = breached(status)
        if breach is None or not ctx.metrics_available:
            return status, events
        incident, event = await open_incident(client, ctx, status, breach)
        status.active_incident = str(incident.metadata["name"])
        events.append(event)
        await prune_history(client, ctx.namespace, ctx.name)
        return status, events
    status, planned = await run_plan(client, ctx, status, active)
    events += planned
    if not ctx.metrics_available:
        return status, events  # hold: an outage neither opens nor closes an incident
    plan_done = active.status.plan is None or guards.finished(active.status.plan)
    if slo_state(status, active.spec.slo) is sloapi.SLOState.MET and plan_done:
        found = next(s for s in status.slos if s.name == active.spec.slo)
        active.status = record.resolve(active.status, ctx.now, found.sli)
        await write_incident_status(client, active)
        events.append(
            core.Event("Normal", "IncidentResolved", f"incident {active.metadata['name']}: SLO {found.name} met again")
        )
        status.active_incident = None
    return status, events


async def _runbooks(client: kube.Kube, namespace: str) -> list[tuple[str, rbapi.RunbookSpec]]:
    found: list[tuple[str, rbapi.RunbookSpec]] = []
    for item in await client.list_custom(rbapi.PLURAL, namespace):
        try:
            found.append((str(item["metadata"]["name"]), rbapi.RunbookSpec.model_validate(item.get("spec") or {})))
        except pydantic.ValidationError:
            log.warning("runbook %s/%s cannot be read; ignored", namespace, item["metadata"]["name"])
    return found


async def _plan_context(
    client: kube.Kube,
    ctx: Context,
    status: mdapi.ModelDeploymentStatus,
    incident: incapi.Incident,
    done: dict[str, acts.Result],
) -> machine.Context:
    md = ctx.md.model_copy(update={"status": status})
    history = await client.list_custom(incapi.PLURAL, ctx.namespace, f"{labels.MODEL_DEPLOYMENT}={ctx.name}")
    others = [
        incapi.IncidentStatus.model_validate(i.get("status") or {})
        for i in history
        if i["metadata"]["name"] != incident.metadata["name"]
    ]
    cause_ = incident.status.diagnosis.cause if incident.status.diagnosis else rbapi.Cause.UNKNOWN
    unschedulable = sum(1 for p in ctx.observed.problems if p.reason == "Unschedulable")
    free = await client.free_gpus()
    return machine.Context(
        now=ctx.now,
        incident=str(incident.metadata["name"]),
        incident_spec=incident.spec,
        md=md,
        slo_state=slo_state(status, incident.spec.slo),
        metrics_available=ctx.metrics_available,
        cause=cause_,
        capacity=machine.Capacity(
            free_gpus=free, gpus_per_replica=ctx.md.spec.triton.gpus, unschedulable_pods=unschedulable
        ),
        annotations=dict(incident.metadata.get("annotations") or {}),  # type: ignore[call-overload]
        pods=tuple(
            machine.Pod(name=p.name, revision=p.revision, ready=p.ready, failing=p.failing) for p in ctx.observed.pods
        ),
        actions_last_hour=guards.actions_within([*others, incident.status], ctx.now),
        last_plan_ended_at=guards.last_plan_end(others),
        done=done,
    )


async def _execute(
    client: kube.Kube,
    ctx: Context,
    status: mdapi.ModelDeploymentStatus,
    incident: incapi.Incident,
    intent: acts.Intent,
) -> tuple[mdapi.ModelDeploymentStatus, acts.Result]:
    """Carry out one recorded intent. Overrides go into the md status, written at once, so the
    reconcile core turns them into Deployments and the machine can observe them as done."""
    if isinstance(intent, acts.RestartPod):
        deleter: restart.PodDeleter = typing.cast(restart.PodDeleter, client.core_v1)
        return status, await restart.execute(deleter, intent)
    if isinstance(intent, acts.Notify):
        return status, await notify.execute(intent, functools.partial(client.secret_value, ctx.namespace))
    generation = int(ctx.md.metadata.get("generation") or 0)
    updated = acts.override(status, intent, str(incident.metadata["name"]), generation, ctx.now)
    await client.apply_md_status(ctx.namespace, ctx.name, updated)
    return updated, acts.Result(True, f"recorded in status: {acts.describe(intent)}")


async def run_plan(
    client: kube.Kube, ctx: Context, status: mdapi.ModelDeploymentStatus, incident: incapi.Incident
) -> tuple[mdapi.ModelDeploymentStatus, list[core.Event]]:
    """Start the incident's plan if needed and drive it: decide, record the intent, act, confirm."""
    events: list[core.Event] = []
    if incident.status.plan is None:
        cause_ = incident.status.diagnosis.cause if incident.status.diagnosis else rbapi.Cause.UNKNOWN
        name, spec = playbooks.select(await _runbooks(client, ctx.namespace), ctx.md.spec, incident.spec.slo, cause_)
        incident.status.plan = machine.start_plan(name, spec, machine.mode_override(ctx.md.spec), cause_, ctx.now)
    done: dict[str, acts.Result] = {}
    for _ in range(MAX_STEPS_PER_PASS):
        decision = machine.advance(incident.status, await _plan_context(client, ctx, status, incident, done))
        changed = decision.status.wire() != incident.status.wire()
        incident.status = decision.status
        if changed:
            await write_incident_status(client, incident)  # the intent is durable before it is acted on
        events += [core.Event(e.type, e.reason, e.message) for e in decision.events]
        if not decision.intents:
            break
        for intent in decision.intents:
            status, done[intent.key] = await _execute(client, ctx, status, incident, intent)
    return status, events
