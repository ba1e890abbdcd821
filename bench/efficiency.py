"""Benchmark 5: SLO attainment per GPU: vigil vs static peak provisioning vs an HPA-like autoscaler.

Two scenarios run at the same time in one namespace, each with three deployments under the same
traffic and the same simulated replicas, differing only in who sets the replica count:

* ``vigil``: replicas for the starting load, ``maxReplicas`` for the peak, the ready-made
  ``runbooks/load-surge-scale-out.yaml`` as shipped (scale-out rounds sized from the measured
  demand at 70 % utilisation, 90 s ahead along its rise, verified after 90 s, the next round as
  soon as the still-rising demand needs more replicas than run) and the
  ModelDeployment's default give-back (stabilization, then one replica per minute back to
  ``spec.replicas``);
* ``static``: provisioned for the peak from start to end (``paused``: vigil only judges it);
* ``hpa``: :mod:`bench.hpa`, the HorizontalPodAutoscaler's algorithm and defaults on GPU
  utilisation (target 60 %), between the same minimum and maximum, on a ``paused`` deployment.

Scenarios: ``ramp``, a load ramp 2x -> 10x -> 1x a base rate over 30 minutes; ``trace``, the hour
of the Azure LLM inference trace (``bench/traces``), tokens scaling each request's service time.
Both are replayed at a stated speed-up. Every replica has the same capacity; the peak is sized
at 60 % utilisation of the highest 10-second rate, the start at 60 % of the first minute's rate.

Timers under the speed-up: both scale-down stabilisation windows, the HPA's 300 s and vigil's
5-minute give-back ``stabilizationWindow``, are divided by the speed-up (:meth:`Scenario.
stabilisation_seconds`), so each still waits five minutes *of the trace* of calm before it
returns a replica: unscaled, a replica added in the trace's second half was held to the end of
the run by both (a 5-minute wall-clock wait is 30 trace minutes at x6). Everything else runs on
the wall clock for both: vigil's SLO and rate windows, ``verifyAfter`` and give-back interval,
the HPA's 15 s sync and 1-minute utilisation window.

Measured per deployment over the traffic's span: SLO attainment, the share of evaluation
intervals (``status.slos`` sampled every evaluation interval) whose queue-time verdict is Met
(vigil judges all three the same way); GPU-minutes, the GPUs held by scheduled pods integrated
over time; SLO-violating minutes, the minutes whose average queue time (from Prometheus, over
that minute) exceeds the SLO's threshold. Targets for vigil: attainment >= 95 %, GPU-minutes
<= 0.75 x static, fewer violating minutes than the HPA-like baseline.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import pathlib
import time
from typing import Any

import yaml

from bench import baseline, cluster, hpa, traffic, waiting, watch
from bench.common import Context, attempt, rounded
from vigil.sim import behaviour

QUEUE: dict[str, Any] = {"name": "queue", "kind": "queueTime", "thresholdMs": 100, "period": "1h"}
POLICIES = ("vigil", "static", "hpa")
CAPACITY = 30.0
BASE_LATENCY_MS = 200.0
UTILISATION = 0.6
PEAK_WINDOW_SECONDS = 10.0
RUNBOOK = "load-surge-scale-out"
READY_MADE = pathlib.Path(__file__).resolve().parents[1] / "runbooks" / f"{RUNBOOK}.yaml"
BASE_RATE = 3.0
# Trace seconds -> requests per second: 2x for 5 min, up to 10x by minute 12, held to 18, down to 1x by 25.
RAMP = (
    (0.0, 2 * BASE_RATE),
    (300.0, 2 * BASE_RATE),
    (720.0, 10 * BASE_RATE),
    (1080.0, 10 * BASE_RATE),
    (1500.0, BASE_RATE),
    (1800.0, BASE_RATE),
)
SEED = 20261202
TARGET_ATTAINMENT = 0.95
TARGET_GPU_RATIO = 0.75
STABILISATION_TRACE_SECONDS = 300.0
"""The HPA's default scale-down stabilisation and vigil's default give-back stabilizationWindow."""


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    load: traffic.Traffic
    speedup: float
    settings: behaviour.Behaviour

    @property
    def wall_seconds(self) -> float:
        return self.load.span / self.speedup

    @property
    def stabilisation_seconds(self) -> int:
        """Both policies' scale-down stabilisation: five minutes of the trace (see the module docstring)."""
        return round(STABILISATION_TRACE_SECONDS / self.speedup)

    def replicas(self) -> tuple[int, int]:
        """(start, peak) replicas at :data:`UTILISATION` of each replica's capacity."""
        first_minute = float(self.load.rates(60.0, self.speedup)[0])
        peak = self.load.peak_rate(PEAK_WINDOW_SECONDS, self.speedup)
        start = traffic.replicas_for(first_minute, CAPACITY, UTILISATION)
        return start, max(start, traffic.replicas_for(peak, CAPACITY, UTILISATION))


