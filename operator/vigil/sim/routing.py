"""Which pods receive a ModelDeployment's traffic, in what shares: Service selectors and HTTPRoutes.

The operator moves traffic by editing a Service selector or an HTTPRoute's backend weights; the
simulator must honour exactly those objects, or a rollback in the sandbox would "work" without
moving anything. Clients of a deployment call the stable Service ``<md>``; when an HTTPRoute
``<md>`` exists the gateway splits by its weights instead, possibly onto per-revision Services or
onto another deployment's Service (a fallback).

Semantics follow the Gateway API where they matter: the most specific matching rule wins; a
backend's share is its weight over the rule's total; an invalid backend (not a Service, or a
Service that does not exist) gets its share answered with 500s, and a Service without Ready
endpoints with 503s. The simulator records those shares as lost traffic with a reason, since no
Triton pod sees them. Inside a Service, Ready endpoints share equally, as kube-proxy does.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from vigil.sim import cluster

LOST_NO_SERVICE = "no-service"
LOST_NO_READY_PODS = "no-ready-pods"
LOST_NO_MATCHING_RULE = "no-matching-rule"
LOST_NO_BACKENDS = "no-backends"
LOST_INVALID_BACKEND = "invalid-backend"


@dataclasses.dataclass(frozen=True)
class Split:
    """Fractions of one deployment's requests: per pod, and lost per reason. They sum to 1."""

    shares: Mapping[cluster.Key, float]
    lost: Mapping[str, float]


def selects(selector: Mapping[str, str] | None, pod_labels: Mapping[str, str]) -> bool:
    """Service selector semantics: every pair must match; no or an empty selector selects nothing."""
    if not selector:
        return False
    return all(pod_labels.get(key) == value for key, value in selector.items())


def service_endpoints(snapshot: cluster.Cluster, namespace: str, name: str) -> list[cluster.Pod] | None:
    """Ready simulated pods behind Service ``namespace/name``, sorted; None if there is no such Service."""
    service = snapshot.services.get((namespace, name))
    if service is None:
        return None
    if not service.selector:
        return []
    pods = [pod for pod in snapshot.selected(namespace, service.selector) if pod.served]
    return sorted(pods, key=lambda pod: pod.name)


def path_matches(match: cluster.PathMatch, path: str, method: str) -> bool:
    if match.needs_headers_or_query:
        return False
    if match.method is not None and match.method.upper() != method.upper():
        return False
    if match.path_type == "Exact":
        return path == match.path
    if match.path_type == "RegularExpression":
        try:
            return re.fullmatch(match.path, path) is not None
        except re.error:
            return False
    prefix = match.path.rstrip("/")
    # Prefixes match whole path elements: /v2 matches /v2/models but not /v2x.
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


def _precedence(match: cluster.PathMatch) -> tuple[int, int, int]:
    kind = {"Exact": 2, "PathPrefix": 1}.get(match.path_type, 0)
    return (kind, len(match.path), 1 if match.method else 0)


def select_rule(route: cluster.Route, path: str, method: str = "POST") -> cluster.RouteRule | None:
    """The rule that takes a request: the most specific match; earlier rules win ties."""
    best: cluster.RouteRule | None = None
    best_rank: tuple[int, int, int] | None = None
    for rule in route.rules:
        matches = rule.matches or (cluster.PathMatch(),)
        for match in matches:
            if not path_matches(match, path, method):
                continue
            rank = _precedence(match)
            if best_rank is None or rank > best_rank:
                best, best_rank = rule, rank
    return best


def _spread(pods: list[cluster.Pod], fraction: float, shares: dict[cluster.Key, float]) -> None:
    for pod in pods:
        shares[pod.key] = shares.get(pod.key, 0.0) + fraction / len(pods)


def _add(lost: dict[str, float], reason: str, fraction: float) -> None:
    if fraction > 0:
        lost[reason] = lost.get(reason, 0.0) + fraction


def split(snapshot: cluster.Cluster, namespace: str, name: str, path: str = "/") -> Split:
    """Where requests for ModelDeployment ``namespace/name`` (at ``path``) go right now."""
    shares: dict[cluster.Key, float] = {}
    lost: dict[str, float] = {}
    route = snapshot.routes.get((namespace, name))
    if route is None:
        pods = service_endpoints(snapshot, namespace, name)
        if pods is None:
            _add(lost, LOST_NO_SERVICE, 1.0)
        elif not pods:
            _add(lost, LOST_NO_READY_PODS, 1.0)
        else:
            _spread(pods, 1.0, shares)
        return Split(shares=shares, lost=lost)

    rule = select_rule(route, path)
    if rule is None:
        return Split(shares={}, lost={LOST_NO_MATCHING_RULE: 1.0})
    total = sum(max(ref.weight, 0) for ref in rule.backends)
    if total <= 0:
        return Split(shares={}, lost={LOST_NO_BACKENDS: 1.0})
    for ref in rule.backends:
        fraction = max(ref.weight, 0) / total
        if fraction == 0:
            continue
        if ref.kind != "Service" or ref.group not in ("", "core"):
            _add(lost, LOST_INVALID_BACKEND, fraction)
            continue
        pods = service_endpoints(snapshot, ref.namespace, ref.name)
        if pods is None:
            _add(lost, LOST_INVALID_BACKEND, fraction)
        elif not pods:
            _add(lost, LOST_NO_READY_PODS, fraction)
        else:
            _spread(pods, fraction, shares)
    return Split(shares=shares, lost=lost)
