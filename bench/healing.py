"""Benchmark 2: healing by vigil against a Flagger-like baseline, measured side by side.

Each run has two pairs of fresh deployments in one namespace watched by one vigil operator. The
two deployments of a pair run at the same time under the same load and fault, and differ only in
who decides:

* ``vigil``: a normal deployment; vigil's runbooks act (the built-in default rolls back a bad
  release; a Runbook with a ``scaleOut`` step answers the queue-time SLO).
* ``baseline``: a ``paused`` deployment (vigil only observes and judges its SLOs), acted on by
  :mod:`bench.baseline`, which writes the same ``status`` overrides vigil's intents write. Its
  60 s ticker is started at the fault with a phase spread evenly over the runs (run i of n ticks
  first (i + 0.5) / n intervals after the fault), the unbiased way to sample a phase that is
  uniformly random in practice.

Rollback pair: availability SLO 99.9 % / 1 h, ``bakeTime: 20s``, load on; once version 1 is
last-known-good, version 2 is faulted (30 % errors) and the spec patched to it. Times are measured
from the first bad request, i.e. the moment ``status.currentRevision`` switches to the new
revision (traffic reaches it then), to the rollback starting (``status.rollback`` set) and to the
SLO being Met again on the restored revision.

Scale pair: queue-time SLO (average queue time under 100 ms), 2 replicas whose simulated capacity
is the base load each (they run at half utilisation), load on; then a x3 surge, 1.5 x what the two
replicas can serve, so their queues grow until more replicas take a share. Times are measured from the surge to the
scale-out starting (``status.scale`` set) and to the queue-time SLO being Met after it. Both
scale to the same absolute target (6 replicas).

"SLO Met" counts from the start of a run of Met verdicts lasting two evaluation intervals.
Ratios are vigil / baseline of the medians: lower is better.
"""

from __future__ import annotations

import concurrent.futures
import functools
import time
from collections.abc import Callable
from typing import Any

from bench import baseline, cluster, stats, waiting
from bench.common import AVAILABILITY, Context, attempt, relative, rounded

POLICIES = ("vigil", "baseline")
ROLLBACK_RATE = 50.0
ERROR_RATIO = 0.3
BAKE_TIME = "20s"
QUEUE: dict[str, Any] = {"name": "queue", "kind": "queueTime", "thresholdMs": 100, "period": "1h"}
SCALE_RATE = 40.0
SURGE = 3.0
CAPACITY = 1.0 * SCALE_RATE  # per replica: 2 replicas carry the base load at half utilisation, not the surge
REPLICAS = 2
STEP_REPLICAS = 4  # 6 replicas carry the x3 surge at the same half utilisation
RUNBOOK = "surge"

ROLLBACK_METRICS = {
    "toRollbackSeconds": "first bad request -> rollback started",
    "toMetSeconds": "first bad request -> SLO met",
}
SCALE_METRICS = {
    "toScaleSeconds": "surge -> scale-out started",
    "toMetSeconds": "surge -> SLO met",
}


def _hold(ctx: Context) -> float:
    """How long "SLO Met again" must last to count: two evaluation intervals (a verdict that flips
    straight back to Breached is not a recovery). The time recorded is when the Met run began."""
    return 2 * ctx.settings.eval_interval


def _controller(
    ctx: Context,
    kube: cluster.Cluster,
    ns: str,
    name: str,
    check: baseline.Check,
    action: Callable[[dict[str, Any], float], dict[str, Any] | None],
    index: int,
) -> baseline.Controller:
    """The baseline's ticker, started at the fault with this run's phase (see baseline.phase_offset)."""
    offset = baseline.phase_offset(index, ctx.runs)
    controller = baseline.Controller(kube, ctx.info.prometheus_url, ns, name, check, action, first_tick_in=offset)
    controller.start()
    return controller


