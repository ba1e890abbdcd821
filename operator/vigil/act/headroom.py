"""Headroom: scale out before an SLO breaches, when the rising demand needs it (opt-in).

A healer that acts on breaches scales out only after users waited: the SLO's window has to fill
with bad data, then the new pods have to start. An HPA scales on utilisation and is often there
first. A ModelDeployment with ``spec.headroom.enabled`` gets the same foresight from the demand the
fleet loop already measures every cycle (served rate plus the queue's growth, per busy replica:
:mod:`vigil.act.sizing`), without giving up any of the rules an incident's actions follow:

* **When**: no incident is open, the deployment is not paused, metrics are available, no autoscaler
  owns spec.replicas through the scale subresource, no rollout is switching revisions, every SLO
  is Met or Warning (none Breached, none without a verdict), no give-back is returning a step nor
  returned one within the runbook's ``cooldown`` (scaling out right after scaling in is flapping),
  no headroom Incident that took no action opened within the cooldown, the replicas are below the
  step's ceiling with no unschedulable pod, the demand now (at the end of its window) is rising
  and needs more replicas than run at the step's ``targetUtilization``, by more than the HPA's
  10 % tolerance (:func:`vigil.act.sizing.outgrows`), and the runbook's guards allow an action:
  ``maxActionsPerHour``, and the cooldown after the last plan that acted unless that demand was
  measured on data from after it (a load still rising past what that plan provisioned, as the
  step machine waives it for a breach's scale-out; on a ramp one headroom plan follows another).
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
    blocked = _guarded(spec, incidents, sizing.size(demand, target), running, now)
    if blocked is not None:
        return Decision(False, HOLDING, f"holding: {blocked}")
    only = plan_spec(spec)
    assert only is not None  # step_of found the step it keeps
    scale = Scale(slo=slo, spec=only, sized=sized, running=running)
    return Decision(True, SCALING_OUT, f"scaling out ahead of a breach: {scale.summary()}", scale)


def standing(md: mdapi.ModelDeployment, metrics_available: bool) -> str | None:
    """Why no headroom scale-out may start now, from the deployment alone (no runbook, no Incidents:
    what a pass knows while an incident is open or an SLO breached), or None. Constant while it lasts."""
    status = md.status
    if md.spec.paused:
        return "the deployment is paused (spec.paused)"
    if status.active_incident is not None:
        return f"incident {status.active_incident} is open"
    if not metrics_available:
        return "metrics unavailable"
    elsewhere = machine.sized_elsewhere(md)
    if elsewhere is not None:
        return elsewhere
    if machine.wanted_replicas(md) < 1:
        return "scaled to zero (spec.replicas 0): nothing to size"
    if not md.spec.slos or not status.slos:
        return "no SLO verdict yet"
    verdicts = {s.name: s.state for s in status.slos}
    # Every SLO of the spec, not only those with a verdict: one just added has none yet.
    unjudged = [
        f"SLO {slo.name} {verdicts[slo.name]}" if slo.name in verdicts else f"SLO {slo.name} has no verdict yet"
        for slo in md.spec.slos
        if verdicts.get(slo.name) not in _JUDGED
    ]
    return ", ".join(unjudged) if unjudged else None


def holding(md: mdapi.ModelDeployment, metrics_available: bool) -> Decision | None:
    """The ``Headroom`` condition of a pass that does not decide (an incident is open, an SLO
    breached): Holding on :func:`standing`'s reason; None: not opted in, or nothing stands."""
    if not md.spec.headroom.enabled:
        return None
    reason = standing(md, metrics_available)
    return Decision(False, HOLDING, f"holding: {reason}") if reason is not None else None


