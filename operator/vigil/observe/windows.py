"""Alerting windows: which (long, short, factor) pairs an SLO is judged over.

Default pairs come from the Google SRE workbook's multi-window, multi-burn-rate table, written
for a 30-day SLO period:

=========  ====  =====  ======  =========================
severity   long  short  factor  budget spent when it fires
=========  ====  =====  ======  =========================
page       1h    5m     14.4    2%
page       6h    30m    6       5%
ticket     1d    2h     3       10%
ticket     3d    6h     1       10%
=========  ====  =====  ======  =========================

Scaling to other periods. Budget spent when a pair fires is ``factor x window / period``; we
scale every window by ``period / 30d`` and keep the factors, so each pair still fires after the
same *fraction* of the period's budget is spent (a 7-day SLO pages on 14.4x over 14m/70s).
Windows are rounded to whole seconds, because Prometheus range selectors are written in them.

The floor. ``rate()`` needs at least two samples inside its window, and a window of only two or
three scrape intervals is noisy, so no window is ever shorter than ``min_window`` (a setting, about
four scrape intervals). The floor applies to explicit windows from the spec too; a floored pair
may spend slightly more budget before it fires than the table says, which is the price of
measuring at all. A pair's short window never exceeds its long one, because both are floored
alike.

Threshold SLOs (average latency, queue time, GPU memory; see :mod:`vigil.api.slo`) have no error
budget: their "burn rate" is ``value / threshold``, so the default factor of every pair is 1.0,
meaning "above the threshold over both windows". The windows are scaled the same way.

Young revisions. A revision younger than a window has no series older than itself (its pods
carry their own ``revision`` label), so it is judged over windows capped to its age, never below
``min_window`` (see :func:`capped`). Ages are quantised down to a ladder ``min_window x 2**k``,
so the set of distinct windows the fleet queries stays bounded however many revisions roll out at
different times: at most ``log2(longest window / min_window) + 1`` extra windows.
"""

from __future__ import annotations

import dataclasses
import enum
import functools

from vigil.api import slo as sloapi

WORKBOOK_PERIOD_SECONDS = 30 * 86400


class Severity(enum.StrEnum):
    PAGE = "page"
    TICKET = "ticket"


@dataclasses.dataclass(frozen=True)
class WindowPair:
    """One alerting pair: it fires when both windows burn faster than ``factor``."""

    long_seconds: int
    short_seconds: int
    factor: float
    severity: Severity

    @property
    def long(self) -> str:
        return sloapi.format_duration(self.long_seconds)

    @property
    def short(self) -> str:
        return sloapi.format_duration(self.short_seconds)


# (long, short, factor, severity) for a 30-day period.
WORKBOOK: tuple[WindowPair, ...] = (
    WindowPair(3600, 300, 14.4, Severity.PAGE),
    WindowPair(21600, 1800, 6.0, Severity.PAGE),
    WindowPair(86400, 7200, 3.0, Severity.TICKET),
    WindowPair(259200, 21600, 1.0, Severity.TICKET),
)

THRESHOLD_FACTOR = 1.0


def is_threshold(spec: sloapi.SLOSpec) -> bool:
    """Whether the SLO compares a value with a threshold rather than counting bad requests."""
    if spec.kind is sloapi.SLOKind.LATENCY:
        return spec.method is sloapi.LatencyMethod.AVERAGE
    return spec.kind in (sloapi.SLOKind.QUEUE_TIME, sloapi.SLOKind.GPU_MEMORY)


def floored(seconds: float, min_window: int) -> int:
    """``seconds`` rounded to whole seconds, never below ``min_window``."""
    return max(min_window, round(seconds))


@functools.cache  # a handful of periods per fleet, asked for every SLO of every revision each cycle
def default_pairs(period_seconds: float, *, threshold: bool, min_window: int) -> tuple[WindowPair, ...]:
    """The workbook table scaled to ``period_seconds`` and floored at ``min_window``."""
    scale = period_seconds / WORKBOOK_PERIOD_SECONDS
    return tuple(
        WindowPair(
            long_seconds=floored(row.long_seconds * scale, min_window),
            short_seconds=floored(row.short_seconds * scale, min_window),
            factor=THRESHOLD_FACTOR if threshold else row.factor,
            severity=row.severity,
        )
        for row in WORKBOOK
    )


def pairs_for(spec: sloapi.SLOSpec, *, min_window: int) -> tuple[WindowPair, ...]:
    """The pairs an SLO is judged over: its explicit ``windows``, or the scaled defaults."""
    if not spec.windows:
        return default_pairs(sloapi.duration_seconds(spec.period), threshold=is_threshold(spec), min_window=min_window)
    pairs = []
    for window in spec.windows:
        long_seconds = floored(sloapi.duration_seconds(window.long), min_window)
        short_seconds = floored(sloapi.duration_seconds(window.short), min_window)
        pairs.append(
            WindowPair(
                long_seconds=max(long_seconds, short_seconds),
                short_seconds=min(long_seconds, short_seconds),
                factor=window.factor,
                severity=Severity(window.severity),
            )
        )
    return tuple(pairs)


def ladder_rung(age_seconds: float, min_window: int) -> int:
    """The longest ``min_window x 2**k`` not longer than ``age_seconds`` (``min_window`` at least)."""
    rung = min_window
    while rung * 2 <= age_seconds:
        rung *= 2
    return rung


def capped_window(seconds: int, age_seconds: float, min_window: int) -> int:
    """A window for a revision ``age_seconds`` old: unchanged if the revision is older than it,
    otherwise the ladder rung below its age (so only its own series are inside)."""
    if seconds <= age_seconds:
        return seconds
    return min(seconds, ladder_rung(age_seconds, min_window))


def capped(pair: WindowPair, age_seconds: float, min_window: int) -> WindowPair:
    """``pair`` for a revision ``age_seconds`` old (see the module docstring).

    Both windows of a young revision may land on the same rung; the pair then fires when that one
    window exceeds the factor, which is the point: the young series are judged on their own.
    """
    if pair.long_seconds <= age_seconds and pair.short_seconds <= age_seconds:
        return pair  # old enough for both (most revisions, most of the time)
    short_seconds = capped_window(pair.short_seconds, age_seconds, min_window)
    long_seconds = max(short_seconds, capped_window(pair.long_seconds, age_seconds, min_window))
    return dataclasses.replace(pair, long_seconds=long_seconds, short_seconds=short_seconds)
