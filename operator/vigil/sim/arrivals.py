"""Request arrivals: Poisson at a fixed rate, or a replay of recorded arrival times.

The simulator advances in ticks and asks each load "which requests arrived in [t0, t1)?": their
moments inside the tick and their sizes, as arrays, so the queue behind can play them in event
time. Poisson arrivals are what independent clients produce; replaying a real trace (a CSV with
a timestamp column, in seconds or RFC 3339, optionally sped up) reproduces bursts and diurnal
shapes that a constant rate hides. A trace may also carry a size per request (tokens, say):
sizes are normalised to mean 1 over the trace and scale each request's service time, so a
replica's capacity stays "requests per second at the trace's mean size".
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


@dataclasses.dataclass(frozen=True)
class Batch:
    """Requests arriving in one window: ``offsets`` (seconds after the window's start, sorted) and
    ``sizes`` (service-time factors)."""

    offsets: np.ndarray
    sizes: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets)


EMPTY = Batch(np.zeros(0), np.zeros(0))


class Arrivals(Protocol):
    def take(self, start: float, end: float, rng: np.random.Generator) -> Batch:
        """The arrivals in [start, end), seconds since the load started."""
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

    def take(self, start: float, end: float, rng: np.random.Generator) -> Batch:
        span = end - start
        if span <= 0 or self.rate == 0:
            return EMPTY
        count = int(rng.poisson(self.rate * span))
        return Batch(np.sort(rng.uniform(0.0, span, count)), np.ones(count))

    def finished(self, elapsed: float) -> bool:
        return False

    def describe(self) -> dict[str, object]:
        return {"kind": "poisson", "rate": self.rate}


@dataclasses.dataclass(frozen=True)
class Trace:
    """A parsed trace: arrival offsets (seconds from the first arrival, divided by the speed-up)
    and, when the trace has a size column, each request's size divided by the mean size."""

    offsets: tuple[float, ...]
    sizes: tuple[float, ...] | None = None
    mean_size: float | None = None
    """The mean of the raw sizes (in the trace's unit), for reports."""


@dataclasses.dataclass(frozen=True)
class Replay:
    """Arrival offsets (seconds from the first arrival, already divided by the speed-up), and
    optionally each request's size factor (mean 1)."""

    offsets: tuple[float, ...]
    loop: bool = False
    sizes: tuple[float, ...] | None = None
    mean_size: float | None = None
    _times: np.ndarray = dataclasses.field(init=False, repr=False, compare=False)
    _factors: np.ndarray = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.offsets:
            raise ArrivalError("a replay needs at least one arrival")
        if any(b < a for a, b in itertools.pairwise(self.offsets)):
            raise ArrivalError("replay offsets must be sorted")
        if self.sizes is not None and len(self.sizes) != len(self.offsets):
            raise ArrivalError("a replay needs one size per arrival")
        object.__setattr__(self, "_times", np.asarray(self.offsets, dtype=float))
        sizes = np.ones(len(self.offsets)) if self.sizes is None else np.asarray(self.sizes, dtype=float)
        object.__setattr__(self, "_factors", sizes)

    @classmethod
    def of(cls, trace: Trace, loop: bool = False) -> Replay:
        return cls(trace.offsets, loop=loop, sizes=trace.sizes, mean_size=trace.mean_size)

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

    def take(self, start: float, end: float, rng: np.random.Generator) -> Batch:
        first, last = self._before(start), self._before(end)
        if last <= first:
            return EMPTY
        count = len(self.offsets)
        cycles, index = np.divmod(np.arange(first, last), count)
        moments = self._times[index] + cycles * (self.period if self.loop else 0.0)
        return Batch(moments - start, self._factors[index])

    def finished(self, elapsed: float) -> bool:
        return not self.loop and elapsed > self.offsets[-1]

    def describe(self) -> dict[str, object]:
        return {
            "kind": "replay",
            "arrivals": len(self.offsets),
            "span": self.offsets[-1],
            "loop": self.loop,
            "meanRate": len(self.offsets) / self.period,
            **({} if self.mean_size is None else {"meanSize": self.mean_size}),
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


def _find_column(header: list[str], column: str, what: str) -> int | None:
    """The index of ``column`` in ``header``: exact match first, else the one case-insensitive
    match; None when absent. Two columns that differ only in case are ambiguous."""
    if column in header:
        return header.index(column)
    matches = [index for index, name in enumerate(header) if name.casefold() == column.casefold()]
    if len(matches) > 1:
        raise ArrivalError(f"the {what} column {column!r} matches {[header[i] for i in matches]}; name one exactly")
    return matches[0] if matches else None


def _parse_size(text: str) -> float:
    try:
        size = float(text.strip())
    except ValueError:
        raise ArrivalError(f"size {text.strip()!r} is not a number") from None
    if not math.isfinite(size) or size < 0:
        raise ArrivalError(f"size {text.strip()!r} must be a finite number >= 0")
    return size


def parse_csv(text: str, column: str = "timestamp", speedup: float = 1.0, size_column: str | None = None) -> Trace:
    """A trace from a CSV: arrival offsets sorted, relative to the first arrival, divided by
    ``speedup``; with ``size_column``, each request's size over the mean size.

    Column names are matched case-insensitively (an exact match wins). The file has a header
    naming ``column``; a file without a header whose first cell is already a timestamp is read
    from its first column (and can have no size column).
    """
    if not math.isfinite(speedup) or speedup <= 0:
        raise ArrivalError(f"speed-up must be > 0, got {speedup}")
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not rows:
        raise ArrivalError("the CSV has no rows")
    header = [cell.strip() for cell in rows[0]]
    index = _find_column(header, column, "time")
    size_index: int | None = None
    if index is not None:
        body, first_line = rows[1:], 2
        if size_column is not None:
            size_index = _find_column(header, size_column, "size")
            if size_index is None:
                raise ArrivalError(f"the CSV has no size column {size_column!r}; its columns are {header}")
    else:
        try:
            parse_timestamp(rows[0][0])
        except ArrivalError:
            raise ArrivalError(f"the CSV has no column {column!r}; its columns are {header}") from None
        if size_column is not None:
            raise ArrivalError(f"a CSV without a header has no size column {size_column!r}")
        index, body, first_line = 0, rows, 1
    stamped: list[tuple[float, float]] = []
    for line, row in enumerate(body, start=first_line):
        if index >= len(row):
            raise ArrivalError(f"line {line}: no value in column {column!r}")
        if size_index is not None and size_index >= len(row):
            raise ArrivalError(f"line {line}: no value in column {size_column!r}")
        try:
            stamp = parse_timestamp(row[index])
            size = _parse_size(row[size_index]) if size_index is not None else 1.0
        except ArrivalError as error:
            raise ArrivalError(f"line {line}: {error}") from None
        stamped.append((stamp, size))
    if not stamped:
        raise ArrivalError("the CSV has a header but no arrivals")
    stamped.sort(key=lambda item: item[0])
    first = stamped[0][0]
    offsets = tuple((stamp - first) / speedup for stamp, _ in stamped)
    if size_index is None:
        return Trace(offsets)
    mean = sum(size for _, size in stamped) / len(stamped)
    if mean <= 0:
        raise ArrivalError(f"the sizes in column {size_column!r} are all zero")
    return Trace(offsets, tuple(size / mean for _, size in stamped), mean)
