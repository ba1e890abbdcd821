"""Pacing of retries: exponential backoff with jitter, and a token bucket for an overall rate.

Pure arithmetic over numbers the caller passes in (failure count, a random draw, the time), so
every schedule is unit-tested without sleeping. The same shape as client-go's rate limiters: a
failing object waits twice as long after each failure up to a cap, and every retry also waits
for a token from one shared bucket, so a thousand failing objects cannot storm the API server.
Jitter spreads replicas and objects that failed together, so they do not retry in lock-step.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Backoff:
    """``base * 2**(failures-1)`` seconds, capped, then shortened by up to ``jitter`` of itself."""

    base: float
    cap: float
    jitter: float = 0.2

    def delay(self, failures: int, draw: float) -> float:
        """The wait after the ``failures``-th consecutive failure; ``draw`` is uniform in [0, 1)."""
        if failures <= 0:
            return 0.0
        exponent = min(failures - 1, 62)  # 2**62 already exceeds any cap; avoids float overflow
        raw = min(self.cap, self.base * 2.0**exponent)
        return raw * (1.0 - self.jitter * draw)


@dataclasses.dataclass
class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; :meth:`reserve` says how long to wait.

    Reserving always succeeds and hands out future tokens in order, like golang.org/x/time/rate's
    ``Reserve``: the caller schedules its work at the returned delay instead of blocking.
    """

    rate: float
    burst: int
    tokens: float = dataclasses.field(init=False)
    updated: float | None = dataclasses.field(default=None, init=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def reserve(self, now: float) -> float:
        """Take one token; seconds until it is actually available (0 when one was saved up)."""
        if self.updated is not None:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate
