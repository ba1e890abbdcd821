"""SLO maths, the state machine, per-revision judging, roll-up and the SLOMet verdict."""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import math

import pytest

from tests.unit import factories
from vigil.api import conditions
from vigil.api import modeldeployment as mdapi
from vigil.api import slo as sloapi
from vigil.observe import promql, slo, windows
from vigil.reconcile import operator as op

F = promql.Family
S = sloapi.SLOState
PAGE, TICKET = windows.Severity.PAGE, windows.Severity.TICKET
NS, MD = "ml", "resnet"
DAY = 86400
NOW = datetime.datetime(2025, 6, 1, 12, 0, tzinfo=datetime.UTC)
SETTINGS = slo.Settings(min_window_seconds=60, current_rate_window_seconds=300, baseline_rate_window_seconds=1800)

# A value per family: a number for every window, or a function of the window (None: no series).
Value = float | collections.abc.Callable[[int], float | None]
Data = collections.abc.Mapping[str, collections.abc.Mapping[promql.Family, Value]]


def spec(**fields: object) -> sloapi.SLOSpec:
    return sloapi.SLOSpec.model_validate({"name": "avail", "kind": "availability", "objective": 99.9, **fields})


def revision(name: str = "r1", age: float = 10 * DAY) -> slo.RevisionRef:
    return slo.RevisionRef(name=name, since=NOW - datetime.timedelta(seconds=age))


def target(
    *slos: sloapi.SLOSpec,
    revisions: tuple[slo.RevisionRef, ...] = (revision(),),
    previous: tuple[sloapi.SLOStatus, ...] = (),
    condition: conditions.Condition | None = None,
    name: str = MD,
) -> slo.Target:
    return slo.Target(
        namespace=NS,
        name=name,
        generation=3,
        slos=slos or (spec(),),
        revisions=revisions,
        previous=previous,
        previous_condition=condition,
    )


def answers(t: slo.Target, data: Data) -> dict[promql.Need, promql.Vector]:
    """What Prometheus would answer to the plan of ``t``, from per-revision values."""
    thresholds = {
        s.threshold_ms for s in t.slos if s.method is sloapi.LatencyMethod.HISTOGRAM and s.threshold_ms is not None
    }
    results: dict[promql.Need, promql.Vector] = {}
    for query in slo.query_plan([t], NOW, SETTINGS):
        vector: promql.Vector = {}
        for rev, families in data.items():
            value = families.get(query.need.family)
            if callable(value):
                value = value(query.need.window or 0)
            if value is None:
                continue
            les: set[float | None] = set(thresholds) if query.need.family is F.BUCKET else {None}
            for le in les:
                vector[promql.SeriesKey(NS, t.name, rev, le)] = value
        results[query.need] = vector
    return results


def evaluate(t: slo.Target, data: Data) -> slo.DeploymentReport:
    return slo.evaluate(t, answers(t, data), NOW, SETTINGS)


def status_of(t: slo.Target, data: Data) -> sloapi.SLOStatus:
    return evaluate(t, data).slos[0]


def at(
    windows_to_values: dict[int, float | None], default: float | None
) -> collections.abc.Callable[[int], float | None]:
    return lambda window: windows_to_values.get(window, default)


def previous(state: sloapi.SLOState, rev: str = "r1", since: str = "2025-06-01T11:00:00Z") -> sloapi.SLOStatus:
    return sloapi.SLOStatus(name="avail", state=state, revision=rev, last_transition_time=since)


# --- ratio SLOs -------------------------------------------------------------------------------


def test_availability_within_budget_is_met_with_its_sli_and_burn_rates() -> None:
    status = status_of(target(), {"r1": {F.SUCCESS: 999.5, F.FAILURE: 0.5}})
    assert status.state is S.MET
    assert status.sli == pytest.approx(99.95)
    assert status.request_rate == pytest.approx(1000.0)
    assert [b.window for b in status.burn_rates] == ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]
    assert all(b.burn_rate == pytest.approx(0.5) for b in status.burn_rates)
    assert status.revision == "r1"


def test_burn_rate_is_the_error_ratio_over_the_error_budget() -> None:
    status = status_of(target(spec(objective=99.0)), {"r1": {F.SUCCESS: 98.0, F.FAILURE: 2.0}})
    assert status.burn_rates[0].burn_rate == pytest.approx(2.0)  # 2 % errors / 1 % budget


def test_thirty_percent_errors_on_a_three_nines_objective_is_breached() -> None:
    status = status_of(target(), {"r1": {F.SUCCESS: 7.0, F.FAILURE: 3.0}})
    assert status.state is S.BREACHED
    assert status.burn_rates[0].burn_rate == pytest.approx(300.0)
    assert "page pair burns 300x over 5m and 300x over 1h (factor 14.4)" in status.message


def test_page_short_window_alone_is_a_warning_not_a_breach() -> None:
    data: Data = {"r1": {F.SUCCESS: 10.0, F.FAILURE: at({300: 3.0}, 0.005)}}
    status = status_of(target(), data)
    assert status.state is S.WARNING
    assert "short window 5m alone burns" in status.message


def test_page_long_window_alone_is_not_a_breach() -> None:
    data: Data = {"r1": {F.SUCCESS: 10.0, F.FAILURE: at({3600: 3.0}, 0.005)}}
    assert status_of(target(), data).state is S.MET


def test_a_firing_ticket_pair_is_a_warning() -> None:
    # 0.4 % errors: burn 4 -> above the 1d/2h factor 3, below the page factors 14.4 and 6.
    status = status_of(target(), {"r1": {F.SUCCESS: 99.6, F.FAILURE: 0.4}})
    assert status.state is S.WARNING
    assert "ticket pair burns 4x over 2h and 4x over 1d (factor 3)" in status.message


