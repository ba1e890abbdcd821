"""State-in/state-out tests of scale-out rounds sized from the measured demand, and of the cooldown
waiver for load that keeps rising past what the last plan provisioned."""

from __future__ import annotations

import math
import pathlib

import pytest
import yaml

from tests.unit import actkit
from tests.unit.actkit import INCIDENT, NOW, at
from vigil.act import guards, intents, machine, runbooks, sizing
from vigil.api import conditions as cond
from vigil.api import incident as incapi
from vigil.api import runbook as rbapi
from vigil.api import slo as sloapi
from vigil.observe import slo
from vigil.reconcile import healing

S = incapi.StepState
Cause = rbapi.Cause
ROOT = pathlib.Path(__file__).resolve().parents[2]

# One replica saturated (busy 0.98) completing 30 req/s while its queue grows by 14 req/s:
# 44 req/s arrive, each busy replica serves ~30.6 req/s.
SATURATED = sizing.Demand(request_rate=30.0, busy_replicas=0.98, queue_growth=14.0, window_seconds=30)


def demand_runbook(
    target_utilization: int = 70, step_replicas: int | None = None, **guards: object
) -> rbapi.RunbookSpec:
    params: dict[str, object] = {"targetUtilization": target_utilization}
    if step_replicas is not None:
        params["stepReplicas"] = step_replicas
    step = {"name": "scale-out", "action": "scaleOut", "params": params, "verifyAfter": "90s"}
    return actkit.runbook(step, **({"guards": guards} if guards else {}))


def start(md: object, spec: rbapi.RunbookSpec, demand: sizing.Demand | None, **ctx: object) -> machine.Decision:
    status = actkit.opened(actkit.plan(Cause.LOAD_SURGE, spec))
    return machine.advance(status, actkit.context(md, cause=Cause.LOAD_SURGE, demand=demand, **ctx))  # type: ignore[arg-type]


# --- the estimate ---------------------------------------------------------------------------------


def test_demand_is_completions_plus_queue_growth_over_the_capacity_of_a_busy_replica() -> None:
    sized = sizing.size(SATURATED, 70)
    assert isinstance(sized, sizing.Sized)
    assert sized.arrivals == 44.0
    assert sized.capacity == pytest.approx(30.0 / 0.98)
    assert sized.replicas == math.ceil(44.0 / (30.0 / 0.98 * 0.7))  # 3
    assert str(sized) == (
        "demand 44.0 req/s over 30s at 30.6 req/s per busy replica needs 3 replicas at 70% utilisation"
    )


def test_a_draining_queue_lowers_the_demand_its_completions_overstate() -> None:
    draining = sizing.Demand(request_rate=90.0, busy_replicas=3.0, queue_growth=-30.0, window_seconds=30)
    sized = sizing.size(draining, 100)
    assert isinstance(sized, sizing.Sized)
    assert (sized.arrivals, sized.replicas) == (60.0, 2)


def test_capacity_is_measured_from_utilisation_not_assumed_saturated() -> None:
    # Two replicas half busy serving 30 req/s: each could serve 30 at full use; 30 req/s at 50 % needs 2.
    half = sizing.Demand(request_rate=30.0, busy_replicas=1.0, queue_growth=0.0)
    sized = sizing.size(half, 50)
    assert isinstance(sized, sizing.Sized)
    assert (sized.capacity, sized.replicas) == (30.0, 2)


@pytest.mark.parametrize(
    ("demand", "why"),
    [
        (None, "no measured demand"),
        (sizing.Demand(None, 1.0, 0.0), "request rate not reported"),
        (sizing.Demand(30.0, None, 0.0), "GPU utilisation not reported"),
        (sizing.Demand(float("nan"), 1.0, 0.0), "request rate not reported"),
        (sizing.Demand(30.0, float("inf"), 0.0), "GPU utilisation not reported"),
        (sizing.Demand(0.5, 0.01, 0.0), "too little work to measure capacity (0.50 req/s, 0.01 busy replicas)"),
        (sizing.Demand(0.0, 0.5, 0.0), "too little work to measure capacity (0.00 req/s, 0.50 busy replicas)"),
    ],
)
def test_missing_or_meaningless_data_sizes_nothing_and_says_why(demand: sizing.Demand | None, why: str) -> None:
    assert sizing.size(demand, 70) == why