def rollback_run(ctx: Context, ns: str, name: str, policy: str, index: int) -> dict[str, Any]:
    kube = ctx.kube.fork()
    paused = policy == "baseline"
    controller: baseline.Controller | None = None
    try:
        spec: dict[str, Any] = {"slos": [AVAILABILITY], "bakeTime": BAKE_TIME, "maxReplicas": 4, "paused": paused}
        kube.create(ns, cluster.MDS, cluster.manifest(name, replicas=REPLICAS, **spec))
        cluster.wait_available(kube, ns, name, 120)
        kube.sim.set_load({"namespace": ns, "name": name, "rate": ROLLBACK_RATE})
        good = waiting.until(
            lambda: cluster.last_known_good(kube.get(ns, name)), 240, f"{name}: version 1 last-known-good"
        )
        if paused:
            check = baseline.success_rate_check(ns, name)
            controller = _controller(ctx, kube.fork(), ns, name, check, baseline.rollback_status, index)
        kube.sim.set_fault({"namespace": ns, "name": name, "version": "2", "errorRatio": ERROR_RATIO})
        kube.patch_spec(ns, name, {"model": {"version": "2"}})

        def observe() -> dict[str, Any]:
            return {"md": kube.get(ns, name), "failures": kube.pod_counts(ns, name, "2")[1]}

        def status(o: dict[str, Any]) -> dict[str, Any]:
            found: dict[str, Any] = o["md"].get("status", {})
            return found

        def restored(o: dict[str, Any]) -> bool:
            rollback = status(o).get("rollback") or {}
            return bool(rollback) and status(o).get("currentRevision") == rollback.get("revision")

        def met_again(o: dict[str, Any]) -> bool:
            slo = cluster.slo_status(o["md"], AVAILABILITY["name"]) or {}
            return restored(o) and slo.get("state") == "Met" and slo.get("revision") == status(o)["currentRevision"]

        seen = waiting.follow(
            observe,
            [
                waiting.Milestone("switched", lambda o: status(o).get("currentRevision") not in (None, good)),
                waiting.Milestone("firstFailure", lambda o: o["failures"] > 0),
                waiting.Milestone(
                    "breached",
                    lambda o: cluster.slo_state(o["md"], AVAILABILITY["name"]) == "Breached",
                    after=("switched",),
                ),
                waiting.Milestone("rollbackStarted", lambda o: bool(status(o).get("rollback")), after=("switched",)),
                waiting.Milestone("rolledBack", restored, after=("rollbackStarted",)),
                waiting.Milestone("met", met_again, after=("rolledBack", "breached"), hold=_hold(ctx)),
            ],
            final="met",
            timeout=300,
        )
        first_bad = seen["switched"]
        md = kube.get(ns, name)
        return {
            "policy": policy,
            "name": name,
            "toRollbackSeconds": round(seen["rollbackStarted"] - first_bad, 3),
            "toMetSeconds": round(seen["met"] - first_bad, 3),
            "toDetectSeconds": rounded(stats.elapsed(first_bad, seen.get("breached"))),
            "rollbackToMetSeconds": round(seen["met"] - seen["rollbackStarted"], 3),
            "milestones": relative(seen, first_bad),
            "rollback": md["status"].get("rollback"),
            "specVersion": md["spec"]["model"]["version"],
            "incidents": kube.incidents_of(ns, name),
            "reconcilers": kube.reconcilers(ns, name),
            "baseline": controller.report() if controller else None,
        }
    finally:
        if controller is not None:
            controller.stop()
            controller.join(timeout=30)
            controller.kube.close()
        kube.forget_traffic(ns, name)
        kube.delete(ns, name)
        kube.close()


def _surge_runbook(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": cluster.API_VERSION,
        "kind": "Runbook",
        "metadata": {"name": RUNBOOK, "namespace": ns},
        "spec": {
            "triggers": [{"slo": QUEUE["name"]}],
            "steps": [
                {
                    "name": "scale",
                    "action": "scaleOut",
                    "params": {"stepReplicas": STEP_REPLICAS},
                    "verifyAfter": "30s",
                }
            ],
        },
    }


