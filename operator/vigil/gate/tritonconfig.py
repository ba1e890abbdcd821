"""A Triton model configuration (``config.pbtxt``): tensor names, datatypes and shapes.

``vigil golden`` reads it to learn a model's inputs and outputs, and the simulator reads it to serve
a model from a repository the way Triton would. The file is protobuf text format of Triton's
``ModelConfig`` message, so it is parsed with protobuf and the message class tritonclient ships
(``tritonclient[grpc]``, part of ``vigil[golden]``), never by hand. Both are imported only when a
configuration is read.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from vigil.gate import goldenset

CONFIG_FILE = "config.pbtxt"


class ConfigError(ValueError):
    """A configuration that cannot be read or used; the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class TensorConfig:
    name: str
    datatype: str
    """KServe v2 name (FP32, INT64, BYTES, ...), as in inference requests; config's TYPE_STRING is BYTES."""
    dims: tuple[int, ...]
    """Per-sample dimensions (without the batch dimension); -1 is variable."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str
    platform: str
    backend: str
    max_batch_size: int
    inputs: tuple[TensorConfig, ...]
    outputs: tuple[TensorConfig, ...]

    def shape(self, tensor: TensorConfig, batch: int = 1) -> list[int]:
        """The full request shape of ``tensor``: the batch dimension first when the model batches."""
        return ([batch] if self.max_batch_size > 0 else []) + list(tensor.dims)

    def accepts(self, tensor: TensorConfig, shape: list[int]) -> bool:
        """Whether a request tensor of ``shape`` fits ``tensor`` (-1 matches any size)."""
        if self.max_batch_size > 0:
            if not shape or not 1 <= shape[0] <= self.max_batch_size:
                return False
            shape = shape[1:]
        return len(shape) == len(tensor.dims) and all(d in (-1, s) for d, s in zip(tensor.dims, shape, strict=True))


def _message() -> Any:
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise ConfigError(
            f"reading a Triton model configuration needs protobuf and tritonclient[grpc] ({exc}): "
            "pip install 'vigil[golden]'"
        ) from None
    return text_format, model_config_pb2


def _tensor(entry: Any, type_name: str, where: str) -> TensorConfig:
    datatype = type_name.removeprefix("TYPE_")
    datatype = "BYTES" if datatype == "STRING" else datatype
    if datatype == "INVALID":
        raise ConfigError(f"{where} {entry.name!r} has no data_type")
    # With a reshape the model sees reshape.shape, but requests (what we build and check) carry dims.
    return TensorConfig(name=str(entry.name), datatype=datatype, dims=tuple(int(d) for d in entry.dims))


def parse(text: str, source: str = CONFIG_FILE) -> ModelConfig:
    """A ``config.pbtxt``'s text; ``source`` names it in errors."""
    text_format, model_config_pb2 = _message()
    message = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    data_type = model_config_pb2.DataType
    inputs = tuple(_tensor(entry, data_type.Name(entry.data_type), f"{source}: input") for entry in message.input)
    outputs = tuple(_tensor(entry, data_type.Name(entry.data_type), f"{source}: output") for entry in message.output)
    if not inputs or not outputs:
        raise ConfigError(f"{source}: declares no {'input' if not inputs else 'output'} tensors")
    return ModelConfig(
        name=str(message.name),
        platform=str(message.platform),
        backend=str(message.backend),
        max_batch_size=int(message.max_batch_size),
        inputs=inputs,
        outputs=outputs,
    )


def read(path: pathlib.Path) -> ModelConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse(text, str(path))


def tensor_specs(config: ModelConfig, batch: int = 1) -> tuple[list[goldenset.TensorSpec], list[TensorConfig]]:
    """Golden-set input specs for a batch, and the output configurations (whose shapes the model decides)."""
    specs = []
    for tensor in config.inputs:
        shape = config.shape(tensor, batch)
        if any(d < 0 for d in shape):
            raise ConfigError(
                f"input {tensor.name!r} has a variable dimension {shape}: give its shape explicitly (--input)"
            )
        try:
            goldenset.numpy_dtype(tensor.datatype)
        except goldenset.UnsupportedDatatypeError as exc:
            raise ConfigError(f"input {tensor.name!r}: {exc}") from None
        specs.append(goldenset.TensorSpec(name=tensor.name, datatype=tensor.datatype, shape=shape))
    return specs, list(config.outputs)