def test_unknown_queue_growth_counts_as_none() -> None:
    sized = sizing.size(sizing.Demand(30.0, 1.0, None), 100)
    assert isinstance(sized, sizing.Sized)
    assert sized.arrivals == 30.0
    assert sized.replicas == 1


# A saturated replica (44 req/s arrive, 30.6 served per busy replica) after a baseline of 20 req/s
# whose middle lies 60 s before the current window's: the offered rate rose 0.4 req/s per second.
RISING = sizing.Demand(
    request_rate=30.0,
    busy_replicas=0.98,
    queue_growth=14.0,
    window_seconds=30,
    baseline_rate=20.0,
    baseline_lag_seconds=60.0,
)


def test_sized_ahead_a_round_carries_the_measured_rise_until_it_is_judged() -> None:
    sized = sizing.size(RISING, 70, ahead_seconds=90)
    assert isinstance(sized, sizing.Sized)
    # 44 req/s now (the window's middle, 15 s ago) + 0.4 req/s per second x (90 + 15) s = 86 req/s.
    assert sized.trend == pytest.approx(0.4)
    assert sized.projected == pytest.approx(86.0)
    assert sized.replicas == math.ceil(86.0 / (30.0 / 0.98 * 0.7))  # 5, where the demand now needs 3
    assert str(sized) == (
        "demand 44.0 req/s over 30s, rising 0.40 req/s per second: 86.0 req/s 90s ahead at 30.6 req/s per busy "
        "replica needs 5 replicas at 70% utilisation"
    )


def test_a_projection_is_capped_at_twice_the_demand_now() -> None:
    from_nothing = sizing.Demand(30.0, 0.98, 14.0, 30, baseline_rate=0.0, baseline_lag_seconds=10.0)
    sized = sizing.size(from_nothing, 70, ahead_seconds=90)
    assert isinstance(sized, sizing.Sized)
    assert sized.projected == pytest.approx(sizing.MAX_PROJECTION * 44.0)


def test_zero_ahead_reads_a_rising_demand_at_the_end_of_its_window() -> None:
    sized = sizing.size(RISING, 70, ahead_seconds=0)
    assert isinstance(sized, sizing.Sized)
    # The window's average (44 req/s) is the rate at its middle, 15 s ago: 44 + 0.4 x 15 = 50 now.
    assert sized.projected == pytest.approx(50.0)
    assert str(sized) == (
        "demand 44.0 req/s over 30s, rising 0.40 req/s per second: 50.0 req/s now at 30.6 req/s per busy "
        "replica needs 3 replicas at 70% utilisation"
    )


@pytest.mark.parametrize(
    ("demand", "ahead", "why"),
    [
        (RISING, None, "no sizeAhead: the demand now"),
        (sizing.Demand(30.0, 0.98, 14.0, 30, baseline_rate=60.0, baseline_lag_seconds=60.0), 0, "falling, now"),
        (sizing.Demand(30.0, 0.98, 14.0, 30, baseline_rate=60.0, baseline_lag_seconds=60.0), 90, "a falling load"),
        (sizing.Demand(30.0, 0.98, 14.0, 30, baseline_rate=44.0, baseline_lag_seconds=60.0), 90, "a steady load"),
        (sizing.Demand(30.0, 0.98, 14.0, 30), 90, "no baseline (a young deployment)"),
        (sizing.Demand(30.0, 0.98, 14.0, 30, baseline_rate=float("nan"), baseline_lag_seconds=60.0), 90, "NaN"),
    ],
)
def test_only_a_measured_rise_is_extrapolated(demand: sizing.Demand, ahead: int | None, why: str) -> None:
    sized = sizing.size(demand, 70, ahead_seconds=ahead)
    assert isinstance(sized, sizing.Sized), why
    assert (sized.projected, sized.trend, sized.replicas) == (None, None, 3), why
    assert "rising" not in str(sized), why


def test_target_utilization_must_be_a_percentage() -> None:
    with pytest.raises(ValueError, match="percentage"):
        sizing.size(SATURATED, 0)


# --- rounds in the step machine -------------------------------------------------------------------


