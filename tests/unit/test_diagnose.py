"""State-in/state-out tests of breach diagnosis: each cause, mixed evidence, and missing data."""

from __future__ import annotations

import dataclasses
import datetime
import itertools
from typing import Any

import pytest

from tests.unit import factories
from vigil.api import conditions
from vigil.api import incident as incapi
from vigil.api import runbook as rbapi
from vigil.api import slo as sloapi
from vigil.diagnose import cause
from vigil.diagnose import pods as podfacts
from vigil.observe import promql, slo
from vigil.reconcile import core, healing

NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
BREACH = NOW - datetime.timedelta(minutes=2)
NEW, OLD = "rev-b", "rev-a"
Cause = rbapi.Cause


def minutes(n: float) -> datetime.timedelta:
    return datetime.timedelta(minutes=n)


def unhealthy(
    name: str,
    restarts: int,
    ready: bool,
    reason: str = "",
    revision: str | None = None,
    *,
    last_finished: datetime.datetime | None = None,
) -> podfacts.PodFacts:
    """A scheduled pod with one container whose current state has ``reason`` (waiting, or terminated for
    reasons such as OOMKilled and Error)."""
    state = "terminated" if reason in ("OOMKilled", "Error", "Completed") else "waiting" if reason else "running"
    container = podfacts.ContainerFacts(
        "triton", ready, restarts, state=state, reason=reason, last_finished_at=last_finished
    )
    return podfacts.PodFacts(name, revision, phase="Running", ready=ready, scheduled=True, containers=(container,))


def pending(name: str, message: str, reason: str = "", revision: str | None = None) -> podfacts.PodFacts:
    """A pod the scheduler has not placed; ``reason``/``message`` of its PodScheduled=False condition."""
    return podfacts.PodFacts(
        name, revision, phase="Pending", scheduled=False, schedule_reason=reason, schedule_message=message
    )


def symptoms(**overrides: Any) -> cause.Symptoms:
    """A latency breach on the current revision with nothing suspicious: steady traffic, no pods
    in trouble, no revision change. ``pending_pods`` and ``unhealthy_pods`` add to ``pods``."""
    pods = (*overrides.pop("pending_pods", ()), *overrides.pop("unhealthy_pods", ()))
    if pods:
        overrides["pods"] = pods
    base: dict[str, Any] = {
        "now": NOW,
        "slo_name": "p99",
        "slo_kind": sloapi.SLOKind.LATENCY,
        "breach_started": BREACH,
        "current_revision": NEW,
        "breached_revision": NEW,
        "request_rate": 10.0,
        "baseline_request_rate": 10.0,
        "per_revision_burn": {NEW: 3.0},
    }
    base.update(overrides)
    return cause.Symptoms(**base)


ROLLOUT: dict[str, Any] = {
    "previous_revision": OLD,
    "revision_switched_at": BREACH - minutes(10),
    "per_revision_burn": {NEW: 6.0, OLD: 0.4},
}
CRASHING: dict[str, Any] = {"unhealthy_pods": (unhealthy("pod-crash", 4, False, "CrashLoopBackOff", NEW),)}
UNSCHEDULABLE: dict[str, Any] = {
    "pending_pods": (
        pending("pod-pending", "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.", "Unschedulable", NEW),
    )
}
SURGE: dict[str, Any] = {"request_rate": 30.0, "baseline_request_rate": 10.0}
FRAGMENTS: dict[rbapi.Cause, dict[str, Any]] = {
    Cause.BAD_ROLLOUT: ROLLOUT,
    Cause.CRASHING_PODS: CRASHING,
    Cause.CAPACITY: UNSCHEDULABLE,
    Cause.LOAD_SURGE: SURGE,
}


def kinds(diagnosis: incapi.Diagnosis) -> list[str]:
    return [e.kind for e in diagnosis.evidence]


def evidence_of(diagnosis: incapi.Diagnosis, kind: str) -> incapi.Evidence:
    found = [e for e in diagnosis.evidence if e.kind == kind]
    assert len(found) == 1, kinds(diagnosis)
    return found[0]


# Nothing applies.


def test_breach_without_any_evidence_is_unknown_and_says_what_was_ruled_out() -> None:
    diagnosis = cause.diagnose(symptoms())
    assert diagnosis.cause is Cause.UNKNOWN
    assert "no cause found" in diagnosis.summary
    assert "no revision change recorded" in diagnosis.summary
    assert "no crashing pods" in diagnosis.summary
    assert "no unschedulable pods" in diagnosis.summary
    assert "1x its baseline" in diagnosis.summary
    assert kinds(diagnosis) == [cause.REQUEST_RATE]  # the steady rate, shown as ruled out


