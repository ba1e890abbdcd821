"""State-in/state-out tests of the runbook step machine: actions, verification, guards, modes."""

from __future__ import annotations

import datetime

from tests.unit import actkit
from tests.unit.actkit import BAD, GOOD, INCIDENT, NOW, at
from vigil.act import guards, intents, machine, runbooks
from vigil.api import conditions as cond
from vigil.api import incident as incapi
from vigil.api import modeldeployment as mdapi
from vigil.api import runbook as rbapi
from vigil.api import slo as sloapi

S = incapi.StepState
PAGER = intents.WebhookRef("pager", "url")
Cause = rbapi.Cause


def first_advance(
    cause: Cause, md: mdapi.ModelDeployment | None = None, **ctx: object
) -> tuple[mdapi.ModelDeployment, machine.Decision]:
    md = md or actkit.deployment()
    status = actkit.opened(actkit.plan(cause))
    return md, machine.advance(status, actkit.context(md, cause=cause, **ctx))  # type: ignore[arg-type]


# --- plan start -------------------------------------------------------------------------------


def test_start_plan_snapshots_the_runbook_and_skips_steps_for_other_causes() -> None:
    plan = actkit.plan(Cause.LOAD_SURGE)
    assert plan.runbook == runbooks.BUILTIN
    assert plan.mode is rbapi.Mode.AUTO
    assert plan.spec == runbooks.builtin_default()
    assert [(s.name, s.state) for s in plan.steps] == [
        ("rollback", S.SKIPPED),
        ("restart-pods", S.SKIPPED),
        ("rollback-crashing", S.SKIPPED),
        ("scale-out", S.PENDING),
        ("shift-to-fallback", S.PENDING),
    ]
    assert plan.steps[0].result == "not for cause LoadSurge"


def test_a_paused_deployment_forces_dry_run_mode() -> None:
    md = actkit.deployment(paused=True)
    assert machine.mode_override(md.spec) is rbapi.Mode.DRY_RUN
    assert machine.mode_override(actkit.deployment().spec) is None
    plan = machine.start_plan("x", runbooks.builtin_default(), machine.mode_override(md.spec), Cause.BAD_ROLLOUT, NOW)
    assert plan.mode is rbapi.Mode.DRY_RUN


def test_first_advance_announces_the_plan_and_mitigates() -> None:
    _, decision = first_advance(Cause.BAD_ROLLOUT)
    assert decision.status.phase is incapi.Phase.MITIGATING
    planned = next(e for e in decision.status.timeline if e.type == machine.PLANNED)
    assert "runbook builtin-default (auto) for cause BadRollout: steps rollback" in planned.message
    assert "skipped (not for this cause): restart-pods" in planned.message


def test_advance_without_plan_or_on_resolved_incident_changes_nothing() -> None:
    md = actkit.deployment()
    empty = actkit.opened(None)
    assert machine.advance(empty, actkit.context(md)) == machine.Decision(empty, (), ())
    resolved = actkit.opened(actkit.plan(Cause.BAD_ROLLOUT))
    resolved.phase = incapi.Phase.RESOLVED
    decision = machine.advance(resolved, actkit.context(md))
    assert decision.status == resolved
    assert decision.intents == ()
    assert decision.events == ()


# --- rollback ---------------------------------------------------------------------------------


def test_bad_rollout_records_a_rollback_intent_to_the_last_known_good_revision() -> None:
    _, decision = first_advance(Cause.BAD_ROLLOUT)
    assert decision.intents == (intents.Rollback(GOOD, BAD, key=f"{INCIDENT}/0-rollback/1"),)
    rollback = actkit.step(decision.status, "rollback")
    assert rollback.state is S.INTENDED
    assert rollback.target[intents.TO_REVISION] == GOOD
    assert rollback.target[intents.FROM_REVISION] == BAD
    assert rollback.target[intents.INTENDED_AT] == cond.rfc3339(NOW)
    assert decision.status.timeline[-1].type == guards.INTENT
    assert any(e.reason == "ActionIntended" for e in decision.events)


def test_rollback_picks_the_newest_last_known_good_that_is_not_the_breached_revision() -> None:
    revs = (
        actkit.revision("old0000000", True),
        actkit.revision(GOOD, True),
        actkit.revision(BAD, True),  # the breached revision itself had been good once
    )
    _, decision = first_advance(Cause.BAD_ROLLOUT, actkit.deployment(revisions=revs))
    assert isinstance(decision.intents[0], intents.Rollback)
    assert decision.intents[0].to_revision == GOOD


def test_rollback_without_another_last_known_good_is_skipped_and_the_plan_escalates() -> None:
    md = actkit.deployment(revisions=(actkit.revision(GOOD, False), actkit.revision(BAD, False)))
    _, decision = first_advance(Cause.BAD_ROLLOUT, md)
    rollback = actkit.step(decision.status, "rollback")
    assert rollback.state is S.SKIPPED
    assert rollback.result == f"no last-known-good revision other than {BAD}"
    assert decision.status.phase is incapi.Phase.ESCALATED
    assert len(decision.intents) == 1
    assert isinstance(decision.intents[0], intents.Notify)
    assert decision.intents[0].webhook is None
    assert "no step of the plan restored the SLO" in decision.intents[0].message


def test_executed_rollback_waits_for_the_traffic_switch_before_the_verification_clock_starts() -> None:
    md, decision = first_advance(Cause.BAD_ROLLOUT)
    status = machine.advance(decision.status, actkit.context(md, done=actkit.ok(*decision.intents))).status
    rollback = actkit.step(status, "rollback")
    assert rollback.state is S.VERIFYING
    assert rollback.verify_at is None
    # Still serving the bad revision (the good one is warming up): nothing new.
    waiting = machine.advance(status, actkit.context(md, now=at(30)))
    assert waiting.intents == ()
    assert waiting.status == status
    md.status.current_revision = GOOD
    switched = machine.advance(status, actkit.context(md, now=at(40))).status
    assert actkit.step(switched, "rollback").verify_at == cond.rfc3339(at(100))
    assert switched.timeline[-1].type == machine.EFFECTIVE


