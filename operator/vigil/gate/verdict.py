"""The gate's decisions: which revision must prove itself, and what its pods' answers prove.

Pure, like the rest of the core: the edge (:mod:`vigil.reconcile.gate`) reads the golden set,
asks Triton, compares each answer with :func:`vigil.gate.goldenset.compare_request` and hands
the results here as :class:`PodResult` values; this module turns them into a verdict (the worst
deviation per output, over every pod) and the verdict into status.

The rules, in the order they are applied:

* Only a revision that is about to take traffic is gated, and only with ``spec.validation``. A
  rollback to last-known-good (an incident's rollback override, or a revision that earned
  ``lastKnownGood``) is never gated: the way back must not depend on the thing that broke.
* One wrong answer from one pod fails the revision (``Failed``), even while other pods were
  unreachable: a bad model is proven by a single counter-example. An inference error (Triton
  answered 4xx/500 to a golden request) is a wrong answer too.
* A pod that timed out, could not be reached, answered 503, or whose model version is not ready
  proves nothing: the revision is ``NotValidated`` and tried again after :data:`RETRY_SECONDS`.
  Never ``Passed``.
* ``Passed`` needs every Ready pod of the revision to answer every golden request in tolerance.
  It sticks to the revision (its pods do not change); a ``Failed`` verdict sticks to the spec
  generation: a new generation (a fixed tolerance, a re-pushed model) is needed to try again.
* The verdict is durable (``status.revisions[].validation``) before traffic moves on it; a
  ``Validating`` record found in status was left by an operator that died mid-validation, and
  the validation is simply run again (golden requests are reads).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from vigil.api import conditions as cond
from vigil.api import incident as incapi
from vigil.api import modeldeployment as mdapi
from vigil.api import validation as vapi

if TYPE_CHECKING:  # numpy comes with it: imported by the functions that compare answers, when one runs
    from vigil.gate import goldenset

VALIDATED = "Validated"
RETRY_SECONDS = 10.0
"""How long a revision that could not be validated (timeouts, unreachable pods) waits to be tried again."""

REASON_PASSED = "GoldenRequestsPassed"
REASON_MISMATCH = "GoldenMismatch"
REASON_INFER_ERROR = "InferenceError"
REASON_VALIDATING = "Validating"
REASON_TIMEOUT = "PodTimeout"
REASON_UNREACHABLE = "PodUnreachable"
REASON_MODEL_NOT_READY = "ModelNotReady"
REASON_BUSY = "PodBusy"
REASON_NO_PODS = "NoReadyPods"
REASON_GOLDEN_SET = "GoldenSetUnavailable"
REASON_NOT_GATED = "RollbackNotGated"
REASON_AWAITING = "AwaitingPods"
REASON_SERVING_UNVALIDATED = "ServedBeforeValidation"


class PodState(enum.StrEnum):
    """How far one pod got with its golden requests."""

    ANSWERED = "answered"
    """It answered every golden request (rightly or wrongly, see the answers)."""
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    MODEL_NOT_READY = "model-not-ready"
    BUSY = "busy"
    """Triton answered 503/429 (queue full, shutting down): try later."""


_PENDING_REASONS: Mapping[PodState, str] = {
    PodState.TIMEOUT: REASON_TIMEOUT,
    PodState.UNREACHABLE: REASON_UNREACHABLE,
    PodState.MODEL_NOT_READY: REASON_MODEL_NOT_READY,
    PodState.BUSY: REASON_BUSY,
}


@dataclasses.dataclass(frozen=True)
class PodResult:
    """What one pod did with its golden requests: compared answers, and errors Triton answered."""

    pod: str
    state: PodState
    answers: tuple[goldenset.RequestResult, ...] = ()
    errors: tuple[tuple[str, str], ...] = ()
    """(request id, Triton's error) for golden requests answered with 4xx/500: a wrong answer too."""
    detail: str = ""
    """Why it did not answer (for the states other than ANSWERED)."""


@dataclasses.dataclass(frozen=True)
class Verdict:
    phase: vapi.ValidationPhase
    reason: str
    message: str
    outputs: tuple[vapi.OutputDeviation, ...] = ()


def overrides(
    tolerance: vapi.Tolerance | None,
) -> tuple[goldenset.ToleranceOverride, dict[str, goldenset.ToleranceOverride]]:
    """``spec.validation.tolerance`` as the golden set's overrides: every output, then per output."""
    from vigil.gate import goldenset

    tolerance = tolerance or vapi.Tolerance()
    every = goldenset.ToleranceOverride(atol=tolerance.atol, rtol=tolerance.rtol, top_k=tolerance.top_k)
    per_output = {
        o.name: goldenset.ToleranceOverride(atol=o.atol, rtol=o.rtol, top_k=o.top_k) for o in tolerance.outputs
    }
    return every, per_output


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _deviations(
    golden: goldenset.GoldenSet, tolerances: Mapping[str, goldenset.Tolerance], results: Sequence[PodResult]
) -> tuple[vapi.OutputDeviation, ...]:
    """Worst deviation per output over every pod (in the golden set's output order), with the pod."""
    from vigil.gate import goldenset

    answered = [r for r in results if r.answers]
    if not answered:
        return ()
    overall = goldenset.summarize(golden, [a for r in answered for a in r.answers], tolerances)
    per_pod = [(r.pod, goldenset.summarize(golden, r.answers, tolerances)) for r in answered]
    rows: list[vapi.OutputDeviation] = []
    for report in overall.outputs:
        candidates = [(pod, o) for pod, rep in per_pod for o in rep.outputs if o.output == report.output]
        worst = max(candidates, key=lambda c: (not c[1].passed, c[1].max_abs_error), default=None)
        rows.append(
            vapi.OutputDeviation(
                name=report.output,
                passed=report.passed,
                max_abs_error=_finite(report.max_abs_error),
                max_rel_error=_finite(report.max_rel_error),
                top_k_agreement=report.top_k_agreement,
                worst_request=worst[1].worst_request if worst is not None else None,
                worst_pod=worst[0] if worst is not None and worst[1].worst_request is not None else None,
                atol=report.tolerance.atol,
                rtol=report.tolerance.rtol,
                top_k=report.tolerance.top_k,
                problem="; ".join(report.problems) or None,
                failed_requests=report.failed,
                requests=report.requests,
            )
        )
    return tuple(rows)


def _number(value: float | None) -> str:
    return "inf/NaN" if value is None else f"{value:.3g}"


def describe_output(row: vapi.OutputDeviation) -> str:
    """``OUTPUT__0: 64/64 answers out of tolerance; max abs error 0.41 (atol 0.0001), max rel error 3.2
    (rtol 0.001), top-5 agreement 12%, worst request 17 on pod resnet-abc-x``: the diff a person reads."""
    head = f"{row.failed_requests}/{row.requests} answers out of tolerance" if not row.passed else "ok"
    parts = [
        f"max abs error {_number(row.max_abs_error)} (atol {row.atol:g})",
        f"max rel error {_number(row.max_rel_error)} (rtol {row.rtol:g})",
    ]
    if row.top_k is not None:
        share = "n/a" if row.top_k_agreement is None else f"{row.top_k_agreement:.0%}"
        parts.append(f"top-{row.top_k} agreement {share}")
    if row.worst_request is not None:
        parts.append(f"worst request {row.worst_request}" + (f" on pod {row.worst_pod}" if row.worst_pod else ""))
    if row.problem:
        parts.append(row.problem)
    return f"{row.name}: {head}; {', '.join(parts)}"


def judge(
    golden: goldenset.GoldenSet, tolerances: Mapping[str, goldenset.Tolerance], results: Sequence[PodResult]
) -> Verdict:
    """The verdict over every Ready pod of a revision (see the module docstring for the rules)."""
    outputs = _deviations(golden, tolerances, results)
    answered = [r for r in results if r.state is PodState.ANSWERED]
    wrong = [row for row in outputs if not row.passed and row.requests > 0]
    if wrong:
        pods = sorted({r.pod for r in results if any(not a.passed for a in r.answers)})
        message = (
            f"{len(wrong)} of {len(outputs)} output(s) outside tolerance on pod(s) {', '.join(pods)}: "
            + "; ".join(describe_output(row) for row in wrong)
        )
        return Verdict(vapi.ValidationPhase.FAILED, REASON_MISMATCH, message, outputs)
    errors = [(r.pod, request, text) for r in results for request, text in r.errors]
    if errors:
        pod, request, text = errors[0]
        message = (
            f"{len(errors)} golden request(s) answered with an error; first: request {request} on pod {pod}: {text}"
        )
        return Verdict(vapi.ValidationPhase.FAILED, REASON_INFER_ERROR, message, outputs)
    if not results:
        return Verdict(vapi.ValidationPhase.NOT_VALIDATED, REASON_NO_PODS, "no Ready pod to validate", outputs)
    pending = [r for r in results if r.state is not PodState.ANSWERED]
    if pending:
        first = pending[0]
        message = (
            f"{len(pending)} of {len(results)} pod(s) not validated yet ({first.pod}: {first.detail or first.state}); "
            f"retrying in {RETRY_SECONDS:g}s"
        )
        return Verdict(vapi.ValidationPhase.NOT_VALIDATED, _PENDING_REASONS[first.state], message, outputs)
    requests = max((len(r.answers) for r in answered), default=0)
    worst = "; ".join(describe_output(row) for row in outputs)
    message = f"{requests} golden request(s) on each of {len(results)} pod(s) within tolerance: {worst}"
    return Verdict(vapi.ValidationPhase.PASSED, REASON_PASSED, message, outputs)


def unavailable(message: str) -> Verdict:
    """The golden set cannot be read or used: nothing is proven (traffic stays where it is)."""
    return Verdict(vapi.ValidationPhase.NOT_VALIDATED, REASON_GOLDEN_SET, message)


# -- what the reconcile core asks ------------------------------------------------------------------


def gated(spec: mdapi.ModelDeploymentSpec, revision: mdapi.Revision, rollback_target: bool) -> bool:
    """Whether traffic may move to ``revision`` only after it passed (see the module docstring)."""
    return spec.validation is not None and not rollback_target and not revision.last_known_good


def current(validation: vapi.RevisionValidation | None, generation: int) -> vapi.RevisionValidation | None:
    """The verdict that holds for this spec generation: a Passed one always (it is about the
    revision's pods), any other only when it was made for this generation."""
    if validation is None:
        return None
    if validation.phase is vapi.ValidationPhase.PASSED or validation.generation == generation:
        return validation
    return None


def passed(revision: mdapi.Revision) -> bool:
    return revision.validation is not None and revision.validation.phase is vapi.ValidationPhase.PASSED


def failed(revision: mdapi.Revision, generation: int) -> bool:
    """Failed for this generation: it stays off the wire (with onFailure: block) until a new one."""
    found = current(revision.validation, generation)
    return found is not None and found.phase is vapi.ValidationPhase.FAILED


def due(revision: mdapi.Revision, generation: int, now: datetime.datetime) -> bool:
    """Whether the golden requests should be sent now (the revision's pods being Ready)."""
    found = current(revision.validation, generation)
    if found is None:
        return True
    if found.phase is vapi.ValidationPhase.VALIDATING:
        return True  # left by an operator that died mid-validation: run it again
    if found.phase is vapi.ValidationPhase.NOT_VALIDATED:
        return found.retry_at is None or cond.parse_time(found.retry_at) <= now
    return False


def retry_in(revision: mdapi.Revision, generation: int, now: datetime.datetime) -> float | None:
    """Seconds until a NotValidated revision is tried again (None when nothing waits)."""
    found = current(revision.validation, generation)
    if found is None or found.phase is not vapi.ValidationPhase.NOT_VALIDATED or found.retry_at is None:
        return None
    return max(0.0, (cond.parse_time(found.retry_at) - now).total_seconds())


def start(
    revision: mdapi.Revision, generation: int, pods: Sequence[str], requests: int | None, now: datetime.datetime
) -> None:
    """Record, before the first golden request, that validation runs (durable intent).

    ``requests``: spec.validation.requests (None: every request of the golden set).
    """
    count = "every golden request" if requests is None else f"{requests} golden request(s)"
    revision.validation = vapi.RevisionValidation(
        phase=vapi.ValidationPhase.VALIDATING,
        generation=generation,
        reason=REASON_VALIDATING,
        message=f"sending {count} to each of {len(pods)} pod(s): {', '.join(pods)}",
        started=cond.rfc3339(now),
        pods=list(pods),
        requests=requests or 0,
    )
    _revision_condition(revision, generation, now)


def finish(
    revision: mdapi.Revision,
    generation: int,
    verdict: Verdict,
    now: datetime.datetime,
    golden_set: str | None,
    incident: str | None = None,
    requests: int | None = None,
) -> None:
    """Record the verdict on the revision; a Failed one names its BadModel Incident (created next)."""
    before = revision.validation
    phase = verdict.phase
    revision.validation = vapi.RevisionValidation(
        phase=phase,
        generation=generation,
        reason=verdict.reason,
        message=verdict.message,
        started=before.started if before is not None else cond.rfc3339(now),
        finished=cond.rfc3339(now),
        pods=before.pods if before is not None else [],
        requests=requests if requests is not None else (before.requests if before is not None else 0),
        golden_set=golden_set,
        outputs=list(verdict.outputs),
        retry_at=(
            cond.rfc3339(now + datetime.timedelta(seconds=RETRY_SECONDS))
            if phase is vapi.ValidationPhase.NOT_VALIDATED
            else None
        ),
        incident=incident if phase is vapi.ValidationPhase.FAILED else None,
        incident_state="Intended" if incident is not None and phase is vapi.ValidationPhase.FAILED else None,
    )
    _revision_condition(revision, generation, now)


def align_deployment_condition(
    status: mdapi.ModelDeploymentStatus,
    spec: mdapi.ModelDeploymentSpec,
    revision: mdapi.Revision,
    generation: int,
    now: datetime.datetime,
) -> None:
    """Bring the ModelDeployment's ``Validated`` condition in line with a verdict just recorded.

    The verdict and the condition go out in the same status write: otherwise, until the next
    reconcile, a reader sees a Failed revision under an ``AwaitingPods`` condition. Only for the
    revision the spec asks for (the one the condition is about); the reconcile core still owns it.
    """
    if status.desired_revision != revision.name:
        return
    found = deployment_condition(spec, revision, False, generation)
    if found is None:
        return
    value, reason, message = found
    status.conditions, _ = cond.set_condition(status.conditions, VALIDATED, value, reason, message, generation, now)


def _condition_of(validation: vapi.RevisionValidation) -> tuple[cond.ConditionStatus, str, str]:
    phase = validation.phase
    if phase is vapi.ValidationPhase.PASSED:
        return cond.ConditionStatus.TRUE, validation.reason, validation.message
    if phase is vapi.ValidationPhase.FAILED:
        return cond.ConditionStatus.FALSE, validation.reason, validation.message
    return cond.ConditionStatus.UNKNOWN, validation.reason, validation.message


def _revision_condition(revision: mdapi.Revision, generation: int, now: datetime.datetime) -> None:
    if revision.validation is None:
        return
    status, reason, message = _condition_of(revision.validation)
    revision.conditions, _ = cond.set_condition(
        revision.conditions, VALIDATED, status, reason, message, generation, now
    )


def deployment_condition(
    spec: mdapi.ModelDeploymentSpec,
    revision: mdapi.Revision,
    rollback_target: bool,
    generation: int,
    serving: bool = False,
) -> tuple[cond.ConditionStatus, str, str] | None:
    """The ModelDeployment's ``Validated`` condition: about the revision traffic is meant for.

    None without ``spec.validation`` (the condition is then dropped). ``serving``: the revision
    serves already (it took traffic before ``spec.validation`` applied to it, if it has no verdict).
    """
    if spec.validation is None:
        return None
    name = revision.name
    if not gated(spec, revision, rollback_target):
        why = "an incident's rollback target" if rollback_target else "last-known-good"
        return cond.ConditionStatus.TRUE, REASON_NOT_GATED, f"revision {name} is {why}: rollbacks are never gated"
    found = current(revision.validation, generation)
    if found is None and serving:
        return (
            cond.ConditionStatus.UNKNOWN,
            REASON_SERVING_UNVALIDATED,
            f"revision {name} served before spec.validation applied to it; the next revision is gated",
        )
    if found is None:
        return cond.ConditionStatus.UNKNOWN, REASON_AWAITING, f"revision {name}: waiting for its pods to be Ready"
    status, reason, message = _condition_of(found)
    if status is cond.ConditionStatus.FALSE and spec.validation.on_failure is vapi.OnFailure.BLOCK:
        message += "; traffic stays on the serving revision until a new spec generation"
    elif status is cond.ConditionStatus.FALSE:
        message += "; onFailure: warn, so it serves anyway"
    return status, reason, f"revision {name}: {message}"


def evidence(validation: vapi.RevisionValidation) -> list[incapi.Evidence]:
    """What a BadModel Incident records: the diff per failing output, and the golden set used."""
    found = [
        incapi.Evidence(kind="goldenOutput", message=describe_output(row), value=row.max_abs_error)
        for row in validation.outputs
        if not row.passed
    ]
    if not found:
        found.append(incapi.Evidence(kind="goldenRequests", message=validation.message))
    if validation.golden_set:
        found.append(incapi.Evidence(kind="goldenSet", message=validation.golden_set))
    found.append(incapi.Evidence(kind="pods", message=f"{len(validation.pods)} pod(s): {', '.join(validation.pods)}"))
    return found
