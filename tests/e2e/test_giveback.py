"""Give back on the real sandbox: what an incident added is returned step by step, or kept when it must be.

Each test runs several deployments side by side in its namespace, one per scenario, under an
operator of its own judged by the lane's own Prometheus (the isolated lane): their pods hold no
GPU, so the serial lane's GPU counts are untouched. Windows are short on purpose: SLOs judged over
20s/40s windows, a 20-30s stabilization window and a 20s interval, so a whole give-back takes a
minute or two instead of the production defaults' quarter of an hour.

Scale-in (one surge, three endings):
  * ``back``: the surge ends; the replicas come back one per interval to ``spec.replicas``.
  * ``stay``: the surge goes on; the first step down overloads the deployment, the SLO degrades,
    the step is restored and the give-back stops.
  * ``hpa``: an HPA on the ModelDeployment raises ``minReplicas`` while vigil still holds its
    scale-out; the HPA writes ``spec.replicas`` through the scale subresource and owns the count
    from then on: vigil drops its override and returns nothing more.
Shift home (a primary whose errors moved all its traffic to a fallback):
  * ``healed``: the primary is fine again; its traffic comes home in steps, through the HTTPRoute.
  * ``sick``: the primary still fails; the first step home degrades it and the shift is aborted
    back to the fallback.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.e2e import events, fleet, waiting
from tests.e2e.operator_fixtures import OperatorProcess
from vigil.sim import client as simclient

pytestmark = [pytest.mark.e2e, pytest.mark.isolated]

SHORT = [{"long": "40s", "short": "20s", "factor": 1.0, "severity": "page"}]
QUEUE = {"name": "queue", "kind": "queueTime", "thresholdMs": 600, "period": "1h", "windows": SHORT}
AVAILABILITY = {
    "name": "availability",
    "kind": "availability",
    "objective": 99.0,
    "period": "1h",
    "windows": [{"long": "40s", "short": "20s", "factor": 2.0, "severity": "page"}],
}
CAPACITY = 50.0  # requests/s per simulated replica
CALM, SURGE = 40.0, 160.0  # 2 replicas: 40% and 160% busy; 4 replicas: 80%; 3 replicas: 107%
# stay's load once its incident resolved: 4 replicas 90% busy (mean queue time ~40 ms, Met); 3 replicas
# 120%, so the queue grows by 30 requests/s and breaches within a 20 s interval. At 107% it grew by 10/s
# and a loaded machine's step could pass its interval before the queue time crossed the threshold.
STAY = 180.0


def custom(kube: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube)


def apply_runbook(kube: client.ApiClient, ns: str, name: str, spec: dict[str, Any]) -> None:
    body = {"apiVersion": f"{fleet.GROUP}/{fleet.VERSION}", "kind": "Runbook", "metadata": {"name": name}, "spec": spec}
    fleet.retried(
        lambda: custom(kube).patch_namespaced_custom_object(
            fleet.GROUP,
            fleet.VERSION,
            ns,
            "runbooks",
            name,
            body,
            field_manager="e2e-user",
            force=True,
            _content_type=fleet.APPLY,
        ),
        f"apply Runbook {name}",
    )


def incident_of(kube: client.ApiClient, ns: str, md: str) -> dict[str, Any] | None:
    """The md's incident that holds (or held) a give-back, else its newest one."""
    found = fleet.incidents_by_md(kube, ns).get(md, [])
    with_record = [i for i in found if (i.get("status") or {}).get("giveBack")]
    pool = with_record or found
    return max(pool, key=lambda i: i["status"].get("openedAt", "")) if pool else None


def give_back(kube: client.ApiClient, ns: str, md: str) -> dict[str, Any]:
    incident = incident_of(kube, ns, md)
    return ((incident or {}).get("status") or {}).get("giveBack") or {}


def phase_is(kube: client.ApiClient, ns: str, md: str, *phases: str) -> dict[str, Any] | None:
    record = give_back(kube, ns, md)
    return record if record.get("phase") in phases else None


def timeline(kube: client.ApiClient, ns: str, md: str) -> list[dict[str, Any]]:
    incident = incident_of(kube, ns, md)
    return list(((incident or {}).get("status") or {}).get("timeline", []))


def slo_state(md: dict[str, Any]) -> str | None:
    slos = md.get("status", {}).get("slos", [])
    return str(slos[0]["state"]) if slos else None


def serving_replicas(kube: client.ApiClient, ns: str, md: str) -> int:
    revision = fleet.get_md(kube, ns, md)["status"]["currentRevision"]
    deployment = client.AppsV1Api(kube).read_namespaced_deployment(f"{md}-{revision}", ns)
    return int(deployment.spec.replicas)