def test_rollback_found_in_the_md_status_counts_as_executed_without_a_report() -> None:
    md, decision = first_advance(Cause.BAD_ROLLOUT)
    (intent,) = decision.intents
    assert isinstance(intent, intents.Rollback)
    md.status = intents.override(md.status, intent, INCIDENT, 1, NOW)
    replay = machine.advance(decision.status, actkit.context(md, now=at(5)))
    assert replay.intents == ()
    assert actkit.step(replay.status, "rollback").state is S.VERIFYING
    assert "found already applied" in (actkit.step(replay.status, "rollback").result or "")


def test_rollback_met_at_verification_succeeds_and_skips_the_remaining_steps() -> None:
    md, decision = first_advance(Cause.BAD_ROLLOUT)
    status = machine.advance(decision.status, actkit.context(md, done=actkit.ok(*decision.intents))).status
    md.status.current_revision = GOOD
    status = machine.advance(status, actkit.context(md, now=at(10))).status
    early = machine.advance(status, actkit.context(md, now=at(60), slo=actkit.MET))
    assert early.status == status  # hysteresis: no verdict before verifyAt, however good it looks
    done = machine.advance(status, actkit.context(md, now=at(70), slo=actkit.MET))
    assert actkit.step(done.status, "rollback").state is S.SUCCEEDED
    assert done.status.phase is incapi.Phase.MITIGATING  # the worker resolves once the SLO stays met
    assert guards.finished(done.status.plan)  # type: ignore[arg-type]
    assert done.status.timeline[-1].type == machine.VERIFIED
    assert any(e.reason == "StepSucceeded" for e in done.events)


def test_rollback_still_breached_at_verification_escalates_with_one_notification() -> None:
    md, decision = first_advance(Cause.BAD_ROLLOUT)
    status = machine.advance(decision.status, actkit.context(md, done=actkit.ok(*decision.intents))).status
    md.status.current_revision = GOOD
    status = machine.advance(status, actkit.context(md, now=at(10))).status
    failed = machine.advance(status, actkit.context(md, now=at(70)))
    assert actkit.step(failed.status, "rollback").state is S.FAILED
    assert failed.status.phase is incapi.Phase.ESCALATED
    (notify,) = failed.intents
    assert isinstance(notify, intents.Notify)
    assert notify.key == f"{INCIDENT}/5-escalate/1"
    assert "step rollback failed: SLO Breached at verification" in notify.message
    assert actkit.states(failed.status)[-1] == (machine.ESCALATE, S.INTENDED)
    delivered = machine.advance(failed.status, actkit.context(md, now=at(71), done=actkit.ok(notify)))
    assert delivered.intents == ()
    assert actkit.states(delivered.status)[-1] == (machine.ESCALATE, S.SUCCEEDED)
    assert guards.finished(delivered.status.plan)  # type: ignore[arg-type]
    again = machine.advance(delivered.status, actkit.context(md, now=at(200)))
    assert again.intents == ()
    assert again.status == delivered.status


def test_rollback_that_never_takes_effect_fails_at_its_timeout() -> None:
    md, decision = first_advance(Cause.BAD_ROLLOUT)
    status = machine.advance(decision.status, actkit.context(md, done=actkit.ok(*decision.intents))).status
    before = machine.advance(status, actkit.context(md, now=at(299)))
    assert before.status == status
    timed_out = machine.advance(status, actkit.context(md, now=at(300)))
    rollback = actkit.step(timed_out.status, "rollback")
    assert rollback.state is S.FAILED
    assert rollback.result == f"roll back to revision {GOOD} (from {BAD}) did not take effect within 5m"


def test_rollback_to_a_cold_revision_without_free_gpus_fails_fast() -> None:
    md = actkit.deployment(previous=None)  # the good revision is not warm any more
    _, decision = first_advance(Cause.BAD_ROLLOUT, md, free_gpus=1)
    rollback = actkit.step(decision.status, "rollback")
    assert rollback.state is S.FAILED
    assert rollback.result == f"blocked by GPU capacity: 2 nvidia.com/gpu needed, 1 free to start cold revision {GOOD}"
    warm = actkit.deployment(switched_at=at(-60), bakeTime="5m")
    _, decision = first_advance(Cause.BAD_ROLLOUT, warm, free_gpus=0)
    assert isinstance(decision.intents[0], intents.Rollback)


def test_rollback_after_crashes_only_if_the_revision_changed_within_the_window() -> None:
    pods = (machine.Pod("p-1", BAD, ready=False, failing=True),)
    recent = actkit.deployment(switched_at=at(-3600))
    status = actkit.opened(actkit.plan(Cause.CRASHING_PODS))
    restart = actkit.step(status, "restart-pods")
    restart.state = S.FAILED
    decision = machine.advance(status, actkit.context(recent, cause=Cause.CRASHING_PODS, pods=pods))
    assert isinstance(decision.intents[0], intents.Rollback)
    old = actkit.deployment(switched_at=at(-3 * 86400))
    decision = machine.advance(status, actkit.context(old, cause=Cause.CRASHING_PODS, pods=pods))
    skipped = actkit.step(decision.status, "rollback-crashing")
    assert skipped.state is S.SKIPPED
    assert skipped.result == "the serving revision changed 2d23h55m before the breach, not within 24h"


# --- scale-out --------------------------------------------------------------------------------


def test_scale_out_targets_current_plus_step_capped_at_max_replicas() -> None:
    md = actkit.deployment(replicas=2, maxReplicas=3)
    _, decision = first_advance(Cause.LOAD_SURGE, md)
    assert decision.intents == (intents.Scale(3, key=f"{INCIDENT}/3-scale-out/1"),)
    assert actkit.step(decision.status, "scale-out").target[intents.REPLICAS] == "3"


def test_scale_out_waits_for_ready_replicas_then_verifies() -> None:
    md = actkit.deployment(replicas=2, maxReplicas=6)
    _, decision = first_advance(Cause.LOAD_SURGE, md)
    md.status = intents.override(md.status, decision.intents[0], INCIDENT, 1, NOW)  # type: ignore[arg-type]
    status = machine.advance(decision.status, actkit.context(md, cause=Cause.LOAD_SURGE, now=at(5))).status
    assert actkit.step(status, "scale-out").verify_at is None
    md.status.ready_replicas = 4
    status = machine.advance(status, actkit.context(md, cause=Cause.LOAD_SURGE, now=at(120))).status
    assert actkit.step(status, "scale-out").verify_at == cond.rfc3339(at(210))


