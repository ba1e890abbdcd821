"""The Incident record: its name, its first manifest, its bounded timeline, its end and its history.

Pure functions over the API models; the caller writes the results with server-side apply.

Names are deterministic. An Incident is named after its deployment, its SLO and the moment the
SLO became Breached (``SLOStatus.lastTransitionTime``, which the fleet loop keeps stable while the
breach lasts), never after the wall clock when vigil noticed. A restarted operator that sees the
same breach computes the same name, and its create meets ``409 AlreadyExists`` instead of opening
a duplicate. ``openedAt`` is that same moment, so the name can be checked against the status.

The timeline is the audit trail and is bounded (:data:`vigil.api.incident.TIMELINE_LIMIT`, also
the CRD's ``maxItems``): the oldest entries go first, except the first ``Detected`` entry, which
records what was breached and by how much, and is kept for as long as the Incident exists.

History is bounded per deployment: :func:`prune` names the resolved Incidents beyond the newest
``keep``; open ones (any phase but Resolved) are never pruned, because they carry a running plan.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Iterable
from typing import Any, TypeAlias

from vigil import api, labels
from vigil.act import sizing
from vigil.api import conditions as cond
from vigil.api import incident as incapi
from vigil.api import modeldeployment as mdapi
from vigil.api import runbook as rbapi
from vigil.api import slo as sloapi

DETECTED = "Detected"
DIAGNOSED = "Diagnosed"
RESOLVED = "Resolved"
GOLDEN_REQUESTS = "GoldenRequests"
"""``spec.slo`` of a BadModel Incident: not a valid SLO name, so it never collides with one."""

NAME_LIMIT = 63
_STAMP_FORMAT = "%Y%m%d%H%M%S"
_HASH_LENGTH = 8
_INVALID = re.compile(r"[^a-z0-9-]+")


def _dns_part(text: str) -> str:
    return _INVALID.sub("-", text.lower()).strip("-") or "x"


def incident_name(md_name: str, slo: str, opened_at: datetime.datetime) -> str:
    """``<md>-<slo>-<yyyymmddhhmmss>`` (UTC), a DNS label of at most 63 characters.

    When the deployment and SLO names are too long to fit, both are cut (each keeps at least
    half the room, so neither disappears) and a hash of the full names follows, so two long names
    that share a prefix still differ.
    """
    stamp = opened_at.astimezone(datetime.UTC).strftime(_STAMP_FORMAT)
    md, objective = _dns_part(md_name), _dns_part(slo)
    if len(md) + 1 + len(objective) + 1 + len(stamp) <= NAME_LIMIT:
        return f"{md}-{objective}-{stamp}"
    share = NAME_LIMIT - len(stamp) - _HASH_LENGTH - 3  # three dashes
    md_keep = min(len(md), max(share - len(objective), share - share // 2))
    md_cut = md[:md_keep].rstrip("-") or "x"
    objective_cut = objective[: share - md_keep].strip("-") or "x"
    digest = hashlib.sha256(f"{md_name}/{slo}".encode()).hexdigest()[:_HASH_LENGTH]
    return f"{md_cut}-{objective_cut}-{digest}-{stamp}"


def find_slo(md: mdapi.ModelDeployment, name: str) -> sloapi.SLOSpec | None:
    return next((s for s in md.spec.slos if s.name == name), None)


def is_ratio(spec: sloapi.SLOSpec) -> bool:
    """Ratio SLOs report their SLI as a percentage of good requests."""
    if spec.kind is sloapi.SLOKind.LATENCY:
        return spec.method is sloapi.LatencyMethod.HISTOGRAM
    return spec.kind is sloapi.SLOKind.AVAILABILITY


def sli_text(spec: sloapi.SLOSpec | None, value: float | None) -> str:
    """An SLI in its unit: percent good for ratio SLOs, milliseconds, or share of GPU memory."""
    if value is None:
        return "no data"
    if spec is None:
        return f"{value:.4g}"
    if is_ratio(spec):
        return f"{value:.4g}%"
    if spec.kind is sloapi.SLOKind.GPU_MEMORY:
        return f"{value * 100:.3g}% GPU memory"
    return f"{value:.4g}ms"


def burns_text(burns: Iterable[sloapi.WindowBurn]) -> str:
    """``5m 5.2x, 1h 3.1x``: each window's burn rate, shortest window first."""
    ordered = sorted(burns, key=lambda b: _window_seconds(b.window))
    return ", ".join(f"{b.window} {'-' if b.burn_rate is None else f'{b.burn_rate:.3g}x'}" for b in ordered)


