"""Alerting windows: the workbook table, its scaling to other periods, the floor and age capping."""

from __future__ import annotations

import pytest

from vigil.api import slo as sloapi
from vigil.observe import windows

DAY = 86400
PAGE, TICKET = windows.Severity.PAGE, windows.Severity.TICKET


def spec(**fields: object) -> sloapi.SLOSpec:
    return sloapi.SLOSpec.model_validate({"name": "s", "kind": "availability", **fields})


def test_thirty_day_period_gives_the_sre_workbook_table() -> None:
    pairs = windows.default_pairs(30 * DAY, threshold=False, min_window=60)
    assert [(p.long, p.short, p.factor, p.severity) for p in pairs] == [
        ("1h", "5m", 14.4, PAGE),
        ("6h", "30m", 6.0, PAGE),
        ("1d", "2h", 3.0, TICKET),
        ("3d", "6h", 1.0, TICKET),
    ]


def test_seven_day_period_scales_windows_proportionally_and_keeps_factors() -> None:
    pairs = windows.default_pairs(7 * DAY, threshold=False, min_window=60)
    assert [(p.long_seconds, p.short_seconds) for p in pairs] == [
        (840, 70),
        (5040, 420),
        (20160, 1680),
        (60480, 5040),
    ]
    assert [p.factor for p in pairs] == [14.4, 6.0, 3.0, 1.0]


@pytest.mark.parametrize("period_days", [1, 7, 28, 30, 90])
def test_scaled_pairs_spend_the_same_budget_fraction_as_the_workbook(period_days: int) -> None:
    period = period_days * DAY
    pairs = windows.default_pairs(period, threshold=False, min_window=1)
    for pair, row in zip(pairs, windows.WORKBOOK, strict=True):
        spent = pair.factor * pair.long_seconds / period
        expected = row.factor * row.long_seconds / windows.WORKBOOK_PERIOD_SECONDS
        assert spent == pytest.approx(expected, rel=0.01)


def test_windows_round_to_whole_seconds() -> None:
    pairs = windows.default_pairs(1000, threshold=False, min_window=1)
    assert all(isinstance(p.long_seconds, int) and isinstance(p.short_seconds, int) for p in pairs)
    assert pairs[0].short_seconds == 1  # 300 s x 1000 / 2592000 = 0.116 s, never 0


def test_short_period_windows_are_floored_at_min_window() -> None:
    pairs = windows.default_pairs(DAY, threshold=False, min_window=60)
    # 1 day / 30 days: 1h -> 120 s, 5m -> 10 s -> floored, 30m -> 60 s, 2h -> 240 s.
    assert [(p.long_seconds, p.short_seconds) for p in pairs] == [(120, 60), (720, 60), (2880, 240), (8640, 720)]
    assert all(p.short_seconds >= 60 for p in pairs)


def test_a_tiny_period_floors_both_windows_and_keeps_short_not_longer_than_long() -> None:
    pairs = windows.default_pairs(3600, threshold=False, min_window=20)
    assert all(p.long_seconds >= p.short_seconds >= 20 for p in pairs)
    assert pairs[0] == windows.WindowPair(20, 20, 14.4, PAGE)


def test_threshold_slos_use_factor_one_on_every_pair() -> None:
    pairs = windows.default_pairs(30 * DAY, threshold=True, min_window=60)
    assert [p.factor for p in pairs] == [1.0, 1.0, 1.0, 1.0]
    assert [p.long for p in pairs] == ["1h", "6h", "1d", "3d"]


@pytest.mark.parametrize(
    ("fields", "threshold"),
    [
        ({"kind": "availability"}, False),
        ({"kind": "latency", "thresholdMs": 100, "method": "histogram"}, False),
        ({"kind": "latency", "thresholdMs": 100}, True),
        ({"kind": "latency", "thresholdMs": 100, "method": "average"}, True),
        ({"kind": "queueTime", "thresholdMs": 5}, True),
        ({"kind": "gpuMemory", "maxUtilization": 0.9}, True),
    ],
)
def test_is_threshold_separates_ratio_slos_from_threshold_slos(fields: dict[str, object], threshold: bool) -> None:
    assert windows.is_threshold(spec(**fields)) is threshold