def test_scale_out_goes_in_rounds_until_max_replicas_then_moves_on() -> None:
    md = actkit.deployment(replicas=2, maxReplicas=6, traffic={"fallback": "resnet-big"})
    world = actkit.World(
        md=md,
        status=actkit.opened(actkit.plan(Cause.LOAD_SURGE)),
        cause=Cause.LOAD_SURGE,
        slo=lambda w: actkit.BREACHED,
        step_seconds=60,
    )
    world.run()
    scales = [i.replicas for i in world.issued if isinstance(i, intents.Scale)]
    assert scales == [4, 6]
    scale = actkit.step(world.status, "scale-out")
    assert scale.state is S.FAILED
    assert scale.result == (
        f"SLO Breached at verification ({actkit.judged(cond.parse_time(scale.finished_at or ''), 0)}); "
        "already at maxReplicas 6 (6 replicas)"
    )
    assert any(isinstance(i, intents.ShiftTraffic) for i in world.issued)


def test_scale_out_blocked_by_gpu_capacity_fails_fast_and_shifts_traffic_to_fallback() -> None:
    md = actkit.deployment(replicas=2, maxReplicas=8, traffic={"fallback": "resnet-big"})
    _, decision = first_advance(Cause.LOAD_SURGE, md, free_gpus=1, gpus=2)
    scale = actkit.step(decision.status, "scale-out")
    assert scale.state is S.FAILED
    assert scale.result == "blocked by GPU capacity: 4 nvidia.com/gpu needed, 1 free to scale from 2 to 4 replicas"
    assert decision.intents == (
        intents.ShiftTraffic((("md:resnet-big", 100),), key=f"{INCIDENT}/4-shift-to-fallback/1"),
    )
    assert decision.status.phase is incapi.Phase.MITIGATING


def test_unschedulable_pods_block_a_scale_out() -> None:
    md = actkit.deployment(replicas=2, maxReplicas=8)
    _, decision = first_advance(Cause.LOAD_SURGE, md, unschedulable=1)
    assert actkit.step(decision.status, "scale-out").result == (
        "blocked by GPU capacity: 1 pod(s) of this deployment unschedulable"
    )
    _, decision = first_advance(Cause.LOAD_SURGE, md, free_gpus=None, unschedulable=1)
    assert actkit.step(decision.status, "scale-out").state is S.FAILED


def test_unknown_free_gpus_leave_a_scale_out_to_the_scheduler_whose_unschedulable_verdict_fails_it() -> None:
    # A namespace-scoped operator cannot count other namespaces' pods: it scales and lets the
    # scheduler judge; pods it cannot place fail the step, and the plan moves on to the fallback.
    md = actkit.deployment(replicas=2, maxReplicas=8, traffic={"fallback": "resnet-big"})
    _, decision = first_advance(Cause.LOAD_SURGE, md, free_gpus=None)
    assert decision.intents == (intents.Scale(4, key=f"{INCIDENT}/3-scale-out/1"),)
    status = machine.advance(
        decision.status,
        actkit.context(md, cause=Cause.LOAD_SURGE, free_gpus=None, done=actkit.ok(*decision.intents)),
    ).status
    stuck = machine.advance(
        status, actkit.context(md, cause=Cause.LOAD_SURGE, free_gpus=None, now=at(30), unschedulable=2)
    )
    assert actkit.step(stuck.status, "scale-out").result == "blocked by GPU capacity: 2 pod(s) unschedulable"
    assert isinstance(stuck.intents[0], intents.ShiftTraffic)


def test_pods_turning_unschedulable_during_a_scale_out_fail_it_at_once() -> None:
    md = actkit.deployment(replicas=2, maxReplicas=8, traffic={"fallback": "resnet-big"})
    _, decision = first_advance(Cause.LOAD_SURGE, md)
    status = machine.advance(
        decision.status, actkit.context(md, cause=Cause.LOAD_SURGE, done=actkit.ok(*decision.intents))
    ).status
    stuck = machine.advance(status, actkit.context(md, cause=Cause.LOAD_SURGE, now=at(30), unschedulable=2))
    assert actkit.step(stuck.status, "scale-out").result == "blocked by GPU capacity: 2 pod(s) unschedulable"
    assert isinstance(stuck.intents[0], intents.ShiftTraffic)


def test_scale_out_respects_a_lower_runbook_ceiling_and_never_exceeds_spec_max() -> None:
    spec = actkit.runbook({"name": "up", "action": "scaleOut", "params": {"maxReplicas": 50}})
    md = actkit.deployment(replicas=2, maxReplicas=5)
    decision = machine.advance(
        actkit.opened(actkit.plan(Cause.LOAD_SURGE, spec)), actkit.context(md, cause=Cause.LOAD_SURGE)
    )
    assert decision.intents == (intents.Scale(5, key=f"{INCIDENT}/0-up/1"),)  # no stepReplicas: straight to max


# --- traffic ----------------------------------------------------------------------------------


def test_capacity_without_fallback_skips_the_shift_and_escalates() -> None:
    _, decision = first_advance(Cause.CAPACITY)
    shift = actkit.step(decision.status, "shift-to-fallback")
    assert shift.state is S.SKIPPED
    assert shift.result == "no spec.traffic.fallback configured"
    assert decision.status.phase is incapi.Phase.ESCALATED
    assert [type(i) for i in decision.intents] == [intents.Notify]


