"""The golden-set document, its tensor encoding, and the comparison of served outputs with references."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np
import pytest

from vigil.gate import goldenset as gs

DIGEST = gs.digest(b"model bytes")
MODEL = gs.ModelInfo(name="resnet", version="3", digest=DIGEST, torch="2.5.1")


def classifier_set(requests: int = 3, seed: int = 0, top_k: int | None = 2) -> gs.GoldenSet:
    rng = np.random.default_rng(seed)
    inputs = [gs.TensorSpec(name="INPUT__0", datatype="FP32", shape=[1, 4])]
    outputs = [gs.OutputSpec(name="OUTPUT__0", datatype="FP32", shape=[1, 5], atol=1e-3, rtol=1e-2, top_k=top_k)]
    samples = [
        (
            {"INPUT__0": rng.normal(size=(1, 4)).astype(np.float32)},
            {"OUTPUT__0": rng.normal(size=(1, 5)).astype(np.float32)},
        )
        for _ in range(requests)
    ]
    return gs.GoldenSet.from_arrays(MODEL, inputs, outputs, samples)


def two_output_set() -> gs.GoldenSet:
    inputs = [
        gs.TensorSpec(name="A", datatype="FP32", shape=[2, 3]),
        gs.TensorSpec(name="B", datatype="INT64", shape=[2]),
    ]
    outputs = [
        gs.OutputSpec(name="SUM", datatype="FP32", shape=[2, 3], atol=0.0, rtol=1e-6),
        gs.OutputSpec(name="COUNT", datatype="INT32", shape=[2], atol=0.0, rtol=0.0),
    ]
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1, 2], dtype=np.int64)
    sample = ({"A": a, "B": b}, {"SUM": a + 1, "COUNT": np.array([3, 4], dtype=np.int32)})
    return gs.GoldenSet.from_arrays(MODEL, inputs, outputs, [sample, sample])


def document(golden: gs.GoldenSet) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(golden.dumps())
    return parsed


def served_from(golden: gs.GoldenSet, change: Any = None) -> dict[str, dict[str, Any]]:
    """The reference outputs per request, optionally transformed by ``change(request_id, name, array)``."""
    served: dict[str, dict[str, Any]] = {}
    for request in golden.requests:
        outputs = {name: array.copy() for name, array in golden.reference_arrays(request).items()}
        if change is not None:
            outputs = {name: change(request.id, name, array) for name, array in outputs.items()}
        served[request.id] = outputs
    return served


# --- tensors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", list(gs.DTYPES))
def test_every_datatype_round_trips_through_base64_exactly(datatype: str) -> None:
    dtype = gs.DTYPES[datatype]
    values = (np.arange(24) % 2 == 0) if datatype == "BOOL" else np.arange(24) * 3
    array = np.asarray(values).astype(dtype).reshape(2, 3, 4)
    decoded = gs.decode_tensor(gs.encode_tensor(array, datatype), datatype, [2, 3, 4])
    assert decoded.dtype == dtype
    assert decoded.shape == (2, 3, 4)
    assert np.array_equal(decoded, array)


def test_encoding_is_little_endian_c_order_whatever_the_arrays_layout() -> None:
    big_endian_fortran = np.asfortranarray(np.array([[1.0, 2.0], [3.0, 4.0]], dtype=">f4"))
    raw = base64.b64decode(gs.encode_tensor(big_endian_fortran, "FP32"))
    assert raw == np.array([1.0, 2.0, 3.0, 4.0], dtype="<f4").tobytes()
    assert raw[:4] == b"\x00\x00\x80\x3f"


def test_datatype_of_maps_numpy_dtypes_in_any_byte_order() -> None:
    assert gs.datatype_of(np.float16) == "FP16"
    assert gs.datatype_of(">i8") == "INT64"
    assert gs.datatype_of(np.bool_) == "BOOL"
    assert gs.datatype_of(np.uint32) == "UINT32"
    with pytest.raises(gs.UnsupportedDatatypeError, match="complex128"):
        gs.datatype_of(np.complex128)
    with pytest.raises(gs.UnsupportedDatatypeError):
        gs.datatype_of(np.dtype("U3"))


def test_bytes_and_unknown_datatypes_are_refused_with_a_clear_error() -> None:
    with pytest.raises(gs.UnsupportedDatatypeError, match="BYTES tensors are not supported"):
        gs.numpy_dtype("BYTES")
    with pytest.raises(gs.UnsupportedDatatypeError, match="unknown datatype 'FLOAT'"):
        gs.numpy_dtype("FLOAT")


def test_an_array_of_another_dtype_is_not_silently_cast() -> None:
    with pytest.raises(gs.TensorError, match="float64 array is not FP32"):
        gs.encode_tensor(np.zeros(3), "FP32")


def test_decoding_checks_base64_and_the_byte_count_of_the_declared_shape() -> None:
    with pytest.raises(gs.TensorError, match="not valid base64"):
        gs.decode_tensor("not base64!", "FP32", [1])
    four_floats = gs.encode_tensor(np.zeros(4, dtype=np.float32), "FP32")
    with pytest.raises(gs.TensorError, match="16 bytes, expected 20 for FP32 \\[5\\]"):
        gs.decode_tensor(four_floats, "FP32", [5])
    assert gs.decode_tensor(four_floats, "FP16", [8]).shape == (8,)


def test_digest_is_the_sha256_of_the_bytes() -> None:
    assert gs.digest(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


# --- the document ------------------------------------------------------------------------------


def test_a_golden_set_survives_dumps_and_parse_with_camel_case_fields() -> None:
    golden = classifier_set()
    text = golden.dumps()
    raw = json.loads(text)
    assert raw["format"] == "vigil.dev/golden-set/v1"
    assert raw["outputs"][0]["topK"] == 2
    assert raw["model"] == {"name": "resnet", "version": "3", "digest": DIGEST, "torch": "2.5.1"}
    assert [request["id"] for request in raw["requests"]] == ["0", "1", "2"]
    again = gs.GoldenSet.parse(text)
    assert again == golden
    for request in golden.requests:
        assert all(
            np.array_equal(again.input_arrays(again.request(request.id))[name], array)
            for name, array in golden.input_arrays(request).items()
        )


def test_the_contract_example_parses_with_its_defaults() -> None:
    doc = {
        "format": "vigil.dev/golden-set/v1",
        "model": {"name": "resnet", "version": 3, "digest": DIGEST, "createdAt": "2026-12-02T17:00:00Z"},
        "inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [1, 2]}],
        "outputs": [{"name": "OUTPUT__0", "datatype": "FP32", "shape": [1, 2]}],
        "requests": [
            {
                "id": 7,
                "inputs": {"INPUT__0": gs.encode_tensor(np.ones((1, 2), np.float32), "FP32")},
                "outputs": {"OUTPUT__0": gs.encode_tensor(np.ones((1, 2), np.float32), "FP32")},
            }
        ],
    }
    golden = gs.GoldenSet.parse(json.dumps(doc))
    assert golden.model.version == "3"
    assert golden.model.created_at is not None
    assert golden.model.created_at.year == 2026
    assert golden.requests[0].id == "7"
    assert golden.tolerances() == {"OUTPUT__0": gs.Tolerance(atol=gs.DEFAULT_ATOL, rtol=gs.DEFAULT_RTOL)}
    assert json.loads(golden.dumps())["model"]["createdAt"] == "2026-12-02T17:00:00Z"


def broken(mutate: Any) -> gs.InvalidGoldenSetError:
    doc = document(classifier_set())
    mutate(doc)
    with pytest.raises(gs.InvalidGoldenSetError) as caught:
        gs.GoldenSet.parse(json.dumps(doc))
    return caught.value


def test_wrong_format_and_bad_digest_are_reported_by_field() -> None:
    error = broken(lambda doc: doc.update(format="vigil.dev/golden-set/v2"))
    assert any(problem.startswith("format:") for problem in error.problems)
    error = broken(lambda doc: doc["model"].update(digest="md5:abc"))
    assert any(problem.startswith("model.digest:") for problem in error.problems)


def test_unknown_fields_are_typos_not_ignored() -> None:
    error = broken(lambda doc: doc["outputs"][0].update(topk=5))
    assert any("outputs.0.topk" in problem for problem in error.problems)


def test_bytes_outputs_name_the_field() -> None:
    error = broken(lambda doc: doc["outputs"][0].update(datatype="BYTES"))
    assert any(
        problem.startswith("outputs.0.datatype:") and "BYTES tensors are not supported" in problem
        for problem in error.problems
    )


def test_top_k_larger_than_the_classes_is_refused() -> None:
    error = broken(lambda doc: doc["outputs"][0].update(topK=6))
    assert any("topK 6 of output 'OUTPUT__0' exceeds its 5 classes" in problem for problem in error.problems)


def test_negative_or_infinite_tolerances_are_refused() -> None:
    negative = broken(lambda doc: doc["outputs"][0].update(atol=-1))
    assert any(
        problem.startswith("outputs.0.atol: Input should be greater than or equal to 0")
        for problem in negative.problems
    )
    infinite = broken(lambda doc: doc["outputs"][0].update(rtol=math.inf))
    assert str(infinite) == "invalid golden set: outputs.0.rtol: Input should be a finite number"


def test_requests_must_carry_exactly_the_declared_tensors() -> None:
    error = broken(lambda doc: doc["requests"][1]["inputs"].pop("INPUT__0"))
    assert "requests.1.inputs: request '1' lacks ['INPUT__0']" in error.problems[0]
    error = broken(lambda doc: doc["requests"][0]["outputs"].update(EXTRA="AAAA"))
    assert "requests.0.outputs: request '0' has undeclared ['EXTRA']" in error.problems[0]


def test_a_tensor_of_the_wrong_size_is_found_when_parsing() -> None:
    short = gs.encode_tensor(np.zeros(3, np.float32), "FP32")
    error = broken(lambda doc: doc["requests"][2]["outputs"].update(OUTPUT__0=short))
    assert "requests.2.outputs.OUTPUT__0: 12 bytes, expected 20" in error.problems[0]


def test_duplicate_request_ids_and_tensor_names_are_refused() -> None:
    error = broken(lambda doc: doc["requests"][1].update(id="0"))
    assert "requests: duplicate ids ['0']" in error.problems[0]
    error = broken(lambda doc: doc["inputs"].append(dict(doc["inputs"][0])))
    assert "inputs: duplicate tensor names ['INPUT__0']" in error.problems[0]


def test_empty_sets_and_invalid_json_are_refused() -> None:
    assert any(p.startswith("requests:") for p in broken(lambda doc: doc.update(requests=[])).problems)
    with pytest.raises(gs.InvalidGoldenSetError, match="Invalid JSON"):
        gs.GoldenSet.parse("{not json")


def test_from_arrays_checks_names_shapes_and_dtypes() -> None:
    inputs = [gs.TensorSpec(name="X", datatype="FP32", shape=[2])]
    outputs = [gs.OutputSpec(name="Y", datatype="FP32", shape=[2])]
    x = np.zeros(2, np.float32)
    with pytest.raises(gs.TensorError, match="request 0 output 'Y' is missing"):
        gs.GoldenSet.from_arrays(MODEL, inputs, outputs, [({"X": x}, {})])
    with pytest.raises(gs.TensorError, match=r"request 0 input 'X' has shape \[3\], declared \[2\]"):
        gs.GoldenSet.from_arrays(MODEL, inputs, outputs, [({"X": np.zeros(3, np.float32)}, {"Y": x})])
    with pytest.raises(gs.TensorError, match="request 0 output 'Y': a int64 array is not FP32"):
        gs.GoldenSet.from_arrays(MODEL, inputs, outputs, [({"X": x}, {"Y": np.zeros(2, np.int64)})])
    with pytest.raises(gs.InvalidGoldenSetError, match="requests"):
        gs.GoldenSet.from_arrays(MODEL, inputs, outputs, [])


def test_request_lookup_names_the_missing_id() -> None:
    with pytest.raises(gs.GoldenSetError, match="no golden request with id '9'"):
        classifier_set().request("9")


# --- tolerances --------------------------------------------------------------------------------


def test_overrides_apply_default_then_per_output_over_the_golden_sets_own() -> None:
    golden = two_output_set()
    assert golden.tolerances() == {"SUM": gs.Tolerance(0.0, 1e-6), "COUNT": gs.Tolerance(0.0, 0.0)}
    resolved = golden.tolerances(
        default=gs.ToleranceOverride(atol=0.5),
        per_output={"COUNT": gs.ToleranceOverride(rtol=0.25)},
    )
    assert resolved == {"SUM": gs.Tolerance(0.5, 1e-6), "COUNT": gs.Tolerance(0.5, 0.25)}


def test_overrides_for_unknown_outputs_or_impossible_top_k_are_errors() -> None:
    with pytest.raises(gs.GoldenSetError, match=r"outputs \['NOPE'\] that the golden set lacks"):
        two_output_set().tolerances(per_output={"NOPE": gs.ToleranceOverride(atol=1)})
    with pytest.raises(gs.GoldenSetError, match="topK 9 of output 'OUTPUT__0' exceeds its 5 classes"):
        classifier_set().tolerances(default=gs.ToleranceOverride(top_k=9))


# --- comparison --------------------------------------------------------------------------------


def test_the_references_themselves_pass_with_zero_error() -> None:
    golden = classifier_set()
    report = gs.compare(golden, served_from(golden))
    assert report.passed
    assert report.requests == 3
    (output,) = report.outputs
    assert (output.max_abs_error, output.max_rel_error, output.worst_request) == (0.0, 0.0, None)
    assert output.top_k_agreement == 1.0
    assert report.describe().startswith("3 golden requests within tolerance; OUTPUT__0: ok")


@pytest.mark.parametrize("seed", range(5))
def test_elementwise_verdict_is_numpy_isclose(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = rng.normal(size=(4, 8)).astype(np.float32)
    served = (reference + rng.normal(scale=1e-3, size=reference.shape)).astype(np.float32)
    spec = gs.OutputSpec(name="Y", datatype="FP32", shape=[4, 8])
    tolerance = gs.Tolerance(atol=5e-4, rtol=1e-3)
    check = gs.check_output("r", spec, tolerance, reference, served)
    expected = np.isclose(served.astype(np.float64), reference.astype(np.float64), atol=5e-4, rtol=1e-3)
    assert check.passed == bool(expected.all())
    diff = np.abs(served.astype(np.float64) - reference.astype(np.float64))
    assert check.max_abs_error == pytest.approx(diff.max())
    assert check.max_rel_error == pytest.approx((diff / np.abs(reference.astype(np.float64))).max())
    assert (check.excess <= 1.0) == check.passed


def test_the_tolerance_bound_is_inclusive_and_relative_to_the_reference() -> None:
    spec = gs.OutputSpec(name="Y", datatype="FP64", shape=[2])
    reference = np.array([10.0, 0.0])
    tolerance = gs.Tolerance(atol=0.5, rtol=0.1)
    assert gs.check_output("r", spec, tolerance, reference, np.array([11.5, 0.5])).passed
    outside = gs.check_output("r", spec, tolerance, reference, np.array([11.5, 0.51]))
    assert not outside.passed
    assert outside.excess == pytest.approx(0.51 / 0.5)
    assert outside.max_rel_error == pytest.approx(0.15), "elements whose reference is 0 have no relative error"


def test_zero_tolerance_means_exact_equality() -> None:
    spec = gs.OutputSpec(name="Y", datatype="INT32", shape=[3], atol=0, rtol=0)
    reference = np.array([1, 2, 3], dtype=np.int32)
    assert gs.check_output("r", spec, spec.tolerance, reference, reference.copy()).passed
    off = gs.check_output("r", spec, spec.tolerance, reference, np.array([1, 2, 4], dtype=np.int32))
    assert not off.passed
    assert (off.max_abs_error, off.excess) == (1.0, math.inf)


def test_nan_and_inf_in_served_outputs_fail_unless_the_reference_has_them_too() -> None:
    spec = gs.OutputSpec(name="Y", datatype="FP32", shape=[3], atol=1.0, rtol=1.0)
    reference = np.array([np.nan, np.inf, 1.0], dtype=np.float32)
    assert gs.check_output("r", spec, spec.tolerance, reference, reference.copy()).passed
    nan = gs.check_output("r", spec, spec.tolerance, reference, np.array([np.nan, np.inf, np.nan], np.float32))
    assert not nan.passed
    assert nan.max_abs_error == math.inf
    flipped = gs.check_output("r", spec, spec.tolerance, reference, np.array([np.nan, -np.inf, 1.0], np.float32))
    assert not flipped.passed


def test_missing_misshaped_or_mistyped_outputs_fail_with_a_problem() -> None:
    golden = two_output_set()
    request = golden.requests[0]
    references = golden.reference_arrays(request)

    result = gs.compare_request(golden, request, {"SUM": references["SUM"]})
    assert not result.passed
    (missing,) = [check for check in result.checks if not check.passed]
    assert (missing.output, missing.problem, missing.max_abs_error) == ("COUNT", "missing from the response", math.inf)

    shaped = gs.compare_request(golden, request, {**references, "SUM": references["SUM"].reshape(3, 2)})
    assert shaped.checks[0].problem == "shape [3, 2], expected [2, 3]"

    typed = gs.compare_request(golden, request, {**references, "COUNT": references["COUNT"].astype(np.int64)})
    assert typed.checks[1].problem == "datatype INT64, expected INT32"

    odd = gs.compare_request(golden, request, {**references, "COUNT": np.array(["a", "b"])})
    assert odd.checks[1].problem == "datatype <U1, expected INT32"


def test_extra_served_outputs_are_ignored() -> None:
    golden = two_output_set()
    served = served_from(golden)
    served["0"]["DEBUG"] = np.zeros(1)
    assert gs.compare(golden, served).passed


def test_top_k_agreement_is_about_the_class_set_not_the_order() -> None:
    spec = gs.OutputSpec(name="P", datatype="FP32", shape=[2, 5], atol=10.0, rtol=0.0, top_k=2)
    reference = np.array([[0.1, 0.9, 0.5, 0.2, 0.0], [0.3, 0.1, 0.2, 0.8, 0.4]], np.float32)
    reordered = np.array([[0.1, 0.5, 0.9, 0.2, 0.0], [0.3, 0.1, 0.2, 0.4, 0.8]], np.float32)
    same_set = gs.check_output("r", spec, spec.tolerance, reference, reordered)
    assert same_set.passed
    assert (same_set.top_k_rows, same_set.top_k_agreeing) == (2, 2)
    swapped = np.array([[0.1, 0.9, 0.5, 0.2, 0.0], [0.9, 0.1, 0.2, 0.8, 0.4]], np.float32)
    one_row = gs.check_output("r", spec, spec.tolerance, reference, swapped)
    assert not one_row.passed, "within atol everywhere, but row 1's top-2 changed"
    assert (one_row.top_k_rows, one_row.top_k_agreeing) == (2, 1)


def test_top_k_ties_at_the_kth_score_agree_either_way() -> None:
    spec = gs.OutputSpec(name="P", datatype="FP32", shape=[4], atol=1.0, rtol=0.0, top_k=2)
    reference = np.array([0.9, 0.5, 0.5, 0.1], np.float32)
    for served in ([0.9, 0.6, 0.5, 0.1], [0.9, 0.5, 0.6, 0.1]):
        assert gs.check_output("r", spec, spec.tolerance, reference, np.array(served, np.float32)).passed
    nan_row = gs.check_output("r", spec, spec.tolerance, reference, np.array([0.9, 0.5, 0.5, np.nan], np.float32))
    assert nan_row.top_k_agreeing == 0


def test_report_names_the_worst_request_and_the_failure_counts() -> None:
    golden = classifier_set(requests=4, top_k=None)

    def drift(request_id: str, name: str, array: Any) -> Any:
        return array + np.float32({"1": 0.5, "2": 0.05}.get(request_id, 0.0))

    report = gs.compare(golden, served_from(golden, drift))
    assert not report.passed
    assert report.failed_requests == ("1", "2")
    (output,) = report.outputs
    assert (output.requests, output.failed, output.worst_request) == (4, 2, "1")
    assert output.max_abs_error == pytest.approx(0.5)
    assert output.top_k_agreement is None
    assert report.worst() == output
    text = report.describe()
    assert text.startswith("2/4 golden requests out of tolerance; OUTPUT__0: 2/4 requests out of tolerance")
    assert "(atol=0.001, rtol=0.01)" in text
    assert "max abs error 0.5 (worst request 1)" in text


def test_report_gives_the_top_k_agreement_rate_over_all_rows() -> None:
    golden = classifier_set(requests=4, top_k=1)

    def argmax_moved(request_id: str, name: str, array: Any) -> Any:
        if request_id != "3":
            return array
        moved = array.copy()
        moved[0, int(np.argmin(array))] = array.max() + 1
        return moved

    report = gs.compare(golden, served_from(golden, argmax_moved))
    (output,) = report.outputs
    assert output.top_k_agreement == 0.75
    assert output.worst_request == "3"
    assert "top-1 agreement 75.0%" in output.describe()
    wire = output.wire()
    assert (wire["topK"], wire["topKAgreement"], wire["failed"], wire["passed"]) == (1, 0.75, 1, False)


def test_structural_problems_appear_once_in_the_report() -> None:
    golden = two_output_set()
    served = served_from(golden)
    for outputs in served.values():
        del outputs["COUNT"]
    report = gs.compare(golden, served)
    count = next(output for output in report.outputs if output.output == "COUNT")
    assert count.problems == ("request 0: missing from the response",)
    assert count.wire()["maxAbsError"] is None, "JSON has no infinity"
    assert "COUNT: 2/2 requests out of tolerance" in report.describe()
    assert "max abs error inf" in count.describe()
    assert json.dumps(report.wire())


def test_nothing_compared_is_not_a_pass() -> None:
    golden = classifier_set()
    report = gs.compare(golden, {})
    assert report.requests == 0
    assert not report.passed
    assert report.outputs[0].top_k_agreement is None
    assert not report.outputs[0].passed


def test_only_the_requests_answered_are_compared() -> None:
    golden = classifier_set(requests=3)
    served = served_from(golden)
    del served["2"]
    report = gs.compare(golden, served)
    assert (report.requests, report.passed) == (2, True)


def test_served_outputs_for_unknown_requests_are_an_error() -> None:
    golden = classifier_set()
    with pytest.raises(gs.GoldenSetError, match=r"requests \['99'\] that the golden set lacks"):
        gs.compare(golden, {"99": {}})


def test_tolerance_overrides_change_the_verdict() -> None:
    golden = classifier_set(top_k=None)
    served = served_from(golden, lambda request_id, name, array: array + np.float32(0.01))
    assert not gs.compare(golden, served).passed
    loose = golden.tolerances(default=gs.ToleranceOverride(atol=0.02))
    assert gs.compare(golden, served, loose).passed


def test_summarize_folds_results_from_several_pods() -> None:
    golden = classifier_set(requests=2, top_k=None)
    good = served_from(golden)
    bad = served_from(golden, lambda request_id, name, array: array + np.float32(1.0))
    results = [gs.compare_request(golden, golden.request(rid), good[rid]) for rid in good]
    results += [gs.compare_request(golden, golden.request(rid), bad[rid]) for rid in bad]
    report = gs.summarize(golden, results)
    assert (report.requests, report.failed_requests) == (4, ("0", "1"))
    assert report.outputs[0].failed == 2


# --- ConfigMap ---------------------------------------------------------------------------------


def test_configmap_manifest_holds_the_document_under_its_key_with_the_label() -> None:
    golden = classifier_set()
    manifest = gs.configmap_manifest(golden, "resnet-golden", "models")
    assert manifest["kind"] == "ConfigMap"
    assert manifest["metadata"] == {
        "name": "resnet-golden",
        "namespace": "models",
        "labels": {"vigil.dev/golden-set": "resnet-golden"},
    }
    assert gs.GoldenSet.parse(manifest["data"]["golden.json"]) == golden
    assert "namespace" not in gs.configmap_manifest(golden, "g")["metadata"]


def test_a_set_past_the_configmap_limit_is_refused_with_its_size_and_a_way_out() -> None:
    inputs = [gs.TensorSpec(name="X", datatype="FP32", shape=[1, 3, 64, 64])]
    outputs = [gs.OutputSpec(name="Y", datatype="FP32", shape=[1, 10])]
    sample = ({"X": np.zeros((1, 3, 64, 64), np.float32)}, {"Y": np.zeros((1, 10), np.float32)})
    golden = gs.GoldenSet.from_arrays(MODEL, inputs, outputs, [sample] * 20)
    with pytest.raises(gs.TooLargeError) as caught:
        gs.configmap_manifest(golden, "big")
    size = len(golden.dumps()) + len("golden.json")
    assert caught.value.size == size > gs.CONFIGMAP_LIMIT_BYTES
    assert f"is {size} bytes, over the ConfigMap limit of 1048576 bytes" in str(caught.value)
    assert "fewer or smaller samples" in str(caught.value)
    assert "spec.validation.goldenSet.path" in str(caught.value)
    assert gs.configmap_manifest(gs.GoldenSet.from_arrays(MODEL, inputs, outputs, [sample] * 10), "fits")
