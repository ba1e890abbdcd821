"""The read-only views, rendered into a recording console and read as a human would."""

from __future__ import annotations

import datetime
from typing import Any

from rich import console

from tests.unit import factories
from vigil.api import conditions as cond
from vigil.api import incident as incapi
from vigil.api import modeldeployment as mdapi
from vigil.api import runbook as rbapi
from vigil.api import slo as sloapi
from vigil.record import views

NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
T = cond.ConditionStatus.TRUE
F = cond.ConditionStatus.FALSE

SLOS = [
    {"name": "p99", "kind": "latency", "thresholdMs": 250},
    {"name": "errors", "kind": "availability", "objective": 99.9},
    {"name": "gpu-mem", "kind": "gpuMemory", "maxUtilization": 0.9},
]


def render(renderable: console.RenderableType) -> str:
    out = console.Console(record=True, width=120)
    out.print(renderable)
    return out.export_text()


def ago(minutes: float) -> str:
    return cond.rfc3339(NOW - datetime.timedelta(minutes=minutes))


def condition(type_: str, status: cond.ConditionStatus, reason: str = "Because") -> cond.Condition:
    return cond.Condition(type=type_, status=status, reason=reason, message="", last_transition_time=ago(5))


def healthy(name: str = "resnet", namespace: str = "ml", **spec: Any) -> mdapi.ModelDeployment:
    md = factories.md(name=name, replicas=2, slos=SLOS, **spec)
    md.metadata["namespace"] = namespace
    md.status.model_version = md.spec.model.version
    md.status.current_revision = "rev-a"
    md.status.desired_revision = "rev-a"
    md.status.ready_replicas = 2
    md.status.conditions = [
        condition("Available", T),
        condition("Degraded", F),
        condition("Progressing", F),
        condition("SLOMet", T),
    ]
    md.status.slos = [
        sloapi.SLOStatus(
            name="p99",
            state=sloapi.SLOState.MET,
            sli=120.5,
            burn_rates=[
                sloapi.WindowBurn(window="1h", burn_rate=0.4),
                sloapi.WindowBurn(window="5m", burn_rate=0.48),
            ],
            revision="rev-a",
            message="every window within its factor on revision rev-a",
            last_evaluation_time=cond.rfc3339(NOW - datetime.timedelta(seconds=20)),
        ),
        sloapi.SLOStatus(
            name="errors",
            state=sloapi.SLOState.NO_DATA,
            budget_remaining=0.875,
            message="no request counters over 5m on revision rev-a",
        ),
        sloapi.SLOStatus(name="gpu-mem", state=sloapi.SLOState.MET, sli=0.5),
    ]
    return md


def breached() -> mdapi.ModelDeployment:
    md = healthy(name="bert", version="3")
    md.status.model_version = "2"
    md.status.desired_revision = "rev-b"
    md.status.ready_replicas = 3
    md.status.rollback = mdapi.RollbackOverride(
        revision="rev-a", from_revision="rev-b", incident="bert-p99-1", generation=1, since=ago(2)
    )
    md.status.scale = mdapi.ScaleOverride(replicas=4, incident="bert-p99-1", generation=1, since=ago(2))
    md.status.conditions = [
        condition("Available", T),
        condition("Degraded", T, "Unschedulable"),
        condition("Progressing", T),
        condition("SLOMet", F, "SLOBreached"),
    ]
    md.status.slos[0] = sloapi.SLOStatus(
        name="p99",
        state=sloapi.SLOState.BREACHED,
        sli=612.0,
        burn_rates=[sloapi.WindowBurn(window="5m", burn_rate=2.45), sloapi.WindowBurn(window="1h", burn_rate=1.2)],
    )
    md.status.active_incident = "bert-p99-20261122115700"
    return md


