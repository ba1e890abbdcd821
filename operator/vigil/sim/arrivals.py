"""Request arrivals: Poisson at a fixed rate, or a replay of recorded arrival times.

The simulator advances in ticks and asks each load "how many requests arrived in [t0, t1)?",
so the cost is per tick, not per request: hundreds of requests per second on dozens of pods stay
cheap. Poisson arrivals are what independent clients produce; replaying a real trace (a CSV with
a timestamp column, in seconds or RFC 3339, optionally sped up) reproduces bursts and diurnal
shapes that a constant rate hides.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import datetime
import io
import itertools
import math
from typing import Protocol

import numpy as np


class ArrivalError(ValueError):
    """A load description or trace that cannot be used; the message says where and why."""


class Arrivals(Protocol):
    def count(self, start: float, end: float, rng: np.random.Generator) -> int:
        """Arrivals in [start, end), seconds since the load started."""
        ...

    def finished(self, elapsed: float) -> bool:
        """True once no arrival can come any more."""
        ...

    def describe(self) -> dict[str, object]: ...


@dataclasses.dataclass(frozen=True)
class Poisson:
    rate: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.rate) or self.rate < 0:
            raise ArrivalError(f"rate must be a finite number >= 0, got {self.rate}")

    def count(self, start: float, end: float, rng: np.random.Generator) -> int:
        span = end - start
        if span <= 0 or self.rate == 0:
            return 0
        return int(rng.poisson(self.rate * span))

    def finished(self, elapsed: float) -> bool:
        return False

    def describe(self) -> dict[str, object]:
        return {"kind": "poisson", "rate": self.rate}


@dataclasses.dataclass(frozen=True)
class Replay:
    """Arrival offsets (seconds from the first arrival, already divided by the speed-up)."""

    offsets: tuple[float, ...]
    loop: bool = False

    def __post_init__(self) -> None:
        if not self.offsets:
            raise ArrivalError("a replay needs at least one arrival")
        if any(b < a for a, b in itertools.pairwise(self.offsets)):
            raise ArrivalError("replay offsets must be sorted")

    @property
    def period(self) -> float:
        """Length of one pass when looping: the span plus one mean gap, so passes do not overlap."""
        span = self.offsets[-1] - self.offsets[0]
        gap = span / (len(self.offsets) - 1) if len(self.offsets) > 1 else 1.0
        return self.offsets[-1] + max(gap, 1e-3)

    def _before(self, t: float) -> int:
        """Arrivals with offset < t."""
        if t <= 0:
            return 0
        if not self.loop:
            return bisect.bisect_left(self.offsets, t)
        period = self.period
        cycles = math.floor(t / period)
        return cycles * len(self.offsets) + bisect.bisect_left(self.offsets, t - cycles * period)

    def count(self, start: float, end: float, rng: np.random.Generator) -> int:
        return max(0, self._before(end) - self._before(start))

    def finished(self, elapsed: float) -> bool:
        return not self.loop and elapsed > self.offsets[-1]

    def describe(self) -> dict[str, object]:
        return {
            "kind": "replay",
            "arrivals": len(self.offsets),
            "span": self.offsets[-1],
            "loop": self.loop,
            "meanRate": len(self.offsets) / self.period,
        }


def parse_timestamp(text: str) -> float:
    """Seconds as a number (epoch or relative), or an RFC 3339 date-time; naive times are UTC."""
    value = text.strip()
    if not value:
        raise ArrivalError("empty timestamp")
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise ArrivalError(f"timestamp {value!r} is not finite")
        return number
    # RFC 3339 allows a lower-case t/z and a space separator; fromisoformat wants upper case.
    try:
        parsed = datetime.datetime.fromisoformat(value.upper())
    except ValueError as error:
        raise ArrivalError(f"timestamp {value!r} is neither seconds nor RFC 3339") from error
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def parse_csv(text: str, column: str = "timestamp", speedup: float = 1.0) -> tuple[float, ...]:
    """Arrival offsets from a CSV trace: sorted, relative to the first arrival, divided by ``speedup``.

    The file has a header naming ``column``; a file without a header whose first cell is already
    a timestamp is read from its first column.
    """
    if not math.isfinite(speedup) or speedup <= 0:
        raise ArrivalError(f"speed-up must be > 0, got {speedup}")
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not rows:
        raise ArrivalError("the CSV has no rows")
    header = [cell.strip() for cell in rows[0]]
    if column in header:
        index, body, first_line = header.index(column), rows[1:], 2
    else:
        try:
            parse_timestamp(rows[0][0])
        except ArrivalError:
            raise ArrivalError(f"the CSV header {header} has no column {column!r}") from None
        index, body, first_line = 0, rows, 1
    stamps: list[float] = []
    for line, row in enumerate(body, start=first_line):
        if index >= len(row):
            raise ArrivalError(f"line {line}: no value in column {column!r}")
        try:
            stamps.append(parse_timestamp(row[index]))
        except ArrivalError as error:
            raise ArrivalError(f"line {line}: {error}") from None
    if not stamps:
        raise ArrivalError("the CSV has a header but no arrivals")
    stamps.sort()
    first = stamps[0]
    return tuple((stamp - first) / speedup for stamp in stamps)
