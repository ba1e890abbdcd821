"""Reading Triton's config.pbtxt (protobuf text format) into tensor names, datatypes and shapes."""

from __future__ import annotations

import pathlib

import pytest

from vigil.gate import tritonconfig

CONFIG = """
name: "resnet"
platform: "pytorch_libtorch"
max_batch_size: 4
input [
  { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 3, 32, 32 ] },
  { name: "INPUT__1" data_type: TYPE_INT64 dims: [ -1 ] }
]
output [ { name: "OUTPUT__0" data_type: TYPE_FP16 dims: [ 10 ] reshape: { shape: [ 2, 5 ] } } ]
"""


def test_tensors_and_batching_are_read_with_v2_datatype_names() -> None:
    config = tritonconfig.parse(CONFIG)
    assert (config.name, config.platform, config.max_batch_size) == ("resnet", "pytorch_libtorch", 4)
    assert config.inputs == (
        tritonconfig.TensorConfig("INPUT__0", "FP32", (3, 32, 32)),
        tritonconfig.TensorConfig("INPUT__1", "INT64", (-1,)),
    )
    assert config.outputs == (tritonconfig.TensorConfig("OUTPUT__0", "FP16", (10,)),), "requests carry dims"
    assert config.shape(config.inputs[0], batch=2) == [2, 3, 32, 32]


def test_shapes_are_accepted_within_the_batch_limit_and_wildcards() -> None:
    config = tritonconfig.parse(CONFIG)
    image, tokens = config.inputs
    assert config.accepts(image, [4, 3, 32, 32])
    assert not config.accepts(image, [5, 3, 32, 32])
    assert not config.accepts(image, [3, 32, 32])
    assert not config.accepts(image, [1, 3, 32, 31])
    assert config.accepts(tokens, [1, 77])
    assert not config.accepts(tokens, [])
    unbatched = tritonconfig.parse(CONFIG.replace("max_batch_size: 4", "max_batch_size: 0"))
    assert unbatched.accepts(unbatched.inputs[0], [3, 32, 32])
    assert unbatched.shape(unbatched.inputs[0]) == [3, 32, 32]


def test_golden_input_specs_need_fixed_shapes() -> None:
    config = tritonconfig.parse(CONFIG.replace("dims: [ -1 ]", "dims: [ 7 ]"))
    specs, outputs = tritonconfig.tensor_specs(config, batch=2)
    assert [(s.name, s.datatype, s.shape) for s in specs] == [
        ("INPUT__0", "FP32", [2, 3, 32, 32]),
        ("INPUT__1", "INT64", [2, 7]),
    ]
    assert [o.name for o in outputs] == ["OUTPUT__0"]
    with pytest.raises(tritonconfig.ConfigError, match=r"input 'INPUT__1' has a variable dimension \[1, -1\]"):
        tritonconfig.tensor_specs(tritonconfig.parse(CONFIG))


def test_string_tensors_are_bytes_which_golden_sets_refuse() -> None:
    config = tritonconfig.parse(CONFIG.replace("TYPE_INT64 dims: [ -1 ]", "TYPE_STRING dims: [ 1 ]"))
    assert config.inputs[1].datatype == "BYTES"
    with pytest.raises(tritonconfig.ConfigError, match=r"input 'INPUT__1': .*BYTES tensors are not supported"):
        tritonconfig.tensor_specs(config)


def test_errors_name_the_file(tmp_path: pathlib.Path) -> None:
    broken = tmp_path / "config.pbtxt"
    broken.write_text('name: "x"\ninput [ { name: "a" data_type: TYPE_NOPE } ]\n', encoding="utf-8")
    with pytest.raises(tritonconfig.ConfigError, match=rf"^{broken}:"):
        tritonconfig.read(broken)
    with pytest.raises(tritonconfig.ConfigError, match="cannot read"):
        tritonconfig.read(tmp_path / "missing.pbtxt")
    with pytest.raises(tritonconfig.ConfigError, match="declares no output tensors"):
        tritonconfig.parse('input [ { name: "a" data_type: TYPE_FP32 dims: [1] } ]')
    with pytest.raises(tritonconfig.ConfigError, match="input 'a' has no data_type"):
        tritonconfig.parse('input [ { name: "a" dims: [1] } ] output [ { name: "b" data_type: TYPE_FP32 dims: [1] } ]')
