"""The HTTP layer with aiohttp's test client: per-pod Triton endpoints and the control API."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator

import numpy as np
import pytest
from aiohttp import test_utils, web

from vigil.sim import cluster, engine, schema, server, triton
from vigil.sim import testing as simtest

POD = "/sim/ns/p0"
Client = test_utils.TestClient[web.Request, web.Application]


@pytest.fixture
def sim() -> engine.Simulator:
    pods = [simtest.pod("p0", model="resnet", version="3"), simtest.pod("p1", ready=False)]
    source = cluster.StaticSource(simtest.make_cluster(pods, [simtest.md_service("md")]))
    simulator = engine.Simulator(source, rng=np.random.default_rng(2))
    simulator.sync()
    return simulator


@pytest.fixture
async def client(sim: engine.Simulator) -> AsyncIterator[Client]:
    async with test_utils.TestClient(test_utils.TestServer(server.make_app(sim, tick=False))) as test_client:
        yield test_client


async def test_metrics_of_a_ready_pod(client: Client) -> None:
    response = await client.get(POD + "/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == triton.METRICS_CONTENT_TYPE
    text = await response.text()
    assert "# TYPE nv_inference_request_success counter" in text
    assert 'nv_inference_request_success{gpu_uuid="GPU-' in text
    assert 'model="resnet"' in text
    assert 'version="3"' in text


async def test_unknown_and_unready_pods_are_404(client: Client) -> None:
    for path in ("/sim/ns/nope/metrics", "/sim/ns/p1/metrics", "/sim/ns/p1/v2/health/ready"):
        response = await client.get(path)
        assert response.status == 404, path
        assert "error" in await response.json()


async def test_health_and_metadata(client: Client) -> None:
    assert (await client.get(POD + "/v2/health/live")).status == 200
    assert (await client.get(POD + "/v2/health/ready")).status == 200
    meta = await (await client.get(POD + "/v2")).json()
    assert meta["name"] == "triton"
    assert "binary_tensor_data" in meta["extensions"]
    model = await (await client.get(POD + "/v2/models/resnet")).json()
    assert model["name"] == "resnet"
    assert model["versions"] == ["3"]
    assert (await client.get(POD + "/v2/models/resnet/ready")).status == 200
    assert (await client.get(POD + "/v2/models/resnet/versions/3/ready")).status == 200
    versioned = await (await client.get(POD + "/v2/models/resnet/versions/3")).json()
    assert versioned == model


async def test_unknown_model_or_version(client: Client) -> None:
    for path in ("/v2/models/other", "/v2/models/other/ready", "/v2/models/resnet/versions/9/ready"):
        response = await client.get(POD + path)
        assert response.status == 400, path
        assert "unknown model" in (await response.json())["error"]


async def test_config_stats_and_repository_index(client: Client, sim: engine.Simulator) -> None:
    config = await (await client.get(POD + "/v2/models/resnet/config")).json()
    assert config["name"] == "resnet"
    assert config["instance_group"][0]["kind"] == "KIND_GPU"
    buckets = config["model_metrics"]["metric_control"][0]["histogram_options"]["buckets"]
    assert buckets == [100.0, 500.0, 2000.0, 5000.0]
    record = sim.record("ns", "p0")
    assert record is not None
    sim.infer(record)
    stats = await (await client.get(POD + "/v2/models/resnet/stats")).json()
    assert stats["model_stats"][0]["inference_stats"]["success"]["count"] == 1
    assert await (await client.get(POD + "/v2/models/stats")).json() == stats
    index = await (await client.post(POD + "/v2/repository/index", json={})).json()
    assert index == [{"name": "resnet", "version": "3", "state": "READY"}]


async def test_infer_json_round_trip_is_counted(client: Client, sim: engine.Simulator) -> None:
    body = {"id": "r1", "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 3], "data": [[1, 2, 3]]}]}
    response = await client.post(POD + "/v2/models/resnet/infer", json=body)
    assert response.status == 200
    result = await response.json()
    assert result["id"] == "r1"
    assert result["outputs"] == [{"name": "OUTPUT0", "datatype": "FP32", "shape": [1, 3], "data": [1.0, 2.0, 3.0]}]
    text = await (await client.get(POD + "/metrics")).text()
    assert "nv_inference_request_success{gpu_uuid=" in text
    assert sim.totals.direct == 1
    assert sim.totals.success == 1


async def test_infer_binary_round_trip(client: Client) -> None:
    data = np.arange(4, dtype=np.int32)
    header = json.dumps(
        {
            "inputs": [
                {"name": "X", "datatype": "INT32", "shape": [4], "parameters": {"binary_data_size": data.nbytes}},
                {"name": "S", "datatype": "BYTES", "shape": [2], "data": ["ab", "c"]},
            ],
            "outputs": [{"name": "Y", "parameters": {"binary_data": True}}, {"name": "T"}],
        }
    ).encode()
    response = await client.post(
        POD + "/v2/models/resnet/versions/3/infer",
        data=header + data.tobytes(),
        headers={triton.HEADER_LENGTH: str(len(header))},
    )
    assert response.status == 200
    raw = await response.read()
    size = int(response.headers[triton.HEADER_LENGTH])
    result = json.loads(raw[:size])
    assert result["outputs"][0]["parameters"] == {"binary_data_size": 16}
    assert np.frombuffer(raw[size:], dtype=np.int32).tolist() == [0, 1, 2, 3]
    assert result["outputs"][1]["data"] == ["ab", "c"]


@pytest.mark.parametrize(
    ("body", "header", "message"),
    [
        (b"{not json", None, "parse"),
        (b'{"inputs": []}', None, "no inputs"),
        (b'{"inputs": [{"name": "x", "datatype": "COMPLEX", "shape": [1], "data": [1]}]}', None, "unsupported"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}', None, "neither"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ["a"]}]}', None, "x"),
        (b"{}", "999", "does not fit"),
        (b"{}", "abc", "invalid"),
    ],
)
async def test_malformed_infer_requests_are_400(client: Client, body: bytes, header: str | None, message: str) -> None:
    headers = {triton.HEADER_LENGTH: header} if header else {}
    response = await client.post(POD + "/v2/models/resnet/infer", data=body, headers=headers)
    assert response.status == 400
    assert message in (await response.json())["error"]


async def test_short_binary_input_is_400(client: Client) -> None:
    header = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}]}'
    response = await client.post(
        POD + "/v2/models/resnet/infer", data=header + b"1234", headers={triton.HEADER_LENGTH: str(len(header))}
    )
    assert response.status == 400


async def test_faults_through_the_control_api_reach_the_pods(client: Client, sim: engine.Simulator) -> None:
    response = await client.post("/control/faults", json={"namespace": "ns", "name": "md", "errorRatio": 1.0})
    assert response.status == 200
    assert (await response.json())["fault"] == {"namespace": "ns", "name": "md", "version": None, "errorRatio": 1.0}
    body = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1], "data": [1]}]}
    failed = await client.post(POD + "/v2/models/resnet/infer", json=body)
    assert failed.status == 500
    text = await (await client.get(POD + "/metrics")).text()
    assert 'reason="BACKEND",version="3"} 1.0' in text

    await client.post("/control/faults", json={"namespace": "ns", "name": "md", "version": "3", "crash": True})
    for path in ("/metrics", "/v2/health/live", "/v2/health/ready", "/v2/models/resnet/ready"):
        assert (await client.get(POD + path)).status == 503, path
    listed = await (await client.get("/control/faults")).json()
    assert len(listed["faults"]) == 2

    cleared = await (await client.delete("/control/faults/ns/md/3")).json()
    assert cleared == {"cleared": ["ns/md@3"]}
    assert (await client.get(POD + "/v2/health/ready")).status == 200
    cleared = await (await client.delete("/control/faults/ns/md")).json()
    assert cleared == {"cleared": ["ns/md"]}
    assert sim.book.faults == {}


async def test_invalid_control_requests_are_400_with_details(client: Client) -> None:
    bad_fault = await client.post("/control/faults", json={"namespace": "ns", "name": "md", "errorRatio": 3})
    assert bad_fault.status == 400
    assert (await bad_fault.json())["details"][0]["loc"] == ["errorRatio"]
    bad_load = await client.post("/control/load", json={"namespace": "ns", "name": "md"})
    assert bad_load.status == 400
    bad_csv = await client.post("/control/load", json={"namespace": "ns", "name": "md", "csv": "a,b\n1,2\n"})
    assert bad_csv.status == 400
    assert "no column" in (await bad_csv.json())["error"]
    not_json = await client.post("/control/load", data=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status == 400


async def test_load_lifecycle_and_state(client: Client, sim: engine.Simulator) -> None:
    started = await client.post("/control/load", json={"namespace": "ns", "name": "md", "rate": 50})
    assert (await started.json())["load"]["kind"] == "poisson"
    for _ in range(10):
        sim.advance()
    state = await (await client.get("/control/state")).json()
    assert state["loads"][0]["sent"] > 0
    assert [pod["name"] for pod in state["pods"]] == ["p0"]
    assert state["totals"]["success"] > 0
    assert (await client.delete("/control/load/ns/md")).status == 200
    assert (await client.delete("/control/load/ns/md")).status == 404
    assert await (await client.get("/healthz")).json() == {"ok": True}


async def test_the_running_server_ticks_by_itself_and_stops_with_it(sim: engine.Simulator) -> None:
    sim.set_load(schema.LoadRequest(namespace="ns", name="md", rate=200))
    app = server.make_app(sim, tick=True)
    async with test_utils.TestClient(test_utils.TestServer(app)) as test_client:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while sim.totals.success == 0:
            assert loop.time() < deadline, "no tick within 10 s"
            await asyncio.sleep(0.02)
        assert (await test_client.get("/healthz")).status == 200
    stopped_at = sim.now
    await asyncio.sleep(3 * sim.tick_seconds)
    assert sim.now == stopped_at


def test_binary_string_helpers_round_trip() -> None:
    raw = triton._serialize_bytes(["héllo", b"\x00x"])
    assert raw[:4] == struct.pack("<I", 6)
    assert triton._deserialize_bytes(raw) == ["héllo", "\x00x"]


async def test_http_service_discovery_lists_served_pods(client: Client, sim: engine.Simulator) -> None:
    groups = await (await client.get("/sd/targets")).json()
    address = f"{client.host}:{client.port}"
    assert groups == [
        {
            "targets": [address],
            "labels": {
                "__metrics_path__": "/sim/ns/p0/metrics",
                "instance": "p0:8002",
                "namespace": "ns",
                "pod": "p0",
                "modeldeployment": "md",
                "revision": "r1",
                "model_version": "3",
            },
        }
    ]


async def test_serve_runs_until_stopped(sim: engine.Simulator) -> None:
    stop = asyncio.Event()
    urls: list[str] = []

    def started(url: str) -> None:
        urls.append(url)
        stop.set()

    await asyncio.wait_for(server.serve(sim, "127.0.0.1:0", started=started, stop=stop), timeout=10)
    assert urls[0].startswith("http://127.0.0.1:")