def _window_seconds(window: str) -> float:
    try:
        return sloapi.duration_seconds(window)
    except ValueError:
        return float("inf")


def shortest_burn(burns: Iterable[sloapi.WindowBurn]) -> float | None:
    """The burn rate over the shortest window: the most current one, as the SLI is."""
    ordered = sorted(burns, key=lambda b: _window_seconds(b.window))
    return ordered[0].burn_rate if ordered else None


def opened_at(slo_status: sloapi.SLOStatus, now: datetime.datetime) -> datetime.datetime:
    """When the breach began: the SLO's last transition, or ``now`` if the status has none."""
    if slo_status.last_transition_time:
        return cond.parse_time(slo_status.last_transition_time)
    return now


def entry(type_: str, message: str, now: datetime.datetime, step: str | None = None) -> incapi.TimelineEntry:
    return incapi.TimelineEntry(time=cond.rfc3339(now), type=type_, message=message, step=step)


Step: TypeAlias = incapi.StepProgress | incapi.GiveBackStep
"""A step of a plan or of a give-back: both end the same way."""


def end_step(step: Step, state: incapi.StepState, result: str, at: str) -> None:
    """``step`` ended at ``at`` (RFC 3339) in ``state``; ``result`` says how, in words."""
    step.state = state
    step.finished_at = at
    step.result = result


def detected_message(spec: sloapi.SLOSpec | None, slo_status: sloapi.SLOStatus) -> str:
    where = f" on revision {slo_status.revision}" if slo_status.revision else ""
    text = f"SLO {slo_status.name} {slo_status.state}{where}: SLI {sli_text(spec, slo_status.sli)}"
    if slo_status.burn_rates:
        text += f", burn {burns_text(slo_status.burn_rates)}"
    if slo_status.request_rate is not None:
        text += f", {slo_status.request_rate:.3g} req/s"
    if slo_status.message:
        text += f" ({slo_status.message})"
    return text


