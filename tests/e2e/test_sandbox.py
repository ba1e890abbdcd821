"""The sandbox itself, end to end: GPU nodes, real scheduling, kwok pod life cycle, Prometheus discovery.

These tests use plain Deployments (no operator) so that a failure points at the sandbox.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.e2e import waiting
from vigil import labels
from vigil.dev import kwok
from vigil.dev import sandbox as sandbox_mod

pytestmark = pytest.mark.e2e

TOLERATION = {"key": labels.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def pod_ready(pod: client.V1Pod) -> bool:
    conditions = pod.status.conditions or [] if pod.status else []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def create_namespace(core: client.CoreV1Api, name: str, timeout: float) -> None:
    """Create a namespace and wait for its default ServiceAccount (kube-controller-manager makes it)."""
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    waiting.until(
        lambda: any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items),
        timeout,
        f"the default ServiceAccount of namespace {name}",
    )


@pytest.fixture
def namespace(kube: client.ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(kube)
    name = f"sandbox-{uuid.uuid4().hex[:8]}"
    create_namespace(core, name, 60)
    yield name
    with contextlib.suppress(client.exceptions.ApiException):
        core.delete_namespace(name)


def deployment(name: str, gpus: int, replicas: int, pod_labels: dict[str, str] | None = None) -> dict[str, Any]:
    selector = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {**selector, **(pod_labels or {})}},
                "spec": {
                    "tolerations": [TOLERATION],
                    "containers": [
                        {
                            "name": "triton",
                            "image": "nvcr.io/nvidia/tritonserver:25.01-py3",
                            "ports": [
                                {"name": "http", "containerPort": labels.HTTP_PORT},
                                {"name": "metrics", "containerPort": labels.METRICS_PORT},
                            ],
                            "resources": {"limits": {labels.GPU_RESOURCE: str(gpus)}},
                        }
                    ],
                },
            },
        },
    }


def pods(kube: client.ApiClient, namespace: str, app: str) -> list[client.V1Pod]:
    return list(client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector=f"app={app}").items)


def internal_ip(kube: client.ApiClient, node: str) -> str:
    addresses = client.CoreV1Api(kube).read_node(node).status.addresses
    return str(next(a.address for a in addresses if a.type == "InternalIP"))


def test_four_gpu_nodes_are_ready_with_eight_gpus_and_discovery_labels(
    kube: client.ApiClient, sandbox: sandbox_mod.SandboxInfo
) -> None:
    selector = f"{kwok.SANDBOX_LABEL}={sandbox.name},{kwok.NODE_POOL_LABEL}=gpu"
    nodes = client.CoreV1Api(kube).list_node(label_selector=selector).items
    assert sorted(n.metadata.name for n in nodes) == [f"gpu-node-{i}" for i in range(4)]
    for node in nodes:
        conditions = {c.type: c.status for c in node.status.conditions}
        assert conditions["Ready"] == "True", node.metadata.name
        assert node.status.allocatable[labels.GPU_RESOURCE] == "8"
        assert node.status.capacity[labels.GPU_RESOURCE] == "8"
        node_labels = node.metadata.labels
        assert node_labels[labels.GPU_PRESENT] == "true"
        assert node_labels[labels.GPU_PRODUCT] == "NVIDIA-A100-SXM4-80GB"
        assert node_labels["nvidia.com/gpu.count"] == "8"
        assert int(node_labels["nvidia.com/gpu.memory"]) > 0
        assert node.metadata.annotations["kwok.x-k8s.io/node"] == "fake"
        assert internal_ip(kube, node.metadata.name).startswith(f"{kwok.NODE_NETWORK}.")


def test_one_gpu_pods_are_scheduled_become_ready_and_are_removed_on_scale_down(
    kube: client.ApiClient, namespace: str
) -> None:
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, deployment("small", gpus=1, replicas=3))

    def all_ready() -> list[client.V1Pod] | None:
        found = pods(kube, namespace, "small")
        return found if len(found) == 3 and all(pod_ready(p) for p in found) else None

    ready = waiting.until(all_ready, 90, "3 one-GPU pods Ready")
    for pod in ready:
        assert pod.status.phase == "Running"
        assert pod.status.pod_ip
        assert pod.status.host_ip == internal_ip(kube, pod.spec.node_name)
        assert pod.spec.node_name.startswith(kwok.NODE_PREFIX)
        assert pod.status.container_statuses[0].ready is True
        # Started before Ready: the readiness delay stands in for the model load.
        ready_at = next(c.last_transition_time for c in pod.status.conditions if c.type == "Ready")
        assert ready_at >= pod.status.start_time
    assert apps.read_namespaced_deployment_status("small", namespace).status.ready_replicas == 3

    apps.patch_namespaced_deployment_scale("small", namespace, {"spec": {"replicas": 0}})
    waiting.until(lambda: not pods(kube, namespace, "small") or None, 60, "scaled-down pods to be removed")


def test_nine_gpu_pod_stays_pending_with_the_schedulers_message(
    kube: client.ApiClient, namespace: str, sandbox: sandbox_mod.SandboxInfo
) -> None:
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, deployment("huge", gpus=9, replicas=1))

    def unschedulable() -> client.V1PodCondition | None:
        for pod in pods(kube, namespace, "huge"):
            for condition in (pod.status.conditions or []) if pod.status else []:
                if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
                    return condition
        return None

    condition = waiting.until(unschedulable, 60, "the scheduler to mark the 9-GPU pod Unschedulable")
    assert condition.status == "False"
    total = sandbox.nodes + sandbox.cpu_nodes  # CPU nodes have no GPU: insufficient too
    assert f"0/{total} nodes are available" in condition.message
    assert f"{total} Insufficient nvidia.com/gpu" in condition.message
    (pod,) = pods(kube, namespace, "huge")
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name is None


def test_the_sandbox_is_sized_for_a_fleet_cpu_nodes_pods_per_node_and_a_wide_service_range(
    kube: client.ApiClient, namespace: str, sandbox: sandbox_mod.SandboxInfo
) -> None:
    core = client.CoreV1Api(kube)
    selector = f"{kwok.SANDBOX_LABEL}={sandbox.name},{kwok.NODE_POOL_LABEL}=cpu"
    cpu = core.list_node(label_selector=selector).items
    assert sorted(n.metadata.name for n in cpu) == sorted(f"cpu-node-{i}" for i in range(sandbox.cpu_nodes))
    assert sandbox.pod_capacity >= 2000
    assert sandbox.service_capacity >= 4000
    for node in cpu:
        assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"
        assert node.status.allocatable["pods"] == str(sandbox.pods_per_node)
        assert not node.spec.taints
        assert labels.GPU_PRESENT not in node.metadata.labels
        assert internal_ip(kube, node.metadata.name).startswith(f"{kwok.CPU_NODE_NETWORK}.")

    # A pod that neither asks for GPUs nor tolerates their taint runs on a CPU node.
    body = deployment("cpu-only", gpus=0, replicas=2)
    body["spec"]["template"]["spec"].pop("tolerations")
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, body)

    def all_ready() -> list[client.V1Pod] | None:
        found = pods(kube, namespace, "cpu-only")
        return found if len(found) == 2 and all(pod_ready(p) for p in found) else None

    for pod in waiting.until(all_ready, 90, "2 CPU-only pods Ready"):
        assert pod.spec.node_name.startswith(kwok.CPU_NODE_PREFIX)

    # The API server hands out ClusterIPs from the sandbox's range (its default ServiceCIDR object).
    cidr = client.NetworkingV1Api(kube).read_service_cidr("kubernetes")
    assert cidr.spec.cidrs == [sandbox.service_cidr]
    service = core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="cpu-only"),
            spec=client.V1ServiceSpec(selector={"app": "cpu-only"}, ports=[client.V1ServicePort(port=8000)]),
        ),
    )
    assert ipaddress.ip_address(service.spec.cluster_ip) in ipaddress.ip_network(sandbox.service_cidr)


def _triton_targets(prometheus_url: str) -> list[dict[str, Any]]:
    targets = _get_json(f"{prometheus_url}/api/v1/targets?state=active")["data"]["activeTargets"]
    return [t for t in targets if t["labels"].get("job") == "triton"]


def test_prometheus_discovers_ready_pods_through_kubernetes_sd_and_scrapes_the_simulator(
    kube: client.ApiClient, namespace: str, sandbox: sandbox_mod.SandboxInfo
) -> None:
    assert _get_json(f"{sandbox.prometheus_url}/api/v1/status/buildinfo")["status"] == "success"
    pod_labels = {labels.MODEL_DEPLOYMENT: "sbx", labels.REVISION: "r1", labels.MODEL_VERSION: "7"}
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, deployment("sbx-r1", 1, 2, pod_labels))

    def discovered() -> list[dict[str, Any]] | None:
        mine = [t for t in _triton_targets(sandbox.prometheus_url) if t["labels"].get("namespace") == namespace]
        return mine if len(mine) == 2 else None

    targets = waiting.until(discovered, 120, "Prometheus to discover both Ready pods (kubernetes_sd, role pod)")
    names = {p.metadata.name for p in pods(kube, namespace, "sbx-r1")}
    for target in targets:
        assert target["discoveredLabels"]["__meta_kubernetes_pod_ready"] == "true"
        assert target["labels"]["modeldeployment"] == "sbx"
        assert target["labels"]["revision"] == "r1"
        assert target["labels"]["model_version"] == "7"
        assert target["labels"]["pod"] in names
        pod = target["labels"]["pod"]
        assert target["scrapeUrl"] == f"{sandbox.simulator_url}/sim/{namespace}/{pod}/metrics"

    def scraped() -> bool:
        healths = [
            t["health"] for t in _triton_targets(sandbox.prometheus_url) if t["labels"]["namespace"] == namespace
        ]
        return healths == ["up", "up"]

    waiting.until(scraped, 60, "both targets to be scraped successfully from the simulator")


def test_prometheus_can_be_stopped_and_started_again(
    sandbox_handle: sandbox_mod.Sandbox, sandbox: sandbox_mod.SandboxInfo
) -> None:
    ready = f"{sandbox.prometheus_url}/-/ready"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(ready, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    sandbox_handle.stop_prometheus()
    assert not answers()
    assert not sandbox_handle.status().ok
    sandbox_handle.start_prometheus()
    assert answers()


def test_up_again_reuses_the_running_sandbox(
    sandbox_handle: sandbox_mod.Sandbox, sandbox: sandbox_mod.SandboxInfo
) -> None:
    started = time.monotonic()
    again = sandbox_handle.up()
    assert again == sandbox
    # Nothing to build or start: only checks and idempotent applies.
    assert time.monotonic() - started < 60
    report = sandbox_handle.status()
    assert report.ok, [c for c in report.components if not c.ok]
