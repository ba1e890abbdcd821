"""Golden sets: sample inputs with torch-made reference outputs, and the check of served answers against them.

A golden set is one JSON document (``format: vigil.dev/golden-set/v1``) that ``vigil golden`` writes
and the operator's gate reads from a ConfigMap (``data["golden.json"]``, at most 1 MiB) or from a
file beside the model in its repository (``<repository>/<model>/golden.json``, any size):

- ``model``: what made the references (name, version, ``sha256:`` digest, torch version, time);
- ``inputs`` and ``outputs``: tensor names, Triton datatypes and shapes; each output carries its
  tolerance (``atol``, ``rtol``, optional ``topK`` for classifiers);
- ``requests``: per request an ``id`` and, per tensor, the base64 of its little-endian C-order bytes:
  exactly what Triton's binary tensor extension puts on the wire, so no precision is lost in text.

A served output passes when its shape and datatype are the reference's, every element is within
``numpy.isclose`` tolerance of the reference (``|served - ref| <= atol + rtol * |ref|``), and, with
``topK``, each row's top-k classes are the reference's (ties at the k-th score count as agreement).

This module is pure (numpy and pydantic only): no torch, no tritonclient, no Kubernetes. ``vigil
golden`` builds documents with torch at the edge, and the gate fetches served outputs with
tritonclient at the edge; both meet here.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal, Self

import numpy as np
import numpy.typing as npt
import pydantic
from pydantic.alias_generators import to_camel

FORMAT: Final = "vigil.dev/golden-set/v1"
CONFIGMAP_KEY = "golden.json"
LABEL = "vigil.dev/golden-set"
# The API server rejects a ConfigMap whose keys and values add up to more than 1 MiB.
CONFIGMAP_LIMIT_BYTES = 1024 * 1024
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3

# Triton / KServe v2 datatype names and their little-endian numpy dtypes. BYTES has no fixed-size layout.
DTYPES: Mapping[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}

Array = npt.NDArray[Any]


class GoldenSetError(ValueError):
    """Anything wrong with a golden set or its use; the message says what and where."""


class InvalidGoldenSetError(GoldenSetError):
    """The document does not follow the format; ``problems`` lists ``field.path: message``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid golden set: " + "; ".join(self.problems))


class UnsupportedDatatypeError(GoldenSetError):
    """A datatype golden sets cannot carry (BYTES, or an unknown name or numpy dtype)."""


class TensorError(GoldenSetError):
    """A tensor that does not match its declaration: bad base64, wrong size, shape or dtype."""


class TooLargeError(GoldenSetError):
    """The document does not fit in a ConfigMap."""

    def __init__(self, size: int, limit: int = CONFIGMAP_LIMIT_BYTES) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"the golden set is {size} bytes, over the ConfigMap limit of {limit} bytes: use fewer or smaller "
            "samples (--samples, a smaller batch), or keep it in the model repository: --out "
            "<repository>/<model>/golden.json and spec.validation.goldenSet.path: golden.json"
        )


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The little-endian numpy dtype of a Triton datatype name."""
    if datatype == "BYTES":
        raise UnsupportedDatatypeError("BYTES tensors are not supported in golden sets (no fixed-size layout)")
    try:
        return DTYPES[datatype]
    except KeyError:
        raise UnsupportedDatatypeError(f"unknown datatype {datatype!r}; expected one of {', '.join(DTYPES)}") from None


def datatype_of(dtype: npt.DTypeLike) -> str:
    """The Triton datatype name of a numpy dtype (any byte order)."""
    wanted = np.dtype(dtype)
    for name, candidate in DTYPES.items():
        if wanted.kind == candidate.kind and wanted.itemsize == candidate.itemsize:
            return name
    raise UnsupportedDatatypeError(f"numpy dtype {wanted} has no golden-set datatype")


def encode_tensor(array: npt.ArrayLike, datatype: str) -> str:
    """Base64 of the array's little-endian C-order bytes; the array's dtype must be ``datatype``'s."""
    dtype = numpy_dtype(datatype)
    values = np.asarray(array)
    if datatype_of(values.dtype) != datatype:
        raise TensorError(f"a {values.dtype} array is not {datatype}")
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes()).decode("ascii")


