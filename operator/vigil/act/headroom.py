"""Headroom: scale out before an SLO breaches, when the rising demand needs it (opt-in).

A healer that acts on breaches scales out only after users waited: the SLO's window has to fill
with bad data, then the new pods have to start. An HPA scales on utilisation and is often there
first. A ModelDeployment with ``spec.headroom.enabled`` gets the same foresight from the demand the
fleet loop already measures every cycle (served rate plus the queue's growth, per busy replica:
:mod:`vigil.act.sizing`), without giving up any of the rules an incident's actions follow:

* **When**: no incident is open, the deployment is not paused, metrics are available, every SLO
  is Met or Warning (none Breached, none without a verdict), no give-back is returning a step,
  the runbook's guards allow an action (cooldown after the last plan that acted,
  ``maxActionsPerHour``), no headroom Incident opened within the cooldown, the replicas are
  below the step's ceiling with no unschedulable pod, and the demand now (at the end of its
  window) is rising and needs more replicas than run at the step's ``targetUtilization``, by more
  than the HPA's 10 % tolerance (:func:`vigil.act.sizing.outgrows`).
* **How**: the runbook's first ``scaleOut`` step with ``targetUtilization`` that runs for
  ``LoadSurge`` (the step a surge's breach would run), alone and moving on when it fails (no
  escalation, no traffic shift before a breach): :func:`plan_spec`. It runs in an Incident with
  ``spec.trigger: Headroom`` (the SLO it protects in ``spec.slo``), so the intent is recorded
  before it is acted on and a restarted operator replays it exactly once, and the give-back
  returns the replicas once the demand no longer needs them: it scales in no lower than the
  demand's need at the same utilisation, which this trigger exceeds only by the tolerance.
* **Not**: a breach ends a headroom Incident at once (the breach opens its own, with the full
  runbook for its diagnosed cause, unheld by the headroom plan's cooldown); a headroom plan never
  escalates.

Pure: :func:`decide` maps what the worker read to a :class:`Decision`; the worker opens the
Incident and keeps the ``Headroom`` condition (:data:`CONDITION`) on the ModelDeployment.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence

from vigil.act import guards, machine, sizing
from vigil.api import conditions as cond
from vigil.api import incident as incapi
from vigil.api import modeldeployment as mdapi
from vigil.api import runbook as rbapi
from vigil.api import slo as sloapi

CONDITION = "Headroom"
ARMED = "Armed"
SCALING_OUT = "ScalingOut"
HOLDING = "Holding"
NO_STEP = "NoScaleOutStep"
DISABLED = "Disabled"

_JUDGED = frozenset({sloapi.SLOState.MET, sloapi.SLOState.WARNING})
_LOAD_KINDS = (sloapi.SLOKind.QUEUE_TIME, sloapi.SLOKind.LATENCY)


@dataclasses.dataclass(frozen=True)
class Scale:
    """Open a headroom Incident for ``slo`` whose plan runs ``spec`` (one step): ``sized`` asks for more than ``running``."""

    slo: str
    spec: rbapi.RunbookSpec
    sized: sizing.Sized
    running: int

    def summary(self) -> str:
        return f"no SLO breached, but the rising {self.sized} ({self.running} running)"


@dataclasses.dataclass(frozen=True)
class Decision:
    """The ``Headroom`` condition (``ok``, ``reason``, ``message``: messages stay constant while a
    reason lasts, so the condition is not rewritten every cycle) and, maybe, a scale-out to open."""

    ok: bool
    reason: str
    message: str
    scale: Scale | None = None


def step_of(spec: rbapi.RunbookSpec) -> rbapi.Step | None:
    """The runbook's first ``scaleOut`` step with ``targetUtilization`` that runs for ``LoadSurge``."""
    return next(
        (
            s
            for s in spec.steps
            if s.action is rbapi.Action.SCALE_OUT
            and s.params.target_utilization is not None
            and (not s.when.causes or rbapi.Cause.LOAD_SURGE in s.when.causes)
        ),
        None,
    )


def plan_spec(spec: rbapi.RunbookSpec) -> rbapi.RunbookSpec | None:
    """The runbook a headroom plan runs: its :func:`step_of` alone, moving on when it fails (there
    is nothing after it: the plan ends without escalating), with the runbook's mode, triggers and
    guards. None: the runbook has no such step."""
    step = step_of(spec)
    if step is None:
        return None
    only = step.model_copy(update={"when": rbapi.StepWhen(), "on_failure": rbapi.OnFailure.NEXT}, deep=True)
    return spec.model_copy(update={"steps": [only]}, deep=True)


def slo_for(md: mdapi.ModelDeployment) -> str | None:
    """The SLO a headroom Incident protects (names it): the first queue-time or latency SLO, the
    ones a rising load breaches first; else the first SLO (None: the deployment has none)."""
    slos = md.spec.slos
    loaded = next((s for s in slos if s.kind in _LOAD_KINDS), None)
    chosen = loaded or (slos[0] if slos else None)
    return chosen.name if chosen is not None else None