def incident(
    name: str = "bert-p99-20261122115700",
    phase: incapi.Phase = incapi.Phase.MITIGATING,
    opened: float = 12,
    resolved: float | None = None,
    namespace: str = "ml",
) -> incapi.Incident:
    return incapi.Incident(
        metadata={"name": name, "namespace": namespace},
        spec=incapi.IncidentSpec(model_deployment="bert", slo="p99", revision="rev-b", generation=3),
        status=incapi.IncidentStatus(
            phase=phase,
            opened_at=ago(opened),
            resolved_at=None if resolved is None else ago(resolved),
            sli=612.0,
            burn_rate=2.45,
            diagnosis=incapi.Diagnosis(
                cause=rbapi.Cause.BAD_ROLLOUT,
                summary="SLO p99: BadRollout: revision rev-b went live 4m before the breach",
                evidence=[
                    incapi.Evidence(kind="revisionChange", message="traffic switched from rev-a to rev-b", value=240),
                    incapi.Evidence(kind="missingData", message="no current request rate"),
                ],
            ),
            plan=incapi.Plan(
                runbook="builtin-default",
                mode=rbapi.Mode.AUTO,
                current=1,
                steps=[
                    incapi.StepProgress(
                        name="rollback",
                        action=rbapi.Action.ROLLBACK,
                        state=incapi.StepState.FAILED,
                        target={"revision": "rev-a"},
                        started_at=ago(11),
                        finished_at=ago(9),
                        result="p99 still breached",
                    ),
                    incapi.StepProgress(
                        name="scale-out",
                        action=rbapi.Action.SCALE_OUT,
                        state=incapi.StepState.VERIFYING,
                        target={"replicas": "4"},
                        started_at=ago(8),
                    ),
                    incapi.StepProgress(name="page", action=rbapi.Action.NOTIFY),
                ],
            ),
            timeline=[
                incapi.TimelineEntry(time=ago(12), type="Detected", message="SLO p99 Breached: SLI 612ms"),
                incapi.TimelineEntry(time=ago(11), type="Diagnosed", message="BadRollout"),
                incapi.TimelineEntry(time=ago(11), type="Intent", message="roll back to rev-a", step="rollback"),
                incapi.TimelineEntry(time=ago(8), type="Intent", message="scale to 4", step="scale-out"),
            ],
        ),
    )


def line_with(rendered: str, needle: str) -> str:
    found = [line for line in rendered.splitlines() if needle in line]
    assert found, f"{needle!r} not in:\n{rendered}"
    return found[0]


# status.


def test_status_shows_what_serves_readiness_conditions_and_no_incident() -> None:
    rendered = render(views.status_view([healthy()], NOW))
    assert "ml/resnet" in rendered
    assert "resnet50 1" in line_with(rendered, "Model")
    assert "rev-a" in line_with(rendered, "Revision")
    assert "2/2" in line_with(rendered, "Ready")
    conditions = line_with(rendered, "Conditions")
    assert "Available True · Progressing False · Degraded False · SLOMet True" in conditions
    assert "(" not in conditions  # nominal conditions carry no reason
    assert line_with(rendered, "Incident").split()[2] == "-"


def test_status_shows_each_slo_with_objective_state_sli_burn_rates_and_budget() -> None:
    rendered = render(views.status_view([healthy()], NOW))
    p99 = line_with(rendered, "p99 ")
    for cell in ("average <= 250ms", "Met", "120.5ms", "5m 0.48x, 1h 0.4x", "rev-a", "20s ago"):
        assert cell in p99
    errors = line_with(rendered, "errors ")
    for cell in ("99.9%", "NoData", "no data", "87.5%"):
        assert cell in errors
    assert "GPU memory <= 90%" in line_with(rendered, "gpu-mem ")
    assert "50% GPU memory" in line_with(rendered, "gpu-mem ")
    assert "errors: no request counters over 5m on revision rev-a" in rendered
    assert "every window within its factor" not in rendered  # a met SLO needs no explanation


