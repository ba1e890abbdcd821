"""Pure statistics of the benchmarks: summaries of repeated runs, ratios, targets, per-cycle costs.

Nothing here does I/O, so every number the report shows is derived by code that has unit tests.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import parser


@dataclasses.dataclass(frozen=True)
class Summary:
    """Order statistics of repeated measurements (seconds unless said otherwise)."""

    n: int
    min: float
    median: float
    p90: float
    max: float
    mean: float

    def to_json(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks.

    The same definition as numpy's default (``method="linear"``): rank ``(n - 1) * q / 100``.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return ordered[low]
    fraction = rank - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def summarize(values: Iterable[float | None]) -> Summary | None:
    """min / median / p90 / max / mean of the finite values; None when there are none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    return Summary(
        n=len(finite),
        min=min(finite),
        median=percentile(finite, 50.0),
        p90=percentile(finite, 90.0),
        max=max(finite),
        mean=sum(finite) / len(finite),
    )


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or the denominator is not > 0."""
    if numerator is None or denominator is None or not denominator > 0:
        return None
    return numerator / denominator


def median_ratio(ours: Summary | None, theirs: Summary | None) -> float | None:
    """Ratio of medians (lower is better for times): vigil / baseline."""
    return ratio(ours.median if ours else None, theirs.median if theirs else None)


def detection_target(scrape_seconds: float, eval_seconds: float, scrapes: int = 2, evals: int = 1) -> float:
    """The detection target of the issue: 2 scrape intervals + 1 evaluation interval."""
    return scrapes * scrape_seconds + evals * eval_seconds


def meets_target(summary: Summary | None, target: float) -> bool:
    """Pass only when every run (the maximum) is within the target; no runs is a fail."""
    return summary is not None and summary.max <= target


def elapsed(start: float | None, end: float | None) -> float | None:
    """``end - start`` in seconds, or None if either moment was not observed."""
    if start is None or end is None:
        return None
    return end - start


# -- the operator's own /metrics ---------------------------------------------------------------

LOOP = "vigil_observe_loop_duration_seconds"
QUERY = "vigil_prometheus_query_duration_seconds"
ERRORS = "vigil_prometheus_query_errors"  # a counter: the parser drops the _total suffix
AVAILABLE = "vigil_observe_metrics_available"


@dataclasses.dataclass(frozen=True)
class OperatorCounters:
    """Cumulative histogram counts and sums scraped from the operator's /metrics at one moment,
    the failed queries so far, and whether the last cycle could query Prometheus."""

    loops: float
    loop_seconds: float
    queries: float
    query_seconds: float
    query_errors: float = 0.0
    metrics_available: bool = False


def parse_operator_metrics(text: str) -> OperatorCounters:
    """The fleet-loop and query histograms' ``_count`` and ``_sum``, the query errors (all reasons)
    and the metrics-available gauge, from Prometheus text format."""
    values: dict[str, float] = {}
    for family in parser.text_string_to_metric_families(text):
        if family.name not in (LOOP, QUERY, ERRORS, AVAILABLE):
            continue
        for sample in family.samples:
            if sample.name.endswith(("_count", "_sum", "_total")) or sample.name == AVAILABLE:
                values[sample.name] = values.get(sample.name, 0.0) + float(sample.value)
    return OperatorCounters(
        loops=values.get(f"{LOOP}_count", 0.0),
        loop_seconds=values.get(f"{LOOP}_sum", 0.0),
        queries=values.get(f"{QUERY}_count", 0.0),
        query_seconds=values.get(f"{QUERY}_sum", 0.0),
        query_errors=values.get(f"{ERRORS}_total", 0.0),
        metrics_available=values.get(AVAILABLE, 0.0) == 1.0,
    )


@dataclasses.dataclass(frozen=True)
class CycleCost:
    """What the fleet loop cost per evaluation cycle between two scrapes of /metrics."""

    cycles: int
    queries_per_cycle: float | None
    mean_loop_seconds: float | None
    mean_query_seconds: float | None
    query_errors: int = 0


def cycle_cost(before: OperatorCounters, after: OperatorCounters) -> CycleCost:
    """Per-cycle averages of the counter increases between ``before`` and ``after``."""
    cycles = after.loops - before.loops
    queries = after.queries - before.queries
    if cycles < 0 or queries < 0:
        raise ValueError("counters went backwards: the operator restarted between the two scrapes")
    return CycleCost(
        cycles=round(cycles),
        queries_per_cycle=ratio(queries, cycles),
        mean_loop_seconds=ratio(after.loop_seconds - before.loop_seconds, cycles),
        mean_query_seconds=ratio(after.query_seconds - before.query_seconds, queries),
        query_errors=round(after.query_errors - before.query_errors),
    )


def constant(values: Sequence[float | None], tolerance: float = 0.0) -> bool:
    """Whether all known values lie within ``tolerance`` of each other (and there is at least one)."""
    known = [v for v in values if v is not None]
    return bool(known) and max(known) - min(known) <= tolerance


def summaries(runs: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, Summary | None]:
    """One :class:`Summary` per key over the runs that recorded it (runs lacking it are skipped)."""
    return {key: summarize(run.get(key) for run in runs) for key in keys}


# -- the fleet benchmark: the API server's request counters and processes' CPU -------------------

REQUESTS = "apiserver_request"  # apiserver_request_total; the parser drops the _total suffix
RequestKind = tuple[str, str, str]
"""(verb, resource, subresource) of the API server's request counter."""