def test_budget_remaining_is_what_the_longest_window_left_of_the_period() -> None:
    status = status_of(target(), {"r1": {F.SUCCESS: 999.5, F.FAILURE: 0.5}})
    assert status.budget_remaining == pytest.approx(1 - 0.5 * 3 / 30)


def test_budget_remaining_goes_negative_when_the_longest_window_overspent() -> None:
    status = status_of(target(), {"r1": {F.SUCCESS: 7.0, F.FAILURE: 3.0}})
    assert status.budget_remaining == pytest.approx(1 - 300 * 3 / 30)


def test_histogram_latency_counts_first_responses_under_the_threshold_as_good() -> None:
    latency = spec(name="p", kind="latency", method="histogram", thresholdMs=100, objective=99.0)
    status = status_of(target(latency), {"r1": {F.SUCCESS: 100.0, F.BUCKET: 98.0, F.COUNT: 100.0}})
    assert status.sli == pytest.approx(98.0)
    assert status.burn_rates[0].burn_rate == pytest.approx(2.0)
    assert status.state is S.WARNING  # the 3d/6h ticket pair (factor 1) fires


def test_histogram_latency_far_over_budget_is_breached() -> None:
    latency = spec(name="p", kind="latency", method="histogram", thresholdMs=100, objective=99.0)
    status = status_of(target(latency), {"r1": {F.SUCCESS: 100.0, F.BUCKET: 80.0, F.COUNT: 100.0}})
    assert status.state is S.BREACHED


def test_histogram_threshold_that_is_not_a_bucket_boundary_is_no_data_and_says_so() -> None:
    latency = spec(name="p", kind="latency", method="histogram", thresholdMs=250, objective=99.0)
    t = target(latency)
    results = answers(t, {"r1": {F.SUCCESS: 100.0, F.COUNT: 100.0}})
    status = slo.evaluate(t, results, NOW, SETTINGS).slos[0]
    assert status.state is S.NO_DATA
    assert "le=250" in status.message
    assert "bucket boundary" in status.message


def test_histogram_good_share_never_exceeds_one_when_rates_extrapolate_unevenly() -> None:
    latency = spec(name="p", kind="latency", method="histogram", thresholdMs=100, objective=99.0)
    status = status_of(target(latency), {"r1": {F.SUCCESS: 100.0, F.BUCKET: 100.2, F.COUNT: 100.0}})
    assert status.sli == pytest.approx(100.0)
    assert status.burn_rates[0].burn_rate == pytest.approx(0.0)


# --- threshold SLOs ---------------------------------------------------------------------------


def test_average_latency_is_duration_over_successes_in_ms_and_burns_value_over_threshold() -> None:
    latency = spec(name="lat", kind="latency", thresholdMs=50)
    status = status_of(target(latency), {"r1": {F.SUCCESS: 10.0, F.FAILURE: 0.0, F.DURATION: 10 * 80_000.0}})
    assert status.sli == pytest.approx(80.0)
    assert status.burn_rates[0].burn_rate == pytest.approx(1.6)
    assert status.state is S.BREACHED
    assert status.budget_remaining is None


def test_average_latency_under_threshold_is_met() -> None:
    latency = spec(name="lat", kind="latency", thresholdMs=50)
    status = status_of(target(latency), {"r1": {F.SUCCESS: 10.0, F.FAILURE: 1.0, F.DURATION: 10 * 20_000.0}})
    assert status.state is S.MET
    assert status.sli == pytest.approx(20.0)


def test_average_latency_without_duration_series_is_no_data_never_zero_latency() -> None:
    latency = spec(name="lat", kind="latency", thresholdMs=50)
    status = status_of(target(latency), {"r1": {F.SUCCESS: 10.0, F.FAILURE: 0.0}})
    assert status.state is S.NO_DATA
    assert "request-duration" in status.message


def test_queue_time_uses_the_queue_duration_counter() -> None:
    queue = spec(name="q", kind="queueTime", thresholdMs=5)
    data: Data = {"r1": {F.SUCCESS: 100.0, F.FAILURE: 0.0, F.DURATION: 1e9, F.QUEUE: 100 * 8000.0}}
    status = status_of(target(queue), data)
    assert status.sli == pytest.approx(8.0)
    assert status.state is S.BREACHED


def test_queue_time_with_every_request_failing_is_no_data_not_zero_queueing() -> None:
    queue = spec(name="q", kind="queueTime", thresholdMs=5)
    status = status_of(target(queue), {"r1": {F.SUCCESS: 0.0, F.FAILURE: 10.0, F.QUEUE: 0.0}})
    assert status.state is S.NO_DATA
    assert "0/0" in status.message


def test_gpu_memory_over_its_maximum_utilization_is_breached() -> None:
    gpu = spec(name="mem", kind="gpuMemory", maxUtilization=0.9)
    status = status_of(target(gpu), {"r1": {F.SUCCESS: 1.0, F.FAILURE: 0.0, F.GPU_MEMORY: 0.95}})
    assert status.state is S.BREACHED
    assert status.sli == pytest.approx(0.95)
    assert status.burn_rates[0].burn_rate == pytest.approx(0.95 / 0.9, rel=1e-5)


def test_gpu_memory_with_zero_total_is_no_data() -> None:
    gpu = spec(name="mem", kind="gpuMemory", maxUtilization=0.9)
    status = status_of(target(gpu), {"r1": {F.SUCCESS: 1.0, F.FAILURE: 0.0, F.GPU_MEMORY: math.inf}})
    assert status.state is S.NO_DATA


