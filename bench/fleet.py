"""Benchmark 4 (``bench fleet``): one operator replica under a live fleet of N ModelDeployments.

For each N in the run's sizes (default 0, 1, 100, 500, 1,000; N = 0 is the baseline, N = 1 the
"same as alone" reference for detection), in a fresh ``bench-fleet-<id>`` namespace with a fresh
operator scoped to it:

1. **Burst.** N ModelDeployments are created at once (4 client threads), each 1 CPU-only replica
   (``gpus: 0``, no GPU toleration, so the pods land on the sandbox's CPU nodes) with the
   availability SLO; create → Available is the time from just before each create call to the
   watch event carrying ``Available=True`` (a watch started before the burst; no polling).
   One of the N, ``faulty``, also has a 20 s bake time and steady load, so that version 1 becomes
   last-known-good; a sample of the others (10 %, at most 50) gets light load (2 req/s).
2. **Steady state.** Once every deployment is Available and judged (``status.slos`` written) and
   the faulty one has a last-known-good revision, the fleet is left alone until one
   ``--status-refresh`` interval (120 s) has passed since the last deployment became Available (the
   burst's statuses are first refreshed in one wave, one interval after they were written; at least
   30 s), and until the operator's CPU (15 s probes) is low or stops falling (its backlog worked off;
   at most 10 min), then
   measured over two windows of the same length, nothing else being done by the benchmark:
   the operator *running*, then the operator *paused* (SIGSTOP; its watches stay connected).
   From the API server's ``apiserver_request_total`` (its /metrics): the operator's requests per
   second = running rate - paused rate (the controllers, kwok, Prometheus and the simulator run in
   both), and per deployment per minute. In the running window also: the operator's RSS (median of
   1 s samples of VmRSS) and CPU (utime + stime over wall time, as a fraction of one core); its
   fleet-loop cycles, duration and PromQL queries per cycle (its own /metrics); and the CPU and
   RSS of every sandbox process (API server, etcd, controllers, kwok, Prometheus, the simulator)
   with Prometheus's head series, and the machine's load (2 cores shared with other work).
3. **Detection.** ``faulty``'s version 2 is faulted (30 % errors) and its spec patched to it; from
   the moment ``status.currentRevision`` switches (its first bad request) to ``Breached``
   (detection) and to ``status.rollback`` being set (the first action), polled every 0.2 s. The
   milestone ``judged`` is the breach's ``lastTransitionTime`` (the instant of the evaluation that
   judged it, second precision): switched -> judged is waiting for data and an evaluation,
   judged -> breached the status write.

Then the operator stops and the namespace is deleted (and waited for) before the next N.

Targets (issue 9) at N = 1,000: RSS ≤ 200 MiB, CPU ≤ 10 % of one core, ≤ 1 API request per
deployment per minute, create → Available p99 ≤ 10 s, detection ≤ 15 s, first action ≤ 20 s.
They are checked at every N and reported; they are not pass/fail of the command.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import yaml
from kubernetes import watch
from kubernetes.client import exceptions

from bench import cluster, stages, stats, waiting
from bench.common import AVAILABILITY, Context, relative, rounded
from bench.operator import OperatorProcess, OperatorSettings
from vigil.api import slo as sloapi
from vigil.dev import chart, kwok
from vigil.dev import sandbox as sandbox_mod
from vigil.observe import windows
from vigil.reconcile import settings as config
from vigil.sim import client as simclient

SIZES = (0, 1, 100, 500, 1000)
FAULTY = "faulty"
CREATE_THREADS = 4
SAMPLE_SHARE = 0.10
SAMPLE_MAX = 50
SAMPLE_RATE = 2.0
FAULTY_RATE = 50.0
ERROR_RATIO = 0.3
BAKE_TIME = "20s"
SETTLE_SECONDS = 30.0
STATUS_REFRESH_SECONDS = config.Settings().status_refresh_seconds
"""The operator's ``--status-refresh`` (its default, as the benchmark runs it)."""
# After a burst the operator works off its backlog; the steady state starts once its CPU over
# SETTLE_PROBE_SECONDS is low, or no longer falling (at most SETTLE_MAX_SECONDS).
SETTLE_PROBE_SECONDS = 15.0
SETTLE_MAX_SECONDS = 600.0
SETTLED_CORES = 0.05
SAMPLE_SECONDS = 1.0
MIB = 2**20
TARGETS: dict[str, float] = {
    "rssBytes": 200 * MIB,
    "cpuCores": 0.10,
    "requestsPerDeploymentPerMinute": 1.0,
    "createToAvailableP99Seconds": 10.0,
    "detectionSeconds": 15.0,
    "firstActionSeconds": 20.0,
}
TARGET_N = 1000
NO_GPU: dict[str, Any] = {"gpus": 0, "cpu": "100m", "memory": "256Mi"}
COMPONENTS = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok-controller")


