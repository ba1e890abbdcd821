"""The kwok half of the sandbox: fake GPU and CPU nodes, the Stages that play their kubelets, and kwokctl.

Two node pools: GPU nodes (tainted ``nvidia.com/gpu``, labelled as GPU feature discovery does)
for the GPU tests and the demo, and untainted CPU-only nodes where a large fleet of cheap
CPU-only replicas fits (20 x 110 pods by default) without touching the GPU counts other tests
rely on. The API server's Service range, the controllers' client rate limits and workers, and
kwok's parallelism are sized for a burst of such a fleet too (see :data:`DEFAULT_SERVICE_CIDR`,
:data:`CONTROL_PLANE_QPS`, :data:`CONTROLLER_WORKERS`, :data:`POD_PLAY_PARALLELISM`); measured on
2 cores, the burst is then bound by CPU and by the API server's one-at-a-time ClusterIP allocation,
not by any of these limits.

kwokctl's binary runtime runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
the kwok controller as plain processes from the binaries we built, all bound to 127.0.0.1. The
scheduler and the controllers are the real ones; only the kubelets are played by kwok.

Stages are served as ``kwok.x-k8s.io`` custom resources (``enableCRDs: [Stage]``) rather than
baked into kwokctl's config file: that way ``vigil dev up`` re-applies them like every other
object (repairing or changing the pod-ready delay on a running sandbox), and tests or fault
injectors can add their own Stages at run time.

The pod life cycle mirrors a Triton pod: scheduled -> Running with an IP but not Ready (the
model is loading) -> Ready after the configured delay (per pod: annotation
``vigil.dev/ready-delay``) -> on deletion, removed at once, as the kubelet does after the grace
period. Pods that cannot be scheduled are never touched by kwok, so they keep the scheduler's
``Unschedulable`` condition and its "Insufficient nvidia.com/gpu" message.

Chaos: a pod labelled ``vigil.dev/chaos=crashloop`` crash-loops the way a kubelet reports it.
Its containers exit (``terminated``, ``Error``, exit code 1), wait in ``CrashLoopBackOff`` with
that termination as ``lastState`` and ``restartCount`` one higher, start again, and exit again,
about every 8 seconds, for as long as the label stays. These Stages outweigh the normal life
cycle (kwok picks among matching Stages by ``weight``), so the pod never turns Ready meanwhile.

Everything above the :class:`Kwokctl` runner is pure and unit-tested.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import signal
import subprocess
from collections.abc import Mapping
from typing import Any

import yaml

from vigil import labels

Manifest = dict[str, Any]

STAGE_GROUP = "kwok.x-k8s.io"
STAGE_VERSION = "v1alpha1"
STAGE_PLURAL = "stages"
READY_DELAY_ANNOTATION = "vigil.dev/ready-delay"
SANDBOX_LABEL = "vigil.dev/sandbox"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
GPU_COUNT = "nvidia.com/gpu.count"
GPU_MEMORY = "nvidia.com/gpu.memory"
GPU_TAINT_VALUE = "present"
# Pod IPs come from this pool; a /16 so that churny tests never run out of addresses.
POD_CIDR = "10.244.0.1/16"
# Each fake node gets its own InternalIP here (pods report it as hostIP); kwok's own fallback for
# nodes it did not get an address for is the last one. CPU nodes take the next /16.
NODE_NETWORK = "10.240"
CPU_NODE_NETWORK = "10.241"
FALLBACK_NODE_IP = "10.240.255.254"
NODE_PREFIX = "gpu-node-"
CPU_NODE_PREFIX = "cpu-node-"
NODE_POOL_LABEL = "vigil.dev/node-pool"
# The API server's Service range. kube-apiserver's own default (10.0.0.0/24) holds 253 Services,
# so a fleet of about 250 ModelDeployments failed with "failed to allocate a serviceIP: range is
# full"; this is kubeadm's default, a million addresses.
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
# Client rate limits of kube-controller-manager and kube-scheduler. Their defaults (20 and 50
# requests per second) make a burst of 1,000 Deployments take minutes to become pods, which would
# measure the sandbox's throttling instead of vigil. Priority and fairness stay on in the API server.
CONTROL_PLANE_QPS = 500
CONTROL_PLANE_BURST = 1000
# Workers of the two kube-controller-manager controllers on a burst's path (5 each by default). A
# sync waits on the API server (about 200 ms while a burst loads it), so 5 workers drained a burst of
# 1,000 Deployments at 25 syncs per second: Deployments waited 14.5 s on average in the queue.
CONTROLLER_WORKERS = 20
CONTROLLER_SYNCS = ("concurrent_deployment_syncs", "concurrent_replicaset_syncs")
# The legacy Endpoints controller (the Endpoints API is deprecated since 1.33; kube-proxy, Prometheus'
# pod discovery and vigil read EndpointSlices or pods) wrote 3 Endpoints per new Service: 14 % of a
# burst's writes.
CONTROLLERS = "*,-endpoints-controller"
# kwok patches pod status (Running, then Ready) this many at a time; at 4, with 50 ms per patch under
# a burst, 1,000 pods took 28 s to go through their two Stages.
POD_PLAY_PARALLELISM = 16

_CONFIG_API = "config.kwok.x-k8s.io/v1alpha1"


@dataclasses.dataclass(frozen=True)
class NodeShape:
    """What every fake node of one pool offers to the scheduler (GPU nodes by default)."""

    gpus: int = 8
    gpu_product: str = "NVIDIA-A100-SXM4-80GB"
    gpu_memory_mib: int | None = None
    cpu: str = "96"
    memory: str = "1000Gi"
    pods: int = 110
    taint: bool = True
    prefix: str = NODE_PREFIX
    network: str = NODE_NETWORK

    @property
    def pool(self) -> str:
        return "gpu" if self.gpus > 0 else "cpu"

    def memory_mib(self) -> int:
        """GPU memory in MiB, as GPU feature discovery labels it; read from the product name if not given."""
        if self.gpu_memory_mib is not None:
            return self.gpu_memory_mib
        match = re.search(r"(\d+)GB", self.gpu_product, re.IGNORECASE)
        return int(match.group(1)) * 1024 if match else 81920


def cpu_node_shape(pods: int = 110) -> NodeShape:
    """A node without GPUs and without taint: where CPU-only pods (a fleet's cheap replicas) go."""
    return NodeShape(gpus=0, pods=pods, taint=False, prefix=CPU_NODE_PREFIX, network=CPU_NODE_NETWORK)


def node_name(index: int, prefix: str = NODE_PREFIX) -> str:
    return f"{prefix}{index}"


def node_manifest(index: int, shape: NodeShape, sandbox: str) -> Manifest:
    """The metadata and spec of one fake node (status goes separately: it is a subresource).

    GPU nodes carry GPU feature discovery's labels; CPU nodes carry none of them.
    """
    name = node_name(index, shape.prefix)
    spec: Manifest = {}
    if shape.taint:
        spec["taints"] = [{"key": labels.GPU_RESOURCE, "value": GPU_TAINT_VALUE, "effect": "NoSchedule"}]
    gpu_labels = (
        {
            labels.GPU_PRESENT: "true",
            labels.GPU_PRODUCT: shape.gpu_product,
            GPU_COUNT: str(shape.gpus),
            GPU_MEMORY: str(shape.memory_mib()),
        }
        if shape.gpus > 0
        else {}
    )
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {FAKE_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
                SANDBOX_LABEL: sandbox,
                NODE_POOL_LABEL: shape.pool,
                **gpu_labels,
            },
        },
        "spec": spec,
    }


