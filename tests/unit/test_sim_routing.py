"""Routing: Service selectors and HTTPRoute weights decide which pods get a deployment's traffic."""

from __future__ import annotations

import pytest

from vigil import labels
from vigil.sim import cluster, routing
from vigil.sim import testing as simtest

PATH = "/v2/models/md/infer"


def route(name: str, *rules: cluster.RouteRule, namespace: str = "ns") -> cluster.Route:
    return cluster.Route(namespace=namespace, name=name, rules=rules)


def rule(*backends: tuple[str, int], matches: tuple[cluster.PathMatch, ...] = ()) -> cluster.RouteRule:
    return cluster.RouteRule(
        matches=matches, backends=tuple(cluster.BackendRef("ns", name, weight) for name, weight in backends)
    )


def revision_services() -> list[cluster.Service]:
    return [simtest.md_service("md", revision=None)] + [
        simtest.service(f"md-{rev}", {labels.MODEL_DEPLOYMENT: "md", labels.REVISION: rev}) for rev in ("a", "b")
    ]


def two_revisions() -> list[cluster.Pod]:
    return [
        simtest.pod("a-0", revision="a"),
        simtest.pod("a-1", revision="a"),
        simtest.pod("b-0", revision="b", version="2"),
    ]


@pytest.mark.parametrize(
    ("selector", "pod_labels", "expected"),
    [
        ({"app": "x"}, {"app": "x", "other": "y"}, True),
        ({"app": "x", "tier": "t"}, {"app": "x"}, False),
        ({"app": "x"}, {"app": "y"}, False),
        ({}, {"app": "x"}, False),
        (None, {"app": "x"}, False),
    ],
)
def test_selector_semantics(selector: dict[str, str] | None, pod_labels: dict[str, str], expected: bool) -> None:
    assert routing.selects(selector, pod_labels) is expected


def test_service_spreads_equally_over_ready_pods() -> None:
    pods = [simtest.pod("p0"), simtest.pod("p1"), simtest.pod("p2"), simtest.pod("p3")]
    snapshot = simtest.make_cluster(pods, [simtest.md_service("md")])
    split = routing.split(snapshot, "ns", "md", PATH)
    assert split.shares == {("ns", f"p{i}"): pytest.approx(0.25) for i in range(4)}
    assert split.lost == {}


def test_not_ready_deleting_and_unsimulated_pods_get_nothing() -> None:
    deleting = cluster.Pod("ns", "gone", "u", {**simtest.pod_labels("md"), "app": "x"}, ready=True, deleting=True)
    not_vigil = cluster.Pod("ns", "plain", "u2", {"app": "x"}, ready=True)
    pods = [
        simtest.pod("ok", extra_labels={"app": "x"}),
        simtest.pod("starting", ready=False, extra_labels={"app": "x"}),
        simtest.pod("elsewhere", namespace="other", extra_labels={"app": "x"}),
        deleting,
        not_vigil,
    ]
    snapshot = simtest.make_cluster(pods, [simtest.service("md", {"app": "x"})])
    assert routing.split(snapshot, "ns", "md", PATH).shares == {("ns", "ok"): pytest.approx(1.0)}


def test_no_service_and_no_ready_pods_are_lost_with_a_reason() -> None:
    pods = [simtest.pod("p0", ready=False)]
    assert routing.split(simtest.make_cluster(pods), "ns", "md").lost == {routing.LOST_NO_SERVICE: 1.0}
    with_service = simtest.make_cluster(pods, [simtest.md_service("md")])
    assert routing.split(with_service, "ns", "md").lost == {routing.LOST_NO_READY_PODS: 1.0}


def test_changing_the_service_selector_moves_traffic() -> None:
    pods = two_revisions()
    on_a = routing.split(simtest.make_cluster(pods, [simtest.md_service("md", revision="a")]), "ns", "md", PATH)
    on_b = routing.split(simtest.make_cluster(pods, [simtest.md_service("md", revision="b")]), "ns", "md", PATH)
    assert set(on_a.shares) == {("ns", "a-0"), ("ns", "a-1")}
    assert on_b.shares == {("ns", "b-0"): pytest.approx(1.0)}


def test_route_weights_split_between_revision_services() -> None:
    snapshot = simtest.make_cluster(
        two_revisions(), revision_services(), [route("md", rule(("md-a", 80), ("md-b", 20)))]
    )
    split = routing.split(snapshot, "ns", "md", PATH)
    assert split.shares == {
        ("ns", "a-0"): pytest.approx(0.4),
        ("ns", "a-1"): pytest.approx(0.4),
        ("ns", "b-0"): pytest.approx(0.2),
    }


def test_route_overrides_the_stable_service() -> None:
    services = [simtest.md_service("md", revision="a"), *revision_services()[1:]]
    snapshot = simtest.make_cluster(two_revisions(), services, [route("md", rule(("md-b", 1)))])
    assert routing.split(snapshot, "ns", "md", PATH).shares == {("ns", "b-0"): pytest.approx(1.0)}