def test_diagnosis_is_a_valid_api_object_that_survives_the_wire() -> None:
    diagnosis = cause.diagnose(symptoms(**ROLLOUT, **SURGE))
    wire = diagnosis.wire()
    assert wire["cause"] == "BadRollout"
    assert incapi.Diagnosis.model_validate(wire) == diagnosis


def test_diagnosing_twice_gives_the_same_answer() -> None:
    state = symptoms(**ROLLOUT, **CRASHING, **UNSCHEDULABLE, **SURGE)
    assert cause.diagnose(state) == cause.diagnose(state)


# BadRollout.


def test_recent_switch_to_a_worse_revision_is_a_bad_rollout() -> None:
    diagnosis = cause.diagnose(symptoms(**ROLLOUT))
    assert diagnosis.cause is Cause.BAD_ROLLOUT
    assert kinds(diagnosis)[:2] == [cause.REVISION_CHANGE, cause.REVISION_BURN]
    change = evidence_of(diagnosis, cause.REVISION_CHANGE)
    assert change.value == 600
    assert f"from revision {OLD} to {NEW} 10m before the breach" in change.message
    burn = evidence_of(diagnosis, cause.REVISION_BURN)
    assert burn.value == 6.0
    assert f"6x on revision {NEW} vs 0.4x on {OLD}" in burn.message
    assert diagnosis.summary.startswith("SLO p99: BadRollout: revision rev-b went live 10m before the breach")


@pytest.mark.parametrize("previous_burn", [{OLD: None}, {}], ids=["null", "absent"])
def test_previous_revision_without_data_still_blames_the_new_one(previous_burn: dict[str, float | None]) -> None:
    diagnosis = cause.diagnose(symptoms(**{**ROLLOUT, "per_revision_burn": {NEW: 2.0, **previous_burn}}))
    assert diagnosis.cause is Cause.BAD_ROLLOUT
    assert f"the previous revision {OLD} has no data" in evidence_of(diagnosis, cause.REVISION_BURN).message


def test_switch_exactly_at_the_window_edge_counts() -> None:
    diagnosis = cause.diagnose(symptoms(**{**ROLLOUT, "revision_switched_at": BREACH - minutes(30)}))
    assert diagnosis.cause is Cause.BAD_ROLLOUT


def test_switch_older_than_the_window_is_not_blamed() -> None:
    diagnosis = cause.diagnose(symptoms(**{**ROLLOUT, "revision_switched_at": BREACH - minutes(31)}))
    assert diagnosis.cause is Cause.UNKNOWN
    assert "31m before the breach (window 30m)" in diagnosis.summary


def test_rollout_window_is_configurable() -> None:
    state = symptoms(**{**ROLLOUT, "revision_switched_at": BREACH - minutes(90)})
    settings = cause.Settings(rollout_window=datetime.timedelta(hours=2))
    assert cause.diagnose(state, settings).cause is Cause.BAD_ROLLOUT


def test_switch_after_the_breach_began_is_not_its_cause() -> None:
    # For example vigil's own rollback: the revision it moved to is not to blame.
    diagnosis = cause.diagnose(symptoms(**{**ROLLOUT, "revision_switched_at": BREACH + minutes(1)}))
    assert diagnosis.cause is Cause.UNKNOWN
    change = evidence_of(diagnosis, cause.REVISION_CHANGE)
    assert "1m after the breach began: not its cause" in change.message
    assert change.value == -60


def test_new_revision_no_worse_than_the_previous_is_not_blamed() -> None:
    diagnosis = cause.diagnose(symptoms(**{**ROLLOUT, "per_revision_burn": {NEW: 3.0, OLD: 3.5}}))
    assert diagnosis.cause is Cause.UNKNOWN
    assert f"revision {NEW} burns no worse than {OLD}" in diagnosis.summary
    assert {cause.REVISION_CHANGE, cause.REVISION_BURN} <= set(kinds(diagnosis))


def test_equal_burn_is_not_worse() -> None:
    diagnosis = cause.diagnose(symptoms(**{**ROLLOUT, "per_revision_burn": {NEW: 3.0, OLD: 3.0}}))
    assert diagnosis.cause is Cause.UNKNOWN


def test_worse_factor_demands_a_margin() -> None:
    state = symptoms(**{**ROLLOUT, "per_revision_burn": {NEW: 3.3, OLD: 3.0}})
    assert cause.diagnose(state).cause is Cause.BAD_ROLLOUT
    assert cause.diagnose(state, cause.Settings(worse_factor=1.2)).cause is Cause.UNKNOWN