def test_a_round_is_sized_from_the_demand_and_records_what_it_was_sized_for() -> None:
    md = actkit.deployment(replicas=1, maxReplicas=10)
    big = sizing.Demand(request_rate=30.0, busy_replicas=1.0, queue_growth=60.0, window_seconds=30)  # 90 req/s
    decision = start(md, demand_runbook(), big)
    assert decision.intents == (intents.Scale(5, key=f"{INCIDENT}/0-scale-out/1"),)
    progress = actkit.step(decision.status, "scale-out")
    assert progress.target[machine.SIZED_FOR] == (
        "demand 90.0 req/s over 30s at 30.0 req/s per busy replica needs 5 replicas at 70% utilisation"
    )
    assert decision.status.timeline[-1].message == (f"scale to 5 replicas: {progress.target[machine.SIZED_FOR]}")


def test_a_demand_sized_round_adds_at_least_step_replicas_and_stays_under_the_ceiling() -> None:
    md = actkit.deployment(replicas=2, maxReplicas=4)
    modest = sizing.Demand(request_rate=30.0, busy_replicas=1.0, queue_growth=0.0, window_seconds=30)  # needs 2
    assert start(md, demand_runbook(), modest).intents[0] == intents.Scale(3, key=f"{INCIDENT}/0-scale-out/1")
    assert start(md, demand_runbook(step_replicas=2), modest).intents[0].replicas == 4  # type: ignore[union-attr]
    huge = sizing.Demand(request_rate=30.0, busy_replicas=1.0, queue_growth=600.0, window_seconds=30)
    assert start(md, demand_runbook(), huge).intents[0].replicas == 4  # type: ignore[union-attr]


def test_without_usable_demand_a_round_adds_the_fixed_step_and_says_why() -> None:
    md = actkit.deployment(replicas=2, maxReplicas=10)
    decision = start(md, demand_runbook(step_replicas=2), None)
    assert decision.intents[0] == intents.Scale(4, key=f"{INCIDENT}/0-scale-out/1")
    assert actkit.step(decision.status, "scale-out").target[machine.SIZED_FOR] == "no measured demand: by stepReplicas"


def test_the_next_round_is_sized_from_the_demand_measured_then() -> None:
    md = actkit.deployment(replicas=1, maxReplicas=10)
    first = start(md, demand_runbook(), SATURATED)
    assert first.intents[0].replicas == 3  # type: ignore[union-attr]
    md.status = intents.override(md.status, first.intents[0], INCIDENT, 1, NOW)  # type: ignore[arg-type]
    md.status.ready_replicas = 3
    effective = machine.advance(first.status, actkit.context(md, cause=Cause.LOAD_SURGE, now=at(5))).status
    # The load kept rising: 3 busy replicas complete 90 req/s and the queue grows by 20 req/s more.
    rising = sizing.Demand(request_rate=90.0, busy_replicas=3.0, queue_growth=20.0, window_seconds=30)
    verdict = actkit.context(md, cause=Cause.LOAD_SURGE, now=at(100), demand=rising)
    again = machine.advance(effective, verdict)
    assert again.intents == (intents.Scale(6, key=f"{INCIDENT}/0-scale-out/2"),)  # ceil(110 / 21)


def verifying_after_first_round(md: object, spec: rbapi.RunbookSpec | None = None) -> incapi.IncidentStatus:
    """The plan after round 1 (1 -> 3) took effect at ``at(5)``: verifying, verifyAt ``at(95)``."""
    first = start(md, spec or demand_runbook(), SATURATED)
    md.status = intents.override(md.status, first.intents[0], INCIDENT, 1, NOW)  # type: ignore[attr-defined]
    md.status.ready_replicas = 3  # type: ignore[attr-defined]
    status = machine.advance(first.status, actkit.context(md, cause=Cause.LOAD_SURGE, now=at(5))).status  # type: ignore[arg-type]
    assert actkit.step(status, "scale-out").verify_at == cond.rfc3339(at(95))
    return status


RISEN = sizing.Demand(request_rate=90.0, busy_replicas=3.0, queue_growth=20.0, window_seconds=30)


