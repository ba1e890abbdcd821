"""Triton's HTTP surface for every simulated pod: ``/metrics`` and the KServe v2 API.

Each pod lives under ``/sim/<namespace>/<pod>/``, so Prometheus relabelling only rewrites the
scrape path, and the real ``tritonclient.http`` client works unchanged with a base path in its
URL (``InferenceServerClient(url="127.0.0.1:9400/sim/<namespace>/<pod>")``): it builds every
request as ``<base path>/v2/...``, and so does ``tritonclient.http.aio``.

The served model is the pod's model from its model repository when the repository is local
(``vigil.sim.models``): a TorchScript file run on CPU with torch, with the version's quiet faults
(``vigil.sim.inference``), described by its ``config.pbtxt``. Otherwise it is an identity model:
each input tensor comes back as ``OUTPUT<i>`` (or under the requested output names). Answers go
out in JSON or in Triton's binary tensor extension, whichever the client asked for. Whether a
request succeeds, and how long it takes, comes from the pod's queue and the behaviour of its
model version; every request is counted in the pod's Triton series and for its revision.
"""

from __future__ import annotations

import asyncio
import functools
import json
import struct
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web

from vigil.gate import tritonconfig
from vigil.sim import engine, models, queueing

if TYPE_CHECKING:
    from vigil.sim import inference

PREFIX = "/sim/{namespace}/{pod}"
SERVER_NAME = "triton"
SERVER_VERSION = "2.54.0"
EXTENSIONS = [
    "classification",
    "sequence",
    "model_repository",
    "schedule_policy",
    "model_configuration",
    "system_shared_memory",
    "cuda_shared_memory",
    "binary_tensor_data",
    "parameters",
    "statistics",
    "trace",
    "logging",
]
HEADER_LENGTH = "Inference-Header-Content-Length"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_BATCH_SIZE = 8
# Direct requests really wait their simulated latency, but never hold a connection for long.
MAX_DIRECT_DELAY_SECONDS = 2.0

DTYPES: Mapping[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "int8",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
SIM_KEY = web.AppKey("vigil_sim", engine.Simulator)


class InferError(ValueError):
    """A malformed inference request (answered with 400, like Triton)."""


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _simulator(request: web.Request) -> engine.Simulator:
    return request.app[SIM_KEY]


def _record(request: web.Request) -> engine.PodRecord | web.Response:
    """The pod's process, or the error response a missing or crashed Triton would give."""
    namespace, name = request.match_info["namespace"], request.match_info["pod"]
    record = _simulator(request).record(namespace, name)
    if record is None:
        return error(404, f"no simulated Triton for pod {namespace}/{name} (not Ready or not a vigil pod)")
    if record.crashed:
        return error(503, "Triton is not running (simulated crash)")
    return record


def _model_error(request: web.Request, record: engine.PodRecord) -> web.Response | None:
    model = request.match_info["model"]
    version = request.match_info.get("version", "")
    if model != record.model:
        return error(400, f"Request for unknown model: '{model}' is not found")
    if version and version != record.version:
        return error(400, f"Request for unknown model: '{model}' version {version} is not found")
    return None


def _tensor_meta(name: str) -> dict[str, Any]:
    return {"name": name, "datatype": "FP32", "shape": [-1, -1]}


def model_files(record: engine.PodRecord) -> models.ModelFiles | None:
    """The pod's model in its (local) model repository, if it has one to run."""
    return models.find(record.pod.model_repository, record.model, record.version)


def served_config(record: engine.PodRecord) -> tritonconfig.ModelConfig | None:
    """The configuration of the pod's repository model, if it has one (raises ConfigError if unreadable)."""
    files = model_files(record)
    if files is None or files.config_file is None:
        return None
    return tritonconfig.read(files.config_file)


def _config_tensors(
    config: tritonconfig.ModelConfig, tensors: Sequence[tritonconfig.TensorConfig]
) -> list[dict[str, Any]]:
    return [{"name": t.name, "datatype": t.datatype, "shape": config.shape(t, -1)} for t in tensors]


def model_metadata(record: engine.PodRecord, config: tritonconfig.ModelConfig | None = None) -> dict[str, Any]:
    if config is not None:
        return {
            "name": record.model,
            "versions": [record.version],
            "platform": config.platform or "pytorch_libtorch",
            "inputs": _config_tensors(config, config.inputs),
            "outputs": _config_tensors(config, config.outputs),
        }
    return {
        "name": record.model,
        "versions": [record.version],
        "platform": "python",
        "inputs": [_tensor_meta("INPUT0")],
        "outputs": [_tensor_meta("OUTPUT0")],
    }


def _config_entries(tensors: Sequence[tritonconfig.TensorConfig]) -> list[dict[str, Any]]:
    return [
        {
            "name": t.name,
            "data_type": "TYPE_STRING" if t.datatype == "BYTES" else f"TYPE_{t.datatype}",
            "dims": list(t.dims),
        }
        for t in tensors
    ]


def model_config(record: engine.PodRecord, config: tritonconfig.ModelConfig | None = None) -> dict[str, Any]:
    gpus = list(range(record.pod.gpus))
    if config is not None:
        platform, backend, max_batch = config.platform, config.backend or "pytorch", config.max_batch_size
        inputs, outputs = _config_entries(config.inputs), _config_entries(config.outputs)
    else:
        platform, backend, max_batch = "", "python", MAX_BATCH_SIZE
        inputs = [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [-1]}]
        outputs = [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [-1]}]
    return {
        "name": record.model,
        "platform": platform,
        "backend": backend,
        "version_policy": {"specific": {"versions": [record.version]}},
        "max_batch_size": max_batch,
        "input": inputs,
        "output": outputs,
        "instance_group": [
            {"name": record.model, "kind": "KIND_GPU" if gpus else "KIND_CPU", "count": 1, "gpus": gpus}
        ],
        "dynamic_batching": {
            "max_queue_delay_microseconds": 100,
            "default_queue_policy": {"max_queue_size": record.settings.max_queue},
        },
        "model_metrics": {
            "metric_control": [
                {
                    "metric_identifier": {"family": "nv_inference_first_response_histogram_ms"},
                    "histogram_options": {"buckets": list(record.state.buckets_ms)},
                }
            ]
        },
    }