def test_breach_judged_on_the_previous_revision_does_not_blame_the_new_one() -> None:
    diagnosis = cause.diagnose(symptoms(**ROLLOUT, breached_revision=OLD))
    assert diagnosis.cause is Cause.UNKNOWN
    assert f"judged on revision {OLD}, not on the new revision {NEW}" in diagnosis.summary


def test_unknown_breached_revision_is_taken_to_be_the_current_one() -> None:
    assert cause.diagnose(symptoms(**ROLLOUT, breached_revision=None)).cause is Cause.BAD_ROLLOUT


def test_new_revision_without_data_is_not_guessed_to_be_bad() -> None:
    diagnosis = cause.diagnose(symptoms(**{**ROLLOUT, "per_revision_burn": {NEW: None, OLD: 0.4}}))
    assert diagnosis.cause is Cause.UNKNOWN
    missing = evidence_of(diagnosis, cause.MISSING_DATA)
    assert f"no p99 data for the new revision {NEW}" in missing.message


@pytest.mark.parametrize(
    "change",
    [
        {"previous_revision": None},
        {"revision_switched_at": None},
        {"previous_revision": NEW},
        {"current_revision": None, "breached_revision": None},
    ],
    ids=["first-revision", "never-switched", "same-revision", "nothing-serving"],
)
def test_without_a_revision_change_there_is_no_bad_rollout(change: dict[str, Any]) -> None:
    diagnosis = cause.diagnose(symptoms(**{**ROLLOUT, **change}))
    assert diagnosis.cause is Cause.UNKNOWN
    assert cause.REVISION_CHANGE not in kinds(diagnosis)


def test_missing_breach_start_is_read_as_now() -> None:
    state = symptoms(**{**ROLLOUT, "breach_started": None, "revision_switched_at": NOW - minutes(5)})
    diagnosis = cause.diagnose(state)
    assert diagnosis.cause is Cause.BAD_ROLLOUT
    assert evidence_of(diagnosis, cause.REVISION_CHANGE).value == 300


# LoadSurge.


@pytest.mark.parametrize("kind", [sloapi.SLOKind.LATENCY, sloapi.SLOKind.QUEUE_TIME])
def test_request_rate_well_above_baseline_is_a_load_surge_for_load_driven_slos(kind: sloapi.SLOKind) -> None:
    diagnosis = cause.diagnose(symptoms(slo_kind=kind, **SURGE))
    assert diagnosis.cause is Cause.LOAD_SURGE
    rate = evidence_of(diagnosis, cause.REQUEST_RATE)
    assert rate.value == 3.0
    assert "30 req/s is 3x the baseline of 10 req/s (surge at 1.5x)" in rate.message


def test_an_overloaded_deployment_shows_its_surge_in_the_queue_growth_not_in_its_served_rate() -> None:
    # Served at capacity (12 req/s, 1.2x a 10 req/s baseline: no surge by itself), while the queue
    # grows by 18 req/s: 30 req/s arrive.
    diagnosis = cause.diagnose(symptoms(request_rate=12.0, baseline_request_rate=10.0, queue_growth=18.0))
    assert diagnosis.cause is Cause.LOAD_SURGE
    rate = evidence_of(diagnosis, cause.REQUEST_RATE)
    assert rate.value == 3.0
    assert rate.message.startswith(
        "30 req/s offered (12 req/s served, the queue growing by 18 req/s) is 3x the baseline of 10 req/s"
    )


@pytest.mark.parametrize("growth", [None, 0.0, -20.0])
def test_a_queue_that_is_not_growing_adds_nothing_to_the_offered_rate(growth: float | None) -> None:
    diagnosis = cause.diagnose(symptoms(request_rate=12.0, baseline_request_rate=10.0, queue_growth=growth))
    assert diagnosis.cause is Cause.UNKNOWN
    assert evidence_of(diagnosis, cause.REQUEST_RATE).value == pytest.approx(1.2)


def test_a_smaller_rise_on_saturated_replicas_is_a_load_surge_and_says_why() -> None:
    state = symptoms(request_rate=12.5, baseline_request_rate=10.0, busy=0.96, rate_window_seconds=30)
    diagnosis = cause.diagnose(state)
    assert diagnosis.cause is Cause.LOAD_SURGE
    rate = evidence_of(diagnosis, cause.REQUEST_RATE)
    assert rate.value == 1.25
    assert rate.message == (
        "12.5 req/s over 30s is 1.25x the baseline of 10 req/s; its replicas 96% busy over 30s (saturated at 80%) "
        "(surge at 1.5x)"
    )


