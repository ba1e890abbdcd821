"""The per-pod queue: a Triton replica with a few parallel execution slots, and Triton's counters.

A replica runs up to ``concurrency`` requests at once (Triton's model instances, or the batches
in flight); every other request waits first come, first served in its queue
(``nv_inference_pending_request_count``). The queue is simulated request by request, in event
time: each arrival has its own moment inside the tick, takes the slot that frees first, and
completes ``service`` seconds after it starts; the counters move when a request completes. So the
queue is exactly a G/G/c queue: with Poisson arrivals and exponential service times (the default,
``service_cv`` 1) it is M/M/c, and its mean waiting time is the Erlang C value at any request rate
(:func:`erlang_c_wait`; a unit test sweeps 1 to 200 req/s per replica). It is work-conserving: a
slot never idles while a request waits, idle capacity never banks up for a later burst, and a
burst drains at exactly the replica's capacity.

A request's service time has mean ``concurrency / capacity`` (so a busy replica completes
``capacity`` requests per second) times its size factor (a replayed trace's size column, e.g.
tokens, normalised to mean 1), so LLM-shaped work with a few long requests is modelled. The
accounting follows Triton: durations, the first-response histogram and execution counts cover
successful requests only; failures are counted by reason (BACKEND from the error ratio, REJECTED
when a bounded queue is full on arrival). A pod with several GPUs has one model instance per GPU,
hence one series per ``gpu_uuid``; completed requests are spread over them.

Cost grows with requests (a heap operation or two each), not with asyncio tasks or pods.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import math
import uuid

import numpy as np

from vigil.sim import behaviour

REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")
EWMA_SECONDS = 1.0
OVERHEAD_SECONDS = 0.0002
# Shares of compute time spent copying inputs, running the model, and copying outputs.
INPUT_SHARE, INFER_SHARE, OUTPUT_SHARE = 0.04, 0.93, 0.03
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


@dataclasses.dataclass(frozen=True)
class Incoming:
    """Requests arriving at one pod during one tick, in arrival order.

    ``offsets``: seconds after the tick's start (sorted); ``sizes``: service-time factors (mean 1
    over a trace); ``batch``: inferences per request.
    """

    offsets: np.ndarray
    sizes: np.ndarray
    batch: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets)

    @classmethod
    def uniform(cls, count: int, dt: float, rng: np.random.Generator, batch: float = 1.0) -> Incoming:
        """``count`` requests at independent uniform moments of the tick (Poisson arrivals given the count)."""
        return cls(np.sort(rng.uniform(0.0, dt, count)), np.ones(count), np.full(count, batch))

    @classmethod
    def merge(cls, parts: list[Incoming]) -> Incoming:
        if len(parts) == 1:
            return parts[0]
        offsets = np.concatenate([p.offsets for p in parts])
        order = np.argsort(offsets, kind="stable")
        return cls(
            offsets[order],
            np.concatenate([p.sizes for p in parts])[order],
            np.concatenate([p.batch for p in parts])[order],
        )


# One admitted request: (arrival, start, service seconds, inferences, counted on completion).
# A plain tuple: the hot loop creates one per request. A direct request is counted when sent.
Request = tuple[float, float, float, float, bool]


@dataclasses.dataclass
class PodState:
    """One Triton process: its execution slots, its queue and its counters.

    A restarted process is a new PodState. ``clock`` is the process's own time (seconds since it
    started); every scheduled moment below is on that clock.
    """

    buckets_ms: tuple[float, ...]
    instances: list[Counters]
    gpus: list[Gpu]
    clock: float = 0.0
    slots: list[float] = dataclasses.field(default_factory=list)
    """Heap: the moment each execution slot is next free."""
    queued: collections.deque[Request] = dataclasses.field(default_factory=collections.deque)
    """Admitted requests in admission order, which is start order (first come, first served);
    those at the front may have started since (:func:`_started`)."""
    executing: list[Request] = dataclasses.field(default_factory=list)
    """Requests started and not yet counted as completed."""
    busy: float = 0.0
    cpu_utilization: float = 0.0
    cpu_memory_used_bytes: float = float(CPU_MEMORY_BASE_BYTES)
    last_inference_ms: int = 0
    last_queue_seconds: float = 0.0
    last_latency_seconds: float = 0.0

    @property
    def pending(self) -> int:
        """Requests queued, not yet executing, at ``clock``."""
        _started(self, self.clock)
        return len(self.queued)

    @property
    def idle(self) -> bool:
        """Nothing queued or executing: stepping it only lets time pass."""
        return not self.queued and not self.executing

    @property
    def in_flight(self) -> int:
        """Requests admitted (queued or executing) and not yet completed."""
        return sum(1 for request in self.executing if request[4]) + sum(1 for request in self.queued if request[4])

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
    """A freshly started Triton: counters at zero, idle slots, GPU memory holding the model."""
    buckets = settings.histogram_buckets_ms
    devices = [gpu_uuid(seed, i) for i in range(gpus)]
    state = PodState(
        buckets_ms=buckets,
        instances=[Counters(buckets=len(buckets)) for _ in range(max(gpus, 1))],
        gpus=[Gpu(uuid=device) for device in devices],
        slots=[0.0] * settings.slots,
    )
    _update_gauges(state, settings, 0.0)
    return state


def erlang_c_wait(arrival_rate: float, service_seconds: float, servers: int) -> float:
    """Mean time in queue (s) of an M/M/c queue: Erlang C probability of waiting over (c mu - lambda).

    ``inf`` at or above saturation. Computed with the stable Erlang B recursion.
    """
    if arrival_rate < 0 or service_seconds <= 0 or servers < 1:
        raise ValueError("need arrival_rate >= 0, service_seconds > 0, servers >= 1")
    offered = arrival_rate * service_seconds
    if offered >= servers:
        return math.inf
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = offered * blocking / (k + offered * blocking)
    utilisation = offered / servers
    waiting_probability = blocking / (1.0 - utilisation + utilisation * blocking)
    return waiting_probability * service_seconds / (servers - offered)


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


def _started(state: PodState, moment: float) -> None:
    """Move the requests that have started by ``moment`` from the queue to the executing list."""
    queued, executing = state.queued, state.executing
    while queued and queued[0][1] <= moment:
        executing.append(queued.popleft())


def _resize(state: PodState, slots: int, moment: float) -> None:
    """Match the slot count to the behaviour (a fault can change capacity or concurrency)."""
    if len(state.slots) == slots:
        return
    if len(state.slots) < slots:
        state.slots.extend([moment] * (slots - len(state.slots)))
    else:
        # Keep the slots that free first; work already scheduled on the others still completes.
        state.slots = heapq.nsmallest(slots, state.slots)
    heapq.heapify(state.slots)


def _service_times(settings: behaviour.Behaviour, sizes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-request service time: mean ``settings.mean_service_seconds`` x size, coefficient of variation ``service_cv``."""
    mean = settings.mean_service_seconds * sizes
    cv = settings.service_cv
    if cv <= 0:
        return mean
    shape = 1.0 / (cv * cv)
    return mean * rng.gamma(shape, 1.0 / shape, len(sizes))