def _metadata(incident: str, namespace: str, md_name: str, uid: str) -> dict[str, Any]:
    """An Incident's metadata: labelled with and owned by its ModelDeployment (deleted with it)."""
    return {
        "name": incident,
        "namespace": namespace,
        "labels": {labels.MODEL_DEPLOYMENT: md_name, labels.MANAGED_BY: labels.FIELD_MANAGER},
        "ownerReferences": [
            {
                "apiVersion": api.API_VERSION,
                "kind": mdapi.KIND,
                "name": md_name,
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def new_incident(
    md: mdapi.ModelDeployment,
    uid: str,
    slo_status: sloapi.SLOStatus,
    diagnosis: incapi.Diagnosis,
    now: datetime.datetime,
) -> dict[str, Any]:
    """The full manifest of a new Incident for ``slo_status``'s breach of ``md``, owned by ``md``."""
    name = str(md.metadata.get("name"))
    namespace = str(md.metadata.get("namespace"))
    opened = opened_at(slo_status, now)
    spec = find_slo(md, slo_status.name)
    incident = incapi.Incident(
        metadata=_metadata(incident_name(name, slo_status.name, opened), namespace, name, uid),
        spec=incapi.IncidentSpec(
            model_deployment=name,
            slo=slo_status.name,
            revision=slo_status.revision or md.status.current_revision,
            generation=int(md.metadata.get("generation") or 0),
        ),
        status=incapi.IncidentStatus(
            phase=incapi.Phase.OPEN,
            opened_at=cond.rfc3339(opened),
            sli=slo_status.sli,
            burn_rate=shortest_burn(slo_status.burn_rates),
            diagnosis=diagnosis,
            timeline=[
                entry(DETECTED, detected_message(spec, slo_status), opened),
                entry(DIAGNOSED, f"{diagnosis.cause}: {diagnosis.summary}", now),
            ],
        ),
    )
    return incident.wire()


HEADROOM = "headroom"
"""The middle of a headroom Incident's name (``<md>-headroom-<stamp>``): opened before any breach."""


def new_headroom_incident(
    md: mdapi.ModelDeployment,
    uid: str,
    slo: str,
    summary: str,
    sized: sizing.Sized,
    plan: incapi.Plan,
    now: datetime.datetime,
) -> dict[str, Any]:
    """The full manifest of a headroom Incident of ``md`` (``spec.trigger: Headroom``), born with its
    ``plan``: no SLO is breached, the rising demand (``sized``) needs more replicas than run.

    Named after the moment it was opened; a restarted operator that did not record the name adopts
    the open one instead of opening a second (see the worker's ``_unrecorded``).
    """
    name = str(md.metadata.get("name"))
    namespace = str(md.metadata.get("namespace"))
    diagnosis = incapi.Diagnosis(
        cause=rbapi.Cause.LOAD_SURGE,
        summary=summary,
        evidence=[
            incapi.Evidence(kind="demand", message=str(sized), value=sized.projected or sized.arrivals),
            incapi.Evidence(kind="trend", message="req/s per second the offered rate rose", value=sized.trend),
        ],
    )
    incident = incapi.Incident(
        metadata=_metadata(incident_name(name, HEADROOM, now), namespace, name, uid),
        spec=incapi.IncidentSpec(
            model_deployment=name,
            slo=slo,
            revision=md.status.current_revision,
            generation=int(md.metadata.get("generation") or 0),
            trigger=incapi.Trigger.HEADROOM,
        ),
        status=incapi.IncidentStatus(
            phase=incapi.Phase.OPEN,
            opened_at=cond.rfc3339(now),
            diagnosis=diagnosis,
            plan=plan,
            timeline=[
                entry(DETECTED, f"ahead of a breach of SLO {slo}: {summary}", now),
                entry(DIAGNOSED, f"{diagnosis.cause}: {summary}", now),
            ],
        ),
    )
    return incident.wire()


def bad_model_name(md_name: str, revision: str, at: datetime.datetime) -> str:
    """The BadModel Incident of a revision's failed golden requests at ``at`` (the verdict's time)."""
    return incident_name(md_name, f"bad-model-{revision}", at)


def bad_model_incident(
    md: mdapi.ModelDeployment,
    uid: str,
    revision: mdapi.Revision,
    evidence: list[incapi.Evidence],
    served: bool,
) -> dict[str, Any]:
    """The Incident recording that ``revision`` answered its golden requests wrongly.

    Its name and time come from the verdict in ``revision.validation`` (recorded in status first),
    so a restarted operator creates the same Incident. It carries no plan: the gate already kept
    the revision off the wire (``served`` False) or, with ``onFailure: warn``, let it serve.
    """
    validation = revision.validation
    if validation is None or validation.incident is None or validation.finished is None:
        raise ValueError(f"revision {revision.name} has no failed verdict naming an incident")
    name = str(md.metadata.get("name"))
    namespace = str(md.metadata.get("namespace"))
    at = cond.parse_time(validation.finished)
    outcome = (
        "it served anyway (spec.validation.onFailure: warn)"
        if served
        else f"traffic stayed on revision {md.status.current_revision or '(none)'}; it runs no pods until a new spec generation"
    )
    summary = f"revision {revision.name} (model version {revision.model_version}) failed its golden requests: {outcome}"
    incident = incapi.Incident(
        metadata=_metadata(validation.incident, namespace, name, uid),
        spec=incapi.IncidentSpec(
            model_deployment=name, slo=GOLDEN_REQUESTS, revision=revision.name, generation=validation.generation
        ),
        status=incapi.IncidentStatus(
            phase=incapi.Phase.OPEN,
            opened_at=validation.finished,
            diagnosis=incapi.Diagnosis(cause=rbapi.Cause.BAD_MODEL, summary=summary, evidence=evidence),
            timeline=[
                entry(DETECTED, f"{validation.reason}: {validation.message}", at),
                entry(DIAGNOSED, f"{rbapi.Cause.BAD_MODEL}: {summary}", at),
            ],
        ),
    )
    return incident.wire()


def bounded(timeline: list[incapi.TimelineEntry], limit: int) -> list[incapi.TimelineEntry]:
    """The newest ``limit`` entries, always including the first ``Detected`` entry."""
    if limit < 2:
        raise ValueError("a timeline must hold at least the Detected entry and one more")
    if len(timeline) <= limit:
        return list(timeline)
    detected = next((i for i, e in enumerate(timeline) if e.type == DETECTED), None)
    if detected is None:
        return timeline[-limit:]
    others = [i for i in range(len(timeline)) if i != detected]
    kept = sorted({detected, *others[len(others) - (limit - 1) :]})
    return [timeline[i] for i in kept]


def append(
    status: incapi.IncidentStatus,
    type_: str,
    message: str,
    now: datetime.datetime,
    step: str | None = None,
    *,
    limit: int = incapi.TIMELINE_LIMIT,
) -> incapi.IncidentStatus:
    """A copy of ``status`` with one more timeline entry, the timeline bounded to ``limit``."""
    timeline = bounded([*status.timeline, entry(type_, message, now, step)], limit)
    return status.model_copy(update={"timeline": timeline}, deep=True)


def _took(status: incapi.IncidentStatus, now: datetime.datetime) -> str:
    if not status.opened_at:
        return ""
    seconds = (now - cond.parse_time(status.opened_at)).total_seconds()
    return f" after {sloapi.format_duration(seconds)}" if seconds >= 1 else ""


def resolve(
    status: incapi.IncidentStatus,
    now: datetime.datetime,
    sli: float | None,
    *,
    limit: int = incapi.TIMELINE_LIMIT,
) -> incapi.IncidentStatus:
    """A copy of ``status``, Resolved at ``now`` with the SLI that ended it. Resolving twice is a no-op."""
    if status.phase is incapi.Phase.RESOLVED:
        return status.model_copy(deep=True)
    reading = "no data" if sli is None else f"{sli:.4g}"
    resolved = append(status, RESOLVED, f"SLO met again{_took(status, now)}: SLI {reading}", now, limit=limit)
    return resolved.model_copy(update={"phase": incapi.Phase.RESOLVED, "resolved_at": cond.rfc3339(now), "sli": sli})


def close(
    status: incapi.IncidentStatus, now: datetime.datetime, message: str, *, limit: int = incapi.TIMELINE_LIMIT
) -> incapi.IncidentStatus:
    """A copy of ``status``, Resolved at ``now`` for ``message`` (no SLO reading: a BadModel Incident
    ends when its revision is superseded). Closing twice is a no-op."""
    if status.phase is incapi.Phase.RESOLVED:
        return status.model_copy(deep=True)
    closed = append(status, RESOLVED, message, now, limit=limit)
    return closed.model_copy(update={"phase": incapi.Phase.RESOLVED, "resolved_at": cond.rfc3339(now)})


def _opened_key(opened: str | None) -> datetime.datetime:
    if not opened:
        return datetime.datetime.min.replace(tzinfo=datetime.UTC)
    try:
        return cond.parse_time(opened)
    except ValueError:
        return datetime.datetime.min.replace(tzinfo=datetime.UTC)


def prune(incidents: Iterable[tuple[str, str | None, str]], keep: int) -> list[str]:
    """Names of the resolved incidents beyond the newest ``keep``, oldest first.

    ``incidents`` are ``(name, openedAt, phase)`` of one deployment. Incidents in any phase but
    Resolved are never named. Missing or unreadable ``openedAt`` sorts as oldest; ties break by name.
    """
    if keep < 0:
        raise ValueError("keep must not be negative")
    closed = sorted(
        ((name, opened) for name, opened, phase in incidents if phase == incapi.Phase.RESOLVED),
        key=lambda item: (_opened_key(item[1]), item[0]),
    )
    return [name for name, _ in closed[: max(0, len(closed) - keep)]]
