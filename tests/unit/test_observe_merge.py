"""Folding a fleet evaluation into a ModelDeployment's status."""

from __future__ import annotations

import datetime

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