@pytest.mark.parametrize(
    ("now", "data_seconds"),
    [
        (40, 30),
        # 20 s after the round took effect (at 5): the verdict's 20 s windows are fresh, while the
        # 30 s demand window straddles the action. Arrivals do not depend on the replicas serving them.
        (25, 20),
    ],
)
def test_load_outgrowing_a_round_starts_the_next_on_the_first_fresh_breached_verdict(
    now: float, data_seconds: float
) -> None:
    md = actkit.deployment(replicas=1, maxReplicas=10)
    status = verifying_after_first_round(md)
    early = machine.advance(
        status, actkit.context(md, cause=Cause.LOAD_SURGE, now=at(now), demand=RISEN, data_seconds=data_seconds)
    )
    assert early.intents == (intents.Scale(6, key=f"{INCIDENT}/0-scale-out/2"),)
    verified = [e.message for e in early.status.timeline if e.type == machine.VERIFIED]
    assert verified[-1].startswith(
        "SLO Breached on data from 2026-11-22T12:00:05Z on and demand 110.0 req/s over 30s at 30.0 req/s per busy "
        "replica needs 6 replicas at 70% utilisation (3 running)"
    )
    assert verified[-1].endswith(": next round")


def sized_ahead_runbook() -> rbapi.RunbookSpec:
    params = {"targetUtilization": 70, "sizeAhead": "90s"}
    return actkit.runbook({"name": "scale-out", "action": "scaleOut", "params": params, "verifyAfter": "90s"})


def test_a_round_sized_ahead_records_the_rise_it_was_sized_for() -> None:
    md = actkit.deployment(replicas=1, maxReplicas=10)
    decision = start(md, sized_ahead_runbook(), RISING)
    assert decision.intents == (intents.Scale(5, key=f"{INCIDENT}/0-scale-out/1"),)
    assert (
        "rising 0.40 req/s per second: 86.0 req/s 90s ahead"
        in actkit.step(decision.status, "scale-out").target[machine.SIZED_FOR]
    )


def test_an_expected_rise_does_not_turn_a_draining_backlog_into_an_early_round() -> None:
    # Round 1 (1 -> 3) verifying; Breached on fresh data while 3 replicas drain the backlog: the
    # demand now (60 req/s, -10 of it the queue shrinking) needs 3, though the baseline says it rose.
    md = actkit.deployment(replicas=1, maxReplicas=10)
    status = verifying_after_first_round(md, sized_ahead_runbook())
    draining = sizing.Demand(60.0, 2.4, -10.0, 30, baseline_rate=20.0, baseline_lag_seconds=60.0)
    ctx = actkit.context(md, cause=Cause.LOAD_SURGE, now=at(40), demand=draining, data_seconds=30)
    assert machine.advance(status, ctx).intents == ()


@pytest.mark.parametrize(
    ("now", "demand", "data_seconds", "slo", "why"),
    [
        (40, RISEN, 40, actkit.BREACHED, "the verdict reaches back before the round took effect"),
        (40, RISEN, 30, actkit.MET, "Met before verifyAt is not a verdict yet"),
        (
            40,
            sizing.Demand(request_rate=60.0, busy_replicas=2.4, queue_growth=-10.0, window_seconds=30),
            30,
            actkit.BREACHED,
            "a draining backlog: the running replicas cover the demand",
        ),
        (40, None, 30, actkit.BREACHED, "no measured demand"),
    ],
)
def test_a_round_is_not_judged_early_without_fresh_evidence_that_the_load_outgrew_it(
    now: float, demand: sizing.Demand | None, data_seconds: float, slo: object, why: str
) -> None:
    md = actkit.deployment(replicas=1, maxReplicas=10)
    status = verifying_after_first_round(md)
    ctx = actkit.context(md, cause=Cause.LOAD_SURGE, now=at(now), demand=demand, data_seconds=data_seconds, slo=slo)
    waiting = machine.advance(status, ctx)
    assert waiting.intents == (), why
    assert actkit.step(waiting.status, "scale-out").state is S.VERIFYING


# Round 1 (1 -> 3) holds, but the load kept rising: 3 replicas 78 % busy serve 70 req/s (30 req/s
# each at full use), up from 40 req/s whose middle lies 60 s earlier: 0.5 req/s per second.
OUTGROWING = sizing.Demand(70.0, 7.0 / 3.0, 0.0, 30, baseline_rate=40.0, baseline_lag_seconds=60.0)


