"""The worker gives back a scale-out exactly once per step, through API faults at any call.

The real reconcile (``operator.reconcile``: core decision, SLO merge, healing with its give-back,
status and child writes) runs against :class:`tests.unit.fakekube.FakeKube` with a clock the
test moves. The deployment starts where a resolved surge incident left it: 4 replicas by a
scale override, spec.replicas 2, every SLO Met. The verdict, with or without a fault injected
at any one call: the serving Deployment goes 4 -> 3 -> 2 once, each step is recorded once, and
the give-back ends Returned.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from tests.unit import factories, fakekube
from tests.unit.test_healing_edges import AFTER, BEFORE, MODEL, NAME, NS, T0, Clock
from vigil.api import conditions as cond
from vigil.api import modeldeployment as mdapi
from vigil.reconcile import operator as op
from vigil.render import revision

REV = revision.revision_of(mdapi.PodShape.model_validate({"model": {**MODEL, "version": "1"}, "triton": {}}))
INCIDENT = "resnet-queue-20261122114000"
STEP_SECONDS = 10
PASSES = 120


def stamp(minutes: float) -> str:
    return cond.rfc3339(T0 + datetime.timedelta(minutes=minutes))


def cluster() -> fakekube.FakeKube:
    kube = fakekube.FakeKube()
    kube.objects[("modeldeployments", NS, NAME)] = {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": NS, "generation": 1, "uid": "uid-1"},
        "spec": {
            "model": {**MODEL, "version": "1"},
            "replicas": 2,
            "maxReplicas": 4,
            "slos": [{"name": "queue", "kind": "queueTime", "thresholdMs": 100, "period": "1h"}],
            "giveBack": {"stabilizationWindow": "1m", "interval": "30s"},
        },
        "status": {
            "observedGeneration": 1,
            "desiredRevision": REV,
            "currentRevision": REV,
            "switchedAt": stamp(-60),
            "revisions": [
                {
                    "name": REV,
                    "modelVersion": "1",
                    "shape": {"model": {**MODEL, "version": "1"}, "triton": {}},
                    "generation": 1,
                    "created": stamp(-60),
                    "readySince": stamp(-59),
                    "lastKnownGood": True,
                }
            ],
            "scale": {"replicas": 4, "incident": INCIDENT, "generation": 1, "since": stamp(-15)},
            "slos": [{"name": "queue", "state": "Met", "revision": REV, "lastTransitionTime": stamp(-5)}],
        },
    }
    kube.objects[("incidents", NS, INCIDENT)] = {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "Incident",
        "metadata": {"name": INCIDENT, "namespace": NS, "labels": {"vigil.dev/modeldeployment": NAME}},
        "spec": {"modelDeployment": NAME, "slo": "queue", "revision": REV, "generation": 1},
        "status": {"phase": "Resolved", "openedAt": stamp(-20), "resolvedAt": stamp(-4)},
    }
    kube.deployments[REV] = {"spec": {"replicas": 4}}
    return kube


def physics(kube: fakekube.FakeKube, now: datetime.datetime, history: list[int]) -> None:
    """The fleet's verdict each evaluation: Met, over a 20s window of fresh data."""
    md = kube.objects[("modeldeployments", NS, NAME)]
    for status in md["status"].get("slos", []):
        status.update(lastEvaluationTime=cond.rfc3339(now), burnRates=[{"window": "20s", "burnRate": 0.4}])
    replicas = kube.deployments[REV]["spec"]["replicas"]
    if not history or history[-1] != replicas:
        history.append(replicas)


async def give_back(kube: fakekube.FakeKube, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    clock = Clock()
    monkeypatch.setattr(op, "datetime", clock.module)
    runtime = op.Runtime(settings=op.Settings(), kube=kube)  # type: ignore[arg-type]
    history: list[int] = []
    for _ in range(PASSES):
        physics(kube, clock.now, history)
        runtime.fleet = factories.judged_as_stored(kube.objects[("modeldeployments", NS, NAME)])
        await op.reconcile(runtime, (NS, NAME))  # never raises: a failed pass is retried by the next one
        await runtime.poster.flush()  # the Events it decided, posted beside it
        record = kube.objects[("incidents", NS, INCIDENT)]["status"].get("giveBack") or {}
        if record.get("phase") == "Returned" and kube.deployments[REV]["spec"]["replicas"] == 2:
            physics(kube, clock.now, history)
            break
        clock.now += datetime.timedelta(seconds=STEP_SECONDS)
    incident = kube.objects[("incidents", NS, INCIDENT)]
    md = kube.objects[("modeldeployments", NS, NAME)]
    timeline = [e["type"] for e in incident["status"].get("timeline", [])]
    return {
        "phase": (incident["status"].get("giveBack") or {}).get("phase"),
        "replicas": history,
        "overrides": [w.get("scale", {}).get("replicas") for w in kube.md_status_writes],
        "steps": timeline.count("GiveBack"),
        "returned": timeline.count("GiveBackReturned"),
        "scale": md["status"].get("scale"),
    }


def distinct(values: list[Any]) -> list[Any]:
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


async def test_the_worker_returns_one_replica_per_interval_and_releases_the_override(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = await give_back(cluster(), monkeypatch)
    assert seen["phase"] == "Returned"
    assert seen["replicas"] == [4, 3, 2]
    assert distinct(seen["overrides"]) == [3, None]
    assert (seen["steps"], seen["returned"], seen["scale"]) == (2, 1, None)


async def test_a_fault_at_any_call_of_the_give_back_changes_nothing_but_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    baseline = cluster()
    expected = await give_back(baseline, monkeypatch)
    kinds = BEFORE + AFTER
    for number in range(len(baseline.calls)):
        kube = cluster()
        kind = kinds[number % len(kinds)]
        kube.faults = {number: fakekube.FAULTS[kind]}
        seen = await give_back(kube, monkeypatch)
        context = f"{kind} at call {number} ({kube.calls[number] if number < len(kube.calls) else '-'})"
        assert seen["phase"] == "Returned", context
        assert seen["replicas"] == expected["replicas"], context
        assert distinct(seen["overrides"]) == distinct(expected["overrides"]), context
        assert (seen["steps"], seen["returned"], seen["scale"]) == (2, 1, None), context
