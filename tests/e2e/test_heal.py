"""End to end: runbooks restore service on the real sandbox, exactly once.

Each test drives real simulator traffic through the real Service selection, judged by a real
Prometheus, and lets the operator (a subprocess, so it can be SIGKILLed) heal the deployment.
These tests use only their module's operator, their namespaces and the lane's own Prometheus, and
their pods hold no GPU (``triton: {gpus: 0}``, CPU-only pods), so they run in the isolated lane. The
heals that stop the shared Prometheus or count the cluster's free GPUs are in
:mod:`tests.e2e.test_heal_shared_sandbox` (serial lane); both use the helpers here.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.e2e import fleet, waiting
from tests.e2e.operator_fixtures import OperatorProcess
from tests.e2e.own_prometheus import OwnPrometheus
from tests.e2e.test_modeldeployment import GROUP, PLURAL, VERSION, condition, create, get, manifest
from tests.e2e.test_observe import incidents, slo_state
from vigil.sim import client as simclient

pytestmark = [pytest.mark.e2e, pytest.mark.isolated]

AVAILABILITY = {"name": "availability", "kind": "availability", "objective": 99.0, "period": "1h"}
QUEUE = {"name": "queue", "kind": "queueTime", "thresholdMs": 100, "period": "1h"}
# Load surges: 20 req/s on two replicas of 100 req/s, then 240 req/s: the replicas serve their
# 200 req/s (what they served is the rate diagnosis reads), ten times the baseline, and the rest
# queues. Queue time breaches 2-3 s into the surge, when the 20 s current rate window holds only
# that much of it: a tenfold served rate still reads twice its baseline then.
BASE_RATE = 20
SURGE_RATE = 240
# CPU-only pods: an isolated test must not take GPUs the serial lane counts.
CPU_ONLY = {"gpus": 0}


def custom(kube: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube)


def create_runbook(kube: client.ApiClient, ns: str, name: str, spec: dict[str, Any]) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Runbook", "metadata": {"name": name}, "spec": spec}
    custom(kube).create_namespaced_custom_object(GROUP, VERSION, ns, "runbooks", body)


def patch_spec(kube: client.ApiClient, ns: str, name: str, spec: dict[str, Any]) -> None:
    custom(kube).patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, {"spec": spec})


def approve(kube: client.ApiClient, ns: str, incident: str) -> None:
    """What a human does to let an approval runbook act: annotate the Incident."""
    body = {"metadata": {"annotations": {"vigil.dev/approve": "true"}}}
    custom(kube).patch_namespaced_custom_object(GROUP, VERSION, ns, "incidents", incident, body)


def last_known_good(kube: client.ApiClient, ns: str, name: str) -> str | None:
    revisions = get(kube, ns, name).get("status", {}).get("revisions", [])
    return next((r["name"] for r in revisions if r.get("lastKnownGood")), None)


def healthy_v1(
    kube: client.ApiClient, sim: simclient.ControlClient, ns: str, name: str, rate: float = 40, **spec: Any
) -> tuple[dict[str, Any], str]:
    """A deployment serving version 1 under load, Met, with v1 marked last-known-good."""
    spec.setdefault("slos", [AVAILABILITY])
    create(kube, ns, manifest(name, replicas=2, **{"bakeTime": "15s", "maxReplicas": 6, **spec}))
    waiting.until(lambda: (condition(get(kube, ns, name), "Available") or {}).get("status") == "True", 120, "Available")
    sim.set_load({"namespace": ns, "name": name, "rate": rate})
    good = waiting.until(lambda: last_known_good(kube, ns, name), 180, "v1 last-known-good")
    return get(kube, ns, name), good


def release_bad_v2(kube: client.ApiClient, sim: simclient.ControlClient, ns: str, name: str) -> None:
    sim.set_fault({"namespace": ns, "name": name, "version": "2", "errorRatio": 0.3})
    patch_spec(kube, ns, name, {"model": {"version": "2"}})


def only_incident(kube: client.ApiClient, ns: str) -> dict[str, Any] | None:
    found = incidents(kube, ns)
    return found[0] if len(found) == 1 else None


def step(incident: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in incident["status"]["plan"]["steps"] if s["name"] == name)


def resolved(kube: client.ApiClient, ns: str) -> dict[str, Any] | None:
    incident = only_incident(kube, ns)
    return incident if incident and incident["status"]["phase"] == "Resolved" else None


def test_bad_release_is_rolled_back_to_last_known_good_and_the_incident_resolves(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess, sim: simclient.ControlClient
) -> None:
    _, good = healthy_v1(kube, sim, namespace, "resnet", triton=CPU_ONLY)
    release_bad_v2(kube, sim, namespace, "resnet")
    incident = waiting.until(lambda: resolved(kube, namespace), 300, "the incident to resolve")

    md = get(kube, namespace, "resnet")
    assert md["spec"]["model"]["version"] == "2", "the user's spec must never be edited"
    assert md["status"]["rollback"]["revision"] == good
    assert md["status"]["currentRevision"] == good
    assert md["status"]["modelVersion"] == "1"
    rolled = condition(md, "RolledBack")
    assert rolled is not None
    assert rolled["status"] == "True"
    assert f"serving last-known-good {good}" in rolled["message"]
    assert incident["metadata"]["name"] in rolled["message"]
    # The incident resolved on a Met verdict, which the deployment's status write (after the
    # Incident's, in the same reconcile) carries.
    waiting.until(lambda: slo_state(kube, namespace, "resnet") == "Met", 30, "the Met verdict in the status")

    assert incident["status"]["diagnosis"]["cause"] == "BadRollout"
    assert step(incident, "rollback")["state"] == "Succeeded"
    types = [e["type"] for e in incident["status"]["timeline"]]
    assert types[0] == "Detected"
    assert types[-1] == "Resolved"
    assert "Diagnosed" in types
    assert types.count("Intent") == 1, types  # the rollback was decided (and recorded) once


def test_load_surge_breaches_queue_time_and_is_scaled_out(
    kube: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    sim: simclient.ControlClient,
    own_prometheus: OwnPrometheus,
) -> None:
    create_runbook(
        kube,
        namespace,
        "surge",
        {
            "triggers": [{"slo": "queue", "causes": ["LoadSurge"]}],
            "steps": [{"name": "scale", "action": "scaleOut", "params": {"stepReplicas": 4}, "verifyAfter": "30s"}],
        },
    )
    healthy_v1(
        kube, sim, namespace, "surge", rate=BASE_RATE, slos=[QUEUE], runbookRef={"name": "surge"}, triton=CPU_ONLY
    )
    fleet.steady_for_a_baseline(own_prometheus.url, namespace, "surge")  # what the operator reads
    sim.set_load({"namespace": namespace, "name": "surge", "rate": SURGE_RATE})
    incident = waiting.until(lambda: resolved(kube, namespace), 300, "the incident to resolve")
    md = get(kube, namespace, "surge")
    print(f"load surge diagnosed: {incident['status']['diagnosis']['summary']}")
    assert incident["status"]["diagnosis"]["cause"] == "LoadSurge", incident["status"]["diagnosis"]
    assert " before it (windows capped to the age of the data)" in incident["status"]["diagnosis"]["summary"]
    assert incident["status"]["plan"]["runbook"] == "surge"
    assert md["status"]["scale"]["replicas"] == 6
    assert md["status"]["readyReplicas"] == 6
    assert md["spec"]["replicas"] == 2
    assert condition(md, "ScaledOut")["status"] == "True"  # type: ignore[index]
    assert step(incident, "scale")["state"] == "Succeeded"


def test_operator_killed_mid_plan_resumes_without_repeating_the_action(
    kube: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    sim: simclient.ControlClient,
) -> None:
    # The built-in runbook's rollback verifies after 60s (the first test proves it): 30s leaves as
    # long a window to kill the operator in, and resolves sooner.
    create_runbook(
        kube, namespace, "crashy", {"steps": [{"name": "rollback", "action": "rollback", "verifyAfter": "30s"}]}
    )
    _, good = healthy_v1(kube, sim, namespace, "crashy", runbookRef={"name": "crashy"}, triton=CPU_ONLY)
    release_bad_v2(kube, sim, namespace, "crashy")

    def acting() -> dict[str, Any] | None:
        incident = only_incident(kube, namespace)
        plan = (incident or {}).get("status", {}).get("plan")
        if plan and step(incident, "rollback")["state"] in ("Intended", "Verifying"):  # type: ignore[arg-type]
            return incident
        return None

    waiting.until(acting, 240, "the rollback step to be under way")
    operator.kill()
    since = get(kube, namespace, "crashy")["status"].get("rollback", {}).get("since")
    operator.start()
    incident = waiting.until(lambda: resolved(kube, namespace), 300, "the incident to resolve after the restart")
    md = get(kube, namespace, "crashy")
    assert md["status"]["currentRevision"] == good
    if since is not None:
        assert md["status"]["rollback"]["since"] == since, "the rollback must not be re-applied"
    types = [e["type"] for e in incident["status"]["timeline"]]
    assert types.count("Intent") == 1, types
    events = client.CoreV1Api(kube).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={incident['metadata']['name']}"
    )
    assert sum(1 for e in events.items if e.reason == "IncidentOpened") <= 1


def test_dry_run_records_the_intended_rollback_and_touches_nothing(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess, sim: simclient.ControlClient
) -> None:
    _, good = healthy_v1(kube, sim, namespace, "dry", paused=True, triton=CPU_ONLY)
    release_bad_v2(kube, sim, namespace, "dry")

    def recorded() -> dict[str, Any] | None:
        incident = only_incident(kube, namespace)
        plan = (incident or {}).get("status", {}).get("plan")
        return incident if plan and step(incident, "rollback")["state"] == "DryRun" else None  # type: ignore[arg-type]

    incident = waiting.until(recorded, 240, "a dry-run rollback in the incident")
    assert step(incident, "rollback")["target"]["toRevision"] == good
    md = get(kube, namespace, "dry")
    assert "rollback" not in md["status"]
    assert md["status"]["modelVersion"] == "2"
    assert md["status"]["currentRevision"] != good
