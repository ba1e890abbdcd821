"""Label, annotation and port names shared by rendering, the simulator, Prometheus and the operator.

Triton's metrics carry no revision, so the pod labels do: Prometheus relabelling copies them onto
every scraped series, which is how SLIs are computed per revision.
"""

from __future__ import annotations

PREFIX = "vigil.dev"
MODEL_DEPLOYMENT = f"{PREFIX}/modeldeployment"
REVISION = f"{PREFIX}/revision"
MODEL = f"{PREFIX}/model"
MODEL_VERSION = f"{PREFIX}/model-version"
COMPONENT = "app.kubernetes.io/component"
MANAGED_BY = "app.kubernetes.io/managed-by"
NAME = "app.kubernetes.io/name"
FIELD_MANAGER = "vigil"

# Label names on Prometheus series after relabelling (see vigil.dev.prometheus).
PROM_NAMESPACE = "namespace"
PROM_DEPLOYMENT = "modeldeployment"
PROM_REVISION = "revision"
PROM_POD = "pod"

HTTP_PORT = 8000
GRPC_PORT = 8001
METRICS_PORT = 8002

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRESENT = "nvidia.com/gpu.present"
GPU_PRODUCT = "nvidia.com/gpu.product"
