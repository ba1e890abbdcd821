"""End to end on the real sandbox: a ModelDeployment becomes Triton GPU pods, and status follows reality."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.e2e import events, waiting
from tests.e2e.operator_fixtures import OperatorProcess

pytestmark = pytest.mark.e2e

GROUP, VERSION, PLURAL = "vigil.dev", "v1alpha1", "modeldeployments"


def manifest(name: str, version: str = "1", replicas: int = 2, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "resnet50", "repository": "s3://models/resnet50", "version": version},
            "replicas": replicas,
            "bakeTime": "5s",
            **spec,
        },
    }


def create(kube: client.ApiClient, ns: str, body: dict[str, Any]) -> None:
    client.CustomObjectsApi(kube).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)


def get(kube: client.ApiClient, ns: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(kube).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    return found


def condition(md: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in md.get("status", {}).get("conditions", []) if c["type"] == type_), None)


def condition_is(kube: client.ApiClient, ns: str, name: str, type_: str, status: str) -> dict[str, Any] | None:
    md = get(kube, ns, name)
    found = condition(md, type_)
    if found and found["status"] == status and md["status"].get("observedGeneration") == md["metadata"]["generation"]:
        return md
    return None


def test_modeldeployment_becomes_available_on_gpu_nodes(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    create(kube, namespace, manifest("resnet", replicas=2, triton={"gpus": 2}))
    md = waiting.until(lambda: condition_is(kube, namespace, "resnet", "Available", "True"), 120, "Available=True")
    status = md["status"]
    assert status["readyReplicas"] == 2
    assert status["modelVersion"] == "1"
    assert condition(md, "Progressing")["reason"] == "RolloutComplete"  # type: ignore[index]
    revision = status["currentRevision"]
    pods = client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector=f"vigil.dev/revision={revision}")
    assert len(pods.items) == 2
    nodes = {n.metadata.name: n for n in client.CoreV1Api(kube).list_node().items}
    for pod in pods.items:
        assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "2"
        assert nodes[pod.spec.node_name].metadata.labels["nvidia.com/gpu.present"] == "true"
    service = client.CoreV1Api(kube).read_namespaced_service("resnet", namespace)
    assert service.spec.selector == {"vigil.dev/modeldeployment": "resnet", "vigil.dev/revision": revision}
    for reason in ("RevisionCreated", "AvailableTrue"):
        events.posted(kube, namespace, "resnet", reason)
    assert operator.alive()


def test_version_change_rolls_out_a_new_revision_and_records_history(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    create(kube, namespace, manifest("bert", replicas=1))
    first = waiting.until(lambda: condition_is(kube, namespace, "bert", "Available", "True"), 120, "v1 Available")
    old = first["status"]["currentRevision"]
    client.CustomObjectsApi(kube).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "bert", {"spec": {"model": {"version": "2"}}}
    )

    def rolled_out() -> dict[str, Any] | None:
        md = condition_is(kube, namespace, "bert", "Progressing", "False")
        return md if md and md["status"]["currentRevision"] != old else None

    md = waiting.until(rolled_out, 120, "v2 rolled out")
    new = md["status"]["currentRevision"]
    assert md["status"]["modelVersion"] == "2"
    assert [r["name"] for r in md["status"]["revisions"]] == [old, new]
    assert md["status"]["previousRevision"] == old
    apps = client.AppsV1Api(kube)
    service = client.CoreV1Api(kube).read_namespaced_service("bert", namespace)
    assert service.spec.selector["vigil.dev/revision"] == new
    # The previous revision is kept for rollback, scaled to zero once the bake time is over.
    waiting.until(
        lambda: apps.read_namespaced_deployment(f"bert-{old}", namespace).spec.replicas == 0,
        60,
        "old revision scaled to zero after the bake time",
    )
    assert get(kube, namespace, "bert")["spec"]["model"]["version"] == "2"


def test_more_gpus_than_any_node_has_degrades_with_the_schedulers_reason(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    create(kube, namespace, manifest("huge", replicas=1, triton={"gpus": 16}))
    md = waiting.until(lambda: condition_is(kube, namespace, "huge", "Degraded", "True"), 120, "Degraded=True")
    degraded = condition(md, "Degraded")
    assert degraded is not None
    assert degraded["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in degraded["message"]
    assert condition(md, "Available")["status"] == "False"  # type: ignore[index]
    events.posted(kube, namespace, "huge", "DegradedTrue", lambda e: e.type == "Warning")


def test_a_refused_service_is_named_in_the_status_keeps_the_ready_deployment_unavailable_and_clears_once_admitted(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    # The API server refusing a Service, as when its ClusterIP range is full: here a quota of none.
    core = client.CoreV1Api(kube)
    quota = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="no-services"), spec=client.V1ResourceQuotaSpec(hard={"services": "0"})
    )
    core.create_namespaced_resource_quota(namespace, quota)
    waiting.until(
        lambda: (core.read_namespaced_resource_quota("no-services", namespace).status.hard or {}).get("services"),
        30,
        "the quota to be enforced",
    )
    create(kube, namespace, manifest("refused", replicas=1, triton={"gpus": 0, "cpu": "100m", "memory": "256Mi"}))

    def refused() -> dict[str, Any] | None:
        found = condition(get(kube, namespace, "refused"), "ReconcileError")
        return found if found and found["status"] == "True" else None

    error = waiting.until(refused, 60, "ReconcileError=True")
    assert error["reason"] == "Forbidden"
    assert error["message"].startswith("apply Service refused: 403 ")
    assert "exceeded quota" in error["message"]
    refusals = events.posted(kube, namespace, "refused", "ReconcileError", lambda e: "exceeded quota" in e.message)
    assert all(e.type == "Warning" for e in refusals), refusals

    # The Deployment does not wait for its Service (created beside the reconcile): the pod serves,
    # but without the Service no client reaches it, so the deployment is not Available.
    def pending() -> dict[str, Any] | None:
        md = get(kube, namespace, "refused")
        found = condition(md, "Available")
        return md if found and (found["status"], found["reason"]) == ("False", "ServicePending") else None

    md = waiting.until(pending, 60, "Available=False, ServicePending, with the pod Ready")
    assert md["status"]["readyReplicas"] == 1
    assert condition(md, "Available")["message"].endswith("1/1 ready; the Service is not created yet")  # type: ignore[index]

    core.delete_namespaced_resource_quota("no-services", namespace)
    md = waiting.until(lambda: condition_is(kube, namespace, "refused", "ReconcileError", "False"), 90, "cleared")
    assert condition(md, "ReconcileError")["reason"] == "Applied"  # type: ignore[index]
    # The Service is created beside the reconcile (its creation may still be under way when the error
    # clears); Available waits for it.
    waiting.until(lambda: condition_is(kube, namespace, "refused", "Available", "True"), 60, "Available")
    core.read_namespaced_service("refused", namespace)


def test_deleting_the_modeldeployment_garbage_collects_its_children(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    create(kube, namespace, manifest("gone", replicas=1))
    waiting.until(lambda: condition_is(kube, namespace, "gone", "Available", "True"), 120, "Available")
    client.CustomObjectsApi(kube).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "gone")
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    selector = "vigil.dev/modeldeployment=gone"
    waiting.until(
        lambda: (
            (
                not apps.list_namespaced_deployment(namespace, label_selector=selector).items
                and not core.list_namespaced_service(namespace, label_selector=selector).items
                and not core.list_namespaced_pod(namespace, label_selector=selector).items
            )
            or None
        ),
        120,
        "the garbage collector to remove Deployments, Services and pods",
    )


def test_a_spec_the_schema_accepts_but_vigil_cannot_honour_is_degraded_not_fatal(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    # An SLO period shorter than the operator's --min-window (20s): no schema can know that.
    slo = {"name": "availability", "kind": "availability", "period": "10s"}
    create(kube, namespace, manifest("clash", replicas=1, slos=[slo]))
    md = waiting.until(lambda: condition_is(kube, namespace, "clash", "Degraded", "True"), 60, "Degraded")
    degraded = condition(md, "Degraded")
    assert degraded is not None
    assert degraded["reason"] == "InvalidSpec"
    assert "spec.slos[0].period" in degraded["message"]
    assert not client.AppsV1Api(kube).list_namespaced_deployment(namespace).items
    assert operator.alive()


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("missing model", {"spec": {"replicas": 1}}, "spec.model"),
    (
        "empty version",
        {"spec": {"model": {"name": "m", "repository": "s3://b/m", "version": ""}}},
        "spec.model.version",
    ),
    (
        "bad repository",
        {"spec": {"model": {"name": "m", "repository": "ftp://x", "version": "1"}}},
        "spec.model.repository",
    ),
    ("negative replicas", {"spec": {"replicas": -1}}, "spec.replicas"),
    ("too many gpus", {"spec": {"triton": {"gpus": 17}}}, "spec.triton.gpus"),
    ("min above max", {"spec": {"replicas": 2, "minReplicas": 3, "maxReplicas": 2}}, "spec.minReplicas"),
    ("replicas above max", {"spec": {"replicas": 5, "maxReplicas": 2}}, "spec.replicas"),
    ("unknown slo kind", {"spec": {"slos": [{"name": "a", "kind": "bogus"}]}}, "spec.slos[0].kind"),
    ("latency without threshold", {"spec": {"slos": [{"name": "a", "kind": "latency"}]}}, "spec.slos[0].thresholdMs"),
    (
        "objective of 100",
        {"spec": {"slos": [{"name": "a", "kind": "availability", "objective": 100}]}},
        "spec.slos[0].objective",
    ),
    (
        "duplicate slo names",
        {"spec": {"slos": [{"name": "a", "kind": "availability"}, {"name": "a", "kind": "availability"}]}},
        "spec.slos",
    ),
    ("bad control mode", {"spec": {"triton": {"modelControlMode": "auto"}}}, "spec.triton.modelControlMode"),
    ("bad bake time", {"spec": {"bakeTime": "5 minutes"}}, "spec.bakeTime"),
    ("name too long", {"metadata": {"name": "m" * 41}}, "metadata.name"),
]


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in patch.items():
        merged[key] = (
            _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


@pytest.mark.parametrize(("case", "patch", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_api_server_rejects_invalid_manifest_naming_the_field(
    kube: client.ApiClient, namespace: str, case: str, patch: dict[str, Any], field: str
) -> None:
    body = _merge(manifest("invalid", replicas=1), patch)
    if case == "missing model":
        del body["spec"]["model"]
    with pytest.raises(client.exceptions.ApiException) as raised:
        create(kube, namespace, body)
    assert raised.value.status == 422, raised.value.body
    assert field in raised.value.body, raised.value.body
