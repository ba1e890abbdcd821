"""Traffic shifting: an incident's ``status.traffic`` rendered as an HTTPRoute, or as replica ratios.

A runbook's ``shiftTraffic`` step records a TrafficOverride (weighted backends: revisions of this
deployment, or ``md:<fallback>``) in the ModelDeployment's status; this module turns it into the
objects that actually move requests, so that the override is not just a line in ``status``.

* With the Gateway API installed, an HTTPRoute named ``<md>`` carries the weights. Its backends
  are the per-revision Services ``<md>-<revision>`` (pinned to the revisions the override names,
  so a rollout finishing meanwhile cannot silently redirect a share) or the fallback deployment's
  stable Service ``<fallback>``. Its parent is ``spec.traffic.gateway`` when set; otherwise the
  stable Service ``<md>`` itself (a GAMMA mesh route): a route without any parent is ignored by
  every implementation, so it would shift nothing outside the sandbox's simulator. Once a route
  exists it is never left behind with stale weights: without an override it sends 100% to the
  stable Service, which is what makes clearing an override move the traffic back.
* Without the Gateway API, revision splits are approximated the way kube-proxy can do it: the
  stable Service selects every revision of the deployment and each revision runs replicas in
  proportion to its weight (at least one for a non-zero weight). Every other revision must then
  run no pods at all, or it would take a share too. A share for another deployment cannot be
  expressed with one Service, so such an override is refused with a condition, not half-applied.

Shifted shares wait for their pods, like a rollout: a revision that has no ready pods yet gets
no share of the route (it stays on the serving revision), and under replica ratios the serving
revision keeps its replicas until the other revisions are ready. A fallback deployment's
readiness is not visible here; the runbook's verification judges the result.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence

from vigil import labels
from vigil.api import conditions as cond
from vigil.api import modeldeployment as mdapi
from vigil.render import revision as revisions
from vigil.render import workload

GROUP = "gateway.networking.k8s.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "HTTPRoute"
PLURAL = "httproutes"
# Same spelling as vigil.act.intents.FALLBACK_PREFIX (rendering does not depend on the act layer).
FALLBACK_PREFIX = "md:"

TRAFFIC_SHIFTED = "TrafficShifted"
REASON_SHIFTED = "IncidentTrafficShift"
REASON_NO_GATEWAY_API = "GatewayAPIUnavailable"
REASON_INVALID = "InvalidTrafficShift"
REASON_WAITING = "WaitingForBackends"
REASON_SPEC = "SpecTraffic"

_DNS_LABEL = re.compile(mdapi.DNS_LABEL)
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclasses.dataclass(frozen=True)
class Backend:
    """One weighted destination: a revision of this deployment, or a fallback deployment."""

    weight: int
    revision: str | None = None
    fallback: str | None = None

    def service(self, md_name: str) -> str:
        """The Service that receives this backend's share."""
        if self.fallback is not None:
            return self.fallback
        return revisions.workload_name(md_name, str(self.revision))

    def describe(self) -> str:
        return f"fallback {self.fallback}" if self.fallback is not None else f"revision {self.revision}"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The TrafficShifted condition this decision calls for."""

    status: cond.ConditionStatus
    reason: str
    message: str

    @property
    def warning(self) -> bool:
        """An override that could not be carried out deserves a Warning Event."""
        return self.reason in (REASON_NO_GATEWAY_API, REASON_INVALID)


@dataclasses.dataclass(frozen=True)
class Shift:
    """What the traffic override (or its absence) asks of the children.

    ``replicas`` is the complete replica plan (the caller's plan, adjusted); ``service_revision``
    is what the stable Service selects (None: every revision, under replica ratios); ``ratio``
    holds the replica-ratio apportionment while one is in force.
    """

    replicas: Mapping[str, int]
    service_revision: str | None
    routes: tuple[workload.Manifest, ...] = ()
    services: tuple[workload.Manifest, ...] = ()
    ratio: Mapping[str, int] | None = None
    verdict: Verdict | None = None


def parse_gateway(text: str) -> tuple[str | None, str] | None:
    """``namespace/name`` or ``name`` as (namespace, name); None if it is neither."""
    namespace, slash, name = text.rpartition("/")
    if not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
        return None
    if slash and (not _DNS_LABEL.match(namespace) or len(namespace) > 63):
        return None
    return (namespace or None, name)


def spec_problems(spec: mdapi.ModelDeploymentSpec) -> list[str]:
    """Traffic settings the schema cannot reject: each message names the field."""
    gateway = spec.traffic.gateway
    if gateway is not None and parse_gateway(gateway) is None:
        return [f"spec.traffic.gateway: {gateway!r} is neither <name> nor <namespace>/<name> of a Gateway"]
    return []


def parent_refs(owner: workload.Owner, gateway: str | None) -> list[workload.Manifest]:
    """The Gateway of ``spec.traffic.gateway``, else the stable Service (a mesh route).

    An unparseable gateway (reported as InvalidSpec through :func:`spec_problems`) attaches to the
    Service as well, so the route can still be written and reset.
    """
    parsed = parse_gateway(gateway) if gateway else None
    if parsed is None:
        return [{"group": "", "kind": "Service", "name": owner.name, "port": labels.HTTP_PORT}]
    namespace, name = parsed
    ref: workload.Manifest = {"group": GROUP, "kind": "Gateway", "name": name}
    if namespace is not None:
        ref["namespace"] = namespace
    return [ref]


def http_route(owner: workload.Owner, gateway: str | None, backends: Sequence[tuple[str, int]]) -> workload.Manifest:
    """HTTPRoute ``<md>``: one rule for every path, weighted over Services on Triton's HTTP port."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": owner.child_metadata(),
        "spec": {
            "parentRefs": parent_refs(owner, gateway),
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {"group": "", "kind": "Service", "name": name, "port": labels.HTTP_PORT, "weight": weight}
                        for name, weight in backends
                    ],
                }
            ],
        },
    }