def _duration(count: int, microseconds: float) -> dict[str, int]:
    return {"count": count, "ns": int(microseconds * 1000)}


def model_stats(record: engine.PodRecord) -> dict[str, Any]:
    state = record.state
    success = int(state.total("success"))
    failed = sum(state.failures().values())
    return {
        "name": record.model,
        "version": record.version,
        "last_inference": state.last_inference_ms,
        "inference_count": int(state.total("inference_count")),
        "execution_count": int(state.total("exec_count")),
        "inference_stats": {
            "success": _duration(success, state.total("request_duration_us")),
            "fail": _duration(failed, 0.0),
            "queue": _duration(success, state.total("queue_duration_us")),
            "compute_input": _duration(success, state.total("compute_input_duration_us")),
            "compute_infer": _duration(success, state.total("compute_infer_duration_us")),
            "compute_output": _duration(success, state.total("compute_output_duration_us")),
            "cache_hit": _duration(0, 0.0),
            "cache_miss": _duration(0, 0.0),
        },
        "batch_stats": [],
    }


def _serialize_bytes(items: Sequence[Any]) -> bytes:
    parts: list[bytes] = []
    for item in items:
        raw = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        parts.append(struct.pack("<I", len(raw)) + raw)
    return b"".join(parts)


def _deserialize_bytes(raw: bytes) -> list[str]:
    items: list[str] = []
    offset = 0
    while offset + 4 <= len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        items.append(raw[offset : offset + length].decode("utf-8", errors="replace"))
        offset += length
    return items


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [leaf for item in data for leaf in _flatten(item)]
    return [data]


