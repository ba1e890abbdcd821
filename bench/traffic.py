"""Traffic for the quiet and efficiency benchmarks: traces, generated arrivals, capacity sizing.

Pure (numpy and the simulator's own pure modules), so every number a benchmark derives from its
traffic is unit-tested:

* the replayed trace is parsed by the simulator's own CSV reader (:func:`vigil.sim.arrivals.parse_csv`);
* generated traffic is a non-homogeneous Poisson process drawn by thinning: a diurnal curve
  modulated by a two-state Markov chain (calm / burst), i.e. a Markov-modulated Poisson process,
  or a piecewise-linear load ramp;
* capacity is sized from the traffic's peak rate over short windows, and checked by playing the
  traffic through the simulator's queue offline (:func:`offline_queue_seconds`): the "perfect
  server" of the quiet benchmark, whose true SLI is known before vigil sees anything.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from collections.abc import Callable, Sequence

import numpy as np

from vigil.sim import arrivals, behaviour, queueing

TRACES = pathlib.Path(__file__).resolve().parent / "traces"
AZURE_CONV = TRACES / "azure-llm-conv-2023.csv"
TICK_SECONDS = 0.1


@dataclasses.dataclass(frozen=True)
class Traffic:
    """Arrival offsets (trace seconds from the start) and per-request size factors (mean 1)."""

    name: str
    offsets: np.ndarray
    sizes: np.ndarray
    description: str

    @property
    def span(self) -> float:
        return float(self.offsets[-1]) if len(self.offsets) else 0.0

    @property
    def mean_rate(self) -> float:
        return len(self.offsets) / self.span if self.span > 0 else 0.0

    def csv(self) -> str:
        """The traffic as a CSV the simulator replays (``timestamp,size``)."""
        rows = [f"{t:.4f},{s:.4f}" for t, s in zip(self.offsets.tolist(), self.sizes.tolist(), strict=True)]
        return "timestamp,size\n" + "\n".join(rows) + "\n"

    def rates(self, window: float, speedup: float = 1.0) -> np.ndarray:
        """Requests per second in consecutive windows of ``window`` wall seconds at ``speedup``."""
        times = self.offsets / speedup
        edges = np.arange(0.0, times[-1] + window, window)
        counts, _ = np.histogram(times, bins=edges)
        return counts / window

    def peak_rate(self, window: float, speedup: float = 1.0) -> float:
        """The highest rate over any ``window`` (sliding, by request), in wall requests per second."""
        times = self.offsets / speedup
        ends = np.searchsorted(times, times + window, side="left")
        return float((ends - np.arange(len(times))).max()) / window


def from_trace(path: pathlib.Path, name: str, size_column: str | None = "tokens") -> Traffic:
    trace = arrivals.parse_csv(path.read_text(encoding="utf-8"), size_column=size_column)
    sizes = np.ones(len(trace.offsets)) if trace.sizes is None else np.asarray(trace.sizes)
    mean = f", mean size {trace.mean_size:.0f} {size_column}" if trace.mean_size else ""
    return Traffic(name, np.asarray(trace.offsets), sizes, f"{path.name}: {len(trace.offsets)} requests{mean}")


def thinning(
    rate: Callable[[np.ndarray], np.ndarray], peak: float, duration: float, rng: np.random.Generator
) -> np.ndarray:
    """A non-homogeneous Poisson process of intensity ``rate(t) <= peak`` on [0, duration)."""
    candidates = np.sort(rng.uniform(0.0, duration, rng.poisson(peak * duration)))
    keep = rng.uniform(0.0, peak, len(candidates)) < rate(candidates)
    return candidates[keep]


@dataclasses.dataclass(frozen=True)
class Mmpp:
    """A diurnal curve times a two-state Markov chain: calm (x1) and burst (x ``burst_factor``)."""

    base_rate: float
    duration: float
    diurnal_amplitude: float = 0.5
    """Rate swings between base x (1 - a) at the start and end and base x (1 + a) halfway."""
    burst_factor: float = 2.5
    mean_calm_seconds: float = 240.0
    mean_burst_seconds: float = 20.0

    def burst_intervals(self, rng: np.random.Generator) -> list[tuple[float, float]]:
        intervals: list[tuple[float, float]] = []
        t = 0.0
        while True:
            t += rng.exponential(self.mean_calm_seconds)
            if t >= self.duration:
                return intervals
            end = min(t + rng.exponential(self.mean_burst_seconds), self.duration)
            intervals.append((t, end))
            t = end

    def diurnal(self, t: np.ndarray) -> np.ndarray:
        return self.base_rate * (1.0 - self.diurnal_amplitude * np.cos(2.0 * math.pi * t / self.duration))

    def generate(self, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[float, float]]]:
        bursts = self.burst_intervals(rng)

        def rate(t: np.ndarray) -> np.ndarray:
            factor = np.ones_like(t)
            for start, end in bursts:
                factor[(t >= start) & (t < end)] = self.burst_factor
            return np.asarray(self.diurnal(t) * factor)

        peak = self.base_rate * (1.0 + self.diurnal_amplitude) * self.burst_factor
        return thinning(rate, peak, self.duration, rng), bursts


def generated(mmpp: Mmpp, seed: int) -> Traffic:
    offsets, bursts = mmpp.generate(np.random.default_rng(seed))
    description = (
        f"MMPP, seed {seed}: diurnal {mmpp.base_rate * (1 - mmpp.diurnal_amplitude):g}-"
        f"{mmpp.base_rate * (1 + mmpp.diurnal_amplitude):g} req/s, {len(bursts)} bursts of x{mmpp.burst_factor:g} "
        f"(mean {mmpp.mean_burst_seconds:g} s every {mmpp.mean_calm_seconds:g} s)"
    )
    return Traffic("generated", offsets, np.ones(len(offsets)), description)


def ramp_rate(points: Sequence[tuple[float, float]]) -> Callable[[np.ndarray], np.ndarray]:
    """A piecewise-linear rate through ``(time, rate)`` points."""
    times = np.array([t for t, _ in points])
    rates = np.array([r for _, r in points])

    def rate(t: np.ndarray) -> np.ndarray:
        return np.asarray(np.interp(t, times, rates))

    return rate


def ramp(points: Sequence[tuple[float, float]], seed: int) -> Traffic:
    rate = ramp_rate(points)
    duration = points[-1][0]
    offsets = thinning(rate, max(r for _, r in points), duration, np.random.default_rng(seed))
    shape = " -> ".join(f"{r:g}" for _, r in points)
    return Traffic(
        "ramp", offsets, np.ones(len(offsets)), f"Poisson ramp, seed {seed}: {shape} req/s over {duration / 60:g} min"
    )


def replicas_for(rate: float, capacity: float, utilisation: float) -> int:
    """Replicas that carry ``rate`` at no more than ``utilisation`` of ``capacity`` each."""
    return max(1, math.ceil(rate / (capacity * utilisation) - 1e-9))


def offline_queue_seconds(
    traffic: Traffic, settings: behaviour.Behaviour, replicas: int, speedup: float, window: float, seed: int = 0
) -> np.ndarray:
    """Mean queue time (s) per ``window`` of wall time when ``replicas`` ideal replicas serve the
    traffic at ``speedup``: the simulator's queue, requests spread at random as the Service does."""
    rng = np.random.default_rng(seed)
    times = traffic.offsets / speedup
    target = rng.integers(0, replicas, len(times))
    states = [queueing.new_pod_state(f"offline-{i}", 1, settings) for i in range(replicas)]
    ticks = math.ceil(times[-1] / TICK_SECONDS) + round(10 / TICK_SECONDS)
    per_tick = round(window / TICK_SECONDS)
    tick_of = np.floor(times / TICK_SECONDS).astype(int)
    bounds = np.searchsorted(tick_of, np.arange(ticks + 1))
    waits: list[float] = []
    queue_before = success_before = 0.0
    for tick in range(ticks):
        lo, hi = bounds[tick], bounds[tick + 1]
        for index, state in enumerate(states):
            mine = np.nonzero(target[lo:hi] == index)[0] + lo
            incoming = queueing.Incoming(times[mine] - tick * TICK_SECONDS, traffic.sizes[mine], np.ones(len(mine)))
            queueing.step(state, incoming, TICK_SECONDS, settings, rng)
        if (tick + 1) % per_tick == 0:
            queue = sum(s.total("queue_duration_us") for s in states) / 1e6
            success = sum(s.total("success") for s in states)
            done = success - success_before
            waits.append((queue - queue_before) / done if done else 0.0)
            queue_before, success_before = queue, success
    return np.asarray(waits)
