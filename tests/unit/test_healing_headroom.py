"""The worker scales out ahead of a breach exactly once, through API faults at any call, and gives it back.

The real reconcile (``operator.reconcile``: core decision, SLO merge, healing with its headroom
trigger, plan and give-back, status and child writes) runs against
:class:`tests.unit.fakekube.FakeKube` with a clock the test moves. The deployment (spec.replicas
2, maxReplicas 4, ``spec.headroom.enabled``, the built-in runbook) stays Met throughout while the
demand the fleet measured rises for the first minute, then falls to what one replica serves. The
verdict, with or without a fault injected at any one call: one headroom Incident, the serving
Deployment goes 2 -> 4 -> 3 -> 2 once each, and nothing else is opened.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from tests.unit import factories, fakekube
from tests.unit import test_act_headroom as decisions
from tests.unit.test_healing_edges import AFTER, BEFORE, NAME, NS, T0, Clock
from tests.unit.test_healing_giveback import INCIDENT, REV, stamp
from tests.unit.test_healing_giveback import cluster as giveback_cluster
from vigil.act import headroom
from vigil.api import conditions as cond
from vigil.api import modeldeployment as mdapi
from vigil.observe import slo
from vigil.reconcile import healing
from vigil.reconcile import operator as op

STEP_SECONDS = 10
PASSES = 90
RISE_SECONDS = 60


def cluster(enabled: bool = True, max_replicas: int = 4) -> fakekube.FakeKube:
    """The give-back harness's deployment, Met on spec.replicas 2 with no incident, opted in or not."""
    kube = giveback_cluster()
    del kube.objects[("incidents", NS, INCIDENT)]
    body = kube.objects[("modeldeployments", NS, NAME)]
    del body["status"]["scale"]
    body["status"]["slos"][0]["lastTransitionTime"] = stamp(-30)
    body["spec"].update(maxReplicas=max_replicas, headroom={"enabled": enabled})
    kube.deployments[REV] = {"spec": {"replicas": 2}}
    return kube


def traffic(elapsed: float, rise: float) -> slo.Traffic:
    """What the fleet measured: 50 req/s rising from 30 over the baseline (30 req/s per busy replica)
    for ``rise`` seconds, then a steady 20 req/s."""
    rate, baseline = (50.0, 30.0) if elapsed < rise else (20.0, 20.0)
    return slo.Traffic(
        request_rate=rate,
        baseline_request_rate=baseline,
        error_ratio=0.0,
        pending_requests=0.0,
        gpu_memory_utilization=0.3,
        windows=slo.RateWindows(current_seconds=30, baseline_seconds=120, capped=False),
        busy_replicas=rate / 30.0,
        queue_growth=0.0,
    )


def evaluate(
    kube: fakekube.FakeKube, now: datetime.datetime, history: list[int], breach_at: float | None, rise: float
) -> Any:
    """The fleet's evaluation: every SLO Met (Breached from ``breach_at`` seconds on) over a 20 s
    window of fresh data, and the demand."""
    body = kube.objects[("modeldeployments", NS, NAME)]
    elapsed = (now - T0).total_seconds()
    breached = breach_at is not None and elapsed >= breach_at
    for status in body["status"].get("slos", []):
        if breached and status["state"] != "Breached":
            status.update(state="Breached", lastTransitionTime=cond.rfc3339(now), sli=180.0)
        burn = 6.0 if breached else 0.4
        status.update(lastEvaluationTime=cond.rfc3339(now), burnRates=[{"window": "20s", "burnRate": burn}])
    replicas = kube.deployments[REV]["spec"]["replicas"]
    if not history or history[-1] != replicas:
        history.append(replicas)
    result = factories.judged_as_stored(body)
    measured = slo.RevisionReport(REV, T0, traffic(elapsed, rise), ())
    report = dataclasses.replace(result.deployments[0], revisions=(measured,))
    return dataclasses.replace(result, deployments=(report,))


async def run(
    kube: fakekube.FakeKube,
    monkeypatch: pytest.MonkeyPatch,
    breach_at: float | None = None,
    rise: float = RISE_SECONDS,
    passes: int = PASSES,
) -> dict[str, Any]:
    clock = Clock()
    monkeypatch.setattr(op, "datetime", clock.module)
    runtime = op.Runtime(settings=op.Settings(), kube=kube)  # type: ignore[arg-type]
    history: list[int] = []
    for _ in range(passes):
        runtime.fleet = evaluate(kube, clock.now, history, breach_at, rise)
        await op.reconcile(runtime, (NS, NAME))  # never raises: a failed pass is retried by the next one
        await runtime.poster.flush()
        clock.now += datetime.timedelta(seconds=STEP_SECONDS)
    evaluate(kube, clock.now, history, breach_at, rise)
    incidents = [o for (plural, _, _), o in kube.objects.items() if plural == "incidents"]
    md = kube.objects[("modeldeployments", NS, NAME)]
    headroom = next((c for c in md["status"].get("conditions", []) if c["type"] == "Headroom"), None)
    return {
        "incidents": sorted((i["spec"]["trigger"], i["status"].get("phase")) for i in incidents),
        "timelines": {i["spec"]["trigger"]: [e["message"] for e in i["status"].get("timeline", [])] for i in incidents},
        "replicas": history,
        "intents": sum(e["type"] == "Intent" for i in incidents for e in i["status"].get("timeline", [])),
        "give_back": [(i["status"].get("giveBack") or {}).get("phase") for i in incidents],
        "scale": md["status"].get("scale"),
        "headroom": headroom["reason"] if headroom else None,
    }