# --- scale-in ---------------------------------------------------------------------------------


SCALE_RUNBOOK = {
    "triggers": [{"slo": "queue"}],
    "steps": [{"name": "scale", "action": "scaleOut", "params": {"stepReplicas": 2}, "verifyAfter": "30s"}],
}


def surge_md(name: str, stabilization: str) -> dict[str, Any]:
    return fleet.md_manifest(
        name,
        replicas=2,
        maxReplicas=4,
        slos=[QUEUE],
        runbookRef={"name": "surge"},
        giveBack={"stabilizationWindow": stabilization, "interval": "20s", "stepReplicas": 1},
    )


def apply_hpa(kube: client.ApiClient, ns: str, target: str, min_replicas: int) -> None:
    """An HPA on the ModelDeployment's scale subresource. The sandbox has no metrics API, so the
    HPA controller only enforces its bounds: it scales exactly when spec.replicas is outside them."""
    body = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": target},
        "spec": {
            "scaleTargetRef": {
                "apiVersion": f"{fleet.GROUP}/{fleet.VERSION}",
                "kind": "ModelDeployment",
                "name": target,
            },
            "minReplicas": min_replicas,
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                }
            ],
        },
    }
    fleet.retried(
        lambda: client.AutoscalingV2Api(kube).patch_namespaced_horizontal_pod_autoscaler(
            target, ns, body, field_manager="e2e-user", force=True, _content_type=fleet.APPLY
        ),
        f"apply HPA {target}",
    )


def test_a_scale_out_is_given_back_step_by_step_stopped_when_it_degrades_and_handed_to_an_hpa(
    kube: client.ApiClient, namespace: str, scoped_operator: OperatorProcess, sim: simclient.ControlClient
) -> None:
    scoped_operator.start()
    names = ["back", "stay", "hpa"]
    apply_runbook(kube, namespace, "surge", SCALE_RUNBOOK)
    for name in names:
        fleet.retried(
            lambda name=name: sim.set_fault({"namespace": namespace, "name": name, "capacity": CAPACITY}), "capacity"
        )  # type: ignore[misc]
        # hpa holds its scale-out long enough for the HPA to take over before any step.
        fleet.apply_md(kube, namespace, surge_md(name, "10m" if name == "hpa" else "30s"))
    try:
        with fleet.Recorder(kube, namespace) as recorder:
            _scale_in(kube, namespace, sim, names, recorder)
    finally:
        fleet.quiet(sim, namespace, names)


