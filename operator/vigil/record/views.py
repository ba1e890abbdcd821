"""Read-only views: ModelDeployments and Incidents rendered as rich tables for the terminal.

Pure functions from the API models (and the raw dicts the API server returns) to rich
renderables; :mod:`vigil.record.cli` only fetches and prints. Keeping the rendering pure lets the
tests render into a recording console and assert on the text a human would read.

Objects that do not parse (written by another version of vigil, or edited by hand) are not
dropped silently: :func:`parse` returns them as problems, and the CLI prints them under the table.
Relative times ("5m ago") are computed from an explicit ``now`` so the views stay deterministic.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import pydantic
from rich import box, console, panel, table, text

from vigil.api import conditions as cond
from vigil.api import incident as incapi
from vigil.api import modeldeployment as mdapi
from vigil.api import runbook as rbapi
from vigil.api import slo as sloapi
from vigil.record import incidents as increc

SLO_STYLES: dict[sloapi.SLOState, str] = {
    sloapi.SLOState.MET: "green",
    sloapi.SLOState.WARNING: "yellow",
    sloapi.SLOState.BREACHED: "bold red",
    sloapi.SLOState.NO_DATA: "dim",
    sloapi.SLOState.INSUFFICIENT_TRAFFIC: "dim",
}

PHASE_STYLES: dict[incapi.Phase, str] = {
    incapi.Phase.OPEN: "bold red",
    incapi.Phase.MITIGATING: "yellow",
    incapi.Phase.AWAITING_APPROVAL: "bold yellow",
    incapi.Phase.ESCALATED: "bold magenta",
    incapi.Phase.RESOLVED: "green",
}

STEP_STYLES: dict[incapi.StepState, str] = {
    incapi.StepState.SUCCEEDED: "green",
    incapi.StepState.FAILED: "red",
    incapi.StepState.INTENDED: "yellow",
    incapi.StepState.VERIFYING: "yellow",
    incapi.StepState.DRY_RUN: "cyan",
}

NONE = "-"
CURRENT_STEP = "▶"

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


@dataclasses.dataclass(frozen=True)
class Parsed(Generic[ModelT]):
    """Objects that parsed, and one line per object that did not."""

    objects: tuple[ModelT, ...]
    problems: tuple[str, ...]


def _object_ref(item: Mapping[str, Any]) -> str:
    metadata = item.get("metadata")
    if not isinstance(metadata, Mapping):
        return "<unnamed>"
    name = metadata.get("name") or "<unnamed>"
    namespace = metadata.get("namespace")
    return f"{namespace}/{name}" if namespace else str(name)


def parse(model: type[ModelT], items: Iterable[Mapping[str, Any]]) -> Parsed[ModelT]:
    """Parse raw API objects with ``model``; the ones that do not parse become problem lines."""
    objects: list[ModelT] = []
    problems: list[str] = []
    for item in items:
        try:
            objects.append(model.model_validate(item))
        except pydantic.ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            problems.append(
                f"{_object_ref(item)}: cannot read {where}: {first['msg']} ({error.error_count()} error(s))"
            )
    return Parsed(tuple(objects), tuple(problems))


def _name(metadata: Mapping[str, Any]) -> str:
    return str(metadata.get("name") or "")


def _namespace(metadata: Mapping[str, Any]) -> str:
    return str(metadata.get("namespace") or "")


def age(stamp: str | None, now: datetime.datetime) -> str:
    """``5m`` since ``stamp`` (RFC 3339), or ``-`` when there is none or it cannot be read."""
    if not stamp:
        return NONE
    try:
        seconds = (now - cond.parse_time(stamp)).total_seconds()
    except ValueError:
        return stamp
    if seconds < 0:
        return "in " + _duration(-seconds)
    return _duration(seconds)


def _duration(seconds: float) -> str:
    return sloapi.format_duration(seconds) if seconds >= 1 else "0s"


def add_row(grid: table.Table, *cells: console.RenderableType) -> None:
    """Add a row whose strings are shown as written: text from the cluster (scheduler messages
    such as ``unready status: [triton]``) must never be read as rich markup."""
    grid.add_row(*(text.Text(cell) if isinstance(cell, str) else cell for cell in cells))


# Each condition's healthy status; any other status is shown with its reason.
NOMINAL: dict[str, cond.ConditionStatus] = {
    "Available": cond.ConditionStatus.TRUE,
    "Progressing": cond.ConditionStatus.FALSE,
    "Degraded": cond.ConditionStatus.FALSE,
    "SLOMet": cond.ConditionStatus.TRUE,
}


def conditions_text(conditions: Sequence[cond.Condition]) -> text.Text:
    """``Available True · Degraded True (Unschedulable) · ...``: reasons only where not nominal."""
    result = text.Text()
    for index, (type_, nominal) in enumerate(NOMINAL.items()):
        if index:
            result.append(" · ", style="dim")
        result.append(f"{type_} ")
        found = cond.find(list(conditions), type_)
        if found is None:
            result.append(NONE, style="dim")
            continue
        if found.status is nominal:
            result.append(found.status.value, style="green")
            continue
        style = "yellow" if found.status is cond.ConditionStatus.UNKNOWN or type_ == "Progressing" else "bold red"
        result.append(found.status.value, style=style)
        result.append(f" ({found.reason})", style="dim")
    return result


def desired_replicas(md: mdapi.ModelDeployment) -> int:
    """The replicas vigil is aiming for: an incident's scale-out override, else the spec's."""
    return md.status.scale.replicas if md.status.scale is not None else md.spec.replicas


def model_text(md: mdapi.ModelDeployment) -> text.Text:
    """The model and the version serving traffic, noting when it is not the spec's version."""
    spec_version = md.spec.model.version
    serving = md.status.model_version
    result = text.Text(md.spec.model.name)
    if serving is None:
        result.append(f" not serving (spec asks for {spec_version})", style="dim")
        return result
    result.append(f" {serving}", style="bold")
    rollback = md.status.rollback
    if rollback is not None:
        result.append(f" rolled back by incident {rollback.incident} (spec asks for {spec_version})", style="yellow")
    elif serving != spec_version:
        result.append(f" rolling out {spec_version}", style="cyan")
    return result


