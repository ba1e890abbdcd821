"""The per-pod queue model: capacity, queue time, failures, Triton's accounting, GPU gauges."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from vigil.sim import behaviour, queueing

DT = 0.1
SETTINGS = behaviour.Behaviour(capacity=100.0, base_latency_ms=20.0)


def fresh(settings: behaviour.Behaviour = SETTINGS, gpus: int = 1) -> queueing.PodState:
    return queueing.new_pod_state("seed", gpus, settings)


def run(
    state: queueing.PodState,
    rate: float,
    seconds: float,
    settings: behaviour.Behaviour = SETTINGS,
    seed: int = 7,
    batch: float = 1.0,
) -> list[queueing.TickResult]:
    rng = np.random.default_rng(seed)
    ticks = round(seconds / DT)
    return [queueing.step(state, int(rng.poisson(rate * DT)), DT, settings, rng, batch) for _ in range(ticks)]


def avg_queue_seconds(state: queueing.PodState) -> float:
    return state.total("queue_duration_us") / state.total("success") / 1e6


def test_a_new_pod_starts_at_zero() -> None:
    state = fresh(gpus=2)
    assert len(state.instances) == 2
    assert {gpu.uuid for gpu in state.gpus} == {queueing.gpu_uuid("seed", 0), queueing.gpu_uuid("seed", 1)}
    assert state.total("success") == 0
    assert state.failures() == dict.fromkeys(queueing.REASONS, 0)
    assert all(count == 0 for c in state.instances for count in c.histogram_counts)
    assert state.pending == 0


def test_below_capacity_the_queue_stays_short() -> None:
    state = fresh()
    results = run(state, rate=40, seconds=30)
    assert state.pending <= 2
    assert avg_queue_seconds(state) < 0.02
    assert state.total("success") == sum(r.arrivals for r in results) - state.in_flight


def test_above_capacity_the_queue_and_queue_time_grow() -> None:
    state = fresh()
    pending: list[int] = []
    waits: list[float] = []
    for window in range(4):
        queue_before, success_before = state.total("queue_duration_us"), state.total("success")
        run(state, rate=150, seconds=5, seed=window)
        pending.append(state.pending)
        # Average queue time over the window, as rate(queue_us) / rate(success) gives it.
        waits.append((state.total("queue_duration_us") - queue_before) / (state.total("success") - success_before))
    assert pending == sorted(pending)
    assert pending[-1] > pending[0] + 500
    assert waits == sorted(waits)
    assert waits[-1] / 1e6 > 10 * SETTINGS.service_seconds
    # Throughput is capped at capacity while the queue grows (exponential service times: +-2 %).
    assert state.total("success") == pytest.approx(SETTINGS.capacity * 20, rel=0.05)


def test_higher_utilisation_means_longer_queue_time() -> None:
    waits = []
    for rate in (20, 50, 80, 95):
        state = fresh()
        run(state, rate=rate, seconds=60)
        waits.append(avg_queue_seconds(state))
    assert waits == sorted(waits)
    assert waits[-1] > 4 * waits[0]


def test_latency_multiplier_slows_compute_and_cuts_capacity() -> None:
    slow = dataclasses.replace(SETTINGS, latency_multiplier=3.0)
    base, degraded = fresh(), fresh(slow)
    run(base, rate=20, seconds=30)
    run(degraded, rate=20, seconds=30, settings=slow)
    base_latency = base.total("request_duration_us") / base.total("success")
    slow_latency = degraded.total("request_duration_us") / degraded.total("success")
    assert slow_latency > 3 * base_latency
    assert slow.effective_capacity == pytest.approx(SETTINGS.capacity / 3)


def test_error_ratio_fails_that_share_with_reason_backend() -> None:
    settings = dataclasses.replace(SETTINGS, error_ratio=0.3)
    state = fresh(settings)
    run(state, rate=50, seconds=60, settings=settings)
    failures = state.failures()
    total = state.total("success") + failures["BACKEND"]
    assert failures["BACKEND"] / total == pytest.approx(0.3, abs=0.02)
    assert failures["REJECTED"] == failures["CANCELED"] == failures["OTHER"] == 0


def test_durations_and_histogram_count_successful_requests_only() -> None:
    settings = dataclasses.replace(SETTINGS, error_ratio=1.0)
    state = fresh(settings)
    run(state, rate=30, seconds=5, settings=settings)
    assert state.failures()["BACKEND"] > 100
    assert state.total("success") == 0
    for field in ("request_duration_us", "queue_duration_us", "compute_infer_duration_us", "exec_count"):
        assert state.total(field) == 0
    assert sum(state.instances[0].histogram_counts) == 0


def test_bounded_queue_rejects_the_overflow() -> None:
    settings = dataclasses.replace(SETTINGS, max_queue=50)
    state = fresh(settings)
    results = run(state, rate=300, seconds=10, settings=settings)
    assert state.pending <= 50
    rejected = state.failures()["REJECTED"]
    assert rejected == sum(r.failure["REJECTED"] for r in results)
    arrived = sum(r.arrivals for r in results)
    assert state.pending <= state.in_flight
    assert state.total("success") + rejected + state.in_flight == arrived


def test_counters_are_monotonic_and_consistent() -> None:
    settings = dataclasses.replace(SETTINGS, error_ratio=0.1, max_queue=30)
    state = fresh(settings, gpus=2)
    rng = np.random.default_rng(3)
    fields = ["success", "inference_count", "exec_count", "request_duration_us", "queue_duration_us"]
    previous = {field: 0.0 for field in fields}
    previous_failures = dict.fromkeys(queueing.REASONS, 0)
    for tick in range(300):
        rate = 250 if tick % 100 < 50 else 30  # bursts above capacity, then recovery
        queueing.step(state, int(rng.poisson(rate * DT)), DT, settings, rng)
        for field in fields:
            assert state.total(field) >= previous[field]
            previous[field] = state.total(field)
        failures = state.failures()
        assert all(failures[r] >= previous_failures[r] for r in queueing.REASONS)
        previous_failures = failures
    for counters in state.instances:
        assert sum(counters.histogram_counts) == counters.success
        assert counters.histogram_sum_ms == pytest.approx(counters.request_duration_us / 1000)
        compute = (
            counters.compute_input_duration_us
            + counters.compute_infer_duration_us
            + counters.compute_output_duration_us
        )
        assert counters.request_duration_us > counters.queue_duration_us + compute * 0.999


def test_requests_spread_over_gpu_instances() -> None:
    state = fresh(gpus=4)
    run(state, rate=60, seconds=30)
    per_instance = [counters.success for counters in state.instances]
    assert sum(per_instance) == state.total("success")
    assert min(per_instance) > 0.2 * sum(per_instance)


def test_batch_size_counts_inferences() -> None:
    state = fresh()
    run(state, rate=20, seconds=5, batch=4)
    assert state.total("inference_count") == 4 * state.total("success")
    assert state.total("exec_count") == state.total("success")


def test_histogram_buckets_are_configurable_and_inclusive() -> None:
    settings = dataclasses.replace(SETTINGS, histogram_buckets_ms=(10.0, 25.0, 50.0))
    state = fresh(settings)
    run(state, rate=50, seconds=10, settings=settings)
    counts = state.instances[0].histogram_counts
    assert len(counts) == 4
    assert sum(counts) == state.total("success")
    assert counts[1] > 0  # 20 ms compute lands mostly in (10, 25]


def test_gpu_gauges_follow_load_and_memory_pressure() -> None:
    idle, busy = fresh(), fresh()
    run(idle, rate=0, seconds=5)
    run(busy, rate=90, seconds=10)
    assert idle.gpus[0].utilization == 0
    assert busy.gpus[0].utilization == pytest.approx(0.9, abs=0.1)
    assert SETTINGS.gpu_power_limit_watts > busy.gpus[0].power_watts > idle.gpus[0].power_watts > 0
    assert busy.gpus[0].energy_joules > idle.gpus[0].energy_joules > 0
    assert busy.cpu_utilization > idle.cpu_utilization

    pressure = dataclasses.replace(SETTINGS, gpu_memory_utilization=0.97)
    state = fresh(pressure)
    run(state, rate=10, seconds=1, settings=pressure)
    used = state.gpus[0].memory_used_bytes / pressure.gpu_memory_total_bytes
    assert 0.97 <= used <= 0.99


def test_serve_one_counts_a_direct_request() -> None:
    rng = np.random.default_rng(1)
    state = fresh()
    outcome = queueing.serve_one(state, SETTINGS, rng, now_ms=1234)
    assert outcome.ok
    assert outcome.latency_seconds > 0
    assert state.total("success") == 1
    assert state.last_inference_ms == 1234
    failing = dataclasses.replace(SETTINGS, error_ratio=1.0)
    assert queueing.serve_one(state, failing, rng).reason == "BACKEND"
    # One slot busy for a second: the next request queues, the one after finds the queue full.
    full = dataclasses.replace(SETTINGS, max_queue=1, capacity=1.0, base_latency_ms=1000.0, service_cv=0.0)
    slow = fresh(full)
    assert queueing.serve_one(slow, full, rng).latency_seconds == pytest.approx(1.0, abs=0.01)
    queued = queueing.serve_one(slow, full, rng)
    assert queued.ok
    assert queued.latency_seconds == pytest.approx(2.0, abs=0.01)
    assert slow.pending == 1
    assert queueing.serve_one(slow, full, rng).reason == "REJECTED"
    assert state.failures() == {"REJECTED": 0, "CANCELED": 0, "BACKEND": 1, "OTHER": 0}
    assert slow.failures()["REJECTED"] == 1


def test_cpu_only_pod_has_one_instance_and_no_gpus() -> None:
    state = fresh(gpus=0)
    run(state, rate=20, seconds=2)
    assert state.gpus == []
    assert len(state.instances) == 1
    assert state.total("success") > 0


def test_step_rejects_a_non_positive_tick() -> None:
    with pytest.raises(ValueError, match="dt"):
        queueing.step(fresh(), 1, 0.0, SETTINGS, np.random.default_rng())


def test_erlang_c_matches_the_textbook_values() -> None:
    # M/M/1: Wq = rho / (mu - lambda).
    assert queueing.erlang_c_wait(5.0, 0.1, 1) == pytest.approx(0.5 / (10.0 - 5.0))
    # M/M/2 at lambda 1.5, mu 1: P(wait) = 0.6429, Wq = 0.6429 / (2 - 1.5).
    assert queueing.erlang_c_wait(1.5, 1.0, 2) == pytest.approx(0.642857 / 0.5, rel=1e-5)
    assert queueing.erlang_c_wait(0.0, 1.0, 3) == 0.0
    assert queueing.erlang_c_wait(2.0, 1.0, 2) == float("inf")
    with pytest.raises(ValueError, match="service_seconds"):
        queueing.erlang_c_wait(1.0, 0.0, 1)


# Per-replica request rate -> execution slots: one request at a time at LLM-like rates, a few
# slots (model instances) at vision-model rates.
SWEEP_SLOTS = {1.0: 1, 2.0: 1, 5.0: 1, 20.0: 2, 50.0: 2, 200.0: 4}
# Requests simulated per point: enough for a standard error near 5 % (waits near saturation are
# strongly correlated, so 0.9 needs far more requests than 0.3).
SWEEP_REQUESTS = {0.3: 40_000, 0.5: 40_000, 0.7: 80_000, 0.9: 250_000}


def mean_queue_seconds_at(rate: float, utilisation: float, slots: int, requests: int, seed: int) -> float:
    settings = behaviour.Behaviour(capacity=rate / utilisation, concurrency=slots)
    state = fresh(settings)
    rng = np.random.default_rng(seed)
    # The queue runs in event time, so the tick only decides when counters move (see the test
    # below); ticks of ~200 arrivals keep the sweep fast at 1 req/s as at 200.
    dt = 200.0 / rate
    for _ in range(requests // 200):
        queueing.step(state, int(rng.poisson(rate * dt)), dt, settings, rng)
    return avg_queue_seconds(state)


def test_mean_queue_time_matches_erlang_c_from_1_to_200_requests_per_second() -> None:
    errors = {}
    for rate, slots in SWEEP_SLOTS.items():
        for utilisation, requests in SWEEP_REQUESTS.items():
            simulated = mean_queue_seconds_at(
                rate, utilisation, slots, requests, seed=int(rate * 10 + utilisation * 10)
            )
            service = behaviour.Behaviour(capacity=rate / utilisation, concurrency=slots).mean_service_seconds
            expected = queueing.erlang_c_wait(rate, service, slots)
            errors[(rate, utilisation)] = simulated / expected - 1.0
    assert all(abs(error) <= 0.15 for error in errors.values()), errors


def arrivals_at(moments: list[float], sizes: list[float] | None = None) -> queueing.Incoming:
    return queueing.Incoming(
        np.asarray(moments, dtype=float), np.asarray(sizes or [1.0] * len(moments), dtype=float), np.ones(len(moments))
    )


def play(moments: list[float], settings: behaviour.Behaviour, dt: float, seconds: float) -> queueing.PodState:
    """Requests at these moments (seconds since the pod started), ticked by ``dt``."""
    state = fresh(settings)
    rng = np.random.default_rng(0)
    for tick in range(round(seconds / dt)):
        begin = tick * dt
        inside = [moment - begin for moment in moments if begin <= moment < begin + dt]
        queueing.step(state, arrivals_at(inside), dt, settings, rng)
    return state


def test_queue_time_does_not_depend_on_the_tick() -> None:
    settings = behaviour.Behaviour(capacity=2.0, concurrency=1, service_cv=0.0)  # 0.5 s per request
    moments = [0.05, 0.1, 0.12, 0.9, 3.0, 3.05, 7.7, 7.71, 7.72, 7.73]
    fine, coarse = play(moments, settings, 0.125, 12.0), play(moments, settings, 4.0, 12.0)  # exact binary ticks
    for state in (fine, coarse):
        assert state.total("success") == len(moments)
    # Waits: 0, 0.45, 0.93, 0.65 (the fourth arrives at 0.9, the slot frees at 1.55), 0, 0.45, 0, 0.49, 0.98, 1.47.
    waits = 0.45 + 0.93 + 0.65 + 0.45 + 0.49 + 0.98 + 1.47
    assert fine.total("queue_duration_us") / 1e6 == pytest.approx(waits)
    assert coarse.total("queue_duration_us") / 1e6 == pytest.approx(waits)


def test_a_burst_drains_at_capacity_and_idle_capacity_does_not_bank_up() -> None:
    settings = behaviour.Behaviour(capacity=10.0, concurrency=2, service_cv=0.0)  # 0.2 s per request, 2 at once
    # An hour-long idle pod gains nothing: a burst of 20 still takes 20 / 10 = 2 s to drain.
    state = play([3600.0] * 20, settings, 0.1, 3600.0 + 2.5)
    assert state.total("success") == 20
    # Pairs start every 0.2 s: the waits are 0, 0, 0.2, 0.2, ..., 1.8, 1.8.
    assert state.total("queue_duration_us") / 1e6 == pytest.approx(2 * sum(0.2 * k for k in range(10)))
    assert state.last_inference_ms == 0
    # Work-conserving: while requests wait, every slot is busy (utilisation of the draining ticks is 1).
    busy = fresh(settings)
    rng = np.random.default_rng(0)
    queueing.step(busy, arrivals_at([0.0] * 40), 0.1, settings, rng)
    for _ in range(10):
        queueing.step(busy, 0, 0.1, settings, rng)
    assert busy.pending > 0
    assert busy.busy == pytest.approx(1 - math.exp(-1.1 / queueing.EWMA_SECONDS), rel=1e-6)


def test_request_size_scales_its_service_time() -> None:
    settings = behaviour.Behaviour(capacity=10.0, concurrency=1, service_cv=0.0)  # 0.1 s at size 1
    state = fresh(settings)
    queueing.step(state, arrivals_at([0.0, 0.0], sizes=[3.0, 0.5]), 1.0, settings, np.random.default_rng(0))
    assert state.total("success") == 2
    compute = state.total("compute_input_duration_us") + state.total("compute_infer_duration_us")
    compute += state.total("compute_output_duration_us")
    assert compute / 1e6 == pytest.approx(0.3 + 0.05)
    assert state.total("queue_duration_us") / 1e6 == pytest.approx(0.3)  # the small one waited for the big one


def test_slots_run_in_parallel_and_default_from_capacity_times_latency() -> None:
    assert behaviour.Behaviour(capacity=100.0, base_latency_ms=20.0).slots == 2
    assert behaviour.Behaviour(capacity=40.0, base_latency_ms=20.0).slots == 1
    assert behaviour.Behaviour(capacity=2.0, base_latency_ms=2000.0).slots == 4
    llm = behaviour.Behaviour(capacity=2.0, base_latency_ms=2000.0, service_cv=0.0)
    assert llm.mean_service_seconds == pytest.approx(2.0)
    state = play([0.0, 0.0, 0.0, 0.0, 0.0], llm, 0.5, 4.5)
    assert state.total("success") == 5
    assert state.total("queue_duration_us") / 1e6 == pytest.approx(2.0)  # only the fifth waited