def parse_apiserver_requests(text: str) -> dict[RequestKind, float]:
    """``apiserver_request_total`` from the API server's /metrics, summed by verb, resource and
    subresource over every other label (group, version, scope, code, component...)."""
    counts: dict[RequestKind, float] = {}
    for family in parser.text_string_to_metric_families(text):
        if family.name != REQUESTS:
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            labels = sample.labels
            kind = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
            counts[kind] = counts.get(kind, 0.0) + float(sample.value)
    return counts


def increase(before: Mapping[RequestKind, float], after: Mapping[RequestKind, float]) -> dict[RequestKind, float]:
    """Per kind, how much a counter grew between two scrapes (kinds first seen later start at 0)."""
    grown = {kind: value - before.get(kind, 0.0) for kind, value in after.items()}
    if any(value < 0 for value in grown.values()):
        raise ValueError("the API server's counters went backwards: it restarted between the two scrapes")
    return {kind: value for kind, value in grown.items() if value > 0}


@dataclasses.dataclass(frozen=True)
class OperatorRequests:
    """The requests one client issues, from the API server's totals in two windows: one with the
    client running, one with it paused (everything else, the controllers and kwok, in both)."""

    per_second: float
    by_kind: dict[RequestKind, float]
    """Requests per second by (verb, resource, subresource), the largest first."""
    running_per_second: float
    paused_per_second: float

    def per_deployment_per_minute(self, deployments: int) -> float | None:
        return self.per_second * 60.0 / deployments if deployments > 0 else None


def operator_requests(
    running: Mapping[RequestKind, float],
    running_seconds: float,
    paused: Mapping[RequestKind, float],
    paused_seconds: float,
) -> OperatorRequests:
    """Running minus paused request rates (never below zero: the client cannot issue fewer than none)."""
    if running_seconds <= 0 or paused_seconds <= 0:
        raise ValueError("both windows must last longer than zero")
    kinds = set(running) | set(paused)
    rates = {k: running.get(k, 0.0) / running_seconds - paused.get(k, 0.0) / paused_seconds for k in kinds}
    by_kind = dict(sorted(((k, v) for k, v in rates.items() if v > 0), key=lambda item: -item[1]))
    total_running = sum(running.values()) / running_seconds
    total_paused = sum(paused.values()) / paused_seconds
    return OperatorRequests(
        per_second=max(0.0, total_running - total_paused),
        by_kind=by_kind,
        running_per_second=total_running,
        paused_per_second=total_paused,
    )


def proc_cpu_ticks(stat: str) -> int:
    """utime + stime of ``/proc/<pid>/stat`` (clock ticks; every thread of the process)."""
    fields = stat.rsplit(")", 1)[1].split()
    # After the command name: state is field 3 of the file, utime and stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


def core_fraction(ticks: float, seconds: float, ticks_per_second: float) -> float | None:
    """CPU time over wall time: 1.0 is one core busy the whole window."""
    if seconds <= 0 or ticks_per_second <= 0:
        return None
    return ticks / ticks_per_second / seconds


def machine_busy(before: str, after: str) -> float | None:
    """Fraction of all cores busy between two readings of /proc/stat's first ("cpu") line."""

    def parse(text: str) -> tuple[int, int]:
        values = [int(v) for v in text.split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values), idle

    total0, idle0 = parse(before)
    total1, idle1 = parse(after)
    total = total1 - total0
    return None if total <= 0 else (total - (idle1 - idle0)) / total
