"""The fleet's PromQL text and the parsing of instant vectors."""

from __future__ import annotations

import math

import pytest

from vigil.observe import promql

F = promql.Family
BY = "namespace, modeldeployment, revision"


def sample(value: str, **metric: str) -> dict[str, object]:
    labels = {"namespace": "ml", "modeldeployment": "resnet", "revision": "r1", **metric}
    return {"metric": labels, "value": [1700000000.0, value]}


@pytest.mark.parametrize(
    ("family", "metric"),
    [
        (F.SUCCESS, "nv_inference_request_success"),
        (F.FAILURE, "nv_inference_request_failure"),
        (F.DURATION, "nv_inference_request_duration_us"),
        (F.QUEUE, "nv_inference_queue_duration_us"),
        (F.COUNT, "nv_inference_first_response_histogram_ms_count"),
    ],
)
def test_counter_families_rate_each_series_before_summing_by_revision(family: promql.Family, metric: str) -> None:
    assert promql.expression(promql.Need(family, 300)) == (f'sum by ({BY}) (rate({metric}{{modeldeployment!=""}}[5m]))')


def test_a_window_before_another_is_read_with_an_offset() -> None:
    assert promql.expression(promql.Need(F.SUCCESS, 20, 20)) == (
        f'sum by ({BY}) (rate(nv_inference_request_success{{modeldeployment!=""}}[20s] offset 20s))'
    )
    assert promql.Need(F.SUCCESS, 20) != promql.Need(F.SUCCESS, 20, 20)


def test_windows_are_written_as_prometheus_durations() -> None:
    assert "[1h30m]" in promql.expression(promql.Need(F.SUCCESS, 5400))
    assert "[1m10s]" in promql.expression(promql.Need(F.FAILURE, 70))
    assert "[3d]" in promql.expression(promql.Need(F.FAILURE, 259200))


def test_bucket_query_keeps_le_and_selects_only_the_thresholds_in_use() -> None:
    expr = promql.expression(promql.Need(F.BUCKET, 300), [500.0, 100.0])
    assert expr == (
        f"sum by ({BY}, le) (rate(nv_inference_first_response_histogram_ms_bucket"
        '{modeldeployment!="", le=~"100|100\\\\.0|500|500\\\\.0"}[5m]))'
    )


def test_le_matcher_matches_fractional_thresholds_literally() -> None:
    assert promql.le_matcher([2.5]) == 'le=~"2\\\\.5"'


def test_le_values_spell_whole_numbers_as_triton_and_as_prometheus_3_do() -> None:
    assert promql.le_values(100) == ("100", "100.0")
    assert promql.le_values(0.25) == ("0.25",)


def test_bucket_query_without_thresholds_is_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        promql.expression(promql.Need(F.BUCKET, 300), [])


def test_gpu_memory_is_used_over_total_per_gpu_then_the_fullest_gpu() -> None:
    assert promql.expression(promql.Need(F.GPU_MEMORY)) == (
        f'max by ({BY}) (nv_gpu_memory_used_bytes{{modeldeployment!=""}} '
        '/ nv_gpu_memory_total_bytes{modeldeployment!=""})'
    )


def test_pending_requests_is_an_instant_sum_by_revision() -> None:
    assert promql.expression(promql.Need(F.PENDING)) == (
        f'sum by ({BY}) (nv_inference_pending_request_count{{modeldeployment!=""}})'
    )


def test_busy_replicas_average_each_pods_gpus_over_the_window_then_sum_the_pods() -> None:
    assert promql.expression(promql.Need(F.BUSY, 30)) == (
        f'sum by ({BY}) (avg by ({BY}, pod) (avg_over_time(nv_gpu_utilization{{modeldeployment!=""}}[30s])))'
    )


def test_queue_growth_is_the_derivative_of_the_pending_gauge() -> None:
    assert promql.expression(promql.Need(F.QUEUE_GROWTH, 30)) == (
        f'sum by ({BY}) (deriv(nv_inference_pending_request_count{{modeldeployment!=""}}[30s]))'
    )


def test_counter_family_without_window_is_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        promql.expression(promql.Need(F.SUCCESS))


def test_plan_asks_each_question_once_in_a_stable_order() -> None:
    needs = [promql.Need(F.FAILURE, 3600), promql.Need(F.SUCCESS, 300), promql.Need(F.SUCCESS, 300)]
    queries = promql.plan(needs, [])
    assert [q.need for q in queries] == [promql.Need(F.SUCCESS, 300), promql.Need(F.FAILURE, 3600)]
    assert promql.plan(reversed(needs), []) == queries


def test_no_query_in_a_plan_names_a_deployment() -> None:
    instant = (F.GPU_MEMORY, F.PENDING)
    needs = [promql.Need(f, None if f in instant else 300) for f in F]
    for query in promql.plan(needs, [100.0]):
        assert "resnet" not in query.expr
        assert 'modeldeployment="' not in query.expr


def test_parse_vector_keys_values_by_revision() -> None:
    vector = promql.parse_vector([sample("1.5"), sample("2", revision="r2")])
    assert vector == {
        promql.SeriesKey("ml", "resnet", "r1"): 1.5,
        promql.SeriesKey("ml", "resnet", "r2"): 2.0,
    }