def revision_text(md: mdapi.ModelDeployment) -> text.Text:
    current, desired = md.status.current_revision, md.status.desired_revision
    result = text.Text(current or NONE)
    if desired is not None and desired != current:
        result.append(f" (spec revision {desired})", style="dim")
    return result


def ready_text(md: mdapi.ModelDeployment) -> text.Text:
    wanted = desired_replicas(md)
    ready = md.status.ready_replicas
    result = text.Text(f"{ready}/{wanted}", style="green" if ready >= wanted else "yellow")
    if md.status.scale is not None:
        result.append(
            f" scaled out by incident {md.status.scale.incident} (spec asks for {md.spec.replicas})", style="yellow"
        )
    return result


def objective_text(spec: sloapi.SLOSpec) -> str:
    """What the SLO promises, in its own unit."""
    if increc.is_ratio(spec):
        under = f" under {spec.threshold_ms:g}ms" if spec.threshold_ms is not None else ""
        return f"{spec.objective:g}%{under}"
    if spec.kind is sloapi.SLOKind.GPU_MEMORY:
        limit = NONE if spec.max_utilization is None else f"{spec.max_utilization * 100:g}%"
        return f"GPU memory <= {limit}"
    limit = NONE if spec.threshold_ms is None else f"{spec.threshold_ms:g}ms"
    return f"{'queue' if spec.kind is sloapi.SLOKind.QUEUE_TIME else 'average'} <= {limit}"


def _budget(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.3g}%"