@pytest.mark.parametrize("slo_state", [actkit.MET, sloapi.SLOState.WARNING])
def test_a_sized_ahead_round_the_rising_demand_outgrows_starts_the_next_before_the_slo_breaches_again(
    slo_state: object,
) -> None:
    md = actkit.deployment(replicas=1, maxReplicas=10)
    status = verifying_after_first_round(md, sized_ahead_runbook())
    ctx = actkit.context(md, cause=Cause.LOAD_SURGE, now=at(40), demand=OUTGROWING, data_seconds=30, slo=slo_state)
    early = machine.advance(status, ctx)
    # Sized ahead as every round: 70 + 0.5 x (90 + 15) = 122.5 req/s at 21 req/s per replica.
    assert early.intents == (intents.Scale(6, key=f"{INCIDENT}/0-scale-out/2"),)
    verified = [e.message for e in early.status.timeline if e.type == machine.VERIFIED]
    assert verified[-1].startswith(
        f"SLO {slo_state} on data from 2026-11-22T12:00:05Z on, but the demand outgrew the round before it "
        "breached: demand 70.0 req/s over 30s, rising 0.50 req/s per second: 77.5 req/s now at 30.0 req/s per "
        "busy replica needs 4 replicas at 70% utilisation (3 running)"
    )
    assert verified[-1].endswith(": next round")


@pytest.mark.parametrize(
    ("runbook", "demand", "data_seconds", "slo_state", "metrics", "why"),
    [
        ("fixed", OUTGROWING, 30, actkit.MET, True, "a step without sizeAhead acts on a breach only"),
        ("ahead", OUTGROWING, 40, actkit.MET, True, "the verdict reaches back before the round took effect"),
        (
            "ahead",
            sizing.Demand(70.0, 7.0 / 3.0, 0.0, 30),
            30,
            actkit.MET,
            True,
            "no baseline: no measured rise",
        ),
        (
            "ahead",
            sizing.Demand(70.0, 7.0 / 3.0, 0.0, 30, baseline_rate=75.0, baseline_lag_seconds=60.0),
            30,
            actkit.MET,
            True,
            "a falling load",
        ),
        (
            "ahead",
            # 55 req/s, 58.75 at the window's end: 2.8 replicas' worth at 70 %.
            sizing.Demand(55.0, 55.0 / 30.0, 0.0, 30, baseline_rate=40.0, baseline_lag_seconds=60.0),
            30,
            actkit.MET,
            True,
            "rising, but the running replicas still hold the target utilisation",
        ),
        (
            "ahead",
            # 80 req/s served, 60 arriving: 65 at the window's end needs 3 at 34 req/s per busy replica.
            sizing.Demand(80.0, 7.0 / 3.0, -20.0, 30, baseline_rate=40.0, baseline_lag_seconds=60.0),
            30,
            actkit.MET,
            True,
            "a draining backlog: the completions overstate the arrivals",
        ),
        ("ahead", None, 30, actkit.MET, True, "no measured demand"),
        ("ahead", OUTGROWING, 30, sloapi.SLOState.NO_DATA, True, "no SLO data"),
        ("ahead", OUTGROWING, 30, actkit.MET, False, "metrics unavailable"),
        ("ahead", OUTGROWING, 30, sloapi.SLOState.INSUFFICIENT_TRAFFIC, True, "too little traffic to judge"),
    ],
)
def test_a_round_is_not_followed_up_before_a_breach_without_a_measured_rise_past_its_target(
    runbook: str,
    demand: sizing.Demand | None,
    data_seconds: float,
    slo_state: object,
    metrics: bool,
    why: str,
) -> None:
    md = actkit.deployment(replicas=1, maxReplicas=10)
    status = verifying_after_first_round(md, sized_ahead_runbook() if runbook == "ahead" else demand_runbook())
    ctx = actkit.context(
        md,
        cause=Cause.LOAD_SURGE,
        now=at(40),
        demand=demand,
        data_seconds=data_seconds,
        slo=slo_state,
        metrics=metrics,
    )
    waiting = machine.advance(status, ctx)
    assert waiting.intents == (), why
    assert actkit.step(waiting.status, "scale-out").state is S.VERIFYING


