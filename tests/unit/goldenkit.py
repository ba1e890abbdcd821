"""Sending a golden set's requests with the real tritonclient, as the gate does (here synchronously)."""

from __future__ import annotations

from typing import Any

import tritonclient.http

from vigil.gate import goldenset as gs


def answers(
    golden: gs.GoldenSet,
    connection: tritonclient.http.InferenceServerClient,
    model: str | None = None,
    version: str | None = None,
    binary: bool = True,
) -> dict[str, dict[str, Any]]:
    """Every golden request sent to one server: its outputs (numpy) per request id, ready for ``gs.compare``."""
    served: dict[str, dict[str, Any]] = {}
    for request in golden.requests:
        inputs = []
        for spec, array in zip(golden.inputs, golden.input_arrays(request).values(), strict=True):
            tensor = tritonclient.http.InferInput(spec.name, list(array.shape), spec.datatype)
            tensor.set_data_from_numpy(array, binary_data=binary)
            inputs.append(tensor)
        wanted = [tritonclient.http.InferRequestedOutput(spec.name, binary_data=binary) for spec in golden.outputs]
        result = connection.infer(model or golden.model.name, inputs, model_version=version or "", outputs=wanted)
        served[request.id] = {spec.name: result.as_numpy(spec.name) for spec in golden.outputs}
    return served
