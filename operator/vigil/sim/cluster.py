"""Plain snapshots of the cluster objects the simulator reacts to, and where they come from.

The simulator only needs a handful of facts: which pods are Ready and what their labels say,
which pods each Service selects, how an HTTPRoute weights its backends, and which model a
ModelDeployment serves. Parsing raw API objects (camelCase dicts, as the API server sends them)
into frozen dataclasses keeps routing and the tick model pure, and lets tests build a cluster by
hand. ``ClusterSource`` is the seam: the Kubernetes watcher implements it in production, a static
source in tests.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from vigil import labels

Key = tuple[str, str]
"""(namespace, name)."""

ROUTE_GROUP = "gateway.networking.k8s.io"
ROUTE_VERSION = "v1"
ROUTE_PLURAL = "httproutes"
MD_GROUP = labels.PREFIX
MD_VERSION = "v1alpha1"
MD_PLURAL = "modeldeployments"


@dataclasses.dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    uid: str
    labels: Mapping[str, str]
    ready: bool
    deleting: bool = False
    gpus: int = 1
    restarts: int = 0
    ip: str | None = None
    model_repository: str | None = None
    """Triton's ``--model-repository`` from the container arguments: where the pod loads its model from."""

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    @property
    def deployment(self) -> str | None:
        return self.labels.get(labels.MODEL_DEPLOYMENT)

    @property
    def served(self) -> bool:
        """A pod the simulator plays: a vigil Triton pod that is Ready and not going away."""
        return self.ready and not self.deleting and self.deployment is not None

    @property
    def incarnation(self) -> str:
        """Identity of the Triton process: a new uid or a container restart starts from zero."""
        return f"{self.uid}/{self.restarts}"


@dataclasses.dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    selector: Mapping[str, str] | None


@dataclasses.dataclass(frozen=True)
class PathMatch:
    """One HTTPRoute match; requests carry no headers or query parameters the route could test."""

    path_type: str = "PathPrefix"
    path: str = "/"
    method: str | None = None
    needs_headers_or_query: bool = False


@dataclasses.dataclass(frozen=True)
class BackendRef:
    namespace: str
    name: str
    weight: int = 1
    group: str = ""
    kind: str = "Service"


@dataclasses.dataclass(frozen=True)
class RouteRule:
    matches: tuple[PathMatch, ...]
    backends: tuple[BackendRef, ...]


@dataclasses.dataclass(frozen=True)
class Route:
    namespace: str
    name: str
    rules: tuple[RouteRule, ...]


@dataclasses.dataclass(frozen=True)
class ModelDeploymentInfo:
    namespace: str
    name: str
    model: str | None
    version: str | None


@dataclasses.dataclass(frozen=True)
class Cluster:
    pods: tuple[Pod, ...] = ()
    services: Mapping[Key, Service] = dataclasses.field(default_factory=dict)
    routes: Mapping[Key, Route] = dataclasses.field(default_factory=dict)
    deployments: Mapping[Key, ModelDeploymentInfo] = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def _by_label(self) -> dict[tuple[str, str, str], list[Pod]]:
        # Built once per snapshot: every loaded deployment resolves its Service on every tick, and
        # scanning every pod each time grew with loads x pods (a fleet of 1,000 pods).
        index: dict[tuple[str, str, str], list[Pod]] = {}
        for pod in self.pods:
            for key, value in pod.labels.items():
                index.setdefault((pod.namespace, key, value), []).append(pod)
        return index

    @functools.cached_property
    def _by_key(self) -> dict[Key, Pod]:
        return {pod.key: pod for pod in self.pods}

    def pod(self, namespace: str, name: str) -> Pod | None:
        return self._by_key.get((namespace, name))

    def selected(self, namespace: str, selector: Mapping[str, str]) -> list[Pod]:
        """Pods of ``namespace`` carrying every label of a non-empty ``selector`` (snapshot order)."""
        if not selector:
            return []
        candidates = [self._by_label.get((namespace, key, value), []) for key, value in selector.items()]
        fewest = min(candidates, key=len)
        return [pod for pod in fewest if all(pod.labels.get(key) == value for key, value in selector.items())]


def model_identity(pod: Pod, cluster: Cluster) -> tuple[str, str]:
    """The (model, version) a pod serves: its labels first, then its ModelDeployment's spec.

    Pod labels win because during a rollout old and new revisions serve different versions while
    the ModelDeployment spec names only the newest.
    """
    md = cluster.deployments.get((pod.namespace, pod.deployment or ""))
    model = pod.labels.get(labels.MODEL) or (md.model if md else None) or pod.deployment or "model"
    version = pod.labels.get(labels.MODEL_VERSION) or (md.version if md else None) or "1"
    return model, version


