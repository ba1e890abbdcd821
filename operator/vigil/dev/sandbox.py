"""The local sandbox as a Python API, shared by ``vigil dev`` and the end-to-end tests.

One :class:`Sandbox` is a real control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler; kwokctl's binary runtime over the binaries :mod:`vigil.dev.build` compiles),
kwok playing the kubelets of fake GPU nodes, upstream Prometheus discovering pods from that API
server with the chart's own Triton PodMonitor (see :mod:`vigil.dev.prometheus`), and the Triton simulator (``vigil sim serve``) answering for the pods. All of it listens
on 127.0.0.1 and keeps its files under one state directory.

The Gateway API CRDs (standard channel) are installed too, so HTTPRoutes can be written as in a
production cluster, and so are prometheus-operator's PodMonitor, ServiceMonitor and PrometheusRule
CRDs, so the chart's monitoring objects pass server-side validation (no prometheus-operator runs:
the sandbox's Prometheus is configured from the chart's PodMonitor directly). No gateway controller runs (there is no container runtime): the simulator
plays the data plane by reading each deployment's HTTPRoute and splitting requests by its weights.

:meth:`Sandbox.up` is idempotent and repairing: every step first looks at what runs and only
creates, restarts or re-applies what is missing, so tests call it at session start and a warm
machine is ready in seconds. Objects are written with server-side apply (field manager
``vigil``), which makes re-running ``up`` an absolute statement of the sandbox's shape.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
import importlib.resources
import ipaddress
import json
import os
import pathlib
import shutil
import signal
import sys
import time
import typing
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client import exceptions

from vigil import labels
from vigil.dev import build, chart, durations, kwok, procs, prometheus, versions

Progress = Callable[[str], None]
APPLY = "application/apply-patch+yaml"
REQUEST_TIMEOUT = 10
DEFAULT_NAME = "vigil"
# A second sandbox on the same machine (its own $VIGIL_STATE) needs its own ports; the environment
# names them so that the tests, the demo and the benchmarks all find that sandbox without options.
DEFAULT_PROMETHEUS_PORT = int(os.environ.get("VIGIL_PROMETHEUS_PORT", "9090"))
DEFAULT_SIM_PORT = int(os.environ.get("VIGIL_SIM_PORT", "9400"))
# Leader leases are renewed every 2 s and last 15 s; one older than this has no live holder.
LEADER_FRESH_SECONDS = 10.0
# kopf's peering CRDs, applied by sandboxes from before the Lease election replaced kopf peering.
RETIRED_CRDS = ("kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev")
CONTROLLERS = ("kube-controller-manager", "kube-scheduler")
KWOK_COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller")


def _quiet(_message: str) -> None:
    return None


# Defaults sized for a fleet of 2,000 one-replica ModelDeployments beside the GPU tests: 24 nodes
# of 110 pods (Kubernetes' default per node) and a Service range of a million addresses.
DEFAULT_CPU_NODES = 20
DEFAULT_PODS_PER_NODE = 110


def service_capacity(cidr: str) -> int:
    """ClusterIPs in an IPv4 Service range (``ValueError`` for anything else)."""
    network = ipaddress.ip_network(cidr, strict=True)
    if network.version != 4:
        raise ValueError(f"the Service range {cidr} is not IPv4")
    return max(0, network.num_addresses - 3)


def check_service_cidr(cidr: str) -> None:
    """Refuse, before anything starts, a range the API server would refuse (larger than /12) or an
    unusable one; the message names the option."""
    try:
        network = ipaddress.ip_network(cidr, strict=True)
    except ValueError as error:
        raise SandboxError(f"--service-cidr {cidr!r}: {error}") from error
    if network.version != 4 or not 12 <= network.prefixlen <= 28:
        raise SandboxError(f"--service-cidr {cidr!r} must be an IPv4 range from /12 to /28")
    taken = [ipaddress.ip_network(kwok.POD_CIDR, strict=False), ipaddress.ip_network(f"{kwok.NODE_NETWORK}.0.0/15")]
    clash = [str(other) for other in taken if network.overlaps(other)]
    if clash:
        raise SandboxError(f"--service-cidr {cidr} overlaps the sandbox's pod or node network {', '.join(clash)}")


class ControlPlane(enum.Enum):
    """What :meth:`Sandbox.up` found the control plane to need."""

    KEPT = "kept"  # everything ran and answered
    RESTARTED = "restarted"  # components started again in place (same ports, same data)
    CREATED = "created"  # a new cluster (new ports): clients of the old one must reconnect


class SandboxError(RuntimeError):
    """The sandbox could not be brought to the requested state; the message says what is missing."""


@dataclasses.dataclass(frozen=True)
class SandboxInfo:
    """Where a running sandbox answers, and the shape it was brought up with."""

    name: str
    state_dir: pathlib.Path
    kubeconfig: pathlib.Path
    apiserver_url: str
    prometheus_url: str
    simulator_url: str
    nodes: int
    gpus_per_node: int
    gpu_product: str
    ready_delay: str
    scrape_interval: str
    prometheus_port: int
    sim_port: int
    # Defaults for the sandbox.json of a sandbox brought up before these options existed.
    cpu_nodes: int = 0
    pods_per_node: int = 110
    service_cidr: str = "10.0.0.0/24"

    @property
    def pod_capacity(self) -> int:
        """Pods the nodes admit in all (kwok nodes have no other limit that binds first)."""
        return (self.nodes + self.cpu_nodes) * self.pods_per_node

    @property
    def service_capacity(self) -> int:
        """ClusterIPs the API server can hand out (the range less its network, broadcast and
        the ``kubernetes`` Service's address)."""
        return service_capacity(self.service_cidr)

    @property
    def inference_url(self) -> str:
        """``vigil run --inference-url`` here: the simulator serves each pod's Triton under a path of its own."""
        return self.simulator_url.removeprefix("http://") + "/sim/{namespace}/{pod}"

    def env(self) -> dict[str, str]:
        """Environment variables that point ``kubectl``, ``vigil run`` and the tests at this sandbox."""
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "VIGIL_PROMETHEUS_URL": self.prometheus_url,
            "VIGIL_SIM_URL": self.simulator_url,
            "VIGIL_INFERENCE_URL": self.inference_url,
        }

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["state_dir"] = str(self.state_dir)
        data["kubeconfig"] = str(self.kubeconfig)
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SandboxInfo:
        data = json.loads(text)
        data["state_dir"] = pathlib.Path(data["state_dir"])
        data["kubeconfig"] = pathlib.Path(data["kubeconfig"])
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class Restart:
    """What :meth:`Sandbox.restart_component` measured, in seconds from its SIGTERM."""

    component: str
    stopped: float  # the process was gone
    down: float  # it was started again
    settled: float  # the API server answered and both controllers led again
    repaired: tuple[str, ...]  # every component started again (the restarted one and any that died meanwhile)