def chart_resync() -> float:
    """The chart's default resync period (``intervals.resync``): the steady state as installed."""
    values = yaml.safe_load((chart.CHART_DIR / "values.yaml").read_text())
    return float(values["intervals"]["resync"])


def member_name(index: int) -> str:
    return f"fleet-{index:04d}"


def names(size: int) -> list[str]:
    """The N deployments of a step: the faulty one first, then ``fleet-0001``... (N = 0: none)."""
    return [FAULTY, *(member_name(i) for i in range(1, size))] if size > 0 else []


def sample(members: Sequence[str]) -> list[str]:
    """The healthy deployments that get light load: every k-th, 10 % of them, at most 50."""
    healthy = [name for name in members if name != FAULTY]
    wanted = min(SAMPLE_MAX, round(len(healthy) * SAMPLE_SHARE))
    if wanted <= 0:
        return []
    stride = len(healthy) / wanted
    return [healthy[int(i * stride)] for i in range(wanted)]


def manifest(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"triton": NO_GPU, "slos": [AVAILABILITY]}
    if name == FAULTY:
        spec.update(bakeTime=BAKE_TIME, maxReplicas=2)
    return cluster.manifest(name, replicas=1, **spec)


# -- watching the fleet ------------------------------------------------------------------------


@dataclasses.dataclass
class FleetWatch:
    """Watches the namespace's ModelDeployments from the benchmark (independently of the operator):
    the first moment each was seen Available, and whether each was judged (``status.slos``)."""

    kube: cluster.Cluster
    namespace: str
    available: dict[str, float] = dataclasses.field(default_factory=dict)
    judged: set[str] = dataclasses.field(default_factory=set)
    restarts: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    stopped: threading.Event = dataclasses.field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def __enter__(self) -> FleetWatch:
        self.thread = threading.Thread(target=self._follow, name="fleet-watch", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout=30)
        self.kube.close()

    def _record(self, md: dict[str, Any], at: float) -> None:
        name = md["metadata"]["name"]
        with self.lock:
            if name not in self.available and (cluster.condition(md, "Available") or {}).get("status") == "True":
                self.available[name] = at
            if md.get("status", {}).get("slos"):
                self.judged.add(name)

    def _list(self, **kwargs: Any) -> Any:
        return self.kube.custom.list_namespaced_custom_object(
            cluster.GROUP, cluster.VERSION, self.namespace, cluster.MDS, **kwargs
        )

    def _follow(self) -> None:
        version: str | None = None
        while not self.stopped.is_set():
            try:
                if version is None:
                    listed = self._list(_request_timeout=60)
                    now = time.time()
                    for item in listed["items"]:
                        self._record(item, now)
                    version = listed["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(self._list, resource_version=version, timeout_seconds=30)  # type: ignore[no-untyped-call]
                for event in stream:
                    now = time.time()
                    obj = event["object"]
                    if event["type"] == "ERROR":  # 410 Gone: list again
                        version = None
                        break
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] != "DELETED":
                        self._record(obj, now)
                    if self.stopped.is_set():
                        break
            except exceptions.ApiException as error:
                version = None if error.status == 410 else version
                self.restarts += 1
                self.stopped.wait(1.0)
            except Exception:  # the API server busy or restarting: resume
                self.restarts += 1
                self.stopped.wait(1.0)

    def counts(self, members: Sequence[str]) -> tuple[int, int]:
        with self.lock:
            return sum(1 for n in members if n in self.available), sum(1 for n in members if n in self.judged)


# -- processes -----------------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        return pathlib.Path(path).read_text()
    except OSError:
        return None


def cpu_ticks(pid: int) -> int | None:
    text = _read(f"/proc/{pid}/stat")
    return None if text is None else stats.proc_cpu_ticks(text)


