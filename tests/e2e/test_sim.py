"""The simulator on the real sandbox: kwok pods become Triton series in Prometheus under load.

Uses the sandbox fixtures of tests/e2e/conftest.py: ``sandbox`` (a ``SandboxInfo``: kubeconfig,
Prometheus and simulator URLs) and ``kube`` (a kubernetes ``ApiClient``). A plain
Deployment and Service carrying vigil's labels stand in for a ModelDeployment, so the test does
not depend on the operator.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest

from tests.e2e import simpods, waiting
from vigil.dev import sandbox as sandbox_mod
from vigil.sim import client

pytestmark = pytest.mark.e2e

MD = "sim-e2e"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def namespace(kube: kubernetes.client.ApiClient) -> Iterator[str]:
    core = kubernetes.client.CoreV1Api(kube)
    name = f"sim-e2e-{uuid.uuid4().hex[:6]}"
    core.create_namespace(kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


def test_load_on_kwok_pods_reaches_prometheus(
    sandbox: sandbox_mod.SandboxInfo, kube: kubernetes.client.ApiClient, namespace: str
) -> None:
    replicas = 2
    simpods.deploy(kube, namespace, MD, replicas)

    def all_ready() -> list[str] | None:
        names = simpods.ready_pods(kube, namespace, MD)
        return names if len(names) == replicas else None

    pods = waiting.until(all_ready, 180, f"{replicas} Ready pods")

    control = client.ControlClient(sandbox.simulator_url)

    def played() -> bool:
        state = control.state()
        names = [p["name"] for p in state["pods"] if p["namespace"] == namespace and p["served"]]
        return sorted(names) == sorted(pods)

    waiting.until(played, 60, "the simulator to play both pods")
    metrics_url = f"{sandbox.simulator_url}/sim/{namespace}/{pods[0]}/metrics"
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        assert response.status == 200
        assert b'nv_inference_request_success{gpu_uuid="GPU-' in response.read()

    control.set_load({"namespace": namespace, "name": MD, "rate": 40, "duration": 600})
    try:
        query = f'sum by (modeldeployment) (rate(nv_inference_request_success{{namespace="{namespace}"}}[30s]))'

        def request_rate() -> float | None:
            url = f"{sandbox.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
            result = get_json(url)["data"]["result"]
            rates = {r["metric"].get("modeldeployment"): float(r["value"][1]) for r in result}
            rate = rates.get(MD, 0.0)
            return rate if rate > 0 else None

        rate = waiting.until(request_rate, 180, f"Prometheus to see traffic: {query}")
        assert rate > 0
        state = control.state()
        load = next(entry for entry in state["loads"] if entry["namespace"] == namespace)
        assert load["delivered"] > 0
        assert load["lost"] == {}
    finally:
        control.stop_load(namespace, MD)
