"""End to end: what a GitOps controller sees of vigil on the real sandbox.

One bad release healed by rollback, watched the way Argo CD watches it:

* vigil writes only ``status``: after the heal the ModelDeployment's ``spec`` and
  ``metadata.generation`` are exactly what the user (git) applied;
* ``kubectl scale`` on the scale subresource after the rollback keeps the rollback (the revision is
  still the bad one) and runs the rolled-back revision at the new count, with a RollbackKept Event;
* the Argo CD health checks in ``argocd/health/*.lua`` give the expected health for each live object
  along the way: Progressing, Healthy, Degraded (unschedulable, rolled back), an Incident Progressing,
  Suspended while an approval-mode runbook waits, Healthy when resolved, and a Runbook Healthy.

With ``VIGIL_CAPTURE_ARGOCD_FIXTURES=1`` the objects are also saved to ``tests/unit/fixtures/argocd/``,
which the unit tests of the health checks run on (``tests/unit/test_argocd.py``).

Isolated lane: the module's operator watches only this session's namespaces and is judged by the
lane's own Prometheus; the pods are CPU-only (``triton: {gpus: 0}``).
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.e2e import events, waiting
from tests.e2e.operator_fixtures import OperatorProcess
from tests.e2e.test_heal import AVAILABILITY, CPU_ONLY, create_runbook, custom, last_known_good, release_bad_v2
from tests.e2e.test_modeldeployment import GROUP, VERSION, condition, create, get, manifest
from tests.unit import argocd_lua
from vigil.dev import build
from vigil.dev import sandbox as sandbox_mod
from vigil.sim import client as simclient

pytestmark = [pytest.mark.e2e, pytest.mark.isolated]

CAPTURE = os.environ.get("VIGIL_CAPTURE_ARGOCD_FIXTURES") == "1"
# Metadata a GitOps tool compares or owns besides the spec: vigil must add none of it.
GIT_METADATA = ("labels", "annotations", "finalizers", "ownerReferences")


def seen(obj: dict[str, Any], fixture: str) -> argocd_lua.Health:
    """The Argo CD health of a live object; saved as ``fixture`` when capturing."""
    if CAPTURE:
        argocd_lua.FIXTURES.mkdir(parents=True, exist_ok=True)
        path = argocd_lua.FIXTURES / f"{fixture}.yaml"
        path.write_text(yaml.safe_dump(argocd_lua.trimmed(obj), sort_keys=False, width=200))
    return argocd_lua.health(obj)


def health_is(obj: dict[str, Any] | None, status: str) -> dict[str, Any] | None:
    """``obj`` if it has a status and the health check says ``status``, else None (not yet)."""
    return obj if obj is not None and "status" in obj and argocd_lua.health(obj).status == status else None


def incident_of(kube: client.ApiClient, ns: str, md: str) -> dict[str, Any] | None:
    found = custom(kube).list_namespaced_custom_object(GROUP, VERSION, ns, "incidents")["items"]
    mine = [i for i in found if i["spec"]["modelDeployment"] == md]
    return mine[0] if len(mine) == 1 else None


def incident_in(kube: client.ApiClient, ns: str, md: str, *phases: str) -> dict[str, Any] | None:
    incident = incident_of(kube, ns, md)
    return incident if incident is not None and incident.get("status", {}).get("phase") in phases else None


def kubectl(sandbox: sandbox_mod.SandboxInfo, *args: str) -> str:
    binary = build.ensure_binaries(progress=lambda _: None)["kubectl"]
    done = subprocess.run(
        [str(binary), "--kubeconfig", str(sandbox.kubeconfig), *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def replicas_by_revision(kube: client.ApiClient, ns: str, md: str) -> dict[str, int]:
    deployments = client.AppsV1Api(kube).list_namespaced_deployment(
        ns, label_selector=f"vigil.dev/modeldeployment={md}"
    )
    return {d.metadata.labels["vigil.dev/revision"]: d.spec.replicas for d in deployments.items}


def test_heal_leaves_the_spec_alone_and_kubectl_scale_keeps_the_rollback_with_argocd_health_along_the_way(
    kube: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    sim: simclient.ControlClient,
    sandbox: sandbox_mod.SandboxInfo,
) -> None:
    ns = namespace
    create_runbook(kube, ns, "careful", {"mode": "approval", "steps": [{"name": "rollback", "action": "rollback"}]})
    spec: dict[str, Any] = {"bakeTime": "15s", "maxReplicas": 6, "slos": [AVAILABILITY], "triton": CPU_ONLY}
    create(kube, ns, manifest("gitops", replicas=2, **spec))
    create(kube, ns, manifest("careful", replicas=2, runbookRef={"name": "careful"}, **spec))
    create(
        kube,
        ns,
        manifest("stuck", replicas=1, triton={**CPU_ONLY, "nodeSelector": {"kubernetes.io/hostname": "no-such-node"}}),
    )

    # A new deployment is Progressing until its replicas are ready, then Healthy.
    starting = waiting.until(
        lambda: health_is(get(kube, ns, "gitops"), "Progressing"),
        60,
        "gitops to report a rollout in progress",
        interval=0.2,
    )
    assert "RolloutInProgress" in seen(starting, "modeldeployment-progressing").message
    for name in ("gitops", "careful"):
        sim.set_load({"namespace": ns, "name": name, "rate": 40})
    good = waiting.until(lambda: last_known_good(kube, ns, "gitops"), 180, "gitops v1 last-known-good")
    waiting.until(lambda: last_known_good(kube, ns, "careful"), 180, "careful v1 last-known-good")
    healthy = waiting.until(lambda: health_is(get(kube, ns, "gitops"), "Healthy"), 60, "gitops Healthy")
    assert "MinimumReplicasAvailable" in seen(healthy, "modeldeployment-healthy").message

    stuck = waiting.until(lambda: health_is(get(kube, ns, "stuck"), "Degraded"), 120, "stuck Degraded")
    assert "Unschedulable" in seen(stuck, "modeldeployment-degraded-unschedulable").message
    runbook = custom(kube).get_namespaced_custom_object(GROUP, VERSION, ns, "runbooks", "careful")
    assert seen(runbook, "runbook-healthy") == argocd_lua.Health("Healthy", "approval runbook with 1 step(s)")

    # The user (git) releases a bad version 2 of both.
    release_bad_v2(kube, sim, ns, "gitops")
    release_bad_v2(kube, sim, ns, "careful")
    applied = get(kube, ns, "gitops")
    user_spec, user_generation = applied["spec"], applied["metadata"]["generation"]
    user_metadata = {key: applied["metadata"].get(key) for key in GIT_METADATA}
    assert user_spec["model"]["version"] == "2"

    waiting_approval = waiting.until(
        lambda: incident_in(kube, ns, "careful", "AwaitingApproval"), 240, "careful's plan to await approval"
    )
    suspended = seen(waiting_approval, "incident-suspended-approval")
    assert suspended.status == "Suspended"
    assert "vigil.dev/approve=true" in suspended.message

    mitigating = waiting.until(lambda: incident_in(kube, ns, "gitops", "Open", "Mitigating"), 240, "gitops incident")
    assert seen(mitigating, "incident-progressing").status == "Progressing"
    resolved = waiting.until(lambda: incident_in(kube, ns, "gitops", "Resolved"), 300, "gitops incident resolved")
    assert seen(resolved, "incident-healthy-resolved").status == "Healthy"

    # The heal changed only status: git's spec and generation are untouched, and Argo CD says Degraded
    # (git asks for version 2, version 1 serves) rather than Healthy or OutOfSync.
    healed = get(kube, ns, "gitops")
    assert healed["spec"] == user_spec
    assert healed["metadata"]["generation"] == user_generation
    assert {key: healed["metadata"].get(key) for key in GIT_METADATA} == user_metadata, "no finalizer, label or note"
    assert healed["status"]["rollback"]["revision"] == good
    assert healed["status"]["currentRevision"] == good
    rolled_back = seen(healed, "modeldeployment-degraded-rolled-back")
    assert rolled_back.status == "Degraded"
    assert "IncidentRollback" in rolled_back.message
    bad = healed["status"]["rollback"]["fromRevision"]

    # kubectl scale through the scale subresource: a new generation with the same (bad) revision.
    kubectl(sandbox, "-n", ns, "scale", f"modeldeployments.{GROUP}/gitops", "--replicas=3")
    scaled_generation = get(kube, ns, "gitops")["metadata"]["generation"]
    assert scaled_generation == user_generation + 1

    def scaled() -> dict[str, Any] | None:
        md = get(kube, ns, "gitops")
        status = md["status"]
        done = status.get("observedGeneration") == scaled_generation and status.get("readyReplicas") == 3
        return md if done else None

    md = waiting.until(scaled, 120, "the rolled-back revision at 3 ready replicas")
    assert md["spec"]["replicas"] == 3
    assert md["status"]["rollback"]["revision"] == good, "kubectl scale must not undo the rollback"
    assert md["status"]["rollback"]["generation"] == scaled_generation
    assert md["status"]["currentRevision"] == good
    assert md["status"]["modelVersion"] == "1"
    rolled = condition(md, "RolledBack")
    assert rolled is not None
    assert rolled["status"] == "True"
    assert rolled["observedGeneration"] == scaled_generation
    assert "a new revision supersedes the rollback" in rolled["message"]
    assert replicas_by_revision(kube, ns, "gitops")[good] == 3
    assert replicas_by_revision(kube, ns, "gitops").get(bad, 0) == 0
    kept = events.posted(kube, ns, "gitops", "RollbackKept")
    assert all(f"still serving {good}" in e.message for e in kept), kept
    assert seen(md, "modeldeployment-degraded-rolled-back-scaled").status == "Degraded"
    assert incident_in(kube, ns, "gitops", "Resolved"), "the bad revision never came back, so no new incident"
    assert (
        kubectl(sandbox, "-n", ns, "get", f"modeldeployments.{GROUP}/gitops", "-o", "jsonpath={.spec.replicas}") == "3"
    )
