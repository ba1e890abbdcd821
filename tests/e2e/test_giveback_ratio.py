"""Give back by replica ratio on the real sandbox: a cluster without the Gateway API.

The operator reaches the API server through a proxy that answers 404 for the Gateway API group
(:meth:`tests.e2e.apiproxy.ApiProxy.hide`), as a cluster without it would. A bad release's traffic
goes to the last-known-good revision by replica ratio (the bad revision runs no pods), and once
the release is fixed it comes home in steps of 50 %: the bad revision 0 -> 1 -> 2 replicas, each
step judged on the data from after it. Own operator, namespace and Prometheus, no GPUs (the
isolated lane); short windows, as in test_giveback.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from kubernetes import client

from tests.e2e import fleet, waiting
from tests.e2e.apiproxy import ApiProxy
from tests.e2e.operator_fixtures import OperatorProcess
from tests.e2e.test_giveback import AVAILABILITY, CALM, apply_runbook, custom, phase_is
from vigil.dev import sandbox as sandbox_mod
from vigil.sim import client as simclient

pytestmark = [pytest.mark.e2e, pytest.mark.isolated]

GATEWAY_GROUP = "gateway.networking.k8s.io"


RATIO_RUNBOOK = {
    "triggers": [{"slo": "availability"}],
    "steps": [
        {
            "name": "shift",
            "action": "shiftTraffic",
            "params": {"target": "lastKnownGood", "weight": 100},
            "verifyAfter": "20s",
            "onFailure": "escalate",
        }
    ],
}


def revision_replicas(kube: client.ApiClient, ns: str, md: str) -> dict[str, int]:
    """Replicas of each revision Deployment of ``md`` (its name is ``<md>-<revision>``)."""
    listed = client.AppsV1Api(kube).list_namespaced_deployment(ns)
    prefix = f"{md}-"
    return {
        d.metadata.name[len(prefix) :]: int(d.spec.replicas or 0)
        for d in listed.items
        if d.metadata.name.startswith(prefix)
    }


def last_known_good(md: dict[str, Any]) -> str | None:
    return next((r["name"] for r in md["status"].get("revisions", []) if r.get("lastKnownGood")), None)


def test_without_the_gateway_api_a_shift_comes_home_by_replica_ratio(
    kube: client.ApiClient,
    namespace: str,
    scoped_operator: OperatorProcess,
    sim: simclient.ControlClient,
    sandbox: sandbox_mod.SandboxInfo,
    tmp_path: pathlib.Path,
) -> None:
    """The operator reaches the API server through a proxy that hides the Gateway API: a shift to the
    last-known-good revision runs by replica ratio, and comes home the same way, 50% per step."""
    with ApiProxy(pathlib.Path(sandbox.kubeconfig)) as proxy:
        proxy.hide(f"/apis/{GATEWAY_GROUP}")
        scoped_operator.kubeconfig = str(proxy.kubeconfig(tmp_path / "kubeconfig"))
        scoped_operator.start()
        apply_runbook(kube, namespace, "lkg", RATIO_RUNBOOK)
        body = fleet.md_manifest(
            "ratio",
            replicas=2,
            slos=[AVAILABILITY],
            runbookRef={"name": "lkg"},
            giveBack={"stabilizationWindow": "20s", "interval": "20s", "stepWeight": 50},
        )
        fleet.apply_md(kube, namespace, body)
        try:
            with fleet.Recorder(kube, namespace) as recorder:
                _ratio_home(kube, namespace, sim, body, recorder)
        finally:
            fleet.quiet(sim, namespace, ["ratio"])


def _ratio_home(
    kube: client.ApiClient, ns: str, sim: simclient.ControlClient, body: dict[str, Any], recorder: fleet.Recorder
) -> None:
    waiting.until(lambda: fleet.condition(fleet.get_md(kube, ns, "ratio"), "Available") == "True", 240, "Available")
    fleet.retried(lambda: sim.set_load({"namespace": ns, "name": "ratio", "rate": CALM}), "load")
    good = waiting.until(lambda: last_known_good(fleet.get_md(kube, ns, "ratio")), 180, "v1 last-known-good")
    fleet.retried(
        lambda: sim.set_fault({"namespace": ns, "name": "ratio", "version": "2", "errorRatio": 0.3}), "v2 errors"
    )
    body["spec"]["model"]["version"] = "2"
    fleet.apply_md(kube, ns, body)
    shifted = waiting.until(
        lambda: (md := fleet.get_md(kube, ns, "ratio"))["status"].get("traffic") and md, 240, "the shift to v1"
    )
    bad = shifted["status"]["currentRevision"]
    assert bad != good
    assert [(s["backend"], s["weight"]) for s in shifted["status"]["traffic"]["splits"]] == [(good, 100)]
    waiting.until(lambda: revision_replicas(kube, ns, "ratio").get(bad) == 0, 60, "v2 scaled to 0 by the ratio")
    assert revision_replicas(kube, ns, "ratio")[good] == 2
    fleet.retried(lambda: sim.clear_faults(ns, "ratio", "2"), "v2 fixed")

    record = waiting.until(lambda: phase_is(kube, ns, "ratio", "Returned", "Stopped"), 300, "the shift home by ratio")
    assert record["phase"] == "Returned", record
    assert [s["target"]["splits"] for s in record["steps"]] == [f"{bad}=50,{good}=50", ""], record["steps"]
    assert all(s["state"] == "Succeeded" for s in record["steps"]), record["steps"]
    md = fleet.get_md(kube, ns, "ratio")
    assert "traffic" not in md["status"]
    waiting.until(lambda: revision_replicas(kube, ns, "ratio").get(bad) == 2, 60, "v2 back at the spec's replicas")
    # 0 -> 1 (50%: one replica of two) -> 2: the share came home by replica ratio, step by step.
    history = recorder.history.replicas[f"ratio-{bad}"]
    assert 1 in history, history
    assert history.index(1) < len(history) - 1 - history[::-1].index(2), history
    routes = custom(kube).list_namespaced_custom_object(GATEWAY_GROUP, "v1", ns, "httproutes")["items"]
    assert routes == [], "no HTTPRoute: the operator saw no Gateway API"
