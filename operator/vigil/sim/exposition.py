"""Triton's metric families for one simulated pod, exposed through prometheus_client.

Names, types, help texts and labels follow Triton's own ``/metrics``: per-model series carry
``model`` and ``version`` (plus ``gpu_uuid`` when the instance is on a GPU, one series per GPU),
GPU gauges carry ``gpu_uuid``, CPU gauges carry nothing. Each pod gets its own
``CollectorRegistry`` with a custom collector that reads the pod's counters at scrape time.

Two details keep PromQL written against real Triton valid here:

- Triton (prometheus-cpp) names counters without the ``_total`` suffix that prometheus_client
  always appends; the rendered text drops that suffix again for Triton's counter families.
- Histogram bounds are written as prometheus-cpp writes them (``le="500"``, not ``"500.0"``);
  Prometheus 2.x does not normalise ``le``, so ``_bucket{le="500"}`` must match literally.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator

import prometheus_client
import prometheus_client.metrics_core
import prometheus_client.registry

from vigil.sim import queueing

PER_MODEL_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("nv_inference_request_success", "Number of successful inference requests, all batch sizes", "success"),
    ("nv_inference_count", "Number of inferences performed (does not include cached requests)", "inference_count"),
    (
        "nv_inference_exec_count",
        "Number of model executions performed (does not include cached requests)",
        "exec_count",
    ),
    (
        "nv_inference_request_duration_us",
        "Cumulative inference request duration in microseconds (includes cached requests)",
        "request_duration_us",
    ),
    (
        "nv_inference_queue_duration_us",
        "Cumulative inference queuing duration in microseconds (includes cached requests)",
        "queue_duration_us",
    ),
    (
        "nv_inference_compute_input_duration_us",
        "Cumulative compute input duration in microseconds (does not include cached requests)",
        "compute_input_duration_us",
    ),
    (
        "nv_inference_compute_infer_duration_us",
        "Cumulative compute inference duration in microseconds (does not include cached requests)",
        "compute_infer_duration_us",
    ),
    (
        "nv_inference_compute_output_duration_us",
        "Cumulative inference compute output duration in microseconds (does not include cached requests)",
        "compute_output_duration_us",
    ),
)
FAILURE = "nv_inference_request_failure"
ENERGY = "nv_energy_consumption"
COUNTER_NAMES = frozenset([name for name, _, _ in PER_MODEL_COUNTERS] + [FAILURE, ENERGY])
HISTOGRAM = "nv_inference_first_response_histogram_ms"

_TOTAL_SUFFIX = re.compile(r"^(# (?:HELP|TYPE) )?(nv_[a-z_]+)_total(?=[ {])", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class PodView:
    """What a scrape needs: the pod's counters and the identity of the model it serves."""

    state: queueing.PodState
    model: str
    version: str
    load_seconds: float
    gpu_memory_total_bytes: int
    gpu_power_limit_watts: float


def format_bound(bound: float) -> str:
    """A histogram bound as prometheus-cpp prints it: ``100``, ``2.5``."""
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


def families(view: PodView) -> Iterator[prometheus_client.metrics_core.Metric]:
    """Every Triton metric family of one pod, from its current counters."""
    state = view.state
    on_gpu = bool(state.gpus)
    names = ["model", "version", "gpu_uuid"] if on_gpu else ["model", "version"]

    def instance_labels(index: int) -> list[str]:
        base = [view.model, view.version]
        return [*base, state.gpus[index].uuid] if on_gpu else base

    failure = prometheus_client.metrics_core.CounterMetricFamily(
        FAILURE, "Number of failed inference requests, all batch sizes", labels=[*names, "reason"]
    )
    for index, counters in enumerate(state.instances):
        for reason in queueing.REASONS:
            failure.add_metric([*instance_labels(index), reason], counters.failure[reason])
    yield failure

    for name, documentation, field in PER_MODEL_COUNTERS:
        family = prometheus_client.metrics_core.CounterMetricFamily(name, documentation, labels=names)
        for index, counters in enumerate(state.instances):
            family.add_metric(instance_labels(index), float(getattr(counters, field)))
        yield family

    pending = prometheus_client.metrics_core.GaugeMetricFamily(
        "nv_inference_pending_request_count",
        "Instantaneous number of pending requests awaiting execution per-model.",
        labels=names,
    )
    share, remainder = divmod(state.pending, len(state.instances))
    for index in range(len(state.instances)):
        pending.add_metric(instance_labels(index), share + (1 if index < remainder else 0))
    yield pending

    histogram = prometheus_client.metrics_core.HistogramMetricFamily(
        HISTOGRAM, "Duration from request to first response in milliseconds", labels=names
    )
    for index, counters in enumerate(state.instances):
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip([*state.buckets_ms, float("inf")], counters.histogram_counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else format_bound(bound), cumulative))
        histogram.add_metric(instance_labels(index), buckets, counters.histogram_sum_ms)
    yield histogram

    load = prometheus_client.metrics_core.GaugeMetricFamily(
        "nv_model_load_duration_secs", "Model load time in seconds", labels=["model", "version"]
    )
    load.add_metric([view.model, view.version], view.load_seconds)
    yield load

    if on_gpu:
        yield from _gpu_families(view)
    yield from _cpu_families(state)


