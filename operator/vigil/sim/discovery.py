"""Prometheus HTTP service discovery (``http_sd_configs``) of the simulated Triton pods.

The sandbox's Prometheus is meant to discover pods with ``kubernetes_sd_configs``, as production
does, and rewrite each scrape to ``/sim/<namespace>/<pod>/metrics`` here. Distribution builds of
Prometheus may lack the Kubernetes discoverer (Debian's 2.42 rejects ``kubernetes_sd_configs``),
but all have HTTP discovery; the simulator knows exactly the pods a kubernetes_sd relabelling
would keep (Ready, Running, labelled with a ModelDeployment), so it can be the discoverer:
``GET /sd/targets`` lists one target group per pod, carrying the same labels the relabelling
would copy (namespace, pod, modeldeployment, revision, model_version) and the pod's own
``instance`` name. A crashed pod stays listed, so its failing scrape shows as ``up == 0``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vigil import labels
from vigil.sim import engine, triton

MODEL_VERSION_LABEL = "model_version"


def targets(simulator: engine.Simulator, address: str) -> list[dict[str, Any]]:
    """Target groups for every served pod, scraped at ``address`` (the simulator's host:port)."""
    groups: list[dict[str, Any]] = []
    for (namespace, name), record in sorted(simulator.records.items()):
        pod = record.pod
        if not pod.served:
            continue
        groups.append(
            {
                "targets": [address],
                "labels": {
                    "__metrics_path__": f"/sim/{namespace}/{name}/metrics",
                    "instance": f"{pod.ip or name}:{labels.METRICS_PORT}",
                    labels.PROM_NAMESPACE: namespace,
                    labels.PROM_POD: name,
                    labels.PROM_DEPLOYMENT: record.deployment,
                    labels.PROM_REVISION: pod.labels.get(labels.REVISION, ""),
                    MODEL_VERSION_LABEL: pod.labels.get(labels.MODEL_VERSION, ""),
                },
            }
        )
    return groups


async def http_sd(request: web.Request) -> web.StreamResponse:
    # The address Prometheus used to reach us is the one it can scrape.
    return web.json_response(targets(request.app[triton.SIM_KEY], request.host))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/sd/targets", http_sd)
