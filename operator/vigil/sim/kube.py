"""The production ``ClusterSource``: list-then-watch informers for pods, Services, HTTPRoutes and
ModelDeployments, one thread each.

The official Kubernetes client is synchronous, so each kind runs in a daemon thread: list (raw
JSON, parsed by the pure functions in ``cluster``), then watch from the list's resourceVersion
for at most ``resync_seconds``, then list again. The periodic re-list makes the view self-healing
after missed events, expired resourceVersions (410) or API server restarts. Kinds whose CRD is
not installed (HTTPRoute without the Gateway API, ModelDeployment before ``vigil crds``) are
simply empty and looked for again at the next resync.

``snapshot()`` assembles an immutable ``Cluster`` from the stores and caches it until something
changes, so the simulator's ticks do not pay for unchanged clusters.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import kubernetes.client
import kubernetes.config
import kubernetes.watch

from vigil.sim import cluster

LOG = logging.getLogger(__name__)
DEFAULT_RESYNC_SECONDS = 30.0
RETRY_SECONDS = 2.0
T = TypeVar("T")


def api_client(kubeconfig: str | None = None, context: str | None = None) -> kubernetes.client.ApiClient:
    """An ApiClient from a kubeconfig file (default: $KUBECONFIG or ~/.kube/config), else in-cluster."""
    try:
        client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context
        )
        return client
    except kubernetes.config.ConfigException:
        if kubeconfig is not None:
            raise
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return kubernetes.client.ApiClient(configuration)


@dataclasses.dataclass
class _Store(Generic[T]):
    """Objects of one kind by (namespace, name); ``changed`` is called on every change."""

    parse: Callable[[Mapping[str, Any]], T]
    changed: Callable[[], None]
    items: dict[cluster.Key, T] = dataclasses.field(default_factory=dict)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @staticmethod
    def key(raw: Mapping[str, Any]) -> cluster.Key:
        meta = raw.get("metadata") or {}
        return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))

    def replace(self, raws: list[Mapping[str, Any]]) -> None:
        fresh = {self.key(raw): self.parse(raw) for raw in raws}
        with self.lock:
            self.items = fresh
        self.changed()

    def put(self, raw: Mapping[str, Any]) -> None:
        with self.lock:
            self.items[self.key(raw)] = self.parse(raw)
        self.changed()

    def delete(self, raw: Mapping[str, Any]) -> None:
        with self.lock:
            self.items.pop(self.key(raw), None)
        self.changed()

    def values(self) -> list[T]:
        with self.lock:
            return list(self.items.values())


class _Informer(threading.Thread, Generic[T]):
    """List, then watch until the resync timeout, forever; errors back off and re-list."""

    def __init__(
        self,
        kind: str,
        list_call: Callable[..., Any],
        store: _Store[T],
        stop: threading.Event,
        resync_seconds: float,
    ) -> None:
        super().__init__(name=f"vigil-sim-{kind}", daemon=True)
        self.kind = kind
        self.list_call = list_call
        self.store = store
        self.stop_event = stop
        self.resync_seconds = resync_seconds
        self.synced = threading.Event()
        self._lock = threading.Lock()
        self._response: Any = None

    def halt(self) -> None:
        """Unblock a watch waiting for events (its socket is shut down); call after setting the stop event.

        A watch still connecting is not held yet: it finds the stop event set once connected and shuts
        itself (the lock orders the two), so it cannot read on until the resync timeout.
        """
        with self._lock:
            response = self._response
        if response is not None:
            _shut(response)

    def _connect(self, **kwargs: Any) -> Any:
        """The watch's request: the response is held for :meth:`halt`, or shut at once after a stop."""
        response = self.list_call(**kwargs)
        with self._lock:
            self._response = response
            stopped = self.stop_event.is_set()
        if stopped:
            _shut(response)
        return response

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self._list_and_watch()
            except kubernetes.client.ApiException as exc:
                if self.stop_event.is_set():
                    return
                if exc.status == 404:
                    # The kind is not served (CRD not installed yet): empty until the next resync.
                    self.store.replace([])
                    self.synced.set()
                    self.stop_event.wait(self.resync_seconds)
                    continue
                if exc.status != 410:
                    LOG.warning("%s: API error %s, re-listing: %s", self.kind, exc.status, exc.reason)
                    self.stop_event.wait(RETRY_SECONDS)
            except Exception as exc:  # any transport error: back off and re-list
                if self.stop_event.is_set():
                    return  # stop() shut the watch's socket down
                LOG.warning("%s: watch failed, re-listing: %s", self.kind, exc)
                self.stop_event.wait(RETRY_SECONDS)

    def _list_and_watch(self) -> None:
        response = self.list_call(_preload_content=False, _request_timeout=self.resync_seconds)
        listed = json.loads(response.data)
        self.store.replace(list(listed.get("items") or []))
        self.synced.set()
        version = (listed.get("metadata") or {}).get("resourceVersion")
        # "object" keeps events as plain dicts (no model classes) and still lets the client
        # recognise 410 Gone, which we answer by re-listing.
        watch = kubernetes.watch.Watch(return_type="object")  # type: ignore[no-untyped-call]
        try:
            for event in watch.stream(  # type: ignore[no-untyped-call]
                self._connect,
                resource_version=version,
                timeout_seconds=max(1, int(self.resync_seconds)),
                _request_timeout=self.resync_seconds + 10,
            ):
                if self.stop_event.is_set():
                    return
                kind, raw = event.get("type"), event.get("raw_object")
                if not isinstance(raw, Mapping):
                    continue
                if kind in ("ADDED", "MODIFIED"):
                    self.store.put(raw)
                elif kind == "DELETED":
                    self.store.delete(raw)
                elif kind == "ERROR":
                    return
        finally:
            with self._lock:
                self._response = None