def node_ip(index: int, network: str = NODE_NETWORK) -> str:
    return f"{network}.{index // 250}.{index % 250 + 1}"


def node_status(index: int, shape: NodeShape) -> Manifest:
    """The status part of a fake node: resources and addresses, which kwok's stages leave untouched."""
    resources = {
        "cpu": shape.cpu,
        "memory": shape.memory,
        "pods": str(shape.pods),
        "ephemeral-storage": "1Ti",
        labels.GPU_RESOURCE: str(shape.gpus),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node_name(index, shape.prefix)},
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "addresses": [
                {"type": "InternalIP", "address": node_ip(index, shape.network)},
                {"type": "Hostname", "address": node_name(index, shape.prefix)},
            ],
        },
    }


# -- Stages -----------------------------------------------------------------------------------
# Templates are Go text/template rendered by kwok against the object; the result is a strategic
# merge patch of the status subresource, so condition entries merge by type and the scheduler's
# PodScheduled condition survives.

_NODE_INITIALIZE = """\
{{ $now := Now }}
phase: Running
conditions:
{{ range NodeConditions }}
- type: {{ .type | Quote }}
  status: {{ .status | Quote }}
  reason: {{ .reason | Quote }}
  message: {{ .message | Quote }}
  lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
{{ end }}
{{ if not .status.addresses }}
addresses:
- type: InternalIP
  address: {{ NodeIP | Quote }}
- type: Hostname
  address: {{ .metadata.name | Quote }}
{{ end }}
daemonEndpoints:
  kubeletEndpoint:
    Port: {{ or NodePort 10250 }}
nodeInfo:
  architecture: amd64
  operatingSystem: linux
  kubeletVersion: {{ printf "kwok-%s" Version | Quote }}
  kubeProxyVersion: {{ printf "kwok-%s" Version | Quote }}
  containerRuntimeVersion: {{ printf "kwok-%s" Version | Quote }}
  kernelVersion: {{ printf "kwok-%s" Version | Quote }}
  osImage: "kwok"
  machineID: ""
  bootID: ""
  systemUUID: ""
{{ if not .status.allocatable }}
allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
capacity: {cpu: "32", memory: 256Gi, pods: "110"}
{{ end }}
"""

