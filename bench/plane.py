"""``bench plane``: what the sandbox's control plane does with a burst on its own, without vigil.

``bench fleet`` times a burst of ModelDeployments through the operator; this finds where the
control plane itself stops, so that the fleet's create -> Available can be read against it. Three
bursts of N (1,000 unless ``--sizes`` names another; 200 with ``--quick``), each in a fresh
namespace:

- ``services``: N ClusterIP Services, 4 clients at once (as many as vigil's Service creator);
- ``deployments``: N one-replica Deployments on the CPU node pool, 16 clients at once, until every
  pod is Ready;
- ``operator-shaped``: N Deployments as fast as 16 clients go and, beside them, each one's Service
  by 4 lanes: what vigil's reconciles and its creator send. "Ready and Service" is the raw
  counterpart of the fleet's create -> Available.

Each burst reports its wall time and rate, p50 / p99 / last of every stage (from watches), the CPU
seconds each control-plane process used (``/proc``) and the machine's load, and from the
components' own metrics: write requests and their server-side latency per resource, the time the
API server spent allocating ClusterIPs (serialized: its allocator holds one lock across each
``IPAddress`` create), the controller manager's queue wait and sync time per controller, and
etcd's WAL fsyncs. Everything below :func:`run` that derives numbers is pure and unit-tested.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import pathlib
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kubernetes import client, watch
from prometheus_client import parser

from bench import cluster, stats
from bench.common import Context, rounded

DEFAULT_SIZE = 1000
QUICK_SIZE = 200
CLIENTS = 16
SERVICE_LANES = 4  # vigil's reconcile/creations.py CONCURRENCY
READY_TIMEOUT = 600.0
SCENARIOS = ("services", "deployments", "operator-shaped")
COMPONENTS = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok-controller")
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY"})
QUEUES = ("deployment", "replicaset", "endpoint_slice", "endpoint")
IMAGE = "nvcr.io/nvidia/tritonserver:24.08-py3"

Samples = dict[str, list[tuple[dict[str, str], float]]]
"""Prometheus samples by name: (labels, value) pairs."""


# -- pure: metrics --------------------------------------------------------------------------------


def parse_samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by sample name (``_sum``/``_count`` kept apart)."""
    found: Samples = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return found


def total(samples: Samples, name: str, match: Callable[[dict[str, str]], bool] = lambda _labels: True) -> float:
    return sum(value for labels, value in samples.get(name, []) if match(labels))


def increase(before: Samples, after: Samples, name: str, match: Callable[[dict[str, str]], bool]) -> float:
    return total(after, name, match) - total(before, name, match)


def _average_ms(seconds: float, count: float) -> float | None:
    return rounded(1000.0 * seconds / count, 1) if count > 0 else None


def apiserver_numbers(before: Samples, after: Samples) -> dict[str, Any]:
    """Writes per resource (count, mean server-side latency) and the ClusterIP allocations."""
    kinds = sorted(
        {
            (labels.get("resource", ""), labels.get("subresource", ""), labels["verb"])
            for labels, _value in after.get("apiserver_request_duration_seconds_count", [])
            if labels.get("verb") in WRITE_VERBS
        }
    )
    writes: list[dict[str, Any]] = []
    for resource, subresource, verb in kinds:

        def kind(labels: dict[str, str], key: tuple[str, str, str] = (resource, subresource, verb)) -> bool:
            return (labels.get("resource", ""), labels.get("subresource", ""), labels.get("verb")) == key

        count = increase(before, after, "apiserver_request_duration_seconds_count", kind)
        if count <= 0:
            continue
        seconds = increase(before, after, "apiserver_request_duration_seconds_sum", kind)
        name = resource + (f"/{subresource}" if subresource else "")
        writes.append({"resource": name, "verb": verb, "count": int(count), "meanMs": _average_ms(seconds, count)})
    allocations = increase(
        before, after, "kube_apiserver_clusterip_allocator_allocation_duration_seconds_count", lambda _labels: True
    )
    allocating = increase(
        before, after, "kube_apiserver_clusterip_allocator_allocation_duration_seconds_sum", lambda _labels: True
    )
    return {
        "writes": writes,
        "writeCount": sum(row["count"] for row in writes),
        "clusterIPAllocations": int(allocations),
        "clusterIPAllocationMeanMs": _average_ms(allocating, allocations),
        "clusterIPAllocatingSeconds": rounded(allocating, 2),
    }


def controller_queues(before: Samples, after: Samples) -> dict[str, dict[str, Any]]:
    """Per controller queue: syncs, mean wait in the queue (s) and mean sync (ms)."""
    found: dict[str, dict[str, Any]] = {}
    for queue in QUEUES:

        def named(labels: dict[str, str], wanted: str = queue) -> bool:
            return labels.get("name") == wanted

        syncs = increase(before, after, "workqueue_work_duration_seconds_count", named)
        if syncs <= 0:
            continue
        waited = increase(before, after, "workqueue_queue_duration_seconds_sum", named)
        waits = increase(before, after, "workqueue_queue_duration_seconds_count", named)
        worked = increase(before, after, "workqueue_work_duration_seconds_sum", named)
        found[queue] = {
            "syncs": int(syncs),
            "meanQueueWaitSeconds": rounded(waited / waits, 2) if waits > 0 else None,
            "meanSyncMs": _average_ms(worked, syncs),
        }
    return found


