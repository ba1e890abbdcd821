"""Behaviour layering (defaults, profile, faults; per deployment and per version) and wire formats."""

from __future__ import annotations

import pathlib

import pydantic
import pytest

from vigil.sim import behaviour, schema

Patch = behaviour.BehaviourPatch
Key = behaviour.Key


def test_defaults_describe_a_healthy_model() -> None:
    settings = behaviour.Book().behaviour("ns", "md", "1")
    assert settings == behaviour.Behaviour()
    assert settings.error_ratio == 0
    assert not settings.crash
    assert settings.histogram_buckets_ms == (100.0, 500.0, 2000.0, 5000.0)


def test_layers_most_specific_last() -> None:
    book = behaviour.book_from_profile(
        Patch(capacity=50, base_latency_ms=30),
        [
            (Key("ns", "md"), Patch(capacity=80, error_ratio=0.01)),
            (Key("ns", "md", "2"), Patch(error_ratio=0.05)),
        ],
    )
    assert book.behaviour("ns", "other", "1").capacity == 50
    v1 = book.behaviour("ns", "md", "1")
    assert (v1.capacity, v1.base_latency_ms, v1.error_ratio) == (80, 30, 0.01)
    assert book.behaviour("ns", "md", "2").error_ratio == 0.05
    book.set_fault(Key("ns", "md"), Patch(error_ratio=0.2))
    assert book.behaviour("ns", "md", "2").error_ratio == 0.2  # faults beat the profile
    book.set_fault(Key("ns", "md", "2"), Patch(error_ratio=0.3))
    assert book.behaviour("ns", "md", "2").error_ratio == 0.3
    assert book.behaviour("ns", "md", "1").error_ratio == 0.2
    assert book.behaviour("other-ns", "md", "2").error_ratio == 0


def test_a_version_fault_follows_the_version_not_the_deployment() -> None:
    book = behaviour.Book()
    book.set_fault(Key("ns", "md", "bad"), Patch(error_ratio=0.5, latency_multiplier=4))
    assert book.behaviour("ns", "md", "bad").error_ratio == 0.5
    assert book.behaviour("ns", "md", "good") == behaviour.Behaviour()


def test_setting_a_fault_merges_and_null_removes() -> None:
    book = behaviour.Book()
    key = Key("ns", "md")
    book.set_fault(key, Patch(error_ratio=0.3))
    merged = book.set_fault(key, Patch(latency_multiplier=2.0))
    assert merged.values() == {"error_ratio": 0.3, "latency_multiplier": 2.0}
    book.set_fault(key, Patch.model_validate({"errorRatio": None}))
    assert book.faults[key].values() == {"latency_multiplier": 2.0}
    book.set_fault(key, Patch.model_validate({"latencyMultiplier": None}))
    assert key not in book.faults


def test_clear_faults_all_versions_or_one() -> None:
    book = behaviour.Book()
    for key in (Key("ns", "md"), Key("ns", "md", "1"), Key("ns", "md", "2"), Key("ns", "other")):
        book.set_fault(key, Patch(crash=True))
    assert book.clear_faults("ns", "md", "2") == [Key("ns", "md", "2")]
    assert sorted(book.clear_faults("ns", "md"), key=Key.sort_key) == [Key("ns", "md"), Key("ns", "md", "1")]
    assert list(book.faults) == [Key("ns", "other")]
    assert book.fault_list() == [{"namespace": "ns", "name": "other", "crash": True}]


def test_effective_capacity_and_service_time() -> None:
    settings = behaviour.Behaviour(capacity=90, base_latency_ms=10, latency_multiplier=3)
    assert settings.effective_capacity == pytest.approx(30)
    assert settings.service_seconds == pytest.approx(0.03)


@pytest.mark.parametrize(
    "raw",
    [
        {"errorRatio": 1.5},
        {"errorRatio": -0.1},
        {"latencyMultiplier": 0},
        {"capacity": 0},
        {"gpuMemoryUtilization": 2},
        {"histogramBucketsMs": [100, 50]},
        {"histogramBucketsMs": [0, 50]},
        {"histogramBucketsMs": []},
        {"errorRaito": 0.1},
    ],
)
def test_invalid_patches_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        Patch.model_validate(raw)


def test_custom_buckets_reach_the_behaviour() -> None:
    book = behaviour.Book()
    book.set_fault(Key("ns", "md"), Patch.model_validate({"histogramBucketsMs": [10, 50, 250]}))
    assert book.behaviour("ns", "md", "1").histogram_buckets_ms == (10.0, 50.0, 250.0)


def test_load_request_needs_exactly_one_source() -> None:
    assert schema.LoadRequest.model_validate({"namespace": "ns", "name": "md", "rate": 5}).rate == 5
    with pytest.raises(pydantic.ValidationError, match="exactly one"):
        schema.LoadRequest.model_validate({"namespace": "ns", "name": "md"})
    with pytest.raises(pydantic.ValidationError, match="exactly one"):
        schema.LoadRequest.model_validate({"namespace": "ns", "name": "md", "rate": 1, "csv": "1\n"})
    with pytest.raises(pydantic.ValidationError):
        schema.LoadRequest.model_validate({"namespace": "NS!", "name": "md", "rate": 1})


def test_fault_request_splits_key_and_patch() -> None:
    fault = schema.FaultRequest.model_validate(
        {"namespace": "ns", "name": "md", "version": 3, "errorRatio": 0.3, "crash": False}
    )
    assert fault.key == Key("ns", "md", "3")
    assert fault.patch().values() == {"error_ratio": 0.3, "crash": False}


def test_profile_from_yaml(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text(
        """
defaults:
  capacity: 40
behaviours:
  - {namespace: prod, name: resnet, version: 2, latencyMultiplier: 3}
  - {namespace: prod, name: resnet, errorRatio: 0.01}
loads:
  - {namespace: prod, name: resnet, rate: 25}
""",
        encoding="utf-8",
    )
    profile = schema.load_profile(path)
    book = profile.book()
    v2 = book.behaviour("prod", "resnet", "2")
    assert (v2.capacity, v2.latency_multiplier, v2.error_ratio) == (40, 3, 0.01)
    assert profile.loads[0].rate == 25
    assert book.profile_list()[0] == {"namespace": "prod", "name": "resnet", "errorRatio": 0.01}


def test_empty_profile_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert schema.load_profile(path) == schema.Profile()