def test_gpu_memory_is_gated_by_traffic_like_every_slo() -> None:
    gpu = spec(name="mem", kind="gpuMemory", maxUtilization=0.9)
    status = status_of(target(gpu), {"r1": {F.SUCCESS: 0.0, F.FAILURE: 0.0, F.GPU_MEMORY: 0.5}})
    assert status.state is S.INSUFFICIENT_TRAFFIC


def test_gpu_memory_with_min_request_rate_zero_is_judged_on_an_idle_deployment() -> None:
    gpu = spec(name="mem", kind="gpuMemory", maxUtilization=0.9, minRequestRate=0)
    assert status_of(target(gpu), {"r1": {F.GPU_MEMORY: 0.5}}).state is S.MET


def test_threshold_slo_without_its_threshold_is_no_data_with_a_reason() -> None:
    # The CRD and the model refuse this; the maths must still not invent a verdict for it.
    latency = spec(name="lat", kind="latency", thresholdMs=100).model_copy(update={"threshold_ms": None})
    status = status_of(target(latency), {"r1": {F.SUCCESS: 10.0, F.FAILURE: 0.0, F.DURATION: 1000.0}})
    assert status.state is S.NO_DATA
    assert "no threshold" in status.message


# --- missing data, NaN, no traffic ------------------------------------------------------------


def test_no_traffic_is_insufficient_traffic_never_met_or_breached() -> None:
    status = status_of(target(), {"r1": {F.SUCCESS: 0.0, F.FAILURE: 0.0}})
    assert status.state is S.INSUFFICIENT_TRAFFIC
    assert "0 req/s is below minRequestRate 0.1" in status.message


def test_no_traffic_with_min_request_rate_zero_is_no_data_because_zero_over_zero_is_not_a_ratio() -> None:
    status = status_of(target(spec(minRequestRate=0)), {"r1": {F.SUCCESS: 0.0, F.FAILURE: 0.0}})
    assert status.state is S.NO_DATA
    assert "0/0" in status.message


def test_traffic_below_min_request_rate_is_insufficient_even_with_errors() -> None:
    status = status_of(target(spec(minRequestRate=1)), {"r1": {F.SUCCESS: 0.2, F.FAILURE: 0.3}})
    assert status.state is S.INSUFFICIENT_TRAFFIC


def test_missing_series_is_no_data() -> None:
    status = status_of(target(), {})
    assert status.state is S.NO_DATA
    assert status.sli is None
    assert status.request_rate is None


def test_failure_counter_absent_counts_as_zero_when_success_series_exist() -> None:
    status = status_of(target(), {"r1": {F.SUCCESS: 100.0}})
    assert status.state is S.MET
    assert status.sli == pytest.approx(100.0)


def test_success_counter_absent_with_failures_present_is_every_request_failing() -> None:
    status = status_of(target(), {"r1": {F.FAILURE: 5.0}})
    assert status.state is S.BREACHED
    assert status.sli == pytest.approx(0.0)


def test_another_revisions_success_series_does_not_stand_in_for_a_missing_one() -> None:
    t = target(revisions=(revision("r1"), revision("r2", age=20 * DAY)))
    report = evaluate(t, {"r2": {F.SUCCESS: 100.0}})
    r1 = next(r for r in report.revisions if r.revision == "r1")
    assert r1.judgements[0].state is S.NO_DATA


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_or_infinite_success_rate_is_no_data_not_zero(bad: float) -> None:
    status = status_of(target(), {"r1": {F.SUCCESS: bad, F.FAILURE: 1.0}})
    assert status.state is S.NO_DATA


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_or_infinite_failure_rate_is_no_data(bad: float) -> None:
    assert status_of(target(), {"r1": {F.SUCCESS: 10.0, F.FAILURE: bad}}).state is S.NO_DATA


def test_series_missing_in_the_short_window_only_is_no_data() -> None:
    data: Data = {"r1": {F.SUCCESS: at({300: None}, 10.0), F.FAILURE: at({300: None}, 0.0)}}
    assert status_of(target(), data).state is S.NO_DATA


def test_a_missing_window_beside_a_firing_pair_is_still_no_data() -> None:
    data: Data = {"r1": {F.SUCCESS: at({259200: None}, 7.0), F.FAILURE: at({259200: None}, 3.0)}}
    status = status_of(target(), data)
    assert status.state is S.NO_DATA
    assert any(b.burn_rate == pytest.approx(300.0) for b in status.burn_rates)


# --- the state machine ------------------------------------------------------------------------


def measurement(
    *pairs: tuple[float | None, float | None, float, windows.Severity], rate: float | None = 10.0, min_rate: float = 0.1
) -> slo.Measurement:
    readings = tuple(
        slo.PairReading(
            pair=windows.WindowPair(3600 * (i + 1), 300 * (i + 1), factor, severity),
            long=slo.WindowReading(3600 * (i + 1), 3600 * (i + 1), None, long),
            short=slo.WindowReading(300 * (i + 1), 300 * (i + 1), None, short),
        )
        for i, (long, short, factor, severity) in enumerate(pairs)
    )
    return slo.Measurement(request_rate=rate, min_request_rate=min_rate, pairs=readings)


