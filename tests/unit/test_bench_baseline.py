"""bench.baseline: the Flagger-like decision policy, its PromQL, and the status it writes."""

from __future__ import annotations

import math
from typing import Any

import pytest
from bench import baseline


def test_success_rate_check_fails_below_99_percent_and_no_data_is_neither() -> None:
    check = baseline.success_rate_check("ns", "md")
    assert check.threshold == 99.0
    assert check.judge(99.5) is baseline.Verdict.PASS
    assert check.judge(99.0) is baseline.Verdict.PASS
    assert check.judge(70.0) is baseline.Verdict.FAIL
    assert check.judge(None) is baseline.Verdict.NO_DATA
    assert check.judge(math.nan) is baseline.Verdict.NO_DATA


def test_duration_check_fails_above_its_threshold() -> None:
    check = baseline.queue_time_check("ns", "md", 100.0)
    assert check.judge(40.0) is baseline.Verdict.PASS
    assert check.judge(100.0) is baseline.Verdict.PASS
    assert check.judge(250.0) is baseline.Verdict.FAIL


def test_policy_acts_once_on_the_first_failed_check() -> None:
    policy = baseline.Policy()
    assert not policy.record(baseline.Verdict.PASS)
    assert not policy.record(baseline.Verdict.NO_DATA)
    assert policy.record(baseline.Verdict.FAIL)
    assert policy.acted
    assert not policy.record(baseline.Verdict.FAIL), "a failed canary is rolled back once"


def test_policy_with_a_higher_threshold_counts_failed_checks() -> None:
    policy = baseline.Policy(max_failed_checks=3)
    verdicts = [baseline.Verdict.FAIL, baseline.Verdict.PASS, baseline.Verdict.FAIL, baseline.Verdict.FAIL]
    assert [policy.record(v) for v in verdicts] == [False, False, False, True]


def test_policy_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="interval"):
        baseline.Policy(interval_seconds=0)
    with pytest.raises(ValueError, match="max_failed_checks"):
        baseline.Policy(max_failed_checks=0)


@pytest.mark.parametrize(
    ("now", "expected"),
    [(100.0, 160.0), (159.9, 160.0), (160.0, 220.0), (100.0 + 600.5, 760.0), (50.0, 160.0)],
)
def test_ticks_fall_every_interval_after_the_start(now: float, expected: float) -> None:
    assert baseline.Policy(interval_seconds=60).next_tick(100.0, now) == pytest.approx(expected)


def test_success_rate_query_is_the_whole_deployment_over_one_minute() -> None:
    query = baseline.success_rate_query("bench-x", "rb-b0")
    assert query.startswith("100 * sum(rate(nv_inference_request_success")
    assert '{namespace="bench-x", modeldeployment="rb-b0"}' in query
    assert "[1m]" in query
    assert "revision" not in query, "Flagger judges the deployment, not a revision"
    assert "or vector(0)" in query, "a deployment without failure series has no failures"


def test_queue_time_query_is_the_same_sli_as_the_queue_time_slo() -> None:
    query = baseline.queue_time_query("ns", "md")
    assert "rate(nv_inference_queue_duration_us" in query
    assert "/ sum(rate(nv_inference_request_success" in query
    assert query.endswith("/ 1000")


def answer(*values: str) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1700000000.0, v]} for v in values]},
    }


def test_parse_scalar_reads_one_sample_and_treats_nan_or_nothing_as_no_data() -> None:
    assert baseline.parse_scalar(answer("99.25")) == 99.25
    assert baseline.parse_scalar(answer()) is None
    assert baseline.parse_scalar(answer("NaN")) is None
    assert baseline.parse_scalar(answer("+Inf")) is None
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1700000000.0, "3"]}}
    assert baseline.parse_scalar(scalar) == 3.0


def test_parse_scalar_refuses_errors_and_several_series() -> None:
    with pytest.raises(ValueError, match="successful"):
        baseline.parse_scalar({"status": "error", "error": "bad query"})
    with pytest.raises(ValueError, match="one series"):
        baseline.parse_scalar(answer("1", "2"))


def md(current: str, revisions: list[tuple[str, bool]], generation: int = 2) -> dict[str, Any]:
    return {
        "metadata": {"name": "rb-b0", "namespace": "ns", "generation": generation},
        "status": {
            "currentRevision": current,
            "revisions": [{"name": name, "lastKnownGood": good} for name, good in revisions],
        },
    }


def test_rollback_goes_to_the_last_known_good_revision_for_this_generation() -> None:
    status = baseline.rollback_status(md("v2", [("v1", True), ("v2", False)]), 1_700_000_000.0)
    assert status == {
        "rollback": {
            "revision": "v1",
            "fromRevision": "v2",
            "incident": baseline.INCIDENT,
            "generation": 2,
            "since": "2023-11-14T22:13:20Z",
        }
    }


def test_rollback_prefers_the_newest_good_revision_other_than_the_serving_one() -> None:
    status = baseline.rollback_status(md("v3", [("v1", True), ("v2", True), ("v3", False)]), 0.0)
    assert status is not None
    assert status["rollback"]["revision"] == "v2"


def test_no_rollback_without_a_last_known_good_target() -> None:
    assert baseline.rollback_status(md("v2", [("v1", False), ("v2", False)]), 0.0) is None
    assert baseline.rollback_status(md("v1", [("v1", True)]), 0.0) is None


def test_scale_sets_an_absolute_replica_count_for_this_generation() -> None:
    status = baseline.scale_status(6)(md("v1", [("v1", True)], generation=5), 0.0)
    assert status == {
        "scale": {"replicas": 6, "incident": baseline.INCIDENT, "generation": 5, "since": "1970-01-01T00:00:00Z"}
    }


def test_phase_offsets_sample_the_interval_evenly() -> None:
    assert [baseline.phase_offset(i, 2) for i in range(2)] == [15.0, 45.0]
    assert [baseline.phase_offset(i, 5) for i in range(5)] == [6.0, 18.0, 30.0, 42.0, 54.0]
    assert baseline.phase_offset(0, 1, interval=10) == 5.0
    with pytest.raises(ValueError, match="run 2 of 2"):
        baseline.phase_offset(2, 2)


def test_first_tick_must_fall_within_one_interval() -> None:
    check = baseline.success_rate_check("ns", "md")
    kube: Any = None  # never used: the thread is not started
    url = "http://127.0.0.1:9"
    with pytest.raises(ValueError, match="within one interval"):
        baseline.Controller(kube, url, "ns", "md", check, baseline.rollback_status, first_tick_in=61)
    controller = baseline.Controller(kube, url, "ns", "md", check, baseline.rollback_status)
    assert controller.first_tick_in == 60.0
