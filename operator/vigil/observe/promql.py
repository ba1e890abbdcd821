"""The PromQL text of the fleet's queries, and the parsing of their instant-vector results.

One evaluation cycle asks Prometheus a *fixed* set of questions for the whole fleet, never one
per deployment: for every window in use, one query per metric family, aggregated
``by (namespace, modeldeployment, revision)``. Fifty deployments cost the same number of queries
as one; only the number of distinct windows (and the families the SLO kinds need) matters.

The PromQL follows the pitfalls listed in the reference: ``rate()`` before ``sum()`` (a restarted
pod is a new series, and rate() handles each series' counter reset before they are added), ratios
of sums rather than averages of ratios (the division happens in :mod:`vigil.observe.slo`, from the
summed rates), and absent or NaN series are kept distinguishable from zero.

An operator scoped to some namespaces (a shard, see the README's "Sharding") adds a
``namespace=~"..."`` matcher naming the namespaces of its targets, so Prometheus selects, sums and
returns only that shard's series: each shard's queries cost what its own fleet costs, not the
cluster's. Past :data:`MAX_NAMESPACE_MATCHER` characters the matcher is left out (the answers are
then a superset, of which each target reads only its own rows).

Histogram buckets are fetched only at the thresholds SLOs use, with ``le`` matched both as Triton
writes it (``100``) and as Prometheus 3 normalises it (``100.0``); the parser reads ``le`` as a
number so either spelling meets the threshold.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import math
import re
import typing

from vigil import labels
from vigil.api import slo as sloapi

BY = (labels.PROM_NAMESPACE, labels.PROM_DEPLOYMENT, labels.PROM_REVISION)
# Only series that Prometheus relabelled onto a ModelDeployment are vigil's business.
MANAGED = f'{labels.PROM_DEPLOYMENT}!=""'
MAX_NAMESPACE_MATCHER = 8192
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class Family(enum.StrEnum):
    """A metric family the fleet queries, each one query per window (or one instant query)."""

    SUCCESS = "success"
    FAILURE = "failure"
    DURATION = "duration"
    QUEUE = "queue"
    BUCKET = "bucket"
    COUNT = "count"
    GPU_MEMORY = "gpuMemory"
    PENDING = "pending"
    BUSY = "busy"
    """Replicas' worth of busy time: each pod's mean ``nv_gpu_utilization`` over the window, summed."""
    QUEUE_GROWTH = "queueGrowth"
    """How fast the queued requests grow (req/s): ``deriv`` of the pending gauge over the window."""


METRIC = {
    Family.SUCCESS: "nv_inference_request_success",
    Family.FAILURE: "nv_inference_request_failure",
    Family.DURATION: "nv_inference_request_duration_us",
    Family.QUEUE: "nv_inference_queue_duration_us",
    Family.BUCKET: "nv_inference_first_response_histogram_ms_bucket",
    Family.COUNT: "nv_inference_first_response_histogram_ms_count",
    Family.PENDING: "nv_inference_pending_request_count",
    Family.BUSY: "nv_gpu_utilization",
    Family.QUEUE_GROWTH: "nv_inference_pending_request_count",
}
GPU_MEMORY_USED = "nv_gpu_memory_used_bytes"
GPU_MEMORY_TOTAL = "nv_gpu_memory_total_bytes"


class Need(typing.NamedTuple):
    """One question: a family over a window in seconds (``None`` for instant gauges), ending
    ``offset`` seconds ago (``offset`` in PromQL: the window before another one).

    Needs and series keys are named tuples rather than frozen dataclasses because they are dict
    keys looked up for every revision and window: tuple hashing runs in C.
    """

    family: Family
    window: int | None = None
    offset: int = 0


@dataclasses.dataclass(frozen=True)
class Query:
    need: Need
    expr: str


class SeriesKey(typing.NamedTuple):
    """The labels an aggregated series is identified by (``le`` for histogram buckets only)."""

    namespace: str
    modeldeployment: str
    revision: str
    le: float | None = None


Vector = dict[SeriesKey, float]
Results = collections.abc.Mapping[Need, Vector]


class BadResponse(ValueError):
    """A query answered with something that is not an instant vector."""


def _by(*extra: str) -> str:
    return ", ".join((*BY, *extra))


def le_values(threshold_ms: float) -> tuple[str, ...]:
    """The spellings of a bucket boundary: ``100`` and ``100.0`` for whole numbers."""
    if float(threshold_ms).is_integer():
        whole = str(int(threshold_ms))
        return (whole, f"{whole}.0")
    return (repr(float(threshold_ms)),)


def le_matcher(thresholds_ms: collections.abc.Iterable[float]) -> str:
    """A PromQL ``le=~"..."`` matcher selecting the buckets at ``thresholds_ms``."""
    spellings = sorted({s for t in thresholds_ms for s in le_values(t)}, key=lambda s: (float(s), s))
    if not spellings:
        raise ValueError("a bucket query needs at least one threshold")
    pattern = "|".join(re.escape(s) for s in spellings)
    # PromQL string literals take backslash escapes, so the regex backslashes are doubled.
    return 'le=~"' + pattern.replace("\\", "\\\\") + '"'


def namespace_matcher(namespaces: collections.abc.Iterable[str]) -> str | None:
    """A ``namespace=~"a|b"`` matcher for exactly these namespaces; None when it would be too long."""
    # Namespace names are DNS labels, plain in a regex; anything else is escaped, and the regex
    # backslashes doubled for the PromQL string literal.
    names = sorted(set(namespaces))
    pattern = "|".join(name if _DNS_LABEL.fullmatch(name) else re.escape(name) for name in names)
    pattern = pattern.replace("\\", "\\\\")
    matcher = f'{labels.PROM_NAMESPACE}=~"{pattern}"'
    return matcher if len(matcher) <= MAX_NAMESPACE_MATCHER else None


def expression(
    need: Need,
    thresholds_ms: collections.abc.Iterable[float] = (),
    namespaces: collections.abc.Iterable[str] | None = None,
) -> str:
    """The PromQL of one question; with ``namespaces``, about those namespaces' series only."""
    matcher = None if namespaces is None else namespace_matcher(namespaces)
    managed = MANAGED if matcher is None else f"{MANAGED}, {matcher}"
    if need.family is Family.GPU_MEMORY:
        used = f"{GPU_MEMORY_USED}{{{managed}}}"
        total = f"{GPU_MEMORY_TOTAL}{{{managed}}}"
        # Used over total per GPU series first, then the fullest GPU: never mix two GPUs' gauges.
        return f"max by ({_by()}) ({used} / {total})"
    if need.family is Family.PENDING:
        return f"sum by ({_by()}) ({METRIC[need.family]}{{{managed}}})"
    if need.window is None:
        raise ValueError(f"{need.family} is a counter family and needs a window")
    window = sloapi.format_duration(need.window)
    if need.family is Family.BUSY:
        # A pod's GPUs averaged first (a 2-GPU pod is one replica), then the pods summed.
        busy = f"avg_over_time({METRIC[need.family]}{{{managed}}}[{window}])"
        return f"sum by ({_by()}) (avg by ({_by(labels.PROM_POD)}) ({busy}))"
    if need.family is Family.QUEUE_GROWTH:
        return f"sum by ({_by()}) (deriv({METRIC[need.family]}{{{managed}}}[{window}]))"
    ranged = f"[{window}]" + (f" offset {sloapi.format_duration(need.offset)}" if need.offset else "")
    if need.family is Family.BUCKET:
        selector = f"{{{managed}, {le_matcher(thresholds_ms)}}}"
        return f"sum by ({_by('le')}) (rate({METRIC[need.family]}{selector}{ranged}))"
    return f"sum by ({_by()}) (rate({METRIC[need.family]}{{{managed}}}{ranged}))"


