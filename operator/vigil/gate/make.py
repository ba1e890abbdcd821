"""Making a golden set with torch: load the model, build or read sample inputs, run on CPU, record.

The torch edge of ``vigil golden`` (the ``vigil[golden]`` extra); the document itself and its
checks are :mod:`vigil.gate.goldenset`. A model is either a TorchScript file (what Triton's
pytorch_libtorch backend serves; in a repository layout ``<model>/<version>/model.pt`` its
``config.pbtxt``, name and version are found beside it) or an importable ``module:factory``
returning a ``torch.nn.Module``. The digest identifies what computed the references: the file's
bytes, or the factory module's state_dict (names, dtypes, shapes and values).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib
import math
import pathlib
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from vigil.gate import goldenset, tritonconfig

SHAPE_SEPARATOR = re.compile(r"[x,]")


class MakeError(ValueError):
    """Anything that keeps a golden set from being made; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    module: Callable[..., Any]
    digest: str
    name: str
    version: str | None
    config: tritonconfig.ModelConfig | None


def parse_input(text: str) -> goldenset.TensorSpec:
    """``NAME:DATATYPE:SHAPE`` with the shape as ``1x3x32x32`` (or comma-separated)."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[0]:
        raise MakeError(f"--input {text!r}: expected NAME:DATATYPE:SHAPE, e.g. INPUT__0:FP32:1x3x32x32")
    name, datatype, shape_text = parts
    try:
        shape = [int(d) for d in SHAPE_SEPARATOR.split(shape_text)] if shape_text else []
    except ValueError:
        raise MakeError(f"--input {text!r}: shape {shape_text!r} is not like 1x3x32x32") from None
    if any(d < 1 for d in shape):
        raise MakeError(f"--input {text!r}: every dimension must be a fixed size >= 1")
    try:
        goldenset.numpy_dtype(datatype.upper())
    except goldenset.UnsupportedDatatypeError as exc:
        raise MakeError(f"--input {text!r}: {exc}") from None
    return goldenset.TensorSpec(name=name, datatype=datatype.upper(), shape=shape)


def _state_digest(module: torch.nn.Module) -> str:
    hasher = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        hasher.update(f"{key}|{value.dtype}|{list(value.shape)}\n".encode())
        hasher.update(value.numpy().tobytes() if value.dtype != torch.bfloat16 else value.float().numpy().tobytes())
    return "sha256:" + hasher.hexdigest()


def load_model(source: str, factory_args: Mapping[str, Any] | None = None) -> LoadedModel:
    """A TorchScript file, or ``module:factory`` called with ``factory_args``, ready for CPU inference."""
    path = pathlib.Path(source)
    if path.is_file():
        data = path.read_bytes()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # TorchScript is what Triton's libtorch backend loads
                module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        except (RuntimeError, ValueError) as exc:
            raise MakeError(f"{path} is not a TorchScript model: {str(exc).splitlines()[0]}") from None
        module.eval()
        version_dir = path.parent
        config_file = version_dir.parent / tritonconfig.CONFIG_FILE
        in_repository = config_file.is_file()
        return LoadedModel(
            module=module,
            digest=goldenset.digest(data),
            name=version_dir.parent.name if in_repository else path.stem,
            version=version_dir.name if in_repository else None,
            config=tritonconfig.read(config_file) if in_repository else None,
        )
    module_name, sep, attribute = source.partition(":")
    if not sep or not module_name or not attribute:
        raise MakeError(f"model {source!r}: no such file, and not an importable module:factory")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise MakeError(f"model {source!r}: {exc}") from None
    try:
        built = factory(**(factory_args or {}))
    except TypeError as exc:
        raise MakeError(f"model {source!r}: {exc}") from None
    if not isinstance(built, torch.nn.Module):
        raise MakeError(f"model {source!r} returned {type(built).__name__}, not a torch.nn.Module")
    built.eval()
    return LoadedModel(module=built, digest=_state_digest(built), name=attribute, version=None, config=None)


def generated_inputs(
    specs: Sequence[goldenset.TensorSpec], count: int, seed: int, int_range: tuple[int, int] = (0, 10)
) -> list[dict[str, np.ndarray[Any, Any]]]:
    """``count`` requests of seeded inputs: normal floats, integers in ``int_range`` (high excluded), fair bools."""
    rng = np.random.default_rng(seed)
    requests = []
    for _ in range(count):
        sample: dict[str, np.ndarray[Any, Any]] = {}
        for spec in specs:
            dtype = spec.dtype
            if dtype.kind == "f":
                values = rng.standard_normal(spec.shape).astype(dtype)
            elif dtype.kind == "b":
                values = rng.integers(0, 2, spec.shape).astype(dtype)
            else:
                low, high = int_range
                info = np.iinfo(dtype)
                values = rng.integers(max(low, info.min), min(high, int(info.max) + 1), spec.shape).astype(dtype)
            sample[spec.name] = values
        requests.append(sample)
    return requests


def read_samples(path: pathlib.Path, specs: Sequence[goldenset.TensorSpec]) -> list[dict[str, np.ndarray[Any, Any]]]:
    """Requests from ``.npz`` (one array per input name) or ``.npy`` (single-input models).

    Each array is one request (exactly the input's shape) or several stacked on a new first axis.
    """
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise MakeError(f"cannot read samples {path}: {exc}") from None
    if isinstance(loaded, np.ndarray):
        if len(specs) != 1:
            raise MakeError(f"{path}: a .npy file holds one array, the model has {len(specs)} inputs: use .npz")
        arrays = {specs[0].name: loaded}
    else:
        with loaded:
            arrays = {key: loaded[key] for key in loaded.files}
        missing = [spec.name for spec in specs if spec.name not in arrays]
        if missing:
            raise MakeError(f"{path} lacks arrays for inputs {missing} (has {sorted(arrays)})")
    counts = set()
    stacks: dict[str, np.ndarray[Any, Any]] = {}
    for spec in specs:
        array = arrays[spec.name]
        if datatype_or_none(array.dtype) != spec.datatype:
            raise MakeError(f"{path}: input {spec.name!r} is {array.dtype}, the model takes {spec.datatype}")
        if list(array.shape) == spec.shape:
            array = array[np.newaxis]
        elif list(array.shape[1:]) != spec.shape:
            raise MakeError(
                f"{path}: input {spec.name!r} has shape {list(array.shape)}, expected {spec.shape} or [N, *{spec.shape}]"
            )
        stacks[spec.name] = array
        counts.add(array.shape[0])
    if len(counts) != 1:
        raise MakeError(f"{path}: inputs hold different numbers of requests {sorted(counts)}")
    (count,) = counts
    return [{name: np.ascontiguousarray(stack[index]) for name, stack in stacks.items()} for index in range(count)]


def datatype_or_none(dtype: np.dtype[Any]) -> str | None:
    try:
        return goldenset.datatype_of(dtype)
    except goldenset.UnsupportedDatatypeError:
        return None


@dataclasses.dataclass(frozen=True)
class OutputOptions:
    """Names and tolerances of the outputs; per-output entries win over the defaults."""

    names: Sequence[str] = ()
    atol: float = goldenset.DEFAULT_ATOL
    rtol: float = goldenset.DEFAULT_RTOL
    top_k: int | None = None
    per_output: Mapping[str, goldenset.ToleranceOverride] = dataclasses.field(default_factory=dict)


def run(
    model: LoadedModel,
    inputs: Sequence[goldenset.TensorSpec],
    samples: Sequence[Mapping[str, np.ndarray[Any, Any]]],
    options: OutputOptions,
    version: str | None = None,
    name: str | None = None,
) -> goldenset.GoldenSet:
    """Run every sample through the model on CPU and record the outputs as references."""
    if not samples:
        raise MakeError("no sample inputs: give --samples or --requests >= 1")
    torch.set_grad_enabled(False)
    references: list[list[np.ndarray[Any, Any]]] = []
    for index, sample in enumerate(samples):
        tensors = [torch.from_numpy(np.array(sample[spec.name], copy=True)) for spec in inputs]
        try:
            with torch.inference_mode():
                result = model.module(*tensors)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise MakeError(f"the model failed on request {index}: {str(exc).splitlines()[0]}") from None
        produced = list(result) if isinstance(result, tuple | list) else [result]
        if not all(isinstance(tensor, torch.Tensor) for tensor in produced):
            raise MakeError("the model returned something other than tensors")
        references.append([tensor.detach().cpu().numpy() for tensor in produced])
    outputs = _output_specs(model, references, options)
    pairs = []
    for sample, produced in zip(samples, references, strict=True):
        converted = {spec.name: array.astype(spec.dtype) for spec, array in zip(outputs, produced, strict=True)}
        pairs.append(({spec.name: sample[spec.name] for spec in inputs}, converted))
    info = goldenset.ModelInfo(
        name=name or (model.config.name if model.config and model.config.name else model.name),
        version=version or model.version,
        digest=model.digest,
        torch=torch.__version__,
        created_at=datetime.datetime.now(datetime.UTC).replace(microsecond=0),
    )
    return goldenset.GoldenSet.from_arrays(info, inputs, outputs, pairs)


def _output_specs(
    model: LoadedModel, references: Sequence[Sequence[np.ndarray[Any, Any]]], options: OutputOptions
) -> list[goldenset.OutputSpec]:
    first = references[0]
    if options.names:
        names = list(options.names)
    elif model.config is not None:
        names = [tensor.name for tensor in model.config.outputs]
    else:
        names = [f"OUTPUT__{index}" for index in range(len(first))]
    if len(names) != len(first):
        raise MakeError(f"the model returns {len(first)} outputs, {len(names)} output names given: {names}")
    unknown = sorted(set(options.per_output) - set(names))
    if unknown:
        raise MakeError(f"tolerances name outputs {unknown} the model does not have ({names})")
    specs = []
    for index, name in enumerate(names):
        shapes = {tuple(produced[index].shape) for produced in references}
        if len(shapes) != 1:
            raise MakeError(f"output {name!r} changes shape between requests: {sorted(shapes)}")
        if model.config is not None and not options.names:
            datatype = model.config.outputs[index].datatype
        else:
            found = datatype_or_none(first[index].dtype)
            if found is None:
                raise MakeError(f"output {name!r} is {first[index].dtype}, which golden sets cannot hold")
            datatype = found
        tolerance = goldenset.Tolerance(options.atol, options.rtol, options.top_k)
        override = options.per_output.get(name)
        if override is not None:
            tolerance = override.over(tolerance)
        top_k = tolerance.top_k
        shape = list(first[index].shape)
        if (
            top_k is not None
            and name not in options.per_output
            and (not shape or top_k > shape[-1] or math.prod(shape) == 0)
        ):
            top_k = None  # a blanket --top-k applies to the outputs with enough classes
        try:
            specs.append(
                goldenset.OutputSpec(
                    name=name, datatype=datatype, shape=shape, atol=tolerance.atol, rtol=tolerance.rtol, top_k=top_k
                )
            )
        except ValueError as exc:
            raise MakeError(f"output {name!r}: {exc}") from None
    return specs
