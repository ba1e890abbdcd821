"""The real reconcile (``operator.reconcile`` -> ``_reconcile`` -> ``Kube``) against kmock's API
emulator, with the API server's failures injected: refusals (403/422), 429 with Retry-After,
500s, connection errors, a lease lost mid-reconcile, and a deletion mid-reconcile.

kmock does not create objects on a server-side apply (it answers 404), so each test first creates
the children the reconcile will apply; failures are reactions on those exact requests.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import kmock
import kubernetes.client
import pytest

from vigil.api import modeldeployment as mdapi
from vigil.reconcile import kube, leader, operator, scope, supervise, watched
from vigil.reconcile import settings as config
from vigil.render import revision as revisions

NS, NAME = "ns", "md"
KEY = (NS, NAME)
MDS = f"/apis/vigil.dev/v1alpha1/namespaces/{NS}/modeldeployments"
SPEC: dict[str, Any] = {
    "model": {"name": "resnet50", "repository": "s3://models/resnet50", "version": "1"},
    "replicas": 1,
}


def body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": NS, "uid": "uid-1", "generation": 1},
        "spec": {**SPEC, **spec},
    }


def deployment_name(**spec: Any) -> str:
    parsed = mdapi.ModelDeployment.model_validate(body(**spec))
    return revisions.workload_name(NAME, revisions.revision_of(parsed.spec))


def status_status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


@pytest.fixture
def api(kmock: kmock.KubernetesEmulator) -> kubernetes.client.ApiClient:
    configuration = kubernetes.client.Configuration(host=str(kmock.url).rstrip("/"))
    configuration.retries = kube.RETRIES  # as the operator configures its client
    return kubernetes.client.ApiClient(configuration)


def custom(api: kubernetes.client.ApiClient) -> Any:
    return kubernetes.client.CustomObjectsApi(api)


@pytest.fixture
async def cluster(kmock: kmock.KubernetesEmulator, api: kubernetes.client.ApiClient) -> None:
    """The md and the children its first reconcile applies, as they would exist on a server."""
    kmock.resources["v1/pods"] = {}
    kmock.resources["v1/events"] = {}
    apps: Any = kubernetes.client.AppsV1Api(api)
    core: Any = kubernetes.client.CoreV1Api(api)
    await asyncio.to_thread(
        custom(api).create_namespaced_custom_object, "vigil.dev", "v1alpha1", NS, "modeldeployments", body()
    )
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment_name()},
        "spec": {"selector": {}, "template": {}},
    }
    await asyncio.to_thread(apps.create_namespaced_deployment, NS, deployment)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME}}
    await asyncio.to_thread(core.create_namespaced_service, NS, service)


@pytest.fixture
def runtime(api: kubernetes.client.ApiClient, cluster: None) -> operator.Runtime:
    runtime = operator.Runtime(settings=config.Settings(standalone=True), kube=kube.Kube(api))
    runtime.known.add(KEY)
    return runtime


def requests(handler: kmock.KubernetesEmulator, method: str, path: str = "") -> list[Any]:
    return [r for r in handler[method.lower()] if path in str(r.url)]


def status_writes(handler: kmock.KubernetesEmulator) -> list[dict[str, Any]]:
    return [r.data["status"] for r in requests(handler, "PATCH", f"{MDS}/{NAME}/status")]


def condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), None)


def events(handler: kmock.KubernetesEmulator) -> list[dict[str, Any]]:
    return [r.data for r in requests(handler, "POST", f"/api/v1/namespaces/{NS}/events")]


async def test_a_healthy_reconcile_applies_writes_status_and_forgets_failures(
    kmock: kmock.KubernetesEmulator, runtime: operator.Runtime
) -> None:
    runtime.queue.add_rate_limited(KEY)  # an earlier failure
    await operator.reconcile(runtime, KEY)
    await runtime.poster.flush()  # the Events it decided, posted beside it
    assert runtime.queue.failures(KEY) == 0
    assert requests(kmock, "PATCH", f"/deployments/{deployment_name()}")
    written = status_writes(kmock)
    assert len(written) == 1
    assert condition(written[0], operator.RECONCILE_ERROR) is None  # never failed: no such condition
    assert KEY in runtime.mds


@pytest.mark.parametrize(
    ("code", "reason", "message"),
    [
        (422, "Invalid", 'Deployment.apps "md-x" is invalid: spec.template.spec.containers[0].image: Required value'),
        (403, "Forbidden", 'deployments.apps "md-x" is forbidden: User "vigil" cannot patch resource "deployments"'),
    ],
)
async def test_a_refused_child_is_reported_as_ReconcileError_with_the_servers_message_and_retried_with_backoff(
    kmock: kmock.KubernetesEmulator, runtime: operator.Runtime, code: int, reason: str, message: str
) -> None:
    (
        kmock[f"patch /apis/apps/v1/namespaces/{NS}/deployments/{deployment_name()}"]
        << code
        << status_status(code, reason, message)
    )
    await operator.reconcile(runtime, KEY)
    await runtime.poster.flush()  # the Events it decided, posted beside it

    written = status_writes(kmock)
    assert len(written) == 1  # the status is written although the apply failed
    error = condition(written[0], operator.RECONCILE_ERROR)
    assert error is not None
    assert (error["status"], error["reason"]) == ("True", reason)
    assert error["message"] == f"apply Deployment {deployment_name()}: {code} {message}"
    warnings = [e for e in events(kmock) if e["reason"] == operator.RECONCILE_ERROR]
    assert len(warnings) == 1
    assert warnings[0]["type"] == "Warning"
    assert message in warnings[0]["message"]
    assert runtime.queue.failures(KEY) == 1
    first = runtime.queue.scheduled(KEY)
    assert first is not None
    assert 0 < first <= 0.5  # not the old fixed 5 s: exponential from half a second

    await operator.reconcile(runtime, KEY)  # the retry, run now: refused again
    await runtime.poster.flush()  # the Events it decided, posted beside it
    assert runtime.queue.failures(KEY) == 2
    assert len([e for e in events(kmock) if e["reason"] == operator.RECONCILE_ERROR]) == 1  # no repeat Event


async def test_the_condition_clears_once_the_apply_succeeds_again(
    kmock: kmock.KubernetesEmulator, runtime: operator.Runtime
) -> None:
    refused = {"on": True}
    deployment = f"patch /apis/apps/v1/namespaces/{NS}/deployments/{deployment_name()}"
    kmock[deployment][lambda: refused["on"]] << 403 << status_status(403, "Forbidden", "no")
    await operator.reconcile(runtime, KEY)
    await runtime.poster.flush()  # the Events it decided, posted beside it
    refused["on"] = False
    await operator.reconcile(runtime, KEY)
    await runtime.poster.flush()  # the Events it decided, posted beside it
    error = condition(status_writes(kmock)[-1], operator.RECONCILE_ERROR)
    assert error is not None
    assert (error["status"], error["reason"]) == ("False", "Applied")
    assert runtime.queue.failures(KEY) == 0
    assert [e["reason"] for e in events(kmock) if e["reason"] in ("ReconcileError", "Reconciled")] == [
        "ReconcileError",
        "Reconciled",
    ]


async def test_429_retry_after_is_honoured_without_blocking_a_thread(
    kmock: kmock.KubernetesEmulator, runtime: operator.Runtime
) -> None:
    throttled = status_status(429, "TooManyRequests", "the server has received too many requests")
    kmock[f"get /api/v1/namespaces/{NS}/pods"] << 429 << kmock.headers({"Retry-After": "30"}) << throttled
    loop = asyncio.get_running_loop()
    started = loop.time()
    await operator.reconcile(runtime, KEY)
    await runtime.poster.flush()  # the Events it decided, posted beside it
    assert loop.time() - started < 5  # urllib3 did not sleep out the Retry-After in a thread
    assert len(requests(kmock, "GET", f"/api/v1/namespaces/{NS}/pods")) == 1
    delay = runtime.queue.scheduled(KEY)
    assert delay is not None
    assert 29 < delay <= 30
    assert status_writes(kmock) == []  # nothing observed, nothing claimed


async def test_a_500_is_retried_with_growing_delays(
    kmock: kmock.KubernetesEmulator, runtime: operator.Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    kmock[f"get {MDS}/{NAME}"] << 500 << status_status(500, "InternalError", "etcdserver: request timed out")
    for _ in range(4):
        await operator.reconcile(runtime, KEY)
        await runtime.poster.flush()  # the Events it decided, posted beside it
    assert runtime.queue.failures(KEY) == 4
    delays = [float(m.split("retrying in ")[1].split("s")[0]) for m in caplog.messages if "retrying in" in m]
    assert len(delays) == 4
    assert delays == sorted(delays)
    assert delays[-1] > 2 * delays[0]
    assert "etcdserver: request timed out" in caplog.messages[-1]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_unreachable_api_server_is_a_paced_retry_not_a_crash() -> None:
    configuration = kubernetes.client.Configuration(host=f"http://127.0.0.1:{closed_port()}")
    configuration.retries = kube.RETRIES
    runtime = operator.Runtime(
        settings=config.Settings(standalone=True), kube=kube.Kube(kubernetes.client.ApiClient(configuration))
    )
    await operator.reconcile(runtime, KEY)  # urllib3's MaxRetryError must not escape
    await runtime.poster.flush()  # the Events it decided, posted beside it
    assert runtime.queue.failures(KEY) == 1
    assert runtime.queue.scheduled(KEY) is not None


class LosesLeaseAfter:
    """A fence that lets ``writes`` writes through, then reports the lease lost."""

    def __init__(self, writes: int) -> None:
        self.left = writes

    def __call__(self) -> None:
        if self.left <= 0:
            raise leader.NotLeading("replica a does not hold lease ns/vigil")
        self.left -= 1


@pytest.mark.parametrize("writes", [0, 1, 2])
async def test_losing_the_lease_mid_reconcile_stops_every_later_write(
    kmock: kmock.KubernetesEmulator, runtime: operator.Runtime, writes: int
) -> None:
    runtime.kube.fence = LosesLeaseAfter(writes)
    await operator.reconcile(runtime, KEY)
    await runtime.poster.flush()  # the Events it decided, posted beside it
    made = [r for method in ("post", "patch", "put", "delete") for r in kmock[method]]
    setup = 3  # the md and its two children created by the fixtures
    assert len(made) - setup == writes
    assert runtime.queue.scheduled(KEY) is None  # not retried: the new leader reconciles it


async def test_a_standby_reconciles_nothing(kmock: kmock.KubernetesEmulator, runtime: operator.Runtime) -> None:
    runtime.elector = leader.Elector(leader.KubeLeases(runtime.kube.api_client, 5), "ns", "vigil", "b", leader.Timing())
    before = len(kmock)
    await operator.reconcile(runtime, KEY)
    await runtime.poster.flush()  # the Events it decided, posted beside it
    assert len(kmock) == before


async def test_a_model_deployment_deleted_mid_reconcile_is_not_remembered(
    kmock: kmock.KubernetesEmulator, api: kubernetes.client.ApiClient, runtime: operator.Runtime
) -> None:
    real_observe = runtime.kube.observe
    deleted = body()

    async def deleted_while_observing(namespace: str, name: str) -> Any:
        await asyncio.to_thread(
            custom(api).delete_namespaced_custom_object, "vigil.dev", "v1alpha1", NS, "modeldeployments", NAME
        )
        operator.changed(runtime, watched.MODEL_DEPLOYMENTS, deleted, None)  # the watch's DELETED event
        return await real_observe(namespace, name)

    runtime.kube.observe = deleted_while_observing  # type: ignore[method-assign]
    await operator.reconcile(runtime, KEY)
    await runtime.poster.flush()  # the Events it decided, posted beside it
    assert KEY not in runtime.mds
    assert KEY not in runtime.known
    # the status write met a 404; its retry finds the object gone and forgets everything
    runtime.kube.observe = real_observe  # type: ignore[method-assign]
    runtime.queue.discard(KEY)
    await operator.reconcile(runtime, KEY)
    await runtime.poster.flush()  # the Events it decided, posted beside it
    assert KEY not in runtime.mds
    assert runtime.queue.scheduled(KEY) is None
    assert runtime.queue.failures(KEY) == 0


async def test_without_prometheus_slos_are_reported_as_not_evaluated(
    kmock: kmock.KubernetesEmulator, api: kubernetes.client.ApiClient, runtime: operator.Runtime
) -> None:
    slo = {"name": "availability", "kind": "availability", "objective": 99.0, "period": "1h"}
    await asyncio.to_thread(
        custom(api).patch_namespaced_custom_object,
        "vigil.dev",
        "v1alpha1",
        NS,
        "modeldeployments",
        NAME,
        {"spec": {"slos": [slo]}},
    )
    await operator.reconcile(runtime, KEY)
    await runtime.poster.flush()  # the Events it decided, posted beside it
    available = condition(status_writes(kmock)[-1], "MetricsAvailable")
    assert available is not None
    assert (available["status"], available["reason"]) == ("False", "PrometheusNotConfigured")
    assert "--prometheus-url" in available["message"]
    assert any(e["reason"] == "MetricsAvailableFalse" for e in events(kmock))


@pytest.fixture
async def cached(
    kmock: kmock.KubernetesEmulator, api: kubernetes.client.ApiClient, runtime: operator.Runtime
) -> AsyncIterator[operator.Runtime]:
    """The runtime with its watch caches streaming from kmock, as ``operator.run`` wires them."""
    for resource in (
        "vigil.dev/v1alpha1/incidents",
        "vigil.dev/v1alpha1/runbooks",
        "apps/v1/deployments",
        "v1/services",
    ):
        kmock.resources[resource] = {}
    caches = watched.build(api, scope.Scope((NS,)), lambda *change: operator.changed(runtime, *change))
    runtime.kube.caches = caches
    tasks = [asyncio.create_task(stream.run(supervise.Heartbeat(stream.name, 600.0))) for stream in caches.informers]
    try:
        await asyncio.wait_for(caches.wait_synced(), 10)
        yield runtime
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_steady_reconcile_from_the_watch_caches_makes_no_request(
    kmock: kmock.KubernetesEmulator, cached: operator.Runtime
) -> None:
    await operator.reconcile(cached, KEY)  # applies the children, writes the status, posts Events
    await cached.poster.flush()  # the Events it decided, posted beside it
    await operator.reconcile(cached, KEY)  # the status takes in what the applied children report
    await cached.poster.flush()  # the Events it decided, posted beside it
    assert status_writes(kmock)
    writes = [r for method in ("post", "patch", "put", "delete") for r in kmock[method]]
    before = len(list(kmock))
    await operator.reconcile(cached, KEY)
    await cached.poster.flush()  # the Events it decided, posted beside it
    made = list(kmock)[before:]
    assert [f"{r.method} {r.url.path}" for r in made if "watch" not in r.url.query] == []
    assert len([r for method in ("post", "patch", "put", "delete") for r in kmock[method]]) == len(writes)


async def test_drift_of_a_child_is_applied_again(
    kmock: kmock.KubernetesEmulator, api: kubernetes.client.ApiClient, cached: operator.Runtime
) -> None:
    await operator.reconcile(cached, KEY)
    await cached.poster.flush()  # the Events it decided, posted beside it
    path = f"/apis/apps/v1/namespaces/{NS}/deployments/{deployment_name()}"
    applied = len(kmock[f"patch {path}"])
    scaled = {"spec": {"replicas": 7}}  # kubectl scale on vigil's Deployment
    await asyncio.to_thread(kubernetes.client.AppsV1Api(api).patch_namespaced_deployment, deployment_name(), NS, scaled)
    store = cached.kube.caches.store("deployments") if cached.kube.caches is not None else None
    assert store is not None
    for _ in range(500):  # the watch brings the edit
        found = store.get((NS, deployment_name()))
        if found is not None and found["spec"]["replicas"] == 7:
            break
        await asyncio.sleep(0.01)
    await operator.reconcile(cached, KEY)
    await cached.poster.flush()  # the Events it decided, posted beside it
    patches = list(kmock[f"patch {path}"])
    assert len(patches) == applied + 2  # the scale, then vigil's apply putting its replicas back
    assert patches[-1].data["spec"]["replicas"] == 1
