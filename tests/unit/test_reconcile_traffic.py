"""State-in/state-out tests of traffic overrides in the reconcile decision, and the route I/O edge."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from kubernetes.client import exceptions

from tests.unit import factories
from vigil import labels
from vigil.api import conditions as cond
from vigil.api import modeldeployment as mdapi
from vigil.reconcile import core, kube
from vigil.render import revision, route, workload

NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
T = cond.ConditionStatus.TRUE
F = cond.ConditionStatus.FALSE


def later(seconds: float) -> datetime.datetime:
    return NOW + datetime.timedelta(seconds=seconds)


def observed(loads: dict[str, tuple[int, int]], http_route: bool = False) -> core.Observed:
    return core.Observed(
        workloads={rev: core.Workload(rev, replicas, ready, ready) for rev, (replicas, ready) in loads.items()},
        http_route=http_route,
    )


def replicas_of(outcome: core.Outcome) -> dict[str, int]:
    return {m["metadata"]["labels"][labels.REVISION]: m["spec"]["replicas"] for m in outcome.deployments}


def status_of(outcome: core.Outcome, type_: str) -> cond.Condition:
    found = cond.find(outcome.status.conditions, type_)
    assert found is not None, type_
    return found


def backends(outcome: core.Outcome) -> list[tuple[str, int]]:
    [manifest] = outcome.routes
    assert manifest["kind"] == "HTTPRoute"
    return [(ref["name"], ref["weight"]) for ref in manifest["spec"]["rules"][0]["backendRefs"]]


def shifted(
    md: mdapi.ModelDeployment, *splits: tuple[str, int], generation: int = 1, incident: str = "resnet-inc"
) -> mdapi.ModelDeployment:
    md.status.traffic = mdapi.TrafficOverride(
        splits=[mdapi.TrafficSplit(backend=b, weight=w) for b, w in splits],
        incident=incident,
        generation=generation,
        since=cond.rfc3339(NOW),
    )
    return md


def serving_one(**spec: Any) -> tuple[mdapi.ModelDeployment, str]:
    """A deployment serving one revision with 2 ready replicas."""
    md = factories.md(replicas=2, **spec)
    rev = revision.revision_of(md.spec)
    md.status = core.decide(md, "uid-1", observed({rev: (2, 2)}), NOW).status
    return md, rev


def serving_two(**spec: Any) -> tuple[mdapi.ModelDeployment, str, str]:
    """Version 2 rolled out over version 1 (kept in history, warm for the bake time): (md, old, new)."""
    spec = {"bakeTime": "1h", **spec}
    md = factories.md(replicas=2, **spec)
    old = revision.revision_of(md.spec)
    md.status = core.decide(md, "uid-1", observed({old: (2, 2)}), NOW).status
    v2 = factories.md(version="2", replicas=2, generation=2, status=md.status, **spec)
    new = revision.revision_of(v2.spec)
    v2.status = core.decide(v2, "uid-1", observed({old: (2, 2), new: (2, 2)}), later(10)).status
    assert v2.status.current_revision == new
    return v2, old, new


# --- defaults --------------------------------------------------------------------------------------


def test_without_an_override_nothing_about_traffic_changes() -> None:
    md, rev = serving_one()
    outcome = core.decide(md, "uid-1", observed({rev: (2, 2)}), later(5))
    assert outcome.routes == ()
    assert outcome.services == ()
    assert cond.find(outcome.status.conditions, core.TRAFFIC_SHIFTED) is None
    assert outcome.service is not None
    assert outcome.service["spec"]["selector"][labels.REVISION] == rev


def test_a_configured_gateway_gets_a_route_to_the_stable_service() -> None:
    md, rev = serving_one(traffic={"gateway": "infra/public"})
    outcome = core.decide(md, "uid-1", observed({rev: (2, 2)}), later(5), gateway_api=True)
    assert backends(outcome) == [("resnet", 1)]
    assert outcome.routes[0]["spec"]["parentRefs"] == [
        {"group": route.GROUP, "kind": "Gateway", "namespace": "infra", "name": "public"}
    ]


def test_an_unparseable_gateway_is_an_invalid_spec() -> None:
    md, rev = serving_one()
    md.spec.traffic.gateway = "a/b/c"  # the models refuse it; a spec that got past them is refused here
    outcome = core.decide(md, "uid-1", observed({rev: (2, 2)}), later(5), gateway_api=True)
    degraded = status_of(outcome, core.DEGRADED)
    assert (degraded.status, degraded.reason) == (T, "InvalidSpec")
    assert "spec.traffic.gateway" in degraded.message


# --- shifting to the fallback deployment ----------------------------------------------------------


def test_all_traffic_to_the_fallback_renders_a_route_and_says_why() -> None:
    md, rev = serving_one(traffic={"fallback": "resnet-big"})
    md = shifted(md, ("md:resnet-big", 100))
    outcome = core.decide(md, "uid-1", observed({rev: (2, 2)}), later(5), gateway_api=True)
    assert backends(outcome) == [("resnet-big", 100)]
    manifest = outcome.routes[0]
    assert manifest["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert manifest["metadata"]["namespace"] == "ml"
    condition = status_of(outcome, core.TRAFFIC_SHIFTED)
    assert (condition.status, condition.reason) == (T, route.REASON_SHIFTED)
    assert condition.message == "serving 100% from fallback resnet-big because of incident resnet-inc"
    # The primary stays warm (the way back is a route change) and healthy in its own right.
    assert replicas_of(outcome) == {rev: 2}
    assert status_of(outcome, core.AVAILABLE).status is T
    assert status_of(outcome, core.DEGRADED).status is F
    assert any(e.reason == "TrafficShiftedTrue" and e.type == "Normal" for e in outcome.events)


def test_without_the_gateway_api_a_fallback_shift_is_refused_clearly_and_not_degraded() -> None:
    md, rev = serving_one(traffic={"fallback": "resnet-big"})
    md = shifted(md, ("md:resnet-big", 100))
    outcome = core.decide(md, "uid-1", observed({rev: (2, 2)}), later(5))
    assert outcome.routes == ()
    condition = status_of(outcome, core.TRAFFIC_SHIFTED)
    assert (condition.status, condition.reason) == (F, "GatewayAPIUnavailable")
    assert "Gateway API" in condition.message
    assert status_of(outcome, core.DEGRADED).status is F
    assert outcome.service is not None
    assert outcome.service["spec"]["selector"][labels.REVISION] == rev
    assert replicas_of(outcome) == {rev: 2}
    assert any(e.reason == "TrafficShiftedFalse" and e.type == "Warning" for e in outcome.events)


def test_a_new_generation_clears_the_shift_and_the_route_goes_back_to_the_stable_service() -> None:
    md, _rev = serving_one(traffic={"fallback": "resnet-big"})
    md = shifted(md, ("md:resnet-big", 100))
    first = core.decide(md, "uid-1", observed({_rev: (2, 2)}), later(5), gateway_api=True)
    v2 = factories.md(version="2", replicas=2, generation=2, traffic={"fallback": "resnet-big"}, status=first.status)
    outcome = core.decide(v2, "uid-1", observed({_rev: (2, 2)}, http_route=True), later(10), gateway_api=True)
    assert outcome.status.traffic is None
    assert any(e.reason == "OverrideCleared" and "traffic shift" in e.message for e in outcome.events)
    assert backends(outcome) == [("resnet", 1)]
    condition = status_of(outcome, core.TRAFFIC_SHIFTED)
    assert (condition.status, condition.reason) == (F, route.REASON_SPEC)


def test_clearing_the_override_moves_traffic_back() -> None:
    md, rev = serving_one(traffic={"fallback": "resnet-big"})
    md = shifted(md, ("md:resnet-big", 100))
    md.status = core.decide(md, "uid-1", observed({rev: (2, 2)}), later(5), gateway_api=True).status
    md.status.traffic = None
    outcome = core.decide(md, "uid-1", observed({rev: (2, 2)}, http_route=True), later(10), gateway_api=True)
    assert backends(outcome) == [("resnet", 1)]
    condition = status_of(outcome, core.TRAFFIC_SHIFTED)
    assert condition.status is F
    assert condition.message == f"revision {rev} serves all traffic"


def test_a_fallback_other_than_the_configured_one_is_refused() -> None:
    md, rev = serving_one(traffic={"fallback": "resnet-big"})
    md = shifted(md, ("md:someone-else", 100))
    outcome = core.decide(md, "uid-1", observed({rev: (2, 2)}), later(5), gateway_api=True)
    assert outcome.routes == ()
    condition = status_of(outcome, core.TRAFFIC_SHIFTED)
    assert (condition.status, condition.reason) == (F, route.REASON_INVALID)


# --- splitting between revisions ------------------------------------------------------------------


def test_revision_split_with_the_gateway_api_routes_to_per_revision_services() -> None:
    md, old, new = serving_two()
    md = shifted(md, (old, 30), (new, 70), generation=2)
    outcome = core.decide(md, "uid-1", observed({old: (2, 2), new: (2, 2)}), later(20), gateway_api=True)
    assert backends(outcome) == [(f"resnet-{old}", 30), (f"resnet-{new}", 70)]
    assert sorted(s["metadata"]["name"] for s in outcome.services) == sorted([f"resnet-{old}", f"resnet-{new}"])
    for service in outcome.services:
        assert service["spec"]["selector"][labels.REVISION] in (old, new)
        assert service["spec"]["ports"][0]["port"] == labels.HTTP_PORT
    assert outcome.service is not None
    assert outcome.service["spec"]["selector"][labels.REVISION] == new
    assert status_of(outcome, core.TRAFFIC_SHIFTED).message == (
        f"serving 30% from revision {old}, 70% from revision {new} because of incident resnet-inc"
    )


def test_a_revision_scaled_to_zero_is_started_and_gets_its_share_once_ready() -> None:
    md, old, new = serving_two(bakeTime="1s")
    md = shifted(md, (old, 50), (new, 50), generation=2)
    cold = core.decide(md, "uid-1", observed({old: (0, 0), new: (2, 2)}), later(60), gateway_api=True)
    assert replicas_of(cold)[old] == 1
    assert backends(cold) == [(f"resnet-{new}", 100)]
    assert status_of(cold, core.TRAFFIC_SHIFTED).reason == route.REASON_WAITING
    md.status = cold.status
    warm = core.decide(md, "uid-1", observed({old: (1, 1), new: (2, 2)}), later(70), gateway_api=True)
    assert backends(warm) == [(f"resnet-{old}", 50), (f"resnet-{new}", 50)]
    assert status_of(warm, core.TRAFFIC_SHIFTED).status is T


def test_revision_split_without_the_gateway_api_uses_replica_ratios_behind_the_stable_service() -> None:
    md, old, new = serving_two()
    md = shifted(md, (old, 50), (new, 50), generation=2)
    outcome = core.decide(md, "uid-1", observed({old: (2, 2), new: (2, 2)}), later(20))
    assert outcome.routes == ()
    assert outcome.service is not None
    assert outcome.service["spec"]["selector"] == {labels.MODEL_DEPLOYMENT: "resnet"}
    assert outcome.status.selector == f"{labels.MODEL_DEPLOYMENT}=resnet"
    assert replicas_of(outcome) == {old: 1, new: 1}
    condition = status_of(outcome, core.TRAFFIC_SHIFTED)
    assert condition.status is T
    assert "by replica ratio 1:1" in condition.message
    assert status_of(outcome, core.AVAILABLE).status is T


def test_replica_ratios_stop_every_revision_outside_the_split() -> None:
    md, old, new = serving_two()  # old is warm for the bake hour, so it would take a share
    md = shifted(md, (new, 100), generation=2)
    outcome = core.decide(md, "uid-1", observed({old: (2, 2), new: (2, 2)}), later(20))
    assert replicas_of(outcome) == {old: 0, new: 2}


def test_replica_ratios_keep_the_serving_pods_until_the_other_revision_is_ready() -> None:
    md, old, new = serving_two(bakeTime="1s")
    md = shifted(md, (old, 50), (new, 50), generation=2)
    cold = core.decide(md, "uid-1", observed({old: (0, 0), new: (2, 2)}), later(60))
    assert replicas_of(cold) == {old: 1, new: 2}
    assert status_of(cold, core.TRAFFIC_SHIFTED).reason == route.REASON_WAITING
    assert status_of(cold, core.AVAILABLE).status is T
    md.status = cold.status
    ready = core.decide(md, "uid-1", observed({old: (1, 1), new: (2, 2)}), later(70))
    assert replicas_of(ready) == {old: 1, new: 1}
    assert status_of(ready, core.TRAFFIC_SHIFTED).status is T
    assert status_of(ready, core.PROGRESSING).reason == "RolloutComplete"


def test_replica_ratios_judge_availability_over_every_serving_revision() -> None:
    md, old, new = serving_two()
    md = shifted(md, (old, 50), (new, 50), generation=2)
    outcome = core.decide(md, "uid-1", observed({old: (1, 1), new: (1, 0)}), later(30))
    available = status_of(outcome, core.AVAILABLE)
    assert available.status is F
    assert available.message == f"revisions {', '.join(sorted([old, new]))}: 1/2 ready"
    assert (outcome.status.replicas, outcome.status.ready_replicas) == (2, 1)


def test_replica_ratios_hold_a_rollout_until_the_shift_is_cleared() -> None:
    md, old = serving_one()
    v2 = factories.md(version="2", replicas=2, generation=2, status=md.status)
    new = revision.revision_of(v2.spec)
    v2.status = core.decide(v2, "uid-1", observed({old: (2, 2)}), later(10)).status
    assert (v2.status.current_revision, v2.status.desired_revision) == (old, new)
    v2 = shifted(v2, (old, 100), generation=2)
    # The stable Service selects every revision: new pods would take a share the moment they are ready.
    outcome = core.decide(v2, "uid-1", observed({old: (2, 2), new: (2, 0)}), later(20))
    assert replicas_of(outcome) == {old: 2, new: 0}
    assert outcome.status.current_revision == old
    assert status_of(outcome, core.PROGRESSING).reason == "TrafficOverride"
    v2.status = outcome.status
    v2.status.traffic = None
    resumed = core.decide(v2, "uid-1", observed({old: (2, 2), new: (0, 0)}), later(30))
    assert replicas_of(resumed) == {old: 2, new: 2}
    assert status_of(resumed, core.PROGRESSING).reason == "RolloutInProgress"


def test_split_revisions_survive_history_trimming() -> None:
    md, old, new = serving_two(revisionHistoryLimit=1)
    md = shifted(md, (old, 50), (new, 50), generation=2)
    outcome = core.decide(md, "uid-1", observed({old: (2, 2), new: (2, 2)}), later(20), gateway_api=True)
    assert {r.name for r in outcome.status.revisions} == {old, new}


def test_deciding_twice_on_a_shift_changes_nothing() -> None:
    md, rev = serving_one(traffic={"fallback": "resnet-big"})
    md = shifted(md, ("md:resnet-big", 100))
    first = core.decide(md, "uid-1", observed({rev: (2, 2)}), later(5), gateway_api=True)
    md.status = first.status
    second = core.decide(md, "uid-1", observed({rev: (2, 2)}, http_route=True), later(6), gateway_api=True)
    assert second.status.wire() == first.status.wire()
    assert second.routes == first.routes
    assert second.events == ()


# --- the Kubernetes edge: discovery and server-side apply of HTTPRoutes ----------------------------


class FakeApi:
    """Stands in for the API server behind ``Kube.request``; records the calls."""

    resources: list[str] = []
    missing = False
    calls: list[tuple[str, str, dict[str, Any]]] = []

    @staticmethod
    def request(_kube: Any, method: str, path: str, **kwargs: Any) -> Any:
        FakeApi.calls.append((method, path, kwargs))
        if method == "GET":  # discovery
            if FakeApi.missing:
                raise exceptions.ApiException(status=404, reason="Not Found")
            return {"kind": "APIResourceList", "resources": [{"name": n} for n in FakeApi.resources]}
        return kwargs.get("body")


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> type[FakeApi]:
    monkeypatch.setattr(kube.Kube, "request", FakeApi.request)
    FakeApi.resources = []
    FakeApi.missing = False
    FakeApi.calls = []
    return FakeApi


async def test_gateway_api_discovery_is_cached(fake_api: type[FakeApi]) -> None:
    fake_api.resources = ["gateways", "httproutes", "httproutes/status"]
    api = kube.Kube(api_client=object())  # type: ignore[arg-type]
    assert await api.has_gateway_api()
    assert await api.has_gateway_api()
    assert [c[:2] for c in fake_api.calls] == [("GET", f"/apis/{route.GROUP}/{route.VERSION}")]


async def test_gateway_api_is_missing_on_404_or_without_httproutes(fake_api: type[FakeApi]) -> None:
    fake_api.missing = True
    assert not await kube.Kube(api_client=object()).has_gateway_api()  # type: ignore[arg-type]
    fake_api.missing = False
    fake_api.resources = ["gateways"]
    assert not await kube.Kube(api_client=object()).has_gateway_api()  # type: ignore[arg-type]


async def test_gateway_api_answer_expires(fake_api: type[FakeApi], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "DISCOVERY_CACHE_SECONDS", 0.0)
    api = kube.Kube(api_client=object())  # type: ignore[arg-type]
    assert not await api.has_gateway_api()
    fake_api.resources = ["httproutes"]  # installed later: seen once the answer is stale
    assert await api.has_gateway_api()


async def test_httproutes_are_server_side_applied(fake_api: type[FakeApi]) -> None:
    manifest = route.stable_route(workload.Owner("resnet", "ml", "uid-1"), None)
    await kube.Kube(api_client=object()).apply(manifest)  # type: ignore[arg-type]
    [(method, path, kwargs)] = fake_api.calls
    assert (method, path) == ("PATCH", f"/apis/{route.GROUP}/{route.VERSION}/namespaces/ml/{route.PLURAL}/resnet")
    assert kwargs["body"] == manifest
    assert kwargs["query"] == [("fieldManager", "vigil"), ("force", "true")]
    assert kwargs["content_type"] == "application/apply-patch+yaml"
