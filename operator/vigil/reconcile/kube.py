"""Kubernetes I/O at the edge: reads of what runs, and server-side applies of what should.

The official ``kubernetes`` client is synchronous; every call goes through ``asyncio.to_thread``
so a slow API server never stalls kopf's event loop. Writes are server-side applies with the
field manager ``vigil`` (forced: vigil owns its children and the status of its resources), which
makes every write an absolute, idempotent statement of intent.

Whether the cluster serves the Gateway API decides how traffic is shifted (HTTPRoute weights or
replica ratios), so :meth:`Kube.has_gateway_api` asks discovery, and remembers the answer for a
minute: it is asked on every reconcile, and CRDs come and go far more rarely than that.

Every write first calls :attr:`Kube.fence`, which raises when this replica no longer holds the
leader lease (see :mod:`vigil.reconcile.leader`): the check sits immediately before the side
effect, so a replica that lost its lease between deciding and writing writes nothing.
"""

from __future__ import annotations

import asyncio
import base64
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
from vigil.api import modeldeployment as mdapi
from vigil.diagnose import pods as podfacts
from vigil.reconcile import core
from vigil.render import route

APPLY = "application/apply-patch+yaml"
REQUEST_TIMEOUT = 20
# Reconnect a few times at once (a restarted API server), but hand every HTTP answer, 429s included,
# straight back: urllib3 would otherwise sleep out Retry-After inside one of the few threads all API
# calls share. The work queue honours Retry-After instead (see ``retry_after``).
RETRIES = urllib3.Retry(total=3, connect=3, read=0, status=0, backoff_factor=0.2, respect_retry_after_header=False)
DISCOVERY_CACHE_SECONDS = 60.0


class KubeError(RuntimeError):
    """An API call failed in a way the caller should retry later."""


def _unfenced() -> None:
    """The fence of a single replica (``--standalone``): it may always write."""