def etcd_numbers(before: Samples, after: Samples) -> dict[str, Any]:
    def anything(_labels: dict[str, str]) -> bool:
        return True

    fsyncs = increase(before, after, "etcd_disk_wal_fsync_duration_seconds_count", anything)
    fsyncing = increase(before, after, "etcd_disk_wal_fsync_duration_seconds_sum", anything)
    commits = increase(before, after, "etcd_disk_backend_commit_duration_seconds_count", anything)
    committing = increase(before, after, "etcd_disk_backend_commit_duration_seconds_sum", anything)
    return {
        "walFsyncs": int(fsyncs),
        "walFsyncMeanMs": _average_ms(fsyncing, fsyncs),
        "backendCommits": int(commits),
        "backendCommitMeanMs": _average_ms(committing, commits),
    }


# -- pure: stages ---------------------------------------------------------------------------------


def stage(created: Mapping[str, float], reached: Mapping[str, float], origin: float) -> dict[str, Any] | None:
    """p50 / p99 of each object's time from its creation to ``reached``, and when the last one got
    there (from ``origin``, the burst's start); None when none did."""
    spans = [reached[key] - created[key] for key in reached if key in created]
    if not spans:
        return None
    return {
        "n": len(spans),
        "p50": rounded(stats.percentile(spans, 50.0), 2),
        "p99": rounded(stats.percentile(spans, 99.0), 2),
        "last": rounded(max(reached.values()) - origin, 2),
    }


def both(first: Mapping[str, float], second: Mapping[str, float]) -> dict[str, float]:
    """When each object had reached both stages (the later of the two)."""
    return {key: max(first[key], second[key]) for key in first if key in second}


def cpu_seconds(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float | None]:
    return {name: rounded(after[name] - before[name], 2) if name in before else None for name in after}


# -- I/O ------------------------------------------------------------------------------------------


def _process_seconds(pids: Mapping[str, int]) -> dict[str, float]:
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError, ValueError, IndexError):
            found[name] = stats.proc_cpu_ticks(pathlib.Path(f"/proc/{pid}/stat").read_text()) / ticks
    return found


def _get(url: str) -> str:
    # Loopback only; the controller manager serves /metrics to anyone over its self-signed TLS.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url, timeout=10, context=context if url.startswith("https") else None) as response:
        return str(response.read().decode())


class Probe:
    """The control plane's metrics and process CPU, read before and after a burst."""

    def __init__(self, ctx: Context) -> None:
        if ctx.sandbox is None:
            raise RuntimeError("bench plane needs the sandbox handle (its component pids and ports)")
        self.api = ctx.kube.api
        self.pids = ctx.sandbox.control_plane_processes()
        ports = ctx.sandbox.control_plane_ports()
        self.urls = {
            "etcd": f"http://127.0.0.1:{ports.get('etcdPort')}/metrics",
            "kube-controller-manager": f"https://127.0.0.1:{ports.get('kubeControllerManagerPort')}/metrics",
        }

    def read(self) -> dict[str, Any]:
        request = self.api.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
        response = self.api.call_api(*request, _request_timeout=30)
        body = response.read()  # type: ignore[no-untyped-call]
        if response.status != 200 or body is None:
            raise RuntimeError(f"the API server's /metrics answered {response.status}")
        scrapes: dict[str, Samples] = {"kube-apiserver": parse_samples(bytes(body).decode())}
        for name, url in self.urls.items():
            try:
                scrapes[name] = parse_samples(_get(url))
            except OSError as error:
                cluster.log(f"plane: {name} metrics unreadable: {error}")
                scrapes[name] = {}
        return {"scrapes": scrapes, "cpu": _process_seconds(self.pids), "load": os.getloadavg()}


def _deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "triton",
                            "image": IMAGE,
                            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                        }
                    ]
                },
            },
        },
    }


def _service(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 8000}]}}