_NODE_HEARTBEAT = """\
{{ $now := Now }}
{{ $since := or .metadata.creationTimestamp $now }}
conditions:
{{ range NodeConditions }}
- type: {{ .type | Quote }}
  status: {{ .status | Quote }}
  reason: {{ .reason | Quote }}
  message: {{ .message | Quote }}
  lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $since | Quote }}
{{ end }}
"""

_POD_START = """\
{{ $now := Now }}
{{ $hostIP := NodeIPWith .spec.nodeName }}
{{ $podIP := PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
{{ $waiting := "" }}{{ range $i, $c := .spec.containers }}{{ if $i }}{{ $waiting = printf "%s " $waiting }}{{ end }}{{ $waiting = printf "%s%s" $waiting $c.name }}{{ end }}
phase: Running
startTime: {{ $now | Quote }}
hostIP: {{ $hostIP | Quote }}
hostIPs:
- ip: {{ $hostIP | Quote }}
podIP: {{ $podIP | Quote }}
podIPs:
- ip: {{ $podIP | Quote }}
conditions:
- type: PodReadyToStartContainers
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
- type: Initialized
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
- type: ContainersReady
  status: "False"
  reason: ContainersNotReady
  message: {{ printf "containers with unready status: [%s]" $waiting | Quote }}
  lastTransitionTime: {{ $now | Quote }}
- type: Ready
  status: "False"
  reason: ContainersNotReady
  message: {{ printf "containers with unready status: [%s]" $waiting | Quote }}
  lastTransitionTime: {{ $now | Quote }}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: ""
  ready: false
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
{{ with .spec.initContainers }}
initContainerStatuses:
{{ range . }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: ""
  ready: true
  restartCount: 0
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
{{ end }}
"""

_POD_READY = """\
{{ $now := Now }}
{{ $started := or .status.startTime $now }}
conditions:
- type: ContainersReady
  status: "True"
  reason: null
  message: null
  lastTransitionTime: {{ $now | Quote }}
- type: Ready
  status: "True"
  reason: null
  message: null
  lastTransitionTime: {{ $now | Quote }}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: ""
  ready: true
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $started | Quote }}
{{ end }}
"""