@pytest.mark.parametrize(
    ("previous", "pairs", "expected"),
    [
        (None, [(1, 1, 14.4, PAGE)], S.MET),
        (None, [(20, 20, 14.4, PAGE)], S.BREACHED),
        (None, [(20, 1, 14.4, PAGE)], S.MET),
        (None, [(1, 20, 14.4, PAGE)], S.WARNING),
        (None, [(14.4, 20, 14.4, PAGE)], S.WARNING),  # exactly at the factor does not exceed it
        (None, [(1, 1, 14.4, PAGE), (4, 4, 3, TICKET)], S.WARNING),
        (None, [(1, 1, 14.4, PAGE), (4, 1, 3, TICKET)], S.MET),
        (None, [(1, 1, 14.4, PAGE), (1, 4, 3, TICKET)], S.MET),  # a ticket short window alone is nothing
        (None, [(4, 4, 3, TICKET)], S.WARNING),  # tickets alone never breach
        (S.BREACHED, [(1, 20, 14.4, PAGE)], S.BREACHED),  # hysteresis: the short window still burns
        (S.BREACHED, [(20, 1, 14.4, PAGE)], S.MET),  # the long window may lag
        (S.BREACHED, [(20, 1, 14.4, PAGE), (1, 7, 6, PAGE)], S.BREACHED),  # every page short must be under
        (S.BREACHED, [(20, 1, 14.4, PAGE), (4, 4, 3, TICKET)], S.WARNING),
        (S.BREACHED, [(1, 4, 3, TICKET)], S.MET),  # ticket shorts do not hold a breach
        (S.WARNING, [(1, 20, 14.4, PAGE)], S.WARNING),
        (S.NO_DATA, [(1, 20, 14.4, PAGE)], S.WARNING),
        (None, [(None, 1, 14.4, PAGE)], S.NO_DATA),
        (None, [(20, 20, 14.4, PAGE), (None, None, 6, PAGE)], S.NO_DATA),
        (S.BREACHED, [(None, None, 14.4, PAGE)], S.NO_DATA),
    ],
)
def test_next_state(
    previous: sloapi.SLOState | None,
    pairs: list[tuple[float | None, float | None, float, windows.Severity]],
    expected: sloapi.SLOState,
) -> None:
    assert slo.next_state(previous, measurement(*pairs)) is expected


@pytest.mark.parametrize("previous", [None, S.MET, S.BREACHED, S.NO_DATA])
def test_next_state_without_request_counters_is_no_data_whatever_came_before(
    previous: sloapi.SLOState | None,
) -> None:
    assert slo.next_state(previous, measurement((20, 20, 14.4, PAGE), rate=None)) is S.NO_DATA


@pytest.mark.parametrize("previous", [None, S.MET, S.BREACHED])
def test_next_state_below_min_request_rate_is_insufficient_traffic_whatever_the_burn(
    previous: sloapi.SLOState | None,
) -> None:
    assert slo.next_state(previous, measurement((20, 20, 14.4, PAGE), rate=0.05)) is S.INSUFFICIENT_TRAFFIC


def test_next_state_with_min_request_rate_zero_ignores_the_request_rate() -> None:
    assert slo.next_state(None, measurement((20, 20, 14.4, PAGE), rate=None, min_rate=0)) is S.BREACHED


def test_breach_holds_while_the_short_window_still_burns_then_clears_with_the_long_window_lagging() -> None:
    held: Data = {"r1": {F.SUCCESS: 10.0, F.FAILURE: at({300: 3.0}, 0.005)}}
    status = status_of(target(previous=(previous(S.BREACHED),)), held)
    assert status.state is S.BREACHED
    assert "still burns" in status.message
    assert "the breach holds" in status.message
    assert status.last_transition_time == "2025-06-01T11:00:00Z"

    recovered: Data = {"r1": {F.SUCCESS: 10.0, F.FAILURE: at({3600: 3.0}, 0.005)}}
    status = status_of(target(previous=(previous(S.BREACHED),)), recovered)
    assert status.state is S.MET
    assert status.last_transition_time == "2025-06-01T12:00:00Z"


def test_hysteresis_only_remembers_the_revision_the_breach_was_judged_on() -> None:
    held: Data = {"r1": {F.SUCCESS: 10.0, F.FAILURE: at({300: 3.0}, 0.005)}}
    status = status_of(target(previous=(previous(S.BREACHED, rev="r0"),)), held)
    assert status.state is S.WARNING


def test_a_breach_survives_a_metrics_gap_and_hysteresis_resumes_from_it() -> None:
    gap = status_of(target(previous=(previous(S.BREACHED),)), {})
    assert gap.state is S.NO_DATA
    assert gap.held_state is S.BREACHED
    longer_gap = status_of(target(previous=(gap,)), {})
    assert longer_gap.held_state is S.BREACHED

    still_hot: Data = {"r1": {F.SUCCESS: 10.0, F.FAILURE: at({300: 3.0}, 0.005)}}
    back = status_of(target(previous=(longer_gap,)), still_hot)
    assert back.state is S.BREACHED  # a warning without the memory of the gap
    assert back.held_state is None


def test_a_gap_judged_on_another_revision_holds_nothing() -> None:
    gap = status_of(target(previous=(previous(S.BREACHED, rev="r0"),)), {})
    assert gap.state is S.NO_DATA
    assert gap.held_state is None


def test_a_gap_after_met_holds_met_so_a_hot_short_window_afterwards_is_only_a_warning() -> None:
    gap = status_of(target(previous=(previous(S.MET),)), {})
    assert gap.held_state is S.MET
    still_hot: Data = {"r1": {F.SUCCESS: 10.0, F.FAILURE: at({300: 3.0}, 0.005)}}
    assert status_of(target(previous=(gap,)), still_hot).state is S.WARNING


# --- per-revision judging ---------------------------------------------------------------------


def test_young_revision_is_judged_over_windows_capped_to_its_age() -> None:
    young = revision("r2", age=270)
    t = target(revisions=(young,))
    status = status_of(t, {"r2": {F.SUCCESS: 7.0, F.FAILURE: 3.0}})
    assert status.state is S.BREACHED
    assert [b.window for b in status.burn_rates] == ["4m"]
    assert f"windows capped to its age: data since {conditions.rfc3339(young.since)})" in status.message