def load(kubeconfig: str | None) -> client.ApiClient:
    """An ApiClient from a kubeconfig file, ``$KUBECONFIG``, or the in-cluster service account."""
    configuration = client.Configuration()
    configuration.retries = RETRIES
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
    _status_versions: dict[tuple[str, str, str], str] = dataclasses.field(default_factory=dict, init=False, repr=False)
    """(plural, namespace, name) -> the resourceVersion vigil's last status write of it produced."""

    def wrote_status(self, plural: str, key: tuple[str, str], version: str) -> bool:
        """Whether ``version`` of the object is the one vigil's own last status write produced
        (its watch event is an echo, not news)."""
        return self._status_versions.get((plural, *key)) == version

    def forget_status(self, plural: str, key: tuple[str, str]) -> None:
        self._status_versions.pop((plural, *key), None)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api_client)

    @property
    def core_v1(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api_client)

    async def get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = await _unless_missing(
            self.custom.get_namespaced_custom_object, api.GROUP, api.VERSION, namespace, plural, name
        )
        return typing.cast(dict[str, Any] | None, found)

    async def list_custom(self, plural: str, namespace: str | None, selector: str = "") -> list[dict[str, Any]]:
        if namespace is None:
            listed = await asyncio.to_thread(
                self.custom.list_cluster_custom_object,
                api.GROUP,
                api.VERSION,
                plural,
                label_selector=selector,
                _request_timeout=REQUEST_TIMEOUT,
            )
        else:
            listed = await asyncio.to_thread(
                self.custom.list_namespaced_custom_object,
                api.GROUP,
                api.VERSION,
                namespace,
                plural,
                label_selector=selector,
                _request_timeout=REQUEST_TIMEOUT,
            )
        return typing.cast(list[dict[str, Any]], typing.cast(dict[str, Any], listed).get("items", []))

    async def create_custom(self, plural: str, namespace: str, body: dict[str, Any]) -> None:
        self.fence()
        await asyncio.to_thread(
            self.custom.create_namespaced_custom_object,
            api.GROUP,
            api.VERSION,
            namespace,
            plural,
            body,
            field_manager=labels.FIELD_MANAGER,
            _request_timeout=REQUEST_TIMEOUT,
        )

    async def delete_custom(self, plural: str, namespace: str, name: str) -> None:
        self.fence()
        await _unless_missing(
            self.custom.delete_namespaced_custom_object, api.GROUP, api.VERSION, namespace, plural, name
        )

    async def observe(self, namespace: str, md_name: str) -> core.Observed:
        """The revision Deployments and the live pods (as plain facts, unjudged) of one ModelDeployment."""
        selector = f"{labels.MODEL_DEPLOYMENT}={md_name}"
        deployments = await asyncio.to_thread(
            self.apps.list_namespaced_deployment, namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT
        )
        pods = await asyncio.to_thread(
            self.core_v1.list_namespaced_pod, namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT
        )
        workloads: dict[str, core.Workload] = {}
        for item in deployments.items:
            revision = ((item.metadata.labels if item.metadata else None) or {}).get(labels.REVISION)
            if revision is None:
                continue
            st = item.status
            workloads[revision] = core.Workload(
                revision=revision,
                replicas=(item.spec.replicas or 0) if item.spec else 0,
                ready=(st.ready_replicas or 0) if st else 0,
                available=(st.available_replicas or 0) if st else 0,
            )
        facts = tuple(pod_facts(pod) for pod in pods.items if _live(pod))
        http_route = await self.has_gateway_api() and await self._route_exists(namespace, md_name)
        return core.Observed(workloads=workloads, pods=facts, http_route=http_route)

    async def has_gateway_api(self) -> bool:
        """Whether the API server serves ``gateway.networking.k8s.io/v1`` HTTPRoutes (cached a minute)."""
        cached = self._gateway_api
        if cached is not None and time.monotonic() - cached[0] < DISCOVERY_CACHE_SECONDS:
            return cached[1]
        found = await asyncio.to_thread(self._discover_httproutes)
        self._gateway_api = (time.monotonic(), found)
        return found

    def _discover_httproutes(self) -> bool:
        try:
            listed = self.custom.get_api_resources(route.GROUP, route.VERSION, _request_timeout=REQUEST_TIMEOUT)
        except exceptions.ApiException as error:
            if error.status == 404:
                return False
            raise
        return any(resource.name == route.PLURAL for resource in listed.resources or [])

    async def _route_exists(self, namespace: str, name: str) -> bool:
        try:
            await asyncio.to_thread(
                self.custom.get_namespaced_custom_object,
                route.GROUP,
                route.VERSION,
                namespace,
                route.PLURAL,
                name,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except exceptions.ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    async def free_gpus(self) -> int | None:
        """Allocatable nvidia.com/gpu on schedulable nodes minus what placed, live pods hold.

        None (unknown) for a namespace-scoped operator: other namespaces' pods hold GPUs it cannot
        see, and a count without them would promise capacity that is not there. The act machine
        then leaves placement to the scheduler (:class:`vigil.act.machine.Capacity`).
        """
        if not self.cluster_scope:
            return None
        nodes = await asyncio.to_thread(self.core_v1.list_node, _request_timeout=REQUEST_TIMEOUT)
        pods = await asyncio.to_thread(
            self.core_v1.list_pod_for_all_namespaces,
            field_selector="spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed",
            _request_timeout=REQUEST_TIMEOUT,
        )
        total = 0
        for node in nodes.items:
            if node.spec is not None and node.spec.unschedulable:
                continue
            allocatable = (node.status.allocatable or {}) if node.status else {}
            total += int(allocatable.get(labels.GPU_RESOURCE, "0"))
        used = sum(_pod_gpus(pod) for pod in pods.items)
        return max(0, total - used)

    async def apply(self, manifest: dict[str, Any]) -> None:
        """Server-side apply of a Deployment, Service or HTTPRoute (field manager vigil, forced)."""
        self.fence()
        meta = manifest["metadata"]
        kind = manifest["kind"]
        if kind == route.KIND and manifest.get("apiVersion") == route.API_VERSION:
            await asyncio.to_thread(
                self.custom.patch_namespaced_custom_object,
                route.GROUP,
                route.VERSION,
                meta["namespace"],
                route.PLURAL,
                meta["name"],
                manifest,
                field_manager=labels.FIELD_MANAGER,
                force=True,
                _content_type=APPLY,
                _request_timeout=REQUEST_TIMEOUT,
            )
            return
        if kind == "Deployment":
            call: Any = self.apps.patch_namespaced_deployment
        elif kind == "Service":
            call = self.core_v1.patch_namespaced_service
        else:
            raise ValueError(f"vigil does not apply {kind} objects")
        await asyncio.to_thread(
            call,
            meta["name"],
            meta["namespace"],
            manifest,
            field_manager=labels.FIELD_MANAGER,
            force=True,
            _content_type=APPLY,
            _request_timeout=REQUEST_TIMEOUT,
        )

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """One key of a Secret, decoded; None when the Secret or the key does not exist.

        Needs ``get`` on ``secrets`` in ``namespace`` (a notify step's webhook URL lives there).
        """
        secret = await _unless_missing(self.core_v1.read_namespaced_secret, name, namespace)
        encoded = ((secret.data if secret is not None else None) or {}).get(key)
        if encoded is None:
            return None
        return base64.b64decode(encoded).decode("utf-8", errors="replace")

    async def config_map_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The ``data`` of a ConfigMap (empty when it has none); None when it does not exist.

        Needs ``get`` on ``configmaps`` in ``namespace`` (the golden set of ``spec.validation``).
        """
        found = await _unless_missing(self.core_v1.read_namespaced_config_map, name, namespace)
        if found is None:
            return None
        return dict(found.data or {})

    async def delete_deployment(self, namespace: str, name: str) -> None:
        self.fence()
        await _unless_missing(self.apps.delete_namespaced_deployment, name, namespace)

    async def apply_status(self, plural: str, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        body = {
            "apiVersion": api.API_VERSION,
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "status": status,
        }
        self.fence()
        written = await asyncio.to_thread(
            self.custom.patch_namespaced_custom_object_status,
            api.GROUP,
            api.VERSION,
            namespace,
            plural,
            name,
            body,
            field_manager=labels.FIELD_MANAGER,
            force=True,
            _content_type=APPLY,
            _request_timeout=REQUEST_TIMEOUT,
        )
        version = ((written or {}).get("metadata") or {}).get("resourceVersion") if isinstance(written, dict) else None
        if version is not None:
            self._status_versions[(plural, namespace, name)] = str(version)
        else:
            self._status_versions.pop((plural, namespace, name), None)

    async def post_event(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event about one of vigil's objects (kopf's poster only works inside its handlers)."""
        meta = involved["metadata"]
        now = datetime.datetime.now(datetime.UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=meta["namespace"]),
            involved_object=client.V1ObjectReference(
                api_version=involved.get("apiVersion"),
                kind=involved.get("kind"),
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta.get("uid"),
                resource_version=meta.get("resourceVersion"),
            ),
            type=type_,
            reason=reason[:128],
            message=message[:1024],
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component="vigil"),
            reporting_component="vigil.dev/operator",
            reporting_instance=socket.gethostname()[:128],
        )
        self.fence()
        await asyncio.to_thread(
            self.core_v1.create_namespaced_event, meta["namespace"], event, _request_timeout=REQUEST_TIMEOUT
        )

    async def apply_md_status(self, namespace: str, name: str, status: mdapi.ModelDeploymentStatus) -> None:
        await self.apply_status(mdapi.PLURAL, mdapi.KIND, namespace, name, status.wire())