# The crash loop: running -> terminated (Error) -> waiting (CrashLoopBackOff, restartCount + 1)
# -> running -> ... The container list is replaced as a whole by the status patch, so every
# template writes every field, carrying lastState along.
_CRASH_CONDITIONS = """\
conditions:
- type: ContainersReady
  status: "False"
  reason: ContainersNotReady
  message: "containers with unready status (crash loop)"
  lastTransitionTime: {{ $now | Quote }}
- type: Ready
  status: "False"
  reason: ContainersNotReady
  message: "containers with unready status (crash loop)"
  lastTransitionTime: {{ $now | Quote }}
"""


def _crash_loop_patch(started: str, restart_count: str, state: str, last_from: str) -> str:
    """A status patch of the crash loop: every container not ready, in ``state`` (YAML under ``state:``),
    with ``restart_count``, and as ``lastState`` the termination found in ``$origin.<last_from>``."""
    return (
        "{{ $now := Now }}\n{{ $root := . }}\n"
        + _CRASH_CONDITIONS
        + "containerStatuses:\n"
        + "{{ range $index, $item := .spec.containers }}\n"
        + "{{ $origin := index $root.status.containerStatuses $index }}\n"
        + "- name: {{ $item.name | Quote }}\n"
        + "  image: {{ $item.image | Quote }}\n"
        + '  imageID: ""\n'
        + "  ready: false\n"
        + f"  started: {started}\n"
        + f"  restartCount: {restart_count}\n"
        + "  state:\n"
        + state
        + f"{{{{ with $origin.{last_from} }}}}{{{{ with .terminated }}}}\n"
        + "  lastState:\n"
        + "    terminated:\n"
        + "      exitCode: {{ .exitCode }}\n"
        + "      reason: {{ .reason | Quote }}\n"
        + "      startedAt: {{ .startedAt | Quote }}\n"
        + "      finishedAt: {{ .finishedAt | Quote }}\n"
        + "{{ end }}{{ end }}\n"
        + "{{ end }}\n"
    )


_POD_CRASH = _crash_loop_patch(
    "false",
    "{{ $origin.restartCount }}",
    "    terminated:\n"
    "      exitCode: 1\n"
    "      reason: Error\n"
    '      message: "chaos: the container exited"\n'
    "      startedAt: {{ $now | Quote }}\n"
    "      finishedAt: {{ $now | Quote }}\n",
    last_from="lastState",
)
_POD_BACK_OFF = _crash_loop_patch(
    "false",
    "{{ add1 $origin.restartCount }}",
    "    waiting:\n"
    "      reason: CrashLoopBackOff\n"
    '      message: {{ printf "back-off restarting failed container %s" $item.name | Quote }}\n',
    last_from="state",
)
_POD_RESTART = _crash_loop_patch(
    "true", "{{ $origin.restartCount }}", "    running:\n      startedAt: {{ $now | Quote }}\n", last_from="lastState"
)

_POD_COMPLETE = """\
{{ $now := Now }}
{{ $started := or .status.startTime $now }}
phase: Succeeded
conditions:
- type: ContainersReady
  status: "False"
  reason: PodCompleted
  lastTransitionTime: {{ $now | Quote }}
- type: Ready
  status: "False"
  reason: PodCompleted
  lastTransitionTime: {{ $now | Quote }}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: ""
  ready: false
  started: false
  restartCount: 0
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $started | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
"""


def _expr(key: str, operator: str, *values: str) -> Manifest:
    requirement: Manifest = {"key": key, "operator": operator}
    if values:
        requirement["values"] = list(values)
    return requirement


def _status_patch(template: str) -> Manifest:
    return {"patch": {"subresource": "status", "root": "status", "template": template}}


def _stage(name: str, kind: str, selector: list[Manifest], steps: list[Manifest], **extra: Any) -> Manifest:
    spec: Manifest = {
        "resourceRef": {"apiGroup": "v1", "kind": kind},
        "selector": {"matchExpressions": selector},
        **extra,
        "steps": steps,
    }
    return {
        "apiVersion": f"{STAGE_GROUP}/{STAGE_VERSION}",
        "kind": "Stage",
        "metadata": {"name": name, "labels": {labels.MANAGED_BY: "vigil"}},
        "spec": spec,
    }