def test_a_sized_ahead_round_at_the_ceiling_is_not_followed_up_before_verify_at() -> None:
    md = actkit.deployment(replicas=1, maxReplicas=3)
    status = verifying_after_first_round(md, sized_ahead_runbook())
    ctx = actkit.context(md, cause=Cause.LOAD_SURGE, now=at(40), demand=OUTGROWING, data_seconds=30, slo=actkit.MET)
    assert machine.advance(status, ctx).intents == ()


def test_a_round_at_the_ceiling_waits_for_verify_at() -> None:
    md = actkit.deployment(replicas=1, maxReplicas=3)
    status = verifying_after_first_round(md)
    held = machine.advance(
        status, actkit.context(md, cause=Cause.LOAD_SURGE, now=at(40), demand=RISEN, data_seconds=30)
    )
    assert held.intents == ()
    assert actkit.step(held.status, "scale-out").state is S.VERIFYING


def test_a_fixed_step_round_is_only_judged_at_verify_at() -> None:
    md = actkit.deployment(replicas=1, maxReplicas=10)
    fixed = actkit.runbook(
        {"name": "scale-out", "action": "scaleOut", "params": {"stepReplicas": 2}, "verifyAfter": "90s"}
    )
    status = verifying_after_first_round(md, fixed)
    ctx = actkit.context(md, cause=Cause.LOAD_SURGE, now=at(40), demand=RISEN, data_seconds=30)
    assert machine.advance(status, ctx).intents == ()


def test_a_replayed_round_reissues_the_recorded_target_whatever_the_demand_reads_now() -> None:
    md = actkit.deployment(replicas=1, maxReplicas=10)
    first = start(md, demand_runbook(), SATURATED)
    grown = sizing.Demand(request_rate=30.0, busy_replicas=1.0, queue_growth=200.0, window_seconds=30)
    replay = machine.advance(first.status, actkit.context(md, cause=Cause.LOAD_SURGE, now=at(2), demand=grown))
    assert replay.intents == first.intents


# --- the cooldown waiver --------------------------------------------------------------------------


def test_load_rising_past_the_last_plan_waives_the_cooldown_for_a_new_breach_and_says_so() -> None:
    md = actkit.deployment(replicas=3, maxReplicas=10)
    rising = sizing.Demand(request_rate=90.0, busy_replicas=3.0, queue_growth=20.0, window_seconds=30)
    decision = start(md, demand_runbook(), rising, last_plan_ended_at=at(-400))
    assert decision.intents == (intents.Scale(6, key=f"{INCIDENT}/0-scale-out/1"),)
    waived = [e for e in decision.status.timeline if e.type == machine.COOLDOWN_WAIVED]
    assert [e.message for e in waived] == [
        "cooldown 10m (until 2026-11-22T12:03:20Z) waived: the SLO breached again after the last plan ended "
        "(2026-11-22T11:53:20Z) and demand 110.0 req/s over 30s at 30.0 req/s per busy replica needs 6 replicas "
        "at 70% utilisation (3 running)"
    ]
    assert any(e.reason == "CooldownWaived" for e in decision.events)


def test_a_breach_that_began_before_the_last_plan_ended_does_not_waive_the_cooldown() -> None:
    md = actkit.deployment(replicas=3, maxReplicas=10)
    rising = sizing.Demand(request_rate=90.0, busy_replicas=3.0, queue_growth=20.0, window_seconds=30)
    old = start(md, demand_runbook(), rising, last_plan_ended_at=at(-200))  # the incident was opened at -300
    assert old.intents == ()
    assert old.status.timeline[-1].message.startswith("holding: cooldown 10m after the last plan")


def test_a_demand_window_reaching_back_before_the_last_plan_ended_does_not_waive_the_cooldown() -> None:
    md = actkit.deployment(replicas=3, maxReplicas=10)
    long_window = sizing.Demand(request_rate=90.0, busy_replicas=3.0, queue_growth=20.0, window_seconds=600)
    assert start(md, demand_runbook(), long_window, last_plan_ended_at=at(-400)).intents == ()