def test_young_revision_needs_no_series_older_than_its_age() -> None:
    only_recent = at({60: 3.0, 120: 3.0, 240: 3.0}, None)
    t = target(revisions=(revision("r2", age=270),))
    status = status_of(t, {"r2": {F.SUCCESS: at({60: 7.0, 120: 7.0, 240: 7.0}, None), F.FAILURE: only_recent}})
    assert status.state is S.BREACHED


def test_plan_asks_for_the_capped_windows_of_young_revisions() -> None:
    needs = {q.need for q in slo.query_plan([target(revisions=(revision("r2", age=270),))], NOW, SETTINGS)}
    assert promql.Need(F.FAILURE, 240) in needs
    assert promql.Need(F.FAILURE, 3600) not in needs


def test_young_revision_is_never_judged_below_min_window() -> None:
    status = status_of(target(revisions=(revision("r2", age=3),)), {"r2": {F.SUCCESS: 7.0, F.FAILURE: 3.0}})
    assert [b.window for b in status.burn_rates] == ["1m"]


def test_revision_from_the_future_is_judged_over_min_window() -> None:
    status = status_of(target(revisions=(revision("r2", age=-60),)), {"r2": {F.SUCCESS: 7.0, F.FAILURE: 3.0}})
    assert [b.window for b in status.burn_rates] == ["1m"]


def test_bad_new_revision_breaches_the_deployment_while_the_old_one_is_fine() -> None:
    t = target(revisions=(revision("old"), revision("new", age=600)))
    report = evaluate(t, {"old": {F.SUCCESS: 1000.0, F.FAILURE: 0.1}, "new": {F.SUCCESS: 7.0, F.FAILURE: 3.0}})
    status = report.slos[0]
    assert status.state is S.BREACHED
    assert status.revision == "new"
    assert "other revisions: old Met" in status.message
    assert report.slo_met_by_revision() == {"old": True, "new": False}


def test_deployment_state_is_the_worst_revision_state_no_data_before_insufficient_traffic_before_warning() -> None:
    t = target(revisions=(revision("a"), revision("b", age=20 * DAY), revision("c", age=30 * DAY)))
    warning: dict[promql.Family, Value] = {F.SUCCESS: 99.6, F.FAILURE: 0.4}
    idle: dict[promql.Family, Value] = {F.SUCCESS: 0.0, F.FAILURE: 0.0}
    assert evaluate(t, {"a": warning, "b": idle, "c": warning}).slos[0].revision == "b"
    assert evaluate(t, {"a": warning, "b": idle}).slos[0].state is S.NO_DATA
    assert evaluate(t, {"a": warning, "b": idle}).slos[0].revision == "c"


def test_ties_go_to_the_youngest_revision() -> None:
    t = target(revisions=(revision("older", age=2 * DAY), revision("younger", age=DAY)))
    data: Data = {"older": {F.SUCCESS: 7.0, F.FAILURE: 3.0}, "younger": {F.SUCCESS: 7.0, F.FAILURE: 3.0}}
    assert evaluate(t, data).slos[0].revision == "younger"


def test_deployment_without_serving_revisions_has_insufficient_traffic() -> None:
    status = status_of(target(revisions=()), {})
    assert status.state is S.INSUFFICIENT_TRAFFIC
    assert status.revision is None
    assert status.message == "no revision receives traffic"


def test_revisions_judge_every_slo_independently() -> None:
    latency = spec(name="lat", kind="latency", thresholdMs=50)
    report = evaluate(target(spec(), latency), {"r1": {F.SUCCESS: 10.0, F.FAILURE: 0.0, F.DURATION: 10 * 80_000.0}})
    assert [(s.name, s.state) for s in report.slos] == [("avail", S.MET), ("lat", S.BREACHED)]
    assert report.verdict.status is conditions.ConditionStatus.FALSE
    assert report.slo_met_by_revision() == {"r1": False}


# --- status bookkeeping -----------------------------------------------------------------------


def test_transition_time_stays_while_the_state_stays_and_evaluation_time_moves() -> None:
    status = status_of(target(previous=(previous(S.MET),)), {"r1": {F.SUCCESS: 100.0, F.FAILURE: 0.0}})
    assert status.last_transition_time == "2025-06-01T11:00:00Z"
    assert status.last_evaluation_time == "2025-06-01T12:00:00Z"


def test_transition_time_moves_when_the_state_changes() -> None:
    status = status_of(target(previous=(previous(S.MET),)), {})
    assert status.state is S.NO_DATA
    assert status.last_transition_time == "2025-06-01T12:00:00Z"


def test_status_numbers_are_rounded_to_six_significant_digits() -> None:
    status = status_of(target(), {"r1": {F.SUCCESS: 2.0, F.FAILURE: 1 / 3000}})
    assert status.sli == 99.9833  # 99.98333611...


def test_no_data_with_warn_policy_asks_for_a_warning_event() -> None:
    report = evaluate(target(spec(noDataPolicy="Warn")), {})
    assert report.no_data_warnings == (f"SLO avail: {report.slos[0].message}",)
    assert evaluate(target(spec()), {}).no_data_warnings == ()


def test_traffic_reports_current_and_earlier_baseline_rates_error_ratio_and_gauges() -> None:
    data: Data = {
        "r1": {
            F.SUCCESS: at({300: 90.0, 1500: 33.0}, 1.0),  # 1500: the 25m window 5m ago
            F.FAILURE: at({300: 10.0, 1500: 1.0}, 0.0),
            F.PENDING: 4.0,
            F.GPU_MEMORY: 0.5,
        }
    }
    traffic = evaluate(target(), data).revisions[0].traffic
    assert traffic == slo.Traffic(
        request_rate=100.0,
        baseline_request_rate=34.0,  # the 25m before the last 5m: (45 x 1800 - 100 x 300) / 1500
        error_ratio=0.1,
        pending_requests=4.0,
        gpu_memory_utilization=0.5,
        windows=slo.RateWindows(current_seconds=300, baseline_seconds=1800, capped=False),
    )


