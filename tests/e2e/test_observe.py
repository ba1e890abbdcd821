"""End to end: simulator traffic -> real Prometheus -> SLO verdicts, Incidents, and holding on outages.

The deployments here are ``paused`` (no runbook actions), so the tests see the observe half alone:
breach detection, diagnosis, the Incident record, and the no-data safety rule.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.e2e import events, waiting
from tests.e2e.operator_fixtures import OperatorProcess
from tests.e2e.test_modeldeployment import GROUP, PLURAL, VERSION, condition, create, get, manifest
from vigil.dev import sandbox as sandbox_mod
from vigil.sim import client as simclient

pytestmark = pytest.mark.e2e

AVAILABILITY = {"name": "availability", "kind": "availability", "objective": 99.0, "period": "1h"}


def slo_state(kube: client.ApiClient, ns: str, name: str, slo: str = "availability") -> str | None:
    md = get(kube, ns, name)
    found = next((s for s in md.get("status", {}).get("slos", []) if s["name"] == slo), None)
    return found["state"] if found else None


def incidents(kube: client.ApiClient, ns: str) -> list[dict[str, Any]]:
    listed = client.CustomObjectsApi(kube).list_namespaced_custom_object(GROUP, VERSION, ns, "incidents")
    items: list[dict[str, Any]] = listed["items"]
    return items


def failures(sim: simclient.ControlClient, ns: str, name: str) -> int:
    pods = sim.state()["pods"]
    return sum(sum(p["failure"].values()) for p in pods if p.get("namespace") == ns and p["modeldeployment"] == name)


def deploy_and_warm(
    kube: client.ApiClient, sim: simclient.ControlClient, ns: str, name: str, rate: float = 40.0, **spec: Any
) -> dict[str, Any]:
    create(kube, ns, manifest(name, replicas=2, slos=[AVAILABILITY], paused=True, **spec))
    waiting.until(lambda: (condition(get(kube, ns, name), "Available") or {}).get("status") == "True", 120, "Available")
    if rate:
        sim.set_load({"namespace": ns, "name": name, "rate": rate})
        waiting.until(lambda: slo_state(kube, ns, name) == "Met", 120, "SLO Met under clean traffic")
    return get(kube, ns, name)


def test_injected_errors_on_a_new_version_breach_and_open_a_diagnosed_incident(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess, sim: simclient.ControlClient
) -> None:
    deploy_and_warm(kube, sim, namespace, "resnet")
    sim.set_fault({"namespace": namespace, "name": "resnet", "version": "2", "errorRatio": 0.3})
    client.CustomObjectsApi(kube).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "resnet", {"spec": {"model": {"version": "2"}}}
    )
    md = waiting.until(
        lambda: (
            (m := get(kube, namespace, "resnet"))
            and m["status"].get("activeIncident")
            and m["status"]["slos"][0]["state"] == "Breached"
            and m
        ),
        180,
        "Breached with an active incident",
    )
    assert condition(md, "SLOMet")["status"] == "False"  # type: ignore[index]
    (incident,) = incidents(kube, namespace)
    assert incident["metadata"]["name"] == md["status"]["activeIncident"]
    # Paused: the plan only records what it would do, and may already have played through.
    assert incident["status"]["phase"] in ("Open", "Escalated")
    steps = (incident["status"].get("plan") or {}).get("steps", [])
    assert all(s["state"] in ("Pending", "DryRun", "Skipped") for s in steps if s["name"] != "escalate"), steps
    assert incident["status"]["diagnosis"]["cause"] == "BadRollout"
    assert any(e["kind"] == "revisionChange" for e in incident["status"]["diagnosis"]["evidence"])
    assert [e["type"] for e in incident["status"]["timeline"]][:2] == ["Detected", "Diagnosed"]
    assert incident["metadata"]["ownerReferences"][0]["name"] == "resnet"

    sim.clear_faults(namespace, "resnet")
    waiting.until(lambda: slo_state(kube, namespace, "resnet") == "Met", 180, "SLO Met after the fault is removed")
    resolved = waiting.until(
        lambda: (i := incidents(kube, namespace)) and i[0]["status"]["phase"] == "Resolved" and i[0],
        60,
        "incident resolved",
    )
    assert resolved["status"]["timeline"][-1]["type"] == "Resolved"
    # The Incident's Resolved is written first; the deployment's status follows in the same reconcile.
    waiting.until(
        lambda: get(kube, namespace, "resnet")["status"].get("activeIncident") is None or None,
        30,
        "the deployment to let go of its resolved incident",
    )
    for reason in ("SLOBreached", "IncidentOpened", "IncidentResolved"):
        events.posted(kube, namespace, "resnet", reason)


def test_no_traffic_is_insufficient_traffic_and_opens_no_incident(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess, sim: simclient.ControlClient
) -> None:
    deploy_and_warm(kube, sim, namespace, "idle", rate=0)
    md = waiting.until(
        lambda: (m := get(kube, namespace, "idle")) and m["status"].get("slos") and m, 120, "an SLO verdict"
    )
    assert md["status"]["slos"][0]["state"] in ("InsufficientTraffic", "NoData")
    waiting.until(lambda: slo_state(kube, namespace, "idle") == "InsufficientTraffic", 120, "InsufficientTraffic")
    assert incidents(kube, namespace) == []


def test_prometheus_outage_holds_verdicts_and_recovers_by_itself(
    kube: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    sim: simclient.ControlClient,
    sandbox_handle: sandbox_mod.Sandbox,
) -> None:
    deploy_and_warm(kube, sim, namespace, "steady")
    sandbox_handle.stop_prometheus()
    try:
        md = waiting.until(
            lambda: (
                (m := get(kube, namespace, "steady"))
                and (condition(m, "MetricsAvailable") or {}).get("status") == "False"
                and m
            ),
            60,
            "MetricsAvailable=False",
        )
        assert condition(md, "MetricsAvailable")["reason"] == "PrometheusUnavailable"  # type: ignore[index]
        # A fault during the outage must not open an incident: nothing can see it. Let the fault
        # run for several evaluation intervals (300 failed requests at 20/s is about 15 s).
        before = failures(sim, namespace, "steady")
        sim.set_fault({"namespace": namespace, "name": "steady", "errorRatio": 0.5})
        waiting.until(lambda: failures(sim, namespace, "steady") >= before + 300, 60, "the fault to fail requests")
        held = get(kube, namespace, "steady")
        assert held["status"]["slos"][0]["state"] == "Met"
        assert held["status"].get("activeIncident") is None
        assert incidents(kube, namespace) == []
        sim.clear_faults(namespace, "steady")
    finally:
        sandbox_handle.start_prometheus()
    waiting.until(
        lambda: (condition(get(kube, namespace, "steady"), "MetricsAvailable") or {}).get("status") == "True",
        120,
        "MetricsAvailable=True again",
    )
    waiting.until(lambda: slo_state(kube, namespace, "steady") == "Met", 120, "SLO Met after the outage")
    assert incidents(kube, namespace) == []