async def test_the_worker_scales_out_ahead_of_the_breach_once_and_gives_it_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = await run(cluster(), monkeypatch)
    assert seen["incidents"] == [("Headroom", "Resolved")]
    assert seen["replicas"] == [2, 4, 3, 2]
    assert (seen["intents"], seen["give_back"], seen["scale"]) == (1, ["Returned"], None)
    assert seen["headroom"] == "Armed"  # the cooldown after its plan is over: ready for the next rise


async def test_without_the_opt_in_a_rising_demand_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = await run(cluster(enabled=False), monkeypatch)
    assert (seen["incidents"], seen["replicas"], seen["headroom"]) == ([], [2], None)


async def test_a_breach_ends_the_headroom_incident_and_its_own_incident_acts_unheld_by_its_cooldown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = await run(cluster(max_replicas=6), monkeypatch, breach_at=40, rise=600, passes=12)
    assert seen["incidents"] == [("Breach", "Mitigating"), ("Headroom", "Resolved")]
    assert seen["replicas"][:3] == [2, 5, 6]  # ahead, sized 90 s ahead; then the breach's round at once
    assert seen["intents"] == 2
    assert "SLO queue breached: the breach opens its own incident" in seen["timelines"]["Headroom"]
    assert not any("cooldown" in m for m in seen["timelines"]["Breach"])
    assert seen["headroom"] == "Holding"  # while the breach's incident runs (not Armed, not ScalingOut)


async def test_a_fault_at_any_call_changes_nothing_but_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    baseline = cluster()
    expected = await run(baseline, monkeypatch)
    kinds = BEFORE + AFTER
    calls = len(baseline.calls)
    # Every call of the passes that open the Incident and record it (a fault between the two
    # left an orphan Incident open for good), then a sample of the rest.
    opening = 30
    for number in [*range(min(opening, calls)), *range(opening, calls, max(1, calls // 40))]:
        kube = cluster()
        kind = kinds[number % len(kinds)]
        kube.faults = {number: fakekube.FAULTS[kind]}
        seen = await run(kube, monkeypatch)
        context = f"{kind} at call {number} ({kube.calls[number] if number < len(kube.calls) else '-'})"
        assert seen["incidents"] == expected["incidents"], context
        assert seen["replicas"] == expected["replicas"], context
        assert (seen["intents"], seen["give_back"], seen["scale"]) == (1, ["Returned"], None), context


def headroom_events(md: mdapi.ModelDeployment, status: mdapi.ModelDeploymentStatus) -> list[str]:
    """The Headroom condition's reason and its Events after the worker's pass on an open incident."""
    ctx = healing.Context(raw={}, md=md, observed=None, report=None, metrics_available=True, now=T0)  # type: ignore[arg-type]
    posted = healing._headroom_held(ctx, status)
    kept = cond.find(status.conditions, headroom.CONDITION)
    return [kept.reason if kept else "-", *(f"{e.type} {e.reason}" for e in posted)]


async def test_holding_and_turning_headroom_off_post_normal_events_and_a_missing_step_is_not_reposted() -> None:
    """Routine holds are Normal Events; the one Warning, no step to size with, is posted once, not
    again after every incident (the condition keeps NoScaleOutStep while one runs)."""
    md = decisions.deployment()
    status = md.status.model_copy(deep=True)
    status.active_incident = "resnet-queue-1"
    assert headroom_events(md, status) == ["Holding", "Normal HeadroomFalse"]
    nostep = md.status.model_copy(deep=True)
    nostep.conditions, _ = cond.set_condition(
        [], headroom.CONDITION, cond.ConditionStatus.FALSE, headroom.NO_STEP, "no step", 1, T0
    )
    nostep.active_incident = "resnet-queue-1"
    assert headroom_events(md, nostep) == [headroom.NO_STEP]
    off = decisions.deployment(enabled=False)
    ctx = healing.Context(raw={}, md=off, observed=None, report=None, metrics_available=True, now=T0)  # type: ignore[arg-type]
    was_on = off.status.model_copy(deep=True)
    was_on.conditions = status.conditions
    posted = await healing._headroom(None, ctx, was_on)  # type: ignore[arg-type]  # opted out: reads nothing
    assert [(e.type, e.reason) for e in posted] == [("Normal", "HeadroomFalse")]