def test_capacity_with_fallback_shifts_all_traffic_and_escalates_when_the_slo_cannot_be_judged() -> None:
    md = actkit.deployment(traffic={"fallback": "resnet-big"})
    _, decision = first_advance(Cause.CAPACITY, md)
    (shift,) = decision.intents
    assert shift == intents.ShiftTraffic((("md:resnet-big", 100),), key=f"{INCIDENT}/4-shift-to-fallback/1")
    status = machine.advance(decision.status, actkit.context(md, cause=Cause.CAPACITY, done=actkit.ok(shift))).status
    assert actkit.step(status, "shift-to-fallback").verify_at == cond.rfc3339(at(60))
    no_traffic = sloapi.SLOState.INSUFFICIENT_TRAFFIC
    judged = machine.advance(status, actkit.context(md, cause=Cause.CAPACITY, now=at(60), slo=no_traffic))
    assert actkit.step(judged.status, "shift-to-fallback").result == (
        f"all traffic moved away: the SLO cannot be met without traffic ({actkit.judged(at(60), 0)})"
    )
    assert judged.status.phase is incapi.Phase.ESCALATED
    assert [type(i) for i in judged.intents] == [intents.Notify]


def test_a_partial_shift_keeps_the_rest_on_the_serving_revision() -> None:
    spec = actkit.runbook(
        {"name": "split", "action": "shiftTraffic", "params": {"target": "lastKnownGood", "weight": 30}}
    )
    md = actkit.deployment()
    decision = machine.advance(actkit.opened(actkit.plan(Cause.UNKNOWN, spec)), actkit.context(md, cause=Cause.UNKNOWN))
    assert decision.intents == (intents.ShiftTraffic(((GOOD, 30), (BAD, 70)), key=f"{INCIDENT}/0-split/1"),)


# --- restart pods -----------------------------------------------------------------------------


def test_restart_pods_deletes_failing_pods_one_at_a_time_when_the_others_are_ready() -> None:
    pods = [
        machine.Pod("p-1", BAD, ready=True),
        machine.Pod("p-2", BAD, ready=False, failing=True),
        machine.Pod("p-3", BAD, ready=False, failing=True),
        machine.Pod("q-1", GOOD, ready=False),  # another revision's pod does not count
    ]
    world = actkit.World(
        md=actkit.deployment(switched_at=at(-3 * 86400)),
        status=actkit.opened(actkit.plan(Cause.CRASHING_PODS)),
        cause=Cause.CRASHING_PODS,
        slo=lambda w: actkit.MET if len(w.deleted) == 2 else actkit.BREACHED,
        pods=pods,
        step_seconds=30,
    )
    world.run()
    restarts = [i for i in world.issued if isinstance(i, intents.RestartPod)]
    assert [(i.namespace, i.pod) for i in restarts] == [("ml", "p-2"), ("ml", "p-3")]
    assert world.deleted == ["p-2", "p-3"]
    assert actkit.step(world.status, "restart-pods").state is S.SUCCEEDED
    assert actkit.step(world.status, "restart-pods").target[intents.PODS] == "p-2,p-3"


def test_restart_waits_while_another_pod_of_the_revision_is_starting() -> None:
    pods = (machine.Pod("p-1", BAD, ready=False), machine.Pod("p-2", BAD, ready=False, failing=True))
    status = actkit.opened(actkit.plan(Cause.CRASHING_PODS))
    md = actkit.deployment()
    decision = machine.advance(status, actkit.context(md, cause=Cause.CRASHING_PODS, pods=pods))
    assert decision.intents == ()
    assert decision.status.timeline[-1].message == "waiting for pod(s) p-1 to be ready before restarting p-2"
    later = machine.advance(decision.status, actkit.context(md, cause=Cause.CRASHING_PODS, pods=pods, now=at(10)))
    assert later.status == decision.status  # recorded once
    expired = machine.advance(decision.status, actkit.context(md, cause=Cause.CRASHING_PODS, pods=pods, now=at(300)))
    assert actkit.step(expired.status, "restart-pods").state is S.FAILED


def test_restart_without_failing_pods_is_skipped() -> None:
    pods = (machine.Pod("p-1", BAD, ready=True),)
    decision = machine.advance(
        actkit.opened(actkit.plan(Cause.CRASHING_PODS)),
        actkit.context(actkit.deployment(), cause=Cause.CRASHING_PODS, pods=pods),
    )
    assert actkit.step(decision.status, "restart-pods").result == f"no failing pods of revision {BAD}"
    assert isinstance(decision.intents[0], intents.Rollback)  # rollback-crashing comes next


def test_a_restarted_pod_that_is_gone_counts_as_executed() -> None:
    pods = (machine.Pod("p-1", BAD, ready=False, failing=True),)
    md = actkit.deployment()
    decision = machine.advance(
        actkit.opened(actkit.plan(Cause.CRASHING_PODS)), actkit.context(md, cause=Cause.CRASHING_PODS, pods=pods)
    )
    assert decision.intents == (intents.RestartPod("ml", "p-1", key=f"{INCIDENT}/1-restart-pods/1"),)
    replay = machine.advance(decision.status, actkit.context(md, cause=Cause.CRASHING_PODS, pods=(), now=at(5)))
    assert replay.intents == ()
    assert actkit.step(replay.status, "restart-pods").state is S.VERIFYING


# --- notify -----------------------------------------------------------------------------------


def test_a_notify_step_posts_once_then_the_plan_goes_on() -> None:
    spec = actkit.runbook(
        {
            "name": "tell",
            "action": "notify",
            "params": {"webhook": {"secretKeyRef": {"name": "pager", "key": "url"}}, "message": "rolling back"},
        },
        {"name": "back", "action": "rollback"},
    )
    md = actkit.deployment()
    decision = machine.advance(actkit.opened(actkit.plan(Cause.BAD_ROLLOUT, spec)), actkit.context(md))
    assert decision.intents == (intents.Notify(PAGER, "rolling back", key=f"{INCIDENT}/0-tell/1"),)
    assert decision.status.timeline[-1].type == machine.NOTIFY  # not counted as a cluster action
    nxt = machine.advance(decision.status, actkit.context(md, done=actkit.ok(*decision.intents)))
    assert actkit.step(nxt.status, "tell").state is S.SUCCEEDED
    assert nxt.intents == (intents.Rollback(GOOD, BAD, key=f"{INCIDENT}/1-back/1"),)


