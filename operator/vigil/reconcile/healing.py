"""The incident edge: open an Incident on a breach, keep its record, resolve it when the SLO is met.

Runs inside the per-deployment worker, after the reconcile decision and the SLO merge, so a
deployment's status and its Incidents have one writer. The decisions (diagnosis, the record,
the plan) are pure functions elsewhere; this module only gathers their inputs and writes their
outputs. Safety rule 1 lives here: with metrics unavailable nothing is opened or resolved.

Failing safe on what it reads:

* The md's ``runbookRef`` is resolved on every pass (:func:`vigil.act.runbooks.resolve`): a
  reference that is missing, invalid or matches no trigger of the breach makes the plan a dry
  run, and the ``RunbookResolved`` condition (with a Warning Event) says which and why.
* An Incident of the deployment that does not validate is never taken for gone (that would open
  a new one and replay its plan from scratch): the pass holds, acting on nothing, and the
  ``IncidentReadable`` condition (with a Warning Event) names the Incident and the field.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import typing
from collections.abc import Iterable
from typing import Any

import pydantic
from kubernetes.client import exceptions

from vigil import labels
from vigil.act import giveback, guards, headroom, machine, notify, restart, sizing
from vigil.act import intents as acts
from vigil.act import runbooks as playbooks
from vigil.api import conditions as cond
from vigil.api import incident as incapi
from vigil.api import modeldeployment as mdapi
from vigil.api import runbook as rbapi
from vigil.api import slo as sloapi
from vigil.diagnose import cause
from vigil.diagnose import pods as podfacts
from vigil.observe import slo
from vigil.reconcile import core, kube
from vigil.record import incidents as record

log = logging.getLogger("vigil.healing")
HISTORY_LIMIT = 10
MAX_STEPS_PER_PASS = 6
RUNBOOK_RESOLVED = "RunbookResolved"
INCIDENT_READABLE = "IncidentReadable"
RUNBOOK_UNRESOLVED = "RunbookUnresolved"  # timeline entry: the plan is a dry run because of the runbookRef


class UnreadableIncident(Exception):
    """An Incident of the deployment exists but does not validate: hold, never re-create it."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"Incident {name} cannot be read: {problem}")
        self.name = name
        self.problem = problem


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
        rate_window_seconds=traffic.windows.current_seconds if traffic and traffic.windows else None,
        baseline_window_seconds=traffic.windows.baseline_seconds if traffic and traffic.windows else None,
        windows_capped=bool(traffic and traffic.windows and traffic.windows.capped),
        queue_growth=traffic.queue_growth if traffic else None,
        busy=_busy(traffic, ctx.observed.pods, breach.revision),
        pods=ctx.observed.pods,
        per_revision_burn=burns,
    )


def _busy(traffic: slo.Traffic | None, pods: tuple[podfacts.PodFacts, ...], revision: str | None) -> float | None:
    """The revision's mean GPU utilisation: its busy replicas over its ready pods (None: unknown)."""
    if traffic is None or traffic.busy_replicas is None:
        return None
    ready = sum(1 for p in pods if p.ready and p.revision in (revision, None))
    return traffic.busy_replicas / ready if ready else None


def parse_incident(raw: dict[str, Any]) -> incapi.Incident:
    """An Incident as read from the API server; :class:`UnreadableIncident` names the failing fields."""
    try:
        return incapi.Incident.model_validate(raw)
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in issue['loc'])}: {issue['msg']}" for issue in error.errors(include_url=False)
        )
        raise UnreadableIncident(str((raw.get("metadata") or {}).get("name")), problems) from error


async def load_incident(client: kube.Kube, namespace: str, name: str) -> incapi.Incident | None:
    """The Incident ``name``, None if it does not exist; raises :class:`UnreadableIncident`."""
    raw = await client.get_custom(incapi.PLURAL, namespace, name)
    return parse_incident(raw) if raw is not None else None


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
    incident = await _create_or_adopt(client, ctx, manifest, breach.name, incapi.Trigger.BREACH)
    event = core.Event(
        "Warning",
        "IncidentOpened",
        f"incident {incident.metadata['name']}: SLO {breach.name} breached on revision {breach.revision}; "
        f"diagnosis {diagnosis.cause}: {diagnosis.summary}",
    )
    return incident, event