def test_a_smaller_rise_with_the_queue_growing_is_a_load_surge_before_the_utilisation_shows_it() -> None:
    # A ramp's first breach: the mean utilisation over the window (70 %) still lags the rise, the
    # queue already grows (0.8 req/s more arrive than complete).
    state = symptoms(request_rate=20.0, baseline_request_rate=17.0, busy=0.7, queue_growth=0.8, rate_window_seconds=30)
    diagnosis = cause.diagnose(state)
    assert diagnosis.cause is Cause.LOAD_SURGE
    rate = evidence_of(diagnosis, cause.REQUEST_RATE)
    assert rate.value == pytest.approx(20.8 / 17.0)
    assert rate.message == (
        "20.8 req/s offered (20 req/s served, the queue growing by 0.8 req/s) over 30s is 1.22x the baseline of "
        "17 req/s; more arrives than its replicas complete (surge at 1.5x)"
    )


@pytest.mark.parametrize(("rate", "growth"), [(8.0, 0.8), (5.0, 5.0)])
def test_a_growing_queue_without_a_rise_over_the_baseline_is_no_surge(rate: float, growth: float) -> None:
    # The offered rate (served + growth) is what is compared: a growing queue with no more
    # arriving than the baseline's rate (fewer replicas serving, slower requests) is not more load.
    state = symptoms(request_rate=rate, baseline_request_rate=10.0, busy=0.7, queue_growth=growth)
    assert cause.diagnose(state).cause is Cause.UNKNOWN


@pytest.mark.parametrize(
    ("rate", "busy"),
    [(12.5, 0.75), (12.5, None), (10.0, 0.99), (8.0, 0.99)],
    ids=["not-saturated", "utilisation-unknown", "no-rise", "less-load"],
)
def test_saturation_without_a_rise_or_a_rise_without_saturation_is_no_surge(rate: float, busy: float | None) -> None:
    state = symptoms(request_rate=rate, baseline_request_rate=10.0, busy=busy)
    assert cause.diagnose(state).cause is Cause.UNKNOWN


def test_saturated_replicas_of_an_slo_load_does_not_drive_are_not_blamed_on_load() -> None:
    state = symptoms(slo_kind=sloapi.SLOKind.AVAILABILITY, request_rate=12.5, baseline_request_rate=10.0, busy=0.96)
    assert cause.diagnose(state).cause is Cause.UNKNOWN


def test_surge_threshold_is_inclusive() -> None:
    assert cause.diagnose(symptoms(request_rate=15.0)).cause is Cause.LOAD_SURGE


def test_rate_just_below_the_surge_factor_is_no_surge_but_is_shown() -> None:
    diagnosis = cause.diagnose(symptoms(request_rate=14.9))
    assert diagnosis.cause is Cause.UNKNOWN
    assert evidence_of(diagnosis, cause.REQUEST_RATE).value == pytest.approx(1.49)


def test_surge_factor_is_configurable() -> None:
    state = symptoms(request_rate=25.0)
    assert cause.diagnose(state).cause is Cause.LOAD_SURGE
    assert cause.diagnose(state, cause.Settings(surge_factor=3.0)).cause is Cause.UNKNOWN


@pytest.mark.parametrize("kind", [sloapi.SLOKind.AVAILABILITY, sloapi.SLOKind.GPU_MEMORY])
def test_surge_is_shown_but_not_blamed_for_slos_load_does_not_drive(kind: sloapi.SLOKind) -> None:
    diagnosis = cause.diagnose(symptoms(slo_kind=kind, **SURGE))
    assert diagnosis.cause is Cause.UNKNOWN
    assert f"but a {kind} SLO is not attributed to load" in evidence_of(diagnosis, cause.REQUEST_RATE).message


def test_surge_kinds_are_configurable() -> None:
    state = symptoms(slo_kind=sloapi.SLOKind.AVAILABILITY, **SURGE)
    settings = cause.Settings(surge_kinds=frozenset({sloapi.SLOKind.AVAILABILITY}))
    assert cause.diagnose(state, settings).cause is Cause.LOAD_SURGE


@pytest.mark.parametrize(
    ("rates", "missing"),
    [
        ({"request_rate": None}, "no current request rate"),
        ({"baseline_request_rate": None}, "no baseline request rate"),
        ({"request_rate": None, "baseline_request_rate": None}, "no current and baseline request rate"),
        ({"baseline_request_rate": 0.0}, "no baseline traffic to compare 10 req/s with"),
    ],
    ids=["no-rate", "no-baseline", "neither", "zero-baseline"],
)
def test_unknown_rates_are_not_guessed_to_be_a_surge(rates: dict[str, float | None], missing: str) -> None:
    diagnosis = cause.diagnose(symptoms(**rates))
    assert diagnosis.cause is Cause.UNKNOWN
    assert missing in evidence_of(diagnosis, cause.MISSING_DATA).message
    assert cause.REQUEST_RATE not in kinds(diagnosis)


