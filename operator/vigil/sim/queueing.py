"""The per-pod tick model: a queue in front of a replica of limited capacity, and Triton's counters.

Each tick (typically 100 ms) a pod receives a number of arrivals and completes at most
``capacity x dt`` requests; the rest wait in its queue (``nv_inference_pending_request_count``).
A request's queue time is the time to drain what was already waiting plus an M/M/1 contention
term from the smoothed utilisation, so latency rises smoothly as load approaches capacity and
grows without bound (tick after tick) once load exceeds it. Halving the replicas doubles each
pod's load, which is the effect the operator must see and fix.

Per-request latencies are sampled in vectors (numpy) only for the requests completed in a tick,
so cost grows with throughput, not with the number of asyncio tasks. The accounting follows
Triton: durations, the first-response histogram and execution counts cover successful requests
only; failures are counted by reason (BACKEND from the error ratio, REJECTED when a bounded queue
overflows). A pod with several GPUs has one model instance per GPU, hence one series per
``gpu_uuid``, and requests are spread over them.
"""

from __future__ import annotations

import dataclasses
import math
import uuid

import numpy as np

from vigil.sim import behaviour

REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")
EWMA_SECONDS = 1.0
MAX_CONTENTION_UTILISATION = 0.95
OVERHEAD_SECONDS = 0.0002
# Shares of compute time spent copying inputs, running the model, and copying outputs.
INPUT_SHARE, INFER_SHARE, OUTPUT_SHARE = 0.04, 0.93, 0.03
COMPUTE_SIGMA = 0.25
QUEUE_SHAPE = 4.0
IDLE_POWER_SHARE = 0.18
CPU_MEMORY_TOTAL_BYTES = 512 * behaviour.GIB
CPU_MEMORY_BASE_BYTES = 24 * behaviour.GIB


@dataclasses.dataclass
class Counters:
    """Triton's cumulative per-model counters for one model instance (one ``gpu_uuid``)."""

    buckets: int
    success: int = 0
    failure: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    inference_count: int = 0
    exec_count: int = 0
    request_duration_us: float = 0.0
    queue_duration_us: float = 0.0
    compute_input_duration_us: float = 0.0
    compute_infer_duration_us: float = 0.0
    compute_output_duration_us: float = 0.0
    histogram_sum_ms: float = 0.0
    histogram_counts: list[int] = dataclasses.field(default_factory=list)
    """Per bucket, not cumulative; the last entry is +Inf."""

    def __post_init__(self) -> None:
        if not self.histogram_counts:
            self.histogram_counts = [0] * (self.buckets + 1)


@dataclasses.dataclass
class Gpu:
    uuid: str
    utilization: float = 0.0
    memory_used_bytes: float = 0.0
    power_watts: float = 0.0
    energy_joules: float = 0.0


@dataclasses.dataclass
class PodState:
    """One Triton process: its queue and its counters. A restarted process is a new PodState."""

    buckets_ms: tuple[float, ...]
    instances: list[Counters]
    gpus: list[Gpu]
    backlog: int = 0
    credit: float = 0.0
    arrival_rate: float = 0.0
    busy: float = 0.0
    batch: float = 1.0
    cpu_utilization: float = 0.0
    cpu_memory_used_bytes: float = float(CPU_MEMORY_BASE_BYTES)
    last_inference_ms: int = 0
    last_queue_seconds: float = 0.0
    last_latency_seconds: float = 0.0

    @property
    def pending(self) -> int:
        return self.backlog

    def total(self, field: str) -> float:
        return float(sum(getattr(counters, field) for counters in self.instances))

    def failures(self) -> dict[str, int]:
        totals = dict.fromkeys(REASONS, 0)
        for counters in self.instances:
            for reason, count in counters.failure.items():
                totals[reason] += count
        return totals


def gpu_uuid(seed: str, index: int) -> str:
    """A stable GPU UUID per pod incarnation and GPU index, in nvidia-smi's ``GPU-...`` form."""
    return "GPU-" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"vigil-sim/{seed}/{index}"))


