"""Prometheus down for 10 minutes during a breach (issue 7): no action without metrics, recovery after.

Two deployments of one operator (scoped to the test's namespace, judged by the lane's own
Prometheus, which this test stops and starts) are mid-incident when Prometheus stops:

* ``waiting``: a bad release under an approval runbook; its rollback is pending, and a human
  approves it *during* the outage. Approval does not outrank missing metrics: nothing happens
  until Prometheus is back, then the rollback runs once, is verified and the incident resolves.
* ``verifying``: a bad release already rolled back, its verification under way (``verifyAt``
  set) when Prometheus stops. The last verdict before the outage stays in the status, and the
  outage outlasts ``verifyAfter`` many times over; the runbook's next step, a scale-out, is
  what a failed verification would run. The verification holds through the outage, restarts on
  data from after the return, and succeeds: the scale-out never runs.

During the outage, polled every few seconds: both deployments say ``MetricsAvailable=False``
(``PrometheusUnavailable``), both plans hold (``holding: metrics unavailable`` in the
timelines, no new ``Intent``), and from an independent watch, no ``status.rollback`` is written
and no Deployment changes its replicas. ``VIGIL_OUTAGE_SECONDS`` (default 600) sets the outage.

Why 10 minutes and not a shorter outage that still outlasts every hold and staleness window: the
length is the issue's own requirement for this e2e test (issue 7, item 8, "Tests of the real
edges": "Prometheus down for 10 minutes during a breach: zero destructive actions, recovery when
it returns"); issue 11's 10 minutes belong to ``bench quiet`` and are measured there. So the test
keeps 600 s (about 12.5 minutes in all) and pays for it in the schedule instead: it is the longest
isolated module, so the lanes' scheduler (:mod:`tests.e2e.lanes`, longest first) starts it on an
isolated worker at the start of the run, where it overlaps the serial lane rather than extending it.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from typing import Any

import pytest
from kubernetes import client

from tests.e2e import fleet, waiting
from tests.e2e.operator_fixtures import OperatorProcess
from tests.e2e.own_prometheus import OwnPrometheus
from vigil.api import conditions as cond
from vigil.sim import client as simclient

pytestmark = [pytest.mark.e2e, pytest.mark.isolated]

OUTAGE_SECONDS = float(os.environ.get("VIGIL_OUTAGE_SECONDS", "600"))
RATE = 20.0
WAITING, VERIFYING = "waiting", "verifying"
RUNBOOKS: dict[str, dict[str, Any]] = {
    WAITING: {"mode": "approval", "steps": [{"name": "rollback", "action": "rollback", "verifyAfter": "30s"}]},
    VERIFYING: {
        "steps": [
            {"name": "rollback", "action": "rollback", "verifyAfter": "45s", "onFailure": "next"},
            {"name": "scale-out", "action": "scaleOut", "params": {"stepReplicas": 1}},
        ]
    },
}
HOLD = "holding: metrics unavailable"


def incident_of(kube: client.ApiClient, ns: str, name: str) -> dict[str, Any] | None:
    found = fleet.incidents_by_md(kube, ns).get(name, [])
    return found[0] if len(found) == 1 else None


def approve(kube: client.ApiClient, ns: str, incident: str) -> None:
    """What a human does to let an approval runbook act: annotate the Incident."""
    body = {"metadata": {"annotations": {"vigil.dev/approve": "true"}}}
    client.CustomObjectsApi(kube).patch_namespaced_custom_object(
        fleet.GROUP, fleet.VERSION, ns, "incidents", incident, body
    )


def spec_of(name: str) -> dict[str, Any]:
    return {"runbookRef": {"name": name}}


def one_incident(kube: client.ApiClient, ns: str, name: str) -> dict[str, Any]:
    found = incident_of(kube, ns, name)
    assert found is not None, f"{name} has no single Incident"
    return found


def snapshot(kube: client.ApiClient, ns: str, history: fleet.History) -> dict[str, Any]:
    """Everything an action would change: the overrides (rollback, scale-out, shift), the intents
    recorded (a pod restart too), the plans' steps, and, from the independent watch, every
    ``status.rollback`` written and the replicas the serving revisions' Deployments went through.
    (A revision that stopped serving before the outage may still be scaled down by the reconcile
    core when its bake time ends: that is the spec converging, not a remediation.)"""
    mds = fleet.list_mds(kube, ns)
    incidents = {name: found[0] for name, found in fleet.incidents_by_md(kube, ns).items()}
    serving = [f"{name}-{md['status'].get('currentRevision')}" for name, md in mds.items()]
    return {
        "overrides": {
            name: {k: md["status"].get(k) for k in ("rollback", "scale", "traffic")} for name, md in mds.items()
        },
        "intents": {name: len(fleet.entries(found, "Intent")) for name, found in incidents.items()},
        "steps": {
            name: [(s["name"], s["state"]) for s in found["status"]["plan"]["steps"]]
            for name, found in incidents.items()
        },
        "rollbacks": {name: list(seen) for name, seen in history.rollbacks.items()},
        "replicas": {name: list(history.replicas.get(name, [])) for name in serving},
    }


def metrics_missing(kube: client.ApiClient, ns: str) -> bool:
    mds = fleet.list_mds(kube, ns)
    return all(
        (c := next((c for c in md["status"].get("conditions", []) if c["type"] == "MetricsAvailable"), None))
        and c["status"] == "False"
        and c["reason"] == "PrometheusUnavailable"
        for md in mds.values()
    )


def resolved(kube: client.ApiClient, ns: str, name: str) -> dict[str, Any] | None:
    found = incident_of(kube, ns, name)
    return found if found and found["status"]["phase"] == "Resolved" else None


@pytest.mark.timeout(int(OUTAGE_SECONDS) + 1500)
def test_ten_minutes_without_prometheus_mid_incident_act_on_nothing_and_the_plans_recover_after(
    kube: client.ApiClient,
    namespace: str,
    sim: simclient.ControlClient,
    own_prometheus: OwnPrometheus,
    scoped_operator: OperatorProcess,
    record_property: Any,
) -> None:
    names = [WAITING, VERIFYING]
    scoped_operator.start()
    for name, runbook in RUNBOOKS.items():
        fleet.apply_runbook(kube, namespace, name, runbook)
        fleet.apply_md(kube, namespace, fleet.md_manifest(name, **spec_of(name)))
    try:
        good = fleet.warm_up(kube, sim, namespace, names, RATE)
        with fleet.Recorder(kube, namespace) as recorder:
            fleet.release_bad_version(kube, sim, namespace, WAITING, **spec_of(WAITING))
            waiting.until(
                lambda: (i := incident_of(kube, namespace, WAITING)) and i["status"]["phase"] == "AwaitingApproval",
                300,
                "the approval plan to wait for approval",
            )
            fleet.release_bad_version(kube, sim, namespace, VERIFYING, **spec_of(VERIFYING))
            waiting.until(
                lambda: (i := incident_of(kube, namespace, VERIFYING)) and fleet.step_of(i, "rollback").get("verifyAt"),
                300,
                "the rollback to take effect and its verification to start",
                interval=0.25,
            )
            # Taken before the stop: the operator may see Prometheus go (and stamp the gap) while
            # stop() still waits for the process to exit and its port to close.
            stopped = datetime.datetime.now(datetime.UTC)
            own_prometheus.stop()
            outage_started = time.monotonic()
            try:
                waiting.until(lambda: metrics_missing(kube, namespace), 60, "MetricsAvailable=False everywhere")
                before = snapshot(kube, namespace, recorder.history)
                approve(kube, namespace, one_incident(kube, namespace, WAITING)["metadata"]["name"])

                def nothing_acts() -> None:
                    assert metrics_missing(kube, namespace), "MetricsAvailable flipped during the outage"
                    during = snapshot(kube, namespace, recorder.history)
                    assert during == before, f"something acted without metrics:\nbefore {before}\nduring {during}"

                checks = waiting.holds(nothing_acts, outage_started + OUTAGE_SECONDS - time.monotonic())
                held = {name: one_incident(kube, namespace, name) for name in names}
            finally:
                returned = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
                own_prometheus.start()
            outage = time.monotonic() - outage_started
            back = time.monotonic()
            incidents = {
                name: waiting.until(lambda name=name: resolved(kube, namespace, name), 420, f"{name} resolved")  # type: ignore[misc]
                for name in names
            }
            recovered_in = time.monotonic() - back
            history = recorder.history
    finally:
        fleet.quiet(sim, namespace, names)

    summary = {
        "outage_seconds": round(outage, 1),
        "checks_during_outage": checks,
        "actions_during_outage": 0,
        "resolved_after_return_seconds": round(recovered_in, 1),
        "hold_entries": {
            name: len([e for e in held[name]["status"]["timeline"] if e["message"] == HOLD]) for name in names
        },
    }
    text = json.dumps(summary, sort_keys=True)
    print(f"outage result: {text}")
    record_property("outage", text)

    # The plans held, and said so.
    for name in names:
        assert any(e["message"] == HOLD for e in held[name]["status"]["timeline"]), name
    assert held[WAITING]["status"]["phase"] == "AwaitingApproval"
    assert fleet.step_of(held[WAITING], "rollback")["state"] == "Pending"
    assert fleet.step_of(held[VERIFYING], "rollback")["state"] == "Verifying"
    missing_since = cond.parse_time(fleet.step_of(held[VERIFYING], "rollback")["metricsMissingSince"])
    assert missing_since >= stopped.replace(microsecond=0)

    # Then each acted exactly once, after the return, and both resolved.
    for name in names:
        incident = incidents[name]
        assert len(fleet.entries(incident, "Intent")) == 1, fleet.entries(incident, "Intent")
        assert fleet.step_of(incident, "rollback")["state"] == "Succeeded"
        md = fleet.get_md(kube, namespace, name)
        assert md["status"]["currentRevision"] == good[name]
        assert len(history.rollbacks[name]) == 1, history.rollbacks[name]
        assert "scale" not in md["status"], "a scale-out ran"
    waiting_rollback = fleet.get_md(kube, namespace, WAITING)["status"]["rollback"]
    assert cond.parse_time(waiting_rollback["since"]) >= returned, "acted before the return"
    assert fleet.step_of(incidents[VERIFYING], "scale-out")["state"] == "Skipped"

    # The verification restarted on data from after the return and was judged on it.
    verifying = incidents[VERIFYING]
    resumed = fleet.entries(verifying, "Resumed")
    assert resumed, "the verification did not restart after the outage"
    assert all(cond.parse_time(e["time"]) >= returned for e in resumed)
    rollback = fleet.step_of(verifying, "rollback")
    assert cond.parse_time(rollback["judgedFrom"]) >= returned
    prefix = "SLO Met at verification after roll back to revision "
    assert rollback["result"].startswith(prefix), rollback["result"]
    data_from = rollback["result"].split("judged on data from ")[1].split(" ")[0]
    assert cond.parse_time(data_from) >= cond.parse_time(rollback["judgedFrom"])