def _scale_in(
    kube: client.ApiClient, ns: str, sim: simclient.ControlClient, names: list[str], recorder: fleet.Recorder
) -> None:
    waiting.until(
        lambda: fleet.all_of(names, lambda md: fleet.condition(md, "Available") == "True", kube, ns), 240, "Available"
    )
    for name in names:
        fleet.retried(lambda name=name: sim.set_load({"namespace": ns, "name": name, "rate": CALM}), "calm load")  # type: ignore[misc]
    waiting.until(
        lambda: fleet.all_of(names, lambda md: slo_state(md) == "Met", kube, ns), 180, "SLO Met under calm load"
    )
    for name in names:
        fleet.retried(lambda name=name: sim.set_load({"namespace": ns, "name": name, "rate": SURGE}), "surge")  # type: ignore[misc]

    def scaled(md: dict[str, Any]) -> bool:
        return bool((md["status"].get("scale") or {}).get("replicas") == 4 and md["status"].get("readyReplicas") == 4)

    waiting.until(lambda: fleet.all_of(names, scaled, kube, ns), 300, "the surge scaled out to 4 replicas")
    waiting.until(lambda: phase_is(kube, ns, "stay", "Stabilizing"), 240, "stay's give-back to stabilize")
    fleet.retried(lambda: sim.set_load({"namespace": ns, "name": "stay", "rate": STAY}), "the surge grows for stay")

    fleet.retried(lambda: sim.set_load({"namespace": ns, "name": "back", "rate": CALM}), "the surge ends for back")
    apply_hpa(kube, ns, "hpa", min_replicas=2)  # within bounds: the HPA leaves spec.replicas alone
    waiting.until(lambda: phase_is(kube, ns, "hpa", "Stabilizing"), 300, "hpa's give-back to stabilize")
    apply_hpa(kube, ns, "hpa", min_replicas=3)  # now it must scale: it writes spec.replicas = 3

    # back: 4 -> 3 -> 2, one replica per interval, each step verified on data from after it.
    record = waiting.until(lambda: phase_is(kube, ns, "back", "Returned", "Stopped"), 360, "back's give-back to end")
    assert record["phase"] == "Returned", record
    md = fleet.get_md(kube, ns, "back")
    assert "scale" not in md["status"], "the override is released"
    assert md["spec"]["replicas"] == 2, "the user's spec is never written"
    waiting.until(
        lambda: fleet.condition(fleet.get_md(kube, ns, "back"), "GivingBack") == "False", 30, "GivingBack=False"
    )
    assert fleet.condition(fleet.get_md(kube, ns, "back"), "ScaledOut") == "False"
    revision = md["status"]["currentRevision"]
    assert recorder.history.replicas[f"back-{revision}"][-3:] == [4, 3, 2], recorder.history.replicas
    steps = [s for s in record["steps"] if not s.get("restore")]
    assert [s["target"]["replicas"] for s in steps] == ["3", "spec"]
    assert all(s["state"] == "Succeeded" and s["judgedFrom"] < s["finishedAt"] for s in steps), steps
    entries = [e["type"] for e in timeline(kube, ns, "back")]
    assert entries.count("GiveBack") == 2, entries
    assert entries[-1] == "GiveBackReturned", entries
    assert entries.index("Resolved") < entries.index("GiveBack"), "nothing is returned before the incident resolved"

    # stay: the surge goes on (and grows); 4 -> 3 overloads it, so 4 comes back and the give-back stops.
    # A stopped give-back is tried again twice its stabilization window (60 s) after the stop, and
    # meets the same load: by now stay may have stopped more than once (as "sick" below).
    record = waiting.until(lambda: phase_is(kube, ns, "stay", "Stopped", "Returned"), 360, "stay's give-back to stop")
    assert record["phase"] == "Stopped", record
    first, restore = record["steps"][0], record["steps"][-1]
    assert (first["target"]["replicas"], first["state"]) == ("3", "Failed"), record["steps"]
    assert (restore["target"]["replicas"], restore.get("restore")) == ("4", True), record["steps"]
    waiting.until(lambda: serving_replicas(kube, ns, "stay") == 4, 60, "stay restored to 4 replicas")
    assert fleet.get_md(kube, ns, "stay")["status"]["scale"]["replicas"] == 4
    waiting.until(
        lambda: fleet.condition(fleet.get_md(kube, ns, "stay"), "GivingBack") == "False", 30, "GivingBack=False"
    )
    stops = events.posted(kube, ns, "stay", "ScaleInStopped")
    assert all(e.type == "Warning" and "back to 4 replicas" in e.message for e in stops), stops

    # hpa: the HPA wrote spec.replicas through the scale subresource; it owns the count now.
    record = waiting.until(
        lambda: phase_is(kube, ns, "hpa", "Superseded"), 120, "the HPA to take the replica count over"
    )
    md = fleet.get_md(kube, ns, "hpa")
    assert md["spec"]["replicas"] == 3
    assert "scale" not in md["status"], "vigil's override gave way to the new owner"
    assert "spec.replicas 3" in record["message"], record
    assert [s for s in record["steps"]] == [], "vigil returned nothing itself"
    writers = {
        f["manager"]
        for f in md["metadata"]["managedFields"]
        if "f:replicas" in str(f.get("fieldsV1", {}).get("f:spec", {}))
    }
    assert writers, md["metadata"]["managedFields"]
    assert "vigil" not in writers, writers
    waiting.until(lambda: serving_replicas(kube, ns, "hpa") == 3, 60, "hpa at the HPA's 3 replicas")


# --- shift home -------------------------------------------------------------------------------


SHIFT_RUNBOOK = {
    "triggers": [{"slo": "availability"}],
    "steps": [
        {
            "name": "shift",
            "action": "shiftTraffic",
            "params": {"target": "fallback", "weight": 100},
            "verifyAfter": "20s",
            "onFailure": "escalate",
        }
    ],
}