def new_pod_state(seed: str, gpus: int, settings: behaviour.Behaviour) -> PodState:
    """A freshly started Triton: counters at zero, GPU memory holding the model."""
    buckets = settings.histogram_buckets_ms
    devices = [gpu_uuid(seed, i) for i in range(gpus)]
    state = PodState(
        buckets_ms=buckets,
        instances=[Counters(buckets=len(buckets)) for _ in range(max(gpus, 1))],
        gpus=[Gpu(uuid=device) for device in devices],
    )
    _update_gauges(state, settings, 0.0)
    return state


@dataclasses.dataclass(frozen=True)
class TickResult:
    arrivals: int
    served: int
    success: int
    failure: dict[str, int]
    mean_queue_seconds: float
    mean_latency_seconds: float


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What happened to one directly sent request (KServe v2 infer)."""

    ok: bool
    reason: str | None
    latency_seconds: float


def _alpha(dt: float) -> float:
    return 1.0 - math.exp(-dt / EWMA_SECONDS)


def mean_wait(state: PodState, settings: behaviour.Behaviour, backlog: int) -> float:
    """Mean queue time (s) of a request that finds ``backlog`` requests ahead of it."""
    mu = settings.effective_capacity
    rho = min(state.arrival_rate / mu, MAX_CONTENTION_UTILISATION)
    contention = rho / (1.0 - rho) / mu
    return backlog / mu + contention


def _account(
    state: PodState,
    settings: behaviour.Behaviour,
    served: int,
    wait: float,
    rng: np.random.Generator,
    now_ms: int,
) -> tuple[int, int, float, float]:
    """Sample and record ``served`` executed requests; returns (success, failed, queue s, latency s sums)."""
    if served <= 0:
        return 0, 0, 0.0, 0.0
    queue = wait * rng.gamma(QUEUE_SHAPE, 1.0 / QUEUE_SHAPE, served) if wait > 0 else np.zeros(served)
    compute = settings.service_seconds * rng.lognormal(-(COMPUTE_SIGMA**2) / 2, COMPUTE_SIGMA, served)
    latency = queue + compute + OVERHEAD_SECONDS
    failed = rng.random(served) < settings.error_ratio if settings.error_ratio > 0 else np.zeros(served, dtype=bool)
    ok = ~failed
    count = len(state.instances)
    instance = rng.integers(0, count, served) if count > 1 else np.zeros(served, dtype=np.int64)

    def per_instance(values: np.ndarray | None, mask: np.ndarray) -> np.ndarray:
        return np.bincount(instance[mask], weights=None if values is None else values[mask], minlength=count)

    successes = per_instance(None, ok)
    failures = per_instance(None, failed)
    latency_us = per_instance(latency * 1e6, ok)
    queue_us = per_instance(queue * 1e6, ok)
    compute_us = per_instance(compute * 1e6, ok)
    latency_ms = latency[ok] * 1000.0
    # side="left": a latency equal to a bound belongs to that bucket (le is "less or equal").
    bucket = np.searchsorted(np.asarray(state.buckets_ms), latency_ms, side="left")
    width = len(state.buckets_ms) + 1
    histogram = np.bincount(instance[ok] * width + bucket, minlength=count * width).reshape(count, width)
    histogram_ms = per_instance(latency * 1000.0, ok)

    for index, counters in enumerate(state.instances):
        done = int(successes[index])
        counters.success += done
        counters.failure["BACKEND"] += int(failures[index])
        counters.exec_count += done
        counters.inference_count += round(done * state.batch)
        counters.request_duration_us += float(latency_us[index])
        counters.queue_duration_us += float(queue_us[index])
        counters.compute_input_duration_us += float(compute_us[index]) * INPUT_SHARE
        counters.compute_infer_duration_us += float(compute_us[index]) * INFER_SHARE
        counters.compute_output_duration_us += float(compute_us[index]) * OUTPUT_SHARE
        counters.histogram_sum_ms += float(histogram_ms[index])
        for slot in range(width):
            counters.histogram_counts[slot] += int(histogram[index, slot])
    state.last_inference_ms = now_ms
    success = int(ok.sum())
    return success, served - success, float(queue[ok].sum()), float(latency[ok].sum())


def _reject(state: PodState, count: int) -> None:
    """Queue overflow: Triton rejects on arrival; spread over instances round-robin."""
    for index in range(count):
        state.instances[index % len(state.instances)].failure["REJECTED"] += 1


def _update_gauges(state: PodState, settings: behaviour.Behaviour, dt: float) -> None:
    limit = settings.gpu_power_limit_watts
    power = limit * (IDLE_POWER_SHARE + (1.0 - IDLE_POWER_SHARE) * 0.9 * state.busy)
    used = settings.gpu_memory_total_bytes * min(0.99, settings.gpu_memory_utilization + 0.04 * state.busy)
    for gpu in state.gpus:
        gpu.utilization = state.busy
        gpu.memory_used_bytes = used
        gpu.power_watts = power
        gpu.energy_joules += power * dt
    state.cpu_utilization = 0.04 + 0.25 * state.busy
    state.cpu_memory_used_bytes = CPU_MEMORY_BASE_BYTES + 8 * behaviour.GIB * state.busy


def step(
    state: PodState,
    arrivals: int,
    dt: float,
    settings: behaviour.Behaviour,
    rng: np.random.Generator,
    batch: float = 1.0,
    now_ms: int = 0,
) -> TickResult:
    """Advance one pod by ``dt`` seconds with ``arrivals`` new requests (``batch`` inferences each)."""
    if dt <= 0:
        raise ValueError("dt must be > 0")
    alpha = _alpha(dt)
    mu = settings.effective_capacity
    if arrivals > 0:
        state.batch = batch
    state.arrival_rate += alpha * (arrivals / dt - state.arrival_rate)

    waiting_before = state.backlog
    queued = waiting_before + arrivals
    available = state.credit + mu * dt
    served = min(queued, math.floor(available))
    # Idle capacity does not bank up: at most one request's worth carries to the next tick.
    state.credit = min(available - served, 1.0)
    backlog = queued - served
    rejected = 0
    if settings.max_queue > 0 and backlog > settings.max_queue:
        rejected = backlog - settings.max_queue
        backlog = settings.max_queue
        _reject(state, rejected)
    state.backlog = backlog

    wait = mean_wait(state, settings, waiting_before)
    success, failed, queue_sum, latency_sum = _account(state, settings, served, wait, rng, now_ms)
    state.busy += alpha * (min(served / (mu * dt), 1.0) - state.busy)
    _update_gauges(state, settings, dt)
    if success:
        state.last_queue_seconds = queue_sum / success
        state.last_latency_seconds = latency_sum / success
    elif served == 0 and backlog == 0:
        state.last_queue_seconds = 0.0
    return TickResult(
        arrivals=arrivals,
        served=served,
        success=success,
        failure={"BACKEND": failed, "REJECTED": rejected},
        mean_queue_seconds=state.last_queue_seconds,
        mean_latency_seconds=state.last_latency_seconds,
    )


def serve_one(state: PodState, settings: behaviour.Behaviour, rng: np.random.Generator, now_ms: int = 0) -> Outcome:
    """One request sent straight to the pod (KServe v2 infer), behind whatever is queued."""
    if settings.max_queue > 0 and state.backlog >= settings.max_queue:
        _reject(state, 1)
        return Outcome(ok=False, reason="REJECTED", latency_seconds=0.0)
    wait = mean_wait(state, settings, state.backlog)
    success, _, _, latency = _account(state, settings, 1, wait, rng, now_ms)
    if success:
        return Outcome(ok=True, reason=None, latency_seconds=latency)
    return Outcome(ok=False, reason="BACKEND", latency_seconds=settings.service_seconds)
