"""Benchmark 3: what the operator costs as the fleet grows: RSS, fleet-loop duration, queries per cycle.

One operator, scoped to one fresh namespace, is started with no ModelDeployment (the baseline,
N = 0); then the fleet is grown to each N in :data:`FLEET_SIZES`. The deployments need no pods
(``replicas: 0``, ``gpus: 0``) but carry SLOs, so the fleet loop plans and evaluates them.

Each step waits until every deployment has been judged (``status.slos`` written) and is older than
its longest SLO window (a young revision is judged over windows capped to its age, which would
change the set of windows, and so the query count, while the fleet is still warming), then
measures over a fixed number of evaluation cycles:

* RSS of the operator process (``/proc/<pid>/status`` VmRSS), sampled every 0.5 s: the median;
* from the operator's own ``/metrics``, the increase of ``vigil_observe_loop_duration_seconds``
  (count and sum) and ``vigil_prometheus_query_duration_seconds`` (count and sum) over the
  window: cycles, queries per cycle, mean cycle and query duration.

Queries per cycle depend on the distinct windows and SLO kinds in use, never on N; the benchmark
checks that they are equal for every N > 0.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from bench import cluster, stats, waiting
from bench.common import Context
from bench.operator import OperatorProcess

FLEET_SIZES = (0, 10, 50)
WINDOWS = [{"long": "1m", "short": "20s", "factor": 14.4, "severity": "page"}]
LONGEST_WINDOW_SECONDS = 60.0
SLOS = [
    {"name": "availability", "kind": "availability", "objective": 99.9, "period": "1h", "windows": WINDOWS},
    {"name": "queue", "kind": "queueTime", "thresholdMs": 100, "period": "1h", "windows": WINDOWS},
]
SAMPLE_SECONDS = 0.5
ATTEMPTS = 3


def _manifest(index: int) -> dict[str, Any]:
    return cluster.manifest(f"fleet-{index:03d}", replicas=0, triton={"gpus": 0}, slos=SLOS, paused=True)


def _judged(kube: cluster.Cluster, ns: str, count: int) -> bool:
    items = kube.list(ns, cluster.MDS)
    judged = [md for md in items if len(md.get("status", {}).get("slos", [])) == len(SLOS)]
    return len(items) == count and len(judged) == count


def _reached(moment: float) -> bool:
    return time.monotonic() >= moment


def _counters(operator: OperatorProcess) -> stats.OperatorCounters:
    text = operator.metrics()
    if text is None:
        raise RuntimeError("the operator's /metrics did not answer")
    return stats.parse_operator_metrics(text)


def measure_clean(operator: OperatorProcess, cycles: int, eval_interval: float) -> dict[str, Any]:
    """:func:`measure`, repeated (up to :data:`ATTEMPTS` windows) while Prometheus fails queries.

    A cycle that cannot query Prometheus stops early (its remaining queries are not sent), so a
    window with query errors under-counts queries and cycle time; the shared sandbox's Prometheus
    is stopped now and then by other tests. Such windows are discarded and counted.
    """
    discarded = 0
    while True:
        waiting.until(lambda: _counters(operator).metrics_available, 180, "the operator to query Prometheus again")
        result = measure(operator, cycles, eval_interval)
        if not result["queryErrors"] or discarded + 1 >= ATTEMPTS:
            return {**result, "discardedWindows": discarded}
        discarded += 1
        cluster.log(f"  {result['queryErrors']} Prometheus query error(s) in the window; measuring again")


def measure(operator: OperatorProcess, cycles: int, eval_interval: float) -> dict[str, Any]:
    """Sample RSS while the fleet loop completes ``cycles`` more cycles; the per-cycle costs."""
    before = _counters(operator)
    rss: list[float] = []

    def done() -> bool:
        sample = operator.rss_bytes()
        if sample is not None:
            rss.append(float(sample))
        return _counters(operator).loops - before.loops >= cycles

    started = time.monotonic()
    waiting.until(done, cycles * eval_interval * 4 + 60, f"{cycles} fleet-loop cycles", interval=SAMPLE_SECONDS)
    after = _counters(operator)
    cost = stats.cycle_cost(before, after)
    summary = stats.summarize(rss)
    return {
        "cycles": cost.cycles,
        "seconds": round(time.monotonic() - started, 3),
        "queriesPerCycle": cost.queries_per_cycle,
        "meanLoopSeconds": cost.mean_loop_seconds,
        "meanQuerySeconds": cost.mean_query_seconds,
        "queryErrors": cost.query_errors,
        "rssBytes": summary.median if summary else None,
        "rssMaxBytes": summary.max if summary else None,
        "rssSamples": len(rss),
    }


def run(ctx: Context) -> dict[str, Any]:
    cycles = 3 if ctx.quick else 6
    steps: list[dict[str, Any]] = []
    with ctx.namespace("cost") as ns, ctx.operator([ns], "cost") as operator:
        created = 0
        newest = time.monotonic()
        for size in FLEET_SIZES:
            cluster.log(f"cost: fleet of {size} ModelDeployment(s)")
            while created < size:
                ctx.kube.create(ns, cluster.MDS, _manifest(created))
                created += 1
                newest = time.monotonic()
            if size:
                waiting.until(functools.partial(_judged, ctx.kube, ns, size), 180, f"{size} deployments judged")
                # Every revision older than the longest window: the steady set of windows.
                waiting.until(
                    functools.partial(_reached, newest + LONGEST_WINDOW_SECONDS + ctx.settings.eval_interval),
                    LONGEST_WINDOW_SECONDS + 120,
                    "the fleet to be older than its longest SLO window",
                    interval=1.0,
                )
            else:
                # Let the operator finish starting (its first cycles) before the baseline is taken.
                waiting.until(lambda: _counters(operator).loops >= 2, 60, "two fleet-loop cycles")
            result = {"n": size, **measure_clean(operator, cycles, ctx.settings.eval_interval)}
            cluster.log(
                f"  N={size}: RSS {(result['rssBytes'] or 0) / 2**20:.1f} MiB, "
                f"{result['queriesPerCycle']} queries/cycle, loop {(result['meanLoopSeconds'] or 0) * 1000:.1f} ms"
            )
            steps.append(result)
        environment = ctx.environment()
    return summarize(steps, environment)


def summarize(steps: list[dict[str, Any]], environment: dict[str, Any]) -> dict[str, Any]:
    """RSS over the N = 0 baseline, and per deployment added since the previous step (the marginal
    cost: the first step also pays one-time work, such as the first reconcile's imports and caches)."""
    base = next((s for s in steps if s["n"] == 0), None)
    previous: dict[str, Any] | None = None
    for step in steps:
        rss = step.get("rssBytes")
        step["rssOverBaselineBytes"] = None if base is None or rss is None else rss - (base.get("rssBytes") or 0)
        added = step["n"] - previous["n"] if previous is not None else 0
        before = previous.get("rssBytes") if previous is not None else None
        step["rssPerAddedDeploymentBytes"] = (
            (rss - before) / added if added > 0 and rss is not None and before is not None else None
        )
        previous = step
    fleet = [s["queriesPerCycle"] for s in steps if s["n"] > 0]
    return {
        "benchmark": "cost",
        "slos": SLOS,
        "steps": steps,
        "queriesConstant": stats.constant(fleet),
        "environment": environment,
    }
