"""shiftTraffic on the real sandbox: a TrafficOverride moves requests, and clearing it moves them back.

The operator is deliberately not running: the test plays its worker by hand (read the
ModelDeployment, :func:`vigil.reconcile.core.decide` with the cluster's Gateway API answer,
server-side apply every rendered object with :class:`vigil.reconcile.kubeio.Kube`), so a failure
points at rendering and applying, not at the event loop. The override itself is written the way
a runbook's shiftTraffic step writes it: into ``status.traffic`` through the status subresource.
Proof is taken from the simulator, which plays the data plane by reading the HTTPRoute: the
fallback's pods must succeed requests while the primary's stop, and the other way round after.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import typing
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.e2e import waiting
from vigil import api
from vigil.api import conditions as cond
from vigil.api import modeldeployment as mdapi
from vigil.reconcile import core
from vigil.reconcile import kube as kubeio
from vigil.render import route
from vigil.sim import client as simclient

pytestmark = pytest.mark.e2e

PRIMARY = "primary"
FALLBACK = "fallback"
INCIDENT = "primary-e2e-incident"
RATE = 40.0


def create(kube_client: client.ApiClient, namespace: str, name: str, **spec: Any) -> None:
    body = {
        "apiVersion": api.API_VERSION,
        "kind": mdapi.KIND,
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "resnet50", "repository": "s3://models/resnet50", "version": "1"},
            "replicas": 1,
            **spec,
        },
    }
    client.CustomObjectsApi(kube_client).create_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, mdapi.PLURAL, body
    )


async def _reconcile(kapi: kubeio.Kube, namespace: str, name: str, gateway_api: bool | None) -> core.Outcome:
    """One pass of the operator's worker for one ModelDeployment, without the healing part.

    ``gateway_api`` None asks the cluster (as the operator does); False plays a cluster without it.
    """
    raw = await kapi.get_custom(mdapi.PLURAL, namespace, name)
    assert raw is not None
    md = mdapi.ModelDeployment.model_validate(raw)
    observed = await kapi.observe(namespace, name)
    if gateway_api is None:
        gateway_api = await kapi.has_gateway_api()
    now = datetime.datetime.now(datetime.UTC)
    outcome = core.decide(md, raw["metadata"]["uid"], observed, now, gateway_api=gateway_api)
    for manifest in outcome.deployments:
        await kapi.apply(manifest)
    if outcome.service is not None:
        await kapi.apply(outcome.service)
    for manifest in (*outcome.services, *outcome.routes):
        await kapi.apply(manifest)
    await kapi.apply_md_status(namespace, name, outcome.status)
    return outcome


async def _set_traffic(kapi: kubeio.Kube, namespace: str, name: str, splits: list[tuple[str, int]]) -> None:
    """Write (or, with no splits, remove) status.traffic as the runbook's step machine does."""
    raw = await kapi.get_custom(mdapi.PLURAL, namespace, name)
    assert raw is not None
    md = mdapi.ModelDeployment.model_validate(raw)
    status = md.status.model_copy(deep=True)
    status.traffic = (
        mdapi.TrafficOverride(
            splits=[mdapi.TrafficSplit(backend=backend, weight=weight) for backend, weight in splits],
            incident=INCIDENT,
            generation=int(raw["metadata"]["generation"]),
            since=cond.rfc3339(datetime.datetime.now(datetime.UTC)),
        )
        if splits
        else None
    )
    await kapi.apply_md_status(namespace, name, status)


def reconcile(kapi: kubeio.Kube, namespace: str, name: str, gateway_api: bool | None = None) -> core.Outcome:
    return asyncio.run(_reconcile(kapi, namespace, name, gateway_api))