def test_a_failed_notification_is_retried_with_the_same_key_until_the_timeout() -> None:
    spec = actkit.runbook(
        {"name": "tell", "action": "notify", "params": {"webhook": {"secretKeyRef": {"name": "pager", "key": "url"}}}}
    )
    md = actkit.deployment()
    decision = machine.advance(actkit.opened(actkit.plan(Cause.UNKNOWN, spec)), actkit.context(md, cause=Cause.UNKNOWN))
    (notify,) = decision.intents
    failure = {notify.key: intents.Result(ok=False, message="failed: HTTP 503")}
    retry = machine.advance(decision.status, actkit.context(md, cause=Cause.UNKNOWN, now=at(5), done=failure))
    assert retry.intents == (notify,)
    assert retry.status.timeline[-1].message == f"{intents.describe(notify)} failed: failed: HTTP 503; retrying"
    again = machine.advance(retry.status, actkit.context(md, cause=Cause.UNKNOWN, now=at(10), done=failure))
    assert again.intents == (notify,)
    assert len(again.status.timeline) == len(retry.status.timeline)
    gave_up = machine.advance(again.status, actkit.context(md, cause=Cause.UNKNOWN, now=at(300), done=failure))
    assert actkit.step(gave_up.status, "tell").state is S.FAILED
    assert gave_up.status.phase is incapi.Phase.ESCALATED


def test_escalation_uses_the_first_webhook_of_the_runbook() -> None:
    spec = actkit.runbook(
        {"name": "back", "action": "rollback", "onFailure": "escalate"},
        {
            "name": "tell",
            "action": "notify",
            "params": {"webhook": {"secretKeyRef": {"name": "oncall", "key": "hook"}, "allowInsecure": True}},
        },
    )
    md = actkit.deployment(revisions=(actkit.revision(BAD, False),))
    decision = machine.advance(actkit.opened(actkit.plan(Cause.BAD_ROLLOUT, spec)), actkit.context(md))
    # rollback skipped, notify step posts, then the exhausted plan escalates to the same webhook
    assert [type(i) for i in decision.intents] == [intents.Notify]
    decision = machine.advance(decision.status, actkit.context(md, done=actkit.ok(*decision.intents)))
    (escalation,) = decision.intents
    assert isinstance(escalation, intents.Notify)
    assert escalation.webhook == intents.WebhookRef("oncall", "hook", allow_insecure=True)


# --- verification -----------------------------------------------------------------------------


def verifying_shift(md: mdapi.ModelDeployment, weight: int = 50) -> incapi.IncidentStatus:
    spec = actkit.runbook(
        {"name": "split", "action": "shiftTraffic", "params": {"target": "fallback", "weight": weight}},
    )
    decision = machine.advance(actkit.opened(actkit.plan(Cause.UNKNOWN, spec)), actkit.context(md, cause=Cause.UNKNOWN))
    return machine.advance(
        decision.status, actkit.context(md, cause=Cause.UNKNOWN, done=actkit.ok(*decision.intents))
    ).status


def test_a_warning_at_verification_gets_one_more_period_then_fails() -> None:
    md = actkit.deployment(traffic={"fallback": "resnet-big"})
    status = verifying_shift(md)
    warning = sloapi.SLOState.WARNING
    wait = machine.advance(status, actkit.context(md, cause=Cause.UNKNOWN, now=at(60), slo=warning))
    assert actkit.step(wait.status, "split").state is S.VERIFYING
    assert "verification inconclusive (SLO Warning)" in wait.status.timeline[-1].message
    met = machine.advance(wait.status, actkit.context(md, cause=Cause.UNKNOWN, now=at(90), slo=actkit.MET))
    assert actkit.step(met.status, "split").state is S.SUCCEEDED
    late = machine.advance(wait.status, actkit.context(md, cause=Cause.UNKNOWN, now=at(120), slo=warning))
    assert actkit.step(late.status, "split").state is S.FAILED


def test_a_breach_returning_after_success_escalates() -> None:
    md = actkit.deployment(traffic={"fallback": "resnet-big"})
    status = verifying_shift(md)
    done = machine.advance(status, actkit.context(md, cause=Cause.UNKNOWN, now=at(60), slo=actkit.MET)).status
    quiet = machine.advance(done, actkit.context(md, cause=Cause.UNKNOWN, now=at(80), slo=actkit.MET))
    assert quiet.status == done
    assert quiet.intents == ()
    back = machine.advance(done, actkit.context(md, cause=Cause.UNKNOWN, now=at(100)))
    assert back.status.phase is incapi.Phase.ESCALATED
    assert "SLO breached again after step split succeeded" in back.status.timeline[-2].message
    assert [type(i) for i in back.intents] == [intents.Notify]


# --- holds ------------------------------------------------------------------------------------


def test_missing_metrics_hold_every_action_and_are_recorded_once() -> None:
    md = actkit.deployment()
    status = actkit.opened(actkit.plan(Cause.BAD_ROLLOUT))
    held = machine.advance(status, actkit.context(md, metrics=False))
    assert held.intents == ()
    assert held.status.timeline[-1].message == machine.HOLD_NO_METRICS
    assert actkit.step(held.status, "rollback").state is S.PENDING
    again = machine.advance(held.status, actkit.context(md, now=at(5), slo=sloapi.SLOState.NO_DATA))
    assert again.status == held.status
    assert again.events == ()
    back = machine.advance(held.status, actkit.context(md, now=at(10)))
    assert isinstance(back.intents[0], intents.Rollback)


def test_a_recorded_intent_is_not_reissued_while_metrics_are_missing() -> None:
    md, decision = first_advance(Cause.BAD_ROLLOUT)
    held = machine.advance(decision.status, actkit.context(md, now=at(5), slo=None))
    assert held.intents == ()
    assert actkit.step(held.status, "rollback").state is S.INTENDED
    assert held.status.timeline[-1].message == machine.HOLD_NO_METRICS


def test_verification_holds_without_metrics_instead_of_judging() -> None:
    md = actkit.deployment(traffic={"fallback": "resnet-big"})
    status = verifying_shift(md)
    held = machine.advance(status, actkit.context(md, cause=Cause.UNKNOWN, now=at(600), metrics=False))
    assert actkit.step(held.status, "split").state is S.VERIFYING


