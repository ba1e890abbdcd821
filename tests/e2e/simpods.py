"""Plain Deployments and Services carrying vigil's labels: Triton pods for the simulator without the operator.

The simulator plays every Ready pod labelled with a ModelDeployment name, and routes a load for
that name through the Service of the same name, so tests of the simulator itself need neither a
ModelDeployment nor a running operator.
"""

from __future__ import annotations

from typing import Any

import kubernetes.client

from vigil import labels


def deploy(kube: kubernetes.client.ApiClient, namespace: str, name: str, replicas: int, gpus: int = 1) -> None:
    """A Deployment of ``replicas`` Triton pods (``gpus`` each; 0: CPU only) and its Service ``name``."""
    pod_labels = {
        labels.MODEL_DEPLOYMENT: name,
        labels.REVISION: "e2e0",
        labels.MODEL: "resnet",
        labels.MODEL_VERSION: "1",
    }
    container: dict[str, Any] = {
        "name": "triton",
        "image": "nvcr.io/nvidia/tritonserver:25.01-py3",
        "ports": [
            {"name": "http", "containerPort": labels.HTTP_PORT},
            {"name": "metrics", "containerPort": labels.METRICS_PORT},
        ],
    }
    if gpus:
        container["resources"] = {"limits": {labels.GPU_RESOURCE: str(gpus)}}
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{name}-e2e0", "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": {"labels": pod_labels},
                # kwok's fake nodes may carry taints; the pods must land on them whatever they are.
                "spec": {"containers": [container], "tolerations": [{"operator": "Exists"}]},
            },
        },
    }
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {labels.MODEL_DEPLOYMENT: name}, "ports": [{"name": "http", "port": labels.HTTP_PORT}]},
    }
    apps: Any = kubernetes.client.AppsV1Api(kube)
    core: Any = kubernetes.client.CoreV1Api(kube)
    apps.create_namespaced_deployment(namespace, deployment)
    core.create_namespaced_service(namespace, service)


def ready_pods(kube: kubernetes.client.ApiClient, namespace: str, name: str) -> list[str]:
    core: Any = kubernetes.client.CoreV1Api(kube)
    pods = core.list_namespaced_pod(namespace, label_selector=f"{labels.MODEL_DEPLOYMENT}={name}")
    return [
        pod.metadata.name
        for pod in pods.items
        if any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
    ]
