"""Render one revision of a ModelDeployment into a Deployment running Triton, plus its Services.

Probes, ports and flags follow NVIDIA's own Helm chart: liveness on ``/v2/health/live``, readiness
and a generous startup probe on ``/v2/health/ready`` (model loading can take minutes), ports
http 8000 / grpc 8001 / metrics 8002 and Prometheus scrape annotations on the pods. GPUs are an
extended resource, so ``nvidia.com/gpu`` goes into limits only, and pods that ask for GPUs select
GPU nodes and tolerate their taint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vigil import api, labels
from vigil.api import modeldeployment
from vigil.render import revision as revisions

Manifest = dict[str, Any]

MANAGED_FLAGS = modeldeployment.MANAGED_FLAGS

TRITON_UID = 1000
"""The ``triton-server`` user of NVIDIA's tritonserver images."""
DEFAULT_POD_SECURITY: Manifest = {
    "runAsNonRoot": True,
    "runAsUser": TRITON_UID,
    "runAsGroup": TRITON_UID,
    "fsGroup": TRITON_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
DEFAULT_CONTAINER_SECURITY: Manifest = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
"""Defaults that meet the ``restricted`` Pod Security Standard; ``spec.triton.securityContext`` and
``podSecurityContext`` override them field by field (a field set there replaces vigil's)."""


@dataclasses.dataclass(frozen=True)
class Owner:
    """The ModelDeployment that owns rendered children (for owner references and names)."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> Manifest:
        return {
            "apiVersion": api.API_VERSION,
            "kind": modeldeployment.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def child_metadata(self, name: str | None = None, child_labels: Mapping[str, str] | None = None) -> Manifest:
        """Metadata of a child: named after the md unless told, in its namespace, owned by it."""
        return {
            "name": name or self.name,
            "namespace": self.namespace,
            "labels": dict(child_labels or {labels.MODEL_DEPLOYMENT: self.name, labels.MANAGED_BY: "vigil"}),
            "ownerReferences": [self.reference()],
        }


def selector_labels(md_name: str, revision: str | None = None) -> dict[str, str]:
    """Labels that select the pods of a deployment, or of one of its revisions."""
    selected = {labels.MODEL_DEPLOYMENT: md_name}
    if revision is not None:
        selected[labels.REVISION] = revision
    return selected


def pod_labels(md_name: str, revision: str, spec: modeldeployment.PodShape) -> dict[str, str]:
    return {
        **selector_labels(md_name, revision),
        labels.MODEL: spec.model.name,
        labels.MODEL_VERSION: spec.model.version,
        labels.NAME: "triton",
        labels.COMPONENT: "inference",
        labels.MANAGED_BY: "vigil",
    }


def triton_args(spec: modeldeployment.PodShape) -> list[str]:
    triton = spec.triton
    args = [
        f"--model-repository={spec.model.repository}",
        f"--model-control-mode={triton.model_control_mode}",
        "--strict-readiness=true",
        f"--http-port={labels.HTTP_PORT}",
        f"--grpc-port={labels.GRPC_PORT}",
        f"--metrics-port={labels.METRICS_PORT}",
        "--allow-metrics=true",
        f"--allow-gpu-metrics={'true' if triton.gpus > 0 else 'false'}",
        "--metrics-config=histogram_latencies=true",
    ]
    if triton.model_control_mode == "explicit":
        args.append(f"--load-model={spec.model.name}")
    return args + list(triton.args)


def _probe(path: str, period: int, failures: int) -> Manifest:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 3,
    }


def _resources(triton: modeldeployment.Triton) -> Manifest:
    requests = {"cpu": triton.cpu, "memory": triton.memory}
    limits: dict[str, str] = dict(requests)
    if triton.gpus > 0:
        limits[labels.GPU_RESOURCE] = str(triton.gpus)
    return {"requests": requests, "limits": limits}


def _tolerations(triton: modeldeployment.Triton) -> list[Manifest]:
    tolerations: list[Manifest] = []
    if triton.gpus > 0:
        tolerations.append({"key": labels.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    tolerations += [t.wire() for t in triton.tolerations]
    return tolerations


def _node_selector(triton: modeldeployment.Triton) -> dict[str, str]:
    selector = {labels.GPU_PRESENT: "true"} if triton.gpus > 0 else {}
    selector.update(triton.node_selector)
    return selector


def security_context(
    defaults: Manifest, overrides: modeldeployment.ContainerSecurityContext | modeldeployment.PodSecurityContext | None
) -> Manifest:
    """vigil's defaults with the fields the user set replacing them (whole values, not merged deeper)."""
    return {**defaults, **(overrides.wire() if overrides is not None else {})}


def pod_template(md_name: str, revision: str, spec: modeldeployment.PodShape) -> Manifest:
    triton = spec.triton
    container: Manifest = {
        "name": "triton",
        "image": triton.image,
        "command": ["tritonserver"],
        "args": triton_args(spec),
        "ports": [
            {"name": "http", "containerPort": labels.HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": labels.GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": labels.METRICS_PORT, "protocol": "TCP"},
        ],
        "resources": _resources(triton),
        "livenessProbe": _probe("/v2/health/live", 10, 3),
        "readinessProbe": _probe("/v2/health/ready", 5, 3),
        "startupProbe": _probe("/v2/health/ready", 10, max(1, triton.startup_timeout_seconds // 10)),
    }
    if triton.env:
        container["env"] = [e.wire() for e in triton.env]
    container["securityContext"] = security_context(DEFAULT_CONTAINER_SECURITY, triton.security_context)
    pod_spec: Manifest = {
        "containers": [container],
        "terminationGracePeriodSeconds": 30,
        "securityContext": security_context(DEFAULT_POD_SECURITY, triton.pod_security_context),
    }
    node_selector = _node_selector(triton)
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    tolerations = _tolerations(triton)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    return {
        "metadata": {
            "labels": pod_labels(md_name, revision, spec),
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(labels.METRICS_PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": pod_spec,
    }


def deployment(owner: Owner, revision: str, spec: modeldeployment.PodShape, replicas: int) -> Manifest:
    """The Deployment that runs one revision with an absolute replica count."""
    template = pod_template(owner.name, revision, spec)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": owner.child_metadata(revisions.workload_name(owner.name, revision), template["metadata"]["labels"]),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(owner.name, revision)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "progressDeadlineSeconds": spec.triton.startup_timeout_seconds + 60,
            "revisionHistoryLimit": 1,
            "template": template,
        },
    }


def _service_ports() -> list[Manifest]:
    return [
        {"name": "http", "port": labels.HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
        {"name": "grpc", "port": labels.GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"},
        {"name": "metrics", "port": labels.METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
    ]


def service(owner: Owner, serving_revision: str | None) -> Manifest:
    """The stable Service: selects the serving revision, or every revision when traffic is split."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": owner.child_metadata(),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner.name, serving_revision),
            "ports": _service_ports(),
        },
    }


def revision_service(owner: Owner, revision: str) -> Manifest:
    """A per-revision Service, the backend of weighted HTTPRoute rules."""
    manifest = service(owner, revision)
    manifest["metadata"]["name"] = revisions.workload_name(owner.name, revision)
    manifest["metadata"]["labels"][labels.REVISION] = revision
    return manifest