def scale_run(ctx: Context, ns: str, name: str, policy: str, index: int) -> dict[str, Any]:
    kube = ctx.kube.fork()
    paused = policy == "baseline"
    target = REPLICAS + STEP_REPLICAS
    controller: baseline.Controller | None = None
    try:
        kube.sim.set_fault({"namespace": ns, "name": name, "capacity": CAPACITY})
        spec: dict[str, Any] = {"slos": [QUEUE], "bakeTime": BAKE_TIME, "maxReplicas": target, "paused": paused}
        if not paused:
            spec["runbookRef"] = {"name": RUNBOOK}
        kube.create(ns, cluster.MDS, cluster.manifest(name, replicas=REPLICAS, **spec))
        cluster.wait_available(kube, ns, name, 120)
        kube.sim.set_load({"namespace": ns, "name": name, "rate": SCALE_RATE})
        waiting.until(
            lambda: cluster.slo_state(kube.get(ns, name), QUEUE["name"]) == "Met", 180, f"{name}: queue SLO Met"
        )
        if paused:
            check = baseline.queue_time_check(ns, name, float(QUEUE["thresholdMs"]))
            controller = _controller(ctx, kube.fork(), ns, name, check, baseline.scale_status(target), index)
        kube.sim.set_load({"namespace": ns, "name": name, "rate": SCALE_RATE * SURGE})
        surge = time.time()

        def status(md: dict[str, Any]) -> dict[str, Any]:
            found: dict[str, Any] = md.get("status", {})
            return found

        def ready(md: dict[str, Any]) -> bool:
            scale = status(md).get("scale") or {}
            return bool(scale) and int(status(md).get("readyReplicas", 0)) >= int(scale.get("replicas", 0))

        seen = waiting.follow(
            lambda: kube.get(ns, name),
            [
                waiting.Milestone("breached", lambda md: cluster.slo_state(md, QUEUE["name"]) == "Breached"),
                waiting.Milestone("scaleStarted", lambda md: bool(status(md).get("scale"))),
                waiting.Milestone("scaledReady", ready, after=("scaleStarted",)),
                waiting.Milestone(
                    "met",
                    lambda md: cluster.slo_state(md, QUEUE["name"]) == "Met",
                    after=("scaleStarted", "breached"),
                    hold=_hold(ctx),
                ),
            ],
            final="met",
            timeout=480,
        )
        md = kube.get(ns, name)
        return {
            "policy": policy,
            "name": name,
            "toScaleSeconds": round(seen["scaleStarted"] - surge, 3),
            "toMetSeconds": round(seen["met"] - surge, 3),
            "toDetectSeconds": rounded(stats.elapsed(surge, seen.get("breached"))),
            "scaleToMetSeconds": round(seen["met"] - seen["scaleStarted"], 3),
            "milestones": relative(seen, surge),
            "scale": md["status"].get("scale"),
            "specReplicas": md["spec"]["replicas"],
            "incidents": kube.incidents_of(ns, name),
            "reconcilers": kube.reconcilers(ns, name),
            "baseline": controller.report() if controller else None,
        }
    finally:
        if controller is not None:
            controller.stop()
            controller.join(timeout=30)
            controller.kube.close()
        kube.forget_traffic(ns, name)
        kube.delete(ns, name)
        kube.close()


