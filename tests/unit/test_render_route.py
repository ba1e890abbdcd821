"""Traffic shifting rendered: HTTPRoutes, per-revision Services, replica ratios and the verdicts."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit import factories
from vigil import labels
from vigil.act import intents
from vigil.api import conditions as cond
from vigil.api import modeldeployment as mdapi
from vigil.render import route, workload

OWNER = workload.Owner(name="resnet", namespace="ml", uid="uid-1")
SERVING = "cur0000000"
GOOD = "good000000"
T = cond.ConditionStatus.TRUE
F = cond.ConditionStatus.FALSE


def spec(**traffic: str) -> mdapi.ModelDeploymentSpec:
    built = factories.md(replicas=4).spec
    # Assigned after parsing: the models refuse a bad gateway, the route must still not trust one.
    built.traffic = mdapi.Traffic.model_construct(**traffic)
    return built


def override(*splits: tuple[str, int]) -> mdapi.TrafficOverride:
    return mdapi.TrafficOverride(
        splits=[mdapi.TrafficSplit(backend=backend, weight=weight) for backend, weight in splits],
        incident="inc-1",
        generation=1,
        since="2026-11-22T12:00:00Z",
    )


def plan(
    traffic: mdapi.TrafficOverride | None,
    *,
    gateway_api: bool = True,
    route_exists: bool = False,
    replicas: dict[str, int] | None = None,
    ready: dict[str, int] | None = None,
    md_spec: mdapi.ModelDeploymentSpec | None = None,
) -> route.Shift:
    return route.plan(
        OWNER,
        md_spec or spec(fallback="resnet-big"),
        traffic,
        serving=SERVING,
        wanted=4,
        replicas=replicas if replicas is not None else {SERVING: 4, GOOD: 0},
        ready=ready if ready is not None else {SERVING: 4},
        gateway_api=gateway_api,
        route_exists=route_exists,
    )


def backend_refs(manifest: dict[str, Any]) -> list[tuple[str, int]]:
    rules = manifest["spec"]["rules"]
    assert len(rules) == 1
    for ref in rules[0]["backendRefs"]:
        assert ref["port"] == labels.HTTP_PORT
        assert ref["kind"] == "Service"
        assert ref["group"] == ""
    return [(ref["name"], ref["weight"]) for ref in rules[0]["backendRefs"]]


# --- the HTTPRoute itself -------------------------------------------------------------------------


def test_route_is_named_after_the_deployment_and_owned_by_it() -> None:
    manifest = route.http_route(OWNER, None, [("resnet-big", 100)])
    assert manifest["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert manifest["kind"] == "HTTPRoute"
    meta = manifest["metadata"]
    assert (meta["name"], meta["namespace"]) == ("resnet", "ml")
    assert meta["labels"] == {labels.MODEL_DEPLOYMENT: "resnet", labels.MANAGED_BY: "vigil"}
    [ref] = meta["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("ModelDeployment", "resnet", "uid-1", True)
    assert manifest["spec"]["rules"][0]["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert backend_refs(manifest) == [("resnet-big", 100)]


@pytest.mark.parametrize(
    ("gateway", "expected"),
    [
        ("infra/public", {"group": route.GROUP, "kind": "Gateway", "namespace": "infra", "name": "public"}),
        ("public", {"group": route.GROUP, "kind": "Gateway", "name": "public"}),
        ("gw.example", {"group": route.GROUP, "kind": "Gateway", "name": "gw.example"}),
    ],
)
def test_parent_is_the_configured_gateway(gateway: str, expected: dict[str, Any]) -> None:
    assert route.parent_refs(OWNER, gateway) == [expected]


def test_without_a_gateway_the_route_attaches_to_the_stable_service() -> None:
    # A parentless route is ignored by every implementation; a mesh (GAMMA) honours this one.
    expected = [{"group": "", "kind": "Service", "name": "resnet", "port": labels.HTTP_PORT}]
    assert route.parent_refs(OWNER, None) == expected
    assert route.parent_refs(OWNER, "not/a/gateway") == expected


@pytest.mark.parametrize("text", ["a/b/c", "/gw", "ns/", "", "Upper", "ns_x/gw", "-gw"])
def test_unparseable_gateways_are_spec_problems(text: str) -> None:
    assert route.parse_gateway(text) is None
    problems = route.spec_problems(spec(gateway=text))
    assert len(problems) == 1
    assert problems[0].startswith("spec.traffic.gateway:")


def test_valid_gateways_are_no_spec_problems() -> None:
    assert route.parse_gateway("infra/public") == ("infra", "public")
    assert route.parse_gateway("public") == (None, "public")
    assert route.spec_problems(spec(gateway="infra/public")) == []
    assert route.spec_problems(spec()) == []


def test_fallback_prefix_is_the_one_runbook_intents_write() -> None:
    assert route.FALLBACK_PREFIX == intents.FALLBACK_PREFIX


# --- which backends an override may name ----------------------------------------------------------


def test_backends_name_revisions_and_the_configured_fallback() -> None:
    found, problems = route.backends_of(
        override(("md:resnet-big", 60), (GOOD, 40), (SERVING, 0)), spec(fallback="resnet-big"), [SERVING, GOOD]
    )
    assert problems == []
    assert found == [route.Backend(60, fallback="resnet-big"), route.Backend(40, revision=GOOD)]
    assert [b.service("resnet") for b in found] == ["resnet-big", f"resnet-{GOOD}"]


@pytest.mark.parametrize(
    ("splits", "fallback", "problem"),
    [
        ((("md:resnet-big", 100),), None, "no spec.traffic.fallback is configured"),
        ((("md:other", 100),), "resnet-big", "the configured spec.traffic.fallback is resnet-big"),
        ((("feedbeef00", 100),), "resnet-big", "feedbeef00: no such revision"),
        (((GOOD, 50), (GOOD, 50)), "resnet-big", "listed twice"),
        (((GOOD, 0), (SERVING, 0)), "resnet-big", "every weight is 0"),
    ],
)
def test_invalid_backends_are_named(splits: tuple[tuple[str, int], ...], fallback: str | None, problem: str) -> None:
    md_spec = spec(fallback=fallback) if fallback else spec()
    _, problems = route.backends_of(override(*splits), md_spec, [SERVING, GOOD])
    assert any(problem in p for p in problems), problems


# --- replica ratios -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "total", "expected"),
    [
        ({"a": 30, "b": 70}, 4, {"a": 1, "b": 3}),
        ({"a": 50, "b": 50}, 4, {"a": 2, "b": 2}),
        ({"a": 50, "b": 50}, 1, {"a": 1, "b": 1}),  # a non-zero weight always gets a pod
        ({"a": 1, "b": 99}, 10, {"a": 1, "b": 9}),
        ({"a": 0, "b": 100}, 3, {"b": 3}),
        ({"a": 1, "b": 1, "c": 1}, 4, {"a": 2, "b": 1, "c": 1}),
        ({"a": 0}, 3, {}),
    ],
)
def test_apportion_is_proportional_with_a_floor_of_one(
    weights: dict[str, int], total: int, expected: dict[str, int]
) -> None:
    result = route.apportion(weights, total)
    assert result == expected
    if expected:
        assert sum(result.values()) == max(total, len(expected))


# --- the plan without an override -----------------------------------------------------------------


def test_no_override_and_no_route_changes_nothing() -> None:
    shift = plan(None)
    assert shift.routes == ()
    assert shift.services == ()
    assert shift.verdict is None
    assert shift.service_revision == SERVING
    assert shift.replicas == {SERVING: 4, GOOD: 0}
    assert shift.ratio is None


def test_an_existing_route_is_reset_to_the_stable_service() -> None:
    [manifest] = plan(None, route_exists=True).routes
    assert backend_refs(manifest) == [("resnet", 1)]


def test_a_configured_gateway_always_gets_a_route() -> None:
    [manifest] = plan(None, md_spec=spec(gateway="infra/public")).routes
    assert backend_refs(manifest) == [("resnet", 1)]
    assert manifest["spec"]["parentRefs"][0]["name"] == "public"


def test_without_the_gateway_api_there_is_never_a_route() -> None:
    assert plan(None, gateway_api=False, route_exists=True, md_spec=spec(gateway="public")).routes == ()


# --- the plan with the Gateway API ----------------------------------------------------------------


def test_all_traffic_to_the_fallback_routes_to_its_stable_service() -> None:
    shift = plan(override(("md:resnet-big", 100)))
    [manifest] = shift.routes
    assert backend_refs(manifest) == [("resnet-big", 100)]
    assert shift.services == ()
    assert shift.replicas == {SERVING: 4, GOOD: 0}  # the serving revision stays warm for the way back
    assert shift.service_revision == SERVING
    assert shift.verdict == route.Verdict(
        T, route.REASON_SHIFTED, "serving 100% from fallback resnet-big because of incident inc-1"
    )


def test_revision_split_uses_per_revision_services_and_warms_the_revision() -> None:
    shift = plan(override((GOOD, 30), (SERVING, 70)), ready={SERVING: 4, GOOD: 2})
    [manifest] = shift.routes
    assert backend_refs(manifest) == [(f"resnet-{GOOD}", 30), (f"resnet-{SERVING}", 70)]
    services = {s["metadata"]["name"]: s for s in shift.services}
    assert set(services) == {f"resnet-{GOOD}", f"resnet-{SERVING}"}
    assert services[f"resnet-{GOOD}"]["spec"]["selector"][labels.REVISION] == GOOD
    assert shift.replicas[GOOD] == 2  # ceil(4 x 30%)
    assert shift.replicas[SERVING] == 4
    assert shift.verdict is not None
    assert shift.verdict.message == (
        f"serving 30% from revision {GOOD}, 70% from revision {SERVING} because of incident inc-1"
    )


def test_a_cold_revision_gets_its_share_only_once_ready() -> None:
    shift = plan(override((GOOD, 30), (SERVING, 70)), ready={SERVING: 4, GOOD: 1})
    [manifest] = shift.routes
    assert backend_refs(manifest) == [(f"resnet-{SERVING}", 100)]
    assert shift.replicas[GOOD] == 2
    assert shift.verdict is not None
    assert (shift.verdict.status, shift.verdict.reason) == (F, route.REASON_WAITING)
    assert f"waiting for revision {GOOD} (1/2 ready)" in shift.verdict.message


def test_a_cold_revisions_share_stays_on_the_serving_revision_while_the_rest_moves() -> None:
    shift = plan(override(("md:resnet-big", 50), (GOOD, 50)), ready={SERVING: 4})
    [manifest] = shift.routes
    assert backend_refs(manifest) == [("resnet-big", 50), (f"resnet-{SERVING}", 50)]
    assert shift.verdict is not None
    assert shift.verdict.status is T
    assert shift.verdict.message.startswith(f"serving 50% from fallback resnet-big, 50% from revision {SERVING}")


def test_an_invalid_override_is_refused_and_the_route_reset() -> None:
    shift = plan(override(("md:elsewhere", 100)), route_exists=True)
    [manifest] = shift.routes
    assert backend_refs(manifest) == [("resnet", 1)]
    assert shift.verdict is not None
    assert (shift.verdict.status, shift.verdict.reason) == (F, route.REASON_INVALID)
    assert shift.verdict.warning
    assert f"revision {SERVING} keeps serving all traffic" in shift.verdict.message


# --- the plan without the Gateway API -------------------------------------------------------------


def test_a_fallback_split_is_impossible_without_the_gateway_api() -> None:
    shift = plan(override(("md:resnet-big", 100)), gateway_api=False)
    assert shift.routes == ()
    assert shift.replicas == {SERVING: 4, GOOD: 0}
    assert shift.service_revision == SERVING
    assert shift.verdict is not None
    assert (shift.verdict.status, shift.verdict.reason) == (F, route.REASON_NO_GATEWAY_API)
    assert shift.verdict.warning
    assert "needs the Gateway API" in shift.verdict.message


def test_revision_split_without_the_gateway_api_uses_replica_ratios() -> None:
    old = "old0000000"
    shift = plan(
        override((GOOD, 30), (SERVING, 70)),
        gateway_api=False,
        replicas={SERVING: 4, GOOD: 0, old: 2},
        ready={SERVING: 4, GOOD: 1, old: 2},
    )
    assert shift.routes == ()
    assert shift.service_revision is None  # the stable Service selects every revision
    assert shift.ratio == {GOOD: 1, SERVING: 3}
    assert shift.replicas == {GOOD: 1, SERVING: 3, old: 0}  # anything else would take a share
    assert shift.verdict is not None
    assert shift.verdict.status is T
    assert shift.verdict.message.startswith(
        f"serving 25% from revision {GOOD}, 75% from revision {SERVING} because of incident inc-1, by replica ratio 1:3"
    )


def test_replica_ratio_keeps_the_serving_revisions_pods_until_the_others_are_ready() -> None:
    shift = plan(override((GOOD, 30), (SERVING, 70)), gateway_api=False, ready={SERVING: 4})
    assert shift.replicas == {GOOD: 1, SERVING: 4}
    assert shift.verdict is not None
    assert (shift.verdict.status, shift.verdict.reason) == (F, route.REASON_WAITING)
    assert f"waiting for revision {GOOD} (0/1 ready)" in shift.verdict.message