def stable_route(owner: workload.Owner, gateway: str | None) -> workload.Manifest:
    """The route without an override: everything to the stable Service ``<md>``."""
    return http_route(owner, gateway, [(owner.name, 1)])


def backends_of(
    traffic: mdapi.TrafficOverride, spec: mdapi.ModelDeploymentSpec, known: Sequence[str]
) -> tuple[list[Backend], list[str]]:
    """The override's backends with a non-zero weight, and what is wrong with it (if anything).

    A fallback must be this deployment's ``spec.traffic.fallback``: that field is the user's
    consent for another deployment to take the traffic. A revision must be in the history.
    """
    found: list[Backend] = []
    problems: list[str] = []
    seen: set[str] = set()
    for split in traffic.splits:
        name = split.backend
        if name in seen:
            problems.append(f"backend {name} is listed twice")
            continue
        seen.add(name)
        if name.startswith(FALLBACK_PREFIX):
            fallback = name[len(FALLBACK_PREFIX) :]
            allowed = spec.traffic.fallback
            if allowed is None:
                problems.append(f"backend {name}: no spec.traffic.fallback is configured")
            elif fallback != allowed:
                problems.append(f"backend {name}: the configured spec.traffic.fallback is {allowed}")
            elif split.weight > 0:
                found.append(Backend(split.weight, fallback=fallback))
        elif name not in known:
            problems.append(f"backend {name}: no such revision in status.revisions")
        elif split.weight > 0:
            found.append(Backend(split.weight, revision=name))
    if not problems and not found:
        problems.append("every weight is 0")
    return found, problems


def apportion(weights: Mapping[str, int], total: int) -> dict[str, int]:
    """``total`` replicas in proportion to ``weights``; each positive weight gets at least one.

    Largest deficit first (ties: larger weight, then name), so the result is deterministic and
    the total is exactly ``max(total, number of positive weights)``.
    """
    positive = {key: weight for key, weight in weights.items() if weight > 0}
    if not positive:
        return {}
    total = max(total, len(positive))
    whole = sum(positive.values())
    counts = dict.fromkeys(positive, 1)
    for _ in range(total - len(positive)):
        best = max(sorted(positive), key=lambda key: (total * positive[key] / whole - counts[key], positive[key]))
        counts[best] += 1
    return counts


def _percent(shares: Sequence[tuple[str, int]]) -> str:
    whole = sum(weight for _, weight in shares)
    return ", ".join(f"{round(100 * weight / whole)}% from {what}" for what, weight in shares)


def _needed(weight: int, whole: int, wanted: int) -> int:
    return max(1, math.ceil(wanted * weight / whole))