def test_demand_the_running_replicas_already_cover_does_not_waive_the_cooldown() -> None:
    # Breached, but the demand needs no more than the 3 running: not load rising past the last plan.
    md = actkit.deployment(replicas=3, maxReplicas=10)
    covered = sizing.Demand(request_rate=40.0, busy_replicas=2.0, queue_growth=0.0, window_seconds=30)  # needs 3
    assert start(md, demand_runbook(), covered, last_plan_ended_at=at(-400)).intents == ()
    assert start(md, demand_runbook(), None, last_plan_ended_at=at(-400)).intents == ()


def test_max_actions_per_hour_still_holds_a_waived_cooldown() -> None:
    md = actkit.deployment(replicas=3, maxReplicas=10)
    rising = sizing.Demand(request_rate=90.0, busy_replicas=3.0, queue_growth=20.0, window_seconds=30)
    held = start(md, demand_runbook(), rising, last_plan_ended_at=at(-400), actions_last_hour=6)
    assert held.intents == ()
    assert held.status.timeline[-1].message == "holding: maxActionsPerHour (6) reached for this deployment"


def test_a_fixed_step_never_waives_the_cooldown() -> None:
    md = actkit.deployment(replicas=3, maxReplicas=10)
    rising = sizing.Demand(request_rate=90.0, busy_replicas=3.0, queue_growth=20.0, window_seconds=30)
    fixed = actkit.runbook({"name": "scale-out", "action": "scaleOut", "params": {"stepReplicas": 2}})
    assert start(md, fixed, rising, last_plan_ended_at=at(-400)).intents == ()


def test_the_cooldown_waiver_is_decided_once_then_the_plan_has_acted() -> None:
    md = actkit.deployment(replicas=3, maxReplicas=10)
    rising = sizing.Demand(request_rate=90.0, busy_replicas=3.0, queue_growth=20.0, window_seconds=30)
    decision = start(md, demand_runbook(), rising, last_plan_ended_at=at(-400))
    replay = machine.advance(
        decision.status,
        actkit.context(md, cause=Cause.LOAD_SURGE, now=at(1), demand=None, last_plan_ended_at=at(-400)),
    )
    assert replay.intents == decision.intents
    assert [e.type for e in replay.status.timeline].count(machine.COOLDOWN_WAIVED) == 1
    assert cond.rfc3339(NOW) in actkit.step(replay.status, "scale-out").target[intents.INTENDED_AT]


# --- the ready-made runbook -----------------------------------------------------------------------


def test_the_ready_made_load_surge_runbook_sizes_its_scale_out_from_demand() -> None:
    raw = yaml.safe_load((ROOT / "runbooks" / "load-surge-scale-out.yaml").read_text())
    spec = rbapi.RunbookSpec.model_validate(raw["spec"])
    scale = next(s for s in spec.steps if s.action is rbapi.Action.SCALE_OUT)
    assert scale.params.target_utilization is not None
    md = actkit.deployment(replicas=1, maxReplicas=10)
    decision = start(md, spec, SATURATED)
    assert decision.intents[0] == intents.Scale(3, key=f"{INCIDENT}/0-scale-out/1")
    assert start(md, spec, RISING).intents[0] == intents.Scale(5, key=f"{INCIDENT}/0-scale-out/1")


def test_the_builtin_default_scales_out_as_the_ready_made_runbook_does() -> None:
    raw = yaml.safe_load((ROOT / "runbooks" / "load-surge-scale-out.yaml").read_text())
    ready_made = next(s for s in rbapi.RunbookSpec.model_validate(raw["spec"]).steps if s.action == "scaleOut")
    builtin = next(s for s in runbooks.builtin_default().steps if s.action is rbapi.Action.SCALE_OUT)
    assert builtin.params == ready_made.params
    assert (builtin.verify_after, builtin.timeout) == (ready_made.verify_after, ready_made.timeout)


def test_size_ahead_needs_target_utilization() -> None:
    step = {"name": "scale-out", "action": "scaleOut", "params": {"stepReplicas": 1, "sizeAhead": "90s"}}
    with pytest.raises(ValueError, match=r"params\.sizeAhead sizes from demand: it needs params\.targetUtilization"):
        actkit.runbook(step)


# --- the demand the worker hands the machine ------------------------------------------------------