async def open_headroom(
    client: kube.Kube, ctx: Context, status: mdapi.ModelDeploymentStatus, scale: headroom.Scale, runbook: str
) -> tuple[incapi.Incident, core.Event]:
    """Create (or adopt, after a restart) a headroom Incident whose plan scales out ahead of a breach."""
    md = ctx.md.model_copy(update={"status": status})
    plan = machine.start_plan(
        runbook,
        scale.spec,
        machine.mode_override(ctx.md.spec),
        rbapi.Cause.LOAD_SURGE,
        ctx.now,
        revision=status.desired_revision,
    )
    manifest = record.new_headroom_incident(
        md, str(ctx.raw["metadata"]["uid"]), scale.slo, scale.summary(), scale.sized, plan, ctx.now
    )
    incident = await _create_or_adopt(client, ctx, manifest, scale.slo, incapi.Trigger.HEADROOM)
    event = core.Event(
        "Normal",
        "HeadroomScaleOut",
        f"incident {incident.metadata['name']}: scaling out ahead of a breach of SLO {scale.slo}: {scale.summary()}",
    )
    return incident, event


async def _create_or_adopt(
    client: kube.Kube, ctx: Context, manifest: dict[str, Any], slo_name: str, trigger: incapi.Trigger
) -> incapi.Incident:
    orphan = await _unrecorded(client, ctx, slo_name, trigger)
    if orphan is not None:
        manifest["metadata"]["name"] = orphan  # its name was recomputed after a crash: same incident
    name = manifest["metadata"]["name"]
    existing = await load_incident(client, ctx.namespace, name)
    if existing is not None and existing.status.opened_at is not None:
        return existing  # adopted after a restart
    if existing is None:
        body = {k: v for k, v in manifest.items() if k != "status"}
        try:
            await client.create_custom(incapi.PLURAL, ctx.namespace, body)
        except exceptions.ApiException as error:
            if error.status != 409:
                raise
    # Created, but its first status write may have been lost: the record starts here either way.
    incident = incapi.Incident.model_validate(manifest)
    await write_incident_status(client, incident)
    return incident


async def _unrecorded(
    client: kube.Kube, ctx: Context, slo_name: str, trigger: incapi.Trigger = incapi.Trigger.BREACH
) -> str | None:
    """An unresolved Incident of this deployment, SLO and trigger that ``status.activeIncident`` does not name.

    Only a crash leaves one: the Incident was created, then the operator died before the
    deployment's status (the breach's start, which names the Incident) was written. The next
    operator computes another start, hence another name; without this it would open a second
    Incident and run the plan again, leaving the first open forever. A headroom Incident is never
    taken for a breach's (nor the other way round): their plans differ.
    """
    return _latest_unresolved(await _incidents(client, ctx), trigger, slo_name)


def _latest_unresolved(
    incidents: Iterable[incapi.Incident], trigger: incapi.Trigger, slo_name: str | None = None
) -> str | None:
    """The latest opened unresolved Incident of ``incidents`` with ``trigger`` (and SLO, if given)."""
    open_ones = [
        (found.status.opened_at or "", str(found.metadata["name"]))
        for found in incidents
        if found.spec.trigger is trigger
        and (slo_name is None or found.spec.slo == slo_name)
        and found.status.phase is not incapi.Phase.RESOLVED
    ]
    return max(open_ones)[1] if open_ones else None