def test_status_shows_overrides_breach_reasons_and_active_incident() -> None:
    rendered = render(views.status_view([breached()], NOW))
    model = line_with(rendered, "Model")
    assert "resnet50 2 rolled back by incident bert-p99-1 (spec asks for 3)" in model
    assert "3/4 scaled out by incident bert-p99-1 (spec asks for 2)" in line_with(rendered, "Ready")
    assert "rev-a (spec revision rev-b)" in line_with(rendered, "Revision")
    conditions = line_with(rendered, "Conditions")
    assert "Degraded True (Unschedulable)" in conditions
    assert "SLOMet False (SLOBreached)" in conditions
    assert "bert-p99-20261122115700" in line_with(rendered, "Incident")
    p99 = line_with(rendered, "p99 ")
    assert "Breached" in p99
    assert "612ms" in p99
    assert "5m 2.45x, 1h 1.2x" in p99


def test_status_names_a_rollout_in_progress_a_deployment_not_serving_and_a_paused_one() -> None:
    rolling = healthy(name="rolling", version="5")
    rolling.status.model_version = "4"
    fresh = factories.md(name="fresh", version="1", paused=True)
    rendered = render(views.status_view([rolling, fresh], NOW))
    assert "resnet50 4 rolling out 5" in rendered
    assert "resnet50 not serving (spec asks for 1)" in rendered
    assert "no SLOs declared" in rendered
    assert "0/2" in rendered
    assert "Available - · Progressing - · Degraded - · SLOMet -" in rendered
    assert "automatic actions are stopped" in line_with(rendered, "Paused")


def test_status_shows_slos_not_evaluated_yet() -> None:
    md = healthy()
    md.status.slos = []
    assert "not evaluated" in line_with(render(views.status_view([md], NOW)), "p99 ")


def test_status_orders_deployments_by_namespace_then_name() -> None:
    rows = [
        healthy(name="alpha", namespace="b"),
        healthy(name="zeta", namespace="a"),
        healthy(name="beta", namespace="b"),
    ]
    rendered = render(views.status_view(rows, NOW))
    assert rendered.index("a/zeta") < rendered.index("b/alpha") < rendered.index("b/beta")


# parse.


def test_objects_that_do_not_parse_are_reported_not_dropped() -> None:
    good = healthy().model_dump(by_alias=True, mode="json")
    bad = {"metadata": {"name": "broken", "namespace": "ml"}, "spec": {"replicas": "many"}}
    parsed = views.parse(mdapi.ModelDeployment, [good, bad])
    assert [md.metadata["name"] for md in parsed.objects] == ["resnet"]
    assert len(parsed.problems) == 1
    assert parsed.problems[0].startswith("ml/broken: cannot read spec.model: Field required")
    problems = views.problems_view(parsed.problems)
    assert problems is not None
    assert "Could not read:" in render(problems)
    assert views.problems_view(()) is None


# incidents.


def test_incident_list_shows_phase_cause_times_and_the_step_in_progress() -> None:
    rendered = render(views.incidents_table([incident()], NOW))
    row = line_with(rendered, "bert-p99-20261122115700")
    for cell in ("bert", "p99", "Mitigating", "BadRollout", "12m ago", "12m+", "2/3 scale-out Verifying"):
        assert cell in row


def test_incident_list_puts_open_incidents_first_then_newest() -> None:
    rows = [
        incident(name="old-resolved", phase=incapi.Phase.RESOLVED, opened=300, resolved=290),
        incident(name="new-resolved", phase=incapi.Phase.RESOLVED, opened=100, resolved=95),
        incident(name="open-one", phase=incapi.Phase.OPEN, opened=500),
    ]
    rendered = render(views.incidents_table(rows, NOW))
    assert rendered.index("open-one") < rendered.index("new-resolved") < rendered.index("old-resolved")
    assert "10m" in line_with(rendered, "old-resolved")  # lasted, without a trailing +
    assert "5h ago" in line_with(rendered, "old-resolved")


