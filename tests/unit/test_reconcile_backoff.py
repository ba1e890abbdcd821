"""Retry pacing: exponential backoff with jitter, and the shared token bucket."""

from __future__ import annotations

import pytest

from vigil.reconcile import backoff


def test_backoff_doubles_per_failure_up_to_the_cap() -> None:
    pace = backoff.Backoff(base=0.5, cap=10.0, jitter=0.0)
    assert [pace.delay(n, 0.0) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert pace.delay(0, 0.0) == 0.0
    assert pace.delay(10_000, 0.0) == 10.0  # no overflow however long it kept failing


@pytest.mark.parametrize("draw", [0.0, 0.5, 0.999])
def test_jitter_only_shortens_and_by_at_most_its_fraction(draw: float) -> None:
    pace = backoff.Backoff(base=1.0, cap=60.0, jitter=0.2)
    delay = pace.delay(3, draw)
    assert 4.0 * 0.8 <= delay <= 4.0
    assert pace.delay(3, 0.0) == 4.0


def test_jitter_spreads_keys_that_failed_together() -> None:
    pace = backoff.Backoff(base=1.0, cap=60.0, jitter=0.2)
    assert len({pace.delay(4, draw / 10) for draw in range(10)}) == 10


def test_token_bucket_grants_the_burst_then_paces_at_its_rate() -> None:
    bucket = backoff.TokenBucket(rate=10.0, burst=3)
    assert [bucket.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve(0.0) == pytest.approx(0.1)
    assert bucket.reserve(0.0) == pytest.approx(0.2)  # reservations queue up in order


def test_token_bucket_refills_over_time_but_never_beyond_the_burst() -> None:
    bucket = backoff.TokenBucket(rate=1.0, burst=2)
    bucket.reserve(0.0)
    bucket.reserve(0.0)
    assert bucket.reserve(100.0) == 0.0
    assert bucket.reserve(100.0) == 0.0
    assert bucket.reserve(100.0) == pytest.approx(1.0)
