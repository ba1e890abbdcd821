"""Parsing raw API objects into the simulator's cluster snapshot."""

from __future__ import annotations

from typing import Any

from vigil import labels
from vigil.api import modeldeployment
from vigil.render import workload
from vigil.sim import cluster
from vigil.sim import testing as simtest


def raw_pod(**overrides: Any) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "metadata": {
            "namespace": "ns",
            "name": "p",
            "uid": "u1",
            "labels": simtest.pod_labels("md", "r1", "7", "bert"),
        },
        "spec": {
            "containers": [
                {"name": "triton", "resources": {"limits": {"nvidia.com/gpu": "2", "cpu": "4"}}},
                {"name": "sidecar", "resources": {}},
            ]
        },
        "status": {
            "phase": "Running",
            "podIP": "10.1.2.3",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "triton", "restartCount": 2}, {"name": "sidecar", "restartCount": 1}],
        },
    }
    for key, value in overrides.items():
        pod[key] = {**pod[key], **value}
    return pod


def test_ready_pod() -> None:
    pod = cluster.pod_from_dict(raw_pod())
    assert pod.key == ("ns", "p")
    assert pod.ready
    assert not pod.deleting
    assert pod.served
    assert pod.gpus == 2
    assert pod.restarts == 3
    assert pod.incarnation == "u1/3"
    assert pod.ip == "10.1.2.3"
    assert pod.deployment == "md"


def test_unready_deleting_and_unlabelled_pods_are_not_served() -> None:
    not_ready = raw_pod(status={"conditions": [{"type": "Ready", "status": "False"}]})
    assert not cluster.pod_from_dict(not_ready).served
    failed = raw_pod(status={"phase": "Failed"})
    assert not cluster.pod_from_dict(failed).served
    deleting = raw_pod(metadata={"deletionTimestamp": "2024-01-01T00:00:00Z"})
    assert cluster.pod_from_dict(deleting).deleting
    assert not cluster.pod_from_dict(deleting).served
    plain = raw_pod(metadata={"labels": {"app": "x"}})
    assert not cluster.pod_from_dict(plain).served


def test_pod_without_gpu_limits_or_status() -> None:
    pod = cluster.pod_from_dict({"metadata": {"name": "bare", "namespace": "ns"}, "spec": {"containers": [{}]}})
    assert (pod.gpus, pod.ready, pod.restarts) == (0, False, 0)


def test_model_repository_comes_from_the_rendered_triton_arguments() -> None:
    spec = modeldeployment.ModelDeploymentSpec.model_validate(
        {"model": {"name": "cnn", "repository": "/srv/models", "version": "2"}}
    )
    rendered = raw_pod(spec={"containers": [{"name": "triton", "args": workload.triton_args(spec)}]})
    assert cluster.pod_from_dict(rendered).model_repository == "/srv/models"


def test_model_repository_in_any_form_tritonserver_reads_the_last_one_wins() -> None:
    def repository(*containers: dict[str, Any]) -> str | None:
        return cluster.pod_from_dict(raw_pod(spec={"containers": list(containers)})).model_repository

    assert repository({"command": ["tritonserver", "--model-repository", "file:///m"]}) == "file:///m"
    assert repository({"args": ["--model-store=/a", "--model-repository=/b"]}) == "/b"
    assert repository({"command": ["tritonserver"]}, {"args": ["--model-repository=s3://b/m"]}) == "s3://b/m"
    assert repository({"args": ["--model-repository"]}) is None
    assert repository({"args": ["--model-repository-extra=/x"]}) is None
    assert cluster.pod_from_dict(raw_pod()).model_repository is None


def test_service_selector() -> None:
    service = cluster.service_from_dict(
        {"metadata": {"namespace": "ns", "name": "md"}, "spec": {"selector": {labels.MODEL_DEPLOYMENT: "md"}}}
    )
    assert service.selector == {labels.MODEL_DEPLOYMENT: "md"}
    headless = cluster.service_from_dict({"metadata": {"namespace": "ns", "name": "ext"}, "spec": {}})
    assert headless.selector is None


def test_route_defaults() -> None:
    route = cluster.route_from_dict(
        {
            "metadata": {"namespace": "ns", "name": "md"},
            "spec": {
                "rules": [
                    {
                        "matches": [{"path": {"type": "Exact", "value": "/v2"}, "headers": [{"name": "x"}]}],
                        "backendRefs": [
                            {"name": "md-a", "port": 8000, "weight": 90},
                            {"name": "fallback", "namespace": "other"},
                        ],
                    },
                    {},
                ]
            },
        }
    )
    first = route.rules[0]
    assert first.matches == (cluster.PathMatch("Exact", "/v2", None, True),)
    assert first.backends == (cluster.BackendRef("ns", "md-a", 90), cluster.BackendRef("other", "fallback", 1))
    assert route.rules[1] == cluster.RouteRule(matches=(), backends=())


def test_model_deployment_and_model_identity() -> None:
    md = cluster.deployment_from_dict(
        {"metadata": {"namespace": "ns", "name": "md"}, "spec": {"model": {"name": "bert", "version": "5"}}}
    )
    assert md == cluster.ModelDeploymentInfo("ns", "md", "bert", "5")
    snapshot = simtest.make_cluster([], deployments=[md])
    labelled = simtest.pod("p", model="resnet", version="9")
    assert cluster.model_identity(labelled, snapshot) == ("resnet", "9")
    bare = cluster.Pod("ns", "q", "u", {labels.MODEL_DEPLOYMENT: "md"}, ready=True)
    assert cluster.model_identity(bare, snapshot) == ("bert", "5")
    orphan = cluster.Pod("ns", "r", "u", {labels.MODEL_DEPLOYMENT: "lonely"}, ready=True)
    assert cluster.model_identity(orphan, snapshot) == ("lonely", "1")


def test_static_source_swaps_snapshots() -> None:
    source = cluster.StaticSource()
    assert source.snapshot().pods == ()
    snapshot = simtest.make_cluster([simtest.pod("p")])
    source.set(snapshot)
    assert source.snapshot() is snapshot
    assert snapshot.pod("ns", "p") is snapshot.pods[0]
    assert snapshot.pod("ns", "missing") is None