def scenarios(quick: bool) -> list[Scenario]:
    factor = 2.0 if quick else 1.0
    ramp = traffic.ramp(RAMP, SEED)
    trace = traffic.from_trace(traffic.AZURE_CONV, "trace")
    return [
        Scenario("ramp", ramp, 3.0 * factor, behaviour.Behaviour(capacity=CAPACITY, base_latency_ms=BASE_LATENCY_MS)),
        Scenario(
            "trace",
            trace,
            6.0 * factor,
            behaviour.Behaviour(capacity=CAPACITY, base_latency_ms=BASE_LATENCY_MS, service_cv=0.0),
        ),
    ]


def _runbook(ns: str) -> dict[str, Any]:
    """The ready-made runbook users get in ``runbooks/``, as shipped: vigil is measured with its own
    defaults, not with a runbook tuned for the benchmark."""
    body: dict[str, Any] = yaml.safe_load(READY_MADE.read_text())
    body["metadata"] = {"name": RUNBOOK, "namespace": ns}
    return body


def manifest(scenario: Scenario, policy: str, headroom: bool = False) -> dict[str, Any]:
    start, peak = scenario.replicas()
    name = f"{scenario.name}-{policy}"
    if policy == "static":
        return cluster.manifest(name, replicas=peak, slos=[QUEUE], paused=True)
    spec: dict[str, Any] = {"slos": [QUEUE], "maxReplicas": peak}
    if policy == "vigil":
        spec["runbookRef"] = {"name": RUNBOOK}
        spec["giveBack"] = {"stabilizationWindow": f"{scenario.stabilisation_seconds}s"}
        if headroom:
            spec["headroom"] = {"enabled": True}
    else:
        spec["paused"] = True
    return cluster.manifest(name, replicas=start, **spec)


def queue_ms_query(namespace: str, name: str) -> str:
    sel = f'{{namespace="{namespace}", modeldeployment="{name}"}}'
    return (
        f"sum(increase(nv_inference_queue_duration_us{sel}[1m])) "
        f"/ sum(increase(nv_inference_request_success{sel}[1m])) / 1000"
    )


def serving_pods_query(namespace: str, name: str) -> str:
    """Pods Triton metrics come from: the replicas actually serving (Ready, taking traffic)."""
    return f'count(nv_inference_request_success{{namespace="{namespace}", modeldeployment="{name}"}})'


def changes(points: list[tuple[float, float]], origin: float) -> list[list[float]]:
    """``[seconds after origin, value]`` at the start and at every change of value."""
    found: list[list[float]] = []
    for at, value in points:
        if not found or found[-1][1] != value:
            found.append([round(at - origin, 1), value])
    return found


def violating_minutes(points: list[tuple[float, float]], threshold_ms: float) -> int:
    """Minutes (one point per minute) whose average queue time exceeds the threshold."""
    return sum(1 for _, value in points if value > threshold_ms)


def judged(samples: list[watch.Sample]) -> list[watch.Sample]:
    """Samples with a verdict (Met, Warning or Breached): not before the first data arrived."""
    return [s for s in samples if s.slos.get(QUEUE["name"]) in ("Met", "Warning", "Breached")]


