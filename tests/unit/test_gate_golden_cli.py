"""``vigil golden``: torch models in, golden sets out (file, ConfigMap manifest), checked against a serving simulator."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import torch
import tritonclient.http
import yaml
from typer.testing import CliRunner

from tests.unit import goldenkit
from vigil import cli as vigil_cli
from vigil.gate import goldenset as gs
from vigil.sim import cluster, engine, schema, torchmodels
from vigil.sim import testing as simtest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FACTORY = "vigil.sim.torchmodels:two_in_two_out"
TWO_INPUTS = ("--input", "INPUT__0:FP32:2x8", "--input", "INPUT__1:INT64:2x8")


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("repo")
    torchmodels.export(torchmodels.small_cnn(seed=0), root, "cnn", "1")
    return root


def golden(*args: str) -> Any:
    return CliRunner().invoke(vigil_cli.app, ["golden", *args])


def made(*args: str, tmp_path: pathlib.Path) -> gs.GoldenSet:
    out = tmp_path / "golden.json"
    result = golden(*args, "--out", str(out))
    assert result.exit_code == 0, result.output
    return gs.GoldenSet.parse(out.read_text(encoding="utf-8"))


def test_a_repository_model_gives_its_name_version_config_and_file_digest(
    repository: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    model_file = repository / "cnn" / "1" / "model.pt"
    result = made(str(model_file), "--requests", "3", "--top-k", "3", "--atol", "1e-5", tmp_path=tmp_path)
    assert (result.model.name, result.model.version) == ("cnn", "1")
    assert result.model.digest == "sha256:" + hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert result.model.torch == torch.__version__
    assert result.model.created_at is not None
    assert [(s.name, s.datatype, s.shape) for s in result.inputs] == [("INPUT__0", "FP32", [1, 3, 16, 16])]
    (output,) = result.outputs
    assert (output.name, output.datatype, output.shape, output.top_k, output.atol, output.rtol) == (
        "OUTPUT__0",
        "FP32",
        [1, 10],
        3,
        1e-5,
        gs.DEFAULT_RTOL,
    )
    eager = torchmodels.small_cnn(seed=0)
    for request in result.requests:
        (image,) = result.input_arrays(request).values()
        with torch.no_grad():
            expected = eager(torch.from_numpy(image.copy())).numpy()
        assert np.allclose(result.reference_arrays(request)["OUTPUT__0"], expected, atol=1e-6)


def test_the_same_seed_gives_the_same_inputs_and_another_seed_other_ones(
    repository: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    model_file = str(repository / "cnn" / "1" / "model.pt")
    first = made(model_file, "--requests", "2", "--seed", "4", tmp_path=tmp_path / "a")
    again = made(model_file, "--requests", "2", "--seed", "4", tmp_path=tmp_path / "b")
    other = made(model_file, "--requests", "2", "--seed", "5", tmp_path=tmp_path / "c")
    assert first.requests == again.requests
    assert first.requests[0].inputs != other.requests[0].inputs


def test_a_factory_with_explicit_inputs_and_per_output_tolerances(tmp_path: pathlib.Path) -> None:
    result = made(
        FACTORY,
        "--factory-arg",
        "seed=3",
        *TWO_INPUTS,
        "--int-range",
        "0:2",
        "--requests",
        "4",
        "--atol",
        "OUTPUT__1=0",
        "--rtol",
        "OUTPUT__1=0",
        "--top-k",
        "OUTPUT__0=2",
        "--version",
        "7",
        tmp_path=tmp_path,
    )
    assert (result.model.name, result.model.version) == ("two_in_two_out", "7")
    assert result.model.digest.startswith("sha256:")
    scores, count = result.outputs
    assert (scores.name, scores.datatype, scores.shape, scores.top_k) == ("OUTPUT__0", "FP32", [2, 4], 2)
    assert (count.name, count.datatype, count.shape, count.atol, count.rtol, count.top_k) == (
        "OUTPUT__1",
        "INT64",
        [2, 1],
        0.0,
        0.0,
        None,
    )
    masks = [result.input_arrays(request)["INPUT__1"] for request in result.requests]
    assert {int(v) for mask in masks for v in mask.ravel()} <= {0, 1}
    again = made(FACTORY, "--factory-arg", "seed=3", *TWO_INPUTS, tmp_path=tmp_path / "again")
    other = made(FACTORY, "--factory-arg", "seed=4", *TWO_INPUTS, tmp_path=tmp_path / "other")
    assert result.model.digest == again.model.digest != other.model.digest, "the digest follows the weights"


def test_samples_from_npz_and_npy_files_and_shapes_from_a_triton_config(
    repository: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    images = np.random.default_rng(0).normal(size=(5, 2, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    np.savez(tmp_path / "images.npz", INPUT__0=images)
    config = repository / "cnn" / "config.pbtxt"
    scripted = tmp_path / "exported.pt"
    scripted.write_bytes((repository / "cnn" / "1" / "model.pt").read_bytes())
    for samples in ("images.npy", "images.npz"):
        result = made(
            str(scripted), "--triton-config", str(config), "--batch", "2", "--samples", str(tmp_path / samples),
            tmp_path=tmp_path / f"from-{samples}",
        )  # fmt: skip
        assert result.model.name == "cnn", "a given config names the model"
        assert len(result.requests) == 5
        assert np.array_equal(result.input_arrays(result.requests[4])["INPUT__0"], images[4])
        assert result.outputs[0].shape == [2, 10]
    single = made(
        str(scripted),
        "--input",
        "INPUT__0:FP32:2x3x16x16",
        "--samples",
        str(tmp_path / "images.npy"),
        tmp_path=tmp_path / "s",
    )
    assert single.model.name == "exported"
    assert single.model.version is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--requests", "1"], "give the inputs: --input NAME:DATATYPE:SHAPE"),
        (["--input", "INPUT__0:FP32"], "expected NAME:DATATYPE:SHAPE"),
        (["--input", "INPUT__0:FLOAT:1x2"], "unknown datatype 'FLOAT'"),
        (["--input", "INPUT__0:BYTES:1"], "BYTES tensors are not supported"),
        (["--input", "INPUT__0:FP32:1x-1"], "every dimension must be a fixed size"),
        (["--input", "INPUT__0:FP32:1x3x16"], "the model failed on request 0"),
        (
            ["--input", "INPUT__0:FP32:1x3x16x16", "--output", "A", "--output", "B"],
            "the model returns 1 outputs, 2 output names",
        ),
        (
            ["--input", "INPUT__0:FP32:1x3x16x16", "--top-k", "OUTPUT__0=11"],
            "topK 11 of output 'OUTPUT__0' exceeds its 10 classes",
        ),
        (["--input", "INPUT__0:FP32:1x3x16x16", "--atol", "NOPE=1"], "tolerances name outputs ['NOPE']"),
    ],
)
def test_bad_input_declarations_are_clear_errors(
    repository: pathlib.Path, tmp_path: pathlib.Path, args: list[str], message: str
) -> None:
    bare = tmp_path / "bare.pt"
    bare.write_bytes((repository / "cnn" / "1" / "model.pt").read_bytes())
    result = golden(str(bare), *args)
    assert result.exit_code == 1, result.output
    assert message in result.output


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("missing.pt", "no such file, and not an importable module:factory"),
        ("vigil.sim.torchmodels:nothing", "has no attribute 'nothing'"),
        ("builtins:dict", "returned dict, not a torch.nn.Module"),
    ],
)
def test_models_that_cannot_be_loaded_are_named(model: str, message: str, tmp_path: pathlib.Path) -> None:
    result = golden(model, "--input", "X:FP32:1", "--factory-arg", "seed=0")
    assert result.exit_code == 1
    assert message in result.output
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    assert "is not a TorchScript model" in golden(str(junk), "--input", "X:FP32:1").output


def test_usage_errors_name_the_option(repository: pathlib.Path) -> None:
    model_file = str(repository / "cnn" / "1" / "model.pt")
    assert "--int-range" in golden(model_file, "--int-range", "5:1").output
    assert "--atol" in golden(model_file, "--atol", "x").output
    assert "--top-k" in golden(model_file, "--top-k", "0").output
    assert "--factory-arg" in golden(model_file, "--factory-arg", "seed").output


def test_the_configmap_manifest_holds_the_set_and_past_one_mib_it_is_refused(
    repository: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    model_file = str(repository / "cnn" / "1" / "model.pt")
    manifest = tmp_path / "cm.yaml"
    result = golden(model_file, "--requests", "2", "--manifest", str(manifest), "--namespace", "models")
    assert result.exit_code == 0, result.output
    body = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    assert body["metadata"] == {
        "name": "cnn-golden",
        "namespace": "models",
        "labels": {"vigil.dev/golden-set": "cnn-golden"},
    }
    assert len(gs.GoldenSet.parse(body["data"]["golden.json"]).requests) == 2

    out = tmp_path / "big.json"
    big = golden(
        model_file,
        "--batch",
        "8",
        "--requests",
        "80",
        "--configmap",
        "big",
        "--manifest",
        str(tmp_path / "big.yaml"),
        "--out",
        str(out),
    )
    assert big.exit_code == 1
    assert "over the ConfigMap limit of 1048576 bytes" in big.output
    assert "fewer or smaller samples" in big.output
    assert not (tmp_path / "big.yaml").exists()
    assert len(gs.GoldenSet.parse(out.read_text(encoding="utf-8")).requests) == 80, "the file has no size limit"


def test_a_golden_set_written_into_the_model_repository_says_how_the_spec_names_it(
    repository: pathlib.Path,
) -> None:
    out = repository / "cnn" / "1" / "golden.json"
    result = golden(str(repository / "cnn" / "1" / "model.pt"), "--requests", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert len(gs.GoldenSet.parse(out.read_bytes()).requests) == 2
    assert f"in model cnn of repository {repository.resolve()}: spec.validation.goldenSet.path: 1/golden.json" in (
        result.output
    )


def test_without_an_output_option_the_set_goes_to_stdout(repository: pathlib.Path) -> None:
    result = CliRunner().invoke(
        vigil_cli.app, ["golden", str(repository / "cnn" / "1" / "model.pt"), "--requests", "1"]
    )
    assert result.exit_code == 0
    document = next(line for line in result.stdout.splitlines() if line.startswith("{"))
    assert json.loads(document)["format"] == gs.FORMAT


def test_a_golden_set_passes_against_the_simulator_serving_the_same_file_and_fails_on_a_quiet_fault(
    repository: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """The whole workflow on loopback: make the set from the export, serve the export, compare via tritonclient."""
    golden_set = made(str(repository / "cnn" / "1" / "model.pt"), "--requests", "4", "--top-k", "3", tmp_path=tmp_path)
    pod = simtest.pod("p", md="cnn", model="cnn", version="1", model_repository=str(repository))
    sim = engine.Simulator(cluster.StaticSource(simtest.make_cluster([pod], [simtest.md_service("cnn")])))

    def check(connection: tritonclient.http.InferenceServerClient) -> gs.Report:
        return gs.compare(golden_set, goldenkit.answers(golden_set, connection, version=golden_set.model.version))

    with (
        simtest.serving(sim) as (threaded, address),
        tritonclient.http.InferenceServerClient(url=f"{address}/sim/ns/p") as connection,
    ):
        assert check(connection).passed
        threaded.call(lambda: sim.set_fault(schema.FaultRequest(namespace="ns", name="cnn", input_scale=2.0)))
        report = check(connection)
    assert not report.passed
    assert "4/4 golden requests out of tolerance" in report.describe()


NO_TORCH = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
        return None

sys.meta_path.insert(0, NoTorch())
from vigil.cli import main
sys.argv = ["vigil", "golden", "model.pt"]
main()
"""


def test_without_torch_vigil_golden_says_which_extra_to_install() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    done = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1
    assert "pip install 'vigil[golden]'" in done.stderr
