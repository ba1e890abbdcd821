"""bench.stats and bench.waiting: summaries, targets, ratios, the operator's /metrics, milestones."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bench import stats, waiting


def test_percentile_matches_numpys_linear_definition() -> None:
    values = [7.0, 1.0, 3.0, 10.0, 4.5, 2.0]
    for q in (0, 10, 25, 50, 90, 100):
        assert stats.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_rejects_empty_input_and_bad_quantiles() -> None:
    with pytest.raises(ValueError, match="no values"):
        stats.percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        stats.percentile([1.0], 101)


def test_summary_of_runs_ignores_missing_and_non_finite_values() -> None:
    summary = stats.summarize([4.0, None, 2.0, math.nan, 6.0, 8.0])
    assert summary == stats.Summary(n=4, min=2.0, median=5.0, p90=pytest.approx(7.4), max=8.0, mean=5.0)
    assert stats.summarize([None, math.inf]) is None


def test_single_run_summary_has_every_statistic_equal() -> None:
    summary = stats.summarize([3.5])
    assert summary is not None
    assert (summary.min, summary.median, summary.p90, summary.max) == (3.5, 3.5, 3.5, 3.5)


def test_detection_target_is_two_scrapes_and_one_evaluation() -> None:
    assert stats.detection_target(5.0, 5.0) == 15.0
    assert stats.detection_target(15.0, 10.0) == 40.0


def test_target_passes_only_when_every_run_meets_it() -> None:
    assert stats.meets_target(stats.summarize([9.0, 15.0]), 15.0)
    assert not stats.meets_target(stats.summarize([9.0, 15.1]), 15.0)
    assert not stats.meets_target(None, 15.0)


def test_ratios_are_none_without_both_sides_or_a_positive_denominator() -> None:
    assert stats.ratio(3.0, 12.0) == 0.25
    assert stats.ratio(None, 12.0) is None
    assert stats.ratio(3.0, 0.0) is None
    ours, theirs = stats.summarize([10.0, 12.0, 14.0]), stats.summarize([60.0, 40.0, 80.0])
    assert stats.median_ratio(ours, theirs) == pytest.approx(0.2)
    assert stats.median_ratio(ours, None) is None


def test_elapsed_needs_both_moments() -> None:
    assert stats.elapsed(100.0, 112.5) == 12.5
    assert stats.elapsed(None, 112.5) is None


def test_summaries_by_key_skip_runs_that_failed() -> None:
    runs = [{"a": 1.0, "b": 10.0}, {"error": "timed out"}, {"a": 3.0}]
    found = stats.summaries(runs, ["a", "b", "c"])
    assert found["a"] is not None
    assert found["a"].n == 2
    assert found["b"] is not None
    assert found["b"].n == 1
    assert found["c"] is None


METRICS_TEXT = """\
# HELP vigil_observe_loop_duration_seconds Duration of one fleet-wide evaluation cycle.
# TYPE vigil_observe_loop_duration_seconds histogram
vigil_observe_loop_duration_seconds_bucket{le="0.05"} 3.0
vigil_observe_loop_duration_seconds_bucket{le="+Inf"} 4.0
vigil_observe_loop_duration_seconds_count 4.0
vigil_observe_loop_duration_seconds_sum 0.2
# HELP vigil_prometheus_query_duration_seconds Duration of one PromQL query.
# TYPE vigil_prometheus_query_duration_seconds histogram
vigil_prometheus_query_duration_seconds_bucket{le="+Inf"} 48.0
vigil_prometheus_query_duration_seconds_count 48.0
vigil_prometheus_query_duration_seconds_sum 0.96
# HELP vigil_observe_metrics_available 1 when the last evaluation cycle could query Prometheus.
# TYPE vigil_observe_metrics_available gauge
vigil_observe_metrics_available 1.0
# HELP vigil_prometheus_query_errors_total PromQL queries that failed, by reason.
# TYPE vigil_prometheus_query_errors_total counter
vigil_prometheus_query_errors_total{reason="connection"} 2.0
vigil_prometheus_query_errors_total{reason="timeout"} 1.0
"""


def test_operator_metrics_are_read_from_the_text_format() -> None:
    counters = stats.parse_operator_metrics(METRICS_TEXT)
    assert counters == stats.OperatorCounters(
        loops=4.0, loop_seconds=0.2, queries=48.0, query_seconds=0.96, query_errors=3.0, metrics_available=True
    )
    assert stats.parse_operator_metrics("") == stats.OperatorCounters(0.0, 0.0, 0.0, 0.0)


def test_cycle_cost_is_the_increase_per_cycle() -> None:
    before = stats.OperatorCounters(loops=4, loop_seconds=0.2, queries=48, query_seconds=0.96)
    after = stats.OperatorCounters(loops=10, loop_seconds=0.8, queries=120, query_seconds=1.68, query_errors=2)
    cost = stats.cycle_cost(before, after)
    assert cost.query_errors == 2
    assert cost.cycles == 6
    assert cost.queries_per_cycle == 12.0
    assert cost.mean_loop_seconds == pytest.approx(0.1)
    assert cost.mean_query_seconds == pytest.approx(0.01)


def test_cycle_cost_without_cycles_is_unknown_and_a_restart_is_refused() -> None:
    same = stats.OperatorCounters(loops=4, loop_seconds=0.2, queries=48, query_seconds=0.96)
    assert stats.cycle_cost(same, same).queries_per_cycle is None
    with pytest.raises(ValueError, match="restarted"):
        stats.cycle_cost(same, stats.OperatorCounters(0, 0, 0, 0))


def test_constant_queries_need_one_value_and_equal_values() -> None:
    assert stats.constant([12.0, 12.0, None])
    assert not stats.constant([12.0, 14.0])
    assert stats.constant([12.0, 12.4], tolerance=0.5)
    assert not stats.constant([None])


def test_milestones_are_recorded_once_in_dependency_order() -> None:
    milestones = [
        waiting.Milestone("switched", lambda o: o["rev"] == "v2"),
        waiting.Milestone("rolled", lambda o: o["rev"] == "v1", after=("switched",)),
    ]
    progress = waiting.advance(waiting.Progress(), milestones, {"rev": "v1"}, 1.0)
    assert progress.seen == {}, "v1 before the switch is not a rollback"
    progress = waiting.advance(progress, milestones, {"rev": "v2"}, 2.0)
    progress = waiting.advance(progress, milestones, {"rev": "v2"}, 3.0)
    assert progress.seen == {"switched": 2.0}
    progress = waiting.advance(progress, milestones, {"rev": "v1"}, 4.0)
    assert progress.seen == {"switched": 2.0, "rolled": 4.0}


def test_one_observation_can_complete_a_chain() -> None:
    milestones = [
        waiting.Milestone("a", lambda o: o > 0),
        waiting.Milestone("b", lambda o: o > 1, after=("a",)),
        waiting.Milestone("c", lambda o: o > 2, after=("a", "b")),
    ]
    assert waiting.advance(waiting.Progress(), milestones, 5, 7.0).seen == {"a": 7.0, "b": 7.0, "c": 7.0}


def test_a_held_milestone_counts_from_the_start_of_a_run_that_lasted() -> None:
    met = [waiting.Milestone("met", lambda o: o == "Met", hold=10.0)]
    progress = waiting.Progress()
    for at, state in [(0.0, "Met"), (2.0, "Breached"), (3.0, "Met"), (9.0, "Met"), (12.9, "Met")]:
        progress = waiting.advance(progress, met, state, at)
    assert progress.seen == {}, "a flip back to Breached restarts the run; 9.9 s is not enough"
    assert progress.holding == {"met": 3.0}
    progress = waiting.advance(progress, met, "Met", 13.0)
    assert progress.seen == {"met": 3.0}
    assert progress.holding == {}


def test_follow_returns_first_seen_times_and_skips_failing_fetches() -> None:
    answers = iter([RuntimeError("api hiccup"), 0, 1, 2])

    def fetch() -> int:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    seen = waiting.follow(
        fetch, [waiting.Milestone("one", lambda o: o >= 1), waiting.Milestone("two", lambda o: o >= 2)], "two", 5, 0.0
    )
    assert set(seen) == {"one", "two"}
    assert seen["one"] <= seen["two"]


def test_follow_times_out_with_what_it_saw() -> None:
    with pytest.raises(waiting.Timeout, match="not seen: never") as raised:
        waiting.follow(
            lambda: 1,
            [waiting.Milestone("always", lambda o: True), waiting.Milestone("never", lambda o: False)],
            "never",
            timeout=0.05,
            interval=0.01,
        )
    assert set(raised.value.seen) == {"always"}


def test_follow_rejects_an_unknown_final_milestone() -> None:
    with pytest.raises(ValueError, match="final"):
        waiting.follow(lambda: 1, [waiting.Milestone("a", lambda o: True)], "b", 1)


def test_every_wait_ends_when_the_benchmark_stops() -> None:
    waiting.STOP.set()
    try:
        with pytest.raises(waiting.Interrupted):
            waiting.follow(lambda: 0, [waiting.Milestone("never", lambda o: False)], "never", timeout=60)
        with pytest.raises(waiting.Interrupted):
            waiting.until(lambda: None, 60, "nothing")
    finally:
        waiting.STOP.clear()
