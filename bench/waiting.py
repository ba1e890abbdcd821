"""Polling with deadlines, and first-seen times of milestones. No fixed sleeps in any wait.

A benchmark follows one object (a ModelDeployment, sometimes with the simulator's view of its
pods) and records the wall-clock moment each *milestone* is first seen: "currentRevision switched",
"Breached", "rollback set", "Met again". Milestones are ordered by dependency (``after``): "Met
again" only counts once "rollback set" was seen. The bookkeeping (:func:`advance`) is pure.

Times are ``time.time()`` taken just before the poll's request was sent, so they compare with the
moment a fault was injected or a spec was patched (also taken with ``time.time()``). The
resolution is the poll interval plus one API round trip.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
POLL_SECONDS = 0.2
# Set when the benchmark is interrupted (Ctrl-C): every wait in every thread stops at once, so
# the runs' cleanup (loads, faults, namespaces, the operator) happens without waiting out deadlines.
STOP = threading.Event()


class Interrupted(RuntimeError):
    """The benchmark is stopping; raised from any wait."""


class Timeout(RuntimeError):
    """A wait ran out of time; ``seen`` holds the milestones observed before it did."""

    def __init__(self, message: str, seen: dict[str, float] | None = None) -> None:
        super().__init__(message)
        self.seen = dict(seen or {})


def until(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """Poll ``probe`` until it returns something truthy; a transient exception counts as "not yet"."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        started = time.monotonic()
        try:
            value = probe()
        except Exception as error:
            value, last = None, error
        if value:
            return value
        if value is not None:
            last = value
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        _pace(started, interval, deadline)


def _pace(started: float, interval: float, deadline: float) -> None:
    """Wait out the rest of this poll's interval (never past the deadline), unless stopping."""
    remaining = min(started + interval, deadline) - time.monotonic()
    if STOP.wait(max(0.0, remaining)):
        raise Interrupted("the benchmark was interrupted")


@dataclasses.dataclass(frozen=True)
class Milestone:
    """A predicate over one observation; counted once, and only after every ``after`` was seen.

    With ``hold`` > 0 the predicate must keep holding for that many seconds (every observation in
    between); the milestone is then recorded at the *start* of that run. "SLO Met again" uses it,
    so a verdict that flips straight back does not count as recovery.
    """

    name: str
    test: Callable[[Any], bool]
    after: tuple[str, ...] = ()
    hold: float = 0.0


@dataclasses.dataclass(frozen=True)
class Progress:
    """Milestones seen (first-seen times), and the start of the current run of each held one."""

    seen: dict[str, float] = dataclasses.field(default_factory=dict)
    holding: dict[str, float] = dataclasses.field(default_factory=dict)


def advance(progress: Progress, milestones: Sequence[Milestone], observation: Any, at: float) -> Progress:
    """``progress`` after ``observation`` (taken at ``at``): every milestone reached for the first time.

    Milestones are checked in order, so one observation can satisfy a chain (a milestone and one
    that depends on it) at once.
    """
    seen, holding = dict(progress.seen), dict(progress.holding)
    for milestone in milestones:
        if milestone.name in seen:
            continue
        if any(name not in seen for name in milestone.after):
            continue
        if not milestone.test(observation):
            holding.pop(milestone.name, None)
            continue
        start = holding.get(milestone.name, at)
        if at - start >= milestone.hold:
            seen[milestone.name] = start
            holding.pop(milestone.name, None)
        else:
            holding[milestone.name] = start
    return Progress(seen, holding)


def follow(
    fetch: Callable[[], Any],
    milestones: Sequence[Milestone],
    final: str,
    timeout: float,
    interval: float = POLL_SECONDS,
) -> dict[str, float]:
    """Poll ``fetch`` every ``interval`` until milestone ``final`` is seen; first-seen times by name.

    A failing fetch (API hiccup) is skipped. On timeout, :class:`Timeout` carries the partial times.
    """
    names = {m.name for m in milestones}
    if final not in names:
        raise ValueError(f"final milestone {final!r} is not among {sorted(names)}")
    deadline = time.monotonic() + timeout
    progress = Progress()
    last_error: Exception | None = None
    while True:
        started = time.monotonic()
        at = time.time()
        try:
            observation = fetch()
        except Exception as error:
            last_error = error
        else:
            progress = advance(progress, milestones, observation, at)
            if final in progress.seen:
                return progress.seen
        if time.monotonic() > deadline:
            missing = [m.name for m in milestones if m.name not in progress.seen]
            detail = f"; last error: {last_error!r}" if last_error else ""
            raise Timeout(f"timed out after {timeout:.0f}s; not seen: {', '.join(missing)}{detail}", progress.seen)
        _pace(started, interval, deadline)
