"""Fold one fleet evaluation into a ModelDeployment's status: SLO states, SLOMet, MetricsAvailable.

Pure, so the safety rule "no data is neither healthy nor broken" is tested here: when Prometheus
cannot be answered the SLO states are *kept* as they were (and only MetricsAvailable flips), so
nothing downstream (incidents, runbooks) sees a change it could act on.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import math
import typing

from vigil.api import conditions as cond
from vigil.api import modeldeployment as mdapi
from vigil.api import slo as sloapi
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
STAMP_SLO_FIELDS = ("lastEvaluationTime",)
"""What every evaluation rewrites even when it read the very same numbers (an idle deployment's)."""


class Drift(enum.Enum):
    """How a newly decided status differs from the stored one, by how soon it is worth a write."""

    NONE = "none"
    """Equal on the wire."""
    STAMPS = "stamps"
    """Only ``lastEvaluationTime`` moved: the same numbers and words, judged again later."""
    NUMBERS = "numbers"
    """SLI numbers or the messages that quote them moved (``VOLATILE_SLO_FIELDS``, ``SLOMet``'s message)."""
    MATERIAL = "material"
    """A state, verdict, revision, condition or override: written at once."""


def drift(stored: mdapi.ModelDeploymentStatus, status: mdapi.ModelDeploymentStatus) -> Drift:
    """How ``status`` differs from ``stored`` (see :class:`Drift`)."""
    new, old = status.wire(), stored.wire()
    if new == old:
        return Drift.NONE
    for wire in (new, old):
        _drop(wire, STAMP_SLO_FIELDS, slo_met_message=False)
    if new == old:
        return Drift.STAMPS
    for wire in (new, old):
        _drop(wire, VOLATILE_SLO_FIELDS, slo_met_message=True)
    return Drift.NUMBERS if new == old else Drift.MATERIAL


def material(status: mdapi.ModelDeploymentStatus) -> dict[str, object]:
    """``status`` on the wire without the fields each evaluation refreshes (``VOLATILE_SLO_FIELDS``
    and the ``SLOMet`` message, which quotes the SLO messages): two statuses with equal material
    parts say the same thing about states, verdicts, revisions and conditions."""
    return _drop(status.wire(), VOLATILE_SLO_FIELDS, slo_met_message=True)


def _drop(wire: dict[str, typing.Any], fields: tuple[str, ...], *, slo_met_message: bool) -> dict[str, typing.Any]:
    for entry in wire.get("slos", []):
        for field in fields:
            entry.pop(field, None)
    if slo_met_message:
        for condition in wire.get("conditions", []):
            if condition.get("type") == SLO_MET:
                condition.pop("message", None)
    return wire


def numbers_moved(status: mdapi.ModelDeploymentStatus, report: slo.DeploymentReport) -> bool:
    """Whether ``report`` says anything besides ``lastEvaluationTime`` that ``status`` does not:
    the fleet loop's cheap check for a refresh worth a reconcile (the reconcile decides by
    :func:`drift`)."""
    return _numbers(status.slos) != _numbers(report.slos)


# Every SLOStatus field but the two an evaluation stamps: a field added to the model is compared
# without anyone remembering to list it here.
_NUMBER_FIELDS = tuple(
    f for f in sloapi.SLOStatus.model_fields if f not in {"last_evaluation_time", "last_transition_time"}
)


def _numbers(slos: typing.Iterable[sloapi.SLOStatus]) -> list[tuple[object, ...]]:
    return [tuple(getattr(s, field) for field in _NUMBER_FIELDS) for s in slos]


def stamped(status: mdapi.ModelDeploymentStatus) -> float | None:
    """When the oldest SLO verdict in ``status`` was judged (epoch seconds; None: never)."""
    stamps = [s.last_evaluation_time for s in status.slos if s.last_evaluation_time]
    return cond.parse_time(min(stamps)).timestamp() if stamps else None


def heartbeat_at(judged: float | None, *, phase: float, period: float, min_age: float) -> float:
    """When a status judged at ``judged`` (epoch seconds) whose only drift is its
    ``lastEvaluationTime`` is next written: at the first instant of the deployment's own phase in
    ``period`` (``phase`` in [0, 1), from its name) that is at least ``min_age`` after ``judged``.

    So a steady deployment's timestamps are written exactly once per period, at its phase: spread
    evenly over the fleet however its deployments were created (a burst's statuses, all written
    within a minute, are not rewritten in one wave a period later). Never judged: at once.
    """
    if judged is None:
        return -math.inf
    earliest = judged + min_age
    return earliest + (phase * period - earliest) % period