def successes(sim: simclient.ControlClient, namespace: str, by: str = "modeldeployment") -> dict[str, int]:
    """Requests succeeded so far, summed over simulated pods per ``by`` (modeldeployment or revision)."""
    totals: dict[str, int] = {}
    for pod in sim.state()["pods"]:
        if pod["namespace"] == namespace:
            key = str(pod[by])
            totals[key] = totals.get(key, 0) + int(pod["success"])
    return totals


def served_pods(sim: simclient.ControlClient, namespace: str, name: str) -> list[str]:
    return [
        pod["name"]
        for pod in sim.state()["pods"]
        if pod["namespace"] == namespace and pod["modeldeployment"] == name and pod["served"]
    ]


def traffic_goes_to(
    sim: simclient.ControlClient,
    namespace: str,
    receivers: tuple[str, ...],
    idle: tuple[str, ...],
    what: str,
    by: str = "modeldeployment",
) -> None:
    """Wait until, between two samples, every receiver's pods succeed requests and no idle one's do.

    Requests already queued at an idle backend when traffic moved may still complete, so a single
    sample is not proof; an interval with growth on one side and none on the other is.
    """
    last: list[dict[str, int]] = [successes(sim, namespace, by)]

    def moved() -> dict[str, int] | None:
        now = successes(sim, namespace, by)
        before, last[0] = last[0], now
        grew = [now.get(key, 0) - before.get(key, 0) for key in receivers]
        leaked = [now.get(key, 0) - before.get(key, 0) for key in idle]
        return now if min(grew) >= RATE / 8 and not any(leaked) else None

    waiting.until(moved, 90, what, interval=1.5)


@pytest.fixture
def kapi(kube: client.ApiClient) -> kubeio.Kube:
    """vigil's own API edge (the operator's apply, observe and discovery) on the sandbox."""
    return kubeio.Kube(api_client=kube)


@pytest.fixture
def primary_load(sim: simclient.ControlClient, namespace: str) -> Iterator[None]:
    yield
    with contextlib.suppress(simclient.ControlError):
        sim.stop_load(namespace, PRIMARY)