def slo_table(md: mdapi.ModelDeployment, now: datetime.datetime) -> console.RenderableType:
    """Each SLO: objective, state, SLI in its unit, burn rate per window, budget, when evaluated."""
    if not md.spec.slos:
        return text.Text("\nno SLOs declared", style="dim")
    grid = table.Table(box=box.SIMPLE_HEAD, pad_edge=False)
    grid.add_column("SLO", no_wrap=True, style="bold")
    grid.add_column("Objective", no_wrap=True)
    grid.add_column("State", no_wrap=True)
    grid.add_column("SLI", no_wrap=True, justify="right")
    grid.add_column("Burn rate", overflow="fold")
    grid.add_column("Budget", no_wrap=True, justify="right")
    grid.add_column("Revision", no_wrap=True)
    grid.add_column("Evaluated", no_wrap=True, justify="right")
    statuses = {s.name: s for s in md.status.slos}
    for spec in md.spec.slos:
        slo = statuses.get(spec.name)
        if slo is None:
            add_row(grid, spec.name, objective_text(spec), text.Text("not evaluated", style="dim"))
            continue
        add_row(
            grid,
            spec.name,
            objective_text(spec),
            text.Text(slo.state.value, style=SLO_STYLES.get(slo.state, "")),
            increc.sli_text(spec, slo.sli),
            increc.burns_text(slo.burn_rates) or NONE,
            _budget(slo.budget_remaining),
            slo.revision or NONE,
            _ago(slo.last_evaluation_time, now),
        )
    # Why an SLO is not met, in the fleet loop's words (which windows decided it).
    notes = [
        f"{spec.name}: {status.message}"
        for spec in md.spec.slos
        if (status := statuses.get(spec.name)) is not None
        and status.state is not sloapi.SLOState.MET
        and status.message
    ]
    return console.Group(grid, text.Text("\n".join(notes), style="dim")) if notes else grid


def deployment_view(md: mdapi.ModelDeployment, now: datetime.datetime) -> panel.Panel:
    """One ModelDeployment: what serves, readiness, conditions, active incident, then its SLOs."""
    header = table.Table.grid(padding=(0, 2))
    header.add_column(style="bold", no_wrap=True)
    header.add_column(overflow="fold")
    add_row(header, "Model", model_text(md))
    add_row(header, "Revision", revision_text(md))
    add_row(header, "Ready", ready_text(md))
    add_row(header, "Conditions", conditions_text(md.status.conditions))
    incident = md.status.active_incident
    add_row(header, "Incident", text.Text(incident, style="bold red") if incident else text.Text(NONE, style="dim"))
    if md.spec.paused:
        add_row(header, "Paused", text.Text("automatic actions are stopped (spec.paused)", style="yellow"))
    title = text.Text(f"{_namespace(md.metadata)}/{_name(md.metadata)}", style="bold")
    return panel.Panel(console.Group(header, slo_table(md, now)), title=title, title_align="left")


def status_view(deployments: Sequence[mdapi.ModelDeployment], now: datetime.datetime) -> console.Group:
    """A panel per ModelDeployment, ordered by namespace and name."""
    ordered = sorted(deployments, key=lambda md: (_namespace(md.metadata), _name(md.metadata)))
    return console.Group(*(deployment_view(md, now) for md in ordered))


def phase_text(phase: incapi.Phase) -> text.Text:
    return text.Text(phase.value, style=PHASE_STYLES.get(phase, ""))


def current_step(plan: incapi.Plan | None) -> text.Text:
    """``2/3 scale-out Verifying``: the step in progress, or the last one when the plan is done."""
    if plan is None or not plan.steps:
        return text.Text(NONE, style="dim")
    index = min(max(plan.current, 0), len(plan.steps) - 1)
    step = plan.steps[index]
    result = text.Text(f"{index + 1}/{len(plan.steps)} {step.name} ")
    result.append(step.state.value, style=STEP_STYLES.get(step.state, ""))
    if plan.mode is not rbapi.Mode.AUTO:
        result.append(f" ({plan.mode.value})", style="dim")
    return result


