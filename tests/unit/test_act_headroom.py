"""Headroom (spec.headroom): scaling out ahead of a breach, state in, state out.

The trigger (:func:`vigil.act.headroom.decide`), its demand test (:func:`vigil.act.sizing.outgrows`),
the one-step plan it runs, and that plan in the step machine: acting before a breach, exactly once
across replays, never escalating, ended by a breach.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from tests.unit import actkit
from vigil.act import guards, headroom, intents, machine, runbooks, sizing
from vigil.api import conditions as cond
from vigil.api import incident as incapi
from vigil.api import modeldeployment as mdapi
from vigil.api import runbook as rbapi
from vigil.api import slo as sloapi
from vigil.record import incidents as records

NOW = actkit.NOW
MET = sloapi.SLOState.MET
QUEUE = {"name": "queue", "kind": "queueTime", "thresholdMs": 100, "period": "1h"}
ERRORS = {"name": "errors", "kind": "availability", "objective": 99.0, "period": "1h"}

# 2 replicas at 30 req/s per busy replica. Rising: 50 req/s now (40 over the baseline window, whose
# middle lies 30 s earlier): 55 req/s at the end of the 30 s window; at 70 % it needs 3 (131 % of
# what 2 carry at the target).
RISING = sizing.Demand(
    request_rate=50.0, busy_replicas=50.0 / 30.0, queue_growth=0.0, window_seconds=30,
    baseline_rate=40.0, baseline_lag_seconds=30.0,
)  # fmt: skip
FLAT = sizing.Demand(
    request_rate=50.0, busy_replicas=50.0 / 30.0, queue_growth=0.0, window_seconds=30,
    baseline_rate=50.0, baseline_lag_seconds=30.0,
)  # fmt: skip
# Rising, but only to 106 % of what 2 replicas carry at 70 %: within the HPA's 10 % tolerance.
NEARLY = sizing.Demand(
    request_rate=44.0, busy_replicas=44.0 / 30.0, queue_growth=0.0, window_seconds=30,
    baseline_rate=43.0, baseline_lag_seconds=30.0,
)  # fmt: skip


def runbook(**step: Any) -> rbapi.RunbookSpec:
    params = {"stepReplicas": 1, "targetUtilization": 70, **step.pop("params", {})}
    return actkit.runbook(
        {"name": "rollback", "action": "rollback", "when": {"causes": ["BadRollout"]}},
        {"name": "scale-out", "action": "scaleOut", "params": params, "verifyAfter": "90s", **step},
        {"name": "shift-all", "action": "shiftTraffic", "params": {"target": "fallback"}},
        guards={"cooldown": "10m", "maxActionsPerHour": 6},
    )


def deployment(
    *,
    enabled: bool = True,
    states: tuple[sloapi.SLOState, ...] = (MET, MET),
    active: str | None = None,
    scale: int | None = None,
    **spec: Any,
) -> mdapi.ModelDeployment:
    md = actkit.deployment(
        current=actkit.GOOD,
        previous=None,
        maxReplicas=6,
        slos=spec.pop("slos", [ERRORS, QUEUE]),
        headroom={"enabled": enabled},
        **spec,
    )
    names = [s.name for s in md.spec.slos]
    md.status.slos = [sloapi.SLOStatus(name=n, state=s) for n, s in zip(names, states, strict=False)]
    md.status.active_incident = active
    if scale is not None:
        md.status.scale = mdapi.ScaleOverride(replicas=scale, incident="old", generation=1, since=cond.rfc3339(NOW))
    return md


def decide(
    md: mdapi.ModelDeployment,
    demand: sizing.Demand | None = RISING,
    incidents: tuple[incapi.Incident, ...] = (),
    spec: rbapi.RunbookSpec | str | None = None,
    *,
    metrics: bool = True,
    unschedulable: int = 0,
    now: datetime.datetime = NOW,
) -> headroom.Decision | None:
    chosen = runbook() if spec is None else spec
    found: tuple[str, rbapi.RunbookSpec] | str = chosen if isinstance(chosen, str) else ("surge", chosen)
    return headroom.decide(
        md, found, demand, incidents, metrics_available=metrics, unschedulable_pods=unschedulable, now=now
    )


def incident(
    name: str,
    *,
    trigger: incapi.Trigger = incapi.Trigger.BREACH,
    opened: float = -3600,
    plan: incapi.Plan | None = None,
    give_back: incapi.GiveBackPhase | None = None,
    intents_at: tuple[float, ...] = (),
) -> incapi.Incident:
    status = incapi.IncidentStatus(phase=incapi.Phase.RESOLVED, opened_at=cond.rfc3339(actkit.at(opened)), plan=plan)
    if give_back is not None:
        status.give_back = incapi.GiveBack(phase=give_back, generation=1, held={"replicas": "3"})
    status.timeline = [records.entry(guards.INTENT, "scale to 3", actkit.at(t)) for t in intents_at]
    spec = incapi.IncidentSpec(model_deployment="resnet", slo="queue", generation=1, trigger=trigger)
    return incapi.Incident(metadata={"name": name}, spec=spec, status=status)


def acted_plan(ended: float) -> incapi.Plan:
    """A finished plan whose scale-out acted and succeeded ``ended`` seconds from NOW."""
    plan = machine.start_plan("surge", runbook(), None, rbapi.Cause.LOAD_SURGE, actkit.at(ended - 200))
    for progress in plan.steps:
        progress.state = incapi.StepState.SKIPPED
        progress.finished_at = cond.rfc3339(actkit.at(ended - 100))
    scale = plan.steps[1]
    scale.state = incapi.StepState.SUCCEEDED
    scale.target = {"replicas": "3", intents.INTENDED_AT: cond.rfc3339(actkit.at(ended - 200))}
    scale.finished_at = cond.rfc3339(actkit.at(ended))
    plan.current = len(plan.steps)
    return plan


# --- the demand test ------------------------------------------------------------------------------


def test_a_rising_demand_beyond_the_target_and_its_tolerance_outgrows_the_replicas() -> None:
    sized = sizing.outgrows(RISING, 70, 2)
    assert isinstance(sized, sizing.Sized)
    assert sized.replicas == 3
    assert sized.projected == pytest.approx(55.0)


@pytest.mark.parametrize(
    ("demand", "running", "why"),
    [
        (None, 2, "no measured demand"),
        (FLAT, 2, "demand 50.0 req/s is not rising"),
        (NEARLY, 2, "(2 running: 106% of their target load, within 10% tolerance)"),
        (RISING, 3, "(3 running: 87% of their target load, within 10% tolerance)"),
        (sizing.Demand(50.0, None, 0.0), 2, "GPU utilisation not reported"),
    ],
)
def test_no_data_a_flat_load_or_one_within_tolerance_outgrows_nothing(
    demand: sizing.Demand | None, running: int, why: str
) -> None:
    found = sizing.outgrows(demand, 70, running)
    assert isinstance(found, str)
    assert found.endswith(why)


def test_outgrows_counts_replicas() -> None:
    with pytest.raises(ValueError, match="running counts replicas"):
        sizing.outgrows(RISING, 70, 0)


# --- the plan it runs -----------------------------------------------------------------------------


def test_the_headroom_plan_is_the_load_surge_scale_out_step_alone_and_moves_on_when_it_fails() -> None:
    only = headroom.plan_spec(runbook(when={"causes": ["LoadSurge"]}, onFailure="escalate"))
    assert only is not None
    assert [(s.name, s.on_failure, s.when.causes) for s in only.steps] == [("scale-out", rbapi.OnFailure.NEXT, [])]
    assert only.guards == runbook().guards


def test_the_builtin_default_has_a_headroom_step() -> None:
    step = headroom.step_of(runbooks.builtin_default())
    assert step is not None
    assert (step.name, step.params.target_utilization, step.params.size_ahead) == ("scale-out", 70, "90s")


@pytest.mark.parametrize(
    "step",
    [
        {"params": {"targetUtilization": None}},  # a fixed step cannot be sized ahead of a breach
        {"when": {"causes": ["Capacity"]}},  # not what a surge runs
    ],
)
def test_a_runbook_without_a_demand_sized_load_surge_scale_out_has_no_headroom_step(step: dict[str, Any]) -> None:
    spec = runbook(**step)
    assert headroom.plan_spec(spec) is None
    decision = decide(deployment(), spec=spec)
    assert decision is not None
    assert (decision.ok, decision.reason, decision.scale) == (False, headroom.NO_STEP, None)
    assert "runbook surge has no scaleOut step with targetUtilization for LoadSurge" in decision.message


def test_the_incident_protects_the_first_load_sensitive_slo() -> None:
    assert headroom.slo_for(deployment()) == "queue"
    assert headroom.slo_for(deployment(slos=[ERRORS])) == "errors"
    assert headroom.slo_for(deployment(slos=[])) is None


# --- the trigger ----------------------------------------------------------------------------------


def test_not_opted_in_decides_nothing() -> None:
    assert decide(deployment(enabled=False)) is None


def test_rising_demand_on_a_healthy_deployment_scales_out_with_the_one_step_plan() -> None:
    decision = decide(deployment(states=(MET, sloapi.SLOState.WARNING)))
    assert decision is not None
    assert decision.scale is not None
    assert (decision.ok, decision.reason) == (True, headroom.SCALING_OUT)
    assert (decision.scale.slo, decision.scale.running, decision.scale.sized.replicas) == ("queue", 2, 3)
    assert [s.name for s in decision.scale.spec.steps] == ["scale-out"]
    assert decision.scale.summary().startswith("no SLO breached, but the rising demand 50.0 req/s")


@pytest.mark.parametrize("demand", [None, FLAT, NEARLY])
def test_without_a_rise_beyond_the_tolerance_it_stays_armed(demand: sizing.Demand | None) -> None:
    decision = decide(deployment(), demand)
    assert decision is not None
    assert (decision.ok, decision.reason, decision.scale) == (True, headroom.ARMED, None)
    assert decision.message == (
        "armed: scales out before a breach once the rising demand needs more replicas than run at 70% "
        "utilisation (runbook surge, step scale-out)"
    )


def holding(decision: headroom.Decision | None) -> str:
    assert decision is not None
    assert (decision.ok, decision.reason, decision.scale) == (False, headroom.HOLDING, None)
    return decision.message


@pytest.mark.parametrize(
    ("md", "message"),
    [
        (deployment(paused=True), "holding: the deployment is paused (spec.paused)"),
        (deployment(active="resnet-queue-1"), "holding: incident resnet-queue-1 is open"),
        (deployment(states=()), "holding: no SLO verdict yet"),
        (deployment(states=(MET, sloapi.SLOState.BREACHED)), "holding: SLO queue Breached"),
        (deployment(states=(sloapi.SLOState.NO_DATA, MET)), "holding: SLO errors NoData"),
        (deployment(states=(MET, sloapi.SLOState.INSUFFICIENT_TRAFFIC)), "holding: SLO queue InsufficientTraffic"),
        (deployment(scale=6), "holding: at the step's ceiling of 6 replicas"),
        # An SLO of the spec without a verdict (one just added) holds like one not judged Met.
        (deployment(states=(MET,)), "holding: SLO queue has no verdict yet"),
        # Scaled to zero: nothing serves, nothing to size (it used to raise in every reconcile).
        (deployment(replicas=0), "holding: scaled to zero (spec.replicas 0): nothing to size"),
    ],
)
def test_it_holds_on_a_paused_deployment_an_open_incident_an_slo_not_met_or_warning_or_at_the_ceiling(
    md: mdapi.ModelDeployment, message: str
) -> None:
    assert holding(decide(md)) == message


HPA_ENTRY = {"manager": "kube-controller-manager", "operation": "Update", "subresource": "scale",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}}  # fmt: skip


def scaling(decision: headroom.Decision | None) -> bool:
    return decision is not None and decision.reason == headroom.SCALING_OUT


def owned(*entries: dict[str, Any]) -> mdapi.ModelDeployment:
    md = deployment()
    md.metadata["managedFields"] = list(entries)
    return md


def rolling(desired: str, rollback: str | None = None) -> mdapi.ModelDeployment:
    md = deployment()
    md.status.desired_revision = desired
    if rollback is not None:
        md.status.rollback = mdapi.RollbackOverride(
            revision=rollback, from_revision=desired, incident="old", generation=1, since=cond.rfc3339(NOW)
        )
    return md


def test_it_holds_while_an_autoscaler_owns_the_replicas_through_the_scale_subresource() -> None:
    """One owner of the replica count at a time: an HPA (or ``kubectl scale``) that set spec.replicas
    through /scale keeps it; the spec's own writers (Argo CD's apply) do not hold anything."""
    assert holding(decide(owned(HPA_ENTRY))) == (
        "holding: spec.replicas is set by kube-controller-manager through the scale subresource: "
        "the replica count has one owner at a time"
    )
    applied = {"manager": "argocd-controller", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
    status_only = {**HPA_ENTRY, "fieldsV1": {"f:status": {"f:replicas": {}}}}
    for md in (owned(applied), owned(status_only), owned()):
        assert scaling(decide(md)), md.metadata


def test_it_holds_while_a_rollout_or_a_rollback_has_not_switched_traffic_yet() -> None:
    assert holding(decide(rolling("new0000000"))) == "holding: a rollout to revision new0000000 is in progress"
    # A rollback in force serves its revision: once it serves, the deployment is sized as usual.
    assert holding(decide(rolling("new0000000", rollback=actkit.BAD))) == (
        f"holding: a rollout to revision {actkit.BAD} is in progress"
    )
    for md in (rolling(actkit.GOOD), rolling("new0000000", rollback=actkit.GOOD)):
        assert scaling(decide(md)), md.metadata


def test_a_pass_that_does_not_decide_holds_the_condition_on_what_stands() -> None:
    """While an incident is open or an SLO breached the worker reads no runbook and no Incident:
    the condition still says why nothing scales ahead, and nothing for a deployment not opted in."""
    assert headroom.holding(deployment(active="resnet-queue-1"), metrics_available=True) == headroom.Decision(
        False, headroom.HOLDING, "holding: incident resnet-queue-1 is open"
    )
    breached = deployment(states=(MET, sloapi.SLOState.BREACHED))
    assert headroom.holding(breached, metrics_available=False) == headroom.Decision(
        False, headroom.HOLDING, "holding: metrics unavailable"
    )
    assert headroom.holding(deployment(enabled=False, active="resnet-queue-1"), metrics_available=True) is None
    assert headroom.holding(deployment(), metrics_available=True) is None


def test_it_holds_without_metrics_and_with_unschedulable_pods() -> None:
    assert holding(decide(deployment(), metrics=False)) == "holding: metrics unavailable"
    assert holding(decide(deployment(), unschedulable=1)) == "holding: pods of this deployment are unschedulable"


def test_it_holds_while_a_give_back_returns_a_step_but_not_while_one_stabilizes() -> None:
    returning = incident("old", give_back=incapi.GiveBackPhase.RETURNING)
    assert holding(decide(deployment(scale=3), incidents=(returning,))) == "holding: incident old is giving back a step"
    stabilizing = incident("old", give_back=incapi.GiveBackPhase.STABILIZING)
    decision = decide(deployment(scale=2), incidents=(stabilizing,))
    assert decision is not None
    assert decision.scale is not None


def test_a_headroom_incident_that_took_no_action_holds_the_next_for_a_cooldown() -> None:
    recent = incident("resnet-headroom-1", trigger=incapi.Trigger.HEADROOM, opened=-599)
    assert holding(decide(deployment(), incidents=(recent,))) == (
        "holding: headroom incident resnet-headroom-1 opened 2026-11-22T11:50:01Z without acting: at most one such "
        "per cooldown 10m, until 2026-11-22T12:00:01Z"
    )
    older = incident("resnet-headroom-0", trigger=incapi.Trigger.HEADROOM, opened=-600)
    decision = decide(deployment(), incidents=(older,))
    assert decision is not None
    assert decision.scale is not None


def test_the_cooldown_after_a_plan_that_acted_holds_it_unless_the_demand_was_measured_after_that_plan() -> None:
    just = incident("resnet-headroom-1", trigger=incapi.Trigger.HEADROOM, opened=-200, plan=acted_plan(-20))
    # The demand's 30 s window reaches back before that plan ended: the load it answered.
    assert holding(decide(deployment(scale=2), incidents=(just,))) == (
        "holding: cooldown 10m after the last plan, until 2026-11-22T12:09:40Z"
    )
    # A window all after it: the load kept rising past what it provisioned (a ramp), one plan follows another.
    ramp = incident("resnet-headroom-1", trigger=incapi.Trigger.HEADROOM, opened=-400, plan=acted_plan(-31))
    decision = decide(deployment(scale=2), incidents=(ramp,))
    assert decision is not None
    assert decision.scale is not None
    breach = incident("resnet-queue-1", plan=acted_plan(-300))
    decision = decide(deployment(scale=2), incidents=(breach,))
    assert decision is not None
    assert decision.scale is not None


def test_the_action_limit_is_never_waived() -> None:
    busy = incident("resnet-queue-2", intents_at=(-3000, -2000, -1500, -1000, -700, -650))
    assert holding(decide(deployment(), incidents=(busy,))) == (
        "holding: maxActionsPerHour (6) reached for this deployment"
    )


def test_no_scale_out_ahead_within_a_cooldown_after_a_give_back_step() -> None:
    def gave_back(seconds: float) -> incapi.Incident:
        found = incident("old", give_back=incapi.GiveBackPhase.STABILIZING)
        assert found.status.give_back is not None
        found.status.give_back.steps = [
            incapi.GiveBackStep(
                number=1,
                target={"replicas": "2"},
                state=incapi.StepState.SUCCEEDED,
                finished_at=cond.rfc3339(actkit.at(seconds)),
            )
        ]
        return found

    assert holding(decide(deployment(), incidents=(gave_back(-120),))) == (
        "holding: incident old gave back a step at 2026-11-22T11:58:00Z: no scale-out ahead of a breach within "
        "the cooldown 10m after it, until 2026-11-22T12:08:00Z"
    )
    decision = decide(deployment(), incidents=(gave_back(-601),))
    assert decision is not None
    assert decision.scale is not None


def test_an_unusable_runbook_reference_is_said_and_nothing_scales() -> None:
    decision = decide(deployment(), spec="runbookRef surge: no Runbook surge in this namespace")
    assert decision is not None
    assert (decision.ok, decision.reason, decision.scale) == (False, headroom.NO_STEP, None)
    assert decision.message == "no scale-out ahead of a breach: runbookRef surge: no Runbook surge in this namespace"


@pytest.mark.parametrize(("free", "held"), [(0, True), (1, False), (None, False)])
def test_no_free_gpu_for_one_more_replica_holds_it(free: int | None, held: bool) -> None:
    decision = decide(deployment())
    assert decision is not None
    found = headroom.capacity_hold(decision, free, 1)
    if held:
        assert holding(found) == "holding: blocked by GPU capacity: 1 nvidia.com/gpu needed, 0 free"
    else:
        assert found is decision


# --- the plan in the step machine -----------------------------------------------------------------


def ahead_context(md: mdapi.ModelDeployment, **fields: Any) -> machine.Context:
    fields.setdefault("demand", RISING)
    slo = fields.pop("slo", MET)
    return machine.Context(
        now=fields.pop("now", NOW),
        incident=actkit.INCIDENT,
        incident_spec=incapi.IncidentSpec(
            model_deployment="resnet", slo="queue", revision=actkit.GOOD, generation=1, trigger=incapi.Trigger.HEADROOM
        ),
        md=md,
        slo_state=slo,
        metrics_available=fields.pop("metrics", True),
        cause=rbapi.Cause.LOAD_SURGE,
        capacity=machine.Capacity(free_gpus=fields.pop("free_gpus", 8), gpus_per_replica=1),
        judged=actkit.judged(fields.get("now", NOW), 0.0),
        **fields,
    )


def ahead_plan(spec: rbapi.RunbookSpec | None = None, mode: rbapi.Mode | None = None) -> incapi.IncidentStatus:
    only = headroom.plan_spec(spec or runbook())
    assert only is not None
    return actkit.opened(machine.start_plan("surge", only, mode, rbapi.Cause.LOAD_SURGE, NOW))


def test_a_headroom_plan_scales_out_while_the_slo_is_met_and_records_the_intent_first() -> None:
    decision = machine.advance(ahead_plan(), ahead_context(deployment()))
    assert decision.intents == (intents.Scale(replicas=3, key=f"{actkit.INCIDENT}/0-scale-out/1"),)
    assert actkit.states(decision.status) == [("scale-out", incapi.StepState.INTENDED)]
    assert decision.status.phase is incapi.Phase.MITIGATING
    # Replayed from what was written (a crash before the write of the md status): the same intent.
    again = machine.advance(decision.status, ahead_context(deployment(), now=actkit.at(5), demand=FLAT))
    assert again.intents == decision.intents


def test_a_headroom_plan_whose_demand_fell_back_skips_and_ends_without_escalating() -> None:
    decision = machine.advance(ahead_plan(), ahead_context(deployment(), demand=FLAT))
    assert decision.intents == ()
    assert actkit.states(decision.status) == [("scale-out", incapi.StepState.SKIPPED)]
    assert actkit.step(decision.status, "scale-out").result == (
        "no longer needed ahead of a breach: demand 50.0 req/s is not rising"
    )
    assert decision.status.plan is not None
    assert guards.finished(decision.status.plan)
    assert decision.status.phase is incapi.Phase.MITIGATING
    assert machine.ESCALATED not in actkit.types(decision.status)
    assert machine.advance(decision.status, ahead_context(deployment())).intents == ()


@pytest.mark.parametrize(
    ("md", "reason"),
    [
        (owned(HPA_ENTRY), "spec.replicas is set by kube-controller-manager through the scale subresource"),
        (rolling("new0000000"), "a rollout to revision new0000000 is in progress"),
    ],
)
def test_a_headroom_plan_opened_before_an_autoscaler_or_a_rollout_took_over_skips_its_step(
    md: mdapi.ModelDeployment, reason: str
) -> None:
    """The holds that keep a headroom Incident from opening are checked again before its step acts:
    an HPA or a rollout may start in the pass between, during an approval, or across a restart."""
    decision = machine.advance(ahead_plan(), ahead_context(md))
    assert decision.intents == ()
    assert actkit.states(decision.status) == [("scale-out", incapi.StepState.SKIPPED)]
    assert (actkit.step(decision.status, "scale-out").result or "").startswith(
        f"not scaled ahead of a breach: {reason}"
    )
    assert machine.ESCALATED not in actkit.types(decision.status)


def test_an_approval_given_after_an_autoscaler_took_the_count_scales_nothing() -> None:
    waiting = machine.advance(ahead_plan(mode=rbapi.Mode.APPROVAL), ahead_context(deployment()))
    assert (waiting.status.phase, waiting.intents) == (incapi.Phase.AWAITING_APPROVAL, ())
    approved = {runbook().approval_annotation: "true"}
    assert machine.advance(waiting.status, ahead_context(owned(HPA_ENTRY), annotations=approved)).intents == ()
    assert machine.advance(waiting.status, ahead_context(deployment(), annotations=approved)).intents != ()


def test_a_rollback_to_a_revision_no_longer_kept_is_no_rollout() -> None:
    """As the reconcile does, a rollback whose revision left the history gives the replicas to the spec's."""
    md = rolling(actkit.GOOD, rollback="gone000000")
    assert mdapi.rolling_out(md.status) is None
    assert scaling(decide(md))