def rss_bytes(pid: int) -> int | None:
    for line in (_read(f"/proc/{pid}/status") or "").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def sandbox_pids(info: sandbox_mod.SandboxInfo) -> dict[str, int]:
    """The sandbox's own processes by name (those that run now)."""
    box = sandbox_mod.Sandbox(name=info.name, state_dir=info.state_dir)
    found = {
        name: pid
        for name, pid in kwok.Kwokctl(pathlib.Path("kwokctl"), info.name, box.kwok_workdir).component_pids().items()
        if name in COMPONENTS
    }
    for name, process in (("prometheus", box.prometheus_process), ("simulator", box.simulator_process)):
        pid = process.pid()
        if pid is not None:
            found[name] = pid
    return {name: pid for name, pid in found.items() if pathlib.Path(f"/proc/{pid}").exists()}


@dataclasses.dataclass
class CpuMeter:
    """CPU ticks of some processes and of the machine, between ``start`` and ``stop``."""

    pids: dict[str, int]
    ticks: dict[str, int] = dataclasses.field(default_factory=dict)
    machine: str = ""
    started: float = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        self.ticks = {name: t for name, pid in self.pids.items() if (t := cpu_ticks(pid)) is not None}
        self.machine = (_read("/proc/stat") or "").splitlines()[0]

    def stop(self) -> dict[str, Any]:
        seconds = time.monotonic() - self.started
        hz = float(os.sysconf("SC_CLK_TCK"))
        cores: dict[str, float | None] = {}
        for name, pid in self.pids.items():
            now = cpu_ticks(pid)
            before = self.ticks.get(name)
            cores[name] = (
                None if now is None or before is None else rounded(stats.core_fraction(now - before, seconds, hz), 4)
            )
        machine = (_read("/proc/stat") or "").splitlines()[0]
        load = (_read("/proc/loadavg") or "").split()
        return {
            "seconds": round(seconds, 3),
            "cores": cores,
            "rssBytes": {name: rss_bytes(pid) for name, pid in self.pids.items()},
            "machineBusy": rounded(stats.machine_busy(self.machine, machine), 4),
            "loadAverage1m": float(load[0]) if load else None,
            "cpus": os.cpu_count(),
        }


# -- the API server's counters and Prometheus ------------------------------------------------------


def apiserver_requests(kube: cluster.Cluster) -> dict[stats.RequestKind, float]:
    """The API server's request counters by kind, from its own /metrics (the admin kubeconfig may read it)."""
    request = kube.api.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
    response = kube.api.call_api(*request, _request_timeout=30)
    body = response.read()  # type: ignore[no-untyped-call]
    if response.status != 200 or body is None:
        raise RuntimeError(f"the API server's /metrics answered {response.status}")
    return stats.parse_apiserver_requests(bytes(body).decode())


