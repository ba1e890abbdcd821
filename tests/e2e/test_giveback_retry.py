"""A stopped give-back is tried again on the real sandbox, after twice its stabilization window.

A surge scales ``retry`` 2 -> 4. Once the incident resolved, the load grows so that 3 replicas
cannot carry it: the first step down (4 -> 3) degrades the SLO, 4 comes back and the give-back
stops, with ``retryAt`` twice the 20 s stabilization window after the stop. The load then falls
back to what 2 replicas serve easily; at ``retryAt`` the give-back stabilizes again (a whole
window of Met) and returns 4 -> 3 -> 2, each step verified. Own operator, namespace and
Prometheus, CPU-only pods (the isolated lane); windows as short as test_giveback's.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from kubernetes import client

from tests.e2e import events, fleet, waiting
from tests.e2e.operator_fixtures import OperatorProcess
from tests.e2e.test_giveback import (
    CALM,
    CAPACITY,
    SCALE_RUNBOOK,
    STAY,
    SURGE,
    apply_runbook,
    incident_of,
    phase_is,
    slo_state,
    surge_md,
)
from vigil.api import conditions as cond
from vigil.sim import client as simclient

pytestmark = [pytest.mark.e2e, pytest.mark.isolated]

NAME = "retry"
WINDOW_SECONDS = 20


def entries(kube: client.ApiClient, ns: str, kind: str) -> list[dict[str, Any]]:
    incident = incident_of(kube, ns, NAME)
    return [e for e in ((incident or {}).get("status") or {}).get("timeline", []) if e["type"] == kind]


def at(entry: dict[str, Any]) -> datetime.datetime:
    return cond.parse_time(entry["time"])


def load(sim: simclient.ControlClient, ns: str, rate: float) -> None:
    fleet.retried(lambda: sim.set_load({"namespace": ns, "name": NAME, "rate": rate}), f"load {rate}")


def test_a_stopped_give_back_is_tried_again_after_twice_its_window_and_returns_the_replicas(
    kube: client.ApiClient, namespace: str, scoped_operator: OperatorProcess, sim: simclient.ControlClient
) -> None:
    scoped_operator.start()
    apply_runbook(kube, namespace, "surge", SCALE_RUNBOOK)
    fleet.retried(lambda: sim.set_fault({"namespace": namespace, "name": NAME, "capacity": CAPACITY}), "capacity")
    fleet.apply_md(kube, namespace, surge_md(NAME, f"{WINDOW_SECONDS}s"))
    try:
        with fleet.Recorder(kube, namespace) as recorder:
            _stop_then_retry(kube, namespace, sim, recorder)
    finally:
        fleet.quiet(sim, namespace, [NAME])


def _stop_then_retry(kube: client.ApiClient, ns: str, sim: simclient.ControlClient, recorder: fleet.Recorder) -> None:
    waiting.until(lambda: fleet.condition(fleet.get_md(kube, ns, NAME), "Available") == "True", 240, "Available")
    load(sim, ns, CALM)
    waiting.until(lambda: slo_state(fleet.get_md(kube, ns, NAME)) == "Met", 180, "SLO Met under calm load")
    load(sim, ns, SURGE)
    waiting.until(lambda: phase_is(kube, ns, NAME, "Stabilizing"), 300, "the surge's scale-out to be over")
    assert fleet.get_md(kube, ns, NAME)["status"]["scale"]["replicas"] == 4
    load(sim, ns, STAY)  # 4 replicas 90 % busy (Met), 3 replicas 120 %: the first step down degrades it

    stopped = waiting.until(lambda: phase_is(kube, ns, NAME, "Stopped", "Returned"), 240, "the give-back to stop")
    assert stopped["phase"] == "Stopped", stopped
    assert stopped["stops"] == 1, stopped
    # Two entries: the step's restore ("scale-in stopped: ...; back to 4 replicas"), then the stop.
    restored, stop = entries(kube, ns, "GiveBackStopped")
    assert "back to 4 replicas" in restored["message"], restored
    retry_at = cond.parse_time(stopped["retryAt"])
    assert retry_at - at(stop) == datetime.timedelta(seconds=2 * WINDOW_SECONDS), (stop, stopped["retryAt"])
    assert f"tried again from {stopped['retryAt']} (stop 1)" in stop["message"], stop
    waiting.until(lambda: fleet.get_md(kube, ns, NAME)["status"].get("readyReplicas") == 4, 60, "4 replicas restored")
    load(sim, ns, CALM)  # the load that stopped it is over: 2 replicas serve it at 40 %

    returned = waiting.until(
        lambda: phase_is(kube, ns, NAME, "Returned") or (phase_is(kube, ns, NAME, "Stopped") or {}).get("stops") == 2,
        240,
        "the retried give-back to end",
    )
    assert returned["phase"] == "Returned", returned
    [retrying] = entries(kube, ns, "GiveBackRetrying")
    assert at(retrying) >= retry_at, (retrying, stopped["retryAt"])
    assert "trying again after stop 1: holding 4 replicas" in retrying["message"], retrying
    steps = [s for s in returned["steps"] if not s.get("restore")]
    assert [(s["target"]["replicas"], s["state"]) for s in steps] == [
        ("3", "Failed"),
        ("3", "Succeeded"),
        ("spec", "Succeeded"),
    ], returned["steps"]
    retried = [s for s in steps if s["state"] == "Succeeded"]
    assert all(s["judgedFrom"] >= retrying["time"] for s in retried), (retrying, retried)
    md = fleet.get_md(kube, ns, NAME)
    assert "scale" not in md["status"], "the override is released"
    assert md["spec"]["replicas"] == 2, "the user's spec is never written"
    revision = md["status"]["currentRevision"]
    assert recorder.history.replicas[f"{NAME}-{revision}"][-5:] == [4, 3, 4, 3, 2], recorder.history.replicas
    events.posted(kube, ns, NAME, "GiveBackRetrying")  # an Event says the give-back is tried again