class PodWatch:
    """When each burst pod (by its ``app`` label) was first seen, bound and Ready."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.seen: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="plane-pods", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in stream.stream(  # type: ignore[no-untyped-call]
                    self.core.list_namespaced_pod, self.namespace, timeout_seconds=30, _request_timeout=60
                ):
                    self._record(event["object"], time.monotonic())
                    if self._stop.is_set():
                        break
            except Exception as error:  # a broken watch starts again; the burst's deadline bounds it
                cluster.log(f"plane: pod watch: {error!r}")
                time.sleep(0.5)

    def _record(self, pod: Any, now: float) -> None:
        app = (pod.metadata.labels or {}).get("app")
        if not app:
            return
        self.seen.setdefault(app, now)
        if pod.spec.node_name:
            self.bound.setdefault(app, now)
        conditions = (pod.status.conditions if pod.status else None) or []
        if any(c.type == "Ready" and c.status == "True" for c in conditions):
            self.ready.setdefault(app, now)

    def stop(self) -> None:
        self._stop.set()


def burst(ctx: Context, scenario: str, size: int) -> dict[str, Any]:
    """One burst of ``size`` objects in a fresh namespace, with the probes around it."""
    probe = Probe(ctx)
    api = ctx.kube.fork().api
    api.configuration.connection_pool_maxsize = CLIENTS + SERVICE_LANES + 4
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    names = [f"m{index:05d}" for index in range(size)]
    created: dict[str, float] = {}
    applied: dict[str, float] = {}
    services: dict[str, float] = {}
    with ctx.namespace("plane", delete_timeout=300.0) as namespace:
        pods = PodWatch(api, namespace) if scenario != "services" else None
        time.sleep(1.0)  # the watch is open before the first object
        before = probe.read()
        origin = time.monotonic()

        def deploy(name: str) -> None:
            created[name] = time.monotonic()
            apps.create_namespaced_deployment(namespace, _deployment(name))  # type: ignore[arg-type]
            applied[name] = time.monotonic()

        def serve(name: str) -> None:
            if scenario == "services":
                created[name] = time.monotonic()
            while name not in created:  # operator-shaped: after its Deployment was sent
                time.sleep(0.005)
            core.create_namespaced_service(namespace, _service(name))  # type: ignore[arg-type]
            services[name] = time.monotonic()

        with (
            concurrent.futures.ThreadPoolExecutor(CLIENTS) as clients,
            concurrent.futures.ThreadPoolExecutor(SERVICE_LANES) as lanes,
        ):
            jobs = []
            if scenario in ("deployments", "operator-shaped"):
                jobs += [clients.submit(deploy, name) for name in names]
            if scenario in ("services", "operator-shaped"):
                jobs += [lanes.submit(serve, name) for name in names]
            for job in jobs:
                job.result()
        sent = time.monotonic() - origin
        if pods is not None:
            deadline = time.monotonic() + READY_TIMEOUT
            while len(pods.ready) < size and time.monotonic() < deadline:
                time.sleep(0.5)
            pods.stop()
        wall = time.monotonic() - origin
        after = probe.read()
    result: dict[str, Any] = {
        "scenario": scenario,
        "n": size,
        "sentSeconds": rounded(sent, 2),
        "wallSeconds": rounded(wall, 2),
        "loadBefore": [round(value, 2) for value in before["load"]],
        "loadAfter": [round(value, 2) for value in after["load"]],
        "cpuSeconds": cpu_seconds(before["cpu"], after["cpu"]),
        "apiserver": apiserver_numbers(before["scrapes"]["kube-apiserver"], after["scrapes"]["kube-apiserver"]),
        "controllerQueues": controller_queues(
            before["scrapes"]["kube-controller-manager"], after["scrapes"]["kube-controller-manager"]
        ),
        "etcd": etcd_numbers(before["scrapes"]["etcd"], after["scrapes"]["etcd"]),
        "stages": {},
    }
    stages: dict[str, dict[str, Any] | None] = {
        "Deployment created": stage(created, applied, origin) if applied else None,
        "Service created": stage(created, services, origin) if services else None,
    }
    if pods is not None:
        stages["pod created"] = stage(created, pods.seen, origin)
        stages["pod bound"] = stage(created, pods.bound, origin)
        stages["pod Ready"] = stage(created, pods.ready, origin)
        result["podsReady"] = len(pods.ready)
    if services and pods is not None:
        stages["pod Ready and Service"] = stage(created, both(pods.ready, services), origin)
    result["stages"] = {name: value for name, value in stages.items() if value is not None}
    if services:
        result["servicesPerSecond"] = rounded(len(services) / (max(services.values()) - origin), 1)
    return result


def run(ctx: Context) -> dict[str, Any]:
    size = max(ctx.fleet_sizes) if ctx.fleet_sizes else (QUICK_SIZE if ctx.quick else DEFAULT_SIZE)
    if size > ctx.info.cpu_nodes * ctx.info.pods_per_node:
        raise RuntimeError(
            f"the sandbox's CPU nodes hold {ctx.info.cpu_nodes * ctx.info.pods_per_node} pods, not {size}"
        )
    bursts: list[dict[str, Any]] = []
    for scenario in SCENARIOS:
        cluster.log(f"plane: {scenario}, N = {size}")
        result = burst(ctx, scenario, size)
        cluster.log(f"  {brief(result)}")
        bursts.append(result)
    return {"benchmark": "plane", "n": size, "clients": CLIENTS, "serviceLanes": SERVICE_LANES, "bursts": bursts}


def brief(result: Mapping[str, Any]) -> str:
    parts = [f"wall {result['wallSeconds']} s", f"load {result['loadBefore'][0]}"]
    for name, value in result["stages"].items():
        parts.append(f"{name} p50/p99/last {value['p50']}/{value['p99']}/{value['last']} s")
    cpu: Iterable[tuple[str, Any]] = result["cpuSeconds"].items()
    parts.append("CPU-s " + ", ".join(f"{name} {seconds}" for name, seconds in cpu))
    return "; ".join(parts)
