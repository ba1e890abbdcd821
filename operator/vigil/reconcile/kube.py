"""Kubernetes I/O at the edge: reads of what runs, and server-side applies of what should.

The official ``kubernetes`` client is synchronous; every call goes through ``asyncio.to_thread``
so a slow API server never stalls kopf's event loop. Writes are server-side applies with the
field manager ``vigil`` (forced: vigil owns its children and the status of its resources), which
makes every write an absolute, idempotent statement of intent.

Whether the cluster serves the Gateway API decides how traffic is shifted (HTTPRoute weights or
replica ratios), so :meth:`Kube.has_gateway_api` asks discovery, and remembers the answer for a
minute: it is asked on every reconcile, and CRDs come and go far more rarely than that.

Reads come from the watch caches (:mod:`vigil.reconcile.watched`) once they are synced, so a
steady reconcile makes no request: the ModelDeployment, its Deployments, Services, pods, HTTPRoute,
Incidents and Runbook are all in memory. Two reads stay with the server on purpose: an Incident by
name (the step machine's record; exactly-once rests on reading it as the server has it), and any
object whose last write failed (it may or may not have landed). A child is applied only when the
watched object no longer carries what vigil would apply (or this process has not applied it yet,
so a new operator version re-states every child once); the answer of every write goes back into
the cache, so the next reconcile reads its own writes. The free GPU count is computed at most
once per ``FREE_GPUS_SECONDS`` for the whole fleet, from plain JSON.

Every write first calls :attr:`Kube.fence`, which raises when this replica no longer holds the
leader lease (see :mod:`vigil.reconcile.leader`): the check sits immediately before the side
effect, so a replica that lost its lease between deciding and writing writes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import datetime
import json
import socket
import time
import typing
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client import exceptions

from vigil import api, labels
from vigil.api import conditions as cond
from vigil.api import incident as incapi
from vigil.api import modeldeployment as mdapi
from vigil.diagnose import pods as podfacts
from vigil.reconcile import core, informer, watched
from vigil.render import route

APPLY = "application/apply-patch+yaml"
APPLY_QUERY = [("fieldManager", labels.FIELD_MANAGER), ("force", "true")]
REQUEST_TIMEOUT = 20
# Reconnect a few times at once (a restarted API server), but hand every HTTP answer, 429s included,
# straight back: urllib3 would otherwise sleep out Retry-After inside one of the few threads all API
# calls share. The work queue honours Retry-After instead (see ``informer.retry_after``).
RETRIES = urllib3.Retry(total=3, connect=3, read=0, status=0, backoff_factor=0.2, respect_retry_after_header=False)
DISCOVERY_CACHE_SECONDS = 60.0
FREE_GPUS_SECONDS = 5.0  # one fleet evaluation interval: a plan step never waits on a fresher count
AUTHORITATIVE = frozenset({incapi.PLURAL})  # read by name from the server, never from the cache
APPLIED_KINDS = {"Deployment": "deployments", "Service": "services", route.KIND: route.PLURAL}


class KubeError(RuntimeError):
    """An API call failed in a way the caller should retry later."""


def _unfenced() -> None:
    """The fence of a single replica (``--standalone``): it may always write."""


def load(kubeconfig: str | None, connections: int | None = None) -> client.ApiClient:
    """An ApiClient from a kubeconfig file, ``$KUBECONFIG``, or the in-cluster service account,
    keeping up to ``connections`` connections open (one per thread that calls it at once; beyond
    its pool urllib3 opens and drops a connection, a TLS handshake, per call)."""
    configuration = client.Configuration()
    configuration.retries = RETRIES
    if connections is not None:
        configuration.connection_pool_maxsize = connections
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
        return client.ApiClient(configuration)
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration)


@dataclasses.dataclass
class Kube:
    """The operator's handful of API calls, each async and bounded in time."""

    api_client: client.ApiClient
    fence: Callable[[], None] = _unfenced
    """Raises unless this replica may write now; called immediately before every write."""
    # False for a namespace-scoped operator: it reads nothing outside its namespaces (its RBAC
    # grants nothing cluster-wide), so cluster-wide facts such as free GPUs are unknown to it.
    cluster_scope: bool = True
    _gateway_api: tuple[float, bool] | None = dataclasses.field(default=None, init=False, repr=False)
    caches: watched.Caches | None = None
    """The watch caches reads come from once synced; None reads everything from the server."""
    _free_gpus: tuple[float, int] | None = dataclasses.field(default=None, init=False, repr=False)
    _applied: set[tuple[str, str, str]] = dataclasses.field(default_factory=set, init=False, repr=False)
    """(kind, namespace, name) of every child this process has applied at least once."""

    def _cached(self, plural: str) -> informer.Store | None:
        caches = self.caches
        if caches is None or not caches.synced(plural):
            return None  # not listed yet (or not allowed to list): the server answers
        return caches.store(plural)

    def _doubt(self, plural: str, key: tuple[str, str]) -> None:
        store = self.caches.store(plural) if self.caches is not None else None
        if store is not None:
            store.doubt(key)

    def _learn(self, plural: str, obj: Any) -> None:
        """The server's answer to a read or a write goes into the cache (it keeps the newer version)."""
        store = self.caches.store(plural) if self.caches is not None else None
        if store is not None and isinstance(obj, dict) and obj.get("metadata"):
            store.offer(obj, notify=False)

    def request(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """One API call as plain JSON (blocking: call it in a thread); a non-2xx answer raises
        ``ApiException`` (with the server's Status as its body), as the typed client's calls do.

        The typed ``CoreV1Api``/``AppsV1Api``/``CustomObjectsApi`` are not used: importing them loads
        megabytes of generated code and hundreds of model classes (25 MiB of RSS, from bytecode) for
        the dozen calls vigil makes, and their answers would be deserialised into models only to be
        turned back into dictionaries.
        """
        headers = {"Accept": "application/json", "Content-Type": content_type}
        verb, url, headers, payload, _ = self.api_client.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        answer = self.api_client.call_api(
            verb, url, header_params=headers, body=payload, _request_timeout=REQUEST_TIMEOUT
        )
        answer.read()  # type: ignore[no-untyped-call]
        if not 200 <= answer.status <= 299:
            raise exceptions.ApiException.from_response(http_resp=answer, body=None, data=None)
        return json.loads(answer.data) if answer.data else None

    @property
    def pod_deleter(self) -> _PodDeleter:
        """What :mod:`vigil.act.restart` deletes pods with."""
        return _PodDeleter(self)

    async def _ask(self, method: str, path: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self.request, method, path, **kwargs)

    async def _unless_missing(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer, or None when the object does not exist (404)."""
        try:
            return await self._ask(method, path, **kwargs)
        except exceptions.ApiException as error:
            if error.status == 404:
                return None
            raise

    async def get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        store = self._cached(plural)
        key = (namespace, name)
        if store is not None and plural not in AUTHORITATIVE and not store.doubtful(key):
            return store.get(key)  # a fresh copy
        found = await self._unless_missing("GET", _custom_path(plural, namespace, name))
        if found is not None:
            self._learn(plural, copy.deepcopy(found))
        return typing.cast(dict[str, Any] | None, found)

    async def list_custom(self, plural: str, namespace: str | None, selector: str = "") -> list[dict[str, Any]]:
        store = self._cached(plural)
        if store is not None and namespace is not None:
            wanted = dict(term.split("=", 1) for term in selector.split(",") if "=" in term)
            if len(wanted) == len([t for t in selector.split(",") if t]):  # equality terms only
                return store.matching(namespace, wanted)  # fresh copies
        query = [("labelSelector", selector)] if selector else []
        listed = await self._ask("GET", _custom_path(plural, namespace), query=query)
        return typing.cast(list[dict[str, Any]], typing.cast(dict[str, Any], listed).get("items", []))

    async def create_custom(self, plural: str, namespace: str, body: dict[str, Any]) -> None:
        self.fence()
        created = await self._ask(
            "POST", _custom_path(plural, namespace), query=[("fieldManager", labels.FIELD_MANAGER)], body=body
        )
        self._learn(plural, created)

    async def delete_custom(self, plural: str, namespace: str, name: str) -> None:
        self.fence()
        await self._unless_missing("DELETE", _custom_path(plural, namespace, name))

    async def observe(self, namespace: str, md_name: str) -> core.Observed:
        """The revision Deployments and the live pods (as plain facts, unjudged) of one ModelDeployment."""
        deployments, pods = self._cached(watched.DEPLOYMENTS.plural), self._cached(watched.PODS.plural)
        if deployments is not None and pods is not None:
            children, live = list(deployments.owned_by(namespace, md_name)), list(pods.owned_by(namespace, md_name))
        else:  # no caches (yet): ask the server, as plain JSON
            selector = [("labelSelector", f"{labels.MODEL_DEPLOYMENT}={md_name}")]
            base = f"/namespaces/{namespace}"
            listed = await asyncio.to_thread(
                informer.raw_get, self.api_client, f"/apis/apps/v1{base}/deployments", selector
            )
            children = listed.get("items") or []
            listed = await asyncio.to_thread(informer.raw_get, self.api_client, f"/api/v1{base}/pods", selector)
            live = listed.get("items") or []
        workloads: dict[str, core.Workload] = {}
        for item in children:
            found = workload_of(item)
            if found is not None:
                workloads[found.revision] = found
        facts = tuple(pod_facts(pod) for pod in live if _live(pod))
        http_route = await self.has_gateway_api() and await self._route_exists(namespace, md_name)
        return core.Observed(
            workloads=workloads, pods=facts, http_route=http_route, service=self.service_exists(namespace, md_name)
        )

    def service_exists(self, namespace: str, name: str) -> bool | None:
        """Whether Service ``name`` exists, from the watch cache; None when there is no cache.

        A doubtful entry (a write of it failed) still answers: doubt is about whether the content
        of a write landed, and a create that did land arrives by the watch in a moment.
        """
        store = self._cached(watched.SERVICES.plural)
        return None if store is None else store.has((namespace, name))

    async def has_gateway_api(self) -> bool:
        """Whether the API server serves ``gateway.networking.k8s.io/v1`` HTTPRoutes (cached a minute)."""
        cached = self._gateway_api
        if cached is not None and time.monotonic() - cached[0] < DISCOVERY_CACHE_SECONDS:
            return cached[1]
        found = await asyncio.to_thread(self.discover_httproutes)
        self._gateway_api = (time.monotonic(), found)
        return found

    def discover_httproutes(self) -> bool:
        """Whether HTTPRoutes are served, asked now (blocking)."""
        try:
            listed = self.request("GET", f"/apis/{route.GROUP}/{route.VERSION}")
        except exceptions.ApiException as error:
            if error.status == 404:
                return False
            raise
        return any(resource.get("name") == route.PLURAL for resource in (listed or {}).get("resources") or [])

    async def _route_exists(self, namespace: str, name: str) -> bool:
        routes = self._cached(route.PLURAL)
        if routes is not None and not routes.doubtful((namespace, name)):
            return routes.has((namespace, name))
        found = await self._unless_missing(
            "GET", f"/apis/{route.GROUP}/{route.VERSION}/namespaces/{namespace}/{route.PLURAL}/{name}"
        )
        return found is not None

    async def free_gpus(self) -> int | None:
        """Allocatable nvidia.com/gpu on schedulable nodes minus what placed, live pods hold.

        None (unknown) for a namespace-scoped operator: other namespaces' pods hold GPUs it cannot
        see, and a count without them would promise capacity that is not there. The act machine
        then leaves placement to the scheduler (:class:`vigil.act.machine.Capacity`).
        """
        if not self.cluster_scope:
            return None
        cached = self._free_gpus
        if cached is not None and time.monotonic() - cached[0] < FREE_GPUS_SECONDS:
            return cached[1]
        placed = [("fieldSelector", "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed")]
        nodes = await asyncio.to_thread(informer.raw_get, self.api_client, "/api/v1/nodes", [])
        pods = await asyncio.to_thread(informer.raw_get, self.api_client, "/api/v1/pods", placed)
        total = 0
        for node in nodes.get("items") or []:
            if (node.get("spec") or {}).get("unschedulable"):
                continue
            total += int(((node.get("status") or {}).get("allocatable") or {}).get(labels.GPU_RESOURCE, "0"))
        used = sum(_pod_gpus(pod) for pod in pods.get("items") or [])
        free = max(0, total - used)
        self._free_gpus = (time.monotonic(), free)
        return free

    async def apply(self, manifest: dict[str, Any]) -> None:
        """Server-side apply of a Deployment, Service or HTTPRoute (field manager vigil, forced), unless
        the watched object already carries all of it and this process applied it before."""
        meta = manifest["metadata"]
        kind = manifest["kind"]
        plural = APPLIED_KINDS.get(kind)
        key = (meta["namespace"], meta["name"])
        store = self._cached(plural) if plural is not None else None
        if store is not None and (kind, *key) in self._applied and not store.doubtful(key):
            live = store.get(key)
            if live is not None and informer.covers(live, manifest):
                return
        self.fence()
        try:
            answer = await self._apply(manifest, kind)
        except BaseException:
            if plural is not None:
                self._doubt(plural, key)
            raise
        self._applied.add((kind, *key))
        if plural is not None:
            self._learn(plural, answer)

    async def _apply(self, manifest: dict[str, Any], kind: str) -> Any:
        meta = manifest["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        if kind == route.KIND and manifest.get("apiVersion") == route.API_VERSION:
            path = f"/apis/{route.GROUP}/{route.VERSION}/namespaces/{namespace}/{route.PLURAL}/{name}"
        elif kind == "Deployment":
            path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
        elif kind == "Service":
            path = f"/api/v1/namespaces/{namespace}/services/{name}"
        else:
            raise ValueError(f"vigil does not apply {kind} objects")
        return await self._ask("PATCH", path, query=APPLY_QUERY, body=manifest, content_type=APPLY)

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """One key of a Secret, decoded; None when the Secret or the key does not exist.

        Needs ``get`` on ``secrets`` in ``namespace`` (a notify step's webhook URL lives there).
        """
        secret = await self._unless_missing("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        encoded = ((secret or {}).get("data") or {}).get(key)
        if encoded is None:
            return None
        return base64.b64decode(encoded).decode("utf-8", errors="replace")

    async def config_map_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The ``data`` of a ConfigMap (empty when it has none); None when it does not exist.

        Needs ``get`` on ``configmaps`` in ``namespace`` (the golden set of ``spec.validation``).
        """
        found = await self._unless_missing("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")
        if found is None:
            return None
        return {str(k): str(v) for k, v in (found.get("data") or {}).items()}

    async def delete_deployment(self, namespace: str, name: str) -> None:
        self.fence()
        await self._unless_missing("DELETE", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")

    async def apply_status(self, plural: str, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        body = {
            "apiVersion": api.API_VERSION,
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "status": status,
        }
        self.fence()
        try:
            written = await self._ask(
                "PATCH",
                _custom_path(plural, namespace, name) + "/status",
                query=APPLY_QUERY,
                body=body,
                content_type=APPLY,
            )
        except BaseException:
            self._doubt(plural, (namespace, name))  # it may have landed: the next read asks the server
            raise
        self._learn(plural, written)

    async def post_event(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event about one of vigil's objects (kopf's poster only works inside its handlers)."""
        meta = involved["metadata"]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        reference = {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        }
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {k: v for k, v in reference.items() if v is not None},
            "type": type_,
            "reason": reason[:128],
            "message": message[:1024],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": "vigil"},
            "reportingComponent": "vigil.dev/operator",
            "reportingInstance": socket.gethostname()[:128],
        }
        self.fence()
        await self._ask("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=event)

    async def apply_md_status(self, namespace: str, name: str, status: mdapi.ModelDeploymentStatus) -> None:
        await self.apply_status(mdapi.PLURAL, mdapi.KIND, namespace, name, status.wire())


@dataclasses.dataclass(frozen=True)
class _PodDeleter:
    """``delete_namespaced_pod`` (blocking) for :class:`vigil.act.restart.PodDeleter`."""

    kube: Kube

    def delete_namespaced_pod(self, name: str, namespace: str, **_: Any) -> Any:
        return self.kube.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}")


def _custom_path(plural: str, namespace: str | None, name: str | None = None) -> str:
    base = f"/apis/{api.GROUP}/{api.VERSION}"
    where = f"{base}/namespaces/{namespace}/{plural}" if namespace is not None else f"{base}/{plural}"
    return f"{where}/{name}" if name is not None else where


def api_message(error: exceptions.ApiException) -> str:
    """The API server's own explanation (a Status object's ``message``), else the raw body."""
    body = error.body.decode(errors="replace") if isinstance(error.body, bytes) else str(error.body or "")
    try:
        status = json.loads(body)
    except ValueError:
        return body[:300]
    return str(status.get("message", body[:300])) if isinstance(status, dict) else body[:300]


def reason(error: exceptions.ApiException) -> str:
    """The API server's machine-readable reason (``Forbidden``, ``Invalid``, ``Conflict``...)."""
    body = error.body.decode(errors="replace") if isinstance(error.body, bytes) else str(error.body or "")
    try:
        status = json.loads(body)
    except ValueError:
        status = None
    found = status.get("reason") if isinstance(status, dict) else None
    if isinstance(found, str) and found.isalnum():
        return found
    return "ServerError" if (error.status or 0) >= 500 else "ApiError"


def replica_failure(status: dict[str, Any] | None) -> str | None:
    """The message of a Deployment's ``ReplicaFailure`` condition (its ``status``, plain JSON), if True.

    The ReplicaSet controller sets it when the API server refuses the pods it creates (reason
    FailedCreate: Pod Security, a ResourceQuota, an admission webhook) and the Deployment
    controller copies it up; both clear it once a pod is created again.
    """
    for found in (status or {}).get("conditions") or []:
        if found.get("type") == "ReplicaFailure" and found.get("status") == "True":
            return str(found.get("message") or found.get("reason") or "pods cannot be created")
    return None


def _live(pod: dict[str, Any]) -> bool:
    return not (pod.get("metadata") or {}).get("deletionTimestamp") and pod.get("status") is not None


def workload_of(deployment: dict[str, Any]) -> core.Workload | None:
    """What one revision's Deployment (plain JSON) reports; None for one without a revision label."""
    revision = ((deployment.get("metadata") or {}).get("labels") or {}).get(labels.REVISION)
    if revision is None:
        return None
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    return core.Workload(
        revision=str(revision),
        replicas=int(spec.get("replicas") or 0),
        ready=int(status.get("readyReplicas") or 0),
        available=int(status.get("availableReplicas") or 0),
        refused=replica_failure(status),
    )


def _is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _pod_gpus(pod: dict[str, Any]) -> int:
    total = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        limits = (container.get("resources") or {}).get("limits") or {}
        total += int(limits.get(labels.GPU_RESOURCE, "0"))
    return total


def _container_facts(container: dict[str, Any]) -> podfacts.ContainerFacts:
    state = container.get("state") or {}
    current: dict[str, Any] = {}
    kind = podfacts.UNKNOWN
    for name in (podfacts.WAITING, podfacts.TERMINATED, podfacts.RUNNING):
        found = state.get(name)
        if found is not None:
            kind, current = name, found
            break
    last = (container.get("lastState") or {}).get("terminated")
    finished = last.get("finishedAt") if last is not None else None
    return podfacts.ContainerFacts(
        name=str(container.get("name")),
        ready=bool(container.get("ready")),
        restarts=int(container.get("restartCount") or 0),
        state=kind,
        reason=str(current.get("reason") or ""),
        message=str(current.get("message") or ""),
        exit_code=current.get("exitCode") if kind == podfacts.TERMINATED else None,
        last_reason=str(last.get("reason") or "") if last is not None else "",
        last_exit_code=last.get("exitCode") if last is not None else None,
        last_finished_at=cond.parse_time(finished) if finished else None,
    )


def pod_facts(pod: dict[str, Any]) -> podfacts.PodFacts:
    """What the API server says about ``pod`` (as JSON), copied without judging it."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    scheduled = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
    pending = scheduled is not None and scheduled.get("status") != "True"
    return podfacts.PodFacts(
        name=str(meta.get("name")),
        revision=(meta.get("labels") or {}).get(labels.REVISION),
        phase=str(status.get("phase") or ""),
        ready=_is_ready(pod),
        reason=str(status.get("reason") or ""),
        scheduled=None if scheduled is None else scheduled.get("status") == "True",
        schedule_reason=str(scheduled.get("reason") or "") if pending and scheduled is not None else "",
        schedule_message=str(scheduled.get("message") or "") if pending and scheduled is not None else "",
        gpus=_pod_gpus(pod),
        containers=tuple(_container_facts(c) for c in status.get("containerStatuses") or []),
        ip=str(status.get("podIP") or ""),
    )
