"""Folding a fleet evaluation into a ModelDeployment's status."""

from __future__ import annotations

import datetime
import math

from vigil.api import conditions as cond
from vigil.api import modeldeployment as mdapi
from vigil.api import slo as sloapi
from vigil.observe import merge, slo

NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)


def report(state: sloapi.SLOState, verdict: cond.ConditionStatus) -> slo.DeploymentReport:
    return slo.DeploymentReport(
        namespace="ml",
        name="resnet",
        generation=1,
        slos=(sloapi.SLOStatus(name="avail", state=state, sli=97.0, revision="abc", message="m"),),
        verdict=slo.Verdict(verdict, "Reason", "message"),
        revisions=(),
    )


def breached_status() -> mdapi.ModelDeploymentStatus:
    status = mdapi.ModelDeploymentStatus()
    first = merge.merge(
        status,
        metrics_available=True,
        error=None,
        report=report(sloapi.SLOState.BREACHED, cond.ConditionStatus.FALSE),
        generation=1,
        now=NOW,
    )
    return first.status


def test_a_report_sets_slo_states_slomet_and_metrics_available() -> None:
    status = breached_status()
    assert [s.state for s in status.slos] == [sloapi.SLOState.BREACHED]
    assert cond.find(status.conditions, "SLOMet").status is cond.ConditionStatus.FALSE  # type: ignore[union-attr]
    assert cond.is_true(status.conditions, "MetricsAvailable")


def test_state_changes_are_reported_as_transitions() -> None:
    merged = merge.merge(
        breached_status(),
        metrics_available=True,
        error=None,
        report=report(sloapi.SLOState.MET, cond.ConditionStatus.TRUE),
        generation=1,
        now=NOW,
    )
    assert [(t.slo, t.old, t.new) for t in merged.transitions] == [("avail", "Breached", "Met")]
    assert ("SLOMet", cond.ConditionStatus.TRUE, "Reason", "message") in merged.condition_flips


def test_prometheus_outage_keeps_slo_states_and_only_flips_metrics_available() -> None:
    before = breached_status()
    merged = merge.merge(
        before, metrics_available=False, error="connection refused", report=None, generation=1, now=NOW
    )
    assert merged.status.slos == before.slos
    assert merged.transitions == ()
    available = cond.find(merged.status.conditions, "MetricsAvailable")
    assert available is not None
    assert available.status is cond.ConditionStatus.FALSE
    assert "connection refused" in available.message
    assert cond.find(merged.status.conditions, "SLOMet") == cond.find(before.conditions, "SLOMet")


def test_material_change_ignores_refreshed_numbers() -> None:
    status = breached_status()
    same = report(sloapi.SLOState.BREACHED, cond.ConditionStatus.FALSE)
    assert not merge.material_change(status, same)
    assert merge.material_change(status, report(sloapi.SLOState.MET, cond.ConditionStatus.TRUE))


def test_a_deployment_that_alone_failed_evaluation_holds_its_verdicts_and_says_why() -> None:
    before = breached_status()
    merged = merge.merge(
        before,
        metrics_available=True,
        error=None,
        report=None,
        generation=1,
        now=NOW,
        failure="judging its SLOs failed: ZeroDivisionError: float division by zero",
    )
    assert merged.status.slos == before.slos
    assert merged.transitions == ()
    metrics = cond.find(merged.status.conditions, "MetricsAvailable")
    assert metrics is not None
    assert (metrics.status, metrics.reason) == (cond.ConditionStatus.FALSE, "EvaluationFailed")
    assert "ZeroDivisionError" in metrics.message
    assert cond.find(merged.status.conditions, "SLOMet") == cond.find(before.conditions, "SLOMet")


def judged_status(
    sli: float = 99.9, message: str = "m", stamp: str = "2026-11-22T12:00:00Z"
) -> mdapi.ModelDeploymentStatus:
    met = report(sloapi.SLOState.MET, cond.ConditionStatus.TRUE)
    slos = tuple(s.model_copy(update={"sli": sli, "message": message, "last_evaluation_time": stamp}) for s in met.slos)
    merged = merge.merge(
        mdapi.ModelDeploymentStatus(),
        metrics_available=True,
        error=None,
        report=slo.DeploymentReport("ml", "resnet", 1, slos, met.verdict, ()),
        generation=1,
        now=NOW,
    )
    return merged.status


