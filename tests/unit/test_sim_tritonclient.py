"""The real tritonclient (sync and aio) against a simulator on 127.0.0.1, pods addressed by URL prefix."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http
import tritonclient.http.aio
import tritonclient.utils

from vigil.sim import cluster, engine, schema
from vigil.sim import testing as simtest


@pytest.fixture
def sim() -> engine.Simulator:
    pods = [simtest.pod("p0", model="resnet", version="3", gpus=2)]
    source = cluster.StaticSource(simtest.make_cluster(pods, [simtest.md_service("md")]))
    return engine.Simulator(source, rng=np.random.default_rng(4))


@pytest.fixture
def served(sim: engine.Simulator) -> Iterator[tuple[simtest.ThreadedServer, str]]:
    with simtest.serving(sim) as running:
        yield running


def pod_client(address: str, pod: str = "p0") -> tritonclient.http.InferenceServerClient:
    return tritonclient.http.InferenceServerClient(url=f"{address}/sim/ns/{pod}")


def fp32_input(values: list[float]) -> tritonclient.http.InferInput:
    tensor = tritonclient.http.InferInput("INPUT0", [1, len(values)], "FP32")
    tensor.set_data_from_numpy(np.array([values], dtype=np.float32))
    return tensor


def test_health_metadata_and_repository(served: tuple[simtest.ThreadedServer, str]) -> None:
    _, address = served
    with pod_client(address) as client:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("resnet")
        assert client.is_model_ready("resnet", "3")
        assert not client.is_model_ready("resnet", "4")
        assert not client.is_model_ready("other")
        assert client.get_server_metadata()["name"] == "triton"
        metadata = client.get_model_metadata("resnet")
        assert metadata["versions"] == ["3"]
        assert metadata["inputs"][0]["name"] == "INPUT0"
        assert client.get_model_config("resnet")["max_batch_size"] > 0
        assert client.get_model_repository_index() == [{"name": "resnet", "version": "3", "state": "READY"}]


def test_infer_binary_and_json_outputs(served: tuple[simtest.ThreadedServer, str], sim: engine.Simulator) -> None:
    _, address = served
    with pod_client(address) as client:
        result = client.infer("resnet", [fp32_input([1.0, 2.0, 3.0])])
        output = result.as_numpy("OUTPUT0")
        assert output is not None
        assert output.tolist() == [[1.0, 2.0, 3.0]]
        requested = [tritonclient.http.InferRequestedOutput("OUTPUT0", binary_data=False)]
        tensor = tritonclient.http.InferInput("INPUT0", [2], "FP32")
        tensor.set_data_from_numpy(np.array([4.0, 5.0], dtype=np.float32), binary_data=False)
        json_result = client.infer("resnet", [tensor], model_version="3", outputs=requested)
        json_output = json_result.as_numpy("OUTPUT0")
        assert json_output is not None
        assert json_output.tolist() == [4.0, 5.0]
        stats = client.get_inference_statistics("resnet")
        assert stats["model_stats"][0]["inference_stats"]["success"]["count"] == 2
    assert sim.totals.direct == 2


def test_failures_surface_as_inference_server_exceptions(
    served: tuple[simtest.ThreadedServer, str], sim: engine.Simulator
) -> None:
    threaded, address = served
    threaded.call(lambda: sim.set_fault(schema.FaultRequest(namespace="ns", name="md", error_ratio=1.0)))
    with pod_client(address) as client:
        with pytest.raises(tritonclient.utils.InferenceServerException, match="backend failure"):
            client.infer("resnet", [fp32_input([1.0])])
        with pytest.raises(tritonclient.utils.InferenceServerException, match="unknown model"):
            client.get_model_metadata("other")
    threaded.call(lambda: sim.set_fault(schema.FaultRequest(namespace="ns", name="md", crash=True)))
    with pod_client(address) as client:
        assert not client.is_server_live()
        assert not client.is_server_ready()
    with pod_client(address, pod="missing") as client:
        assert not client.is_server_ready()


async def test_aio_client_with_the_same_prefix(served: tuple[simtest.ThreadedServer, str]) -> None:
    _, address = served
    client = tritonclient.http.aio.InferenceServerClient(url=f"{address}/sim/ns/p0")
    try:
        assert await client.is_server_ready()
        assert await client.is_model_ready("resnet")
        result = await client.infer("resnet", [fp32_input([7.0])])
        output = result.as_numpy("OUTPUT0")
        assert output is not None
        assert output.tolist() == [[7.0]]
    finally:
        await client.close()