def test_no_new_action_unless_the_slo_is_breached() -> None:
    md = actkit.deployment()
    status = actkit.opened(actkit.plan(Cause.BAD_ROLLOUT))
    for state in (sloapi.SLOState.MET, sloapi.SLOState.WARNING, sloapi.SLOState.INSUFFICIENT_TRAFFIC):
        held = machine.advance(status, actkit.context(md, slo=state))
        assert held.intents == ()
        assert held.status.timeline[-1].message == f"holding: SLO {state}, acting only while Breached"


# --- modes ------------------------------------------------------------------------------------


def test_dry_run_records_every_applicable_step_and_returns_no_intents() -> None:
    md = actkit.deployment(replicas=2, maxReplicas=6, traffic={"fallback": "resnet-big"})
    status = actkit.opened(actkit.plan(Cause.LOAD_SURGE, mode=rbapi.Mode.DRY_RUN))
    decision = machine.advance(status, actkit.context(md, cause=Cause.LOAD_SURGE))
    assert decision.intents == ()
    assert actkit.states(decision.status)[3:] == [
        ("scale-out", S.DRY_RUN),
        ("shift-to-fallback", S.DRY_RUN),
        (machine.ESCALATE, S.DRY_RUN),
    ]
    assert actkit.step(decision.status, "scale-out").result == "dry run: would scale to 4 replicas"
    assert actkit.step(decision.status, "scale-out").target[intents.REPLICAS] == "4"
    assert decision.status.phase is incapi.Phase.ESCALATED
    assert not guards.acted(decision.status.plan)  # type: ignore[arg-type]
    assert machine.advance(decision.status, actkit.context(md, cause=Cause.LOAD_SURGE, now=at(5))).intents == ()


def test_dry_run_records_a_blocked_step_as_what_would_happen() -> None:
    md = actkit.deployment(replicas=2, maxReplicas=6)
    status = actkit.opened(actkit.plan(Cause.LOAD_SURGE, mode=rbapi.Mode.DRY_RUN))
    decision = machine.advance(status, actkit.context(md, cause=Cause.LOAD_SURGE, free_gpus=0))
    assert actkit.step(decision.status, "scale-out").result == (
        "dry run: would fail: blocked by GPU capacity: 2 nvidia.com/gpu needed, 0 free to scale from 2 to 4 replicas"
    )


def test_a_paused_deployment_acts_on_nothing_even_in_an_auto_plan() -> None:
    md = actkit.deployment(paused=True)
    decision = machine.advance(actkit.opened(actkit.plan(Cause.BAD_ROLLOUT)), actkit.context(md))
    assert decision.intents == ()
    assert actkit.step(decision.status, "rollback").state is S.DRY_RUN


def test_approval_mode_waits_for_the_annotation_then_acts() -> None:
    spec = actkit.runbook({"name": "back", "action": "rollback"}, mode="approval")
    md = actkit.deployment()
    status = actkit.opened(actkit.plan(Cause.BAD_ROLLOUT, spec))
    waiting = machine.advance(status, actkit.context(md))
    assert waiting.intents == ()
    assert waiting.status.phase is incapi.Phase.AWAITING_APPROVAL
    message = (
        f"awaiting approval to roll back to revision {GOOD} (from {BAD}): annotate the Incident vigil.dev/approve=true"
    )
    assert waiting.status.timeline[-1].message == message
    assert actkit.step(waiting.status, "back").result == message
    still = machine.advance(waiting.status, actkit.context(md, now=at(30), annotations={"vigil.dev/approve": "no"}))
    assert still.status == waiting.status
    assert still.intents == ()
    approved = machine.advance(
        waiting.status, actkit.context(md, now=at(60), annotations={"vigil.dev/approve": "true"})
    )
    assert approved.status.phase is incapi.Phase.MITIGATING
    assert approved.intents == (intents.Rollback(GOOD, BAD, key=f"{INCIDENT}/0-back/1"),)
    assert [e.type for e in approved.status.timeline[-2:]] == [machine.APPROVED, guards.INTENT]


def test_approval_uses_the_runbooks_annotation_and_does_not_gate_escalation() -> None:
    spec = actkit.runbook({"name": "back", "action": "rollback"}, mode="approval", approvalAnnotation="ops/ok")
    md = actkit.deployment(revisions=(actkit.revision(BAD, False),))
    decision = machine.advance(actkit.opened(actkit.plan(Cause.BAD_ROLLOUT, spec)), actkit.context(md))
    assert decision.status.phase is incapi.Phase.ESCALATED
    assert [type(i) for i in decision.intents] == [intents.Notify]
    md = actkit.deployment()
    status = actkit.opened(actkit.plan(Cause.BAD_ROLLOUT, spec))
    assert machine.advance(status, actkit.context(md, annotations={"vigil.dev/approve": "true"})).intents == ()
    assert machine.advance(status, actkit.context(md, annotations={"ops/ok": "true"})).intents != ()


# --- guards -----------------------------------------------------------------------------------


def test_cooldown_holds_the_first_action_of_a_new_plan_and_records_it_once() -> None:
    md = actkit.deployment()
    status = actkit.opened(actkit.plan(Cause.BAD_ROLLOUT))
    held = machine.advance(status, actkit.context(md, last_plan_ended_at=at(-120)))
    assert held.intents == ()
    assert held.status.timeline[-1].message == ("holding: cooldown 10m after the last plan, until 2026-11-22T12:08:00Z")
    assert any(e.type == "Warning" and e.reason == "Holding" for e in held.events)
    again = machine.advance(held.status, actkit.context(md, now=at(60), last_plan_ended_at=at(-120)))
    assert again.status == held.status
    after = machine.advance(held.status, actkit.context(md, now=at(480), last_plan_ended_at=at(-120)))
    assert isinstance(after.intents[0], intents.Rollback)


def test_max_actions_per_hour_holds_new_actions() -> None:
    md = actkit.deployment()
    status = actkit.opened(actkit.plan(Cause.BAD_ROLLOUT))
    held = machine.advance(status, actkit.context(md, actions_last_hour=6))
    assert held.intents == ()
    assert held.status.timeline[-1].message == "holding: maxActionsPerHour (6) reached for this deployment"
    assert machine.advance(status, actkit.context(md, actions_last_hour=5)).intents != ()


