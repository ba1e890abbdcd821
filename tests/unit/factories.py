"""Builders of API objects for state-in/state-out tests."""

from __future__ import annotations

from typing import Any

from vigil.api import modeldeployment as mdapi


def md(
    name: str = "resnet",
    version: str = "1",
    replicas: int = 2,
    generation: int = 1,
    status: mdapi.ModelDeploymentStatus | None = None,
    **spec: Any,
) -> mdapi.ModelDeployment:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "ml", "generation": generation, "uid": "uid-1"},
        "spec": {
            "model": {"name": "resnet50", "repository": "s3://models/resnet50", "version": version},
            "replicas": replicas,
            **spec,
        },
    }
    parsed = mdapi.ModelDeployment.model_validate(body)
    if status is not None:
        parsed.status = status
    return parsed