def test_a_status_drifts_by_its_timestamps_its_numbers_or_what_it_says() -> None:
    stored = judged_status()
    assert merge.drift(stored, judged_status()) is merge.Drift.NONE
    assert merge.drift(stored, judged_status(stamp="2026-11-22T12:00:05Z")) is merge.Drift.STAMPS
    assert merge.drift(stored, judged_status(sli=99.1, stamp="2026-11-22T12:00:05Z")) is merge.Drift.NUMBERS
    assert (
        merge.drift(stored, judged_status(message="every window within its factor (short window 5m burns 0.4)"))
        is merge.Drift.NUMBERS
    )
    breached = judged_status()
    breached.slos[0].state = sloapi.SLOState.BREACHED
    assert merge.drift(stored, breached) is merge.Drift.MATERIAL
    degraded = judged_status()
    degraded.conditions, _ = cond.set_condition(
        degraded.conditions, "Degraded", cond.ConditionStatus.TRUE, "Crash", "pods crash", 1, NOW
    )
    assert merge.drift(stored, degraded) is merge.Drift.MATERIAL


def test_the_fleet_loop_sees_moved_numbers_and_not_a_new_evaluation_time() -> None:
    stored = judged_status()
    met = slo.Verdict(cond.ConditionStatus.TRUE, "Met", "")
    again = slo.DeploymentReport("ml", "resnet", 1, tuple(judged_status(stamp="2026-11-22T12:00:05Z").slos), met, ())
    assert not merge.numbers_moved(stored, again)
    moved = slo.DeploymentReport("ml", "resnet", 1, tuple(judged_status(sli=99.0).slos), met, ())
    assert merge.numbers_moved(stored, moved)
    # Every field of an SLO status but its two stamps counts, listed or not.
    for field in sloapi.SLOStatus.model_fields:
        if field in {"last_evaluation_time", "last_transition_time"}:
            continue
        changed = stored.slos[0].model_copy(update={field: "x" if field in {"name", "revision", "message"} else None})
        if changed == stored.slos[0]:
            changed = stored.slos[0].model_copy(update={field: sloapi.SLOState.MET})
        report = slo.DeploymentReport("ml", "resnet", 1, (changed,), met, ())
        assert merge.numbers_moved(stored, report), field
    retimed = stored.slos[0].model_copy(update={"last_transition_time": "2026-11-22T12:00:05Z"})
    assert not merge.numbers_moved(stored, slo.DeploymentReport("ml", "resnet", 1, (retimed,), met, ()))


def test_timestamps_alone_are_written_once_per_period_at_the_deployment_s_own_phase() -> None:
    period, min_age = 600.0, 120.0
    first = merge.heartbeat_at(1000.0, phase=0.25, period=period, min_age=min_age)
    assert first % period == 150.0  # its phase: a quarter into every period
    assert 1000.0 + min_age <= first < 1000.0 + min_age + period
    assert (
        merge.heartbeat_at(first, phase=0.25, period=period, min_age=min_age) == first + period
    )  # steady: one a period
    # Judged just before its phase: not within min_age of the judgement, so the next period's.
    assert merge.heartbeat_at(140.0, phase=0.25, period=period, min_age=min_age) == 750.0
    assert merge.heartbeat_at(10.0, phase=0.25, period=period, min_age=min_age) == 150.0
    assert merge.heartbeat_at(None, phase=0.25, period=period, min_age=min_age) == -math.inf  # never judged


def test_a_status_s_evaluation_time_is_its_oldest_slo_s() -> None:
    status = judged_status(stamp="2026-11-22T12:00:05Z")
    status.slos.append(
        status.slos[0].model_copy(update={"name": "latency", "last_evaluation_time": "2026-11-22T11:59:00Z"})
    )
    assert merge.stamped(status) == datetime.datetime(2026, 11, 22, 11, 59, tzinfo=datetime.UTC).timestamp()
    assert merge.stamped(mdapi.ModelDeploymentStatus()) is None
