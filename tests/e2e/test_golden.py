"""Golden sets on the real sandbox: `vigil golden --apply` stores one, and the simulator's pods answer with torch.

Pods are rendered with vigil's own Triton arguments (``--model-repository`` = a model repository
this test exports with torch), scheduled on kwok, and played by the sandbox's simulator, which
finds the pods' repository through its informers, as Triton would at start. The real tritonclient
reaches each pod at the sandbox's inference URL. No operator and no Prometheus: the gate itself
is tested in test_gate.py; this is the ground it stands on.
"""

from __future__ import annotations

import pathlib
from typing import Any

import kubernetes.client
import pytest
import tritonclient.http
from typer.testing import CliRunner

from tests.e2e import waiting
from tests.unit import goldenkit
from vigil import cli as vigil_cli
from vigil import labels
from vigil.api import modeldeployment
from vigil.dev import sandbox as sandbox_mod
from vigil.gate import goldenset as gs
from vigil.render import workload
from vigil.sim import client as simclient
from vigil.sim import torchmodels

pytestmark = [pytest.mark.e2e, pytest.mark.isolated]

MD = "golden-e2e"
MODEL = "cnn"
GOLDEN = "cnn-golden"
READY_SECONDS = 90


def deploy(kube: kubernetes.client.ApiClient, namespace: str, repository: pathlib.Path, version: str) -> None:
    """A Deployment of one revision as vigil renders its Triton container (no GPUs: kwok schedules it anywhere)."""
    spec = modeldeployment.ModelDeploymentSpec.model_validate(
        {"model": {"name": MODEL, "repository": str(repository), "version": version}}
    )
    revision = f"v{version}"
    pod_labels = {
        labels.MODEL_DEPLOYMENT: MD,
        labels.REVISION: revision,
        labels.MODEL: MODEL,
        labels.MODEL_VERSION: version,
    }
    container = {"name": "triton", "image": "nvcr.io/nvidia/tritonserver:25.01-py3", "args": workload.triton_args(spec)}
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{MD}-{revision}", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {"containers": [container], "tolerations": [{"operator": "Exists"}]},
            },
        },
    }
    kubernetes.client.AppsV1Api(kube).create_namespaced_deployment(namespace, body)


def played_pod(sim: simclient.ControlClient, namespace: str, version: str) -> str | None:
    for pod in sim.state()["pods"]:
        if pod["namespace"] == namespace and pod["version"] == version and pod["served"]:
            return str(pod["name"])
    return None


def test_golden_set_applied_with_vigil_golden_matches_the_pod_that_serves_the_export_and_catches_a_bad_one(
    sandbox: sandbox_mod.SandboxInfo,
    kube: kubernetes.client.ApiClient,
    namespace: str,
    sim: simclient.ControlClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    repository = tmp_path_factory.mktemp("models")
    torchmodels.export(torchmodels.small_cnn(seed=0), repository, MODEL, "1")
    torchmodels.export(torchmodels.perturbed(torchmodels.small_cnn(seed=0), 0.05), repository, MODEL, "2")
    deploy(kube, namespace, repository, "1")
    deploy(kube, namespace, repository, "2")

    args = ["golden", str(repository / MODEL / "1" / "model.pt"), "--requests", "8", "--top-k", "3"]
    args += ["--configmap", GOLDEN, "--apply", "-n", namespace, "--kubeconfig", str(sandbox.kubeconfig)]
    made = CliRunner().invoke(vigil_cli.app, args)
    assert made.exit_code == 0, made.output
    stored = kubernetes.client.CoreV1Api(kube).read_namespaced_config_map(GOLDEN, namespace)
    assert stored.metadata.labels == {gs.LABEL: GOLDEN}
    golden = gs.GoldenSet.parse(stored.data[gs.CONFIGMAP_KEY])
    assert (golden.model.name, golden.model.version, len(golden.requests)) == (MODEL, "1", 8)

    good = waiting.until(lambda: played_pod(sim, namespace, "1"), READY_SECONDS, "the v1 pod played by the simulator")
    bad = waiting.until(lambda: played_pod(sim, namespace, "2"), READY_SECONDS, "the v2 pod played by the simulator")
    with tritonclient.http.InferenceServerClient(url=sandbox.inference_url.format(namespace=namespace, pod=good)) as c:
        assert c.get_model_metadata(MODEL)["platform"] == "pytorch_libtorch"
        report = gs.compare(golden, goldenkit.answers(golden, c, MODEL, "1"))
        assert report.passed, report.describe()
        assert report.outputs[0].max_abs_error < 1e-5
        sim.set_fault({"namespace": namespace, "name": MD, "version": "1", "precision": "fp16"})
        try:
            drift = goldenkit.answers(golden, c, MODEL, "1")
        finally:
            sim.clear_faults(namespace, MD, "1")
    loose = gs.compare(golden, drift, golden.tolerances(gs.ToleranceOverride(atol=0.1, rtol=1e-2)))
    tight = gs.compare(golden, drift, golden.tolerances(gs.ToleranceOverride(atol=1e-6, rtol=1e-6)))
    assert loose.passed, loose.describe()
    assert not tight.passed, "FP16 drift is seen at a tight tolerance"
    with tritonclient.http.InferenceServerClient(url=sandbox.inference_url.format(namespace=namespace, pod=bad)) as c:
        corrupted = gs.compare(golden, goldenkit.answers(golden, c, MODEL, "2"))
    assert not corrupted.passed, "the perturbed export answers 200 with wrong numbers"
    assert corrupted.requests == 8

    # Users reach the deployment through its Service, which selects v1 only: v2 answers none of them.
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": MD, "namespace": namespace},
        "spec": {
            "selector": {labels.MODEL_DEPLOYMENT: MD, labels.REVISION: "v1"},
            "ports": [{"port": labels.HTTP_PORT}],
        },
    }
    kubernetes.client.CoreV1Api(kube).create_namespaced_service(namespace, service)

    def revisions() -> dict[str, dict[str, Any]]:
        return {entry["revision"]: entry for entry in sim.state()["revisions"] if entry["namespace"] == namespace}

    sim.set_load({"namespace": namespace, "name": MD, "rate": 50, "duration": 60})
    try:
        waiting.until(lambda: revisions()["v1"]["userRequests"] >= 50 or None, 60, "users answered by v1")
    finally:
        sim.stop_load(namespace, MD)
    counts = revisions()
    assert (counts["v1"]["directRequests"], counts["v2"]["directRequests"]) == (16, 8)
    assert counts["v2"]["userRequests"] == 0
