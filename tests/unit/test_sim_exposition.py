"""The /metrics text: Triton's names, types, labels and formatting."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import prometheus_client.parser
import prometheus_client.samples
import pytest

from vigil.sim import behaviour, exposition, queueing

PER_MODEL = {
    "nv_inference_request_success": "counter",
    "nv_inference_request_failure": "counter",
    "nv_inference_count": "counter",
    "nv_inference_exec_count": "counter",
    "nv_inference_pending_request_count": "gauge",
    "nv_inference_request_duration_us": "counter",
    "nv_inference_queue_duration_us": "counter",
    "nv_inference_compute_input_duration_us": "counter",
    "nv_inference_compute_infer_duration_us": "counter",
    "nv_inference_compute_output_duration_us": "counter",
    "nv_inference_first_response_histogram_ms": "histogram",
}
GPU = {
    "nv_gpu_utilization": "gauge",
    "nv_gpu_memory_total_bytes": "gauge",
    "nv_gpu_memory_used_bytes": "gauge",
    "nv_gpu_power_usage": "gauge",
    "nv_gpu_power_limit": "gauge",
    "nv_energy_consumption": "counter",
}
OTHER = {
    "nv_cpu_utilization": "gauge",
    "nv_cpu_memory_total_bytes": "gauge",
    "nv_cpu_memory_used_bytes": "gauge",
    "nv_model_load_duration_secs": "gauge",
}


def render(gpus: int = 1, settings: behaviour.Behaviour | None = None, rate: float = 50) -> str:
    settings = settings or behaviour.Behaviour(error_ratio=0.2)
    state = queueing.new_pod_state("uid/0", gpus, settings)
    rng = np.random.default_rng(5)
    for _ in range(50):
        queueing.step(state, int(rng.poisson(rate * 0.1)), 0.1, settings, rng)
    view = exposition.PodView(state, "resnet50", "3", 12.5, settings.gpu_memory_total_bytes, 400.0)
    return exposition.render(exposition.registry_for(lambda: view)).decode("utf-8")


def types_in(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            found[name] = kind
    return found


def samples(text: str, name: str) -> list[prometheus_client.samples.Sample]:
    # prometheus_client's parser renames counter samples to <name>_total; the text itself has none.
    return [
        sample
        for family in prometheus_client.parser.text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in (name, name + "_total")
    ]


def test_every_triton_family_with_its_type_and_no_total_suffix() -> None:
    text = render()
    assert types_in(text) == {**PER_MODEL, **GPU, **OTHER}
    assert not re.search(r"_total[ {]", text)
    assert "_created" not in text
    for name in ("nv_inference_request_success", "nv_energy_consumption"):
        assert samples(text, name), name


def test_per_model_labels_and_one_series_per_gpu() -> None:
    text = render(gpus=2)
    success = samples(text, "nv_inference_request_success")
    assert len(success) == 2
    assert {frozenset(s.labels) for s in success} == {frozenset({"model", "version", "gpu_uuid"})}
    assert {s.labels["model"] for s in success} == {"resnet50"}
    assert {s.labels["version"] for s in success} == {"3"}
    assert len({s.labels["gpu_uuid"] for s in success}) == 2
    assert all(s.labels["gpu_uuid"].startswith("GPU-") for s in success)
    gpu = samples(text, "nv_gpu_utilization")
    assert {frozenset(s.labels) for s in gpu} == {frozenset({"gpu_uuid"})}
    load = samples(text, "nv_model_load_duration_secs")
    assert [(s.labels, s.value) for s in load] == [({"model": "resnet50", "version": "3"}, 12.5)]
    assert samples(text, "nv_cpu_utilization")[0].labels == {}


def test_failure_series_for_every_reason() -> None:
    failures = samples(render(), "nv_inference_request_failure")
    by_reason = {s.labels["reason"]: s.value for s in failures}
    assert set(by_reason) == {"REJECTED", "CANCELED", "BACKEND", "OTHER"}
    assert by_reason["BACKEND"] > 0
    assert by_reason["REJECTED"] == by_reason["CANCELED"] == by_reason["OTHER"] == 0


def test_histogram_bounds_written_like_triton() -> None:
    text = render()
    bounds = [s.labels["le"] for s in samples(text, "nv_inference_first_response_histogram_ms_bucket")]
    assert bounds == ["100", "500", "2000", "5000", "+Inf"]
    assert 'le="100"' in text
    count = samples(text, "nv_inference_first_response_histogram_ms_count")[0].value
    assert count == samples(text, "nv_inference_request_success")[0].value


def test_custom_buckets() -> None:
    settings = behaviour.Behaviour(histogram_buckets_ms=(2.5, 25.0, 250.0))
    bounds = [
        s.labels["le"] for s in samples(render(settings=settings), "nv_inference_first_response_histogram_ms_bucket")
    ]
    assert bounds == ["2.5", "25", "250", "+Inf"]


def test_cpu_only_pod_has_no_gpu_series_or_label() -> None:
    text = render(gpus=0)
    assert not any(name in types_in(text) for name in GPU)
    assert "gpu_uuid" not in text
    assert samples(text, "nv_inference_request_success")[0].labels == {"model": "resnet50", "version": "3"}


def test_a_new_pod_reports_zero() -> None:
    text = render(rate=0)
    assert all(s.value == 0 for s in samples(text, "nv_inference_request_success"))
    assert all(s.value == 0 for s in samples(text, "nv_inference_request_failure"))


def test_pending_is_split_over_instances() -> None:
    settings = behaviour.Behaviour(capacity=10)
    text = render(gpus=2, settings=settings, rate=100)
    pending = samples(text, "nv_inference_pending_request_count")
    assert len(pending) == 2
    assert sum(s.value for s in pending) > 100
    assert abs(pending[0].value - pending[1].value) <= 1


@pytest.mark.parametrize(("bound", "text"), [(100.0, "100"), (2.5, "2.5"), (0.1, "0.1"), (5000, "5000")])
def test_format_bound(bound: float, text: str) -> None:
    assert exposition.format_bound(bound) == text


def test_collector_reads_the_view_at_scrape_time() -> None:
    settings = behaviour.Behaviour()
    state = queueing.new_pod_state("x", 1, settings)
    view = exposition.PodView(state, "m", "1", 1.0, settings.gpu_memory_total_bytes, 400.0)
    registry = exposition.registry_for(lambda: view)
    before = exposition.render(registry).decode()
    state.instances[0].success = 42
    after = exposition.render(registry).decode()
    assert samples(before, "nv_inference_request_success")[0].value == 0
    assert samples(after, "nv_inference_request_success")[0].value == 42
    assert dataclasses.is_dataclass(view)