def measure(samples: list[watch.Sample], points: list[tuple[float, float]], start: float, end: float) -> dict[str, Any]:
    verdicts = judged(samples)
    return {
        "attainment": rounded(watch.share(verdicts, QUEUE["name"])),
        "judgedIntervals": len(verdicts),
        "breachedIntervals": sum(1 for s in verdicts if s.slos.get(QUEUE["name"]) == "Breached"),
        "gpuMinutes": round(watch.gpu_minutes(samples, end), 2),
        "violatingMinutes": violating_minutes(points, float(QUEUE["thresholdMs"])),
        "measuredMinutes": len(points),
        "queueMsPerMinute": [round(value, 1) for _, value in points],
        "replicas": watch.replicas_range(samples),
        "overrides": watch.overrides_seen(samples),
    }


def _run(ctx: Context, ns: str, chosen: list[Scenario]) -> dict[str, Any]:
    kube = ctx.kube
    names = [f"{s.name}-{p}" for s in chosen for p in POLICIES]
    for scenario in chosen:
        for policy in POLICIES:
            name = f"{scenario.name}-{policy}"
            settings = scenario.settings
            kube.set_behaviour(ns, name, settings)
            kube.create(ns, cluster.MDS, manifest(scenario, policy, ctx.headroom))
    for name in names:
        cluster.wait_available(kube, ns, name, 240)
    controllers: dict[str, hpa.Controller] = {}
    for scenario in chosen:
        start_replicas, peak = scenario.replicas()
        name = f"{scenario.name}-hpa"
        bounds = hpa.Policy(minimum=start_replicas, maximum=peak, stabilisation_seconds=scenario.stabilisation_seconds)
        controllers[scenario.name] = hpa.Controller(kube.fork(), ctx.info.prometheus_url, ns, name, bounds)
    watcher = watch.Watcher(kube.fork(), ns, names, ctx.settings.eval_interval)
    started = time.time()
    for scenario in chosen:
        csv = scenario.load.csv()
        for policy in POLICIES:
            body = {"namespace": ns, "name": f"{scenario.name}-{policy}", "csv": csv, "sizeColumn": "size"}
            kube.sim.set_load({**body, "speedup": scenario.speedup})
    watcher.start()
    for controller in controllers.values():
        controller.start()
    try:
        end = started + max(s.wall_seconds for s in chosen)
        cluster.log(f"efficiency: {round((end - started) / 60, 1)} min of traffic")
        waiting.until(lambda: time.time() >= end, end - started + 60, "the traffic to play", interval=5.0)
    finally:
        for controller in controllers.values():
            controller.stop()
        watcher.stop()
        for controller in controllers.values():
            controller.join(timeout=30)
            controller.kube.close()
        watcher.join(timeout=30)
        watcher.kube.close()
    prometheus = baseline.Prometheus(ctx.info.prometheus_url)
    results: dict[str, Any] = {}
    for scenario in chosen:
        stop = started + scenario.wall_seconds
        start_replicas, peak = scenario.replicas()
        per_policy: dict[str, Any] = {}
        for policy in POLICIES:
            name = f"{scenario.name}-{policy}"
            first_full_minute = started + 60.0
            points = prometheus.query_range(queue_ms_query(ns, name), first_full_minute, stop, 60.0)
            serving = prometheus.query_range(serving_pods_query(ns, name), started, stop, ctx.scrape_seconds)
            samples = watcher.between(name, started, stop)
            per_policy[policy] = {
                **measure(samples, points, started, stop),
                "servingPods": changes(serving, started),
                "timeline": watch.timeline(samples, started, [QUEUE["name"]]),
                "incidents": len(kube.incidents_of(ns, name)),
                "decisions": decisions(kube, ns, name, started),
            }
        results[scenario.name] = {
            "traffic": scenario.load.description,
            "traceMinutes": round(scenario.load.span / 60, 1),
            "speedup": scenario.speedup,
            "wallMinutes": round(scenario.wall_seconds / 60, 1),
            "stabilisationSeconds": scenario.stabilisation_seconds,
            "startReplicas": start_replicas,
            "peakReplicas": peak,
            "offeredPerMinute": [round(r, 2) for r in scenario.load.rates(60.0, scenario.speedup).tolist()],
            "policies": per_policy,
            "hpa": controllers[scenario.name].report(),
            "verdict": verdict(per_policy),
        }
        for policy in POLICIES:
            kube.forget_traffic(ns, f"{scenario.name}-{policy}")
    return {"scenarios": results, "watchErrors": watcher.errors}


