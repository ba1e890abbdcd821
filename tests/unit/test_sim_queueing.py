"""The per-pod queue model: capacity, queue time, failures, Triton's accounting, GPU gauges."""

from __future__ import annotations

import dataclasses

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
    assert state.total("success") == sum(r.arrivals for r in results) - state.pending


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
    # Throughput is capped at capacity while the queue grows.
    assert state.total("success") == pytest.approx(SETTINGS.capacity * 20, rel=0.02)


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
    assert state.total("success") + rejected + state.pending == arrived


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
    full = dataclasses.replace(SETTINGS, max_queue=1)
    state.backlog = 1
    assert queueing.serve_one(state, full, rng).reason == "REJECTED"
    assert state.failures() == {"REJECTED": 1, "CANCELED": 0, "BACKEND": 1, "OTHER": 0}


def test_cpu_only_pod_has_one_instance_and_no_gpus() -> None:
    state = fresh(gpus=0)
    run(state, rate=20, seconds=2)
    assert state.gpus == []
    assert len(state.instances) == 1
    assert state.total("success") > 0


def test_step_rejects_a_non_positive_tick() -> None:
    with pytest.raises(ValueError, match="dt"):
        queueing.step(fresh(), 1, 0.0, SETTINGS, np.random.default_rng())
