"""Fold one fleet evaluation into a ModelDeployment's status: SLO states, SLOMet, MetricsAvailable.

Pure, so the safety rule "no data is neither healthy nor broken" is tested here: when Prometheus
cannot be answered the SLO states are *kept* as they were (and only MetricsAvailable flips), so
nothing downstream (incidents, runbooks) sees a change it could act on.
"""

from __future__ import annotations

import dataclasses
import datetime

from vigil.api import conditions as cond
from vigil.api import modeldeployment as mdapi
from vigil.observe import slo

METRICS_AVAILABLE = "MetricsAvailable"
SLO_MET = slo.SLO_MET


@dataclasses.dataclass(frozen=True)
class Transition:
    """An SLO whose state changed in this evaluation (one Event each)."""

    slo: str
    old: str | None
    new: str
    message: str


@dataclasses.dataclass(frozen=True)
class Merged:
    status: mdapi.ModelDeploymentStatus
    transitions: tuple[Transition, ...]
    condition_flips: tuple[tuple[str, cond.ConditionStatus, str, str], ...]  # type, status, reason, message


def merge(
    status: mdapi.ModelDeploymentStatus,
    *,
    metrics_available: bool,
    error: str | None,
    report: slo.DeploymentReport | None,
    generation: int,
    now: datetime.datetime,
    failure: str | None = None,
) -> Merged:
    """The status after an evaluation; ``report`` is None when this deployment was not evaluated.

    ``failure`` says why this deployment alone could not be evaluated while the others were: its
    verdicts are held exactly as in an outage, but the condition names the deployment's own problem.
    """
    new = status.model_copy(deep=True)
    flips: list[tuple[str, cond.ConditionStatus, str, str]] = []

    def set_condition(type_: str, value: cond.ConditionStatus, reason: str, message: str) -> None:
        new.conditions, flipped = cond.set_condition(new.conditions, type_, value, reason, message, generation, now)
        if flipped:
            flips.append((type_, value, reason, message))

    if not metrics_available:
        set_condition(
            METRICS_AVAILABLE,
            cond.ConditionStatus.FALSE,
            "PrometheusUnavailable",
            f"holding all SLO verdicts and actions: {error or 'Prometheus could not be queried'}",
        )
        return Merged(new, (), tuple(flips))
    if failure is not None:
        set_condition(
            METRICS_AVAILABLE,
            cond.ConditionStatus.FALSE,
            "EvaluationFailed",
            f"holding this deployment's SLO verdicts and actions: {failure}",
        )
        return Merged(new, (), tuple(flips))
    set_condition(METRICS_AVAILABLE, cond.ConditionStatus.TRUE, "PrometheusAnswered", "SLIs were evaluated")
    if report is None:
        return Merged(new, (), tuple(flips))
    old_states = {s.name: s.state.value for s in status.slos}
    new.slos = list(report.slos)
    transitions = tuple(
        Transition(s.name, old_states.get(s.name), s.state.value, s.message)
        for s in report.slos
        if old_states.get(s.name) != s.state.value
    )
    verdict = report.verdict
    set_condition(SLO_MET, verdict.status, verdict.reason, verdict.message)
    return Merged(new, transitions, tuple(flips))


def material_change(old: mdapi.ModelDeploymentStatus, new_report: slo.DeploymentReport) -> bool:
    """Whether a report changes what status says beyond refreshed numbers (states or revisions)."""
    before = {(s.name, s.state, s.revision) for s in old.slos}
    after = {(s.name, s.state, s.revision) for s in new_report.slos}
    return before != after


# What every evaluation refreshes without changing any verdict: the numbers behind an SLO state,
# the wording that quotes them, and when they were read. A status that differs only in these is
# not worth a write on its own (see ``material``).
VOLATILE_SLO_FIELDS = ("sli", "requestRate", "burnRates", "budgetRemaining", "message", "lastEvaluationTime")


def material(status: mdapi.ModelDeploymentStatus) -> dict[str, object]:
    """``status`` on the wire without the fields each evaluation refreshes (``VOLATILE_SLO_FIELDS``
    and the ``SLOMet`` message, which quotes the SLO messages): two statuses with equal material
    parts say the same thing about states, verdicts, revisions and conditions."""
    wire = status.wire()
    for entry in wire.get("slos", []):
        for field in VOLATILE_SLO_FIELDS:
            entry.pop(field, None)
    for condition in wire.get("conditions", []):
        if condition.get("type") == SLO_MET:
            condition.pop("message", None)
    return wire