def plan(
    owner: workload.Owner,
    spec: mdapi.ModelDeploymentSpec,
    traffic: mdapi.TrafficOverride | None,
    serving: str,
    wanted: int,
    replicas: Mapping[str, int],
    ready: Mapping[str, int],
    gateway_api: bool,
    route_exists: bool,
) -> Shift:
    """How traffic flows this reconcile.

    ``serving`` is the revision the stable Service selects without an override; ``replicas`` the
    caller's replica plan (every known revision); ``ready`` the ready pods per revision;
    ``route_exists`` whether HTTPRoute ``<md>`` is in the cluster (only possible with the API).
    """
    keep_route = gateway_api and (route_exists or spec.traffic.gateway is not None)
    unchanged = Shift(
        replicas=dict(replicas),
        service_revision=serving,
        routes=(stable_route(owner, spec.traffic.gateway),) if keep_route else (),
    )
    if traffic is None:
        return unchanged
    found, problems = backends_of(traffic, spec, list(replicas))
    if problems:
        message = (
            f"traffic shift of incident {traffic.incident} ignored: {'; '.join(problems)}; "
            f"revision {serving} keeps serving all traffic"
        )
        return dataclasses.replace(unchanged, verdict=Verdict(cond.ConditionStatus.FALSE, REASON_INVALID, message))
    if gateway_api:
        return _routed(owner, spec, traffic, found, serving, wanted, replicas, ready)
    away = [b for b in found if b.fallback is not None]
    if away:
        asked = _percent([(b.describe(), b.weight) for b in found])
        return dataclasses.replace(
            unchanged,
            verdict=Verdict(
                cond.ConditionStatus.FALSE,
                REASON_NO_GATEWAY_API,
                f"incident {traffic.incident} asks to serve {asked}, but sending traffic to another deployment "
                f"needs the Gateway API (HTTPRoute), which this cluster does not serve; revision {serving} "
                "keeps serving all traffic",
            ),
        )
    return _ratio(traffic, found, serving, wanted, replicas, ready, owner.name)


def _routed(
    owner: workload.Owner,
    spec: mdapi.ModelDeploymentSpec,
    traffic: mdapi.TrafficOverride,
    found: list[Backend],
    serving: str,
    wanted: int,
    replicas: Mapping[str, int],
    ready: Mapping[str, int],
) -> Shift:
    whole = sum(b.weight for b in found)
    plan_replicas = dict(replicas)
    effective: list[Backend] = []
    held = 0
    waiting: list[str] = []
    for backend in found:
        rev = backend.revision
        if rev is not None and rev != serving:
            needed = _needed(backend.weight, whole, wanted)
            plan_replicas[rev] = max(plan_replicas.get(rev, 0), needed)
            if ready.get(rev, 0) < needed:
                held += backend.weight
                waiting.append(f"revision {rev} ({ready.get(rev, 0)}/{needed} ready)")
                continue
        effective.append(backend)
    if held:
        index = next((i for i, b in enumerate(effective) if b.revision == serving), None)
        if index is None:
            effective.append(Backend(held, revision=serving))
        else:
            effective[index] = Backend(effective[index].weight + held, revision=serving)
    manifest = http_route(owner, spec.traffic.gateway, [(b.service(owner.name), b.weight) for b in effective])
    services = tuple(workload.revision_service(owner, str(b.revision)) for b in effective if b.revision is not None)
    shares = _percent([(b.describe(), b.weight) for b in effective])
    moved = any(b.revision != serving for b in effective)
    if waiting:
        verdict = Verdict(
            cond.ConditionStatus.TRUE if moved else cond.ConditionStatus.FALSE,
            REASON_SHIFTED if moved else REASON_WAITING,
            f"serving {shares} because of incident {traffic.incident}; waiting for {', '.join(waiting)}",
        )
    else:
        verdict = Verdict(
            cond.ConditionStatus.TRUE, REASON_SHIFTED, f"serving {shares} because of incident {traffic.incident}"
        )
    return Shift(
        replicas=plan_replicas, service_revision=serving, routes=(manifest,), services=services, verdict=verdict
    )


def _ratio(
    traffic: mdapi.TrafficOverride,
    found: list[Backend],
    serving: str,
    wanted: int,
    replicas: Mapping[str, int],
    ready: Mapping[str, int],
    md_name: str,
) -> Shift:
    weights = {str(b.revision): b.weight for b in found}
    ratio = apportion(weights, wanted)
    plan_replicas = dict.fromkeys(replicas, 0)
    plan_replicas.update(ratio)
    waiting = [
        f"revision {rev} ({ready.get(rev, 0)}/{count} ready)"
        for rev, count in ratio.items()
        if rev != serving and ready.get(rev, 0) < count
    ]
    pods = ":".join(str(count) for count in ratio.values())
    asked = "/".join(str(weight) for weight in weights.values())
    how = f"by replica ratio {pods} behind Service {md_name}, for weights {asked}: the Gateway API is not installed"
    if waiting:
        # Like a rollout: the serving revision keeps its pods until the others are ready.
        plan_replicas[serving] = max(plan_replicas.get(serving, 0), replicas.get(serving, 0))
        verdict = Verdict(
            cond.ConditionStatus.FALSE,
            REASON_WAITING,
            f"incident {traffic.incident}: shifting {how}; waiting for {', '.join(waiting)}",
        )
    else:
        shares = _percent([(f"revision {rev}", count) for rev, count in ratio.items()])
        verdict = Verdict(
            cond.ConditionStatus.TRUE, REASON_SHIFTED, f"serving {shares} because of incident {traffic.incident}, {how}"
        )
    return Shift(replicas=plan_replicas, service_revision=None, ratio=ratio, verdict=verdict)