# Capacity.


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("0/4 nodes are available: 4 Insufficient nvidia.com/gpu.", "Unschedulable"),
        ("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.", ""),
        ("Insufficient memory", ""),
        ("", "Unschedulable"),
    ],
    ids=["insufficient-gpu", "selector", "insufficient-word", "reason-only"],
)
def test_pods_the_scheduler_cannot_place_are_a_capacity_problem(message: str, reason: str) -> None:
    stuck = (pending("pod-1", message, reason, NEW),)
    diagnosis = cause.diagnose(symptoms(pending_pods=stuck))
    assert diagnosis.cause is Cause.CAPACITY
    evidence = evidence_of(diagnosis, cause.PENDING_PODS)
    assert evidence.value == 1
    assert "pod-1" in evidence.message


def test_pending_pods_not_yet_judged_by_the_scheduler_are_not_capacity() -> None:
    stuck = (pending("pod-1", "", "", NEW), pending("pod-2", "pulling image", "", NEW))
    assert cause.diagnose(symptoms(pending_pods=stuck)).cause is Cause.UNKNOWN


def test_pending_pods_of_a_revision_not_serving_are_ignored() -> None:
    stuck = (pending("next-1", "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.", "", "rev-c"),)
    diagnosis = cause.diagnose(symptoms(pending_pods=stuck))
    assert diagnosis.cause is Cause.UNKNOWN
    assert cause.PENDING_PODS not in kinds(diagnosis)


def test_pods_of_unknown_revision_are_considered() -> None:
    stuck = (pending("pod-1", "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.", ""),)
    assert cause.diagnose(symptoms(pending_pods=stuck)).cause is Cause.CAPACITY


def test_capacity_evidence_counts_every_pod_and_lists_a_few() -> None:
    stuck = tuple(pending(f"pod-{i}", "0/4 nodes are available", "Unschedulable", NEW) for i in range(5))
    evidence = evidence_of(cause.diagnose(symptoms(pending_pods=stuck)), cause.PENDING_PODS)
    assert evidence.value == 5
    assert "pod-0" in evidence.message
    assert "pod-2" in evidence.message
    assert "pod-3" not in evidence.message
    assert "and 2 more" in evidence.message


# CrashingPods.


@pytest.mark.parametrize(
    "pod",
    [
        unhealthy("pod-1", 5, False, "CrashLoopBackOff", NEW),
        unhealthy("pod-1", 0, False, "ImagePullBackOff", NEW),
        unhealthy("pod-1", 1, True, "OOMKilled", NEW),
        unhealthy("pod-1", 1, False, "", NEW),
        unhealthy("pod-1", 3, True, "", NEW),
    ],
    ids=["crash-loop", "image-pull", "oom-killed", "not-ready-after-restart", "ready-but-flapping"],
)
def test_failing_pods_are_crashing_pods(pod: podfacts.PodFacts) -> None:
    diagnosis = cause.diagnose(symptoms(unhealthy_pods=(pod,)))
    assert diagnosis.cause is Cause.CRASHING_PODS
    evidence = evidence_of(diagnosis, cause.CRASHING_PODS)
    assert evidence.value == 1
    assert "pod-1 (" in evidence.message


@pytest.mark.parametrize(
    "pod",
    [
        unhealthy("pod-1", 0, False, "ContainersNotReady", NEW),
        unhealthy("pod-1", 2, True, "", NEW),
    ],
    ids=["starting-up", "ready-with-a-few-old-restarts"],
)
def test_pods_starting_or_long_recovered_are_not_crashing(pod: podfacts.PodFacts) -> None:
    assert cause.diagnose(symptoms(unhealthy_pods=(pod,))).cause is Cause.UNKNOWN


def test_a_ready_pod_flaps_only_while_its_restarts_are_recent() -> None:
    recent = unhealthy("pod-1", 5, True, "", NEW, last_finished=NOW - minutes(2))
    old = unhealthy("pod-1", 5, True, "", NEW, last_finished=NOW - minutes(60))
    assert cause.diagnose(symptoms(unhealthy_pods=(recent,))).cause is Cause.CRASHING_PODS
    assert cause.diagnose(symptoms(unhealthy_pods=(old,))).cause is Cause.UNKNOWN
    assert cause.diagnose(symptoms(unhealthy_pods=(old,)), cause.Settings(flap_window=minutes(90))).cause is (
        Cause.CRASHING_PODS
    )


