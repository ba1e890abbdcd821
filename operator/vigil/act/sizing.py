"""Sizing a scale-out round from the measured demand instead of a fixed number of replicas.

A fixed ``stepReplicas`` answers a surge of any size with the same few replicas: a steep ramp is
chased round after round, each verified before the next, while users wait. A ``scaleOut`` step
with ``targetUtilization`` sizes each round from what Triton reported over the current request
rate window, the way Knative/KServe size for a target utilisation and the HPA for a target value:

* **capacity per replica** = completed requests per second / busy replicas (each pod's mean
  ``nv_gpu_utilization`` over the window, summed): the throughput one fully busy replica
  delivers, measured now on this model and this traffic. A deployment breaching a queue or
  latency SLO under load is busy near 1, so this is its saturated throughput per replica.
  Fewer than :data:`MIN_BUSY_REPLICAS` busy replicas make the ratio noise: not used.
* **demand** = completed requests per second + the growth of the queue (``deriv`` of
  ``nv_inference_pending_request_count``): what arrives, including what the replicas could not
  take on. A draining queue (negative growth) lowers it: those completions were old arrivals.
* **replicas** = ceil(demand / (capacity x targetUtilization)).

A rising load outgrows a round sized for the demand *now* before the round is judged: on a ramp
each round then trails the load and every round is another breach. With ``sizeAhead`` (a
duration) the round is sized for the demand that far ahead of the window's middle, along the
trend measured over the same data diagnosis compares: the rate over the baseline window before
the current one, whose middle lies half the baseline window earlier (the HPA has no such term;
Knative's panic mode and predictive autoscalers do). Only a rise is extrapolated, and at most to
:data:`MAX_PROJECTION` times the demand now: a burst that already ended cannot order more than
that, and the give-back returns what a finished surge no longer needs. That baseline counts the
requests served, so it is low while a breached deployment was saturated: the trend then reads
steeper than the arrivals rose, which that cap bounds too.

The step machine takes at least ``stepReplicas`` (default 1) more than are running (the SLO is
breached: more are needed whatever the estimate says) and at most the ceiling. Missing or
meaningless data never sizes anything (safety rule 1): the round adds the fixed step, and the
record says why.
"""

from __future__ import annotations

import dataclasses
import math

MIN_BUSY_REPLICAS = 0.1
"""Below this much busy time (replicas' worth) a capacity estimate is noise."""
MAX_PROJECTION = 2.0
"""A round sized ahead is sized for at most this many times the demand measured now."""


@dataclasses.dataclass(frozen=True)
class Demand:
    """The breached revision's load over the current rate window, as Prometheus reported it.

    ``request_rate``: completed requests per second (success + failure); ``busy_replicas``: the
    pods' mean GPU utilisation over the window, summed; ``queue_growth``: req/s by which the queued
    requests grew. None: not reported. ``baseline_rate``: completed requests per second over the
    baseline window before the current one, whose middle lies ``baseline_lag_seconds`` before the
    current window's (None: no baseline, as for a young deployment).
    """

    request_rate: float | None
    busy_replicas: float | None
    queue_growth: float | None
    window_seconds: int | None = None
    baseline_rate: float | None = None
    baseline_lag_seconds: float | None = None

    def trend(self, arrivals: float) -> float | None:
        """How fast the offered rate rose (req/s per second) from the baseline to ``arrivals`` now
        (None: no baseline, or it did not rise)."""
        base, lag = self.baseline_rate, self.baseline_lag_seconds
        if base is None or lag is None or not math.isfinite(base) or lag <= 0:
            return None
        slope = (arrivals - base) / lag
        return slope if slope > 0 else None