async def prune_history(client: kube.Kube, namespace: str, md_name: str, keep: frozenset[str] = frozenset()) -> None:
    """Delete resolved Incidents beyond the newest few; never one in ``keep`` (it is still giving back)."""
    items = await client.list_custom(incapi.PLURAL, namespace, f"{labels.MODEL_DEPLOYMENT}={md_name}")
    rows = [
        (
            str(i["metadata"]["name"]),
            (i.get("status") or {}).get("openedAt"),
            str((i.get("status") or {}).get("phase", incapi.Phase.OPEN.value)),
        )
        for i in items
        if str(i["metadata"]["name"]) not in keep
    ]
    for name in record.prune(rows, HISTORY_LIMIT):
        await client.delete_custom(incapi.PLURAL, namespace, name)


def breached(status: mdapi.ModelDeploymentStatus) -> sloapi.SLOStatus | None:
    return next((s for s in status.slos if s.state is sloapi.SLOState.BREACHED), None)


def slo_status(status: mdapi.ModelDeploymentStatus, name: str) -> sloapi.SLOStatus | None:
    return next((s for s in status.slos if s.name == name), None)


def slo_state(status: mdapi.ModelDeploymentStatus, name: str) -> sloapi.SLOState | None:
    found = slo_status(status, name)
    return found.state if found is not None else None


def _condition(
    ctx: Context,
    status: mdapi.ModelDeploymentStatus,
    type_: str,
    ok: bool,
    reason: str,
    message: str,
    *,
    warn: bool | None = None,
) -> list[core.Event]:
    """Set a condition on the md status; an Event when its status or reason changes, a Warning when
    ``warn`` (default: when not ``ok``)."""
    old = cond.find(status.conditions, type_)
    value = cond.ConditionStatus.TRUE if ok else cond.ConditionStatus.FALSE
    generation = int(ctx.md.metadata.get("generation") or 0)
    status.conditions, flipped = cond.set_condition(
        status.conditions, type_, value, reason, message, generation, ctx.now
    )
    if not flipped and old is not None and old.reason == reason:
        return []
    warning = not ok if warn is None else warn
    return [core.Event("Warning" if warning else "Normal", f"{type_}{value.value}", message)]


async def resolve_runbook(client: kube.Kube, ctx: Context, breach: playbooks.Breach | None) -> playbooks.Resolution:
    """Read the md's ``runbookRef`` (if any) and resolve it for ``breach``."""
    ref = ctx.md.spec.runbook_ref
    if ref is None:
        return playbooks.resolve(None, None, breach)
    raw = await client.get_custom(rbapi.PLURAL, ctx.namespace, ref.name)
    found = playbooks.parse(ref.name, raw.get("spec")) if raw is not None else None
    return playbooks.resolve(ref.name, found, breach)


def _runbook_condition(
    ctx: Context, status: mdapi.ModelDeploymentStatus, resolution: playbooks.Resolution
) -> list[core.Event]:
    """``RunbookResolved``: set for every md with a runbookRef, and kept honest once one is removed."""
    if resolution.reason is playbooks.Reason.BUILTIN_DEFAULT and cond.find(status.conditions, RUNBOOK_RESOLVED) is None:
        return []
    return _condition(ctx, status, RUNBOOK_RESOLVED, resolution.usable, resolution.reason, resolution.message)


def _breach_of(incident: incapi.Incident) -> playbooks.Breach:
    cause_ = incident.status.diagnosis.cause if incident.status.diagnosis else rbapi.Cause.UNKNOWN
    return playbooks.Breach(slo=incident.spec.slo, cause=cause_)


async def tend(
    client: kube.Kube, ctx: Context, status: mdapi.ModelDeploymentStatus
) -> tuple[mdapi.ModelDeploymentStatus, list[core.Event]]:
    """Open, follow and resolve this deployment's incident; returns the md status to write.

    An unreadable Incident holds the pass (see the module docstring). Every read that can find
    one runs before the pass writes or acts, so a hold never leaves an action half recorded.
    """
    if _nothing_to_tend(ctx, status):
        return status, []  # almost every pass: nothing to read, write or copy
    draft = status.model_copy(deep=True)
    events: list[core.Event] = []
    try:
        draft, events = await give_back(client, ctx, draft)
        draft, events = await _tend(client, ctx, draft, events)
    except UnreadableIncident as unreadable:
        log.warning("%s/%s: %s; holding", ctx.namespace, ctx.name, unreadable)
        message = (
            f"{unreadable}; holding: no new incident and no action for this deployment until it is repaired or deleted"
        )
        events += _condition(ctx, draft, INCIDENT_READABLE, False, "Unreadable", message)
        return draft, events
    if cond.find(draft.conditions, INCIDENT_READABLE) is not None:
        events += _condition(ctx, draft, INCIDENT_READABLE, True, "Readable", "the Incidents of this deployment read")
    return draft, events