def test_an_evicted_pod_or_a_container_that_exited_non_zero_is_failing() -> None:
    evicted = podfacts.PodFacts("pod-1", NEW, phase="Failed", reason="Evicted", scheduled=True)
    exited = podfacts.PodFacts(
        "pod-2",
        NEW,
        phase="Running",
        scheduled=True,
        containers=(podfacts.ContainerFacts("triton", False, 0, "terminated", "Killed", exit_code=2),),
    )
    for pod in (evicted, exited):
        assert cause.failing(pod, NOW)
    assert not cause.failing(
        dataclasses.replace(
            exited, containers=(podfacts.ContainerFacts("triton", False, 0, "terminated", "Completed", exit_code=0),)
        ),
        NOW,
    )


def test_crashing_evidence_quotes_the_observed_facts() -> None:
    container = podfacts.ContainerFacts(
        "triton",
        ready=False,
        restarts=6,
        state="waiting",
        reason="CrashLoopBackOff",
        message="back-off 40s restarting failed container",
        last_reason="Error",
        last_exit_code=1,
        last_finished_at=NOW - minutes(1),
    )
    pod = podfacts.PodFacts("pod-1", NEW, phase="Running", ready=False, scheduled=True, containers=(container,))
    diagnosis = cause.diagnose(symptoms(pods=(pod,)))
    evidence = evidence_of(diagnosis, cause.CRASHING_PODS)
    assert (
        evidence.message
        == "1 pod(s) failing: pod-1 (triton: CrashLoopBackOff, last Error exit code 1, 6 restarts; not ready)"
    )
    assert "(6 restarts)" in diagnosis.summary


def test_restart_threshold_is_configurable() -> None:
    state = symptoms(unhealthy_pods=(unhealthy("pod-1", 2, True, "", NEW),))
    assert cause.diagnose(state, cause.Settings(restart_threshold=2)).cause is Cause.CRASHING_PODS


def test_crashing_pods_of_a_revision_not_serving_are_ignored() -> None:
    pods = (unhealthy("next-1", 5, False, "CrashLoopBackOff", "rev-c"),)
    assert cause.diagnose(symptoms(unhealthy_pods=pods)).cause is Cause.UNKNOWN


def test_a_pending_pod_is_not_also_counted_as_crashing() -> None:
    stuck = pending("pod-1", "0/4 nodes are available", "Unschedulable", NEW)
    stuck = dataclasses.replace(stuck, containers=(podfacts.ContainerFacts("triton", False, 0, "waiting", "Error"),))
    diagnosis = cause.diagnose(symptoms(pods=(stuck,)))
    assert diagnosis.cause is Cause.CAPACITY
    assert cause.CRASHING_PODS not in kinds(diagnosis)


def test_crashing_evidence_counts_every_pod_and_lists_a_few() -> None:
    pods = tuple(unhealthy(f"pod-{i}", 7, False, "CrashLoopBackOff", NEW) for i in range(4))
    diagnosis = cause.diagnose(symptoms(unhealthy_pods=pods), cause.Settings(listed_pods=2))
    evidence = evidence_of(diagnosis, cause.CRASHING_PODS)
    assert evidence.value == 4
    assert "pod-0 (triton: CrashLoopBackOff, 7 restarts; not ready)" in evidence.message
    assert "and 2 more" in evidence.message
    assert "4 pod(s) failing (28 restarts)" in diagnosis.summary


# Mixed evidence and precedence.


def test_precedence_is_rollout_then_crashes_then_capacity_then_surge() -> None:
    assert cause.PRECEDENCE == (Cause.BAD_ROLLOUT, Cause.CRASHING_PODS, Cause.CAPACITY, Cause.LOAD_SURGE)


@pytest.mark.parametrize(
    ("higher", "lower"),
    list(itertools.combinations(cause.PRECEDENCE, 2)),
    ids=lambda c: str(c),
)
def test_when_two_causes_apply_the_higher_one_wins_and_both_are_shown(higher: Cause, lower: Cause) -> None:
    diagnosis = cause.diagnose(symptoms(**FRAGMENTS[higher], **FRAGMENTS[lower]))
    assert diagnosis.cause is higher
    assert f"; also {lower}: " in diagnosis.summary


