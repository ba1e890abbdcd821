"""End to end: heals that need the shared sandbox to themselves (the serial lane).

The approval test stops the sandbox's shared Prometheus while a plan waits for approval, and the
escalation test fills the cluster's GPUs so that a scale-out cannot fit: neither can run beside
another test. The heals that need neither are in :mod:`tests.e2e.test_heal` (isolated lane).
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.e2e import fleet, waiting
from tests.e2e.operator_fixtures import OperatorProcess
from tests.e2e.test_heal import (
    BASE_RATE,
    QUEUE,
    SURGE_RATE,
    approve,
    create_runbook,
    custom,
    healthy_v1,
    only_incident,
    release_bad_v2,
    resolved,
    step,
)
from tests.e2e.test_modeldeployment import condition, create, get, manifest
from tests.e2e.test_observe import failures
from vigil.dev import sandbox as sandbox_mod
from vigil.sim import client as simclient

pytestmark = pytest.mark.e2e


def test_approval_mode_waits_and_holds_while_metrics_are_missing_then_acts(
    kube: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    sim: simclient.ControlClient,
    sandbox_handle: sandbox_mod.Sandbox,
) -> None:
    create_runbook(
        kube,
        namespace,
        "careful",
        {
            "mode": "approval",
            "steps": [{"name": "rollback", "action": "rollback", "verifyAfter": "30s"}],
        },
    )
    _, good = healthy_v1(kube, sim, namespace, "careful", runbookRef={"name": "careful"})
    release_bad_v2(kube, sim, namespace, "careful")
    incident = waiting.until(
        lambda: (i := only_incident(kube, namespace)) and i["status"]["phase"] == "AwaitingApproval" and i,
        240,
        "the plan to wait for approval",
    )
    assert "rollback" not in get(kube, namespace, "careful")["status"]

    # Approve while Prometheus is down: nothing may happen until metrics are back.
    sandbox_handle.stop_prometheus()
    try:
        waiting.until(
            lambda: (condition(get(kube, namespace, "careful"), "MetricsAvailable") or {}).get("status") == "False",
            60,
            "MetricsAvailable=False",
        )
        approve(kube, namespace, incident["metadata"]["name"])
        before = failures(sim, namespace, "careful")
        waiting.until(lambda: failures(sim, namespace, "careful") >= before + 200, 60, "bad traffic during the outage")
        assert "rollback" not in get(kube, namespace, "careful")["status"], "acted without metrics"
    finally:
        sandbox_handle.start_prometheus()
    waiting.until(lambda: resolved(kube, namespace), 300, "the approved rollback to restore the SLO")
    assert get(kube, namespace, "careful")["status"]["currentRevision"] == good


def served(sim: simclient.ControlClient, ns: str, name: str) -> int:
    return sum(p["success"] for p in sim.state()["pods"] if p.get("namespace") == ns and p["modeldeployment"] == name)


def test_scale_out_blocked_by_gpu_capacity_escalates_to_a_fallback_deployment(
    kube: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    sim: simclient.ControlClient,
    sandbox: sandbox_mod.SandboxInfo,
) -> None:
    # The 1-GPU fallback is pinned to one node, so two 8-GPU replicas fit on the other nodes and
    # the free GPUs (32 - 1 - 16 = 15) can never hold two more: any scale-out is blocked.
    pinned = {"gpus": 1, "nodeSelector": {"kubernetes.io/hostname": "gpu-node-0"}}
    create(kube, namespace, manifest("small", replicas=1, triton=pinned))
    waiting.until(
        lambda: (condition(get(kube, namespace, "small"), "Available") or {}).get("status") == "True",
        240,
        "fallback Available",
    )
    healthy_v1(
        kube,
        sim,
        namespace,
        "big",
        rate=BASE_RATE,
        slos=[QUEUE],
        triton={"gpus": 8},
        maxReplicas=4,
        traffic={"fallback": "small"},
    )
    fleet.steady_for_a_baseline(sandbox.prometheus_url, namespace, "big")
    sim.set_load({"namespace": namespace, "name": "big", "rate": SURGE_RATE})

    def shifted() -> dict[str, Any] | None:
        md = get(kube, namespace, "big")
        return md if md["status"].get("traffic") else None

    md = waiting.until(shifted, 300, "traffic shifted to the fallback")
    assert md["status"]["traffic"]["splits"] == [{"backend": "md:small", "weight": 100}]
    assert "scale" not in md["status"], "the blocked scale-out must not have been applied"
    incident = only_incident(kube, namespace)
    assert incident is not None
    print(f"load surge diagnosed: {incident['status']['diagnosis']['summary']}")
    assert incident["status"]["diagnosis"]["cause"] == "LoadSurge", incident["status"]["diagnosis"]
    scale = step(incident, "scale-out")
    assert scale["state"] == "Failed"
    assert "GPU capacity" in scale["result"]
    assert step(incident, "shift-to-fallback")["state"] in ("Verifying", "Succeeded", "Failed")
    waiting.until(
        lambda: (condition(get(kube, namespace, "big"), "TrafficShifted") or {}).get("status") == "True",
        60,
        "TrafficShifted=True",
    )
    route = custom(kube).get_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", "big")
    backends = route["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends if b["weight"]] == [("small", 100)]
    before = served(sim, namespace, "small")
    waiting.until(lambda: served(sim, namespace, "small") > before + 200, 60, "the fallback to serve the traffic")