def ordered_incidents(incidents: Iterable[incapi.Incident]) -> list[incapi.Incident]:
    """Open incidents first, each group newest first (RFC 3339 UTC stamps sort as text)."""
    newest = sorted(incidents, key=lambda i: (i.status.opened_at or "", _name(i.metadata)), reverse=True)
    return sorted(newest, key=lambda i: i.status.phase is incapi.Phase.RESOLVED)


def incidents_table(
    incidents: Sequence[incapi.Incident], now: datetime.datetime, *, show_namespace: bool = False
) -> table.Table:
    """One row per Incident, open ones first, newest first."""
    grid = table.Table(box=box.SIMPLE_HEAD, title="Incidents")
    if show_namespace:
        grid.add_column("Namespace", no_wrap=True)
    grid.add_column("Name", no_wrap=True, style="bold")
    grid.add_column("Deployment", no_wrap=True)
    grid.add_column("SLO", no_wrap=True)
    grid.add_column("Phase", no_wrap=True)
    grid.add_column("Cause", no_wrap=True)
    grid.add_column("Opened", justify="right", no_wrap=True)
    grid.add_column("Lasted", justify="right", no_wrap=True)
    grid.add_column("Step", overflow="fold")
    for incident in ordered_incidents(incidents):
        status = incident.status
        diagnosis = status.diagnosis
        cells: list[console.RenderableType] = [
            _name(incident.metadata),
            incident.spec.model_deployment,
            incident.spec.slo,
            phase_text(status.phase),
            diagnosis.cause.value if diagnosis is not None else NONE,
            _ago(status.opened_at, now),
            lasted(status, now),
            current_step(status.plan),
        ]
        if show_namespace:
            cells.insert(0, _namespace(incident.metadata))
        add_row(grid, *cells)
    return grid


def _ago(stamp: str | None, now: datetime.datetime) -> str:
    shown = age(stamp, now)
    return shown if shown == NONE or shown.startswith("in ") else f"{shown} ago"


def lasted(status: incapi.IncidentStatus, now: datetime.datetime) -> str:
    """How long the incident lasted (resolved) or has lasted so far (open, with a trailing ``+``)."""
    if not status.opened_at:
        return NONE
    try:
        opened = cond.parse_time(status.opened_at)
        end = cond.parse_time(status.resolved_at) if status.resolved_at else now
    except ValueError:
        return NONE
    shown = _duration(max(0.0, (end - opened).total_seconds()))
    return shown if status.resolved_at else f"{shown}+"


def _value(value: float | None) -> str:
    return NONE if value is None else f"{value:.4g}"


def _header(incident: incapi.Incident, now: datetime.datetime) -> table.Table:
    status = incident.status
    spec = incident.spec
    grid = table.Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    rows: list[tuple[str, console.RenderableType]] = [
        ("Incident", f"{_namespace(incident.metadata)}/{_name(incident.metadata)}"),
        ("Deployment", spec.model_deployment),
        ("SLO", spec.slo),
        ("Revision", spec.revision or NONE),
        ("Generation", str(spec.generation)),
        ("Phase", phase_text(status.phase)),
        ("Opened", f"{status.opened_at or NONE} ({_ago(status.opened_at, now)})"),
        ("Resolved", status.resolved_at or NONE),
        ("Lasted", lasted(status, now)),
        ("SLI", _value(status.sli)),
        ("Burn rate", NONE if status.burn_rate is None else f"{status.burn_rate:.3g}x"),
    ]
    for label, value in rows:
        add_row(grid, label, value)
    return grid


def diagnosis_view(diagnosis: incapi.Diagnosis | None) -> console.RenderableType:
    """The cause, its summary and every piece of evidence."""
    if diagnosis is None:
        return text.Text("Diagnosis: none recorded", style="dim")
    heading = text.Text("Diagnosis: ", style="bold")
    heading.append(diagnosis.cause.value, style="yellow" if diagnosis.cause is rbapi.Cause.UNKNOWN else "bold red")
    summary = text.Text(diagnosis.summary)
    if not diagnosis.evidence:
        return console.Group(heading, summary, text.Text("no evidence recorded", style="dim"))
    grid = table.Table(box=box.SIMPLE_HEAD, title="Evidence", title_justify="left")
    grid.add_column("Kind", no_wrap=True)
    grid.add_column("Value", justify="right", no_wrap=True)
    grid.add_column("Message", overflow="fold")
    for item in diagnosis.evidence:
        add_row(grid, item.kind, _value(item.value), item.message)
    return console.Group(heading, summary, grid)