def prometheus_gauge(url: str, metric: str) -> float | None:
    """One of Prometheus's own gauges (from its /metrics), e.g. ``prometheus_tsdb_head_series``."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(metric + " "):
            return float(line.split()[1])
    return None


# -- one step ------------------------------------------------------------------------------------


def _create_all(ctx: Context, ns: str, members: Sequence[str]) -> dict[str, float]:
    """Create every deployment, from a few threads; the moment just before each create call."""
    started: dict[str, float] = {}
    clients = [ctx.kube.fork() for _ in range(CREATE_THREADS)]

    def create(index: int, name: str) -> None:
        kube = clients[index % CREATE_THREADS]
        started[name] = time.time()
        for attempt in range(5):  # an API server busy with the burst may time out; creating is not idempotent
            try:
                kube.create(ns, cluster.MDS, manifest(name))
                return
            except exceptions.ApiException as error:
                if error.status == 409:
                    return
                if attempt == 4:
                    raise
            except Exception:
                if attempt == 4:
                    raise
            waiting.STOP.wait(1.0)

    try:
        with concurrent.futures.ThreadPoolExecutor(CREATE_THREADS) as pool:
            list(pool.map(create, range(len(members)), members))
    finally:
        for kube in clients:
            kube.close()
    return started


def _loads(ctx: Context, ns: str, members: Sequence[str]) -> list[str]:
    loaded = []
    if FAULTY in members:
        ctx.kube.sim.set_load({"namespace": ns, "name": FAULTY, "rate": FAULTY_RATE})
        loaded.append(FAULTY)
    for name in sample(members):
        ctx.kube.sim.set_load({"namespace": ns, "name": name, "rate": SAMPLE_RATE})
        loaded.append(name)
    return loaded


def _window(
    ctx: Context, operator: OperatorProcess, seconds: float, *, paused: bool, pids: dict[str, int]
) -> tuple[dict[str, Any], dict[stats.RequestKind, float]]:
    """One measurement window; with ``paused`` the operator is stopped (SIGSTOP) for its length.
    Returns what was measured and the API server's request counts by kind over the window."""
    meter = CpuMeter({"operator": operator.pid or 0, **pids})
    rss: list[float] = []
    before_metrics = None if paused else stats.parse_operator_metrics(operator.metrics() or "")
    if paused and operator.pid is not None:
        os.kill(operator.pid, signal.SIGSTOP)
    try:
        requests_before = apiserver_requests(ctx.kube)
        meter.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not paused and operator.pid is not None and (sample_rss := rss_bytes(operator.pid)) is not None:
                rss.append(float(sample_rss))
            if waiting.STOP.wait(min(SAMPLE_SECONDS, max(0.0, deadline - time.monotonic()))):
                raise waiting.Interrupted("the benchmark was interrupted")
        usage = meter.stop()
        requests_after = apiserver_requests(ctx.kube)
    finally:
        if paused and operator.pid is not None:
            os.kill(operator.pid, signal.SIGCONT)
    requests = stats.increase(requests_before, requests_after)
    result: dict[str, Any] = {"paused": paused, "usage": usage, "requests": round(sum(requests.values()))}
    if not paused:
        after_metrics = stats.parse_operator_metrics(operator.metrics() or "")
        cost = stats.cycle_cost(before_metrics, after_metrics) if before_metrics else None
        summary = stats.summarize(rss)
        result.update(
            rssBytes=summary.median if summary else None,
            rssMaxBytes=summary.max if summary else None,
            cycles=cost.cycles if cost else None,
            queriesPerCycle=cost.queries_per_cycle if cost else None,
            meanLoopSeconds=cost.mean_loop_seconds if cost else None,
            meanQuerySeconds=cost.mean_query_seconds if cost else None,
            queryErrors=cost.query_errors if cost else None,
        )
    return result, requests