def _shut(response: Any) -> None:
    """Shut a streaming response's socket: close() alone does not wake a thread blocked reading it."""
    sock = getattr(getattr(response, "connection", None), "sock", None)
    try:
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
        response.close()
    except OSError:  # already broken: the reading thread is ending anyway
        LOG.debug("closing a watch failed", exc_info=True)


class KubeSource:
    """Cluster snapshots kept current from the API server."""

    def __init__(self, client: kubernetes.client.ApiClient, resync_seconds: float = DEFAULT_RESYNC_SECONDS) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._version = 0
        self._cached: tuple[int, cluster.Cluster] | None = None
        core = kubernetes.client.CoreV1Api(client)
        custom = kubernetes.client.CustomObjectsApi(client)
        self.pods = _Store(cluster.pod_from_dict, self._changed)
        self.services = _Store(cluster.service_from_dict, self._changed)
        self.routes = _Store(cluster.route_from_dict, self._changed)
        self.deployments = _Store(cluster.deployment_from_dict, self._changed)

        def custom_list(group: str, version: str, plural: str) -> Callable[..., Any]:
            def call(**kwargs: Any) -> Any:
                return custom.list_cluster_custom_object(group, version, plural, **kwargs)

            return call

        self.informers: list[_Informer[Any]] = [
            _Informer("pods", core.list_pod_for_all_namespaces, self.pods, self._stop, resync_seconds),
            _Informer("services", core.list_service_for_all_namespaces, self.services, self._stop, resync_seconds),
            _Informer(
                "httproutes",
                custom_list(cluster.ROUTE_GROUP, cluster.ROUTE_VERSION, cluster.ROUTE_PLURAL),
                self.routes,
                self._stop,
                resync_seconds,
            ),
            _Informer(
                "modeldeployments",
                custom_list(cluster.MD_GROUP, cluster.MD_VERSION, cluster.MD_PLURAL),
                self.deployments,
                self._stop,
                resync_seconds,
            ),
        ]

    def _changed(self) -> None:
        with self._lock:
            self._version += 1

    def start(self) -> None:
        for informer in self.informers:
            informer.start()

    def wait_synced(self, timeout: float) -> bool:
        """True once every kind has been listed (or found absent) at least once."""
        return all(informer.synced.wait(timeout) for informer in self.informers)

    def stop(self, timeout: float = 5.0) -> None:
        """End the informer threads: interrupt their watches and wait for them, at most ``timeout``.

        The threads are daemons, so one stuck in a slow list call cannot hold the process.
        """
        self._stop.set()
        for informer in self.informers:
            informer.halt()
        for informer in self.informers:
            if informer.is_alive():
                informer.join(timeout)

    def snapshot(self) -> cluster.Cluster:
        with self._lock:
            version = self._version
            if self._cached is not None and self._cached[0] == version:
                return self._cached[1]
        snapshot = cluster.Cluster(
            pods=tuple(sorted(self.pods.values(), key=lambda pod: pod.key)),
            services={(s.namespace, s.name): s for s in self.services.values()},
            routes={(r.namespace, r.name): r for r in self.routes.values()},
            deployments={(d.namespace, d.name): d for d in self.deployments.values()},
        )
        with self._lock:
            self._cached = (version, snapshot)
        return snapshot