def decode_tensor(text: str, datatype: str, shape: Sequence[int]) -> Array:
    """The array a base64 field holds (read-only), checked against its datatype and shape."""
    dtype = numpy_dtype(datatype)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TensorError(f"not valid base64: {exc}") from None
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise TensorError(f"{len(raw)} bytes, expected {expected} for {datatype} {list(shape)}")
    return np.frombuffer(raw, dtype=dtype).reshape(tuple(shape))


def digest(data: bytes) -> str:
    """``sha256:<hex>`` of the bytes that made the references (a TorchScript file, a state_dict)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Doc(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ModelInfo(_Doc):
    """What made the reference outputs."""

    name: str = pydantic.Field(min_length=1, max_length=253)
    version: str | None = pydantic.Field(default=None, min_length=1, max_length=63, coerce_numbers_to_str=True)
    digest: str = pydantic.Field(pattern=r"^sha256:[0-9a-f]{64}$")
    torch: str | None = pydantic.Field(default=None, description="torch version that computed the references")
    created_at: datetime.datetime | None = None


class TensorSpec(_Doc):
    """One input or output tensor: Triton name, datatype and the exact shape of every request's tensor."""

    name: str = pydantic.Field(min_length=1, max_length=256)
    datatype: str
    shape: list[pydantic.NonNegativeInt] = pydantic.Field(max_length=16)

    @pydantic.field_validator("datatype")
    @classmethod
    def _supported(cls, value: str) -> str:
        numpy_dtype(value)
        return value

    @property
    def dtype(self) -> np.dtype[Any]:
        return numpy_dtype(self.datatype)


class OutputSpec(TensorSpec):
    """An output tensor and how close a served answer must be to the reference."""

    atol: float = pydantic.Field(default=DEFAULT_ATOL, ge=0, allow_inf_nan=False)
    rtol: float = pydantic.Field(default=DEFAULT_RTOL, ge=0, allow_inf_nan=False)
    top_k: int | None = pydantic.Field(default=None, ge=1)

    @pydantic.model_validator(mode="after")
    def _top_k_fits(self) -> Self:
        if self.top_k is not None:
            _check_top_k(self.name, self.shape, self.top_k)
        return self

    @property
    def tolerance(self) -> Tolerance:
        return Tolerance(atol=self.atol, rtol=self.rtol, top_k=self.top_k)


def _check_top_k(name: str, shape: Sequence[int], top_k: int) -> None:
    if not shape or top_k > shape[-1]:
        classes = shape[-1] if shape else 0
        raise ValueError(f"topK {top_k} of output {name!r} exceeds its {classes} classes (last dimension)")


class GoldenRequest(_Doc):
    """One golden request: its inputs and the reference outputs, base64 per tensor name."""

    id: str = pydantic.Field(min_length=1, max_length=128, coerce_numbers_to_str=True)
    inputs: dict[str, str]
    outputs: dict[str, str]


