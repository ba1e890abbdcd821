"""Two operator replicas share the work through kopf peering: one works, the other takes over."""

from __future__ import annotations

import contextlib
import pathlib
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.e2e import waiting
from tests.e2e.operator_fixtures import OperatorProcess
from tests.e2e.test_modeldeployment import condition, create, get, manifest
from vigil.dev import sandbox as sandbox_mod

pytestmark = pytest.mark.e2e


@pytest.fixture
def peering(kube: client.ApiClient) -> Iterator[str]:
    name = f"vigil-e2e-{uuid.uuid4().hex[:6]}"
    custom = client.CustomObjectsApi(kube)
    custom.create_cluster_custom_object(
        "kopf.dev",
        "v1",
        "clusterkopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}},
    )
    yield name
    with contextlib.suppress(client.exceptions.ApiException):
        custom.delete_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", name)


def replica(sandbox: sandbox_mod.SandboxInfo, tmp: pathlib.Path, peering: str, priority: int) -> OperatorProcess:
    proc = OperatorProcess(str(sandbox.kubeconfig), tmp, sandbox.prometheus_url, standalone=False)
    proc.start("--peering", peering, "--priority", str(priority))
    return proc


def available(kube: client.ApiClient, ns: str, name: str) -> bool:
    return (condition(get(kube, ns, name), "Available") or {}).get("status") == "True"


def test_only_the_highest_priority_replica_works_and_the_other_takes_over(
    kube: client.ApiClient,
    namespace: str,
    sandbox: sandbox_mod.SandboxInfo,
    peering: str,
    tmp_path: pathlib.Path,
) -> None:
    (tmp_path / "high").mkdir()
    (tmp_path / "low").mkdir()
    high = replica(sandbox, tmp_path / "high", peering, 20)
    low = replica(sandbox, tmp_path / "low", peering, 10)
    try:
        waiting.until(lambda: "active" in high.logs() and "paused" in low.logs(), 90, "high active, low paused")
        create(kube, namespace, manifest("first", replicas=1))
        waiting.until(lambda: available(kube, namespace, "first"), 120, "the active replica to reconcile")
        assert "peering" in low.logs()
        assert f"peering {peering}: active" not in low.logs()

        high.kill()  # the standby takes over once the dead peer's lifetime runs out
        waiting.until(lambda: f"peering {peering}: active" in low.logs(), 150, "the standby to become active")
        create(kube, namespace, manifest("second", replicas=1))
        waiting.until(lambda: available(kube, namespace, "second"), 120, "the new active replica to reconcile")
    finally:
        high.stop()
        low.stop()