@dataclasses.dataclass(frozen=True)
class ComponentStatus:
    name: str
    ok: bool
    detail: str


@dataclasses.dataclass(frozen=True)
class SandboxStatus:
    info: SandboxInfo | None
    components: tuple[ComponentStatus, ...]

    @property
    def ok(self) -> bool:
        return self.info is not None and all(component.ok for component in self.components)


def default_crds_dir() -> pathlib.Path | None:
    """The repository's generated CRDs (``crds/``) when running from a source checkout, else ``./crds``."""
    checkout = pathlib.Path(__file__).resolve().parents[3]
    for candidate in (checkout / "crds", pathlib.Path.cwd() / "crds"):
        if (candidate.parent / "pyproject.toml").is_file() and candidate.is_dir():
            return candidate
    return None


def _package_yaml(name: str) -> list[dict[str, Any]]:
    text = importlib.resources.files("vigil.dev").joinpath(name).read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _http_status(url: str, method: str = "GET", timeout: float = 2.0) -> int | None:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, OSError):
        return None


def _http_json(url: str, timeout: float = 3.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _leads(api: client.ApiClient, component: str, since: float) -> bool:
    """Whether ``component`` renewed its leader lease at or after ``since`` (wall clock).

    A restarted controller waits for its predecessor's lease to expire; until it renews the lease
    itself, nothing creates or binds pods.
    """
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(
            component, "kube-system", _request_timeout=REQUEST_TIMEOUT
        )
    except (exceptions.ApiException, urllib3.exceptions.HTTPError, OSError):
        return False
    renew = lease.spec.renew_time if lease.spec else None
    if not (lease.spec and lease.spec.holder_identity and renew):
        return False
    return bool(renew.timestamp() >= since)


def _write_if_changed(path: pathlib.Path, text: str) -> bool:
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True


@dataclasses.dataclass
class Sandbox:
    """One named local sandbox whose files all live under ``state_dir``."""

    name: str = DEFAULT_NAME
    state_dir: pathlib.Path = dataclasses.field(default_factory=versions.state_root)
    crds_dir: pathlib.Path | None = dataclasses.field(default_factory=default_crds_dir)

    # -- paths ------------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> pathlib.Path:
        return self.state_dir / "kubeconfig"

    @property
    def info_file(self) -> pathlib.Path:
        return self.state_dir / "sandbox.json"

    @property
    def kwok_workdir(self) -> pathlib.Path:
        return self.state_dir / "kwok"

    @property
    def prometheus_dir(self) -> pathlib.Path:
        return self.state_dir / "prometheus"

    @property
    def prometheus_process(self) -> procs.Background:
        return procs.Background("prometheus", self.state_dir)

    @property
    def simulator_process(self) -> procs.Background:
        return procs.Background("simulator", self.state_dir)

    def info(self) -> SandboxInfo | None:
        """What the last ``up`` recorded, or None if this sandbox was never brought up."""
        try:
            return SandboxInfo.from_json(self.info_file.read_text())
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def _require_info(self) -> SandboxInfo:
        found = self.info()
        if found is None:
            raise SandboxError(f"no sandbox {self.name!r} under {self.state_dir}; run `vigil dev up` first")
        return found

    def _kwokctl(self) -> kwok.Kwokctl | None:
        builder = build.Builder(progress=_quiet)
        binary = builder.bin_dir(build.KWOK) / "kwokctl"
        return kwok.Kwokctl(binary, self.name, self.kwok_workdir) if binary.is_file() else None

    def api_client(self) -> client.ApiClient:
        """A ``kubernetes`` ApiClient for this sandbox's API server."""
        if not self.kubeconfig.is_file():
            raise SandboxError(f"no kubeconfig at {self.kubeconfig}; run `vigil dev up` first")
        return typing.cast(client.ApiClient, config.new_client_from_config(config_file=str(self.kubeconfig)))  # type: ignore[no-untyped-call]

    # -- up -------------------------------------------------------------------------------------

    def up(
        self,
        *,
        nodes: int = 4,
        gpus_per_node: int = 8,
        gpu_product: str = "NVIDIA-A100-SXM4-80GB",
        ready_delay: str = "2s",
        scrape_interval: str = "5s",
        prometheus_port: int = DEFAULT_PROMETHEUS_PORT,
        sim_port: int = DEFAULT_SIM_PORT,
        cpu_nodes: int = DEFAULT_CPU_NODES,
        pods_per_node: int = DEFAULT_PODS_PER_NODE,
        service_cidr: str = kwok.DEFAULT_SERVICE_CIDR,
        progress: Progress = _quiet,
    ) -> SandboxInfo:
        """Bring the sandbox up, reusing whatever already runs and repairing what does not.

        ``nodes`` GPU nodes (tainted, ``gpus_per_node`` each) and ``cpu_nodes`` CPU-only nodes
        (untainted), each admitting ``pods_per_node`` pods; Services get ClusterIPs from
        ``service_cidr``. Changing the range recreates the control plane (its objects are lost).
        """
        if nodes < 1 or gpus_per_node < 0 or cpu_nodes < 0:
            raise SandboxError("need at least one GPU node, and non-negative GPU and CPU node counts")
        if not 1 <= pods_per_node <= 10_000:
            raise SandboxError(f"--pods-per-node must be 1 to 10000, got {pods_per_node}")
        check_service_cidr(service_cidr)
        try:
            ready_delay_ms = durations.to_millis(ready_delay)
            scrape = durations.prometheus(durations.to_millis(scrape_interval))
        except ValueError as error:
            raise SandboxError(str(error)) from error
        self.state_dir.mkdir(parents=True, exist_ok=True)

        try:
            progress("checking the sandbox binaries (built once from Go modules)")
            binaries = build.ensure_binaries(progress=progress)
        except build.BuildError as error:
            raise SandboxError(str(error)) from error

        started = time.time()
        plane = self._ensure_control_plane(binaries, service_cidr, progress)
        if plane is ControlPlane.CREATED:
            # They hold clients for the previous API server (its port changes on re-creation).
            self.stop_simulator()
            self.stop_prometheus()
        with contextlib.closing(self.api_client()) as api:
            self._apply_crds(api, progress)
            progress(f"applying kwok stages (pods become Ready {ready_delay} after they start)")
            self._apply_stages(api, ready_delay_ms)
            pools = (
                (kwok.NodeShape(gpus=gpus_per_node, gpu_product=gpu_product, pods=pods_per_node), nodes),
                (kwok.cpu_node_shape(pods_per_node), cpu_nodes),
            )
            progress(
                f"applying {nodes} fake GPU nodes x {gpus_per_node} {labels.GPU_RESOURCE} ({gpu_product}) and "
                f"{cpu_nodes} CPU nodes, {pods_per_node} pods each"
            )
            self._apply_nodes(api, pools)
            progress("waiting for nodes Ready and the controllers to run")
            self._wait_nodes(api, pools)
            # kwok's node-start Stage fills in addresses (its fallback IP) when it sees a node before
            # our status does; once a node is Ready that Stage is done, and ours stays.
            self._apply_node_status(api, pools)
            # A kept control plane renews its leases every 2 s; a restarted one only counts once
            # its new processes have taken the leases over.
            kept = plane is ControlPlane.KEPT
            self._wait_controllers(api, time.time() - LEADER_FRESH_SECONDS if kept else started)
            apiserver_url = str(api.configuration.host)

        info = SandboxInfo(
            name=self.name,
            state_dir=self.state_dir,
            kubeconfig=self.kubeconfig,
            apiserver_url=apiserver_url,
            prometheus_url=f"http://127.0.0.1:{prometheus_port}",
            simulator_url=f"http://127.0.0.1:{sim_port}",
            nodes=nodes,
            gpus_per_node=gpus_per_node,
            gpu_product=gpu_product,
            ready_delay=ready_delay,
            scrape_interval=scrape,
            prometheus_port=prometheus_port,
            sim_port=sim_port,
            cpu_nodes=cpu_nodes,
            pods_per_node=pods_per_node,
            service_cidr=service_cidr,
        )
        self.info_file.write_text(info.to_json())
        self.start_simulator(progress)
        self.start_prometheus(progress)
        return info

    def _ensure_control_plane(
        self, binaries: dict[str, pathlib.Path], service_cidr: str, progress: Progress
    ) -> ControlPlane:
        """Create the kwokctl cluster, start the components that died, or keep it as it runs."""
        kwokctl = kwok.Kwokctl(binaries["kwokctl"], self.name, self.kwok_workdir)
        log = self.state_dir / "logs" / "kwokctl.log"
        config_path = self.state_dir / "kwokctl.yaml"
        config_text = yaml.safe_dump_all(kwok.kwokctl_config(binaries, service_cidr), sort_keys=False)
        config_changed = _write_if_changed(config_path, config_text)
        created = True
        try:
            if kwokctl.exists() and config_changed:
                # Other binaries or kwok options: kwokctl only reads its config when creating.
                progress("control plane configuration changed; recreating it")
                kwokctl.delete(self.kubeconfig, log)
                kwokctl.kill_components()
                kwokctl.create(config_path, self.kubeconfig, log)
            elif kwokctl.exists() and (taken := self._ports_taken(kwokctl)):
                # Nothing of ours runs, yet its ports answer: another cluster (one created first
                # after a reboot) holds them, and ours could never start again on them.
                progress(f"the control plane's ports are taken by another process ({taken}); recreating it")
                kwokctl.delete(self.kubeconfig, log)
                kwokctl.kill_components()
                kwokctl.create(config_path, self.kubeconfig, log)
            elif kwokctl.exists():
                dead = self._dead_components(kwokctl)
                if not dead and self._apiserver_answers():
                    progress("control plane already running")
                    return ControlPlane.KEPT
                created = False
                try:
                    if dead:
                        # Only what died: the rest keeps running (and its clients connected).
                        self.start_stopped_components(progress)
                    else:
                        progress("restarting the control plane (API server not answering)")
                        kwokctl.stop(log)
                        kwokctl.start(log)
                except kwok.KwokctlError:
                    progress("restart failed; recreating the control plane")
                    created = True
                    kwokctl.delete(self.kubeconfig, log)
                    kwokctl.kill_components()
                    kwokctl.create(config_path, self.kubeconfig, log)
            else:
                progress("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok (kwokctl)")
                kwokctl.create(config_path, self.kubeconfig, log)
        except kwok.KwokctlError as error:
            raise SandboxError(str(error)) from error
        # kwokctl writes the same admin kubeconfig for its components; restore ours from it if lost.
        if not self.kubeconfig.is_file():
            shutil.copyfile(kwokctl.cluster_dir / "kubeconfig.yaml", self.kubeconfig)
        progress("waiting for the API server")
        self._wait(self._apiserver_answers, 120, "the API server to answer")
        return ControlPlane.CREATED if created else ControlPlane.RESTARTED

    def _ports_taken(self, kwokctl: kwok.Kwokctl) -> str:
        """The cluster's ports something else listens on (``"etcdPort 32765, ..."``), when none of its
        components runs; ``""`` otherwise (a running component holds its own ports)."""
        if len(self._dead_components(kwokctl)) < len(KWOK_COMPONENTS):
            return ""
        return ", ".join(f"{name} {port}" for name, port in sorted(kwokctl.ports().items()) if procs.port_open(port))

    def _dead_components(self, kwokctl: kwok.Kwokctl) -> list[str]:
        return [name for name in KWOK_COMPONENTS if not self._component_alive(kwokctl, name)]

    @staticmethod
    def _start_dead(kwokctl: kwok.Kwokctl, dead: Iterable[str], log: pathlib.Path) -> None:
        """``kwokctl start cluster`` starts exactly the components without a live pid; a dead one's
        pid file goes first, so neither a zombie nor a reused pid passes for it.

        Without kwokctl's own wait: it waits for every component to run, and a controller that exits
        while it waits (its lease lost during an API server outage) keeps it waiting its whole
        timeout (120 s measured). The caller's loop waits instead, starting whatever died meanwhile."""
        for name in dead:
            kwokctl.forget_pid(name)
        kwokctl.start(log, wait=0)

    def _component_alive(self, kwokctl: kwok.Kwokctl, component: str) -> bool:
        pid = kwokctl.component_pids().get(component)
        if pid is None:
            return False
        try:
            argv0 = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
            state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False
        return state not in ("Z", "X") and argv0.startswith(str(kwokctl.cluster_dir))

    def _apiserver_answers(self) -> bool:
        if not self.kubeconfig.is_file():
            return False
        try:
            api = self.api_client()
        except (SandboxError, config.ConfigException):
            return False
        # Fail fast: the client's default retries turn a stopped API server into a long hang.
        api.configuration.retries = 0
        with contextlib.closing(api):
            try:
                # The bootstrap controller creates "default" once the API server is past its start hooks.
                client.CoreV1Api(api).read_namespace("default", _request_timeout=3)
            except (exceptions.ApiException, urllib3.exceptions.HTTPError, OSError):
                return False
            return True

    @staticmethod
    def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            procs.wait_for(predicate, timeout, what, interval=0.5)
        except procs.Timeout as error:
            raise SandboxError(str(error)) from error

    # -- objects --------------------------------------------------------------------------------

    def _crd_documents(self, extra_files: Iterable[pathlib.Path] = ()) -> list[dict[str, Any]]:
        docs = _package_yaml("kwok-stage-crd.yaml")
        files = list(extra_files)
        if self.crds_dir is not None and self.crds_dir.is_dir():
            files += sorted(self.crds_dir.glob("*.yaml"))
        for path in files:
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        return [doc for doc in docs if doc.get("kind") == "CustomResourceDefinition"]

    def _apply_crds(self, api: client.ApiClient, progress: Progress) -> None:
        extensions = client.ApiextensionsV1Api(api)
        try:
            module_files = build.gateway_api_crds(progress=progress) + build.prometheus_operator_crds(progress)
        except build.BuildError as error:
            raise SandboxError(str(error)) from error
        docs = self._crd_documents(module_files)
        progress(
            f"applying {len(docs)} CRDs (kwok Stage, Gateway API {versions.GATEWAY_API} "
            f"{build.GATEWAY_API_CHANNEL}, prometheus-operator {versions.PROMETHEUS_OPERATOR} monitoring, "
            f"vigil from {self.crds_dir or 'nowhere'})"
        )
        for doc in docs:
            extensions.patch_custom_resource_definition(
                doc["metadata"]["name"],
                doc,
                field_manager=labels.FIELD_MANAGER,
                force=True,
                _content_type=APPLY,
                _request_timeout=REQUEST_TIMEOUT,
            )

        self._delete_retired_crds(extensions)

        def established() -> bool:
            for doc in docs:
                found = extensions.read_custom_resource_definition(doc["metadata"]["name"])
                conditions = found.status.conditions if found.status else None
                if not any(c.type == "Established" and c.status == "True" for c in conditions or []):
                    return False
            return True

        self._wait(established, 60, "the CRDs to be established")

    @staticmethod
    def _delete_retired_crds(extensions: client.ApiextensionsV1Api) -> None:
        """Remove the CRDs an older sandbox applied and nothing uses any more (only ours: applied by vigil)."""
        for name in RETIRED_CRDS:
            try:
                found = extensions.read_custom_resource_definition(name, _request_timeout=REQUEST_TIMEOUT)
            except exceptions.ApiException as error:
                if error.status == 404:
                    continue
                raise
            fields = found.metadata.managed_fields if found.metadata else None
            managers = {entry.manager for entry in fields or []}
            if managers == {labels.FIELD_MANAGER}:
                extensions.delete_custom_resource_definition(name, _request_timeout=REQUEST_TIMEOUT)

    def _apply_stages(self, api: client.ApiClient, ready_delay_ms: int) -> None:
        custom = client.CustomObjectsApi(api)
        wanted = kwok.stage_manifests(ready_delay_ms)
        for stage in wanted:
            custom.patch_cluster_custom_object(
                kwok.STAGE_GROUP,
                kwok.STAGE_VERSION,
                kwok.STAGE_PLURAL,
                stage["metadata"]["name"],
                stage,
                field_manager=labels.FIELD_MANAGER,
                force=True,
                _content_type=APPLY,
                _request_timeout=REQUEST_TIMEOUT,
            )

    def _apply_nodes(self, api: client.ApiClient, pools: Iterable[tuple[kwok.NodeShape, int]]) -> None:
        core = client.CoreV1Api(api)
        wanted: set[str] = set()
        options: dict[str, Any] = {
            "field_manager": labels.FIELD_MANAGER,
            "force": True,
            "_content_type": APPLY,
            "_request_timeout": REQUEST_TIMEOUT,
        }
        for shape, count in pools:
            for index in range(count):
                manifest = kwok.node_manifest(index, shape, self.name)
                name = manifest["metadata"]["name"]
                wanted.add(name)
                core.patch_node(name, manifest, **options)
        self._apply_node_status(api, pools)
        # Fewer nodes than last time: remove ours beyond the count (the pod GC cleans their pods).
        listed = core.list_node(label_selector=f"{kwok.SANDBOX_LABEL}={self.name}", _request_timeout=REQUEST_TIMEOUT)
        for node in listed.items:
            name = node.metadata.name if node.metadata else None
            if name and name not in wanted:
                core.delete_node(name, _request_timeout=REQUEST_TIMEOUT)

    def _apply_node_status(self, api: client.ApiClient, pools: Iterable[tuple[kwok.NodeShape, int]]) -> None:
        core = client.CoreV1Api(api)
        for shape, count in pools:
            for index in range(count):
                core.patch_node_status(
                    kwok.node_name(index, shape.prefix),
                    kwok.node_status(index, shape),
                    field_manager=labels.FIELD_MANAGER,
                    force=True,
                    _content_type=APPLY,
                    _request_timeout=REQUEST_TIMEOUT,
                )

    def _ready_nodes(self, api: client.ApiClient) -> list[tuple[str, bool, str]]:
        core = client.CoreV1Api(api)
        listed = core.list_node(label_selector=f"{kwok.SANDBOX_LABEL}={self.name}", _request_timeout=REQUEST_TIMEOUT)
        found = []
        for node in listed.items:
            conditions = node.status.conditions or [] if node.status else []
            ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
            allocatable = (node.status.allocatable or {}) if node.status else {}
            found.append(
                (
                    str(node.metadata.name if node.metadata else ""),
                    ready,
                    str(allocatable.get(labels.GPU_RESOURCE, "0")),
                )
            )
        return found

    def _wait_nodes(self, api: client.ApiClient, pools: Iterable[tuple[kwok.NodeShape, int]]) -> None:
        want = {kwok.node_name(i, shape.prefix): str(shape.gpus) for shape, count in pools for i in range(count)}

        def ready() -> bool:
            nodes = self._ready_nodes(api)
            return len(nodes) == len(want) and all(ok and want.get(name) == gpu for name, ok, gpu in nodes)

        self._wait(ready, 90, f"{len(want)} nodes to be Ready (GPU nodes with their {labels.GPU_RESOURCE})")

    def _wait_controllers(self, api: client.ApiClient, since: float) -> None:
        core = client.CoreV1Api(api)

        def default_service_account() -> bool:
            # Created by kube-controller-manager; without it no pod can be admitted in "default".
            try:
                core.read_namespaced_service_account("default", "default", _request_timeout=REQUEST_TIMEOUT)
            except exceptions.ApiException:
                return False
            return True

        self._wait(default_service_account, 90, "kube-controller-manager (the default ServiceAccount)")
        for component in CONTROLLERS:
            self._wait(lambda c=component: _leads(api, c, since), 90, f"{component} to renew its leader lease")  # type: ignore[misc]

    # -- faults ---------------------------------------------------------------------------------

    def restart_component(
        self, component: str, *, down_for: float = 0.0, grace: float = 15.0, progress: Progress = _quiet
    ) -> Restart:
        """Stop one control-plane process (SIGTERM, SIGKILL after ``grace`` seconds), keep it down
        until ``down_for`` seconds after the SIGTERM, then start it again and repair what its absence
        broke (:meth:`start_stopped_components`), also when interrupted. Returns what it measured."""
        if component not in KWOK_COMPONENTS:
            raise SandboxError(f"unknown component {component!r}; one of {', '.join(KWOK_COMPONENTS)}")
        kwokctl = self._kwokctl()
        if kwokctl is None or not kwokctl.exists() or not self._component_alive(kwokctl, component):
            raise SandboxError(f"{component} of sandbox {self.name!r} is not running; run `vigil dev up` first")
        pid = kwokctl.component_pids()[component]
        began = time.monotonic()
        stopped = down = float("nan")
        repaired: tuple[str, ...] = ()
        try:
            progress(f"stopping {component} (pid {pid})")
            os.kill(pid, signal.SIGTERM)
            try:
                procs.wait_for(lambda: not self._component_alive(kwokctl, component), grace, f"{component} to exit")
            except procs.Timeout:
                os.kill(pid, signal.SIGKILL)
                self._wait(lambda: not self._component_alive(kwokctl, component), 30, f"{component} to be killed")
            stopped = time.monotonic() - began
            time.sleep(max(0.0, down_for - stopped))  # the outage itself: its length is the point
        finally:
            down = time.monotonic() - began
            repaired = self.start_stopped_components(progress)
        settled = time.monotonic() - began
        return Restart(component, round(stopped, 1), round(down, 1), round(settled, 1), repaired)

    def start_stopped_components(self, progress: Progress = _quiet, timeout: float = 180.0) -> tuple[str, ...]:
        """Start every control-plane process that is not running, until the API server answers and
        both controllers lead again; returns the components it started.

        kube-controller-manager and kube-scheduler *exit* when they cannot renew their leader lease
        (an API server gone for longer than their renew deadline), and kwokctl's binary runtime
        restarts nothing. So a controller may die a little after the API server returns: this keeps
        starting whatever is dead until both have renewed their leases since the repair began.
        """
        kwokctl = self._kwokctl()
        if kwokctl is None or not kwokctl.exists():
            raise SandboxError(f"no sandbox {self.name!r} under {self.state_dir}; run `vigil dev up` first")
        log = self.state_dir / "logs" / "kwokctl.log"
        since = time.time()
        started: list[str] = []

        def settled() -> bool:
            dead = self._dead_components(kwokctl)
            if dead:
                progress(f"starting what stopped: {', '.join(dead)}")
                started.extend(name for name in dead if name not in started)
                try:
                    self._start_dead(kwokctl, dead, log)
                except kwok.KwokctlError as error:
                    progress(f"kwokctl start failed, retrying: {str(error).splitlines()[0]}")
                    return False
            if not self._apiserver_answers():
                return False
            with contextlib.closing(self.api_client()) as api:
                leading = all(_leads(api, component, since) for component in CONTROLLERS)
            return leading and not self._dead_components(kwokctl)

        self._wait(settled, timeout, "the control plane to run again with both controllers leading")
        return tuple(started)

    # -- Prometheus and the simulator -------------------------------------------------------------

    def prometheus_config(
        self,
        info: SandboxInfo,
        progress: Progress = _quiet,
        *,
        rules_dir: pathlib.Path | None = None,
        operator_metrics: str | None = prometheus.OPERATOR_METRICS,
    ) -> dict[str, Any]:
        """prometheus.yml, its Triton job translated from the chart's PodMonitor (rendered by helm).

        Tests that run a Prometheus of their own pass their own rules directory and no operator job.
        """
        try:
            helm = chart.Helm.from_toolchain(progress=progress)
            podmonitor = chart.pod_monitor(helm, {"podMonitor": {"enabled": True, "interval": info.scrape_interval}})
        except (chart.ChartError, build.BuildError) as error:
            raise SandboxError(f"cannot render the chart's Triton PodMonitor: {error}") from error
        return prometheus.render_config(
            podmonitor=podmonitor,
            kubeconfig=info.kubeconfig,
            sim_port=info.sim_port,
            scrape_interval=info.scrape_interval,
            rules_dir=rules_dir or self.prometheus_dir / "rules",
            operator_metrics=operator_metrics,
        )

    def start_prometheus(self, progress: Progress = _quiet) -> None:
        """Start Prometheus (or reload it if its configuration changed) and wait until it is ready."""
        info = self._require_info()
        try:
            binary = prometheus.ensure_binary(progress)
        except build.BuildError as error:
            raise SandboxError(str(error)) from error
        config_path = self.prometheus_dir / "prometheus.yml"
        (self.prometheus_dir / "rules").mkdir(parents=True, exist_ok=True)
        config_text = yaml.safe_dump(self.prometheus_config(info, progress), sort_keys=False)
        changed = _write_if_changed(config_path, config_text)
        argv = prometheus.command(binary, config_path, self.prometheus_dir / "data", info.prometheus_port)
        process = self.prometheus_process
        ready_url = f"{info.prometheus_url}/-/ready"
        if process.runs(argv):
            if changed:
                progress("reloading Prometheus (configuration changed)")
                _http_status(f"{info.prometheus_url}/-/reload", method="POST")
            else:
                progress("Prometheus already running")
        else:
            process.stop()
            if procs.port_open(info.prometheus_port):
                raise SandboxError(
                    f"127.0.0.1:{info.prometheus_port} is in use by another process; "
                    "stop it or choose another port (--prometheus-port)"
                )
            progress(f"starting Prometheus on 127.0.0.1:{info.prometheus_port} (scrape every {info.scrape_interval})")
            process.start(argv)
        self._wait_process(process, lambda: _http_status(ready_url) == 200, 60, "Prometheus to be ready")

    def stop_prometheus(self) -> None:
        """Stop Prometheus (its data stays): tests use this to prove the operator holds without metrics."""
        self.prometheus_process.stop()

    def start_simulator(self, progress: Progress = _quiet) -> None:
        """Start the Triton simulator (``vigil sim serve``) on loopback and wait for its port."""
        info = self._require_info()
        argv = [
            sys.executable,
            "-m",
            "vigil",
            "sim",
            "serve",
            "--kubeconfig",
            str(info.kubeconfig),
            "--listen",
            f"127.0.0.1:{info.sim_port}",
        ]
        process = self.simulator_process
        if process.runs(argv):
            progress("Triton simulator already running")
        else:
            process.stop()
            if procs.port_open(info.sim_port):
                raise SandboxError(
                    f"127.0.0.1:{info.sim_port} is in use by another process; stop it or choose another port (--sim-port)"
                )
            progress(f"starting the Triton simulator on 127.0.0.1:{info.sim_port}")
            process.start(argv, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._wait_process(
            process, lambda: procs.port_open(info.sim_port), 60, "the Triton simulator (`vigil sim serve`) to listen"
        )

    def stop_simulator(self) -> None:
        self.simulator_process.stop()

    def _wait_process(self, process: procs.Background, ready: Callable[[], bool], timeout: float, what: str) -> None:
        def check() -> bool:
            if not process.alive():
                code = process.exited()
                raise SandboxError(
                    f"{process.name} exited{'' if code is None else f' with code {code}'} instead of serving; "
                    f"log: {process.log_file}\n{process.log_tail()}"
                )
            return ready()

        try:
            procs.wait_for(check, timeout, what, interval=0.3)
        except procs.Timeout as error:
            raise SandboxError(f"{error}; log: {process.log_file}\n{process.log_tail()}") from error

    # -- down and status ------------------------------------------------------------------------

    def down(self, progress: Progress = _quiet) -> None:
        """Stop everything ``up`` started and remove the sandbox's state directory."""
        progress("stopping the Triton simulator")
        self.stop_simulator()
        progress("stopping Prometheus")
        self.stop_prometheus()
        kwokctl = self._kwokctl() or kwok.Kwokctl(pathlib.Path("kwokctl"), self.name, self.kwok_workdir)
        if kwokctl.exists():
            progress("deleting the control plane (kwokctl delete cluster)")
            pids = kwokctl.component_pids()
            if kwokctl.binary.is_file():
                try:
                    kwokctl.delete(self.kubeconfig, self.state_dir / "logs" / "kwokctl.log")
                except kwok.KwokctlError as error:
                    progress(f"kwokctl delete failed ({error}); stopping the components directly")
            try:
                procs.wait_for(
                    lambda: not any(pathlib.Path(f"/proc/{pid}").exists() for pid in pids.values()),
                    30,
                    "the control plane processes to exit",
                )
            except procs.Timeout:
                kwokctl.kill_components()
        if self._looks_like_state_dir():
            progress(f"removing {self.state_dir}")
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def _looks_like_state_dir(self) -> bool:
        # Never remove a directory the sandbox did not create (state_dir is a user option).
        markers = ("sandbox.json", "kwok", "pids", "kwokctl.yaml", "kubeconfig")
        return self.state_dir.is_dir() and any((self.state_dir / marker).exists() for marker in markers)

    def control_plane_processes(self) -> dict[str, int]:
        """The pids kwokctl recorded for etcd, the kube-* components and kwok (``{}`` without a cluster)."""
        kwokctl = self._kwokctl()
        return kwokctl.component_pids() if kwokctl is not None and kwokctl.exists() else {}

    def control_plane_ports(self) -> dict[str, int]:
        """The components' loopback ports (``etcdPort``, ``kubeControllerManagerPort``, ...; ``{}`` without a cluster)."""
        kwokctl = self._kwokctl()
        return kwokctl.ports() if kwokctl is not None else {}

    def is_running(self) -> bool:
        """Whether every component of the sandbox is up."""
        return self.status().ok

    def status(self) -> SandboxStatus:
        """A health line per component: control-plane processes, API server, nodes, Prometheus, simulator."""
        info = self.info()
        if info is None:
            return SandboxStatus(None, (ComponentStatus("sandbox", False, f"not created (state: {self.state_dir})"),))
        rows: list[ComponentStatus] = []
        kwokctl = self._kwokctl()
        for component in KWOK_COMPONENTS:
            alive = kwokctl is not None and kwokctl.exists() and self._component_alive(kwokctl, component)
            pid = kwokctl.component_pids().get(component) if kwokctl else None
            rows.append(ComponentStatus(component, alive, f"pid {pid}" if alive else "not running"))
        rows.extend(self._api_rows(info))
        rows.append(self._prometheus_row(info))
        sim_ok = self.simulator_process.alive() and procs.port_open(info.sim_port)
        rows.append(
            ComponentStatus(
                "simulator",
                sim_ok,
                info.simulator_url if sim_ok else f"not serving (log: {self.simulator_process.log_file})",
            )
        )
        return SandboxStatus(info, tuple(rows))

    def _api_rows(self, info: SandboxInfo) -> list[ComponentStatus]:
        if not self._apiserver_answers():
            return [
                ComponentStatus("apiserver", False, f"{info.apiserver_url} not answering"),
                ComponentStatus("nodes", False, "unknown (API server down)"),
            ]
        with contextlib.closing(self.api_client()) as api:
            version = client.VersionApi(api).get_code(_request_timeout=REQUEST_TIMEOUT).git_version
            nodes = self._ready_nodes(api)
            leases = self._lease_ages(api, CONTROLLERS)
        ready = sum(1 for _name, ok, _gpu in nodes if ok)
        gpus = sum(int(gpu) for _name, ok, gpu in nodes if ok and gpu.isdigit())
        total = info.nodes + info.cpu_nodes
        nodes_ok = ready == total and len(nodes) == total
        detail = (
            f"{ready}/{total} Ready ({info.nodes} GPU, {info.cpu_nodes} CPU), {gpus} {labels.GPU_RESOURCE} "
            f"allocatable, room for {info.pod_capacity} pods and {info.service_capacity} Services"
        )
        rows = [
            ComponentStatus("apiserver", True, f"{info.apiserver_url} ({version})"),
            ComponentStatus("nodes", nodes_ok, detail),
        ]
        for holder, age in leases.items():
            fresh = age is not None and age < 60
            detail = f"leader lease renewed {age:.0f}s ago" if age is not None else "no leader lease"
            rows.append(ComponentStatus(f"{holder} leader", fresh, detail))
        return rows

    @staticmethod
    def _lease_ages(api: client.ApiClient, names: Iterable[str]) -> dict[str, float | None]:
        coordination = client.CoordinationV1Api(api)
        ages: dict[str, float | None] = {}
        now = datetime.datetime.now(datetime.UTC)
        for name in names:
            try:
                lease = coordination.read_namespaced_lease(name, "kube-system", _request_timeout=REQUEST_TIMEOUT)
            except exceptions.ApiException:
                ages[name] = None
                continue
            renewed = lease.spec.renew_time if lease.spec else None
            ages[name] = (now - renewed).total_seconds() if renewed else None
        return ages

    def _prometheus_row(self, info: SandboxInfo) -> ComponentStatus:
        if not self.prometheus_process.alive() or _http_status(f"{info.prometheus_url}/-/ready") != 200:
            return ComponentStatus("prometheus", False, f"not ready (log: {self.prometheus_process.log_file})")
        try:
            targets = _http_json(f"{info.prometheus_url}/api/v1/targets?state=active")["data"]["activeTargets"]
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            return ComponentStatus("prometheus", True, info.prometheus_url)
        mine = [t for t in targets if t.get("labels", {}).get("job") == prometheus.TRITON_JOB]
        up = sum(1 for t in mine if t.get("health") == "up")
        return ComponentStatus("prometheus", True, f"{info.prometheus_url} ({up}/{len(mine)} Triton targets up)")
