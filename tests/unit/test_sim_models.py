"""The simulator really infers: repository TorchScript models on CPU, reached with the real tritonclient.

Models are built here from seeds (``vigil.sim.torchmodels``), exported the way Triton's
pytorch_libtorch backend loads them, and served by pods whose ``--model-repository`` points at
the export. References come from running the same module with torch in the test, and are compared
with :mod:`vigil.gate.goldenset`, exactly as the operator's gate will.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
import tritonclient.http
import tritonclient.http.aio
import tritonclient.utils

from tests.unit import goldenkit
from vigil.gate import goldenset as gs
from vigil.sim import cluster, engine, models, schema, torchmodels
from vigil.sim import testing as simtest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ADDRESS_PREFIX = "/sim/ns/"


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("repo")
    torchmodels.export(torchmodels.small_cnn(seed=0), root, "cnn", "1")
    torchmodels.export(torchmodels.perturbed(torchmodels.small_cnn(seed=0), 0.05), root, "cnn", "2")
    torchmodels.export(torchmodels.two_in_two_out(seed=3), root, "two", "1")
    return root


def pods(repository: pathlib.Path) -> list[cluster.Pod]:
    repo = str(repository)
    return [
        simtest.pod("cnn-a", md="cnn", revision="r1", version="1", model="cnn", model_repository=repo),
        simtest.pod("cnn-b", md="cnn", revision="r2", version="2", model="cnn", model_repository=f"file://{repo}"),
        simtest.pod("two-a", md="two", revision="r1", version="1", model="two", model_repository=repo),
        simtest.pod("echo", md="echo", model="echo", model_repository="s3://bucket/models"),
    ]


@pytest.fixture
def sim(repository: pathlib.Path) -> engine.Simulator:
    services = [simtest.md_service("cnn"), simtest.md_service("two"), simtest.md_service("echo")]
    source = cluster.StaticSource(simtest.make_cluster(pods(repository), services))
    return engine.Simulator(source, rng=np.random.default_rng(7))


@pytest.fixture
def served(sim: engine.Simulator) -> Iterator[tuple[simtest.ThreadedServer, str]]:
    with simtest.serving(sim) as running:
        yield running


def client(address: str, pod: str) -> tritonclient.http.InferenceServerClient:
    return tritonclient.http.InferenceServerClient(url=f"{address}{ADDRESS_PREFIX}{pod}")


def images(count: int, seed: int = 0) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).normal(size=(count, 3, 16, 16)).astype(np.float32)


def cnn_golden(batch: int = 2, requests: int = 3, atol: float = 1e-5, rtol: float = 1e-5) -> gs.GoldenSet:
    module = torchmodels.small_cnn(seed=0)
    samples = []
    for index in range(requests):
        x = images(batch, seed=index)
        with torch.no_grad():
            y = module(torch.from_numpy(x)).numpy()
        samples.append(({"INPUT__0": x}, {"OUTPUT__0": y}))
    return gs.GoldenSet.from_arrays(
        gs.ModelInfo(name="cnn", version="1", digest=gs.digest(b"cnn-1")),
        [gs.TensorSpec(name="INPUT__0", datatype="FP32", shape=[batch, 3, 16, 16])],
        [gs.OutputSpec(name="OUTPUT__0", datatype="FP32", shape=[batch, 10], atol=atol, rtol=rtol, top_k=3)],
        samples,
    )


def test_a_repository_model_answers_what_torch_computes_binary_and_json(
    served: tuple[simtest.ThreadedServer, str],
) -> None:
    _, address = served
    golden = cnn_golden()
    with client(address, "cnn-a") as connection:
        for binary in (True, False):
            report = gs.compare(golden, goldenkit.answers(golden, connection, "cnn", binary=binary))
            assert report.passed, report.describe()
            assert report.outputs[0].max_abs_error < 1e-5
            assert report.outputs[0].top_k_agreement == 1.0


def test_model_metadata_and_config_describe_the_repository_model(served: tuple[simtest.ThreadedServer, str]) -> None:
    _, address = served
    with client(address, "two-a") as connection:
        assert connection.is_model_ready("two", "1")
        metadata = connection.get_model_metadata("two")
        assert metadata["platform"] == "pytorch_libtorch"
        assert metadata["inputs"] == [
            {"name": "INPUT__0", "datatype": "FP32", "shape": [-1, 8]},
            {"name": "INPUT__1", "datatype": "INT64", "shape": [-1, 8]},
        ]
        assert [o["name"] for o in metadata["outputs"]] == ["OUTPUT__0", "OUTPUT__1"]
        config = connection.get_model_config("two")
        assert (config["platform"], config["max_batch_size"]) == ("pytorch_libtorch", 8)
        assert config["input"][1] == {"name": "INPUT__1", "data_type": "TYPE_INT64", "dims": [8]}
    with client(address, "echo") as connection:
        assert connection.get_model_metadata("echo")["inputs"][0]["name"] == "INPUT0"


async def test_two_inputs_two_outputs_through_the_aio_client_in_any_input_order(
    served: tuple[simtest.ThreadedServer, str],
) -> None:
    _, address = served
    features = np.random.default_rng(1).normal(size=(3, 8)).astype(np.float32)
    mask = np.array([[1, 0] * 4, [1] * 8, [0] * 8], dtype=np.int64)
    with torch.no_grad():
        scores, count = torchmodels.two_in_two_out(seed=3)(torch.from_numpy(features), torch.from_numpy(mask))
    connection = tritonclient.http.aio.InferenceServerClient(url=f"{address}{ADDRESS_PREFIX}two-a")
    try:
        second = tritonclient.http.InferInput("INPUT__1", [3, 8], "INT64")
        second.set_data_from_numpy(mask)
        first = tritonclient.http.InferInput("INPUT__0", [3, 8], "FP32")
        first.set_data_from_numpy(features, binary_data=False)
        result = await connection.infer("two", [second, first], model_version="1")
        assert np.allclose(result.as_numpy("OUTPUT__0"), scores.numpy(), atol=1e-6)
        assert result.as_numpy("OUTPUT__1").dtype == np.int64
        assert np.array_equal(result.as_numpy("OUTPUT__1"), count.numpy())
        only = await connection.infer(
            "two", [first, second], outputs=[tritonclient.http.InferRequestedOutput("OUTPUT__1")]
        )
        assert only.as_numpy("OUTPUT__0") is None
        assert np.array_equal(only.as_numpy("OUTPUT__1"), count.numpy())
    finally:
        await connection.close()


def test_requests_that_do_not_fit_the_model_get_triton_style_400s(served: tuple[simtest.ThreadedServer, str]) -> None:
    _, address = served
    with client(address, "cnn-a") as connection:
        wrong_shape = tritonclient.http.InferInput("INPUT__0", [1, 3, 8, 8], "FP32")
        wrong_shape.set_data_from_numpy(np.zeros((1, 3, 8, 8), np.float32))
        with pytest.raises(tritonclient.utils.InferenceServerException, match="unexpected shape for input 'INPUT__0'"):
            connection.infer("cnn", [wrong_shape])
        too_big = tritonclient.http.InferInput("INPUT__0", [9, 3, 16, 16], "FP32")
        too_big.set_data_from_numpy(images(9))
        with pytest.raises(tritonclient.utils.InferenceServerException, match="unexpected shape"):
            connection.infer("cnn", [too_big])
        unknown = tritonclient.http.InferInput("IMAGE", [1, 3, 16, 16], "FP32")
        unknown.set_data_from_numpy(images(1))
        with pytest.raises(tritonclient.utils.InferenceServerException, match="unexpected inference input 'IMAGE'"):
            connection.infer("cnn", [unknown])
        right = tritonclient.http.InferInput("INPUT__0", [1, 3, 16, 16], "FP32")
        right.set_data_from_numpy(images(1))
        with pytest.raises(tritonclient.utils.InferenceServerException, match="unexpected inference output 'NOPE'"):
            connection.infer("cnn", [right], outputs=[tritonclient.http.InferRequestedOutput("NOPE")])


def test_a_bad_export_answers_200_with_wrong_numbers(served: tuple[simtest.ThreadedServer, str]) -> None:
    _, address = served
    golden = cnn_golden()
    with client(address, "cnn-b") as connection:
        report = gs.compare(golden, goldenkit.answers(golden, connection, "cnn"))
    assert not report.passed
    assert report.outputs[0].max_abs_error > 1e-2


def fault(threaded: simtest.ThreadedServer, sim: engine.Simulator, **fields: Any) -> None:
    request = schema.FaultRequest.model_validate({"namespace": "ns", "name": "cnn", "version": "1", **fields})
    threaded.call(lambda: sim.set_fault(request))


@pytest.mark.parametrize(
    "corruption",
    [{"weightNoise": 0.05}, {"inputScale": 255.0}, {"inputOffset": -0.5}],
    ids=["perturbed-weights", "unnormalised-input", "shifted-input"],
)
def test_quiet_faults_corrupt_answers_without_errors_until_cleared(
    served: tuple[simtest.ThreadedServer, str], sim: engine.Simulator, corruption: dict[str, Any]
) -> None:
    threaded, address = served
    golden = cnn_golden()
    fault(threaded, sim, **corruption)
    with client(address, "cnn-a") as connection:
        corrupted = gs.compare(golden, goldenkit.answers(golden, connection, "cnn"))
        assert not corrupted.passed, corrupted.describe()
        assert corrupted.requests == 3, "every request answered: the fault raises no error"
        threaded.call(lambda: sim.clear_faults("ns", "cnn", "1"))
        assert gs.compare(golden, goldenkit.answers(golden, connection, "cnn")).passed


def test_fp16_drift_passes_a_loose_tolerance_and_fails_a_tight_one(
    served: tuple[simtest.ThreadedServer, str], sim: engine.Simulator
) -> None:
    threaded, address = served
    golden = cnn_golden()
    fault(threaded, sim, precision="fp16")
    with client(address, "cnn-a") as connection:
        answers = goldenkit.answers(golden, connection, "cnn")
    loose = gs.compare(golden, answers, golden.tolerances(gs.ToleranceOverride(atol=0.1, rtol=1e-2)))
    tight = gs.compare(golden, answers, golden.tolerances(gs.ToleranceOverride(atol=1e-6, rtol=1e-6)))
    assert loose.passed, loose.describe()
    assert not tight.passed
    assert 0 < tight.outputs[0].max_abs_error < 0.1
    assert next(iter(answers.values()))["OUTPUT__0"].dtype == np.float32, "answers keep the declared datatype"


def test_faults_stay_with_their_version(served: tuple[simtest.ThreadedServer, str], sim: engine.Simulator) -> None:
    threaded, address = served
    threaded.call(lambda: sim.set_fault(schema.FaultRequest(namespace="ns", name="cnn", version="2", weight_noise=1.0)))
    golden = cnn_golden()
    with client(address, "cnn-a") as connection:
        assert gs.compare(golden, goldenkit.answers(golden, connection, "cnn")).passed


def test_a_re_exported_model_file_is_reloaded(tmp_path: pathlib.Path) -> None:
    torchmodels.export(torchmodels.small_cnn(seed=0), tmp_path, "cnn", "1")
    pod = simtest.pod("p", md="cnn", model="cnn", model_repository=str(tmp_path))
    sim = engine.Simulator(cluster.StaticSource(simtest.make_cluster([pod], [simtest.md_service("cnn")])))
    golden = cnn_golden(requests=1)
    with simtest.serving(sim) as (_, address), client(address, "p") as connection:
        assert gs.compare(golden, goldenkit.answers(golden, connection, "cnn")).passed
        torchmodels.export(torchmodels.small_cnn(seed=5), tmp_path, "cnn", "1")
        assert not gs.compare(golden, goldenkit.answers(golden, connection, "cnn")).passed


def test_requests_are_counted_per_revision_user_traffic_apart_from_direct_requests(
    served: tuple[simtest.ThreadedServer, str], sim: engine.Simulator
) -> None:
    threaded, address = served
    golden = cnn_golden(requests=2)
    with client(address, "cnn-b") as connection:
        goldenkit.answers(golden, connection, "cnn")
    counts = sim.requests_by_revision("ns", "cnn")
    assert (counts["r2"].direct, counts["r2"].user, counts["r2"].version) == (2, 0, "2")
    assert "r1" not in counts

    def users() -> None:
        sim.set_load(schema.LoadRequest(namespace="ns", name="cnn", rate=200.0))
        for _ in range(10):
            sim.advance(0.1)

    threaded.call(users)
    counts = sim.requests_by_revision("ns", "cnn")
    assert counts["r1"].user > 0
    assert counts["r2"].user > 0, "the Service selects both revisions"
    assert counts["r1"].user + counts["r2"].user == sim.loads[("ns", "cnn")].delivered
    wire = {(entry["name"], entry["revision"]): entry for entry in sim.state()["revisions"]}
    assert wire[("cnn", "r2")]["directRequests"] == 2
    assert wire[("cnn", "r1")]["userRequests"] == counts["r1"].user


def test_pods_of_a_revision_the_service_does_not_select_get_no_user_requests(repository: pathlib.Path) -> None:
    selected = simtest.md_service("cnn", revision="r1")
    sim = engine.Simulator(
        cluster.StaticSource(simtest.make_cluster(pods(repository), [selected])), rng=np.random.default_rng(1)
    )
    sim.set_load(schema.LoadRequest(namespace="ns", name="cnn", rate=100.0))
    for _ in range(10):
        sim.advance(0.1)
    counts = sim.requests_by_revision("ns", "cnn")
    assert counts["r1"].user > 0
    assert "r2" not in counts


def test_model_files_are_found_only_in_local_repositories(repository: pathlib.Path) -> None:
    assert models.local_repository("s3://bucket/m") is None
    assert models.local_repository("models/relative") is None
    assert models.local_repository(None) is None
    assert models.local_repository("file:///srv/my%20models") == pathlib.Path("/srv/my models")
    found = models.find(str(repository), "cnn", "1")
    assert found is not None
    assert found.model_file == repository / "cnn" / "1" / "model.pt"
    assert found.config_file == repository / "cnn" / "config.pbtxt"
    assert models.find(str(repository), "cnn", "9") is None
    assert models.find(str(repository), "other", "1") is None


def test_a_model_without_config_takes_inputs_in_request_order_and_names_outputs_like_triton(
    tmp_path: pathlib.Path,
) -> None:
    torchmodels.export(torchmodels.two_in_two_out(seed=3), tmp_path, "two", "1")
    (tmp_path / "two" / "config.pbtxt").unlink()
    pod = simtest.pod("p", md="two", model="two", model_repository=str(tmp_path))
    sim = engine.Simulator(cluster.StaticSource(simtest.make_cluster([pod], [simtest.md_service("two")])))
    features, mask = np.ones((1, 8), np.float32), np.ones((1, 8), np.int64)
    with simtest.serving(sim) as (_, address), client(address, "p") as connection:
        first = tritonclient.http.InferInput("features", [1, 8], "FP32")
        first.set_data_from_numpy(features)
        second = tritonclient.http.InferInput("mask", [1, 8], "INT64")
        second.set_data_from_numpy(mask)
        result = connection.infer("two", [first, second])
        assert result.get_response()["outputs"][1]["name"] == "OUTPUT__1"
        assert result.as_numpy("OUTPUT__0").shape == (1, 4)
        with pytest.raises(tritonclient.utils.InferenceServerException, match="the model rejected the inputs"):
            connection.infer("two", [second, first])


NO_TORCH = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'")
        return None

sys.meta_path.insert(0, NoTorch())
import numpy as np, tritonclient.http, tritonclient.utils
from vigil.sim import cli, cluster, engine, server
from vigil.sim import testing as simtest

pods = [
    simtest.pod("model", md="cnn", model="cnn", model_repository=sys.argv[1]),
    simtest.pod("echo", md="echo", model="echo"),
]
sim = engine.Simulator(cluster.StaticSource(simtest.make_cluster(pods)))
with simtest.serving(sim) as (_, address):
    tensor = tritonclient.http.InferInput("INPUT__0", [1, 3, 16, 16], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3, 16, 16), np.float32))
    with tritonclient.http.InferenceServerClient(url=address + "/sim/ns/echo") as echo:
        assert echo.infer("echo", [tensor]).as_numpy("INPUT__0") is None
        assert echo.infer("echo", [tensor]).as_numpy("OUTPUT0").shape == (1, 3, 16, 16)
    with tritonclient.http.InferenceServerClient(url=address + "/sim/ns/model") as model:
        assert model.get_model_metadata("cnn")["platform"] == "pytorch_libtorch"
        try:
            model.infer("cnn", [tensor])
        except tritonclient.utils.InferenceServerException as exc:
            print(exc.message())
assert "torch" not in sys.modules
"""


def test_the_simulator_starts_and_serves_without_torch_and_says_what_a_model_needs(repository: pathlib.Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(repository)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "the simulator needs torch to run it" in done.stdout
    assert "pip install 'vigil[golden]'" in done.stdout