def plan(
    needs: collections.abc.Iterable[Need],
    thresholds_ms: collections.abc.Iterable[float],
    namespaces: collections.abc.Iterable[str] | None = None,
) -> tuple[Query, ...]:
    """The queries answering ``needs``, one each, in a stable order (scoped to ``namespaces`` if given)."""
    thresholds = tuple(sorted(set(thresholds_ms)))
    scope = None if namespaces is None else tuple(sorted(set(namespaces)))
    return tuple(Query(need=n, expr=expression(n, thresholds, scope)) for n in sorted(set(needs), key=_order))


def _order(need: Need) -> tuple[int, int, str]:
    return (need.window or 0, need.offset, need.family.value)


def parse_vector(result: object) -> Vector:
    """Parse the ``data.result`` of an instant query into values by series.

    Values are kept as Prometheus gave them (NaN and +Inf included: the maths decides what they
    mean). Series without the relabelled identity labels are skipped. Two ``le`` spellings of one
    bucket (a Prometheus 3 migration) are the same bucket and are added up.

    Every answer of every cycle passes through here (a thousand series per query at 1,000
    deployments), so the well-formed element takes the shortest path: one ``try`` around plain
    indexing, the shape checks that indexing cannot make, and the labels read once.
    """
    if not isinstance(result, list):
        raise BadResponse(f"expected a vector, got {type(result).__name__}")
    vector: Vector = {}
    namespace_label, deployment_label, revision_label = BY
    for item in result:
        try:
            metric = item["metric"]
            value = item["value"]
            if type(metric) is not dict or type(value) is not list or len(value) != 2:
                raise TypeError("malformed")
            number = float(value[1])
            le = float(metric["le"]) if "le" in metric else None
        except (TypeError, ValueError, KeyError, IndexError) as error:
            raise _malformed(item) from error
        namespace = metric.get(namespace_label)
        deployment = metric.get(deployment_label)
        revision = metric.get(revision_label)
        if not (
            namespace
            and deployment
            and revision
            and type(namespace) is str
            and type(deployment) is str
            and type(revision) is str
        ):
            continue
        key = _new_key(SeriesKey, (namespace, deployment, revision, le))
        previous = vector.get(key)
        vector[key] = number if previous is None else previous + number
    return vector


# SeriesKey(...) runs a Python-level __new__ per call; the tuple constructor makes the same object
# (a fifth of parse_vector's time at 1,000 deployments, per py-spy).
_new_key = tuple.__new__


def _malformed(item: object) -> BadResponse:
    """Why a vector element was refused, in the words of the check it failed."""
    if not isinstance(item, dict):
        return BadResponse("vector element is not an object")
    metric, value = item.get("metric"), item.get("value")
    if not isinstance(metric, dict) or not isinstance(value, list) or len(value) != 2:
        return BadResponse(f"malformed vector element {item!r}")
    return BadResponse(f"malformed sample {item!r}")


def by_deployment(results: Results) -> dict[tuple[str, str], dict[Need, Vector]]:
    """The answers split by deployment: ``(namespace, modeldeployment)`` -> each need's series of it."""
    index: dict[tuple[str, str], dict[Need, Vector]] = {}
    for need, vector in results.items():
        for key, value in vector.items():
            deployment = index.get((key.namespace, key.modeldeployment))
            if deployment is None:
                deployment = index[(key.namespace, key.modeldeployment)] = {}
            series = deployment.get(need)
            if series is None:
                series = deployment[need] = {}
            series[key] = value
    return index


def finite(value: float | None) -> float | None:
    """``value`` if it is a real number, ``None`` for missing, NaN and infinities."""
    if value is None or not math.isfinite(value):
        return None
    return value