def _held(
    md: mdapi.ModelDeployment,
    spec: rbapi.RunbookSpec,
    step: rbapi.Step,
    incidents: Sequence[incapi.Incident],
    metrics_available: bool,
    unschedulable_pods: int,
    now: datetime.datetime,
) -> str | None:
    """Why no headroom scale-out may start now, whatever the demand (constant while it lasts), or None."""
    reason = standing(md, metrics_available)
    if reason is not None:
        return reason
    returning = [
        str(i.metadata.get("name"))
        for i in incidents
        if i.status.give_back is not None and i.status.give_back.phase is incapi.GiveBackPhase.RETURNING
    ]
    if returning:
        return f"incident {returning[0]} is giving back a step"
    cooldown = datetime.timedelta(seconds=sloapi.duration_seconds(spec.guards.cooldown))
    returned = _last_give_back_step(incidents)
    if returned is not None and now < returned[0] + cooldown:
        return (
            f"incident {returned[1]} gave back a step at {cond.rfc3339(returned[0])}: no scale-out ahead of a breach "
            f"within the cooldown {spec.guards.cooldown} after it, until {cond.rfc3339(returned[0] + cooldown)}"
        )
    idle = _last_idle_headroom(incidents)
    if idle is not None and now < idle[0] + cooldown:
        return (
            f"headroom incident {idle[1]} opened {cond.rfc3339(idle[0])} without acting: at most one such per "
            f"cooldown {spec.guards.cooldown}, until {cond.rfc3339(idle[0] + cooldown)}"
        )
    top = machine.ceiling(md, step)
    if machine.wanted_replicas(md) >= top:
        return f"at the step's ceiling of {top} replicas"
    if unschedulable_pods > 0:
        return "pods of this deployment are unschedulable"
    return None


def _guarded(
    spec: rbapi.RunbookSpec,
    incidents: Sequence[incapi.Incident],
    average: sizing.Sized | str,
    running: int,
    now: datetime.datetime,
) -> str | None:
    """Why the runbook's guards hold a scale-out now, or None; ``average``: the demand over its window.

    The cooldown after the last plan that acted is waived, as the step machine waives it for a
    breach's scale-out (``machine._cooldown_waiver``: the same test, so the plan opened here is not
    held), when the demand over its window needs more replicas than run and was measured on
    data none of which belongs to that plan (its window starts after the plan ended, or after the
    data its last step was verified Met on): a load that kept rising past what the plan provisioned.
    Adding replicas undoes nothing; what could flap, a scale-out right after a give-back step, is
    held by :func:`_held`. ``maxActionsPerHour`` is never waived.
    """
    statuses = [i.status for i in incidents]
    ended = guards.last_plan_end(statuses)
    clean_since = min(guards.last_plan_met_since(statuses) or ended, ended) if ended is not None else None
    waive = (
        clean_since is not None
        and isinstance(average, sizing.Sized)
        and average.replicas > running  # the evidence the step machine's waiver reads too
        and average.window_seconds is not None
        and now - datetime.timedelta(seconds=average.window_seconds) >= clean_since
    )
    fresh = incapi.Plan(runbook="headroom", mode=spec.mode)  # a plan that has not acted: the guards' view
    blocked = guards.blocked(spec.guards, fresh, guards.actions_within(statuses, now), ended, now, waive)
    return blocked.removeprefix("holding: ") if blocked is not None else None


def _last_give_back_step(incidents: Sequence[incapi.Incident]) -> tuple[datetime.datetime, str] | None:
    """When the latest give-back step (not a restore) of the deployment ended well, and its incident."""
    done = [
        (cond.parse_time(step.finished_at), str(i.metadata.get("name")))
        for i in incidents
        if i.status.give_back is not None
        for step in i.status.give_back.steps
        if step.finished_at and not step.restore and step.state is incapi.StepState.SUCCEEDED
    ]
    return max(done) if done else None


def _last_idle_headroom(incidents: Sequence[incapi.Incident]) -> tuple[datetime.datetime, str] | None:
    """When the latest headroom Incident whose plan took no action (a dry run, a step skipped or
    blocked) was opened, and its name: without an action no cooldown follows it, so this one does."""
    opened = [
        (cond.parse_time(i.status.opened_at), str(i.metadata.get("name")))
        for i in incidents
        if i.spec.ahead and i.status.opened_at and (i.status.plan is None or not guards.acted(i.status.plan))
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