def test_incident_list_marks_non_auto_plans_and_plans_not_started() -> None:
    approval = incident(name="needs-approval", phase=incapi.Phase.AWAITING_APPROVAL)
    assert approval.status.plan is not None
    approval.status.plan.mode = rbapi.Mode.APPROVAL
    bare = incident(name="bare")
    bare.status.plan = None
    bare.status.diagnosis = None
    rendered = render(views.incidents_table([approval, bare], NOW, show_namespace=True))
    assert "(approval)" in rendered
    assert line_with(rendered, "bare").split()[0] == "ml"
    assert line_with(rendered, "bare").split()[-1] == "-"


def test_incident_detail_shows_diagnosis_evidence_plan_and_full_timeline() -> None:
    rendered = render(views.incident_detail(incident(), NOW))
    assert "ml/bert-p99-20261122115700" in rendered
    assert "Mitigating" in rendered
    assert "Opened      2026-11-22T11:48:00Z (12m ago)" in rendered
    assert "Burn rate   2.45x" in rendered
    assert "Diagnosis: BadRollout" in rendered
    assert "SLO p99: BadRollout: revision rev-b went live 4m before the breach" in rendered
    assert "revisionChange" in line_with(rendered, "traffic switched from rev-a to rev-b")
    assert "240" in line_with(rendered, "traffic switched from rev-a to rev-b")
    assert "missingData" in line_with(rendered, "no current request rate")
    assert "Plan: runbook builtin-default, mode auto" in rendered
    rollback = line_with(rendered, "rollback    rollback")
    for cell in ("Failed", "revision=rev-a", "11m ago", "9m ago", "p99 still breached"):
        assert cell in rollback
    current = line_with(rendered, "scale-out   scaleOut")
    assert current.lstrip().startswith(views.CURRENT_STEP)
    assert "Verifying" in current
    assert "Pending" in line_with(rendered, "page")
    assert "Timeline (4 entries)" in rendered
    for message in ("SLO p99 Breached: SLI 612ms", "roll back to rev-a", "scale to 4"):
        assert message in rendered
    assert "scale-out" in line_with(rendered, "scale to 4")


def test_incident_detail_without_plan_or_diagnosis_says_so() -> None:
    bare = incident(phase=incapi.Phase.OPEN)
    bare.status.plan = None
    bare.status.diagnosis = None
    bare.status.conditions = [condition("Approved", F, "WaitingForApproval")]
    rendered = render(views.incident_detail(bare, NOW))
    assert "Diagnosis: none recorded" in rendered
    assert "Plan: none yet" in rendered
    assert "WaitingForApproval" in line_with(rendered, "Approved")


def test_resolved_incident_detail_shows_how_long_it_lasted() -> None:
    rendered = render(views.incident_detail(incident(phase=incapi.Phase.RESOLVED, opened=30, resolved=5), NOW))
    assert "Resolved    2026-11-22T11:55:00Z" in rendered
    assert "Lasted      25m" in rendered


def test_ages_handle_missing_future_and_unreadable_times() -> None:
    assert views.age(None, NOW) == "-"
    assert views.age(cond.rfc3339(NOW + datetime.timedelta(minutes=2)), NOW) == "in 2m"
    assert views.age("not a time", NOW) == "not a time"
    assert views.age(cond.rfc3339(NOW), NOW) == "0s"


def test_text_from_the_cluster_is_never_read_as_markup() -> None:
    tricky = incident()
    assert tricky.status.diagnosis is not None
    tricky.status.diagnosis.evidence[0].message = "containers with unready status: [triton] [/]"
    tricky.status.timeline[0].message = "[bold]not bold[/bold]"
    rendered = render(views.incident_detail(tricky, NOW))
    assert "containers with unready status: [triton] [/]" in rendered
    assert "[bold]not bold[/bold]" in rendered