def decode_request(body: bytes, header_length: str | None) -> tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]:
    """The JSON header and each input with its raw little-endian bytes (binary or JSON data)."""
    try:
        size = int(header_length) if header_length is not None else len(body)
    except ValueError:
        raise InferError(f"invalid {HEADER_LENGTH}: {header_length!r}") from None
    if not 0 < size <= len(body):
        raise InferError(f"{HEADER_LENGTH} {size} does not fit a body of {len(body)} bytes")
    try:
        header = json.loads(body[:size])
    except ValueError as exc:
        raise InferError(f"failed to parse the request JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list) or not header["inputs"]:
        raise InferError("the request has no inputs")
    binary = body[size:]
    offset = 0
    inputs: list[tuple[dict[str, Any], bytes]] = []
    for tensor in header["inputs"]:
        if not isinstance(tensor, dict) or "name" not in tensor or "datatype" not in tensor:
            raise InferError("each input needs a name and a datatype")
        datatype = str(tensor["datatype"])
        if datatype != "BYTES" and datatype not in DTYPES:
            raise InferError(f"input '{tensor['name']}': unsupported datatype {datatype}")
        length = (tensor.get("parameters") or {}).get("binary_data_size")
        if length is not None:
            raw = binary[offset : offset + int(length)]
            if len(raw) != int(length):
                raise InferError(f"input '{tensor['name']}': binary data is shorter than {length} bytes")
            offset += int(length)
        elif "data" in tensor:
            flat = _flatten(tensor["data"])
            try:
                raw = (
                    _serialize_bytes(flat)
                    if datatype == "BYTES"
                    else np.asarray(flat, dtype=DTYPES[datatype]).tobytes()
                )
            except (TypeError, ValueError) as exc:
                raise InferError(f"input '{tensor['name']}': {exc}") from None
        else:
            raise InferError(f"input '{tensor['name']}' has neither data nor binary_data_size")
        inputs.append((tensor, raw))
    return header, inputs


Output = tuple[str, str, list[int], bytes]
"""(name, datatype, shape, little-endian raw bytes) of one output tensor."""


def identity_outputs(header: Mapping[str, Any], inputs: Sequence[tuple[Mapping[str, Any], bytes]]) -> list[Output]:
    """The identity model: each input back as ``OUTPUT<i>``, or under the requested output names in turn."""
    names = [str(out.get("name")) for out in header.get("outputs") or []] or [f"OUTPUT{i}" for i in range(len(inputs))]
    outputs: list[Output] = []
    for index, name in enumerate(names):
        tensor, raw = inputs[index % len(inputs)]
        outputs.append((name, str(tensor["datatype"]), [int(d) for d in tensor.get("shape") or []], raw))
    return outputs


def input_arrays(inputs: Sequence[tuple[Mapping[str, Any], bytes]]) -> list[tuple[str, np.ndarray[Any, Any]]]:
    """Named numpy arrays of a request's inputs, for a real model."""
    arrays: list[tuple[str, np.ndarray[Any, Any]]] = []
    for tensor, raw in inputs:
        name, datatype = str(tensor["name"]), str(tensor["datatype"])
        if datatype == "BYTES":
            raise InferError(f"input '{name}': BYTES inputs are not supported by the simulated models")
        try:
            shape = [int(d) for d in tensor.get("shape") or []]
            array = np.frombuffer(raw, dtype=DTYPES[datatype]).reshape(shape)
        except (TypeError, ValueError) as exc:
            raise InferError(f"input '{name}': {exc}") from None
        arrays.append((name, array))
    return arrays


def encode_response(
    model: str, version: str, header: Mapping[str, Any], outputs: Sequence[Output]
) -> tuple[bytes, dict[str, str]]:
    """The response body, each output binary where the client asked for binary; returns (body, headers)."""
    requested = {str(out.get("name")): out for out in header.get("outputs") or []}
    binary_default = bool((header.get("parameters") or {}).get("binary_data_output", False))
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, datatype, shape, raw in outputs:
        wanted = requested.get(name) or {}
        binary = bool((wanted.get("parameters") or {}).get("binary_data", binary_default))
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if binary:
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        elif datatype == "BYTES":
            entry["data"] = _deserialize_bytes(raw)
        else:
            entry["data"] = np.frombuffer(raw, dtype=DTYPES[datatype]).tolist()
        entries.append(entry)
    response: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": entries}
    if header.get("id"):
        response["id"] = header["id"]
    text = json.dumps(response).encode("utf-8")
    if not blobs:
        return text, {"Content-Type": "application/json"}
    return text + b"".join(blobs), {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(text))}


async def metrics(request: web.Request) -> web.StreamResponse:
    record = _record(request)
    if isinstance(record, web.Response):
        return record
    return web.Response(body=record.metrics(), headers={"Content-Type": METRICS_CONTENT_TYPE})


async def server_metadata(request: web.Request) -> web.StreamResponse:
    record = _record(request)
    if isinstance(record, web.Response):
        return record
    return web.json_response({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS})


async def live(request: web.Request) -> web.StreamResponse:
    record = _record(request)
    return record if isinstance(record, web.Response) else web.Response(status=200)


async def ready(request: web.Request) -> web.StreamResponse:
    record = _record(request)
    return record if isinstance(record, web.Response) else web.Response(status=200)