def _detect(ctx: Context, ns: str) -> dict[str, Any]:
    """The faulty deployment's bad release: currentRevision switch -> Breached and -> rollback set."""
    kube = ctx.kube
    good = cluster.last_known_good(kube.get(ns, FAULTY))
    kube.sim.set_fault({"namespace": ns, "name": FAULTY, "version": "2", "errorRatio": ERROR_RATIO})
    patched = time.time()
    kube.patch_spec(ns, FAULTY, {"model": {"version": "2"}})

    def status(md: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = md.get("status", {})
        return found

    judged: dict[str, str] = {}

    def breached(md: dict[str, Any]) -> bool:
        found = cluster.slo_status(md, AVAILABILITY["name"]) or {}
        if found.get("state") != "Breached":
            return False
        # The instant of the evaluation that judged the breach (second precision): detection splits
        # into waiting for data and an evaluation (onset -> judged) and writing the status (judged -> seen).
        judged.setdefault("at", str(found.get("lastTransitionTime") or ""))
        return True

    seen = waiting.follow(
        lambda: kube.get(ns, FAULTY),
        [
            waiting.Milestone("switched", lambda md: status(md).get("currentRevision") not in (None, good)),
            waiting.Milestone("breached", breached, after=("switched",)),
            waiting.Milestone("firstAction", lambda md: bool(status(md).get("rollback")), after=("switched",)),
            waiting.Milestone("done", lambda _md: True, after=("breached", "firstAction")),
        ],
        final="done",
        timeout=240,
    )
    onset = seen["switched"]
    if judged.get("at"):
        seen["judged"] = datetime.datetime.fromisoformat(judged["at"].replace("Z", "+00:00")).timestamp()
    return {
        "detectionSeconds": round(seen["breached"] - onset, 3),
        "firstActionSeconds": round(seen["firstAction"] - onset, 3),
        "patchToSwitchSeconds": round(onset - patched, 3),
        "milestones": relative(seen, patched),
        "lastKnownGood": good,
    }


@contextlib.contextmanager
def _operator(ctx: Context, ns: str, size: int) -> Iterator[OperatorProcess]:
    settings = OperatorSettings(
        eval_interval=ctx.settings.eval_interval,
        resync=chart_resync(),
        min_window=ctx.settings.min_window,
        rate_window=ctx.settings.rate_window,
        baseline_window=ctx.settings.baseline_window,
    )
    with ctx.operator([ns], f"fleet-{size}", settings=settings) as operator:
        yield operator


def settled(cores: Sequence[float]) -> bool:
    """Whether the operator's CPU probes (fractions of a core, oldest first) show a steady state:
    the last one low, or the last two within 20 % of each other (a plateau, not a falling backlog)."""
    if not cores:
        return False
    if cores[-1] <= SETTLED_CORES:
        return True
    return len(cores) >= 2 and abs(cores[-1] - cores[-2]) <= 0.2 * max(cores[-1], cores[-2])


def _settle(operator: OperatorProcess) -> dict[str, Any]:
    """Wait (bounded) until the operator's CPU says its backlog is worked off; what was seen."""
    started = time.monotonic()
    cores: list[float] = []
    while time.monotonic() - started < SETTLE_MAX_SECONDS and not settled(cores):
        meter = CpuMeter({"operator": operator.pid or 0})
        meter.start()
        if waiting.STOP.wait(SETTLE_PROBE_SECONDS):
            raise waiting.Interrupted("the benchmark was interrupted")
        cores.append(float(meter.stop()["cores"].get("operator") or 0.0))
    return {"settleSeconds": round(time.monotonic() - started, 1), "settleCores": [round(c, 3) for c in cores]}


def refresh_settle(last_available: float, now: float, young_seconds: float = 0.0) -> float:
    """Seconds to wait from ``now`` so that one ``--status-refresh`` interval has passed since the
    burst's revisions stopped being young (``young_seconds`` after the last deployment became
    Available; at least ``SETTLE_SECONDS``).

    A revision younger than its SLO's longest window is judged over windows capped to its age,
    which grow up a ladder as it ages, and each step is a status write (the windows the status
    lists moved). A burst's revisions take those steps together, so a window measured while they
    do measures the young fleet's once-per-rung writes, not the steady state.
    """
    return max(SETTLE_SECONDS, last_available + young_seconds + STATUS_REFRESH_SECONDS - now)


def young_seconds(settings: OperatorSettings) -> float:
    """How long a bench deployment's revision is judged over capped windows: its SLO's longest window."""
    spec = sloapi.SLOSpec.model_validate(AVAILABILITY)
    min_window = round(sloapi.duration_seconds(settings.min_window))
    return float(max(pair.long_seconds for pair in windows.pairs_for(spec, min_window=min_window)))


def _until(what: str, timeout: float, probe: Callable[[], bool], interval: float = 2.0) -> None:
    waiting.until(probe, timeout, what, interval=interval)


def step(ctx: Context, size: int, window: float) -> dict[str, Any]:
    """Everything measured at one fleet size N (see the module docstring)."""
    members = names(size)
    result: dict[str, Any] = {"n": size}
    loaded: list[str] = []
    # The previous N's namespace is gone before the next burst starts (deleting 1,000 deployments
    # and their pods takes a few minutes on the sandbox).
    with ctx.namespace("fleet", delete_timeout=180 + size * 0.6) as ns, _operator(ctx, ns, size) as operator:
        try:
            with FleetWatch(ctx.kube.fork(), ns) as fleet, stages.Milestones(ctx.kube.fork(), ns) as milestones:
                requests_before = apiserver_requests(ctx.kube)
                burst_started = time.time()
                created = _create_all(ctx, ns, members)
                result["burstCreateSeconds"] = round(time.time() - burst_started, 3)
                loaded = _loads(ctx, ns, members)
                deadline = 180 + size * 0.6
                try:
                    _until(f"{size} deployments Available", deadline, lambda: fleet.counts(members)[0] == size)
                    _until(f"{size} deployments judged", 180, lambda: fleet.counts(members)[1] == size)
                except waiting.Timeout as error:
                    # Measure the steady state all the same; the burst's tail is reported as censored.
                    cluster.log(f"  {error}")
                    result["burstError"] = str(error)
                result["availableCount"], result["judgedCount"] = fleet.counts(members)
                available = {name: fleet.available[name] - created[name] for name in members if name in fleet.available}
                last_available = max(fleet.available.values(), default=time.time())
                result["watchRestarts"] = fleet.restarts
                if size:
                    result["stages"] = stages.breakdown(created, fleet.available, milestones.snapshot(), burst_started)
                    # Every client's requests (the controllers', kwok's, the benchmark's and the operator's)
                    # from the first create until the last deployment was Available, busiest kinds first.
                    burst = stats.increase(requests_before, apiserver_requests(ctx.kube))
                    busiest = sorted(burst.items(), key=lambda item: -item[1])[:12]
                    result["burstRequests"] = {"/".join(k).rstrip("/"): round(v) for k, v in busiest}
            if size:
                result.update(burst_summary(available, size, deadline))
                cluster.log("  " + "; ".join(stage_brief(row) for row in result["stages"]))
            if ctx.burst_only:
                return result
            if size:
                # The detection step rolls the faulty deployment back to version 1: it must be last-known-good.
                try:
                    _until(
                        "the faulty deployment's version 1 to be last-known-good",
                        240,
                        lambda: cluster.last_known_good(ctx.kube.get(ns, FAULTY)) is not None,
                    )
                except waiting.Timeout as error:
                    result["detectionError"] = str(error)
            cluster.log(f"  N={size}: Available; settling (the operator's backlog worked off) before measuring")
            # The burst wrote every status within a few minutes, so their first refreshes come as
            # one wave a status-refresh interval later, and their windows grow up their ladders
            # together until the revisions are older than the SLO's longest window: the steady
            # state starts after both.
            refresh_wait = refresh_settle(last_available, time.time(), young_seconds(ctx.settings) if size else 0.0)
            result["refreshWaitSeconds"] = round(refresh_wait, 1)
            if waiting.STOP.wait(refresh_wait):
                raise waiting.Interrupted("the benchmark was interrupted")
            result.update(_settle(operator))
            pids = sandbox_pids(ctx.info)
            running, running_requests = _window(ctx, operator, window, paused=False, pids=pids)
            paused, paused_requests = _window(ctx, operator, window, paused=True, pids={})
            requests = stats.operator_requests(
                running_requests, running["usage"]["seconds"], paused_requests, paused["usage"]["seconds"]
            )
            result.update(
                running=running,
                paused=paused,
                rssBytes=running["rssBytes"],
                cpuCores=running["usage"]["cores"].get("operator"),
                requestsPerSecond=round(requests.per_second, 3),
                requestsPerDeploymentPerMinute=rounded(requests.per_deployment_per_minute(size), 4),
                requestsByKind={"/".join(k).rstrip("/"): round(v, 3) for k, v in list(requests.by_kind.items())[:8]},
                runningRequestsPerSecond=round(requests.running_per_second, 3),
                pausedRequestsPerSecond=round(requests.paused_per_second, 3),
                queriesPerCycle=running["queriesPerCycle"],
                meanLoopSeconds=running["meanLoopSeconds"],
                prometheusHeadSeries=prometheus_gauge(ctx.info.prometheus_url, "prometheus_tsdb_head_series"),
                loaded=len(loaded),
            )
            if size and "detectionError" not in result:
                # Resumed from SIGSTOP: let it catch up (two fleet-loop cycles) before the fault.
                resumed = stats.parse_operator_metrics(operator.metrics() or "").loops
                _until(
                    "two fleet-loop cycles after the pause",
                    120,
                    lambda: stats.parse_operator_metrics(operator.metrics() or "").loops >= resumed + 2,
                    interval=0.5,
                )
                cluster.log("  detection: version 2 of the faulty deployment is faulted and rolled out")
                result.update(detect_or_error(ctx, ns))
            result["verdicts"] = verdicts(result)
            return result
        finally:
            forget_all(ctx.kube, ns, loaded)


def detect_or_error(ctx: Context, ns: str) -> dict[str, Any]:
    """:func:`_detect`, or why it could not finish: a detection that timed out, or a simulator
    that could not be reached to fault the release (an overloaded sandbox), is recorded in the
    step's result, so the steady-state numbers measured before it are kept."""
    try:
        return _detect(ctx, ns)
    except waiting.Timeout as error:
        return {"detectionError": str(error), "detectionSeen": error.seen}
    except simclient.ControlError as error:
        return {"detectionError": f"the fault could not be set: {error}"}


def forget_all(kube: cluster.Cluster, ns: str, names: Sequence[str]) -> None:
    """Stop the simulator's load for ``names``; once it cannot be reached, the rest are left (each
    call would wait its timeout: 100 deployments took half an hour on an overloaded sandbox)."""
    for name in names:
        if not kube.forget_traffic(ns, name):
            cluster.log(f"  the simulator did not answer: load of {len(names)} deployments left to it")
            return


def stage_brief(row: dict[str, Any]) -> str:
    return f"{row['stage']}: p50 {row['p50']} s, p99 {row['p99']} s, last at {row['makespan']} s"


def burst_summary(available: dict[str, float], size: int, deadline: float) -> dict[str, Any]:
    """create -> Available over the burst. Deployments not Available by the deadline count as taking
    the deadline (a lower bound): the p99 is then censored, and marked so."""
    missing = size - len(available)
    times = [*available.values(), *([deadline] * missing)]
    summary = stats.summarize(times)
    return {
        "createToAvailable": summary.to_json() if summary else None,
        "createToAvailableP99Seconds": rounded(stats.percentile(times, 99.0)) if times else None,
        "createToAvailableCensored": missing > 0,
    }


def verdicts(step_result: dict[str, Any]) -> dict[str, bool | None]:
    """Each target met (True), missed (False) or not measured (None) at this step's N."""
    found: dict[str, bool | None] = {}
    for key, limit in TARGETS.items():
        value = step_result.get(key)
        found[key] = None if value is None else float(value) <= limit
    return found


def check_capacity(info: sandbox_mod.SandboxInfo, sizes: Sequence[int]) -> None:
    largest = max(sizes, default=0)
    room = info.cpu_nodes * info.pods_per_node
    if largest > room or largest * 2 > info.service_capacity:
        raise RuntimeError(
            f"the sandbox holds {room} CPU-only pods and {info.service_capacity} Services, not a fleet of {largest}: "
            "bring it up with more --cpu-nodes / a wider --service-cidr (see `vigil dev up --help`)"
        )


def run(ctx: Context) -> dict[str, Any]:
    sizes = ctx.fleet_sizes or SIZES
    check_capacity(ctx.info, sizes)
    window = 30.0 if ctx.quick else 60.0
    steps: list[dict[str, Any]] = []
    for size in sizes:
        cluster.log(f"fleet: N = {size}")
        try:
            result = step(ctx, size, window)
        except waiting.Interrupted:
            raise
        except Exception as error:
            cluster.log(f"  N={size} failed: {error!r}")
            result = {"n": size, "error": repr(error)}
        steps.append(result)
        cluster.log(f"  N={size}: {brief(result)}")
        # A long run stopped half-way keeps what it measured (the full report is written at the end).
        partial = ctx.results_dir / "fleet.partial.json"
        partial.write_text(json.dumps({"steps": steps, "windowSeconds": window}, indent=2) + "\n")
    return summarize(steps, ctx.environment(), window)


def brief(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"FAILED {result['error']}"
    parts = [
        f"RSS {(result.get('rssBytes') or 0) / MIB:.0f} MiB",
        f"CPU {(result.get('cpuCores') or 0) * 100:.1f} %",
        f"{result.get('requestsPerSecond')} req/s",
        f"{result.get('requestsPerDeploymentPerMinute')} req/md/min",
    ]
    if result.get("createToAvailable"):
        parts.append(f"create->Available p99 {result.get('createToAvailableP99Seconds')} s")
    if "detectionSeconds" in result:
        parts.append(f"detection {result['detectionSeconds']} s, first action {result['firstActionSeconds']} s")
    return ", ".join(parts)


def summarize(steps: list[dict[str, Any]], environment: dict[str, Any], window: float) -> dict[str, Any]:
    target = next((s for s in steps if s["n"] == TARGET_N and "error" not in s), None)
    return {
        "benchmark": "fleet",
        "steps": steps,
        "windowSeconds": window,
        "resyncSeconds": chart_resync(),
        "targets": TARGETS,
        "targetN": TARGET_N,
        "targetVerdicts": target["verdicts"] if target else None,
        "environment": environment,
    }
