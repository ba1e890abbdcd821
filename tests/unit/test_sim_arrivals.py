"""Arrivals: Poisson rate and CSV trace replay."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from vigil.sim import arrivals


def test_poisson_mean_rate_and_dispersion() -> None:
    rng = np.random.default_rng(11)
    source = arrivals.Poisson(200.0)
    batches = [source.take(i * 0.1, (i + 1) * 0.1, rng) for i in range(5000)]
    counts = np.array([len(batch) for batch in batches])
    assert all(np.all(np.diff(b.offsets) >= 0) and np.all((b.offsets >= 0) & (b.offsets < 0.1)) for b in batches)
    assert all(np.all(b.sizes == 1.0) for b in batches)
    # Moments inside a tick are uniform: as many in its first half as in its second.
    first_half = sum(int((b.offsets < 0.05).sum()) for b in batches)
    assert first_half / counts.sum() == pytest.approx(0.5, abs=0.01)
    assert counts.mean() == pytest.approx(20.0, rel=0.02)
    # Poisson: variance equals the mean.
    assert counts.var() == pytest.approx(20.0, rel=0.1)
    assert not source.finished(1e9)


def test_poisson_zero_rate_and_empty_window() -> None:
    rng = np.random.default_rng(0)
    assert len(arrivals.Poisson(0.0).take(0, 10, rng)) == 0
    assert len(arrivals.Poisson(100.0).take(5, 5, rng)) == 0


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
    assert arrivals.parse_csv(text) == arrivals.Trace((0.0, 0.5, 2.0))


def test_parse_csv_rfc3339_named_column_and_speedup() -> None:
    text = "when,user\n2024-05-01T12:00:00Z,u\n2024-05-01T12:00:10Z,v\n2024-05-01T12:01:00Z,w\n"
    assert arrivals.parse_csv(text, column="when", speedup=10).offsets == pytest.approx((0.0, 1.0, 6.0))


def test_parse_csv_without_header_reads_the_first_column() -> None:
    assert arrivals.parse_csv("3\n1\n2\n").offsets == (0.0, 1.0, 2.0)


def test_parse_csv_matches_columns_in_any_case() -> None:
    text = "ID,TIMESTAMP,Tokens\na,100.5,300\nb,100.0,100\n"
    trace = arrivals.parse_csv(text, size_column="tokens")
    assert trace.offsets == (0.0, 0.5)
    assert trace.sizes == pytest.approx((0.5, 1.5))  # sorted with their arrivals, over the mean (200)
    assert trace.mean_size == pytest.approx(200.0)
    # An exact match wins over a case-insensitive one.
    assert arrivals.parse_csv("Timestamp,timestamp\n5,1\n7,2\n").offsets == (0.0, 1.0)
    with pytest.raises(arrivals.ArrivalError, match="matches"):
        arrivals.parse_csv("Timestamp,TIMESTAMP\n5,1\n", column="timeStamp")


@pytest.mark.parametrize(
    ("text", "size_column", "message"),
    [
        ("time,user\n1,a\n", None, r"no column 'timestamp'; its columns are \['time', 'user'\]"),
        ("timestamp,user\n1,a\n", "tokens", r"no size column 'tokens'; its columns are \['timestamp', 'user'\]"),
        ("timestamp,tokens\n1,many\n", "tokens", "line 2: size 'many' is not a number"),
        ("timestamp,tokens\n1,-3\n", "tokens", "line 2: size '-3' must be"),
        ("timestamp,tokens\n1,0\n2,0\n", "tokens", "all zero"),
        ("timestamp,tokens\n1\n", "tokens", "line 2: no value in column 'tokens'"),
        ("1\n2\n", "tokens", "without a header"),
    ],
)
def test_parse_csv_errors_name_the_columns_that_exist(text: str, size_column: str | None, message: str) -> None:
    with pytest.raises(arrivals.ArrivalError, match=message):
        arrivals.parse_csv(text, size_column=size_column)


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
    batches = [replay.take(i * 0.1, (i + 1) * 0.1, rng) for i in range(12)]
    counts = [len(batch) for batch in batches]
    assert counts[:4] == [2, 2, 0, 1]
    assert batches[0].offsets.tolist() == pytest.approx([0.0, 0.05])
    assert batches[3].offsets.tolist() == pytest.approx([0.05])  # 0.35 is 0.05 into the tick at 0.3
    assert sum(counts) == 6
    assert not replay.finished(0.99)
    assert replay.finished(1.01)


def test_replay_loops() -> None:
    rng = np.random.default_rng(0)
    replay = arrivals.Replay((0.0, 1.0), loop=True)
    assert replay.period == pytest.approx(2.0)
    batch = replay.take(0, 10, rng)
    assert batch.offsets.tolist() == pytest.approx([float(t) for t in range(10)])
    assert replay.take(3.5, 6.5, rng).offsets.tolist() == pytest.approx([0.5, 1.5, 2.5])
    assert not replay.finished(1e6)
    assert replay.describe()["meanRate"] == pytest.approx(1.0)


def test_replay_validates_offsets() -> None:
    with pytest.raises(arrivals.ArrivalError):
        arrivals.Replay(())
    with pytest.raises(arrivals.ArrivalError):
        arrivals.Replay((1.0, 0.5))


def test_replay_carries_each_requests_size() -> None:
    rng = np.random.default_rng(0)
    trace = arrivals.parse_csv("timestamp,tokens\n0,10\n1,30\n", size_column="tokens")
    replay = arrivals.Replay.of(trace, loop=True)
    batch = replay.take(0, 4, rng)
    assert batch.sizes.tolist() == pytest.approx([0.5, 1.5, 0.5, 1.5])
    assert replay.describe()["meanSize"] == pytest.approx(20.0)
    with pytest.raises(arrivals.ArrivalError, match="one size per arrival"):
        arrivals.Replay((0.0, 1.0), sizes=(1.0,))
