"""Waiting on conditions with deadlines (never fixed sleeps)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Timeout(AssertionError):
    pass


def until(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
        except Exception as error:  # a transient API error is a "not yet"
            value, last = None, error
        if value:
            return value
        if value is not None:
            last = value
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def holds(check: Callable[[], None], seconds: float, interval: float = 5.0) -> int:
    """Run ``check`` every ``interval`` for ``seconds``, failing at the first ``AssertionError`` it
    raises (an invariant that must hold throughout, e.g. "nothing acts during the outage");
    returns how many checks passed. Other errors (the API server restarting) skip a round."""
    deadline = time.monotonic() + seconds
    passed = 0
    while True:
        try:
            check()
            passed += 1
        except AssertionError:
            raise
        except Exception:  # a transient API error: this round proves nothing either way
            pass
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return passed
        time.sleep(min(interval, remaining))
