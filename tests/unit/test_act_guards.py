"""Guards: counting actions and plan ends from Incident records, and what they block."""

from __future__ import annotations

import datetime

from tests.unit import actkit
from tests.unit.actkit import NOW, at
from vigil.act import guards, intents, machine
from vigil.api import conditions as cond
from vigil.api import incident as incapi
from vigil.api import runbook as rbapi

S = incapi.StepState


def entry(type_: str, seconds: float) -> incapi.TimelineEntry:
    return incapi.TimelineEntry(time=cond.rfc3339(at(seconds)), type=type_, message="m")


def acted_plan(finished_seconds: float) -> incapi.Plan:
    return incapi.Plan(
        runbook="x",
        mode=rbapi.Mode.AUTO,
        current=1,
        steps=[
            incapi.StepProgress(
                name="up",
                action=rbapi.Action.SCALE_OUT,
                state=S.SUCCEEDED,
                target={intents.REPLICAS: "4", intents.INTENDED_AT: cond.rfc3339(at(finished_seconds - 60))},
                finished_at=cond.rfc3339(at(finished_seconds)),
            )
        ],
    )


def test_actions_within_counts_recorded_cluster_actions_in_the_window() -> None:
    one = incapi.IncidentStatus(
        timeline=[entry(guards.INTENT, -3700), entry(guards.INTENT, -3500), entry("Notify", -10)]
    )
    two = incapi.IncidentStatus(
        timeline=[entry(guards.INTENT, -60), entry(machine.DRY_RUN, -30), entry(guards.INTENT, 5)]
    )
    assert guards.actions_within([one, two], NOW) == 2
    assert guards.actions_within([one, two], NOW, datetime.timedelta(minutes=5)) == 1


def test_last_plan_end_is_the_latest_end_of_a_finished_plan_that_acted() -> None:
    old = incapi.IncidentStatus(plan=acted_plan(-900))
    recent = incapi.IncidentStatus(plan=acted_plan(-300))
    running = incapi.IncidentStatus(plan=acted_plan(-10))
    running.plan.current = 0  # type: ignore[union-attr]
    idle = incapi.IncidentStatus(plan=actkit.plan(rbapi.Cause.UNKNOWN))
    assert guards.last_plan_end([old, recent, running, idle, incapi.IncidentStatus()]) == at(-300)
    assert guards.last_plan_end([]) is None


def test_plan_predicates() -> None:
    plan = acted_plan(0)
    assert guards.finished(plan)
    assert guards.acted(plan)
    assert guards.succeeded(plan) is plan.steps[0]
    notify_only = incapi.Plan(
        runbook="x",
        mode=rbapi.Mode.AUTO,
        current=1,
        steps=[
            incapi.StepProgress(
                name="tell", action=rbapi.Action.NOTIFY, state=S.SUCCEEDED, target={intents.INTENDED_AT: "t"}
            )
        ],
    )
    assert not guards.acted(notify_only)
    assert guards.succeeded(notify_only) is None
    assert not guards.finished(actkit.plan(rbapi.Cause.BAD_ROLLOUT))


def test_blocked_names_the_cooldown_then_the_rate_limit() -> None:
    limits = rbapi.Guards(cooldown="10m", max_actions_per_hour=3)
    fresh = actkit.plan(rbapi.Cause.BAD_ROLLOUT)
    assert guards.blocked(limits, fresh, 0, at(-60), NOW) == (
        "holding: cooldown 10m after the last plan, until 2026-11-22T12:09:00Z"
    )
    assert guards.blocked(limits, fresh, 0, at(-600), NOW) is None
    assert guards.blocked(limits, fresh, 3, None, NOW) == "holding: maxActionsPerHour (3) reached for this deployment"
    assert guards.blocked(limits, acted_plan(-30), 2, at(-60), NOW) is None  # an acting plan is past its cooldown