def _schedule(
    state: PodState,
    start: float,
    offsets: list[float],
    services: list[float],
    batch: list[float],
    bound: int,
    track: bool = True,
) -> tuple[float, int, float]:
    """Admit requests first come, first served, each on the slot that frees first.

    Returns (idle slot time since ``start`` that arrivals ended, rejected, start of the last
    admitted request). ``track``: keep the requests until they complete (counted then).
    """
    slots, queued, executing = state.slots, state.queued, state.executing
    idle, rejected, begun = 0.0, 0, start
    # The hot loop, one pass per request: no function calls but the heap's, no attribute lookups.
    for offset, service, inferences in zip(offsets, services, batch, strict=True):
        arrival = start + offset
        if bound > 0:
            while queued and queued[0][1] <= arrival:
                executing.append(queued.popleft())
            if len(queued) >= bound:
                rejected += 1
                continue
        free = slots[0]
        if arrival >= free:
            begun = arrival
            idle += arrival - (free if free > start else start)
        else:
            begun = free
        heapq.heapreplace(slots, begun + service)
        queued.append((arrival, begun, service, inferences, track))
    return idle, rejected, begun


def _account(
    state: PodState,
    settings: behaviour.Behaviour,
    queue: np.ndarray,
    compute: np.ndarray,
    batch: np.ndarray,
    rng: np.random.Generator,
    now_ms: int,
) -> tuple[int, int, float, float]:
    """Record completed requests; returns (success, failed, queue s, latency s sums of the successes)."""
    served = len(queue)
    if served <= 0:
        return 0, 0, 0.0, 0.0
    latency = queue + compute + OVERHEAD_SECONDS
    failed = rng.random(served) < settings.error_ratio if settings.error_ratio > 0 else np.zeros(served, dtype=bool)
    ok = ~failed
    count = len(state.instances)
    instance = rng.integers(0, count, served) if count > 1 else np.zeros(served, dtype=np.int64)

    def per_instance(values: np.ndarray | None, mask: np.ndarray) -> np.ndarray:
        return np.bincount(instance[mask], weights=None if values is None else values[mask], minlength=count)

    successes = per_instance(None, ok)
    failures = per_instance(None, failed)
    inferences = per_instance(batch, ok)
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
        counters.inference_count += round(float(inferences[index]))
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
    arrivals: int | Incoming,
    dt: float,
    settings: behaviour.Behaviour,
    rng: np.random.Generator,
    batch: float = 1.0,
    now_ms: int = 0,
) -> TickResult:
    """Advance one pod by ``dt`` seconds with these arrivals.

    ``arrivals`` is either the requests with their moments and sizes, or a count of unit-size
    requests arriving at uniform moments of the tick (``batch`` inferences each).
    """
    if dt <= 0:
        raise ValueError("dt must be > 0")
    incoming = arrivals if isinstance(arrivals, Incoming) else Incoming.uniform(arrivals, dt, rng, batch)
    start, end = state.clock, state.clock + dt
    _resize(state, settings.slots, start)
    services = _service_times(settings, incoming.sizes, rng)
    idle, rejected, _ = _schedule(
        state, start, incoming.offsets.tolist(), services.tolist(), incoming.batch.tolist(), settings.max_queue
    )
    if rejected:
        _reject(state, rejected)

    _started(state, end)
    done = [request for request in state.executing if request[1] + request[2] <= end]
    if done:
        state.executing = [request for request in state.executing if request[1] + request[2] > end]
        table = np.asarray([request for request in done if request[4]], dtype=float).reshape(-1, 5)
        queue, compute, inferences_done = table[:, 1] - table[:, 0], table[:, 2], table[:, 3]
    else:
        queue = compute = inferences_done = np.zeros(0)
    success, failed, queue_sum, latency_sum = _account(state, settings, queue, compute, inferences_done, rng, now_ms)

    idle += sum(end - max(free, start) for free in state.slots if free < end)
    # Rounded: an idle tick's idle time equals its length only up to floating-point error.
    utilisation = min(max(round(1.0 - idle / (len(state.slots) * dt), 9), 0.0), 1.0)
    state.busy += (1.0 - math.exp(-dt / EWMA_SECONDS)) * (utilisation - state.busy)
    state.clock = end
    _update_gauges(state, settings, dt)
    if success:
        state.last_queue_seconds = queue_sum / success
        state.last_latency_seconds = latency_sum / success
    elif not state.queued and not state.executing:
        state.last_queue_seconds = 0.0
    return TickResult(
        arrivals=len(incoming),
        served=len(queue),
        success=success,
        failure={"BACKEND": failed, "REJECTED": rejected},
        mean_queue_seconds=state.last_queue_seconds,
        mean_latency_seconds=state.last_latency_seconds,
    )


def serve_one(state: PodState, settings: behaviour.Behaviour, rng: np.random.Generator, now_ms: int = 0) -> Outcome:
    """One request sent straight to the pod (KServe v2 infer) now, behind whatever is queued.

    It takes its place in the queue and a slot like any other request; it is counted at once,
    since its answer (after the returned latency) is decided now.
    """
    arrival = state.clock
    _resize(state, settings.slots, arrival)
    service = float(_service_times(settings, np.ones(1), rng)[0])
    _, rejected, begun = _schedule(state, arrival, [0.0], [service], [1.0], settings.max_queue, track=False)
    if rejected:
        _reject(state, 1)
        return Outcome(ok=False, reason="REJECTED", latency_seconds=0.0)
    success, _, _, latency = _account(
        state, settings, np.array([begun - arrival]), np.array([service]), np.ones(1), rng, now_ms
    )
    if success:
        return Outcome(ok=True, reason=None, latency_seconds=latency)
    return Outcome(ok=False, reason="BACKEND", latency_seconds=begun - arrival + service)