def is_headroom(spec: incapi.IncidentSpec) -> bool:
    return spec.trigger is incapi.Trigger.HEADROOM


def decide(
    md: mdapi.ModelDeployment,
    runbook: tuple[str, rbapi.RunbookSpec] | str,
    demand: sizing.Demand | None,
    incidents: Sequence[incapi.Incident],
    *,
    metrics_available: bool,
    unschedulable_pods: int,
    now: datetime.datetime,
) -> Decision | None:
    """Whether to scale ``md`` out ahead of a breach now (see the module docstring); None: not opted in.

    ``runbook``: the runbook a LoadSurge breach of the protected SLO would run (name, spec), or why
    there is none usable; ``incidents``: every Incident of the deployment (guards and give-backs);
    ``demand``: the serving revision's measured load this cycle.
    """
    if not md.spec.headroom.enabled:
        return None
    if isinstance(runbook, str):
        return Decision(False, NO_STEP, f"no scale-out ahead of a breach: {runbook}")
    name, spec = runbook
    step = step_of(spec)
    if step is None or step.params.target_utilization is None:
        return Decision(
            False, NO_STEP, f"runbook {name} has no scaleOut step with targetUtilization for LoadSurge: nothing to size"
        )
    target = step.params.target_utilization
    hold = _held(md, spec, step, incidents, metrics_available, unschedulable_pods, now)
    if hold is not None:
        return Decision(False, HOLDING, f"holding: {hold}")
    armed = (
        f"armed: scales out before a breach once the rising demand needs more replicas than run at {target}% "
        f"utilisation (runbook {name}, step {step.name})"
    )
    slo = slo_for(md)
    running = machine.wanted_replicas(md)
    sized = sizing.outgrows(demand, target, running)
    if slo is None or isinstance(sized, str):
        return Decision(True, ARMED, armed)
    only = plan_spec(spec)
    assert only is not None  # step_of found the step it keeps
    scale = Scale(slo=slo, spec=only, sized=sized, running=running)
    return Decision(True, SCALING_OUT, f"scaling out ahead of a breach: {scale.summary()}", scale)


def _held(
    md: mdapi.ModelDeployment,
    spec: rbapi.RunbookSpec,
    step: rbapi.Step,
    incidents: Sequence[incapi.Incident],
    metrics_available: bool,
    unschedulable_pods: int,
    now: datetime.datetime,
) -> str | None:
    """Why no headroom scale-out may start now (constant while it lasts), or None."""
    status = md.status
    if md.spec.paused:
        return "the deployment is paused (spec.paused)"
    if status.active_incident is not None:
        return f"incident {status.active_incident} is open"
    if not metrics_available:
        return "metrics unavailable"
    if not status.slos:
        return "no SLO verdict yet"
    unjudged = [f"SLO {s.name} {s.state}" for s in status.slos if s.state not in _JUDGED]
    if unjudged:
        return ", ".join(unjudged)
    returning = [
        str(i.metadata.get("name"))
        for i in incidents
        if i.status.give_back is not None and i.status.give_back.phase is incapi.GiveBackPhase.RETURNING
    ]
    if returning:
        return f"incident {returning[0]} is giving back a step"
    cooldown = datetime.timedelta(seconds=sloapi.duration_seconds(spec.guards.cooldown))
    last = _last_headroom(incidents)
    if last is not None and now < last[0] + cooldown:
        return (
            f"headroom incident {last[1]} opened {cond.rfc3339(last[0])}: at most one per cooldown "
            f"{spec.guards.cooldown}, until {cond.rfc3339(last[0] + cooldown)}"
        )
    statuses = [i.status for i in incidents]
    fresh = incapi.Plan(runbook="headroom", mode=spec.mode)  # a plan that has not acted: the guards' view
    blocked = guards.blocked(
        spec.guards, fresh, guards.actions_within(statuses, now), guards.last_plan_end(statuses), now
    )
    if blocked is not None:
        return blocked.removeprefix("holding: ")
    top = machine.ceiling(md, step)
    if machine.wanted_replicas(md) >= top:
        return f"at the step's ceiling of {top} replicas"
    if unschedulable_pods > 0:
        return "pods of this deployment are unschedulable"
    return None


def _last_headroom(incidents: Sequence[incapi.Incident]) -> tuple[datetime.datetime, str] | None:
    opened = [
        (cond.parse_time(i.status.opened_at), str(i.metadata.get("name")))
        for i in incidents
        if is_headroom(i.spec) and i.status.opened_at
    ]
    return max(opened) if opened else None


def capacity_hold(decision: Decision, free_gpus: int | None, gpus_per_replica: int) -> Decision:
    """``decision`` held when the cluster has no ``nvidia.com/gpu`` free for one more replica (None: unknown,
    the scheduler judges, as for a breach's scale-out)."""
    if decision.scale is None or free_gpus is None or free_gpus >= gpus_per_replica:
        return decision
    return Decision(
        False, HOLDING, f"holding: blocked by GPU capacity: {gpus_per_replica} nvidia.com/gpu needed, {free_gpus} free"
    )
