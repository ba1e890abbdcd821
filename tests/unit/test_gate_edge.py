"""The gate's edge with the real tritonclient.http.aio against a KServe v2 server on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.unit import fakekube, gatekit
from vigil.api import modeldeployment as mdapi
from vigil.api import validation as vapi
from vigil.gate import goldenset
from vigil.gate import verdict as gate
from vigil.reconcile import validate

SPEC = vapi.ValidationSpec.model_validate({"goldenSet": {"configMapRef": {"name": "golden"}}, "timeout": "10s"})


@pytest.fixture
def pods() -> dict[str, gatekit.Pod]:
    return {"a": gatekit.Pod(), "b": gatekit.Pod()}


@pytest.fixture
async def address(pods: dict[str, gatekit.Pod]) -> AsyncIterator[str]:
    async for served in gatekit.serve(pods):
        yield served


def prepared(golden: goldenset.GoldenSet, **spec: Any) -> validate.Golden:
    found = validate.prepare(golden, SPEC.model_copy(update=spec), "spec.validation.goldenSet: cm")
    assert isinstance(found, validate.Golden), found
    return found


async def judge(address: str, names: list[str], golden: validate.Golden, seconds: float = 10.0) -> gate.Verdict:
    results = [
        await validate.ask_pod(f"{address}/pods/{name}", name, gatekit.MODEL, gatekit.VERSION, golden, seconds)
        for name in names
    ]
    return gate.judge(golden.golden_set, golden.tolerances, results)


async def test_pods_that_answer_like_the_reference_pass(address: str, pods: dict[str, gatekit.Pod]) -> None:
    golden = prepared(gatekit.golden_set(count=64))
    found = await judge(address, ["a", "b"], golden)
    assert found.phase is vapi.ValidationPhase.PASSED, found.message
    assert [(o.name, o.passed, o.max_abs_error) for o in found.outputs] == [("OUTPUT__0", True, 0.0)]
    assert "64 golden request(s) on each of 2 pod(s)" in found.message
    assert (pods["a"].requests, pods["b"].requests) == (64, 64)


async def test_a_perturbed_pod_fails_with_a_diff_naming_the_output_the_error_and_the_pod(
    address: str, pods: dict[str, gatekit.Pod]
) -> None:
    pods["b"].delta = 0.5
    found = await judge(address, ["a", "b"], prepared(gatekit.golden_set()))
    assert found.phase is vapi.ValidationPhase.FAILED
    assert found.reason == gate.REASON_MISMATCH
    (row,) = found.outputs
    assert row.passed is False
    assert row.worst_pod == "b"
    assert row.max_abs_error == pytest.approx(0.5, rel=1e-3)
    assert row.failed_requests == 8
    assert row.requests == 16
    assert "OUTPUT__0: 8/16 answers out of tolerance; max abs error 0.5 (atol 0.0001)" in found.message
    assert "on pod(s) b" in found.message


async def test_one_wrong_pod_fails_the_revision_even_while_another_times_out(
    address: str, pods: dict[str, gatekit.Pod]
) -> None:
    pods["a"].delay = 2.0
    pods["b"].delta = 1.0
    found = await judge(address, ["a", "b"], prepared(gatekit.golden_set(count=2)), seconds=0.3)
    assert found.phase is vapi.ValidationPhase.FAILED


async def test_a_pod_that_times_out_is_not_validated_never_passed(address: str, pods: dict[str, gatekit.Pod]) -> None:
    pods["b"].delay = 2.0
    found = await judge(address, ["a", "b"], prepared(gatekit.golden_set(count=2)), seconds=0.3)
    assert found.phase is vapi.ValidationPhase.NOT_VALIDATED
    assert found.reason == gate.REASON_TIMEOUT
    assert "b: a golden request took over 0.3s" in found.message


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_unreachable_pod_is_not_validated() -> None:
    golden = prepared(gatekit.golden_set(count=2))
    result = await validate.ask_pod(f"127.0.0.1:{closed_port()}", "gone", gatekit.MODEL, gatekit.VERSION, golden, 10.0)
    assert result.state is gate.PodState.UNREACHABLE
    found = gate.judge(golden.golden_set, golden.tolerances, [result])
    assert (found.phase, found.reason) == (vapi.ValidationPhase.NOT_VALIDATED, gate.REASON_UNREACHABLE)


async def test_a_model_version_triton_does_not_call_ready_is_not_validated(
    address: str, pods: dict[str, gatekit.Pod]
) -> None:
    pods["a"].ready = False
    found = await judge(address, ["a"], prepared(gatekit.golden_set(count=2)))
    assert (found.phase, found.reason) == (vapi.ValidationPhase.NOT_VALIDATED, gate.REASON_MODEL_NOT_READY)
    assert pods["a"].requests == 0


async def test_an_inference_error_is_a_wrong_answer(address: str, pods: dict[str, gatekit.Pod]) -> None:
    pods["a"].status = 500
    found = await judge(address, ["a"], prepared(gatekit.golden_set(count=2)))
    assert (found.phase, found.reason) == (vapi.ValidationPhase.FAILED, gate.REASON_INFER_ERROR)
    assert "HTTP 500: injected 500" in found.message


async def test_a_busy_pod_is_tried_again_later(address: str, pods: dict[str, gatekit.Pod]) -> None:
    pods["a"].status = 503
    found = await judge(address, ["a"], prepared(gatekit.golden_set(count=2)))
    assert (found.phase, found.reason) == (vapi.ValidationPhase.NOT_VALIDATED, gate.REASON_BUSY)


async def test_fp16_drift_passes_a_loose_tolerance_and_fails_a_tight_one(
    address: str, pods: dict[str, gatekit.Pod]
) -> None:
    pods["a"].fp16 = True
    golden = gatekit.golden_set(count=16, atol=0.0, rtol=0.0)
    loose = await judge(address, ["a"], prepared(golden, tolerance=vapi.Tolerance(atol=1e-2, rtol=1e-2)))
    assert loose.phase is vapi.ValidationPhase.PASSED, loose.message
    tight = await judge(address, ["a"], prepared(golden, tolerance=vapi.Tolerance(atol=1e-6, rtol=1e-6)))
    assert tight.phase is vapi.ValidationPhase.FAILED
    assert tight.outputs[0].max_abs_error is not None
    assert 0 < tight.outputs[0].max_abs_error < 1e-2


async def test_several_inputs_and_outputs_are_each_compared_with_their_own_tolerance(
    address: str, pods: dict[str, gatekit.Pod]
) -> None:
    pods["a"].delta = 0.05
    golden = gatekit.golden_set(count=4, names=(("IMAGE", "LOGITS"), ("META", "EMBEDDING")))
    per_output = vapi.Tolerance(outputs=[vapi.OutputTolerance(name="EMBEDDING", atol=0.1)])
    found = await judge(address, ["a"], prepared(golden, tolerance=per_output))
    assert found.phase is vapi.ValidationPhase.FAILED
    assert [(o.name, o.passed, o.atol) for o in found.outputs] == [("LOGITS", False, 1e-4), ("EMBEDDING", True, 0.1)]
    assert "LOGITS" in found.message
    assert "EMBEDDING:" not in found.message


async def test_top_k_agreement_is_reported_for_classifiers(address: str, pods: dict[str, gatekit.Pod]) -> None:
    pods["a"].delta = 0.5  # a constant shift keeps the ranking: top-k agrees, values do not
    golden = gatekit.golden_set(count=4, top_k=3)
    found = await judge(address, ["a"], prepared(golden))
    assert found.outputs[0].top_k_agreement == 1.0
    assert "top-3 agreement 100%" in found.message


async def test_only_the_first_n_requests_are_sent(address: str, pods: dict[str, gatekit.Pod]) -> None:
    golden = prepared(gatekit.golden_set(count=10), requests=3)
    assert len(golden.requests) == 3
    await judge(address, ["a"], golden)
    assert pods["a"].requests == 3


async def test_a_golden_set_that_does_not_parse_names_where_it_came_from() -> None:
    kube = fakekube.FakeKube(config_maps={("ml", "golden"): {"golden.json": "{}"}})
    model = mdapi.Model(name=gatekit.MODEL, repository="s3://models/resnet", version="1")
    found = await validate.load(kube, "ml", SPEC, model)  # type: ignore[arg-type]
    assert isinstance(found, gate.Verdict)
    assert found.reason == gate.REASON_GOLDEN_SET
    assert found.message.startswith("spec.validation.goldenSet.configMapRef: ConfigMap ml/golden key golden.json: ")


def test_a_tolerance_for_an_output_the_golden_set_lacks_names_spec_validation_tolerance() -> None:
    spec = SPEC.model_copy(update={"tolerance": vapi.Tolerance(outputs=[vapi.OutputTolerance(name="NOPE", atol=1)])})
    found = validate.prepare(gatekit.golden_set(), spec, "spec.validation.goldenSet: cm")
    assert isinstance(found, gate.Verdict)
    assert found.message.startswith("spec.validation.tolerance: ")
    assert "NOPE" in found.message