_NOT_DELETING = _expr(".metadata.deletionTimestamp", "DoesNotExist")
CHAOS_LABEL = "vigil.dev/chaos"
CRASH_LOOP = "crashloop"
_CHAOS_WEIGHT = 10_000  # beats the normal life cycle's Stages (weight 0) whenever both match
_READY = '.status.conditions.[] | select( .type == "Ready" ) | .status'


def stage_manifests(ready_delay_ms: int) -> list[Manifest]:
    """The Stages of the sandbox's fake kubelets: node start and heartbeat, and the pod life cycle."""
    if ready_delay_ms < 0:
        raise ValueError("the ready delay cannot be negative")
    return [
        _stage(
            "vigil-node-initialize",
            "Node",
            [_expr(_READY, "NotIn", "True")],
            [_status_patch(_NODE_INITIALIZE)],
        ),
        # The only heartbeat (kwok runs without node Leases): well inside the controller manager's
        # node-monitor grace period (3m20s with kwokctl's heartbeat factor).
        _stage(
            "vigil-node-heartbeat",
            "Node",
            [_expr(".status.phase", "In", "Running"), _expr(_READY, "In", "True")],
            [_status_patch(_NODE_HEARTBEAT)],
            delay={"durationMilliseconds": 60_000, "jitterDurationMilliseconds": 70_000},
        ),
        _stage(
            "vigil-pod-start",
            "Pod",
            [_NOT_DELETING, _expr(".status.podIP", "DoesNotExist")],
            [
                _status_patch(_POD_START),
                {"event": {"type": "Normal", "reason": "Started", "message": "Started container (kwok)"}},
            ],
        ),
        _stage(
            "vigil-pod-ready",
            "Pod",
            [
                _NOT_DELETING,
                _expr(".status.phase", "In", "Running"),
                _expr(".status.podIP", "Exists"),
                _expr(_READY, "NotIn", "True"),
                _expr(".metadata.ownerReferences.[].kind", "NotIn", "Job"),
            ],
            [_status_patch(_POD_READY)],
            delay={
                "durationMilliseconds": ready_delay_ms,
                "durationFrom": {"jq": {"expression": f'.metadata.annotations["{READY_DELAY_ANNOTATION}"]'}},
            },
        ),
        # Job pods (helm tests, one-off tasks) run to completion straight away.
        _stage(
            "vigil-pod-complete",
            "Pod",
            [
                _NOT_DELETING,
                _expr(".status.phase", "In", "Running"),
                _expr(".status.podIP", "Exists"),
                _expr(".metadata.ownerReferences.[].kind", "In", "Job"),
            ],
            [_status_patch(_POD_COMPLETE)],
        ),
        *_crash_loop_stages(),
        # What the kubelet does once the containers are gone: remove the object for good.
        # Pods holding finalizers wait for them, as they would on a real node.
        _stage(
            "vigil-pod-delete",
            "Pod",
            [_expr(".metadata.deletionTimestamp", "Exists"), _expr(".metadata.finalizers", "DoesNotExist")],
            [{"delete": True}],
        ),
    ]


def _crash_loop_stages() -> list[Manifest]:
    """The chaos crash loop of pods labelled ``vigil.dev/chaos=crashloop`` (see the module docstring)."""
    chosen = [_NOT_DELETING, _expr(f'.metadata.labels["{CHAOS_LABEL}"]', "In", CRASH_LOOP)]
    state = ".status.containerStatuses.[].state"
    return [
        _stage(
            "vigil-chaos-crash",
            "Pod",
            [
                *chosen,
                _expr(".status.phase", "In", "Running"),
                _expr(".status.podIP", "Exists"),
                _expr(f"{state}.running", "Exists"),
            ],
            [_status_patch(_POD_CRASH)],
            weight=_CHAOS_WEIGHT,
            delay={"durationMilliseconds": 3000},
        ),
        _stage(
            "vigil-chaos-back-off",
            "Pod",
            [*chosen, _expr(f"{state}.terminated", "Exists")],
            [
                _status_patch(_POD_BACK_OFF),
                {
                    "event": {
                        "type": "Warning",
                        "reason": "BackOff",
                        "message": "Back-off restarting failed container (kwok chaos)",
                    }
                },
            ],
            weight=_CHAOS_WEIGHT,
            delay={"durationMilliseconds": 1000},
        ),
        _stage(
            "vigil-chaos-restart",
            "Pod",
            [*chosen, _expr(f"{state}.waiting.reason", "In", "CrashLoopBackOff")],
            [_status_patch(_POD_RESTART)],
            weight=_CHAOS_WEIGHT,
            delay={"durationMilliseconds": 4000},
        ),
    ]


