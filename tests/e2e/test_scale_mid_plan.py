"""``kubectl scale`` while an incident's rollback is being verified: the plan carries on and resolves.

A scale changes the spec's generation but not its revision: the rollback is kept (RollbackKept) and
runs at the new replica count, and the plan that made it goes on to verify it, as Flagger and Argo
Rollouts keep a rollout's analysis through a scale. Before, any new generation cancelled the plan
and escalated an incident whose heal was working. The evidence is the Incident (rollback Succeeded,
a SpecChanged entry, no Cancelled), its Events, and an independent watch of the child objects
(the rollback happened once, the last-known-good Deployment was started once and scaled to 2).

Isolated lane: its own operator and namespace, the lane's own Prometheus, no GPUs.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.e2e import events, fleet, waiting
from tests.e2e.operator_fixtures import OperatorProcess
from vigil.sim import client as simclient

pytestmark = [pytest.mark.e2e, pytest.mark.isolated]

RATE = 10.0


@pytest.mark.timeout(900)
def test_kubectl_scale_during_the_rollbacks_verification_keeps_the_plan_which_resolves_the_incident(
    kube: client.ApiClient, namespace: str, sim: simclient.ControlClient, scoped_operator: OperatorProcess
) -> None:
    ns = namespace
    scoped_operator.start()
    try:
        fleet.apply_md(kube, ns, fleet.md_manifest("s"))
        good = fleet.warm_up(kube, sim, ns, ["s"], RATE)["s"]
        with fleet.Recorder(kube, ns) as recorder:
            fleet.release_bad_version(kube, sim, ns, "s")
            waiting.until(lambda: fleet.step_state(kube, ns, "s") == "Verifying", 300, "the rollback in verification")
            client.CustomObjectsApi(kube).patch_namespaced_custom_object_scale(
                fleet.GROUP, fleet.VERSION, ns, fleet.PLURAL, "s", {"spec": {"replicas": 2}}
            )
            generation = int(fleet.get_md(kube, ns, "s")["metadata"]["generation"])  # a Scale carries none
            waiting.until(lambda: fleet.all_resolved(kube, ns, ["s"]), 300, "the incident Resolved", interval=2.0)
            problems = fleet.check_heal(kube, ns, "s", good, recorder.history, fleet.incidents_by_md(kube, ns)["s"])

            def serving_two() -> dict[str, Any] | None:
                md = fleet.get_md(kube, ns, "s")
                status = md["status"]
                done = status.get("observedGeneration") == generation and status.get("readyReplicas") == 2
                return md if done else None

            md = waiting.until(serving_two, 120, "the rolled-back revision at 2 ready replicas")
        incident = fleet.incidents_by_md(kube, ns)["s"][0]
    finally:
        fleet.quiet(sim, ns, ["s"])

    assert not problems, problems
    timeline = incident["status"]["timeline"]
    types = [e["type"] for e in timeline]
    assert "Cancelled" not in types, timeline
    noted = [e["message"] for e in timeline if e["type"] == "SpecChanged"]
    assert len(noted) == 1, timeline
    assert noted[0].startswith(f"spec generation {generation} keeps revision ")
    assert f"serving the rollback to {good}" in noted[0]
    assert types.index("SpecChanged") < types.index("Verified"), "the scale landed while the rollback was verified"
    events.posted(kube, ns, "s", "PlanContinues")  # the plan's decisions are posted on the ModelDeployment
    assert md["status"]["rollback"]["revision"] == good
    assert md["status"]["rollback"]["generation"] == generation
    assert recorder.history.replicas[f"s-{good}"][-1] == 2
    assert scoped_operator.alive()
