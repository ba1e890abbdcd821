"""Benchmark 4: false alarms. Healthy but bursty traffic for an hour; vigil must stay quiet.

Two deployments run side by side in one namespace, watched by one vigil operator with a
``scaleOut`` runbook for load surges (so any false LoadSurge would act), both with an availability
SLO (99.9 % / 1 h) and a queue-time SLO (average queue time under 100 ms):

* ``replay``: one hour of a public LLM inference trace (Azure LLM inference trace 2023,
  conversation; ``bench/traces``), each request's service time scaled by its tokens;
* ``generated``: one hour of a Markov-modulated Poisson process: a diurnal curve (x0.5 to x1.5
  of the base rate) with bursts of x2.5 lasting 20 s on average, every 4 minutes on average.

Both are replayed by the simulator at a stated speed-up (the hour passes in 10 minutes at the
default x6). Capacity is sized so that a perfect server never breaches: every replica stays under
half its capacity at the traffic's highest 10-second rate, and the same traffic played offline
through the simulator's queue (:func:`bench.traffic.offline_queue_seconds`) never averages more
than a fraction of the threshold over any 30-second window: the ground truth is "no breach".

Reported per deployment: Warning and Breached episodes (entries into the state, from
``status.slos`` sampled every evaluation interval), Incidents, and actions (runbook steps that
ran, overrides that appeared). Target: zero actions, zero incidents.

Then, with the traffic still flowing, Prometheus is stopped for 10 minutes (default) and started
again, and watched for 2 more minutes: any action started from the outage on is a destructive
action taken without metrics. Target: zero.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from bench import cluster, traffic, waiting, watch
from bench.common import AVAILABILITY, Context, attempt, rounded
from vigil.sim import behaviour

QUEUE: dict[str, Any] = {"name": "queue", "kind": "queueTime", "thresholdMs": 100, "period": "1h"}
SLOS = [AVAILABILITY, QUEUE]
RUNBOOK = "surge"
REPLICAS = 2
PEAK_UTILISATION = 0.5
PEAK_WINDOW_SECONDS = 10.0
TRUTH_WINDOW_SECONDS = 30.0
BASE_LATENCY_MS = 200.0
MMPP = traffic.Mmpp(base_rate=5.0, duration=3600.0)
SEED = 20261202
ACTED = ("Intended", "Verifying", "Succeeded", "Failed")
HEADROOM_UTILISATION = 70


@dataclasses.dataclass(frozen=True)
class Plan:
    """How long each phase lasts (wall seconds) and how fast the traces play."""

    speedup: float
    outage_seconds: float
    after_seconds: float

    @classmethod
    def for_run(cls, quick: bool) -> Plan:
        return cls(speedup=12.0, outage_seconds=180.0, after_seconds=60.0) if quick else cls(6.0, 600.0, 120.0)


def sized(load: traffic.Traffic, speedup: float, service_cv: float) -> tuple[behaviour.Behaviour, dict[str, Any]]:
    """Per-replica behaviour: capacity so that the peak 10 s rate is at most half of what the replicas serve."""
    peak = load.peak_rate(PEAK_WINDOW_SECONDS, speedup)
    capacity = round(peak / (REPLICAS * PEAK_UTILISATION), 1)
    settings = behaviour.Behaviour(capacity=capacity, base_latency_ms=BASE_LATENCY_MS, service_cv=service_cv)
    truth = traffic.offline_queue_seconds(load, settings, REPLICAS, speedup, TRUTH_WINDOW_SECONDS, seed=SEED)
    return settings, {
        "trace": load.description,
        "traceSeconds": round(load.span, 1),
        "requests": len(load.offsets),
        "meanRate": round(load.mean_rate * speedup, 2),
        "peak10sRate": round(peak, 2),
        "capacityPerReplica": capacity,
        "slots": settings.slots,
        "serviceCv": service_cv,
        "perfectServerMaxQueueMs": round(float(truth.max()) * 1000, 2),
        "perfectServerMeanQueueMs": round(float(truth.mean()) * 1000, 2),
    }


def _runbook(ns: str, headroom: bool = False) -> dict[str, Any]:
    """The surge runbook; with ``headroom`` its scale-out sizes from demand at 70 % utilisation, which
    the headroom trigger needs (it scales ahead of a breach only what it can size)."""
    params: dict[str, Any] = {"stepReplicas": 2}
    if headroom:
        params["targetUtilization"] = HEADROOM_UTILISATION
    return {
        "apiVersion": cluster.API_VERSION,
        "kind": "Runbook",
        "metadata": {"name": RUNBOOK, "namespace": ns},
        "spec": {
            "triggers": [{"slo": QUEUE["name"], "causes": ["LoadSurge"]}],
            "steps": [{"name": "scale", "action": "scaleOut", "params": params, "verifyAfter": "30s"}],
        },
    }


def acted_steps(incidents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runbook steps that ran (not pending, dry-run, skipped or cancelled), with their incident."""
    return [
        {"incident": incident["name"], "incidentCreated": incident.get("created"), **step}
        for incident in incidents
        for step in incident["steps"]
        if step.get("state") in ACTED
    ]