def test_a_headroom_plan_holds_without_metrics_and_never_escalates_when_blocked() -> None:
    held = machine.advance(ahead_plan(), ahead_context(deployment(), metrics=False))
    assert (held.intents, actkit.states(held.status)) == ((), [("scale-out", incapi.StepState.PENDING)])
    assert actkit.types(held.status)[-1] == machine.HOLD
    blocked = machine.advance(ahead_plan(), ahead_context(deployment(), free_gpus=0))
    assert actkit.states(blocked.status) == [("scale-out", incapi.StepState.FAILED)]
    assert machine.ESCALATED not in actkit.types(blocked.status)
    assert [i for i in blocked.intents if isinstance(i, intents.Notify)] == []


def test_a_dry_run_headroom_plan_only_records_what_it_would_do() -> None:
    decision = machine.advance(ahead_plan(mode=rbapi.Mode.DRY_RUN), ahead_context(deployment()))
    assert decision.intents == ()
    assert actkit.states(decision.status) == [("scale-out", incapi.StepState.DRY_RUN)]


def test_a_headroom_plan_keeps_the_runbook_guards() -> None:
    ended = actkit.at(-60)
    decision = machine.advance(ahead_plan(), ahead_context(deployment(), last_plan_ended_at=ended))
    assert decision.intents == ()
    assert actkit.types(decision.status)[-1] == machine.HOLD