# -- kwokctl ----------------------------------------------------------------------------------

BINARY_OPTIONS = {
    "kube-apiserver": "kubeApiserverBinary",
    "kube-controller-manager": "kubeControllerManagerBinary",
    "kube-scheduler": "kubeSchedulerBinary",
    "kubectl": "kubectlBinary",
    "etcd": "etcdBinary",
    "kwok": "kwokControllerBinary",
}


def _added(**args: str | int) -> list[Manifest]:
    # kwokctl's "override" only replaces a flag it already passes; new flags are appended.
    return [{"key": key.replace("_", "-"), "value": str(value), "override": False} for key, value in args.items()]


def kwokctl_config(binaries: Mapping[str, pathlib.Path], service_cidr: str = DEFAULT_SERVICE_CIDR) -> list[Manifest]:
    """kwokctl's configuration documents: binary runtime, our binaries, loopback only, Stages as CRs,
    a Service range of ``service_cidr``, controllers not throttled below what a fleet needs."""
    missing = sorted(set(BINARY_OPTIONS) - set(binaries))
    if missing:
        raise ValueError(f"missing sandbox binaries: {', '.join(missing)}")
    throttle = {"kube_api_qps": CONTROL_PLANE_QPS, "kube_api_burst": CONTROL_PLANE_BURST}
    options: Manifest = {
        "runtime": "binary",
        # kwokctl binds every component to 0.0.0.0 unless told otherwise.
        "bindAddress": "127.0.0.1",
        "enableCRDs": ["Stage"],
        "components": ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller"],
    }
    options.update({option: str(binaries[name]) for name, option in BINARY_OPTIONS.items()})
    return [
        {
            "apiVersion": _CONFIG_API,
            "kind": "KwokctlConfiguration",
            "options": options,
            # With node Leases, a restarted kwok finds its old Leases, fails to create them and
            # leaves the nodes unmanaged until the next renewal (50 s with kwokctl's defaults); pods
            # scheduled meanwhile may never start. One kwok manages every node, so no Leases: the
            # node lifecycle controller judges the nodes by the heartbeat Stage instead.
            "componentsPatches": [
                {
                    "name": "kwok-controller",
                    "extraArgs": [
                        {"key": "node-lease-duration-seconds", "value": "0", "override": True},
                        # The binary runtime passes an empty --node-ip, which beats the config
                        # file: nodes get an empty InternalIP and pods an invalid hostIP.
                        {"key": "node-ip", "value": FALLBACK_NODE_IP, "override": True},
                    ],
                },
                {"name": "kube-apiserver", "extraArgs": _added(service_cluster_ip_range=service_cidr)},
                {
                    "name": "kube-controller-manager",
                    "extraArgs": _added(
                        **throttle, **dict.fromkeys(CONTROLLER_SYNCS, CONTROLLER_WORKERS), controllers=CONTROLLERS
                    ),
                },
                {"name": "kube-scheduler", "extraArgs": _added(**throttle)},
            ],
        },
        # kwokctl writes this document back without kwok's defaults, so every option that must
        # not be zero is spelled out.
        {
            "apiVersion": _CONFIG_API,
            "kind": "KwokConfiguration",
            "options": {
                "cidr": POD_CIDR,
                "nodeIP": FALLBACK_NODE_IP,
                "podPlayStageParallelism": POD_PLAY_PARALLELISM,
                "nodePlayStageParallelism": 4,
                "nodeLeaseParallelism": 4,
                "podsOnNodeSyncParallelism": 1,
                "enablePodsOnNodeSyncListPager": True,
                "enableDebuggingHandlers": True,
            },
        },
    ]