def test_every_cause_at_once_is_a_bad_rollout_with_all_evidence_in_precedence_order() -> None:
    diagnosis = cause.diagnose(symptoms(**ROLLOUT, **CRASHING, **UNSCHEDULABLE, **SURGE))
    assert diagnosis.cause is Cause.BAD_ROLLOUT
    assert kinds(diagnosis) == [
        cause.REVISION_CHANGE,
        cause.REVISION_BURN,
        cause.CRASHING_PODS,
        cause.PENDING_PODS,
        cause.REQUEST_RATE,
    ]
    assert "also CrashingPods: " in diagnosis.summary
    assert diagnosis.summary.index("CrashingPods") < diagnosis.summary.index("Capacity")
    assert diagnosis.summary.index("Capacity") < diagnosis.summary.index("LoadSurge")


def test_a_lower_cause_still_wins_when_a_higher_one_lacks_data() -> None:
    state = symptoms(**{**ROLLOUT, "per_revision_burn": {NEW: None}}, **SURGE)
    diagnosis = cause.diagnose(state)
    assert diagnosis.cause is Cause.LOAD_SURGE
    assert kinds(diagnosis) == [cause.REQUEST_RATE, cause.REVISION_CHANGE, cause.MISSING_DATA]


def test_evidence_puts_findings_first_then_ruled_out_facts_then_missing_data() -> None:
    state = symptoms(
        **{**ROLLOUT, "per_revision_burn": {NEW: 1.0, OLD: 2.0}},
        **CRASHING,
        request_rate=None,
    )
    diagnosis = cause.diagnose(state)
    assert diagnosis.cause is Cause.CRASHING_PODS
    assert kinds(diagnosis) == [
        cause.CRASHING_PODS,
        cause.REVISION_CHANGE,
        cause.REVISION_BURN,
        cause.MISSING_DATA,
    ]


def test_checks_report_every_cause_in_precedence_order() -> None:
    verdicts = cause.checks(symptoms(**CRASHING, **SURGE))
    assert [v.cause for v in verdicts] == list(cause.PRECEDENCE)
    assert [v.applies for v in verdicts] == [False, True, False, True]


# Settings.


@pytest.mark.parametrize(
    "bad",
    [
        {"rollout_window": datetime.timedelta(0)},
        {"worse_factor": 0.0},
        {"surge_factor": 1.0},
        {"restart_threshold": 0},
        {"flap_window": datetime.timedelta(0)},
        {"listed_pods": 0},
    ],
    ids=lambda d: next(iter(d)),
)
def test_nonsensical_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        cause.Settings(**bad)


def test_symptoms_and_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        symptoms().slo_name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cause.DEFAULT_SETTINGS.surge_factor = 2.0  # type: ignore[misc]


# Honest rate windows for young deployments.


def test_surge_evidence_names_the_windows_it_compared() -> None:
    state = symptoms(**SURGE, rate_window_seconds=300, baseline_window_seconds=480, windows_capped=True)
    diagnosis = cause.diagnose(state)
    assert diagnosis.cause is Cause.LOAD_SURGE
    assert evidence_of(diagnosis, cause.REQUEST_RATE).message == (
        "30 req/s over 5m is 3x the baseline of 10 req/s over the 3m before it "
        "(windows capped to the age of the data) (surge at 1.5x)"
    )


def test_too_young_for_a_baseline_no_surge_is_judged_and_the_evidence_says_so() -> None:
    state = symptoms(request_rate=30.0, baseline_request_rate=None, rate_window_seconds=120, windows_capped=True)
    diagnosis = cause.diagnose(state)
    assert diagnosis.cause is Cause.UNKNOWN
    assert evidence_of(diagnosis, cause.MISSING_DATA).message == (
        "the data is too young for a baseline before the current window over 2m: a load surge is not judged"
    )