def test_route_backend_may_be_another_deployments_service() -> None:
    pods = [simtest.pod("md-0"), simtest.pod("fb-0", md="fallback"), simtest.pod("fb-1", md="fallback")]
    services = [simtest.md_service("md"), simtest.md_service("fallback")]
    snapshot = simtest.make_cluster(pods, services, [route("md", rule(("md", 50), ("fallback", 50)))])
    split = routing.split(snapshot, "ns", "md", PATH)
    assert split.shares == {
        ("ns", "md-0"): pytest.approx(0.5),
        ("ns", "fb-0"): pytest.approx(0.25),
        ("ns", "fb-1"): pytest.approx(0.25),
    }


def test_zero_weight_gets_nothing_and_all_zero_is_lost() -> None:
    snapshot = simtest.make_cluster(two_revisions(), revision_services(), [route("md", rule(("md-a", 0), ("md-b", 5)))])
    assert routing.split(snapshot, "ns", "md", PATH).shares == {("ns", "b-0"): pytest.approx(1.0)}
    zero = simtest.make_cluster(two_revisions(), revision_services(), [route("md", rule(("md-a", 0)))])
    assert routing.split(zero, "ns", "md", PATH).lost == {routing.LOST_NO_BACKENDS: 1.0}


def test_invalid_and_empty_backends_lose_their_share() -> None:
    services = [*revision_services(), simtest.service("md-empty", {labels.REVISION: "nothing"})]
    odd = cluster.BackendRef("ns", "md-a", 1, group="example.com", kind="Bucket")
    rules = cluster.RouteRule(
        matches=(),
        backends=(
            cluster.BackendRef("ns", "md-a", 1),
            cluster.BackendRef("ns", "missing", 1),
            cluster.BackendRef("ns", "md-empty", 1),
            odd,
        ),
    )
    snapshot = simtest.make_cluster(two_revisions(), services, [route("md", rules)])
    split = routing.split(snapshot, "ns", "md", PATH)
    assert sum(split.shares.values()) == pytest.approx(0.25)
    assert split.lost == {
        routing.LOST_INVALID_BACKEND: pytest.approx(0.5),
        routing.LOST_NO_READY_PODS: pytest.approx(0.25),
    }


def test_the_most_specific_matching_rule_wins() -> None:
    generic = rule(("md-a", 1))
    exact = rule(("md-b", 1), matches=(cluster.PathMatch("Exact", PATH),))
    header_only = rule(("md-a", 1), matches=(cluster.PathMatch("Exact", PATH, needs_headers_or_query=True),))
    snapshot = simtest.make_cluster(two_revisions(), revision_services(), [route("md", header_only, generic, exact)])
    assert routing.split(snapshot, "ns", "md", PATH).shares == {("ns", "b-0"): pytest.approx(1.0)}


def test_no_matching_rule_is_lost() -> None:
    only_get = rule(("md-a", 1), matches=(cluster.PathMatch("PathPrefix", "/v2", method="GET"),))
    snapshot = simtest.make_cluster(two_revisions(), revision_services(), [route("md", only_get)])
    assert routing.split(snapshot, "ns", "md", PATH).lost == {routing.LOST_NO_MATCHING_RULE: 1.0}


@pytest.mark.parametrize(
    ("match", "path", "expected"),
    [
        (cluster.PathMatch("PathPrefix", "/"), "/anything", True),
        (cluster.PathMatch("PathPrefix", "/v2"), "/v2/models/x/infer", True),
        (cluster.PathMatch("PathPrefix", "/v2/"), "/v2", True),
        (cluster.PathMatch("PathPrefix", "/v2"), "/v2x/models", False),
        (cluster.PathMatch("Exact", "/v2/models/x/infer"), "/v2/models/x/infer", True),
        (cluster.PathMatch("Exact", "/v2/models/x"), "/v2/models/x/infer", False),
        (cluster.PathMatch("RegularExpression", r"/v2/models/[a-z]+/infer"), "/v2/models/x/infer", True),
        (cluster.PathMatch("RegularExpression", r"([bad"), "/v2", False),
        (cluster.PathMatch("PathPrefix", "/", method="POST"), "/v2", True),
    ],
)
def test_path_matching(match: cluster.PathMatch, path: str, expected: bool) -> None:
    assert routing.path_matches(match, path, "POST") is expected


def test_shares_and_losses_always_sum_to_one() -> None:
    services = [*revision_services(), simtest.service("md-empty", {labels.REVISION: "z"})]
    for weights in [(1, 0, 0), (3, 1, 0), (1, 1, 1), (0, 0, 7), (5, 0, 2)]:
        rules = rule(("md-a", weights[0]), ("md-b", weights[1]), ("md-empty", weights[2]))
        split = routing.split(simtest.make_cluster(two_revisions(), services, [route("md", rules)]), "ns", "md", PATH)
        assert sum(split.shares.values()) + sum(split.lost.values()) == pytest.approx(1.0)
