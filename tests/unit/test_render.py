"""Rendering a revision into Triton Deployments and Services."""

from __future__ import annotations

from tests.unit import factories
from vigil import labels
from vigil.render import revision, workload

OWNER = workload.Owner(name="resnet", namespace="ml", uid="uid-1")


def test_revision_hash_ignores_replicas_and_slos() -> None:
    a = factories.md(replicas=1).spec
    b = factories.md(replicas=5, bakeTime="1m").spec
    assert revision.revision_of(a) == revision.revision_of(b)


def test_revision_hash_changes_with_model_version_image_and_args() -> None:
    base = revision.revision_of(factories.md().spec)
    assert revision.revision_of(factories.md(version="2").spec) != base
    assert revision.revision_of(factories.md(triton={"image": "triton:2"}).spec) != base
    assert revision.revision_of(factories.md(triton={"args": ["--log-verbose=1"]}).spec) != base


def test_revision_hash_is_short_and_dns_safe() -> None:
    rev = revision.revision_of(factories.md().spec)
    assert len(rev) == revision.HASH_LENGTH
    assert rev.isalnum()
    assert rev == rev.lower()


def test_deployment_runs_triton_with_ports_flags_and_probes() -> None:
    spec = factories.md().spec
    manifest = workload.deployment(OWNER, "abc", spec, 3)
    assert manifest["metadata"]["name"] == "resnet-abc"
    assert manifest["spec"]["replicas"] == 3
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert "--model-repository=s3://models/resnet50" in container["args"]
    assert "--model-control-mode=explicit" in container["args"]
    assert "--load-model=resnet50" in container["args"]
    assert "--strict-readiness=true" in container["args"]
    assert "--metrics-port=8002" in container["args"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] == 300


def test_gpus_go_into_limits_with_gpu_node_selection_and_toleration() -> None:
    spec = factories.md(triton={"gpus": 2, "nodeSelector": {"nvidia.com/gpu.product": "A100"}}).spec
    pod = workload.deployment(OWNER, "abc", spec, 1)["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["limits"][labels.GPU_RESOURCE] == "2"
    assert labels.GPU_RESOURCE not in resources["requests"]
    assert pod["nodeSelector"] == {labels.GPU_PRESENT: "true", "nvidia.com/gpu.product": "A100"}
    assert {"key": labels.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


def test_cpu_only_pods_neither_select_nor_tolerate_gpu_nodes() -> None:
    pod = workload.deployment(OWNER, "abc", factories.md(triton={"gpus": 0}).spec, 1)["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod
    assert "tolerations" not in pod
    assert labels.GPU_RESOURCE not in pod["containers"][0]["resources"]["limits"]


def test_pods_carry_revision_labels_and_scrape_annotations() -> None:
    template = workload.deployment(OWNER, "abc", factories.md(version="7").spec, 1)["spec"]["template"]
    assert template["metadata"]["labels"][labels.MODEL_DEPLOYMENT] == "resnet"
    assert template["metadata"]["labels"][labels.REVISION] == "abc"
    assert template["metadata"]["labels"][labels.MODEL_VERSION] == "7"
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "8002"


def test_children_are_owned_by_the_modeldeployment_as_controller() -> None:
    for manifest in (workload.deployment(OWNER, "abc", factories.md().spec, 1), workload.service(OWNER, "abc")):
        (ref,) = manifest["metadata"]["ownerReferences"]
        assert ref["kind"] == "ModelDeployment"
        assert ref["uid"] == "uid-1"
        assert ref["controller"] is True


def test_service_selects_only_the_serving_revision() -> None:
    assert workload.service(OWNER, "abc")["spec"]["selector"] == {
        labels.MODEL_DEPLOYMENT: "resnet",
        labels.REVISION: "abc",
    }
    assert workload.service(OWNER, None)["spec"]["selector"] == {labels.MODEL_DEPLOYMENT: "resnet"}


def test_spec_problems_name_the_offending_field() -> None:
    spec = factories.md(
        triton={
            "args": ["--log-verbose=1", "--http-port=9000"],
            "env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}],
            "cpu": "0",
        },
        traffic={"fallback": "resnet"},
    ).spec
    problems = workload.spec_problems(spec, "resnet")
    assert any(p.startswith("spec.triton.args[1]: --http-port") for p in problems)
    assert any(p.startswith("spec.triton.env: variable A") for p in problems)
    assert any(p.startswith("spec.triton.cpu") for p in problems)
    assert any(p.startswith("spec.traffic.fallback") for p in problems)


def test_valid_spec_has_no_problems() -> None:
    assert workload.spec_problems(factories.md().spec, "resnet") == []