def _young_breach(
    age_seconds: float,
    surge: tuple[float, float] = (0.0, 1.0),
    current: int = 300,
    baseline: int = 1800,
    first_scrape: float = 0.0,
) -> incapi.Diagnosis:
    """A 10 req/s deployment ``age_seconds`` old breaching a queue-time SLO, diagnosed the way the
    worker does it: the fleet's report (rates as Prometheus reads them), then healing.symptoms.
    ``surge``: (seconds ago, factor): the rate was multiplied by factor that long ago.
    ``first_scrape``: Prometheus' first sample came that long after the pods were ready."""
    ago, factor = surge
    scraped = age_seconds - first_scrape

    def mean_rate(window: float, offset: float) -> float:
        # The window ends ``offset`` seconds ago; rate() over a window reaching before the first
        # sample divides what there is by the whole window.
        end = min(offset + window, scraped)
        surged = max(0.0, min(end, ago) - offset)
        steady = max(0.0, end - offset - surged)
        return 10.0 * (steady + factor * surged) / window

    queue = {"name": "queue", "kind": "queueTime", "thresholdMs": 100}
    md = factories.md(slos=[queue])
    md.metadata["creationTimestamp"] = conditions.rfc3339(NOW - datetime.timedelta(seconds=age_seconds))
    revision = slo.RevisionRef(name=NEW, since=NOW - datetime.timedelta(seconds=age_seconds))
    target = slo.Target.of(md, [revision])
    settings = slo.Settings(
        min_window_seconds=20, current_rate_window_seconds=current, baseline_rate_window_seconds=baseline
    )
    results: dict[promql.Need, promql.Vector] = {}
    for query in slo.query_plan([target], NOW, settings):
        window, offset = query.need.window or 1, query.need.offset
        per_request = {promql.Family.SUCCESS: 1.0, promql.Family.QUEUE: 400_000.0}  # 400 ms queued each
        if query.need.family in per_request:
            value = per_request[query.need.family] * mean_rate(window, offset)
            results[query.need] = {promql.SeriesKey("ml", "resnet", NEW): value}
    report = slo.evaluate(target, results, NOW, settings)
    [breach] = report.slos
    assert breach.state is sloapi.SLOState.BREACHED
    ctx = healing.Context(
        raw={}, md=md, observed=core.Observed(workloads={}), report=report, metrics_available=True, now=NOW
    )
    status = md.status.model_copy(update={"current_revision": NEW, "slos": list(report.slos)})
    return cause.diagnose(healing.symptoms(ctx, status, breach))


@pytest.mark.parametrize("age_minutes", [2, 6, 12, 25])
def test_a_young_deployment_breaching_at_steady_load_is_not_diagnosed_a_load_surge(age_minutes: int) -> None:
    diagnosis = _young_breach(age_minutes * 60)
    assert diagnosis.cause is not Cause.LOAD_SURGE, diagnosis.summary
    rates = [e.message for e in diagnosis.evidence if e.kind in (cause.REQUEST_RATE, cause.MISSING_DATA)]
    assert any("capped to the age of the data" in m or "too young for a baseline" in m for m in rates), rates


@pytest.mark.parametrize(("age", "ago"), [(100, 12), (100, 20), (300, 15), (1500, 60)])
def test_a_young_deployment_under_a_real_surge_is_diagnosed_a_load_surge(age: int, ago: int) -> None:
    """Tripled traffic in the last seconds stands out against the capped baseline before it
    (30s current and 10m baseline windows, as the end-to-end tests' operator reads them)."""
    diagnosis = _young_breach(age, surge=(ago, 3.0), current=30, baseline=600)
    assert diagnosis.cause is Cause.LOAD_SURGE, diagnosis.summary
    assert " before it" in evidence_of(diagnosis, cause.REQUEST_RATE).message


@pytest.mark.parametrize("age", [41, 50, 81, 90, 161, 200])
def test_a_young_deployment_at_steady_load_whose_first_scrape_came_late_is_not_a_load_surge(age: int) -> None:
    """Windows start after the first scrape (half a min_window after ready): the late start of
    the series does not make the baseline read low (20s min window, as the sandbox scrapes)."""
    diagnosis = _young_breach(age, current=20, baseline=600, first_scrape=8.0)
    assert diagnosis.cause is not Cause.LOAD_SURGE, diagnosis.summary


@pytest.mark.parametrize("age", [55, 60, 80, 100, 170])
def test_a_tripling_of_load_on_a_deployment_a_minute_old_is_a_load_surge_seconds_after_it_began(age: int) -> None:
    """The breach comes 9 s into the surge: the current window is short enough to show it."""
    diagnosis = _young_breach(age, surge=(9, 3.0), current=20, baseline=600, first_scrape=3.0)
    assert diagnosis.cause is Cause.LOAD_SURGE, diagnosis.summary
    message = evidence_of(diagnosis, cause.REQUEST_RATE).message
    assert "over 20s is" in message
    assert " before it (windows capped to the age of the data)" in message


def test_a_deployment_35_seconds_old_has_too_little_history_for_a_baseline() -> None:
    """Ready 35 s ago, tripled 9 s ago: 26 s of steady load is less than two 20 s windows."""
    diagnosis = _young_breach(35, surge=(9, 3.0), current=20, baseline=600, first_scrape=3.0)
    assert diagnosis.cause is Cause.UNKNOWN
    assert "too young for a baseline before the current window" in evidence_of(diagnosis, cause.MISSING_DATA).message
