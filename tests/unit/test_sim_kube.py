"""The Kubernetes informers against kmock's API emulator: list, watch, changes, absent CRDs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import kmock
import kubernetes.client
import numpy as np
import pytest

from vigil import labels
from vigil.sim import cluster, engine, kube
from vigil.sim import testing as simtest

DEADLINE_SECONDS = 15.0


def raw_pod(name: str, ready: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": simtest.pod_labels("md")},
        "spec": {
            "containers": [{"name": "triton", "image": "triton", "resources": {"limits": {labels.GPU_RESOURCE: "1"}}}]
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


@pytest.fixture
def api(kmock: kmock.KubernetesEmulator) -> kubernetes.client.ApiClient:
    return kubernetes.client.ApiClient(kubernetes.client.Configuration(host=str(kmock.url).rstrip("/")))


@pytest.fixture
async def source(api: kubernetes.client.ApiClient) -> AsyncIterator[kube.KubeSource]:
    informers = kube.KubeSource(api, resync_seconds=1)
    informers.start()
    try:
        yield informers
    finally:
        # Joining blocks, and the emulator answers on this very loop: stop from a worker thread.
        await asyncio.to_thread(informers.stop)


async def eventually(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_SECONDS
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_objects_flow_into_snapshots(api: kubernetes.client.ApiClient, source: kube.KubeSource) -> None:
    # Raw dicts as bodies: the client sends them as they are.
    core: Any = kubernetes.client.CoreV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    await asyncio.to_thread(core.create_namespaced_pod, "ns", raw_pod("p0"))
    service = {"metadata": {"name": "md", "namespace": "ns"}, "spec": {"selector": {labels.MODEL_DEPLOYMENT: "md"}}}
    await asyncio.to_thread(core.create_namespaced_service, "ns", service)
    await eventually(lambda: len(source.snapshot().pods) == 1 and bool(source.snapshot().services), "pod and service")
    snapshot = source.snapshot()
    assert snapshot is source.snapshot()  # cached while nothing changes
    assert snapshot.pods[0].served
    assert snapshot.pods[0].gpus == 1
    assert snapshot.services[("ns", "md")].selector == {labels.MODEL_DEPLOYMENT: "md"}

    # Kinds served by CRDs show up once they exist (the emulator knows no CRDs until first use).
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "md", "namespace": "ns"},
        "spec": {"rules": [{"backendRefs": [{"name": "md", "weight": 3}]}]},
    }
    await asyncio.to_thread(
        custom.create_namespaced_custom_object, "gateway.networking.k8s.io", "v1", "ns", "httproutes", route
    )
    md = {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "md", "namespace": "ns"},
        "spec": {"model": {"name": "bert", "version": "4"}},
    }
    await asyncio.to_thread(
        custom.create_namespaced_custom_object, "vigil.dev", "v1alpha1", "ns", "modeldeployments", md
    )
    await eventually(lambda: bool(source.snapshot().routes and source.snapshot().deployments), "route and md")
    assert source.snapshot().routes[("ns", "md")].rules[0].backends[0].weight == 3
    assert source.snapshot().deployments[("ns", "md")] == cluster.ModelDeploymentInfo("ns", "md", "bert", "4")

    not_ready = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    await asyncio.to_thread(core.patch_namespaced_pod_status, "p0", "ns", not_ready)
    await eventually(lambda: not source.snapshot().pods[0].ready, "readiness change")
    await asyncio.to_thread(core.delete_namespaced_pod, "p0", "ns")
    await eventually(lambda: not source.snapshot().pods, "pod deletion")


async def test_simulator_plays_pods_from_the_cluster(api: kubernetes.client.ApiClient, source: kube.KubeSource) -> None:
    core: Any = kubernetes.client.CoreV1Api(api)
    await asyncio.to_thread(core.create_namespaced_pod, "ns", raw_pod("p0"))
    await asyncio.to_thread(core.create_namespaced_pod, "ns", raw_pod("p1", ready=False))
    assert await asyncio.to_thread(source.wait_synced, DEADLINE_SECONDS)
    sim = engine.Simulator(source, rng=np.random.default_rng(0))

    def played() -> bool:
        sim.sync()
        return sim.record("ns", "p0") is not None

    await eventually(played, "pod p0 played")
    assert sim.record("ns", "p1") is None
    assert b"nv_inference_request_success" in sim.records[("ns", "p0")].metrics()


async def test_a_watch_that_connects_only_after_stop_ends_at_once(
    monkeypatch: pytest.MonkeyPatch, kmock: kmock.KubernetesEmulator, api: kubernetes.client.ApiClient
) -> None:
    """The interleaving that leaked a watch: stop() halts the pods informer while its watch request is
    still on its way, and the watch connects only then. It must end, not read on until the resync."""
    kmock.resources["v1/pods"] = {}
    source = kube.KubeSource(api, resync_seconds=300)
    pods = source.informers[0]
    connecting, halted = threading.Event(), threading.Event()
    list_call, halt = pods.list_call, pods.halt

    def held_list_call(**kwargs: Any) -> Any:
        if kwargs.get("watch"):
            connecting.set()
            halted.wait(DEADLINE_SECONDS)
        return list_call(**kwargs)

    def halt_then_release() -> None:
        halt()
        halted.set()

    monkeypatch.setattr(pods, "list_call", held_list_call)
    monkeypatch.setattr(pods, "halt", halt_then_release)
    source.start()
    try:
        assert await asyncio.to_thread(connecting.wait, DEADLINE_SECONDS), "the pods watch never started"
    finally:
        await asyncio.to_thread(source.stop, DEADLINE_SECONDS)  # stop from a worker thread: joining blocks
    assert halted.is_set()
    assert not pods.is_alive(), "the pods watch read on after stop()"