def test_parse_vector_keeps_nan_and_infinities_for_the_maths_to_judge() -> None:
    vector = promql.parse_vector([sample("NaN"), sample("+Inf", revision="r2"), sample("-Inf", revision="r3")])
    values = list(vector.values())
    assert math.isnan(values[0])
    assert values[1:] == [math.inf, -math.inf]


def test_parse_vector_reads_le_as_a_number_and_adds_both_spellings_of_one_bucket() -> None:
    vector = promql.parse_vector([sample("1", le="100"), sample("2", le="100.0"), sample("5", le="+Inf")])
    assert vector == {
        promql.SeriesKey("ml", "resnet", "r1", 100.0): 3.0,
        promql.SeriesKey("ml", "resnet", "r1", math.inf): 5.0,
    }


def test_parse_vector_of_empty_result_is_empty() -> None:
    assert promql.parse_vector([]) == {}


def test_parse_vector_skips_series_without_the_relabelled_identity() -> None:
    unlabelled = {"metric": {"namespace": "ml"}, "value": [0, "1"]}
    empty_revision = sample("1", revision="")
    assert promql.parse_vector([unlabelled, empty_revision]) == {}


@pytest.mark.parametrize(
    "result",
    [
        {"resultType": "vector"},
        [1700000000.0, "1"],
        ["not an object"],
        [{"metric": {}, "values": [[0, "1"]]}],
        [{"metric": {"namespace": "ml"}, "value": [0]}],
        [{"metric": {"namespace": "ml", "modeldeployment": "a", "revision": "r"}, "value": [0, "many"]}],
        [{"metric": {"le": "x", "namespace": "ml", "modeldeployment": "a", "revision": "r"}, "value": [0, "1"]}],
    ],
)
def test_parse_vector_rejects_what_is_not_an_instant_vector(result: object) -> None:
    with pytest.raises(promql.BadResponse):
        promql.parse_vector(result)


@pytest.mark.parametrize(
    ("element", "says"),
    [
        ("not an object", "vector element is not an object"),
        ({"metric": {}, "values": [[0, "1"]]}, "malformed vector element"),
        ({"metric": [], "value": [0, "1"]}, "malformed vector element"),
        ({"metric": {"namespace": "ml"}, "value": [0, "1", "2"]}, "malformed vector element"),
        ({"metric": {"namespace": "ml"}, "value": [0, None]}, "malformed sample"),
        ({"metric": {"le": None, "namespace": "ml"}, "value": [0, "1"]}, "malformed sample"),
    ],
)
def test_parse_vector_says_which_check_an_element_failed(element: object, says: str) -> None:
    with pytest.raises(promql.BadResponse, match=says):
        promql.parse_vector([sample("1"), element])


def test_answers_split_by_deployment_hold_each_deployments_series_and_no_others() -> None:
    a = promql.SeriesKey("ml", "a", "r1")
    a_old = promql.SeriesKey("ml", "a", "r0")
    b = promql.SeriesKey("ml", "b", "r1")
    other_ns = promql.SeriesKey("ops", "a", "r1", 100.0)
    success, bucket = promql.Need(F.SUCCESS, 60), promql.Need(F.BUCKET, 60)
    results = {success: {a: 1.0, a_old: 2.0, b: 3.0}, bucket: {other_ns: 4.0}, promql.Need(F.PENDING): {}}
    assert promql.by_deployment(results) == {
        ("ml", "a"): {success: {a: 1.0, a_old: 2.0}},
        ("ml", "b"): {success: {b: 3.0}},
        ("ops", "a"): {bucket: {other_ns: 4.0}},
    }


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), (math.nan, None), (math.inf, None), (-math.inf, None), (0.0, 0.0), (2.5, 2.5)]
)
def test_finite_turns_every_non_number_into_missing(value: float | None, expected: float | None) -> None:
    assert promql.finite(value) == expected


def test_namespace_matcher_names_exactly_the_namespaces_and_leaves_out_a_too_long_one() -> None:
    assert promql.namespace_matcher(["team-b", "team-a", "team-a"]) == 'namespace=~"team-a|team-b"'
    assert promql.namespace_matcher(["odd.name"]) == 'namespace=~"odd\\\\.name"'  # regex-escaped, then PromQL
    huge = [f"namespace-{i:05d}" for i in range(2000)]
    assert promql.namespace_matcher(huge) is None


def test_scoped_queries_select_only_those_namespaces_in_every_family() -> None:
    needs = [promql.Need(f, 300) for f in promql.Family if f not in (promql.Family.GPU_MEMORY, promql.Family.PENDING)]
    needs += [promql.Need(promql.Family.GPU_MEMORY), promql.Need(promql.Family.PENDING)]
    scoped = promql.plan(needs, [100.0], namespaces=["team-a"])
    assert len(scoped) == len(needs)
    for query in scoped:
        # Every selector of the expression (GPU memory has two) carries the matcher.
        assert query.expr.count('namespace=~"team-a"') == query.expr.count("{")
    assert not any("namespace=~" in q.expr for q in promql.plan(needs, [100.0]))