def test_guards_hold_the_next_round_while_verification_goes_on() -> None:
    md = actkit.deployment(replicas=2, maxReplicas=8)
    _, decision = first_advance(Cause.LOAD_SURGE, md)
    md.status = intents.override(md.status, decision.intents[0], INCIDENT, 1, NOW)  # type: ignore[arg-type]
    md.status.ready_replicas = 4
    status = machine.advance(decision.status, actkit.context(md, cause=Cause.LOAD_SURGE)).status
    limited = actkit.context(md, cause=Cause.LOAD_SURGE, now=at(90), actions_last_hour=6, last_plan_ended_at=at(-60))
    held = machine.advance(status, limited)
    assert held.intents == ()
    assert actkit.step(held.status, "scale-out").state is S.VERIFYING
    assert held.status.timeline[-1].message == "holding: maxActionsPerHour (6) reached for this deployment"
    # a recent plan's cooldown does not stop a plan that is already acting
    free = actkit.context(md, cause=Cause.LOAD_SURGE, now=at(95), last_plan_ended_at=at(-60))
    assert machine.advance(held.status, free).intents == (intents.Scale(6, key=f"{INCIDENT}/3-scale-out/2"),)
    met = actkit.context(md, cause=Cause.LOAD_SURGE, now=at(95), slo=actkit.MET, actions_last_hour=6)
    assert actkit.step(machine.advance(held.status, met).status, "scale-out").state is S.SUCCEEDED


# --- cancellation and stop --------------------------------------------------------------------


def spec_generation(generation: int, desired: str | None, **spec: object) -> mdapi.ModelDeployment:
    """The deployment after a spec edit: ``generation``, whose spec asks for revision ``desired``."""
    md = actkit.deployment(generation=generation, **spec)  # type: ignore[arg-type]
    md.status.desired_revision = desired
    return md


def rolled_back_and_verifying() -> tuple[mdapi.ModelDeployment, incapi.IncidentStatus]:
    """A bad rollout whose rollback was found applied and in effect at 5 s: judged at 65 s."""
    md, decision = first_advance(Cause.BAD_ROLLOUT)
    md.status = intents.override(md.status, decision.intents[0], INCIDENT, 1, NOW)  # type: ignore[arg-type]
    md.status.current_revision = GOOD
    md.status.desired_revision = BAD
    status = machine.advance(decision.status, actkit.context(md, now=at(5))).status
    assert actkit.step(status, "rollback").verify_at == cond.rfc3339(at(65))
    return md, status


def test_a_new_revision_cancels_the_running_plan_without_intents() -> None:
    _, decision = first_advance(Cause.BAD_ROLLOUT)
    newer = spec_generation(2, "new0000000")
    cancelled = machine.advance(decision.status, actkit.context(newer, now=at(10)))
    assert cancelled.intents == ()
    assert actkit.step(cancelled.status, "rollback").state is S.CANCELLED
    assert all(state in guards.TERMINAL for _, state in actkit.states(cancelled.status))
    assert cancelled.status.phase is incapi.Phase.ESCALATED
    assert cancelled.status.timeline[-1].message == (
        f"plan cancelled: spec generation 2 asks for revision new0000000, superseding the plan made for "
        f"revision {BAD} and the overrides made for it"
    )
    assert [e.reason for e in cancelled.events] == ["PlanCancelled"]
    again = machine.advance(cancelled.status, actkit.context(newer, now=at(20)))
    assert again.status == cancelled.status
    assert again.intents == ()


def test_a_new_generation_of_unknown_revision_cancels_the_plan_as_before() -> None:
    _, decision = first_advance(Cause.BAD_ROLLOUT)
    cancelled = machine.advance(decision.status, actkit.context(spec_generation(2, None), now=at(10)))
    assert actkit.step(cancelled.status, "rollback").state is S.CANCELLED
    assert cancelled.status.timeline[-1].message == (
        "plan cancelled: spec generation 2 supersedes generation 1 (and the overrides made for it)"
    )


def test_kubectl_scale_during_the_rollbacks_verification_keeps_the_plan_which_then_succeeds() -> None:
    md, status = rolled_back_and_verifying()
    scaled = spec_generation(2, BAD, replicas=3)
    scaled.status = md.status.model_copy(deep=True)
    assert scaled.status.rollback is not None
    scaled.status.rollback.generation = 2  # what the reconcile core does (RollbackKept)
    kept = machine.advance(status, actkit.context(scaled, now=at(20)))
    assert kept.intents == ()
    assert actkit.step(kept.status, "rollback").state is S.VERIFYING
    assert kept.status.phase is incapi.Phase.MITIGATING
    note = kept.status.timeline[-1]
    assert (note.type, note.message) == (
        machine.SPEC_CHANGED,
        f"spec generation 2 keeps revision {BAD}: the plan continues, serving the rollback to {GOOD} "
        "at the spec's replicas",
    )
    assert [e.reason for e in kept.events] == ["PlanContinues"]
    # said once per generation, however many passes follow
    later = machine.advance(kept.status, actkit.context(scaled, now=at(30)))
    assert later.status == kept.status
    assert later.events == ()
    done = machine.advance(later.status, actkit.context(scaled, now=at(65), slo=actkit.MET))
    assert actkit.step(done.status, "rollback").state is S.SUCCEEDED
    assert [e.type for e in done.status.timeline].count(machine.SPEC_CHANGED) == 1


def test_a_rollback_intended_before_a_scale_is_still_carried_out_after_it() -> None:
    _, decision = first_advance(Cause.BAD_ROLLOUT)
    (intent,) = decision.intents
    replay = machine.advance(decision.status, actkit.context(spec_generation(2, BAD, replicas=3), now=at(5)))
    assert replay.intents == (intent,)  # the same recorded intent: the bad revision is still the spec's
    assert actkit.step(replay.status, "rollback").state is S.INTENDED


def test_the_plans_own_revision_decides_not_the_breached_one() -> None:
    """A breach judged on the serving revision while the spec already asked for another one."""
    spec = actkit.runbook({"name": "tell", "action": "notify"}, {"name": "again", "action": "notify"})
    plan = machine.start_plan("custom", spec, None, Cause.UNKNOWN, NOW, revision="next000000")
    scaled = spec_generation(2, "next000000", replicas=3)
    kept = machine.advance(actkit.opened(plan), actkit.context(scaled, cause=Cause.UNKNOWN))
    assert actkit.step(kept.status, "tell").state is S.INTENDED
    assert any(e.type == machine.SPEC_CHANGED for e in kept.status.timeline)