def _nothing_to_tend(ctx: Context, status: mdapi.ModelDeploymentStatus) -> bool:
    """No incident, breach, give-back, runbookRef or headroom opt-in, and none of this module's
    conditions to keep honest: a pass of :func:`tend` would read nothing (the built-in default runbook) and change nothing."""
    return (
        status.active_incident is None
        and not status.giving_back
        and not giveback.holders(status)
        and breached(status) is None
        and ctx.md.spec.runbook_ref is None
        and not ctx.md.spec.headroom.enabled
        and cond.find(status.conditions, RUNBOOK_RESOLVED) is None
        and cond.find(status.conditions, INCIDENT_READABLE) is None
        and cond.find(status.conditions, headroom.CONDITION) is None
    )


async def _tend(
    client: kube.Kube, ctx: Context, status: mdapi.ModelDeploymentStatus, events: list[core.Event]
) -> tuple[mdapi.ModelDeploymentStatus, list[core.Event]]:
    active = await load_incident(client, ctx.namespace, status.active_incident) if status.active_incident else None
    if active is not None and active.status.phase is incapi.Phase.RESOLVED:
        active = None
    if active is not None and active.spec.ahead and ctx.metrics_available:
        breach = breached(status)
        if breach is not None:  # too late to be ahead: the breach gets its own incident and runbook, now
            reason = f"SLO {breach.name} breached: the breach opens its own incident"
            ended = machine.end_ahead(active.status, ctx.now, f"plan cancelled: {reason}")
            active.status = record.close(ended, ctx.now, reason)
            await write_incident_status(client, active)
            events.append(core.Event("Normal", "HeadroomEnded", f"incident {active.metadata['name']}: {reason}"))
            active = None
    if active is None:
        status.active_incident = None
        breach = breached(status)
        if breach is None or not ctx.metrics_available:
            events += _runbook_condition(ctx, status, await resolve_runbook(client, ctx, None))
            events += await _headroom(client, ctx, status) if breach is None else _headroom_held(ctx, status)
            return status, events
        incident, event = await open_incident(client, ctx, status, breach)
        status.active_incident = str(incident.metadata["name"])
        events.append(event)
        events += _runbook_condition(ctx, status, await resolve_runbook(client, ctx, _breach_of(incident)))
        events += _headroom_held(ctx, status)
        keep = frozenset([*giveback.holders(status), *status.giving_back])
        await prune_history(client, ctx.namespace, ctx.name, keep)
        return status, events
    if not active.spec.ahead:
        events += _headroom_held(ctx, status)  # a headroom Incident's own plan keeps ScalingOut
    rediagnosed = rediagnose(ctx, status, active)
    if rediagnosed is not None:
        active, event = rediagnosed
        await write_incident_status(client, active)  # the new diagnosis is durable before its plan starts
        events.append(event)
    resolution = await resolve_runbook(client, ctx, _breach_of(active))
    events += _runbook_condition(ctx, status, resolution)
    status, planned = await run_plan(client, ctx, status, active, resolution)
    events += planned
    if not ctx.metrics_available:
        return status, events  # hold: an outage neither opens nor closes an incident
    plan_done = active.status.plan is None or guards.finished(active.status.plan)
    if active.spec.ahead and plan_done:
        found = slo_status(status, active.spec.slo)
        state = found.state if found is not None else None
        message = f"plan over, SLO {active.spec.slo} {state}: ahead of any breach"
        active.status = record.close(active.status, ctx.now, message)
        await write_incident_status(client, active)
        events.append(core.Event("Normal", "IncidentResolved", f"incident {active.metadata['name']}: {message}"))
        status.active_incident = None
        return status, events
    if slo_state(status, active.spec.slo) is sloapi.SLOState.MET and plan_done:
        found = next(s for s in status.slos if s.name == active.spec.slo)
        active.status = record.resolve(active.status, ctx.now, found.sli)
        await write_incident_status(client, active)
        events.append(
            core.Event("Normal", "IncidentResolved", f"incident {active.metadata['name']}: SLO {found.name} met again")
        )
        status.active_incident = None
    return status, events


