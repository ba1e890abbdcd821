"""bench.traffic: generated arrivals, the replayed trace, peak rates, sizing, the offline perfect server."""

from __future__ import annotations

import numpy as np
import pytest
from bench import traffic

from vigil.sim import behaviour


def test_the_committed_trace_is_an_hour_of_llm_requests_with_token_sizes() -> None:
    trace = traffic.from_trace(traffic.AZURE_CONV, "replay")
    assert len(trace.offsets) == 19366
    assert 3400 < trace.span < 3600
    assert trace.mean_rate == pytest.approx(5.53, abs=0.01)
    assert trace.sizes.mean() == pytest.approx(1.0)
    assert "mean size 1366 tokens" in trace.description


def test_peak_rate_is_the_busiest_sliding_window() -> None:
    load = traffic.Traffic("t", np.array([0.0, 0.1, 0.2, 5.0, 10.0, 10.5, 10.6, 10.7]), np.ones(8), "")
    assert load.peak_rate(1.0) == 4.0  # 10.0 .. 10.7
    assert load.peak_rate(1.0, speedup=2.0) == 4.0
    assert load.peak_rate(0.5, speedup=2.0) == 8.0  # at x2 the four fit in 0.35 s
    assert load.rates(5.0).tolist() == [3 / 5, 1 / 5, 4 / 5]


def test_mmpp_follows_its_diurnal_curve_and_bursts() -> None:
    mmpp = traffic.Mmpp(base_rate=20.0, duration=3600.0)
    offsets, bursts = mmpp.generate(np.random.default_rng(1))
    assert np.all(np.diff(offsets) >= 0)
    assert 5 <= len(bursts) <= 30
    per_minute = np.histogram(offsets, bins=np.arange(0, 3601, 60))[0] / 60
    # Calm at the ends (base x 0.5), busy halfway (base x 1.5), bursts on top.
    assert per_minute[:3].mean() < 14 < 26 < per_minute[29:31].mean()
    in_burst = sum(int(((offsets >= a) & (offsets < b)).sum()) for a, b in bursts)
    burst_seconds = sum(b - a for a, b in bursts)
    calm_rate = (len(offsets) - in_burst) / (3600 - burst_seconds)
    assert in_burst / burst_seconds > 1.8 * calm_rate


def test_ramp_follows_its_points() -> None:
    load = traffic.ramp([(0.0, 10.0), (600.0, 10.0), (1200.0, 50.0)], seed=3)
    per_minute = load.rates(60.0)
    assert per_minute[:9].mean() == pytest.approx(10.0, rel=0.1)
    assert per_minute[-2] == pytest.approx(47.0, rel=0.15)
    assert load.span < 1200.0


def test_replicas_for_a_rate_at_a_utilisation() -> None:
    assert traffic.replicas_for(90.0, 30.0, 0.6) == 5
    assert traffic.replicas_for(18.0, 30.0, 0.6) == 1
    assert traffic.replicas_for(0.0, 30.0, 0.6) == 1


def test_the_offline_perfect_server_sees_the_queue_a_slow_server_would() -> None:
    load = traffic.ramp([(0.0, 20.0), (120.0, 20.0)], seed=5)
    roomy = behaviour.Behaviour(capacity=40.0, concurrency=1)
    tight = behaviour.Behaviour(capacity=22.0, concurrency=1)
    calm = traffic.offline_queue_seconds(load, roomy, replicas=2, speedup=1.0, window=30.0)
    busy = traffic.offline_queue_seconds(load, tight, replicas=1, speedup=1.0, window=30.0)
    assert len(calm) == len(busy) >= 4
    # Two replicas at 25 %: M/M/1 waits of 0.25 / (40 - 10) = 8 ms; one at 91 %: hundreds of ms.
    assert calm[:4].mean() == pytest.approx(0.25 / 30.0, rel=0.5)
    assert busy[:4].mean() > 0.15


def test_traffic_csv_round_trips_through_the_simulators_reader() -> None:
    load = traffic.Traffic("t", np.array([0.0, 1.5]), np.array([0.5, 1.5]), "")
    trace = traffic.arrivals.parse_csv(load.csv(), size_column="size")
    assert trace.offsets == (0.0, 1.5)
    assert trace.sizes == pytest.approx((0.5, 1.5))