def _gpu_families(view: PodView) -> Iterator[prometheus_client.metrics_core.Metric]:
    gauges: tuple[tuple[str, str, Callable[[queueing.Gpu], float]], ...] = (
        ("nv_gpu_utilization", "GPU utilization rate [0.0 - 1.0)", lambda gpu: gpu.utilization),
        ("nv_gpu_memory_total_bytes", "GPU total memory, in bytes", lambda gpu: float(view.gpu_memory_total_bytes)),
        ("nv_gpu_memory_used_bytes", "GPU used memory, in bytes", lambda gpu: gpu.memory_used_bytes),
        ("nv_gpu_power_usage", "GPU power usage in watts", lambda gpu: gpu.power_watts),
        ("nv_gpu_power_limit", "GPU power management limit in watts", lambda gpu: view.gpu_power_limit_watts),
    )
    for name, documentation, read in gauges:
        family = prometheus_client.metrics_core.GaugeMetricFamily(name, documentation, labels=["gpu_uuid"])
        for gpu in view.state.gpus:
            family.add_metric([gpu.uuid], read(gpu))
        yield family
    energy = prometheus_client.metrics_core.CounterMetricFamily(
        ENERGY, "GPU energy consumption in joules since the Triton Server started", labels=["gpu_uuid"]
    )
    for gpu in view.state.gpus:
        energy.add_metric([gpu.uuid], gpu.energy_joules)
    yield energy


def _cpu_families(state: queueing.PodState) -> Iterator[prometheus_client.metrics_core.Metric]:
    yield prometheus_client.metrics_core.GaugeMetricFamily(
        "nv_cpu_utilization", "CPU utilization rate [0.0 - 1.0]", value=state.cpu_utilization
    )
    yield prometheus_client.metrics_core.GaugeMetricFamily(
        "nv_cpu_memory_total_bytes", "CPU total memory (RAM), in bytes", value=float(queueing.CPU_MEMORY_TOTAL_BYTES)
    )
    yield prometheus_client.metrics_core.GaugeMetricFamily(
        "nv_cpu_memory_used_bytes", "CPU used memory (RAM), in bytes", value=state.cpu_memory_used_bytes
    )


class PodCollector(prometheus_client.registry.Collector):
    """Reads a pod's view at scrape time; the view function may change as faults change."""

    def __init__(self, view: Callable[[], PodView]) -> None:
        self._view = view

    def collect(self) -> Iterator[prometheus_client.metrics_core.Metric]:
        return families(self._view())


def registry_for(view: Callable[[], PodView]) -> prometheus_client.CollectorRegistry:
    registry = prometheus_client.CollectorRegistry(auto_describe=False)
    registry.register(PodCollector(view))
    return registry


def render(registry: prometheus_client.CollectorRegistry) -> bytes:
    """Prometheus text format as Triton writes it (counters without ``_total``)."""
    text = prometheus_client.generate_latest(registry).decode("utf-8")

    def strip(match: re.Match[str]) -> str:
        name = match.group(2)
        prefix = match.group(1) or ""
        return f"{prefix}{name}" if name in COUNTER_NAMES else match.group(0)

    return _TOTAL_SUFFIX.sub(strip, text).encode("utf-8")