def _headroom_held(ctx: Context, status: mdapi.ModelDeploymentStatus) -> list[core.Event]:
    """The ``Headroom`` condition of a pass that runs an incident or sees a breach: holding, and why
    (the incident, the outage), so it never stays Armed while nothing may scale ahead."""
    held = headroom.holding(ctx.md.model_copy(update={"status": status}), ctx.metrics_available)
    kept = cond.find(status.conditions, headroom.CONDITION)
    if held is None or (kept is not None and kept.reason == headroom.NO_STEP):
        return []  # no step to size with outlasts any incident: its Warning is not posted again after each
    return _condition(ctx, status, headroom.CONDITION, held.ok, held.reason, held.message, warn=False)


async def _headroom(client: kube.Kube, ctx: Context, status: mdapi.ModelDeploymentStatus) -> list[core.Event]:
    """Scale out ahead of a breach when the deployment opts in and the rising demand needs it
    (:mod:`vigil.act.headroom`); keeps the ``Headroom`` condition. Runs only with no incident open
    and no SLO Breached."""
    if not ctx.md.spec.headroom.enabled:
        if cond.find(status.conditions, headroom.CONDITION) is None:
            return []
        message = "spec.headroom.enabled is false"
        return _condition(ctx, status, headroom.CONDITION, False, headroom.DISABLED, message, warn=False)
    incidents = await _incidents(client, ctx)
    # A headroom Incident this status does not name: opened by a pass whose status write (or what
    # came between) failed, or by an operator killed right after. Adopted whatever the demand
    # says now, so it runs (or closes as no longer needed) instead of staying open and, as an
    # Incident opened without acting, holding the next scale-out ahead for a cooldown.
    orphan = _latest_unresolved(incidents, incapi.Trigger.HEADROOM)
    if orphan is not None:
        status.active_incident = orphan
        return []
    md = ctx.md.model_copy(update={"status": status})
    slo = headroom.slo_for(md)
    resolution = await resolve_runbook(client, ctx, playbooks.Breach(slo or "", rbapi.Cause.LOAD_SURGE))
    runbook: tuple[str, rbapi.RunbookSpec] | str = (
        (resolution.runbook, resolution.spec) if resolution.usable and resolution.mode is None else resolution.message
    )
    unschedulable = sum(1 for p in ctx.observed.pods if cause.unschedulable(p))
    decision = headroom.decide(
        md,
        runbook,
        demand(ctx, status.current_revision),
        incidents,
        metrics_available=ctx.metrics_available,
        unschedulable_pods=unschedulable,
        now=ctx.now,
    )
    if decision is None:
        return []
    if decision.scale is not None:
        decision = headroom.capacity_hold(decision, await client.free_gpus(), ctx.md.spec.triton.gpus)
    # Holding is routine (a cooldown, the ceiling): a Warning only when no step can ever scale ahead.
    warn = decision.reason == headroom.NO_STEP
    events = _condition(ctx, status, headroom.CONDITION, decision.ok, decision.reason, decision.message, warn=warn)
    if decision.scale is None:
        return events
    incident, event = await open_headroom(client, ctx, status, decision.scale, resolution.runbook)
    status.active_incident = str(incident.metadata["name"])
    events.append(event)
    keep = frozenset([*giveback.holders(status), *status.giving_back])
    await prune_history(client, ctx.namespace, ctx.name, keep)
    return events