def test_traffic_reports_busy_replicas_and_queue_growth_over_the_current_window() -> None:
    data: Data = {
        "r1": {F.SUCCESS: 30.0, F.FAILURE: 0.0, F.BUSY: at({300: 0.98}, None), F.QUEUE_GROWTH: at({300: 12.5}, None)}
    }
    traffic = evaluate(target(), data).revisions[0].traffic
    assert (traffic.busy_replicas, traffic.queue_growth) == (0.98, 12.5)


def test_demand_families_follow_a_young_revisions_capped_current_window() -> None:
    young = revision(age=120)
    needs = {q.need for q in slo.query_plan([target(revisions=(young,))], NOW, SETTINGS)}
    current = slo.rate_windows(target(revisions=(young,)), young, NOW, SETTINGS).current_seconds
    assert current < 300
    assert {promql.Need(F.BUSY, current), promql.Need(F.QUEUE_GROWTH, current)} <= needs


def test_the_baseline_is_read_before_the_current_window_with_an_offset() -> None:
    needs = {q.need: q.expr for q in slo.query_plan([target()], NOW, SETTINGS)}
    before = needs[promql.Need(F.SUCCESS, 1500, 300)]
    assert before.endswith('(rate(nv_inference_request_success{modeldeployment!=""}[25m] offset 5m))')


def test_traffic_without_series_is_all_unknown() -> None:
    traffic = evaluate(target(), {}).revisions[0].traffic
    assert (traffic.request_rate, traffic.baseline_request_rate, traffic.error_ratio) == (None, None, None)
    assert (traffic.pending_requests, traffic.gpu_memory_utilization) == (None, None)
    assert (traffic.busy_replicas, traffic.queue_growth) == (None, None)


def young_rate(rate: float, age: float) -> collections.abc.Callable[[int], float]:
    """What Prometheus' rate() reads for a steady ``rate`` whose series are ``age`` seconds old:
    the requests there are, divided by the whole window."""
    return lambda window: rate * min(1.0, age / window)


def test_rate_windows_of_a_young_revision_are_capped_to_its_age() -> None:
    young = revision(age=720)  # 12 minutes: the 30m baseline does not fit, so "now" is half of what does
    data: Data = {"r1": {F.SUCCESS: young_rate(10.0, 720), F.FAILURE: 0.0}}
    traffic = evaluate(target(revisions=(young,)), data).revisions[0].traffic
    assert traffic.windows == slo.RateWindows(current_seconds=240, baseline_seconds=480, capped=True)
    assert (traffic.request_rate, traffic.baseline_request_rate) == (10.0, 10.0)


def test_rate_windows_are_capped_to_the_deployment_age_too() -> None:
    created = NOW - datetime.timedelta(seconds=720)
    t = dataclasses.replace(target(), created=created)  # an old revision record, a new deployment
    traffic = evaluate(t, {"r1": {F.SUCCESS: young_rate(10.0, 720), F.FAILURE: 0.0}}).revisions[0].traffic
    assert traffic.windows == slo.RateWindows(current_seconds=240, baseline_seconds=480, capped=True)
    assert traffic.baseline_request_rate == 10.0


def test_a_revision_a_few_minutes_old_compares_now_with_as_long_a_stretch_just_before() -> None:
    young = revision(age=200)  # settled 170 s: a 2m baseline, the last minute against the minute before
    traffic = evaluate(target(revisions=(young,)), {"r1": {F.SUCCESS: young_rate(10.0, 200)}}).revisions[0].traffic
    assert traffic.windows == slo.RateWindows(current_seconds=60, baseline_seconds=120, capped=True)
    assert (traffic.request_rate, traffic.baseline_request_rate) == (10.0, 10.0)


def test_a_revision_too_young_for_two_minimum_windows_has_no_baseline() -> None:
    young = revision(age=140)  # settled 110 s: one 60 s window fits, a baseline before it does not
    traffic = evaluate(target(revisions=(young,)), {"r1": {F.SUCCESS: young_rate(10.0, 140)}}).revisions[0].traffic
    assert traffic.windows == slo.RateWindows(current_seconds=120, baseline_seconds=None, capped=True)
    assert (traffic.request_rate, traffic.baseline_request_rate) == (10.0, None)


@pytest.mark.parametrize("age", [150, 151, 179, 241, 300, 479, 500, 959, 1000, 1829])
def test_young_rate_windows_stay_inside_the_settled_data_and_leave_a_baseline_as_long_as_now(age: int) -> None:
    windows = slo.rate_windows(target(), revision(age=age), NOW, SETTINGS)
    assert windows.capped
    assert windows.baseline_seconds is not None
    assert windows.baseline_seconds <= age - SETTINGS.min_window_seconds / 2  # after the first scrape
    assert windows.baseline_seconds - windows.current_seconds >= windows.current_seconds
    assert SETTINGS.min_window_seconds <= windows.current_seconds <= SETTINGS.current_rate_window_seconds


def test_rate_windows_of_data_older_than_the_baseline_are_the_nominal_ones() -> None:
    windows = slo.rate_windows(target(), revision(age=1830), NOW, SETTINGS)
    assert windows == slo.RateWindows(current_seconds=300, baseline_seconds=1800, capped=False)