@dataclasses.dataclass(frozen=True)
class Sized:
    """What the demand asks for: ``replicas`` at ``target_utilization`` percent of ``capacity``."""

    replicas: int
    arrivals: float
    capacity: float
    target_utilization: int
    window_seconds: int | None = None
    projected: float | None = None
    """The demand sized for ``ahead_seconds`` ahead along ``trend`` (None: sized for the demand now)."""
    trend: float | None = None
    ahead_seconds: int | None = None

    def __str__(self) -> str:
        over = f" over {self.window_seconds}s" if self.window_seconds else ""
        ahead = ""
        if self.projected is not None and self.trend is not None:
            when = "now" if not self.ahead_seconds else f"{self.ahead_seconds}s ahead"
            ahead = f", rising {self.trend:.2f} req/s per second: {self.projected:.1f} req/s {when}"
        return (
            f"demand {self.arrivals:.1f} req/s{over}{ahead} at {self.capacity:.1f} req/s per busy replica "
            f"needs {self.replicas} replicas at {self.target_utilization}% utilisation"
        )


def size(demand: Demand | None, target_utilization: int, ahead_seconds: int | None = None) -> Sized | str:
    """The replicas ``demand`` needs at ``target_utilization`` percent, or why it cannot say;
    ``ahead_seconds``: sized for the demand that far ahead along its rise (see the module docstring);
    0: the demand now, at the end of the window rather than at its middle (None: the window's
    average as measured)."""
    if not 0 < target_utilization <= 100:
        raise ValueError("target_utilization is a percentage in (0, 100]")
    if ahead_seconds is not None and ahead_seconds < 0:
        raise ValueError("ahead_seconds is a duration")
    if demand is None:
        return "no measured demand"
    rate, busy = demand.request_rate, demand.busy_replicas
    if rate is None or not math.isfinite(rate):
        return "request rate not reported"
    if busy is None or not math.isfinite(busy):
        return "GPU utilisation not reported"
    if busy < MIN_BUSY_REPLICAS or rate <= 0:
        return f"too little work to measure capacity ({rate:.2f} req/s, {busy:.2f} busy replicas)"
    growth = demand.queue_growth if demand.queue_growth is not None and math.isfinite(demand.queue_growth) else 0.0
    arrivals = max(rate + growth, 0.0)
    capacity = rate / busy
    sized_for, projected, trend = arrivals, None, None
    if ahead_seconds is not None:
        trend = demand.trend(arrivals)
        if trend is not None:
            # The window's average is the rate at its middle: that far behind now, too.
            horizon = ahead_seconds + (demand.window_seconds or 0) / 2
            projected = min(arrivals + trend * horizon, MAX_PROJECTION * arrivals)
            sized_for = projected
    replicas = max(1, math.ceil(sized_for / (capacity * target_utilization / 100.0) - 1e-9))
    return Sized(
        replicas,
        arrivals,
        capacity,
        target_utilization,
        demand.window_seconds,
        projected=projected,
        trend=trend if projected is not None else None,
        ahead_seconds=ahead_seconds if projected is not None else None,
    )


TOLERANCE = 0.1
"""The HPA's default tolerance: a demand within 10 % above what the replicas carry at the target
utilisation asks for no more replicas (a scale-in to exactly the demand's need is not undone by noise)."""


def outgrows(demand: Demand | None, target_utilization: int, running: int) -> Sized | str:
    """The demand now (:func:`size` at ``ahead_seconds=0``) when it is rising and needs more than
    ``running`` replicas at ``target_utilization`` percent, by more than :data:`TOLERANCE`; else why not.

    The test a scale-out *before* a breach must pass: measured, rising, and beyond the target by
    more than noise. The give-back scales in no lower than this same need (at most the target), so
    its steps leave the tolerance between them and this test.
    """
    if running < 1:
        raise ValueError("running counts replicas")
    sized = size(demand, target_utilization, ahead_seconds=0)
    if isinstance(sized, str):
        return sized
    if sized.trend is None:
        return f"demand {sized.arrivals:.1f} req/s is not rising"
    now = sized.projected if sized.projected is not None else sized.arrivals
    load = now / (running * sized.capacity * target_utilization / 100.0)
    if sized.replicas <= running or load <= 1.0 + TOLERANCE:
        return f"{sized} ({running} running: {load:.0%} of their target load, within {TOLERANCE:.0%} tolerance)"
    return sized