def test_pairs_for_uses_the_slo_period_and_kind() -> None:
    pairs = windows.pairs_for(spec(kind="queueTime", thresholdMs=5, period="7d"), min_window=60)
    assert pairs == windows.default_pairs(7 * DAY, threshold=True, min_window=60)


def test_explicit_windows_are_used_as_written() -> None:
    slo = spec(windows=[{"long": "2h", "short": "10m", "factor": 10, "severity": "ticket"}])
    assert windows.pairs_for(slo, min_window=60) == (windows.WindowPair(7200, 600, 10.0, TICKET),)


def test_explicit_windows_are_floored_too() -> None:
    slo = spec(windows=[{"long": "1m", "short": "5s", "factor": 2}])
    assert windows.pairs_for(slo, min_window=20) == (windows.WindowPair(60, 20, 2.0, PAGE),)


def test_explicit_windows_given_the_wrong_way_round_are_ordered() -> None:
    # The CRD and the model refuse this order; the maths still never measures a short window longer.
    backwards = sloapi.BurnWindow.model_construct(long="5m", short="1h", factor=2.0, severity="page")
    slo = spec().model_copy(update={"windows": [backwards]})
    assert windows.pairs_for(slo, min_window=20) == (windows.WindowPair(3600, 300, 2.0, PAGE),)


def test_an_empty_windows_list_falls_back_to_the_defaults() -> None:
    assert windows.pairs_for(spec(windows=[]), min_window=60) == windows.default_pairs(
        30 * DAY, threshold=False, min_window=60
    )


@pytest.mark.parametrize(
    ("age", "rung"),
    [
        (0, 60),
        (-30, 60),
        (59, 60),
        (60, 60),
        (119, 60),
        (120, 120),
        (300, 240),
        (3599, 1920),
        (3600, 1920),
        (3840, 3840),
    ],
)
def test_ladder_rung_is_the_longest_power_of_two_multiple_not_longer_than_the_age(age: float, rung: int) -> None:
    assert windows.ladder_rung(age, 60) == rung


def test_old_revision_keeps_its_windows() -> None:
    pair = windows.WORKBOOK[0]
    assert windows.capped(pair, 10 * 3600, 60) == pair
    assert windows.capped(pair, 3600, 60) == pair


def test_revision_younger_than_both_windows_is_judged_over_one_window_below_its_age() -> None:
    pair = windows.WORKBOOK[0]  # 1h / 5m
    young = windows.capped(pair, 270, 60)  # 4.5 minutes old
    assert (young.long_seconds, young.short_seconds) == (240, 240)
    assert (young.factor, young.severity) == (pair.factor, pair.severity)


def test_revision_between_short_and_long_caps_only_the_long_window() -> None:
    pair = windows.WORKBOOK[0]  # 1h / 5m
    capped = windows.capped(pair, 20 * 60, 60)  # 20 minutes old
    assert (capped.long_seconds, capped.short_seconds) == (960, 300)


def test_capped_long_window_never_falls_below_the_short_window() -> None:
    pair = windows.WORKBOOK[0]  # 1h / 5m
    capped = windows.capped(pair, 7 * 60, 60)  # rung 4m < short 5m
    assert (capped.long_seconds, capped.short_seconds) == (300, 300)


def test_brand_new_revision_is_judged_over_min_window() -> None:
    capped = windows.capped(windows.WORKBOOK[1], 5, 20)
    assert (capped.long_seconds, capped.short_seconds) == (20, 20)


def test_capping_many_different_ages_uses_a_bounded_set_of_windows() -> None:
    pairs = windows.default_pairs(30 * DAY, threshold=False, min_window=60)
    seen = {
        s
        for age in range(0, 4 * DAY, 37)
        for p in pairs
        for s in (windows.capped(p, age, 60).long_seconds, windows.capped(p, age, 60).short_seconds)
    }
    nominal = {s for p in pairs for s in (p.long_seconds, p.short_seconds)}
    ladder = {60 * 2**k for k in range(13)}  # 60 s .. 68 h, below the 3d window
    assert seen <= nominal | ladder