def test_the_capped_rate_windows_are_queried() -> None:
    needs = {q.need for q in slo.query_plan([target(revisions=(revision(age=720),))], NOW, SETTINGS)}
    assert {promql.Need(F.SUCCESS, 480), promql.Need(F.FAILURE, 480), promql.Need(F.SUCCESS, 240)} <= needs


def test_target_of_a_model_deployment_carries_its_creation_time() -> None:
    md = factories.md(slos=[{"name": "avail", "kind": "availability"}])
    md.metadata["creationTimestamp"] = "2025-06-01T11:48:00Z"
    assert slo.Target.of(md, [revision()]).created == NOW - datetime.timedelta(minutes=12)


# --- the SLOMet verdict -----------------------------------------------------------------------


def condition(status: conditions.ConditionStatus) -> conditions.Condition:
    return conditions.Condition(
        type=slo.SLO_MET, status=status, reason="Breached", last_transition_time="2025-06-01T11:00:00Z"
    )


def st(name: str, state: sloapi.SLOState) -> sloapi.SLOStatus:
    return sloapi.SLOStatus(name=name, state=state, message=f"{name} is {state}")


@pytest.mark.parametrize(
    ("states", "status", "reason"),
    [
        ([S.MET, S.MET], conditions.ConditionStatus.TRUE, "Met"),
        ([S.MET, S.WARNING], conditions.ConditionStatus.TRUE, "Warning"),
        ([S.MET, S.INSUFFICIENT_TRAFFIC], conditions.ConditionStatus.UNKNOWN, "InsufficientTraffic"),
        ([S.WARNING, S.INSUFFICIENT_TRAFFIC], conditions.ConditionStatus.UNKNOWN, "InsufficientTraffic"),
        ([S.MET, S.BREACHED], conditions.ConditionStatus.FALSE, "Breached"),
        ([S.NO_DATA, S.BREACHED], conditions.ConditionStatus.FALSE, "Breached"),
    ],
)
def test_slo_met_verdict_follows_the_worst_slo(
    states: list[sloapi.SLOState], status: conditions.ConditionStatus, reason: str
) -> None:
    verdict = slo.slo_met_verdict([st(f"s{i}", s) for i, s in enumerate(states)], None)
    assert (verdict.status, verdict.reason) == (status, reason)


def test_slo_met_verdict_names_the_slos_that_decided_it() -> None:
    verdict = slo.slo_met_verdict([st("a", S.BREACHED), st("b", S.MET), st("c", S.BREACHED)], None)
    assert verdict.message == "a: a is Breached; c: c is Breached"


@pytest.mark.parametrize(
    "held", [conditions.ConditionStatus.FALSE, conditions.ConditionStatus.TRUE, conditions.ConditionStatus.UNKNOWN]
)
def test_no_data_holds_the_previous_verdict(held: conditions.ConditionStatus) -> None:
    verdict = slo.slo_met_verdict([st("a", S.NO_DATA), st("b", S.MET)], condition(held))
    assert verdict.status is held
    assert verdict.reason == "NoData"
    assert verdict.message.startswith(f"no data for a; holding the previous verdict ({held})")


def test_no_data_without_a_previous_verdict_is_unknown() -> None:
    verdict = slo.slo_met_verdict([st("a", S.NO_DATA)], None)
    assert verdict.status is conditions.ConditionStatus.UNKNOWN


def test_deployment_without_slos_meets_them() -> None:
    verdict = slo.slo_met_verdict([], None)
    assert (verdict.status, verdict.reason) == (conditions.ConditionStatus.TRUE, "NoSLOs")


def test_report_carries_the_verdict_with_the_held_previous_condition() -> None:
    report = evaluate(target(condition=condition(conditions.ConditionStatus.FALSE)), {})
    assert report.verdict.status is conditions.ConditionStatus.FALSE
    assert report.verdict.reason == "NoData"


# --- the query plan ---------------------------------------------------------------------------


def fleet(n: int, ages: collections.abc.Callable[[int], float] = lambda i: 10 * DAY) -> list[slo.Target]:
    slos = (spec(), spec(name="lat", kind="latency", method="histogram", thresholdMs=100))
    return [target(*slos, name=f"md{i}", revisions=(revision("r", ages(i)),)) for i in range(n)]


def test_plan_size_does_not_grow_with_the_number_of_deployments() -> None:
    one = slo.query_plan(fleet(1), NOW, SETTINGS)
    fifty = slo.query_plan(fleet(50), NOW, SETTINGS)
    assert one == fifty