def _target(step: incapi.StepProgress) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(step.target.items())) or NONE


def plan_view(plan: incapi.Plan | None, now: datetime.datetime) -> console.RenderableType:
    """The runbook's steps with their state; the step in progress is marked."""
    if plan is None:
        return text.Text("Plan: none yet", style="dim")
    grid = table.Table(
        box=box.SIMPLE_HEAD,
        title=text.Text(f"Plan: runbook {plan.runbook}, mode {plan.mode.value}"),
        title_justify="left",
    )
    grid.add_column("", no_wrap=True)
    grid.add_column("#", justify="right", no_wrap=True)
    grid.add_column("Step", no_wrap=True)
    grid.add_column("Action", no_wrap=True)
    grid.add_column("State", no_wrap=True)
    grid.add_column("Target", overflow="fold")
    grid.add_column("Started", no_wrap=True)
    grid.add_column("Finished", no_wrap=True)
    grid.add_column("Result", overflow="fold")
    for index, step in enumerate(plan.steps):
        add_row(
            grid,
            CURRENT_STEP if index == plan.current else "",
            str(index + 1),
            step.name,
            step.action.value,
            text.Text(step.state.value, style=STEP_STYLES.get(step.state, "")),
            _target(step),
            _ago(step.started_at, now),
            _ago(step.finished_at, now),
            step.result or NONE,
        )
    return grid


def timeline_view(timeline: Sequence[incapi.TimelineEntry]) -> console.RenderableType:
    """Every recorded decision, oldest first."""
    count = f"{len(timeline)} {'entry' if len(timeline) == 1 else 'entries'}"
    grid = table.Table(box=box.SIMPLE_HEAD, title=f"Timeline ({count})", title_justify="left")
    grid.add_column("Time", no_wrap=True)
    grid.add_column("Type", no_wrap=True, style="bold")
    grid.add_column("Step", no_wrap=True)
    grid.add_column("Message", overflow="fold")
    for item in timeline:
        add_row(grid, item.time, item.type, item.step or NONE, item.message)
    return grid


def conditions_view(conditions: Sequence[cond.Condition]) -> console.RenderableType | None:
    if not conditions:
        return None
    grid = table.Table(box=box.SIMPLE_HEAD, title="Conditions", title_justify="left")
    grid.add_column("Type", no_wrap=True)
    grid.add_column("Status", no_wrap=True)
    grid.add_column("Reason", no_wrap=True)
    grid.add_column("Since", no_wrap=True)
    grid.add_column("Message", overflow="fold")
    for item in conditions:
        add_row(grid, item.type, item.status.value, item.reason, item.last_transition_time, item.message)
    return grid


def incident_detail(incident: incapi.Incident, now: datetime.datetime) -> console.Group:
    """Everything about one Incident: header, diagnosis and evidence, plan, conditions, timeline."""
    parts: list[console.RenderableType] = [
        _header(incident, now),
        text.Text(),
        diagnosis_view(incident.status.diagnosis),
        text.Text(),
        plan_view(incident.status.plan, now),
        text.Text(),
    ]
    conditions = conditions_view(incident.status.conditions)
    if conditions is not None:
        parts += [conditions, text.Text()]
    parts.append(timeline_view(incident.status.timeline))
    return console.Group(*parts)


def problems_view(problems: Sequence[str]) -> console.RenderableType | None:
    """Objects that could not be read, one line each, or ``None`` when there are none."""
    if not problems:
        return None
    lines = text.Text("Could not read:", style="bold yellow")
    for problem in problems:
        lines.append(f"\n  {problem}", style="yellow")
    return lines