class KwokctlError(RuntimeError):
    """A kwokctl command failed; the message carries its output and where the logs are."""


@dataclasses.dataclass(frozen=True)
class Kwokctl:
    """Runs kwokctl for one named cluster whose files all live under ``workdir``."""

    binary: pathlib.Path
    name: str
    workdir: pathlib.Path

    @property
    def cluster_dir(self) -> pathlib.Path:
        return self.workdir / "clusters" / self.name

    def exists(self) -> bool:
        return (self.cluster_dir / "kwok.yaml").is_file()

    def _run(self, args: list[str], log: pathlib.Path, timeout: float) -> None:
        env = {**os.environ, "KWOK_WORKDIR": str(self.workdir)}
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as sink:
            sink.write(f"$ kwokctl {' '.join(args)}\n")
            sink.flush()
            try:
                proc = subprocess.run(
                    [str(self.binary), "--name", self.name, *args],
                    env=env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as error:
                raise KwokctlError(f"kwokctl {args[0]} {args[1]} timed out after {timeout:.0f}s; log: {log}") from error
        if proc.returncode != 0:
            tail = log.read_text()[-3000:]
            raise KwokctlError(
                f"kwokctl {args[0]} {args[1]} failed (exit {proc.returncode}); log: {log}, "
                f"component logs: {self.cluster_dir / 'logs'}\n{tail}"
            )

    def create(self, config: pathlib.Path, kubeconfig: pathlib.Path, log: pathlib.Path, wait: float = 120.0) -> None:
        self._run(
            [
                "create",
                "cluster",
                "--config",
                str(config),
                "--kubeconfig",
                str(kubeconfig),
                "--wait",
                f"{wait:.0f}s",
            ],
            log,
            wait + 60,
        )

    def start(self, log: pathlib.Path, wait: float = 120.0) -> None:
        self._run(["start", "cluster", "--wait", f"{wait:.0f}s"], log, wait + 60)

    def stop(self, log: pathlib.Path) -> None:
        self._run(["stop", "cluster"], log, 120)

    def delete(self, kubeconfig: pathlib.Path, log: pathlib.Path) -> None:
        self._run(["delete", "cluster", "--kubeconfig", str(kubeconfig)], log, 120)

    def component_pids(self) -> dict[str, int]:
        """The pids kwokctl recorded for its components (whether or not they still run)."""
        pids: dict[str, int] = {}
        for path in sorted((self.cluster_dir / "pids").glob("*.pid")):
            text = path.read_text().strip()
            if text.isdigit():
                pids[path.stem] = int(text)
        return pids

    def ports(self) -> dict[str, int]:
        """The loopback ports kwokctl chose for the components when it created the cluster.

        They are fixed at creation (kwokctl reads its configuration only then), so after a reboot
        another cluster created first may hold them; ``{}`` when the cluster does not exist.
        """
        if not self.exists():
            return {}
        found: dict[str, int] = {}
        for document in yaml.safe_load_all((self.cluster_dir / "kwok.yaml").read_text()):
            if isinstance(document, dict) and document.get("kind") == "KwokctlConfiguration":
                for key, value in (document.get("options") or {}).items():
                    if key.endswith("Port") and isinstance(value, int) and not isinstance(value, bool) and value > 0:
                        found[key] = value
        return found

    def forget_pid(self, component: str) -> None:
        """Drop a component's pid file: ``start`` then starts it (kwokctl skips any with a live pid)."""
        (self.cluster_dir / "pids" / f"{component}.pid").unlink(missing_ok=True)

    def kill_components(self) -> None:
        """Last resort after ``delete``: stop what kwokctl recorded, should any process linger."""
        for pid in self.component_pids().values():
            try:
                if str(self.workdir) in pathlib.Path(f"/proc/{pid}/cmdline").read_text():
                    os.kill(pid, signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