DECISIONS = ("Detected", "Diagnosed", "Intent", "CooldownWaived", "Hold", "Verified", "Failed", "Resolved", "Escalated")


def decisions(kube: cluster.Cluster, ns: str, name: str, started: float) -> list[dict[str, Any]]:
    """What vigil decided for one deployment, from its Incidents' timelines (seconds into the run):
    why it scaled when it did, and what held it."""
    rows: list[dict[str, Any]] = []
    for incident in kube.list(ns, cluster.INCIDENTS):
        if incident.get("spec", {}).get("modelDeployment") != name:
            continue
        for entry in (incident.get("status") or {}).get("timeline", []):
            kind = str(entry.get("type", ""))
            if kind in DECISIONS or kind.startswith("GiveBack"):
                at = datetime.datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00")).timestamp()
                rows.append(
                    {
                        "t": round(at - started, 1),
                        "incident": incident["metadata"]["name"],
                        "type": kind,
                        "message": entry.get("message", ""),
                    }
                )
    return sorted(rows, key=lambda row: row["t"])


def verdict(per_policy: dict[str, Any]) -> dict[str, Any]:
    """vigil against the targets: attainment, GPU-minutes over static, violating minutes vs HPA."""
    ours, static, autoscaler = per_policy["vigil"], per_policy["static"], per_policy["hpa"]
    gpu_ratio = ours["gpuMinutes"] / static["gpuMinutes"] if static["gpuMinutes"] else math.nan
    attainment = ours["attainment"]
    return {
        "gpuRatioToStatic": rounded(gpu_ratio),
        "attainmentMet": attainment is not None and attainment >= TARGET_ATTAINMENT,
        "gpuMet": math.isfinite(gpu_ratio) and gpu_ratio <= TARGET_GPU_RATIO,
        "fewerViolatingMinutesThanHpa": ours["violatingMinutes"] < autoscaler["violatingMinutes"],
    }


def _one(ctx: Context, chosen: list[Scenario], number: int) -> dict[str, Any]:
    """One run in a namespace and under an operator of its own."""
    names = [f"{s.name}-{p}" for s in chosen for p in POLICIES]
    began = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
    with ctx.namespace("efficiency") as ns, ctx.operator([ns], f"efficiency-{number}"):
        ctx.kube.create(ns, cluster.RUNBOOKS, _runbook(ns))
        try:
            result = attempt(ctx, "efficiency", lambda: _run(ctx, ns, chosen))
        finally:
            for name in names:
                ctx.kube.forget_traffic(ns, name)
    result["started"] = began
    cluster.log(f"efficiency run {number}: {summary(result)}")
    return result


def summary(result: dict[str, Any]) -> str:
    """One line per run for the log: a long invocation's numbers survive an interrupted one."""
    if "error" in result:
        return f"FAILED: {result['error']}"
    parts = []
    for scenario, data in result["scenarios"].items():
        for policy in ("vigil", "hpa"):
            numbers = data["policies"][policy]
            static = data["policies"]["static"]["gpuMinutes"]
            ratio = numbers["gpuMinutes"] / static if static else math.nan
            parts.append(
                f"{scenario} {policy} {numbers['attainment']} / {ratio:.3f}x / {numbers['violatingMinutes']} violating"
            )
    return "; ".join(parts)


def run(ctx: Context) -> dict[str, Any]:
    """``--runs N`` runs one after the other (default 1: a run takes ten minutes), aggregated in the report."""
    chosen = scenarios(ctx.quick)
    count = ctx.runs if ctx.runs_given else 1
    runs = [_one(ctx, chosen, number) for number in range(1, count + 1)]
    environment = ctx.environment()
    return {
        "benchmark": "efficiency",
        "slo": QUEUE,
        "capacityPerReplica": CAPACITY,
        "baseLatencyMs": BASE_LATENCY_MS,
        "sizingUtilisation": UTILISATION,
        "runbook": f"runbooks/{READY_MADE.name}",
        "headroom": ctx.headroom,
        "hpaTarget": hpa.TARGET_UTILISATION,
        "targets": {"attainment": TARGET_ATTAINMENT, "gpuRatioToStatic": TARGET_GPU_RATIO},
        "runCount": count,
        "runs": runs,
        "environment": environment,
    }