def test_a_scale_supersedes_a_plan_whose_scale_out_it_replaces() -> None:
    md = spec_generation(1, GOOD, replicas=2, maxReplicas=8, current=GOOD, previous=None)
    plan = machine.start_plan(runbooks.BUILTIN, runbooks.builtin_default(), None, Cause.LOAD_SURGE, NOW, GOOD)
    decision = machine.advance(actkit.opened(plan), actkit.context(md, cause=Cause.LOAD_SURGE))
    assert isinstance(decision.intents[0], intents.Scale)
    scaled = spec_generation(2, GOOD, replicas=3, maxReplicas=8, current=GOOD, previous=None)
    cancelled = machine.advance(decision.status, actkit.context(scaled, cause=Cause.LOAD_SURGE, now=at(5)))
    assert cancelled.intents == ()
    assert actkit.step(cancelled.status, "scale-out").state is S.CANCELLED
    assert cancelled.status.timeline[-1].message == (
        f"plan cancelled: spec generation 2 keeps revision {GOOD} but sets replicas and traffic itself, "
        "superseding what step scale-out (scaleOut) changed"
    )


def test_on_failure_stop_hands_over_without_notifying() -> None:
    spec = actkit.runbook(
        {"name": "up", "action": "scaleOut", "onFailure": "stop"},
        {"name": "tell", "action": "notify"},
    )
    md = actkit.deployment(replicas=2, maxReplicas=2)
    decision = machine.advance(
        actkit.opened(actkit.plan(Cause.LOAD_SURGE, spec)), actkit.context(md, cause=Cause.LOAD_SURGE)
    )
    assert decision.intents == ()
    assert actkit.states(decision.status) == [("up", S.FAILED), ("tell", S.SKIPPED)]
    assert decision.status.phase is incapi.Phase.ESCALATED
    assert decision.status.timeline[-1].type == machine.STOPPED


def test_a_custom_plan_without_its_runbook_snapshot_is_cancelled() -> None:
    plan = actkit.plan(Cause.BAD_ROLLOUT, actkit.runbook({"name": "back", "action": "rollback"}))
    plan.spec = None  # e.g. pruned by an API server running an older Incident CRD
    decision = machine.advance(actkit.opened(plan), actkit.context(actkit.deployment()))
    assert decision.intents == ()
    assert decision.status.timeline[-1].message == "plan cancelled: the plan carries no snapshot of runbook custom"


def test_a_builtin_plan_without_snapshot_runs_the_builtin_default() -> None:
    plan = actkit.plan(Cause.BAD_ROLLOUT)
    plan.spec = None
    decision = machine.advance(actkit.opened(plan), actkit.context(actkit.deployment()))
    assert isinstance(decision.intents[0], intents.Rollback)


# --- determinism and records ------------------------------------------------------------------


def test_the_same_state_and_context_give_the_same_decision() -> None:
    md = actkit.deployment()
    status = actkit.opened(actkit.plan(Cause.BAD_ROLLOUT))
    ctx = actkit.context(md)
    assert machine.advance(status, ctx) == machine.advance(status, ctx)
    assert status == actkit.opened(actkit.plan(Cause.BAD_ROLLOUT))  # the input is not mutated


def test_the_timeline_stays_bounded_and_keeps_the_detected_entry() -> None:
    md = actkit.deployment()
    status = actkit.opened(actkit.plan(Cause.BAD_ROLLOUT))
    status.timeline += [
        incapi.TimelineEntry(time=cond.rfc3339(NOW), type="Note", message=str(n)) for n in range(incapi.TIMELINE_LIMIT)
    ]
    decision = machine.advance(status, actkit.context(md))
    assert len(decision.status.timeline) == incapi.TIMELINE_LIMIT
    assert decision.status.timeline[0].type == "Detected"
    assert decision.status.timeline[-1].type == guards.INTENT


def test_unknown_cause_notifies_and_escalates() -> None:
    _, decision = first_advance(Cause.UNKNOWN)
    assert all(state is S.SKIPPED for _, state in actkit.states(decision.status)[:-1])
    assert decision.status.phase is incapi.Phase.ESCALATED
    (notify,) = decision.intents
    assert isinstance(notify, intents.Notify)
    assert notify.webhook is None
    assert notify.message.startswith(f"vigil escalates incident {INCIDENT}: ModelDeployment resnet SLO latency")


def test_events_warn_on_failures_and_escalations() -> None:
    md = actkit.deployment(revisions=(actkit.revision(BAD, False),))
    _, decision = first_advance(Cause.BAD_ROLLOUT, md)
    reasons = {(e.type, e.reason) for e in decision.events}
    assert ("Normal", "PlanStarted") in reasons
    assert ("Normal", "StepSkipped") in reasons
    assert ("Warning", "Escalated") in reasons


def test_cooldown_window_is_exclusive_of_plans_that_took_no_action() -> None:
    finished = actkit.opened(actkit.plan(Cause.UNKNOWN))
    decision = machine.advance(finished, actkit.context(actkit.deployment(), cause=Cause.UNKNOWN))
    delivered = machine.advance(
        decision.status, actkit.context(actkit.deployment(), cause=Cause.UNKNOWN, done=actkit.ok(*decision.intents))
    )
    assert guards.finished(delivered.status.plan)  # type: ignore[arg-type]
    assert guards.last_plan_end([delivered.status]) is None


def test_intents_key_is_stable_per_incident_step_and_round() -> None:
    _, decision = first_advance(Cause.LOAD_SURGE, actkit.deployment(replicas=1, maxReplicas=9))
    assert [i.key for i in decision.intents] == [f"{INCIDENT}/3-scale-out/1"]
    assert (
        datetime.datetime.fromisoformat(
            actkit.step(decision.status, "scale-out").target[intents.INTENDED_AT].replace("Z", "+00:00")
        )
        == NOW
    )