def started_after(steps: list[dict[str, Any]], moment: float) -> list[dict[str, Any]]:
    """Steps started at or after ``moment`` (a step not started yet counts from its incident's creation;
    Kubernetes times are whole seconds, hence the second of slack)."""
    found = []
    for step in steps:
        at = cluster.parse_time(step.get("startedAt")) or cluster.parse_time(step.get("incidentCreated"))
        if at is not None and at >= moment - 1.0:
            found.append(step)
    return found


def phase_summary(samples: list[watch.Sample]) -> dict[str, Any]:
    return {
        "samples": len(samples),
        "warnings": {slo["name"]: watch.episodes(samples, slo["name"], "Warning") for slo in SLOS},
        "breaches": {slo["name"]: watch.episodes(samples, slo["name"], "Breached") for slo in SLOS},
        "metShare": {slo["name"]: rounded(watch.share(samples, slo["name"])) for slo in SLOS},
        "overrides": watch.overrides_seen(samples),
    }


def _one(ctx: Context, ns: str, plan: Plan) -> dict[str, Any]:
    kube = ctx.kube
    loads = {
        "replay": (traffic.from_trace(traffic.AZURE_CONV, "replay"), 0.0),
        "generated": (traffic.generated(MMPP, SEED), 1.0),
    }
    setups: dict[str, dict[str, Any]] = {}
    for name, (load, cv) in loads.items():
        settings, setup = sized(load, plan.speedup, cv)
        setups[name] = setup
        kube.set_behaviour(ns, name, settings)
        spec: dict[str, Any] = {"slos": SLOS, "maxReplicas": REPLICAS + 4, "runbookRef": {"name": RUNBOOK}}
        if ctx.headroom:
            spec["headroom"] = {"enabled": True}
        kube.create(ns, cluster.MDS, cluster.manifest(name, replicas=REPLICAS, **spec))
        cluster.log(f"quiet {name}: {setup}")
    for name in loads:
        cluster.wait_available(kube, ns, name, 180)
    for name, (load, _) in loads.items():
        body = {"namespace": ns, "name": name, "csv": load.csv(), "column": "timestamp", "sizeColumn": "size"}
        kube.sim.set_load({**body, "speedup": plan.speedup, "loop": True})
    started = time.time()
    watcher = watch.Watcher(kube.fork(), ns, list(loads), ctx.settings.eval_interval)
    watcher.start()
    try:
        quiet_end = started + max(load.span for load, _ in loads.values()) / plan.speedup
        cluster.log(f"quiet: {round((quiet_end - started) / 60, 1)} min of traffic at x{plan.speedup:g}")
        waiting.until(lambda: time.time() >= quiet_end, quiet_end - started + 60, "the traces to play", interval=5.0)
        outage_start = time.time()
        cluster.log(f"quiet: stopping Prometheus for {plan.outage_seconds:g} s")
        if ctx.sandbox is None:
            raise RuntimeError("the quiet benchmark needs the sandbox handle to stop Prometheus")
        ctx.sandbox.stop_prometheus()
        try:
            outage_end = outage_start + plan.outage_seconds
            waiting.until(lambda: time.time() >= outage_end, plan.outage_seconds + 60, "the outage", interval=5.0)
        finally:
            ctx.sandbox.start_prometheus()
        restarted = time.time()
        cluster.log("quiet: Prometheus is back; watching")
        end = restarted + plan.after_seconds
        waiting.until(lambda: time.time() >= end, plan.after_seconds + 60, "the watch after the outage", interval=5.0)
    finally:
        watcher.stop()
        watcher.join(timeout=30)
        watcher.kube.close()
    per_deployment: dict[str, Any] = {}
    for name in loads:
        incidents = kube.incidents_of(ns, name)
        steps = acted_steps(incidents)
        samples = watcher.samples[name]
        during = [s for s in samples if s.at < outage_start]
        outage = [s for s in samples if s.at >= outage_start]
        per_deployment[name] = {
            **setups[name],
            "quiet": phase_summary(during),
            "outage": phase_summary(outage),
            "incidents": incidents,
            "incidentCount": len(incidents),
            "actions": len(steps),
            "actedSteps": steps,
            "actionsFromOutage": len(started_after(steps, outage_start)),
            "replicas": watch.replicas_range(samples),
            "timeline": watch.timeline(samples, started, [slo["name"] for slo in SLOS]),
            "sent": _sent(kube, ns, name),
        }
        kube.forget_traffic(ns, name)
    return {
        "speedup": plan.speedup,
        "quietSeconds": round(outage_start - started, 1),
        "outageSeconds": round(restarted - outage_start, 1),
        "outageStartsAt": round(outage_start - started, 1),
        "afterSeconds": plan.after_seconds,
        "watchErrors": watcher.errors,
        "deployments": per_deployment,
    }


