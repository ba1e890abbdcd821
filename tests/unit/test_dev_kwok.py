"""The sandbox's kwok documents: fake GPU nodes, Stages, kwokctl configuration, durations."""

from __future__ import annotations

import pathlib

import pytest

from vigil import labels
from vigil.dev import durations, kwok


def test_gpu_node_carries_discovery_labels_fake_annotation_and_taint() -> None:
    shape = kwok.NodeShape(gpus=8, gpu_product="NVIDIA-A100-SXM4-80GB")
    node = kwok.node_manifest(2, shape, "vigil")
    meta = node["metadata"]
    assert meta["name"] == "gpu-node-2"
    assert meta["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert meta["labels"][labels.GPU_PRESENT] == "true"
    assert meta["labels"][labels.GPU_PRODUCT] == "NVIDIA-A100-SXM4-80GB"
    assert meta["labels"]["nvidia.com/gpu.count"] == "8"
    assert meta["labels"]["nvidia.com/gpu.memory"] == str(80 * 1024)
    assert meta["labels"][kwok.SANDBOX_LABEL] == "vigil"
    assert node["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    assert "status" not in node


def test_node_without_taint_has_an_empty_spec() -> None:
    node = kwok.node_manifest(0, kwok.NodeShape(taint=False), "vigil")
    assert node["spec"] == {}


def test_gpu_memory_label_follows_product_or_override() -> None:
    assert kwok.NodeShape(gpu_product="NVIDIA-A100-SXM4-40GB").memory_mib() == 40960
    assert kwok.NodeShape(gpu_product="Tesla-T4").memory_mib() == 81920
    assert kwok.NodeShape(gpu_memory_mib=24576).memory_mib() == 24576


def test_node_status_offers_gpus_as_capacity_and_allocatable() -> None:
    status = kwok.node_status(1, kwok.NodeShape(gpus=4, cpu="64", memory="512Gi", pods=50))["status"]
    assert status["capacity"] == status["allocatable"]
    assert status["allocatable"]["nvidia.com/gpu"] == "4"
    assert status["allocatable"]["cpu"] == "64"
    assert status["allocatable"]["memory"] == "512Gi"
    assert status["allocatable"]["pods"] == "50"


def _stages(delay_ms: int = 2000) -> dict[str, dict[str, object]]:
    return {stage["metadata"]["name"]: stage for stage in kwok.stage_manifests(delay_ms)}


def test_stage_set_covers_node_and_pod_life_cycle() -> None:
    stages = _stages()
    assert set(stages) == {
        "vigil-node-initialize",
        "vigil-node-heartbeat",
        "vigil-pod-start",
        "vigil-pod-ready",
        "vigil-pod-complete",
        "vigil-pod-delete",
        "vigil-chaos-crash",
        "vigil-chaos-back-off",
        "vigil-chaos-restart",
    }
    for stage in stages.values():
        assert stage["apiVersion"] == "kwok.x-k8s.io/v1alpha1"
        assert stage["kind"] == "Stage"


def _selector(stage: dict[str, object]) -> dict[str, tuple[str, tuple[str, ...]]]:
    spec = stage["spec"]
    assert isinstance(spec, dict)
    return {
        expr["key"]: (expr["operator"], tuple(expr.get("values", ()))) for expr in spec["selector"]["matchExpressions"]
    }


def test_pod_start_gives_running_phase_and_ip_but_not_ready() -> None:
    stage = _stages()["vigil-pod-start"]
    selector = _selector(stage)
    assert selector[".status.podIP"] == ("DoesNotExist", ())
    assert selector[".metadata.deletionTimestamp"] == ("DoesNotExist", ())
    template = stage["spec"]["steps"][0]["patch"]["template"]  # type: ignore[index]
    assert "phase: Running" in template
    assert "podIP:" in template
    assert 'type: Ready\n  status: "False"' in template


def test_pod_ready_waits_for_the_delay_with_a_per_pod_override() -> None:
    stage = _stages(1500)["vigil-pod-ready"]
    delay = stage["spec"]["delay"]  # type: ignore[index]
    assert delay["durationMilliseconds"] == 1500
    assert kwok.READY_DELAY_ANNOTATION in delay["durationFrom"]["jq"]["expression"]
    selector = _selector(stage)
    assert selector[".status.phase"] == ("In", ("Running",))
    assert selector['.status.conditions.[] | select( .type == "Ready" ) | .status'] == ("NotIn", ("True",))
    template = stage["spec"]["steps"][0]["patch"]["template"]  # type: ignore[index]
    assert 'type: Ready\n  status: "True"' in template
    # Strategic merge keeps old fields: the not-ready reason must be cleared explicitly.
    assert "reason: null" in template


def test_pod_delete_removes_terminating_pods_without_finalizers() -> None:
    stage = _stages()["vigil-pod-delete"]
    assert _selector(stage) == {
        ".metadata.deletionTimestamp": ("Exists", ()),
        ".metadata.finalizers": ("DoesNotExist", ()),
    }
    assert stage["spec"]["steps"] == [{"delete": True}]  # type: ignore[index]


def test_chaos_stages_loop_only_labelled_pods_and_outweigh_the_normal_life_cycle() -> None:
    stages = _stages()
    chaos = {name: stage for name, stage in stages.items() if name.startswith("vigil-chaos-")}
    state = ".status.containerStatuses.[].state"
    entered_on = {
        "vigil-chaos-crash": (f"{state}.running", ("Exists", ())),
        "vigil-chaos-back-off": (f"{state}.terminated", ("Exists", ())),
        "vigil-chaos-restart": (f"{state}.waiting.reason", ("In", ("CrashLoopBackOff",))),
    }
    for name, stage in chaos.items():
        selector = _selector(stage)
        assert selector['.metadata.labels["vigil.dev/chaos"]'] == ("In", ("crashloop",))
        assert selector[".metadata.deletionTimestamp"] == ("DoesNotExist", ())
        key, wanted = entered_on[name]
        assert selector[key] == wanted
        assert stage["spec"]["weight"] > 1  # type: ignore[index]
    for name, stage in stages.items():
        if name not in chaos:
            assert "weight" not in stage["spec"]  # type: ignore[operator]
    back_off = chaos["vigil-chaos-back-off"]["spec"]["steps"][0]["patch"]["template"]  # type: ignore[index]
    assert "restartCount: {{ add1 $origin.restartCount }}" in back_off
    assert "reason: CrashLoopBackOff" in back_off


def test_status_patches_target_the_status_subresource() -> None:
    for stage in kwok.stage_manifests(0):
        for step in stage["spec"]["steps"]:
            if "patch" in step:
                assert step["patch"]["subresource"] == "status"
                assert step["patch"]["root"] == "status"


def test_negative_ready_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        kwok.stage_manifests(-1)


BINARIES = {
    name: pathlib.Path(f"/cache/{name}")
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd", "kwok")
}


def test_kwokctl_config_uses_local_binaries_loopback_and_stage_crds() -> None:
    kwokctl, kwok_conf = kwok.kwokctl_config(BINARIES)
    assert kwokctl["kind"] == "KwokctlConfiguration"
    options = kwokctl["options"]
    assert options["runtime"] == "binary"
    assert options["bindAddress"] == "127.0.0.1"
    assert options["enableCRDs"] == ["Stage"]
    assert options["kubeApiserverBinary"] == "/cache/kube-apiserver"
    assert options["kubeControllerManagerBinary"] == "/cache/kube-controller-manager"
    assert options["kubeSchedulerBinary"] == "/cache/kube-scheduler"
    assert options["kubectlBinary"] == "/cache/kubectl"
    assert options["etcdBinary"] == "/cache/etcd"
    assert options["kwokControllerBinary"] == "/cache/kwok"
    assert {"kube-controller-manager", "kube-scheduler"} <= set(options["components"])
    assert kwok_conf["kind"] == "KwokConfiguration"
    assert kwok_conf["options"]["podPlayStageParallelism"] > 0
    assert kwok_conf["options"]["nodeLeaseParallelism"] > 0


def _patches(kwokctl: dict[str, object]) -> dict[str, list[dict[str, object]]]:
    return {p["name"]: p["extraArgs"] for p in kwokctl["componentsPatches"]}  # type: ignore[attr-defined]


def test_kwok_controller_runs_without_node_leases_and_with_a_real_node_ip() -> None:
    kwokctl, _ = kwok.kwokctl_config(BINARIES)
    args = {a["key"]: a["value"] for a in _patches(kwokctl)["kwok-controller"] if a["override"]}
    # Leases would leave a restarted kwok's nodes unmanaged; an empty --node-ip gives invalid hostIPs.
    assert args == {"node-lease-duration-seconds": "0", "node-ip": kwok.FALLBACK_NODE_IP}


def test_kwokctl_config_names_missing_binaries() -> None:
    partial = {name: path for name, path in BINARIES.items() if name != "etcd"}
    with pytest.raises(ValueError, match="etcd"):
        kwok.kwokctl_config(partial)


@pytest.mark.parametrize(
    ("text", "millis"),
    [("2s", 2000), ("500ms", 500), ("1m30s", 90_000), ("1.5s", 1500), ("0s", 0), ("3", 3000), ("1h", 3_600_000)],
)
def test_durations_parse_go_style(text: str, millis: int) -> None:
    assert durations.to_millis(text) == millis


@pytest.mark.parametrize("text", ["", "2x", "s", "1s 2s", "-1s"])
def test_durations_refuse_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        durations.to_millis(text)


def test_prometheus_durations_prefer_seconds() -> None:
    assert durations.prometheus(5000) == "5s"
    assert durations.prometheus(1500) == "1500ms"
    with pytest.raises(ValueError, match="positive"):
        durations.prometheus(0)


def test_each_node_gets_its_own_internal_ip_outside_the_pod_network() -> None:
    addresses = [kwok.node_status(i, kwok.NodeShape())["status"]["addresses"] for i in (0, 1, 251)]
    internal = [next(a["address"] for a in entry if a["type"] == "InternalIP") for entry in addresses]
    assert internal == ["10.240.0.1", "10.240.0.2", "10.240.1.2"]
    assert not any(ip.startswith("10.244.") for ip in internal)


def test_the_api_server_gets_a_service_range_sized_for_a_fleet_and_the_option_reaches_it() -> None:
    default, _ = kwok.kwokctl_config(BINARIES)
    # New flags are appended: kwokctl's "override" would only replace a flag it already passes.
    assert _patches(default)["kube-apiserver"] == [
        {"key": "service-cluster-ip-range", "value": "10.96.0.0/12", "override": False}
    ]
    chosen, _ = kwok.kwokctl_config(BINARIES, service_cidr="10.100.0.0/16")
    assert _patches(chosen)["kube-apiserver"][0]["value"] == "10.100.0.0/16"


def test_controllers_and_scheduler_are_not_throttled_below_a_burst_of_a_thousand_pods() -> None:
    kwokctl, _ = kwok.kwokctl_config(BINARIES)
    for component in ("kube-controller-manager", "kube-scheduler"):
        args = {a["key"]: a["value"] for a in _patches(kwokctl)[component]}
        assert int(str(args["kube-api-qps"])) >= 500
        assert int(str(args["kube-api-burst"])) >= int(str(args["kube-api-qps"]))
    # Priority and fairness stay on in the API server: only client-side limits are raised.
    assert "disableQPSLimits" not in kwokctl["options"]


def _controller_manager_args() -> dict[str, str]:
    kwokctl, _ = kwok.kwokctl_config(BINARIES)
    return {str(a["key"]): str(a["value"]) for a in _patches(kwokctl)["kube-controller-manager"]}


def test_deployments_and_replicasets_are_synced_by_more_workers_than_the_default_five() -> None:
    args = _controller_manager_args()
    # Five workers, each waiting ~200 ms on a loaded API server, queued a burst's Deployments 14.5 s.
    assert int(args["concurrent-deployment-syncs"]) >= 20
    assert int(args["concurrent-replicaset-syncs"]) >= 20


def test_every_default_controller_runs_except_the_legacy_endpoints_controller() -> None:
    enabled = _controller_manager_args()["controllers"].split(",")
    assert enabled[0] == "*"
    assert enabled[1:] == ["-endpoints-controller"]
    # EndpointSlices (what kube-proxy and clients read) are still written.
    assert "-endpointslice-controller" not in enabled


def test_kwok_plays_pod_stages_in_parallel_enough_for_a_burst() -> None:
    _, kwok_conf = kwok.kwokctl_config(BINARIES)
    assert kwok_conf["options"]["podPlayStageParallelism"] >= 16


def test_cpu_nodes_have_no_gpu_labels_no_taint_and_their_own_names_and_addresses() -> None:
    shape = kwok.cpu_node_shape(pods=110)
    node = kwok.node_manifest(3, shape, "vigil")
    meta = node["metadata"]
    assert meta["name"] == "cpu-node-3"
    assert meta["labels"][kwok.NODE_POOL_LABEL] == "cpu"
    assert labels.GPU_PRESENT not in meta["labels"]
    assert not any(key.startswith("nvidia.com/") for key in meta["labels"])
    assert node["spec"] == {}
    status = kwok.node_status(3, shape)["status"]
    assert status["allocatable"]["pods"] == "110"
    assert status["allocatable"][labels.GPU_RESOURCE] == "0"
    assert status["addresses"][0]["address"] == "10.241.0.4"
    assert kwok.node_manifest(3, kwok.NodeShape(), "vigil")["metadata"]["labels"][kwok.NODE_POOL_LABEL] == "gpu"


def test_a_forgotten_pid_is_no_longer_recorded_so_kwokctl_starts_that_component(tmp_path: pathlib.Path) -> None:
    runner = kwok.Kwokctl(tmp_path / "kwokctl", "box", tmp_path / "work")
    pids = runner.cluster_dir / "pids"
    pids.mkdir(parents=True)
    (pids / "kube-scheduler.pid").write_text("4242")
    (pids / "etcd.pid").write_text("4243")
    runner.forget_pid("kube-scheduler")
    runner.forget_pid("kube-scheduler")  # already gone: nothing to do
    assert runner.component_pids() == {"etcd": 4243}


KWOK_YAML = """\
kind: KwokConfiguration
apiVersion: config.kwok.x-k8s.io/v1alpha1
options: {}
---
kind: KwokctlConfiguration
apiVersion: config.kwok.x-k8s.io/v1alpha1
options:
  etcdPeerPort: 32766
  etcdPort: 32765
  kubeApiserverPort: 32764
  kubeApiserverInsecurePort: 0
  securePort: true
  kubeSchedulerPort: 32761
"""


def test_the_ports_kwokctl_chose_are_read_from_the_clusters_configuration(tmp_path: pathlib.Path) -> None:
    runner = kwok.Kwokctl(tmp_path / "kwokctl", "box", tmp_path / "work")
    assert runner.ports() == {}  # no cluster yet
    runner.cluster_dir.mkdir(parents=True)
    (runner.cluster_dir / "kwok.yaml").write_text(KWOK_YAML)
    assert runner.ports() == {
        "etcdPeerPort": 32766,
        "etcdPort": 32765,
        "kubeApiserverPort": 32764,
        "kubeSchedulerPort": 32761,
    }