async def _unless_missing(call: Any, *args: Any) -> Any:
    """``call(*args)`` in a thread with the request timeout; a 404 (already gone) gives None."""
    try:
        return await asyncio.to_thread(call, *args, _request_timeout=REQUEST_TIMEOUT)
    except exceptions.ApiException as error:
        if error.status == 404:
            return None
        raise


def api_message(error: exceptions.ApiException) -> str:
    """The API server's own explanation (a Status object's ``message``), else the raw body."""
    body = error.body.decode(errors="replace") if isinstance(error.body, bytes) else str(error.body or "")
    try:
        status = json.loads(body)
    except ValueError:
        return body[:300]
    return str(status.get("message", body[:300])) if isinstance(status, dict) else body[:300]


def retry_after(error: exceptions.ApiException) -> float:
    """Seconds the API server asked us to wait (a 429's or 503's ``Retry-After``), else 0."""
    headers = error.headers or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else 0.0
    except ValueError:
        return 0.0  # an HTTP date: rare from the API server; our own backoff applies


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


def _live(pod: Any) -> bool:
    return pod.metadata is not None and pod.metadata.deletion_timestamp is None and pod.status is not None


def _is_ready(pod: Any) -> bool:
    conditions = (pod.status.conditions or []) if pod.status else []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _pod_gpus(pod: Any) -> int:
    total = 0
    for container in (pod.spec.containers or []) if pod.spec else []:
        limits = (container.resources.limits or {}) if container.resources else {}
        total += int(limits.get(labels.GPU_RESOURCE, "0"))
    return total


def _container_facts(container: Any) -> podfacts.ContainerFacts:
    state = container.state
    current: Any = None
    kind = podfacts.UNKNOWN
    for name in (podfacts.WAITING, podfacts.TERMINATED, podfacts.RUNNING):
        found = getattr(state, name, None) if state is not None else None
        if found is not None:
            kind, current = name, found
            break
    last = container.last_state.terminated if container.last_state is not None else None
    return podfacts.ContainerFacts(
        name=str(container.name),
        ready=bool(container.ready),
        restarts=int(container.restart_count or 0),
        state=kind,
        reason=str(getattr(current, "reason", None) or ""),
        message=str(getattr(current, "message", None) or ""),
        exit_code=getattr(current, "exit_code", None) if kind == podfacts.TERMINATED else None,
        last_reason=str(last.reason or "") if last is not None else "",
        last_exit_code=last.exit_code if last is not None else None,
        last_finished_at=last.finished_at if last is not None else None,
    )


def pod_facts(pod: Any) -> podfacts.PodFacts:
    """What the API server says about ``pod`` (a ``V1Pod``), copied without judging it."""
    status = pod.status
    scheduled = next((c for c in status.conditions or [] if c.type == "PodScheduled"), None)
    return podfacts.PodFacts(
        name=str(pod.metadata.name),
        revision=(pod.metadata.labels or {}).get(labels.REVISION),
        phase=str(status.phase or ""),
        ready=_is_ready(pod),
        reason=str(status.reason or ""),
        scheduled=None if scheduled is None else scheduled.status == "True",
        schedule_reason=str(scheduled.reason or "") if scheduled is not None and scheduled.status != "True" else "",
        schedule_message=str(scheduled.message or "") if scheduled is not None and scheduled.status != "True" else "",
        gpus=_pod_gpus(pod),
        containers=tuple(_container_facts(c) for c in status.container_statuses or []),
        ip=str(status.pod_ip or ""),
    )