async def model_endpoint(request: web.Request) -> web.StreamResponse:
    """GET .../v2/models/<m>[/versions/<v>][/ready|/config|/stats]."""
    record = _record(request)
    if isinstance(record, web.Response):
        return record
    problem = _model_error(request, record)
    if problem is not None:
        return problem
    what = request.match_info.get("what", "")
    if what == "ready":
        return web.Response(status=200)
    if what == "stats":
        return web.json_response({"model_stats": [model_stats(record)]})
    try:
        config = served_config(record)
    except tritonconfig.ConfigError as exc:
        return error(500, f"failed to load model '{record.model}': {exc}")
    if what == "config":
        return web.json_response(model_config(record, config))
    return web.json_response(model_metadata(record, config))


async def all_stats(request: web.Request) -> web.StreamResponse:
    record = _record(request)
    if isinstance(record, web.Response):
        return record
    return web.json_response({"model_stats": [model_stats(record)]})


async def repository_index(request: web.Request) -> web.StreamResponse:
    record = _record(request)
    if isinstance(record, web.Response):
        return record
    return web.json_response([{"name": record.model, "version": record.version, "state": "READY"}])


async def infer(request: web.Request) -> web.StreamResponse:
    record = _record(request)
    if isinstance(record, web.Response):
        return record
    problem = _model_error(request, record)
    if problem is not None:
        return problem
    body = await request.read()
    try:
        header, inputs = decode_request(body, request.headers.get(HEADER_LENGTH))
    except InferError as exc:
        return error(400, str(exc))
    outcome: queueing.Outcome = _simulator(request).infer(record)
    await asyncio.sleep(min(outcome.latency_seconds, MAX_DIRECT_DELAY_SECONDS))
    if outcome.reason == "REJECTED":
        return error(503, "Exceeds maximum queue size")
    if not outcome.ok:
        return error(500, f"model '{record.model}' version {record.version}: backend failure (simulated)")
    files = model_files(record)
    if files is None:
        outputs = identity_outputs(header, inputs)
    else:
        answered = await _run_model(record, files, header, inputs)
        if isinstance(answered, web.Response):
            return answered
        outputs = answered
    payload, headers = encode_response(record.model, record.version, header, outputs)
    return web.Response(body=payload, headers=headers)


@functools.cache
def runner() -> inference.Runner:
    """The process's model runner; imports torch on first use, so the simulator starts without it."""
    from vigil.sim import inference

    return inference.Runner()


async def _run_model(
    record: engine.PodRecord,
    files: models.ModelFiles,
    header: Mapping[str, Any],
    inputs: Sequence[tuple[dict[str, Any], bytes]],
) -> list[Output] | web.Response:
    """The repository model's answer, computed off the event loop, or Triton's error response."""
    try:
        model_runner = runner()
    except ImportError as exc:
        return error(
            500,
            f"failed to load model '{record.model}' version {record.version} from {files.model_file}: "
            f"the simulator needs torch to run it ({exc}); pip install 'vigil[golden]'",
        )
    requested = [str(out.get("name")) for out in header.get("outputs") or []]
    try:
        arrays = input_arrays(inputs)
        answers = await asyncio.to_thread(model_runner.run, files, arrays, record.settings.corruption, requested)
    except (InferError, models.ModelInputError) as exc:
        return error(400, str(exc))
    except (tritonconfig.ConfigError, RuntimeError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return error(500, f"failed to load model '{record.model}' version {record.version}: {first}")
    return [(name, datatype, list(array.shape), array.tobytes()) for name, datatype, array in answers]


def add_routes(app: web.Application) -> None:
    """Register every per-pod route; the app must hold the simulator under ``SIM_KEY``."""
    models = PREFIX + "/v2/models/{model}"
    versioned = models + "/versions/{version}"
    app.router.add_get(PREFIX + "/metrics", metrics)
    app.router.add_get(PREFIX + "/v2", server_metadata)
    app.router.add_get(PREFIX + "/v2/health/live", live)
    app.router.add_get(PREFIX + "/v2/health/ready", ready)
    # Before .../models/{model}: "stats" would otherwise be taken for a model name.
    app.router.add_get(PREFIX + "/v2/models/stats", all_stats)
    app.router.add_post(PREFIX + "/v2/repository/index", repository_index)
    for base in (models, versioned):
        app.router.add_get(base, model_endpoint)
        app.router.add_get(base + "/{what:ready|config|stats}", model_endpoint)
        app.router.add_post(base + "/infer", infer)