def test_plan_for_revisions_of_every_age_stays_within_the_window_ladder() -> None:
    plan = slo.query_plan(fleet(500, ages=lambda i: i * 700.0), NOW, SETTINGS)
    windowed = {q.need.window for q in plan if q.need.window is not None and not q.need.offset}
    nominal = {s for p in windows.WORKBOOK for s in (p.long_seconds, p.short_seconds)}
    rungs = {60 * 2**k for k in range(13)}
    assert windowed <= nominal | rungs | {300, 1800}
    # Baselines before the current window: one (window, offset) per rung, and the nominal one.
    before = {(q.need.window, q.need.offset) for q in plan if q.need.offset}
    assert before <= {(b - min(300, b // 2), min(300, b // 2)) for b in rungs} | {(1500, 300)}
    # Per window at most: success, failure, the kinds' families, and the demand families (busy, queue growth).
    assert len(plan) <= 6 * len(windowed) + 2 * len(before) + 2


def test_plan_always_asks_for_traffic_and_gauges_even_without_targets() -> None:
    needs = {q.need for q in slo.query_plan([], NOW, SETTINGS)}
    assert needs == {
        promql.Need(F.SUCCESS, 300),
        promql.Need(F.FAILURE, 300),
        promql.Need(F.SUCCESS, 1500, 300),
        promql.Need(F.FAILURE, 1500, 300),
        promql.Need(F.PENDING),
        promql.Need(F.GPU_MEMORY),
        promql.Need(F.BUSY, 300),
        promql.Need(F.QUEUE_GROWTH, 300),
    }


def test_plan_asks_for_buckets_only_at_the_thresholds_in_use() -> None:
    latency = spec(name="lat", kind="latency", method="histogram", thresholdMs=250)
    plan = slo.query_plan([target(latency)], NOW, SETTINGS)
    buckets = [q for q in plan if q.need.family is F.BUCKET]
    assert buckets
    assert all('le=~"250|250\\\\.0"' in q.expr for q in buckets)
    assert not [q for q in slo.query_plan([target()], NOW, SETTINGS) if q.need.family is F.BUCKET]


def test_plan_asks_only_for_the_families_an_slo_kind_reads() -> None:
    queue = spec(name="q", kind="queueTime", thresholdMs=5, minRequestRate=0)
    families = {q.need.family for q in slo.query_plan([target(queue)], NOW, SETTINGS)}
    assert families == {F.SUCCESS, F.FAILURE, F.QUEUE, F.PENDING, F.GPU_MEMORY, F.BUSY, F.QUEUE_GROWTH}
    queue_windows = {q.need.window for q in slo.query_plan([target(queue)], NOW, SETTINGS) if q.need.family is F.QUEUE}
    assert queue_windows == {300, 1800, 3600, 7200, 21600, 86400, 259200}


# --- wording and plumbing ---------------------------------------------------------------------


def test_threshold_slo_messages_speak_in_the_thresholds_unit() -> None:
    latency = spec(name="lat", kind="latency", thresholdMs=50)
    status = status_of(target(latency), {"r1": {F.SUCCESS: 10.0, F.FAILURE: 0.0, F.DURATION: 10 * 80_000.0}})
    assert status.message.startswith("page pair reads 80ms over 5m and 80ms over 1h (limit 50ms)")


def test_gpu_memory_messages_speak_in_percent() -> None:
    gpu = spec(name="mem", kind="gpuMemory", maxUtilization=0.9)
    status = status_of(target(gpu), {"r1": {F.SUCCESS: 1.0, F.FAILURE: 0.0, F.GPU_MEMORY: 0.95}})
    assert status.message.startswith("page pair reads 95.0% over 5m and 95.0% over 1h (limit 90.0%)")


def test_met_message_names_the_revision() -> None:
    status = status_of(target(), {"r1": {F.SUCCESS: 100.0, F.FAILURE: 0.0}})
    assert status.message == "every window within its factor on revision r1"


def test_target_of_a_model_deployment_carries_its_previous_slo_status_and_condition() -> None:
    md = factories.md(slos=[{"name": "avail", "kind": "availability"}], generation=7)
    md.status.slos = [previous(S.BREACHED)]
    md.status.conditions = [condition(conditions.ConditionStatus.FALSE)]
    t = slo.Target.of(md, [revision()])
    assert (t.namespace, t.name, t.generation) == ("ml", "resnet", 7)
    assert [s.name for s in t.slos] == ["avail"]
    assert t.previous == (previous(S.BREACHED),)
    assert t.previous_condition == condition(conditions.ConditionStatus.FALSE)
    assert t.revisions == (revision(),)


def test_report_finds_the_judgement_behind_each_status() -> None:
    t = target(revisions=(revision("old"), revision("new", age=600)))
    report = evaluate(t, {"old": {F.SUCCESS: 1000.0, F.FAILURE: 0.1}, "new": {F.SUCCESS: 7.0, F.FAILURE: 3.0}})
    judgement = report.decisive(report.slos[0])
    assert judgement is not None
    assert (judgement.revision, judgement.state) == ("new", S.BREACHED)
    assert evaluate(target(revisions=()), {}).decisive(sloapi.SLOStatus(name="avail", state=S.MET)) is None


def test_rate_windows_follow_the_revision_start_not_the_fresh_data_mark() -> None:
    """An action's fresh-data mark caps the SLO windows, but traffic before it is still traffic."""
    marked = slo.RevisionRef(
        name="r1", since=NOW - datetime.timedelta(seconds=90), started=NOW - datetime.timedelta(days=1)
    )
    traffic = evaluate(target(revisions=(marked,)), {"r1": {F.SUCCESS: 10.0, F.FAILURE: 0.0}}).revisions[0].traffic
    assert traffic.windows == slo.RateWindows(current_seconds=300, baseline_seconds=1800, capped=False)


def test_the_rate_windows_start_when_the_first_revision_was_ready_and_outlive_fresh_data() -> None:
    md = factories.md(slos=[{"name": "avail", "kind": "availability"}])
    shape = mdapi.PodShape(model=md.spec.model, triton=md.spec.triton)
    created = cond_stamp(-600)
    md.status = mdapi.ModelDeploymentStatus(
        current_revision="r1",
        switched_at=created,
        revisions=[
            mdapi.Revision(
                name="r1", model_version="1", shape=shape, generation=1, created=created, ready_since=cond_stamp(-420)
            )
        ],
        fresh_data=mdapi.FreshData(since=cond_stamp(-60), incident="i", step="scale"),
    )
    (ref,) = op.serving_revisions(md)
    assert (ref.since, ref.started) == (NOW - datetime.timedelta(seconds=60), NOW - datetime.timedelta(seconds=420))


def cond_stamp(seconds: float) -> str:
    return conditions.rfc3339(NOW + datetime.timedelta(seconds=seconds))
