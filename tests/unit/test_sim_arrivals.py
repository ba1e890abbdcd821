"""Arrivals: Poisson rate and CSV trace replay."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from vigil.sim import arrivals


def test_poisson_mean_rate_and_dispersion() -> None:
    rng = np.random.default_rng(11)
    source = arrivals.Poisson(200.0)
    counts = np.array([source.count(i * 0.1, (i + 1) * 0.1, rng) for i in range(5000)])
    assert counts.mean() == pytest.approx(20.0, rel=0.02)
    # Poisson: variance equals the mean.
    assert counts.var() == pytest.approx(20.0, rel=0.1)
    assert not source.finished(1e9)


def test_poisson_zero_rate_and_empty_window() -> None:
    rng = np.random.default_rng(0)
    assert arrivals.Poisson(0.0).count(0, 10, rng) == 0
    assert arrivals.Poisson(100.0).count(5, 5, rng) == 0


@pytest.mark.parametrize("rate", [-1.0, float("nan"), float("inf")])
def test_poisson_rejects_bad_rates(rate: float) -> None:
    with pytest.raises(arrivals.ArrivalError):
        arrivals.Poisson(rate)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12.5", 12.5),
        (" 1700000000 ", 1700000000.0),
        ("2024-05-01T12:00:00Z", datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC).timestamp()),
        ("2024-05-01t12:00:00.250z", datetime.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=datetime.UTC).timestamp()),
        ("2024-05-01T14:00:00+02:00", datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC).timestamp()),
        ("2024-05-01 12:00:01", datetime.datetime(2024, 5, 1, 12, 0, 1, tzinfo=datetime.UTC).timestamp()),
    ],
)
def test_parse_timestamp(text: str, expected: float) -> None:
    assert arrivals.parse_timestamp(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "yesterday", "nan", "2024-13-45T00:00:00Z"])
def test_parse_timestamp_rejects(text: str) -> None:
    with pytest.raises(arrivals.ArrivalError):
        arrivals.parse_timestamp(text)


def test_parse_csv_with_header_sorts_and_rebases() -> None:
    text = "id,timestamp\na,100.5\nb,100.0\nc,102.0\n\n"
    assert arrivals.parse_csv(text) == (0.0, 0.5, 2.0)


def test_parse_csv_rfc3339_named_column_and_speedup() -> None:
    text = "when,user\n2024-05-01T12:00:00Z,u\n2024-05-01T12:00:10Z,v\n2024-05-01T12:01:00Z,w\n"
    assert arrivals.parse_csv(text, column="when", speedup=10) == pytest.approx((0.0, 1.0, 6.0))


def test_parse_csv_without_header_reads_the_first_column() -> None:
    assert arrivals.parse_csv("3\n1\n2\n") == (0.0, 1.0, 2.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no rows"),
        ("a,b\n1,2\n", "no column 'timestamp'"),
        ("timestamp\n", "no arrivals"),
        ("x,timestamp\n1,2\n3\n", "line 3"),
        ("timestamp\n1\nsoon\n", "line 3"),
    ],
)
def test_parse_csv_errors_say_where(text: str, message: str) -> None:
    with pytest.raises(arrivals.ArrivalError, match=message):
        arrivals.parse_csv(text)


def test_parse_csv_rejects_bad_speedup() -> None:
    with pytest.raises(arrivals.ArrivalError, match="speed-up"):
        arrivals.parse_csv("1\n", speedup=0)


def test_replay_counts_each_arrival_once_across_ticks() -> None:
    rng = np.random.default_rng(0)
    replay = arrivals.Replay((0.0, 0.05, 0.1, 0.1, 0.35, 1.0))
    counts = [replay.count(i * 0.1, (i + 1) * 0.1, rng) for i in range(12)]
    assert counts[:4] == [2, 2, 0, 1]
    assert sum(counts) == 6
    assert not replay.finished(0.99)
    assert replay.finished(1.01)


def test_replay_loops() -> None:
    rng = np.random.default_rng(0)
    replay = arrivals.Replay((0.0, 1.0), loop=True)
    assert replay.period == pytest.approx(2.0)
    assert replay.count(0, 10, rng) == 10
    assert not replay.finished(1e6)
    assert replay.describe()["meanRate"] == pytest.approx(1.0)


def test_replay_validates_offsets() -> None:
    with pytest.raises(arrivals.ArrivalError):
        arrivals.Replay(())
    with pytest.raises(arrivals.ArrivalError):
        arrivals.Replay((1.0, 0.5))