class GoldenSet(_Doc):
    """The whole document. Parsing checks every tensor, so a set that parses can be sent and compared."""

    format: Literal["vigil.dev/golden-set/v1"] = FORMAT
    model: ModelInfo
    inputs: list[TensorSpec] = pydantic.Field(min_length=1)
    outputs: list[OutputSpec] = pydantic.Field(min_length=1)
    requests: list[GoldenRequest] = pydantic.Field(min_length=1)

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[str] = []
        for field, specs in (("inputs", self.inputs), ("outputs", self.outputs)):
            names = [spec.name for spec in specs]
            duplicates = sorted({name for name in names if names.count(name) > 1})
            if duplicates:
                problems.append(f"{field}: duplicate tensor names {duplicates}")
        ids = [request.id for request in self.requests]
        repeated = sorted({request_id for request_id in ids if ids.count(request_id) > 1})
        if repeated:
            problems.append(f"requests: duplicate ids {repeated}")
        for index, request in enumerate(self.requests):
            for field, specs, tensors in (
                ("inputs", self.inputs, request.inputs),
                ("outputs", self.outputs, request.outputs),
            ):
                where = f"requests.{index}.{field}"
                declared = {spec.name for spec in specs}
                missing, extra = sorted(declared - set(tensors)), sorted(set(tensors) - declared)
                if missing:
                    problems.append(f"{where}: request {request.id!r} lacks {missing}")
                if extra:
                    problems.append(f"{where}: request {request.id!r} has undeclared {extra}")
                for spec in specs:
                    if spec.name in tensors:
                        try:
                            decode_tensor(tensors[spec.name], spec.datatype, spec.shape)
                        except TensorError as exc:
                            problems.append(f"{where}.{spec.name}: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @classmethod
    def parse(cls, text: str | bytes) -> GoldenSet:
        """Read a document; every problem is reported with its field path in :class:`InvalidGoldenSetError`."""
        try:
            return cls.model_validate_json(text)
        except pydantic.ValidationError as exc:
            raise InvalidGoldenSetError(_problems(exc)) from None

    @classmethod
    def from_arrays(
        cls,
        model: ModelInfo,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[OutputSpec],
        samples: Iterable[tuple[Mapping[str, npt.ArrayLike], Mapping[str, npt.ArrayLike]]],
    ) -> GoldenSet:
        """A golden set from (inputs, reference outputs) arrays per request; request ids count from 0."""
        requests = []
        for index, (sample_inputs, sample_outputs) in enumerate(samples):
            requests.append(
                GoldenRequest(
                    id=str(index),
                    inputs=_encode_all(inputs, sample_inputs, f"request {index} input"),
                    outputs=_encode_all(outputs, sample_outputs, f"request {index} output"),
                )
            )
        try:
            return cls(model=model, inputs=list(inputs), outputs=list(outputs), requests=requests)
        except pydantic.ValidationError as exc:
            raise InvalidGoldenSetError(_problems(exc)) from None

    def dumps(self) -> str:
        """The document as compact JSON (what goes into the ConfigMap)."""
        return self.model_dump_json(by_alias=True, exclude_none=True)

    def request(self, request_id: str) -> GoldenRequest:
        for request in self.requests:
            if request.id == request_id:
                return request
        raise GoldenSetError(f"no golden request with id {request_id!r}")

    def input_arrays(self, request: GoldenRequest) -> dict[str, Array]:
        """The request's inputs, in declaration order (dicts keep it), ready to send."""
        return {spec.name: decode_tensor(request.inputs[spec.name], spec.datatype, spec.shape) for spec in self.inputs}

    def reference_arrays(self, request: GoldenRequest) -> dict[str, Array]:
        return {
            spec.name: decode_tensor(request.outputs[spec.name], spec.datatype, spec.shape) for spec in self.outputs
        }

    def tolerances(
        self,
        default: ToleranceOverride | None = None,
        per_output: Mapping[str, ToleranceOverride] | None = None,
    ) -> dict[str, Tolerance]:
        """Each output's tolerance: the golden set's, then ``default`` over it, then the output's own override."""
        per_output = per_output or {}
        known = {spec.name for spec in self.outputs}
        unknown = sorted(set(per_output) - known)
        if unknown:
            raise GoldenSetError(
                f"tolerance overrides name outputs {unknown} that the golden set lacks ({sorted(known)})"
            )
        resolved: dict[str, Tolerance] = {}
        for spec in self.outputs:
            tolerance = spec.tolerance
            for override in (default, per_output.get(spec.name)):
                if override is not None:
                    tolerance = override.over(tolerance)
            if tolerance.top_k is not None:
                try:
                    _check_top_k(spec.name, spec.shape, tolerance.top_k)
                except ValueError as exc:
                    raise GoldenSetError(str(exc)) from None
            resolved[spec.name] = tolerance
        return resolved


def _encode_all(specs: Sequence[TensorSpec], arrays: Mapping[str, npt.ArrayLike], what: str) -> dict[str, str]:
    encoded: dict[str, str] = {}
    for spec in specs:
        if spec.name not in arrays:
            raise TensorError(f"{what} {spec.name!r} is missing")
        value = np.asarray(arrays[spec.name])
        if list(value.shape) != spec.shape:
            raise TensorError(f"{what} {spec.name!r} has shape {list(value.shape)}, declared {spec.shape}")
        try:
            encoded[spec.name] = encode_tensor(value, spec.datatype)
        except GoldenSetError as exc:
            raise TensorError(f"{what} {spec.name!r}: {exc}") from None
    return encoded


def _problems(exc: pydantic.ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return problems


def configmap_manifest(
    golden: GoldenSet, name: str, namespace: str | None = None, key: str = CONFIGMAP_KEY
) -> dict[str, Any]:
    """The ConfigMap that holds ``golden``; raises :class:`TooLargeError` past the API server's 1 MiB."""
    text = golden.dumps()
    size = len(key.encode("utf-8")) + len(text.encode("utf-8"))
    if size > CONFIGMAP_LIMIT_BYTES:
        raise TooLargeError(size)
    metadata: dict[str, Any] = {"name": name, "labels": {LABEL: name}}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {key: text}}


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How close a served output must be: numpy.isclose's atol/rtol, and optionally top-k agreement."""

    atol: float
    rtol: float
    top_k: int | None = None


@dataclasses.dataclass(frozen=True)
class ToleranceOverride:
    """Fields that replace a golden set's tolerance (from ``spec.validation.tolerance``); None keeps it."""

    atol: float | None = None
    rtol: float | None = None
    top_k: int | None = None

    def over(self, base: Tolerance) -> Tolerance:
        return Tolerance(
            atol=base.atol if self.atol is None else self.atol,
            rtol=base.rtol if self.rtol is None else self.rtol,
            top_k=base.top_k if self.top_k is None else self.top_k,
        )


@dataclasses.dataclass(frozen=True)
class OutputCheck:
    """One output of one request compared with its reference."""

    output: str
    request_id: str
    passed: bool
    max_abs_error: float
    """Largest |served - ref|; inf when the output is missing or mis-shaped, or has a NaN/inf the reference lacks."""
    max_rel_error: float
    """Largest |served - ref| / |ref| over the elements whose reference is not zero."""
    excess: float
    """Largest |served - ref| / (atol + rtol * |ref|): above 1 the element is out of tolerance."""
    top_k_rows: int = 0
    top_k_agreeing: int = 0
    problem: str | None = None
    """Why the output could not be compared element by element (missing, shape, datatype)."""


@dataclasses.dataclass(frozen=True)
class RequestResult:
    request_id: str
    checks: tuple[OutputCheck, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)


def check_output(
    request_id: str, spec: OutputSpec, tolerance: Tolerance, reference: Array, served: Array | None
) -> OutputCheck:
    """Compare one served output with its reference under ``tolerance``."""

    def broken(problem: str) -> OutputCheck:
        return OutputCheck(spec.name, request_id, False, math.inf, math.inf, math.inf, problem=problem)

    if served is None:
        return broken("missing from the response")
    served = np.asarray(served)
    if list(served.shape) != list(reference.shape):
        return broken(f"shape {list(served.shape)}, expected {list(reference.shape)}")
    try:
        served_type = datatype_of(served.dtype)
    except UnsupportedDatatypeError:
        served_type = str(served.dtype)
    if served_type != spec.datatype:
        return broken(f"datatype {served_type}, expected {spec.datatype}")

    got, want = served.astype(np.float64), reference.astype(np.float64)
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(same, 0.0, np.abs(got - want))
    diff = np.where(np.isnan(diff), np.inf, diff)
    bound = tolerance.atol + tolerance.rtol * np.abs(want)
    with np.errstate(divide="ignore", invalid="ignore"):
        excess = np.where(diff == 0, 0.0, np.where(bound > 0, diff / np.where(bound > 0, bound, 1.0), np.inf))
        nonzero = want != 0
        relative = np.where(nonzero, diff / np.where(nonzero, np.abs(want), 1.0), 0.0)
    max_abs = float(diff.max(initial=0.0))
    max_excess = float(excess.max(initial=0.0))
    passed = bool(np.all(excess <= 1.0))
    rows = agreeing = 0
    if tolerance.top_k is not None:
        rows, agreeing = _top_k_agreement(got, want, tolerance.top_k)
        passed = passed and agreeing == rows
    return OutputCheck(
        output=spec.name,
        request_id=request_id,
        passed=passed,
        max_abs_error=max_abs,
        max_rel_error=float(relative.max(initial=0.0)),
        excess=max_excess,
        top_k_rows=rows,
        top_k_agreeing=agreeing,
    )


def _top_k_agreement(served: Array, reference: Array, k: int) -> tuple[int, int]:
    """(rows, rows whose served top-k classes all score at least the reference's k-th best score).

    Without ties in the reference that is "the same top-k set"; with ties at the k-th score, any
    choice among the tied classes agrees. A served row with a NaN never agrees.
    """
    classes = reference.shape[-1]
    served_rows = served.reshape(-1, classes)
    reference_rows = reference.reshape(-1, classes)
    chosen = np.argsort(-served_rows, axis=-1, kind="stable")[:, :k]
    kth_best = np.sort(reference_rows, axis=-1)[:, classes - k]
    agree = np.all(np.take_along_axis(reference_rows, chosen, axis=-1) >= kth_best[:, None], axis=-1)
    agree &= ~np.any(np.isnan(served_rows), axis=-1)
    return int(reference_rows.shape[0]), int(np.count_nonzero(agree))


def compare_request(
    golden: GoldenSet,
    request: GoldenRequest,
    served: Mapping[str, Array | None],
    tolerances: Mapping[str, Tolerance] | None = None,
) -> RequestResult:
    """Every output of one request; outputs the response lacks fail, extra served outputs are ignored."""
    resolved = tolerances if tolerances is not None else golden.tolerances()
    references = golden.reference_arrays(request)
    checks = tuple(
        check_output(request.id, spec, resolved[spec.name], references[spec.name], served.get(spec.name))
        for spec in golden.outputs
    )
    return RequestResult(request.id, checks)


@dataclasses.dataclass(frozen=True)
class OutputReport:
    """One output over all compared requests: the worst deviation, and where it was."""

    output: str
    tolerance: Tolerance
    requests: int
    failed: int
    max_abs_error: float
    max_rel_error: float
    worst_request: str | None
    """The request whose output went furthest out of tolerance (relative to it), or None if none compared."""
    top_k_agreement: float | None
    """Fraction of rows whose top-k agreed, when the tolerance has top_k."""
    problems: tuple[str, ...] = ()
    """Distinct structural problems (missing output, wrong shape or datatype), first few."""

    @property
    def passed(self) -> bool:
        return self.requests > 0 and self.failed == 0

    def describe(self) -> str:
        """One line a person can read, e.g. in a condition message or an Incident."""
        tol = f"atol={self.tolerance.atol:g}, rtol={self.tolerance.rtol:g}"
        if self.tolerance.top_k is not None:
            tol += f", topK={self.tolerance.top_k}"
        verdict = "ok" if self.passed else f"{self.failed}/{self.requests} requests out of tolerance"
        text = f"{self.output}: {verdict} ({tol}); max abs error {_num(self.max_abs_error)}"
        if self.worst_request is not None:
            text += f" (worst request {self.worst_request})"
        text += f", max rel error {_num(self.max_rel_error)}"
        if self.top_k_agreement is not None:
            text += f", top-{self.tolerance.top_k} agreement {self.top_k_agreement:.1%}"
        if self.problems:
            text += "; " + "; ".join(self.problems)
        return text

    def wire(self) -> dict[str, Any]:
        """JSON-safe summary (non-finite errors become null)."""
        entry: dict[str, Any] = {
            "output": self.output,
            "passed": self.passed,
            "requests": self.requests,
            "failed": self.failed,
            "maxAbsError": _finite(self.max_abs_error),
            "maxRelError": _finite(self.max_rel_error),
            "worstRequest": self.worst_request,
            "atol": self.tolerance.atol,
            "rtol": self.tolerance.rtol,
        }
        if self.tolerance.top_k is not None:
            entry["topK"] = self.tolerance.top_k
            entry["topKAgreement"] = self.top_k_agreement
        if self.problems:
            entry["problems"] = list(self.problems)
        return entry


@dataclasses.dataclass(frozen=True)
class Report:
    """The verdict over a batch of compared requests (one pod's, or several pods' together)."""

    outputs: tuple[OutputReport, ...]
    requests: int
    failed_requests: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """Nothing compared is not a pass: a pod that answered nothing is not validated."""
        return self.requests > 0 and not self.failed_requests

    def worst(self) -> OutputReport | None:
        """The failing output with the most failed requests (ties: the larger max abs error)."""
        failing = [output for output in self.outputs if not output.passed]
        return max(failing, key=lambda output: (output.failed, output.max_abs_error), default=None)

    def describe(self) -> str:
        head = (
            f"{self.requests} golden requests within tolerance"
            if self.passed
            else f"{len(self.failed_requests)}/{self.requests} golden requests out of tolerance"
        )
        return "; ".join([head, *(output.describe() for output in self.outputs)])

    def wire(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "requests": self.requests,
            "failedRequests": list(self.failed_requests),
            "outputs": [output.wire() for output in self.outputs],
        }


MAX_PROBLEMS = 3


def summarize(
    golden: GoldenSet, results: Iterable[RequestResult], tolerances: Mapping[str, Tolerance] | None = None
) -> Report:
    """Fold request results into a :class:`Report` with one entry per output of the golden set."""
    resolved = tolerances if tolerances is not None else golden.tolerances()
    results = list(results)
    per_output: dict[str, list[OutputCheck]] = {spec.name: [] for spec in golden.outputs}
    for result in results:
        for check in result.checks:
            per_output.setdefault(check.output, []).append(check)
    outputs = []
    for spec in golden.outputs:
        checks = per_output[spec.name]
        tolerance = resolved[spec.name]
        worst = max(checks, key=lambda check: (not check.passed, check.excess), default=None)
        rows = sum(check.top_k_rows for check in checks)
        agreement: float | None = None
        if tolerance.top_k is not None:
            agreeing = sum(check.top_k_agreeing for check in checks)
            agreement = agreeing / rows if rows else (0.0 if checks else None)
        problems: dict[str, str] = {}
        for check in checks:
            if check.problem is not None and check.problem not in problems and len(problems) < MAX_PROBLEMS:
                problems[check.problem] = f"request {check.request_id}: {check.problem}"
        outputs.append(
            OutputReport(
                output=spec.name,
                tolerance=tolerance,
                requests=len(checks),
                failed=sum(1 for check in checks if not check.passed),
                max_abs_error=max((check.max_abs_error for check in checks), default=0.0),
                max_rel_error=max((check.max_rel_error for check in checks), default=0.0),
                worst_request=worst.request_id
                if worst is not None and (worst.excess > 0 or not worst.passed)
                else None,
                top_k_agreement=agreement,
                problems=tuple(problems.values()),
            )
        )
    failed = tuple(result.request_id for result in results if not result.passed)
    return Report(outputs=tuple(outputs), requests=len(results), failed_requests=failed)


def compare(
    golden: GoldenSet,
    served: Mapping[str, Mapping[str, Array | None]],
    tolerances: Mapping[str, Tolerance] | None = None,
) -> Report:
    """Served outputs per request id against the golden set; requests absent from ``served`` are not counted."""
    resolved = tolerances if tolerances is not None else golden.tolerances()
    unknown = sorted(set(served) - {request.id for request in golden.requests})
    if unknown:
        raise GoldenSetError(f"served outputs for requests {unknown} that the golden set lacks")
    results = [
        compare_request(golden, request, served[request.id], resolved)
        for request in golden.requests
        if request.id in served
    ]
    return summarize(golden, results, resolved)


def _num(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.3g}"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