def healing_context(windows: slo.RateWindows, baseline: float | None) -> healing.Context:
    traffic = slo.Traffic(
        request_rate=30.0,
        baseline_request_rate=baseline,
        error_ratio=0.0,
        pending_requests=4.0,
        gpu_memory_utilization=None,
        windows=windows,
        busy_replicas=0.98,
        queue_growth=14.0,
    )
    revision = slo.RevisionReport("r1", NOW, traffic, ())
    verdict = slo.Verdict(cond.ConditionStatus.FALSE, "Breached", "")
    report = slo.DeploymentReport("ml", "m", 1, (), verdict, (revision,))
    md = actkit.deployment(replicas=1, maxReplicas=10)
    return healing.Context(raw={}, md=md, observed=None, report=report, metrics_available=True, now=NOW)  # type: ignore[arg-type]


def test_the_worker_hands_over_the_baseline_before_the_current_window_and_how_far_back_its_middle_is() -> None:
    demand = healing.demand(healing_context(slo.RateWindows(30, 600, False), 20.0), "r1")
    assert demand == sizing.Demand(30.0, 0.98, 14.0, 30, baseline_rate=20.0, baseline_lag_seconds=300.0)


def test_without_a_baseline_window_the_worker_hands_over_no_trend() -> None:
    demand = healing.demand(healing_context(slo.RateWindows(30, None, True), None), "r1")
    assert demand == sizing.Demand(30.0, 0.98, 14.0, 30)


# --- the waiver's window after a plan that ended on a Met verdict -------------------------------


def ended_met() -> incapi.IncidentStatus:
    """A plan whose round (1 -> 3, in effect at 5) was verified Met at 95 on data from 5 on."""
    md = actkit.deployment(replicas=1, maxReplicas=10)
    status = verifying_after_first_round(md)
    met = actkit.context(md, cause=Cause.LOAD_SURGE, now=at(95), slo=actkit.MET, data_seconds=80)
    return machine.advance(status, met).status


def test_a_plan_verified_met_says_since_when_the_slo_was_met() -> None:
    status = ended_met()
    assert guards.last_plan_end([status]) == at(95)
    assert guards.last_plan_met_since([status]) == at(5)


def test_a_plan_that_ended_without_a_met_verdict_says_nothing_about_since_when() -> None:
    md = actkit.deployment(replicas=1, maxReplicas=3)
    status = verifying_after_first_round(md)
    failing = machine.advance(status, actkit.context(md, cause=Cause.LOAD_SURGE, now=at(95), data_seconds=80))
    escalated = actkit.context(md, cause=Cause.LOAD_SURGE, now=at(96), done=actkit.ok(*failing.intents))
    failed = machine.advance(failing.status, escalated).status
    assert guards.last_plan_end([failed]) == at(96)
    assert guards.last_plan_met_since([failed]) is None
    assert guards.last_plan_met_since([]) is None


@pytest.mark.parametrize(
    ("met_since", "waived"),
    [
        (-700, True),  # the 600 s window starts after the data the last plan was verified Met on
        (-500, False),  # it reaches back before that data: it may hold the old breach
        (None, False),  # no Met verdict known: only a window after the plan's end
    ],
)
def test_the_demand_window_may_reach_back_into_the_data_the_last_plan_was_verified_met_on(
    met_since: int | None, waived: bool
) -> None:
    md = actkit.deployment(replicas=3, maxReplicas=10)
    long_window = sizing.Demand(request_rate=90.0, busy_replicas=3.0, queue_growth=20.0, window_seconds=600)
    since = None if met_since is None else at(met_since)
    decision = start(md, demand_runbook(), long_window, last_plan_ended_at=at(-400), last_plan_met_since=since)
    assert bool(decision.intents) is waived
    assert any(e.type == machine.COOLDOWN_WAIVED for e in decision.status.timeline) is waived


def test_a_rise_still_expected_does_not_waive_the_cooldown() -> None:
    # The demand now (44 req/s) needs 3, as run; only the projection 90 s ahead asks for 5.
    md = actkit.deployment(replicas=3, maxReplicas=10)
    assert start(md, sized_ahead_runbook(), RISING, last_plan_ended_at=at(-400)).intents == ()
