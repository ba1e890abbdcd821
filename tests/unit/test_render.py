"""Rendering a revision into Triton Deployments and Services."""

from __future__ import annotations

from typing import Any

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


# --- pod security -----------------------------------------------------------------------------------


def pod_spec(**triton: object) -> dict[str, Any]:
    spec: dict[str, Any] = workload.deployment(OWNER, "abc", factories.md(triton=triton).spec, 1)["spec"]["template"][
        "spec"
    ]
    return spec


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The checks of the restricted Pod Security Standard that a rendered pod can fail."""
    found = []
    pod_ctx = pod.get("securityContext", {})
    for container in pod["containers"]:
        ctx = container.get("securityContext", {})
        if ctx.get("allowPrivilegeEscalation") is not False:
            found.append("allowPrivilegeEscalation != false")
        if "ALL" not in ctx.get("capabilities", {}).get("drop", []):
            found.append("capabilities.drop lacks ALL")
        if set(ctx.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append("capabilities.add beyond NET_BIND_SERVICE")
        if ctx.get("privileged"):
            found.append("privileged")
        if not ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")):
            found.append("runAsNonRoot != true")
        if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
            found.append("runAsUser = 0")
        seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append("seccompProfile not RuntimeDefault/Localhost")
    return found


def test_triton_pods_meet_the_restricted_pod_security_standard_by_default() -> None:
    pod = pod_spec()
    assert restricted_violations(pod) == []
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


def test_security_overrides_replace_only_the_fields_they_set() -> None:
    pod = pod_spec(
        podSecurityContext={"runAsUser": 2000, "supplementalGroups": [44]},
        securityContext={
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
        },
    )
    assert pod["securityContext"]["runAsUser"] == 2000
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["supplementalGroups"] == [44]
    container = pod["containers"][0]["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert restricted_violations(pod) == []


def test_an_explicit_root_override_is_rendered_as_asked_and_is_no_longer_restricted() -> None:
    pod = pod_spec(securityContext={"runAsUser": 0, "runAsNonRoot": False})
    assert pod["containers"][0]["securityContext"]["runAsUser"] == 0
    assert "runAsNonRoot != true" in restricted_violations(pod)


def test_revision_hashes_of_existing_specs_do_not_change_with_the_new_security_fields() -> None:
    # Hashes computed before securityContext existed: an upgrade must not mint new revisions.
    plain = factories.md().spec
    assert revision.revision_of(plain) == "8467d2f4a1"
    full = factories.md(
        version="2",
        triton={
            "gpus": 2,
            "cpu": "4",
            "memory": "16Gi",
            "args": ["--log-verbose=1"],
            "env": [{"name": "A", "value": "b"}],
            "nodeSelector": {"zone": "a"},
            "tolerations": [
                {"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"},
                {"operator": "Exists"},
            ],
            "startupTimeoutSeconds": 120,
            "modelControlMode": "poll",
            "image": "nvcr.io/nvidia/tritonserver:24.01-py3",
        },
    ).spec
    assert revision.revision_of(full) == "96f14780e5"


def test_setting_a_security_override_is_a_new_revision() -> None:
    base = revision.revision_of(factories.md().spec)
    assert revision.revision_of(factories.md(triton={"securityContext": {"readOnlyRootFilesystem": True}}).spec) != base
    assert revision.revision_of(factories.md(triton={"podSecurityContext": {"runAsUser": 2000}}).spec) != base