def route_backends(kube: client.ApiClient, ns: str, name: str) -> list[tuple[str, int]]:
    route = custom(kube).get_namespaced_custom_object("gateway.networking.k8s.io", "v1", ns, "httproutes", name)
    return [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"] if b["weight"]]


def test_a_shift_to_the_fallback_comes_home_in_steps_and_is_aborted_while_the_primary_still_fails(
    kube: client.ApiClient, namespace: str, scoped_operator: OperatorProcess, sim: simclient.ControlClient
) -> None:
    scoped_operator.start()
    primaries = {"healed": "healed-fb", "sick": "sick-fb"}
    apply_runbook(kube, namespace, "away", SHIFT_RUNBOOK)
    for primary, backup in primaries.items():
        fleet.apply_md(kube, namespace, fleet.md_manifest(backup, slos=[]))
        fleet.apply_md(
            kube,
            namespace,
            fleet.md_manifest(
                primary,
                slos=[AVAILABILITY],
                runbookRef={"name": "away"},
                traffic={"fallback": backup},
                giveBack={"stabilizationWindow": "20s", "interval": "20s", "stepWeight": 50},
            ),
        )
    names = [*primaries, *primaries.values()]
    try:
        _shift_home(kube, namespace, sim, primaries)
    finally:
        fleet.quiet(sim, namespace, names)


def _shift_home(kube: client.ApiClient, ns: str, sim: simclient.ControlClient, primaries: dict[str, str]) -> None:
    names = [*primaries, *primaries.values()]
    waiting.until(
        lambda: fleet.all_of(names, lambda md: fleet.condition(md, "Available") == "True", kube, ns), 240, "Available"
    )
    for primary in primaries:
        fleet.retried(lambda p=primary: sim.set_load({"namespace": ns, "name": p, "rate": CALM}), "load")  # type: ignore[misc]
    waiting.until(lambda: fleet.all_of(primaries, lambda md: slo_state(md) == "Met", kube, ns), 180, "primaries Met")
    for primary in primaries:
        fleet.retried(lambda p=primary: sim.set_fault({"namespace": ns, "name": p, "errorRatio": 0.3}), "errors")  # type: ignore[misc]
    away = lambda md: [(s["backend"], s["weight"]) for s in (md["status"].get("traffic") or {}).get("splits", [])]  # noqa: E731
    waiting.until(
        lambda: fleet.all_of(
            primaries, lambda md: away(md) == [(f"md:{primaries[md['metadata']['name']]}", 100)], kube, ns
        ),
        240,
        "all traffic shifted to the fallbacks",
    )
    for primary, backup in primaries.items():
        # The status records the split when it is decided; the HTTPRoute follows in the same reconcile.
        waiting.until(
            lambda p=primary, b=backup: route_backends(kube, ns, p) == [(b, 100)],  # type: ignore[misc]
            30,
            f"{primary}'s route on its fallback",
        )
    fleet.retried(lambda: sim.clear_faults(ns, "healed"), "healed recovers")

    # sick: the first step home meets its errors; back to the fallback, and stop. Checked first: a stopped
    # give-back is tried again after twice its stabilization window (40 s here), healed's Returned is final.
    record = waiting.until(lambda: phase_is(kube, ns, "sick", "Stopped", "Returned"), 300, "sick's shift home to abort")
    assert record["phase"] == "Stopped", record
    first, restore = record["steps"][0], record["steps"][-1]
    assert first["state"] == "Failed", record["steps"]
    assert first["target"]["splits"].endswith("md:sick-fb=50"), record["steps"]
    assert (restore["target"]["splits"], restore.get("restore")) == ("md:sick-fb=100", True), record["steps"]
    assert away(fleet.get_md(kube, ns, "sick")) == [("md:sick-fb", 100)]
    waiting.until(lambda: route_backends(kube, ns, "sick") == [("sick-fb", 100)], 60, "the route back at the fallback")
    aborts = events.posted(kube, ns, "sick", "ShiftHomeAborted")  # a retry may have stopped again by now
    assert all(e.type == "Warning" and "back to md:sick-fb 100%" in e.message for e in aborts), aborts

    # healed: 100% away -> 50% home -> all home, each step judged on the primary's own fresh data.
    record = waiting.until(lambda: phase_is(kube, ns, "healed", "Returned", "Stopped"), 300, "healed's shift home")
    assert record["phase"] == "Returned", record
    targets = [s["target"]["splits"] for s in record["steps"]]
    revision = fleet.get_md(kube, ns, "healed")["status"]["currentRevision"]
    assert targets == [f"{revision}=50,md:healed-fb=50", ""], targets
    md = fleet.get_md(kube, ns, "healed")
    assert "traffic" not in md["status"]
    assert fleet.condition(md, "TrafficShifted") == "False"
    waiting.until(
        lambda: route_backends(kube, ns, "healed") == [("healed", 1)], 30, "the route sending everything home"
    )
    incident = incident_of(kube, ns, "healed")
    assert incident is not None
    assert incident["status"]["phase"] == "Resolved"