def rediagnose(
    ctx: Context, status: mdapi.ModelDeploymentStatus, incident: incapi.Incident
) -> tuple[incapi.Incident, core.Event] | None:
    """A breach first diagnosed ``Unknown`` is looked at again while it lasts; once a cause shows,
    the incident gets the new diagnosis and a fresh plan (``None``: nothing changes).

    A breach is opened the moment its short window crosses the threshold, when the request-rate
    windows still mostly hold the traffic from before it: a surge that breached within seconds
    may read as no surge yet. Only a plan that took no cluster action is replaced (a dry run, or
    an escalation that only notified), so nothing is done twice; the timeline keeps both.
    """
    record_ = incident.status
    if record_.diagnosis is not None and record_.diagnosis.cause is not rbapi.Cause.UNKNOWN:
        return None
    if record_.plan is not None and guards.acted(record_.plan):
        return None
    if not ctx.metrics_available or slo_state(status, incident.spec.slo) is not sloapi.SLOState.BREACHED:
        return None
    breach = slo_status(status, incident.spec.slo)
    assert breach is not None
    diagnosis = cause.diagnose(symptoms(ctx, status, breach))
    if diagnosis.cause is rbapi.Cause.UNKNOWN:
        return None
    updated = record_.model_copy(deep=True)
    updated.diagnosis = diagnosis
    updated.plan = None
    updated.phase = incapi.Phase.OPEN
    opened = cond.parse_time(record_.opened_at) if record_.opened_at else ctx.now
    after = sloapi.format_duration(max((ctx.now - opened).total_seconds(), 1.0))
    message = f"{diagnosis.cause} {after} into the breach (first found no cause): {diagnosis.summary}"
    updated = record.append(updated, record.DIAGNOSED, message, ctx.now)
    name = str(incident.metadata["name"])
    event = core.Event("Warning", "IncidentRediagnosed", f"incident {name}: {message}")
    return incident.model_copy(update={"status": updated}), event


async def give_back(
    client: kube.Kube, ctx: Context, status: mdapi.ModelDeploymentStatus
) -> tuple[mdapi.ModelDeploymentStatus, list[core.Event]]:
    """Drive the give-back of every incident that holds an override or is still giving back.

    Runs before incidents are opened or followed in the same pass, so a step that degraded the
    SLO is restored (and recorded in its own incident) before a new breach is acted on.
    """
    events: list[core.Event] = []
    for name in dict.fromkeys([*giveback.holders(status), *status.giving_back]):
        incident = await load_incident(client, ctx.namespace, name)
        if incident is None:  # deleted by someone: no record to keep; the override stays until a new spec
            status.giving_back = [n for n in status.giving_back if n != name]
            continue
        status, more = await _give_back_one(client, ctx, status, incident)
        events += more
    return status, events


async def _give_back_one(
    client: kube.Kube, ctx: Context, status: mdapi.ModelDeploymentStatus, incident: incapi.Incident
) -> tuple[mdapi.ModelDeploymentStatus, list[core.Event]]:
    name = str(incident.metadata["name"])
    other = status.active_incident if status.active_incident not in (None, name) else None
    events: list[core.Event] = []
    done: dict[str, acts.Result] = {}
    for _ in range(MAX_STEPS_PER_PASS):
        context = giveback.Context(
            now=ctx.now,
            incident=name,
            incident_status=incident.status,
            md=ctx.md.model_copy(update={"status": status}),
            metrics_available=ctx.metrics_available,
            other_incident=other,
            done=done,
            demand=demand(ctx, status.current_revision),
        )
        decision = giveback.advance(incident.status.give_back, context)
        updated = incident.status.model_copy(
            update={
                "give_back": decision.record,
                "timeline": record.bounded([*incident.status.timeline, *decision.entries], incapi.TIMELINE_LIMIT),
            }
        )
        if updated.wire() != incident.status.wire():
            incident.status = updated
            await write_incident_status(client, incident)  # the intent is durable before it is acted on
        events += [core.Event(e.type, e.reason, e.message) for e in decision.events]
        if not decision.intents:
            break
        for intent in decision.intents:
            log.info("incident %s: give back: %s", name, acts.describe(intent))
            status, done[intent.key] = await _execute(client, ctx, status, incident, intent)
    result = incident.status.give_back
    status = freshen(status, name, giveback.judged_from(result))
    underway = result is not None and (result.phase not in giveback.TERMINAL or giveback.waiting_to_retry(result))
    status.giving_back = [n for n in status.giving_back if n != name] + ([name] if underway else [])
    found = giveback.condition(result, name)
    if found is not None:
        value, reason, message = found
        generation = int(ctx.md.metadata.get("generation") or 0)
        status.conditions, _ = cond.set_condition(
            status.conditions, giveback.CONDITION, value, reason, message, generation, ctx.now
        )
    return status, events


