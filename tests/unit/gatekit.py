"""A tiny KServe v2 server for the gate's tests, and golden sets to send to it.

Each pod lives under ``/pods/<pod>/`` and answers like Triton: ``.../versions/<v>/ready`` and
``.../infer`` with the binary tensor extension (the simulator's codec, so the real
``tritonclient.http.aio`` talks to it unchanged). Its model echoes each input as the output of
the same position, so a golden set whose references equal its inputs passes; a pod can be told
to add a perturbation, to drift like FP16, to be slow, to answer an HTTP error, or to have its
model not ready.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence

import numpy as np
from aiohttp import web

from vigil.gate import goldenset
from vigil.sim import triton as simtriton

MODEL = "resnet"
VERSION = "2"


@dataclasses.dataclass
class Pod:
    """How one pod's model behaves."""

    delta: float = 0.0
    """Added to every FP32 output element (a perturbed export)."""
    fp16: bool = False
    """Round every FP32 output through float16 (FP16 conversion drift)."""
    delay: float = 0.0
    status: int | None = None
    """Answer inferences with this HTTP status and an error."""
    ready: bool = True
    requests: int = 0


def _transform(pod: Pod, tensor: dict[str, object], raw: bytes) -> bytes:
    if tensor["datatype"] != "FP32":
        return raw
    values = np.frombuffer(raw, dtype="<f4").copy()
    if pod.fp16:
        values = values.astype(np.float16).astype(np.float32)
    values = values + np.float32(pod.delta)
    return values.astype("<f4").tobytes()


def lookup(pods: dict[str, Pod], name: str) -> Pod | None:
    """The pod's behaviour: by its name, else by a prefix of it (a revision's Deployment name)."""
    found = pods.get(name)
    if found is None:
        found = next((pod for prefix, pod in sorted(pods.items()) if name.startswith(prefix)), None)
    return found


def app(pods: dict[str, Pod]) -> web.Application:
    async def ready(request: web.Request) -> web.StreamResponse:
        pod = lookup(pods, request.match_info["pod"])
        if pod is None:
            return web.json_response({"error": "unknown"}, status=400)
        return web.Response(status=200 if pod.ready else 400)

    async def infer(request: web.Request) -> web.StreamResponse:
        pod = lookup(pods, request.match_info["pod"])
        if pod is None:
            return web.json_response({"error": "no such pod"}, status=404)
        pod.requests += 1
        await asyncio.sleep(pod.delay)
        if pod.status is not None:
            return web.json_response({"error": f"injected {pod.status}"}, status=pod.status)
        header, inputs = simtriton.decode_request(await request.read(), request.headers.get(simtriton.HEADER_LENGTH))
        changed = [(tensor, _transform(pod, tensor, raw)) for tensor, raw in inputs]
        body, headers = simtriton.encode_response(MODEL, VERSION, header, simtriton.identity_outputs(header, changed))
        return web.Response(body=body, headers=headers)

    application = web.Application()
    base = "/pods/{pod}/v2/models/{model}/versions/{version}"
    application.router.add_get(base + "/ready", ready)
    application.router.add_post(base + "/infer", infer)
    return application


async def serve(pods: dict[str, Pod]) -> AsyncIterator[str]:
    """Serve on a free loopback port; yields ``127.0.0.1:<port>``."""
    async for served in serve_app(app(pods)):
        yield served


async def serve_app(application: web.Application) -> AsyncIterator[str]:
    """Serve ``application`` on a free loopback port; yields ``127.0.0.1:<port>``."""
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"{host}:{port}"
    finally:
        await runner.cleanup()


def golden_set(
    count: int = 8,
    names: Sequence[tuple[str, str]] = (("INPUT__0", "OUTPUT__0"),),
    shape: Sequence[int] = (1, 10),
    atol: float = 1e-4,
    rtol: float = 1e-3,
    top_k: int | None = None,
    seed: int = 7,
) -> goldenset.GoldenSet:
    """References equal to the inputs (the echo model answers exactly)."""
    rng = np.random.default_rng(seed)
    inputs = [goldenset.TensorSpec(name=i, datatype="FP32", shape=list(shape)) for i, _ in names]
    outputs = [
        goldenset.OutputSpec(name=o, datatype="FP32", shape=list(shape), atol=atol, rtol=rtol, top_k=top_k)
        for _, o in names
    ]
    samples = []
    for _ in range(count):
        arrays = {i: rng.normal(size=shape).astype(np.float32) for i, _ in names}
        samples.append((arrays, {o: arrays[i] for i, o in names}))
    model = goldenset.ModelInfo(name=MODEL, version=VERSION, digest="sha256:" + "ab" * 32)
    return goldenset.GoldenSet.from_arrays(model, inputs, outputs, samples)