def test_a_headroom_scale_out_is_verified_like_any_round_and_ends_the_plan_on_a_met_slo() -> None:
    world = actkit.World(
        md=deployment(), status=ahead_plan(), cause=rbapi.Cause.LOAD_SURGE, slo=lambda _: MET, step_seconds=30.0
    )
    spec = incapi.IncidentSpec(model_deployment="resnet", slo="queue", generation=1, trigger=incapi.Trigger.HEADROOM)
    base = world.context

    def context(done: dict[str, intents.Result] | None = None) -> machine.Context:
        found = base(done)
        return machine.Context(**{**found.__dict__, "incident_spec": spec, "demand": RISING})

    world.context = context  # type: ignore[method-assign]
    world.run()
    assert [i for i in world.issued if isinstance(i, intents.Scale)] == [
        intents.Scale(replicas=3, key=f"{actkit.INCIDENT}/0-scale-out/1")
    ]
    assert actkit.states(world.status) == [("scale-out", incapi.StepState.SUCCEEDED)]
    assert machine.ESCALATED not in actkit.types(world.status)


def test_a_breach_ends_a_headroom_plan_cancelling_what_it_had_not_done() -> None:
    started = machine.advance(ahead_plan(), ahead_context(deployment())).status
    ended = machine.end_ahead(started, actkit.at(10), "plan cancelled: SLO queue breached")
    assert actkit.states(ended) == [("scale-out", incapi.StepState.CANCELLED)]
    assert ended.plan is not None
    assert guards.finished(ended.plan)
    assert actkit.types(ended)[-1] == machine.CANCELLED
    assert machine.advance(ended, ahead_context(deployment(), now=actkit.at(20))).intents == ()