def _sent(kube: cluster.Cluster, ns: str, name: str) -> int | None:
    for load in kube.sim.state()["loads"]:
        if load["namespace"] == ns and load["name"] == name:
            return int(load["sent"])
    return None


def run(ctx: Context) -> dict[str, Any]:
    plan = Plan.for_run(ctx.quick)
    with ctx.namespace("quiet") as ns, ctx.operator([ns], "quiet"):
        ctx.kube.create(ns, cluster.RUNBOOKS, _runbook(ns, ctx.headroom))
        try:
            result = attempt(ctx, "quiet", lambda: _one(ctx, ns, plan))
        finally:
            for name in ("replay", "generated"):
                ctx.kube.forget_traffic(ns, name)
        environment = ctx.environment()
    return summarize(result, plan, environment, ctx.headroom)


def summarize(
    result: dict[str, Any], plan: Plan, environment: dict[str, Any], headroom: bool = False
) -> dict[str, Any]:
    deployments = result.get("deployments", {})
    totals = {
        "incidents": sum(d["incidentCount"] for d in deployments.values()),
        "actions": sum(d["actions"] for d in deployments.values()),
        "actionsFromOutage": sum(d["actionsFromOutage"] for d in deployments.values()),
    }
    return {
        "benchmark": "quiet",
        "slos": SLOS,
        "plan": dataclasses.asdict(plan),
        "headroom": headroom,
        "sizing": {
            "replicas": REPLICAS,
            "peakUtilisation": PEAK_UTILISATION,
            "peakWindowSeconds": PEAK_WINDOW_SECONDS,
            "truthWindowSeconds": TRUTH_WINDOW_SECONDS,
            "baseLatencyMs": BASE_LATENCY_MS,
        },
        "run": result,
        "totals": totals,
        "pass": bool(deployments) and totals["incidents"] == 0 and totals["actions"] == 0,
        "outagePass": bool(deployments) and totals["actionsFromOutage"] == 0,
        "environment": environment,
    }