async def _incidents(client: kube.Kube, ctx: Context) -> list[incapi.Incident]:
    """Every Incident of the deployment; any unreadable one holds (:class:`UnreadableIncident`)."""
    history = await client.list_custom(incapi.PLURAL, ctx.namespace, f"{labels.MODEL_DEPLOYMENT}={ctx.name}")
    return [parse_incident(i) for i in history]


async def _others(client: kube.Kube, ctx: Context, incident: incapi.Incident) -> list[incapi.Incident]:
    """The deployment's other Incidents (for the guards); any unreadable one holds."""
    return [i for i in await _incidents(client, ctx) if i.metadata["name"] != incident.metadata["name"]]


async def _plan_context(
    client: kube.Kube,
    ctx: Context,
    status: mdapi.ModelDeploymentStatus,
    incident: incapi.Incident,
    others: list[incapi.Incident],
    done: dict[str, acts.Result],
) -> machine.Context:
    """The machine's view; a breach's plan is not held by the cooldown of a headroom plan (it only
    added replicas ahead of the breach: nothing to let settle), a headroom plan by every plan's."""
    md = ctx.md.model_copy(update={"status": status})
    statuses = [i.status for i in others]
    settling = statuses if incident.spec.ahead else [i.status for i in others if not i.spec.ahead]
    cause_ = incident.status.diagnosis.cause if incident.status.diagnosis else rbapi.Cause.UNKNOWN
    unschedulable = sum(1 for p in ctx.observed.pods if cause.unschedulable(p))
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
            machine.Pod(name=p.name, revision=p.revision, ready=p.ready, failing=cause.failing(p, ctx.now))
            for p in ctx.observed.pods
        ),
        actions_last_hour=guards.actions_within([*statuses, incident.status], ctx.now),
        last_plan_ended_at=guards.last_plan_end(settling),
        last_plan_met_since=guards.last_plan_met_since(settling),
        done=done,
        judged=machine.Judged.of(slo_status(status, incident.spec.slo)),
        demand=demand(ctx, incident.spec.revision or status.current_revision),
    )