class ClusterSource(Protocol):
    """Where pods come from: anything that can hand out the latest snapshot."""

    def snapshot(self) -> Cluster: ...


class StaticSource:
    """A cluster set by hand (tests, demos); ``set`` replaces it atomically."""

    def __init__(self, cluster: Cluster | None = None) -> None:
        self._lock = threading.Lock()
        self._cluster = cluster or Cluster()

    def snapshot(self) -> Cluster:
        with self._lock:
            return self._cluster

    def set(self, cluster: Cluster) -> None:
        with self._lock:
            self._cluster = cluster


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _pod_gpus(spec: Mapping[str, Any]) -> int:
    total = 0
    for container in spec.get("containers") or ():
        limits = (container.get("resources") or {}).get("limits") or {}
        raw = limits.get(labels.GPU_RESOURCE)
        if raw is not None:
            try:
                total += int(str(raw))
            except ValueError:
                continue
    return total


REPOSITORY_FLAGS = ("--model-repository", "--model-store")


def _model_repository(spec: Mapping[str, Any]) -> str | None:
    """The last ``--model-repository`` (or its alias ``--model-store``) of any container, as tritonserver reads it."""
    found: str | None = None
    for container in spec.get("containers") or ():
        argv = [str(arg) for arg in (container.get("command") or [])] + [
            str(arg) for arg in (container.get("args") or [])
        ]
        for index, arg in enumerate(argv):
            flag, sep, value = arg.partition("=")
            if flag not in REPOSITORY_FLAGS:
                continue
            if sep:
                found = value
            elif index + 1 < len(argv):
                found = argv[index + 1]
    return found


def pod_from_dict(obj: Mapping[str, Any]) -> Pod:
    meta = _meta(obj)
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    ready = any(cond.get("type") == "Ready" and cond.get("status") == "True" for cond in status.get("conditions") or ())
    restarts = sum(int(cs.get("restartCount") or 0) for cs in status.get("containerStatuses") or ())
    return Pod(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        labels=_str_map(meta.get("labels")),
        ready=ready and status.get("phase", "Running") == "Running",
        deleting=meta.get("deletionTimestamp") is not None,
        gpus=_pod_gpus(spec),
        restarts=restarts,
        ip=str(status["podIP"]) if status.get("podIP") else None,
        model_repository=_model_repository(spec),
    )


def service_from_dict(obj: Mapping[str, Any]) -> Service:
    meta = _meta(obj)
    selector = (obj.get("spec") or {}).get("selector")
    return Service(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        selector=_str_map(selector) if isinstance(selector, Mapping) else None,
    )


def _path_match(raw: Mapping[str, Any]) -> PathMatch:
    path = raw.get("path") or {}
    return PathMatch(
        path_type=str(path.get("type") or "PathPrefix"),
        path=str(path.get("value") or "/"),
        method=str(raw["method"]) if raw.get("method") else None,
        needs_headers_or_query=bool(raw.get("headers") or raw.get("queryParams")),
    )


def route_from_dict(obj: Mapping[str, Any]) -> Route:
    meta = _meta(obj)
    namespace = str(meta.get("namespace") or "default")
    rules: list[RouteRule] = []
    for rule in (obj.get("spec") or {}).get("rules") or ():
        matches = tuple(_path_match(m) for m in rule.get("matches") or ())
        backends = tuple(
            BackendRef(
                namespace=str(ref.get("namespace") or namespace),
                name=str(ref.get("name") or ""),
                weight=int(ref["weight"]) if ref.get("weight") is not None else 1,
                group=str(ref.get("group") or ""),
                kind=str(ref.get("kind") or "Service"),
            )
            for ref in rule.get("backendRefs") or ()
        )
        rules.append(RouteRule(matches=matches, backends=backends))
    return Route(namespace=namespace, name=str(meta.get("name") or ""), rules=tuple(rules))


def deployment_from_dict(obj: Mapping[str, Any]) -> ModelDeploymentInfo:
    meta = _meta(obj)
    model = ((obj.get("spec") or {}).get("model")) or {}
    return ModelDeploymentInfo(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        model=str(model["name"]) if model.get("name") else None,
        version=str(model["version"]) if model.get("version") else None,
    )