def _pair(
    ctx: Context, ns: str, kind: str, index: int, body: Callable[[Context, str, str, str, int], dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Run the vigil and baseline variants of one scenario at the same time."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(POLICIES)) as pool:
        futures = {
            policy: pool.submit(
                attempt,
                ctx,
                f"healing {kind} {policy} {index}",
                functools.partial(body, ctx, ns, f"{kind}-{policy[0]}{index}", policy, index),
            )
            for policy in POLICIES
        }
        try:
            return {policy: future.result() for policy, future in futures.items()}
        except BaseException:
            waiting.STOP.set()  # Ctrl-C: the other thread stops waiting and cleans up too
            raise


def run(ctx: Context) -> dict[str, Any]:
    rollback: dict[str, list[dict[str, Any]]] = {p: [] for p in POLICIES}
    scale: dict[str, list[dict[str, Any]]] = {p: [] for p in POLICIES}
    with ctx.namespace("heal") as ns, ctx.operator([ns], "healing"):
        ctx.kube.create(ns, cluster.RUNBOOKS, _surge_runbook(ns))
        for index in range(ctx.runs):
            cluster.log(f"healing rollback run {index + 1}/{ctx.runs} (vigil and baseline side by side)")
            for policy, result in _pair(ctx, ns, "rb", index, rollback_run).items():
                rollback[policy].append({"run": index, **result})
                _say(policy, result, ROLLBACK_METRICS)
            cluster.log(f"healing scale-out run {index + 1}/{ctx.runs} (vigil and baseline side by side)")
            for policy, result in _pair(ctx, ns, "so", index, scale_run).items():
                scale[policy].append({"run": index, **result})
                _say(policy, result, SCALE_METRICS)
        environment = ctx.environment()
    return summarize(rollback, scale, environment)


def _say(policy: str, result: dict[str, Any], metrics: dict[str, str]) -> None:
    if "error" in result:
        cluster.log(f"  {policy}: failed: {result['error']}")
        return
    cluster.log("  " + policy + ": " + ", ".join(f"{label} {result[key]:.1f}s" for key, label in metrics.items()))


def _scenario(runs: dict[str, list[dict[str, Any]]], metrics: dict[str, str]) -> dict[str, Any]:
    summaries = {policy: stats.summaries(runs[policy], list(metrics)) for policy in POLICIES}
    ratios = {key: stats.median_ratio(summaries["vigil"][key], summaries["baseline"][key]) for key in metrics}
    paired = {
        key: [
            stats.ratio(v.get(key), b.get(key))
            for v, b in zip(runs["vigil"], runs["baseline"], strict=True)
            if key in v and key in b
        ]
        for key in metrics
    }
    return {
        "metrics": metrics,
        "runs": runs,
        "failedRuns": {policy: sum(1 for r in runs[policy] if "error" in r) for policy in POLICIES},
        "contendedRuns": sum(1 for policy in POLICIES for r in runs[policy] if r.get("contended")),
        "summaries": {
            policy: {key: (s.to_json() if s else None) for key, s in by_key.items()}
            for policy, by_key in summaries.items()
        },
        "ratios": ratios,
        "pairedRatios": paired,
    }


def summarize(
    rollback: dict[str, list[dict[str, Any]]], scale: dict[str, list[dict[str, Any]]], environment: dict[str, Any]
) -> dict[str, Any]:
    return {
        "benchmark": "healing",
        "baselinePolicy": {
            "intervalSeconds": baseline.INTERVAL_SECONDS,
            "window": baseline.WINDOW,
            "maxFailedChecks": 1,
            "successRateThreshold": baseline.SUCCESS_RATE_THRESHOLD,
            "queueTimeThresholdMs": QUEUE["thresholdMs"],
            "fieldManager": baseline.FIELD_MANAGER,
        },
        "rollback": {
            "slo": AVAILABILITY,
            "bakeTime": BAKE_TIME,
            "loadRate": ROLLBACK_RATE,
            "errorRatio": ERROR_RATIO,
            **_scenario(rollback, ROLLBACK_METRICS),
        },
        "scaleOut": {
            "slo": QUEUE,
            "loadRate": SCALE_RATE,
            "surge": SURGE,
            "capacityPerReplica": CAPACITY,
            "replicas": REPLICAS,
            "targetReplicas": REPLICAS + STEP_REPLICAS,
            **_scenario(scale, SCALE_METRICS),
        },
        "environment": environment,
    }