def demand(ctx: Context, revision: str | None) -> sizing.Demand | None:
    """``revision``'s measured load from this cycle's fleet report (None: not in it)."""
    if ctx.report is None or not ctx.metrics_available:
        return None
    found = next((r for r in ctx.report.revisions if r.revision == revision), None)
    if found is None:
        return None
    traffic = found.traffic
    windows = traffic.windows
    # The baseline window before the current one ends where it begins: their middles lie half
    # the baseline window apart.
    baseline = windows.baseline_seconds if windows is not None and windows.before() is not None else None
    lag = baseline / 2 if baseline is not None else None
    return sizing.Demand(
        request_rate=traffic.request_rate,
        busy_replicas=traffic.busy_replicas,
        queue_growth=traffic.queue_growth,
        window_seconds=windows.current_seconds if windows is not None else None,
        baseline_rate=traffic.baseline_request_rate if lag is not None else None,
        baseline_lag_seconds=lag,
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
    client.fence()  # only the lease holder acts; checked right before each side effect
    if isinstance(intent, acts.RestartPod):
        deleter: restart.PodDeleter = typing.cast(restart.PodDeleter, client.pod_deleter)
        return status, await restart.execute(deleter, intent)
    if isinstance(intent, acts.Notify):
        return status, await notify.execute(intent, functools.partial(client.secret_value, ctx.namespace))
    generation = int(ctx.md.metadata.get("generation") or 0)
    updated = acts.override(status, intent, str(incident.metadata["name"]), generation, ctx.now)
    await client.apply_md_status(ctx.namespace, ctx.name, updated)
    return updated, acts.Result(True, f"recorded in status: {acts.describe(intent)}")


async def run_plan(
    client: kube.Kube,
    ctx: Context,
    status: mdapi.ModelDeploymentStatus,
    incident: incapi.Incident,
    resolution: playbooks.Resolution | None = None,
) -> tuple[mdapi.ModelDeploymentStatus, list[core.Event]]:
    """Start the incident's plan if needed and drive it: decide, record the intent, act, confirm.

    ``resolution`` is the md's runbook for this incident (resolved here when not given); an
    unusable one starts the plan as a dry run, and the timeline says why.
    """
    events: list[core.Event] = []
    others = await _others(client, ctx, incident)  # before anything is done: an unreadable one holds
    if incident.status.plan is None:
        breach = _breach_of(incident)
        if resolution is None:
            resolution = await resolve_runbook(client, ctx, breach)
        mode = resolution.mode or machine.mode_override(ctx.md.spec)
        spec = resolution.spec
        if incident.spec.ahead:  # born with its plan; this rebuilds one lost with its first write
            spec = headroom.plan_spec(spec) or spec
        incident.status.plan = machine.start_plan(
            resolution.runbook, spec, mode, breach.cause, ctx.now, revision=status.desired_revision
        )
        if not resolution.usable:
            incident.status = record.append(incident.status, RUNBOOK_UNRESOLVED, resolution.message, ctx.now)
    done: dict[str, acts.Result] = {}
    for _ in range(MAX_STEPS_PER_PASS):
        context = await _plan_context(client, ctx, status, incident, others, done)
        decision = machine.advance(incident.status, context)
        changed = decision.status.wire() != incident.status.wire()
        incident.status = decision.status
        if changed:
            await write_incident_status(client, incident)  # the intent is durable before it is acted on
        events += [core.Event(e.type, e.reason, e.message) for e in decision.events]
        if not decision.intents:
            break
        for intent in decision.intents:
            log.info("incident %s: %s", incident.metadata["name"], acts.describe(intent))
            status, done[intent.key] = await _execute(client, ctx, status, incident, intent)
            outcome = done[intent.key]
            log.info(
                "incident %s: %s: %s", incident.metadata["name"], "done" if outcome.ok else "failed", outcome.message
            )
    return fresh_data(status, incident), events


def fresh_data(status: mdapi.ModelDeploymentStatus, incident: incapi.Incident) -> mdapi.ModelDeploymentStatus:
    """``status`` with ``freshData`` moved to the incident's latest ``judgedFrom``, if that is newer.

    The fleet caps the deployment's SLO windows to it (see :func:`vigil.reconcile.operator.serving_revisions`),
    so the verdict the step waits for reads only data from after its action took effect.
    It only moves forward, and stays after the incident: windows outgrow it by themselves.
    """
    return freshen(status, str(incident.metadata["name"]), machine.judged_from(incident.status))


def freshen(
    status: mdapi.ModelDeploymentStatus, incident: str, latest: tuple[str, str] | None
) -> mdapi.ModelDeploymentStatus:
    """``status`` with ``freshData`` moved to ``latest`` (judgedFrom, step) of ``incident``, if newer."""
    if latest is None:
        return status
    since, step = latest
    current = status.fresh_data
    if current is not None and cond.parse_time(current.since) >= cond.parse_time(since):
        return status
    updated = status.model_copy(deep=True)
    updated.fresh_data = mdapi.FreshData(since=since, incident=incident, step=step)
    return updated