def test_shift_to_fallback_moves_requests_and_clearing_moves_them_back(
    kapi: kubeio.Kube, sim: simclient.ControlClient, namespace: str, primary_load: None
) -> None:
    assert asyncio.run(kapi.has_gateway_api()), "the sandbox installs the Gateway API CRDs"
    create(kapi.api_client, namespace, FALLBACK)
    create(kapi.api_client, namespace, PRIMARY, traffic={"fallback": FALLBACK})
    for name in (FALLBACK, PRIMARY):
        outcome = reconcile(kapi, namespace, name)
        assert outcome.routes == ()  # no override, no gateway, no route yet: the Service alone
    for name in (FALLBACK, PRIMARY):
        waiting.until(functools.partial(served_pods, sim, namespace, name), 120, f"the simulator to play {name}'s pod")

    sim.set_load({"namespace": namespace, "name": PRIMARY, "rate": RATE, "duration": 600})
    traffic_goes_to(sim, namespace, (PRIMARY,), (FALLBACK,), "the primary's Service to take its own load")

    asyncio.run(_set_traffic(kapi, namespace, PRIMARY, [(f"{route.FALLBACK_PREFIX}{FALLBACK}", 100)]))
    shifted = reconcile(kapi, namespace, PRIMARY)
    [manifest] = shifted.routes
    backends = manifest["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["port"], b["weight"]) for b in backends] == [(FALLBACK, 8000, 100)]
    condition = cond.find(shifted.status.conditions, core.TRAFFIC_SHIFTED)
    assert condition is not None
    assert condition.status is cond.ConditionStatus.TRUE
    assert condition.message == f"serving 100% from fallback {FALLBACK} because of incident {INCIDENT}"

    stored = typing.cast(
        dict[str, Any],
        client.CustomObjectsApi(kapi.api_client).get_namespaced_custom_object(
            route.GROUP, route.VERSION, namespace, route.PLURAL, PRIMARY
        ),
    )
    assert stored["metadata"]["ownerReferences"][0]["name"] == PRIMARY
    assert stored["spec"]["rules"][0]["backendRefs"][0]["name"] == FALLBACK
    written = asyncio.run(kapi.get_custom(mdapi.PLURAL, namespace, PRIMARY))
    assert written is not None
    assert any(c["type"] == core.TRAFFIC_SHIFTED and c["status"] == "True" for c in written["status"]["conditions"])

    traffic_goes_to(sim, namespace, (FALLBACK,), (PRIMARY,), "the route to send the primary's load to the fallback")
    primary_lost = sim.state()["lost"].get(f"{namespace}/{PRIMARY}", {})
    assert route_losses(primary_lost) == {}, primary_lost

    asyncio.run(_set_traffic(kapi, namespace, PRIMARY, []))
    cleared = reconcile(kapi, namespace, PRIMARY)
    [manifest] = cleared.routes
    assert [(b["name"], b["weight"]) for b in manifest["spec"]["rules"][0]["backendRefs"]] == [(PRIMARY, 1)]
    condition = cond.find(cleared.status.conditions, core.TRAFFIC_SHIFTED)
    assert condition is not None
    assert (condition.status, condition.reason) == (cond.ConditionStatus.FALSE, route.REASON_SPEC)
    traffic_goes_to(sim, namespace, (PRIMARY,), (FALLBACK,), "clearing the override to bring the load back")


def route_losses(lost: dict[str, int]) -> dict[str, int]:
    """Losses that would mean the route pointed at nothing (not pods still starting)."""
    return {reason: count for reason, count in lost.items() if reason in ("invalid-backend", "no-backends")}


def test_without_the_gateway_api_a_revision_split_runs_by_replica_ratio(
    kapi: kubeio.Kube, sim: simclient.ControlClient, namespace: str, primary_load: None
) -> None:
    create(kapi.api_client, namespace, PRIMARY, replicas=2, bakeTime="1h")
    old = reconcile(kapi, namespace, PRIMARY, gateway_api=False).status.current_revision
    assert old is not None
    client.CustomObjectsApi(kapi.api_client).patch_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, mdapi.PLURAL, PRIMARY, {"spec": {"model": {"version": "2"}}}
    )

    def rolled_out() -> str | None:
        current = reconcile(kapi, namespace, PRIMARY, gateway_api=False).status.current_revision
        return current if current != old else None

    new = waiting.until(rolled_out, 120, "version 2 to roll out (reconciling by hand)", interval=1.0)
    sim.set_load({"namespace": namespace, "name": PRIMARY, "rate": RATE, "duration": 600})
    # The old revision stays warm for the bake hour, but the stable Service selects only the new one.
    traffic_goes_to(sim, namespace, (new,), (old,), "the new revision to take all the load", by="revision")

    asyncio.run(_set_traffic(kapi, namespace, PRIMARY, [(old, 50), (new, 50)]))

    def ratio_in_force() -> core.Outcome | None:
        outcome = reconcile(kapi, namespace, PRIMARY, gateway_api=False)
        found = cond.find(outcome.status.conditions, core.TRAFFIC_SHIFTED)
        return outcome if found is not None and found.status is cond.ConditionStatus.TRUE else None

    outcome = waiting.until(ratio_in_force, 60, "TrafficShifted=True by replica ratio", interval=1.0)
    assert outcome.routes == ()
    service = client.CoreV1Api(kapi.api_client).read_namespaced_service(PRIMARY, namespace)
    assert service.spec is not None
    assert service.spec.selector == {"vigil.dev/modeldeployment": PRIMARY}
    apps = client.AppsV1Api(kapi.api_client)
    for revision in (old, new):
        assert apps.read_namespaced_deployment(f"{PRIMARY}-{revision}", namespace).spec.replicas == 1
    traffic_goes_to(sim, namespace, (old, new), (), "both revisions to share the load", by="revision")
