"""The reconcile decision: (ModelDeployment, what runs now, time) -> (objects to apply, new status).

Pure and deterministic, so every rollout rule is unit-tested state-in/state-out. The rules:

* The *target* revision is the spec's, unless a rollback override names another one. A new
  generation supersedes the scale-out and traffic overrides (GitOps wins), and the rollback when
  it brings a new revision. A generation that keeps the revision the incident rolled back *from*
  (``kubectl scale`` on the scale subresource, new SLOs, a bake time) keeps the rollback, which
  then runs at the new replica count: re-rolling out the bad revision is never a side effect of
  an edit that did not touch the pods. A spec vigil cannot honour (InvalidSpec) supersedes nothing.
* The target runs at the spec's replicas (or a scale override's). Traffic (the stable Service)
  stays on the *current* revision until the target has all its replicas ready, then switches:
  a rollout never drops serving capacity, and a rollback is a switch to warm pods.
* After a switch the previous revision stays warm for ``bakeTime`` (a quick way back), unless it
  is the bad revision a rollback moved away from. Every other revision is scaled to zero and kept,
  up to ``revisionHistoryLimit``, as a rollback target.
* A traffic override (``status.traffic``, a runbook's shiftTraffic) becomes an HTTPRoute with
  weighted backends when the cluster serves the Gateway API, or replica ratios behind the stable
  Service when it does not (see :mod:`vigil.render.route`); TrafficShifted says which and why.
* With ``spec.validation`` the switch also waits for the golden-request gate
  (:mod:`vigil.gate.verdict`): the target's Ready pods are handed to the edge to validate
  (``Outcome.validate``), and traffic moves only on a durable ``Passed`` verdict. A ``Failed``
  revision (``onFailure: block``) is scaled to zero and stays off the wire until a new spec
  generation; the first revision of a deployment is not served at all until it passed. Rollbacks
  to last-known-good are never gated.
* Conditions follow reality: Available (serving revision has its replicas), Progressing (a
  rollout is under way), Degraded (the API server refuses the pods, the scheduler cannot place
  them, pods crash, or the spec has a problem the schema cannot catch), each with an Event on a
  transition.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping

from vigil.api import conditions as cond
from vigil.api import modeldeployment as mdapi
from vigil.api import slo as sloapi
from vigil.api import validation as vapi
from vigil.diagnose import cause
from vigil.diagnose import pods as podfacts
from vigil.gate import verdict as gate
from vigil.render import revision as revisions
from vigil.render import route, workload

AVAILABLE = "Available"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
ROLLED_BACK = "RolledBack"
SCALED_OUT = "ScaledOut"
TRAFFIC_SHIFTED = route.TRAFFIC_SHIFTED
FAILED_CREATE = "FailedCreate"

T = cond.ConditionStatus.TRUE
F = cond.ConditionStatus.FALSE


@dataclasses.dataclass(frozen=True)
class Workload:
    """What one revision's Deployment reports."""

    revision: str
    replicas: int
    ready: int
    available: int
    refused: str | None = None
    """The API server's message while it refuses to create this revision's pods (the Deployment's
    ``ReplicaFailure`` condition: Pod Security admission, a ResourceQuota, a webhook...)."""


@dataclasses.dataclass(frozen=True)
class Observed:
    workloads: Mapping[str, Workload]
    pods: tuple[podfacts.PodFacts, ...] = ()
    """The deployment's live pods, as the API server reports them (judged by :mod:`vigil.diagnose.cause`)."""
    http_route: bool = False
    """Whether HTTPRoute ``<md>`` exists (it is then kept, at 100% to the stable Service if need be)."""
    service: bool | None = None
    """Whether the stable Service ``<md>`` exists (None: not known, as when it was just applied)."""


Event = cond.Event


@dataclasses.dataclass(frozen=True)
class Validate:
    """The edge should send the golden requests to these Ready pods of ``revision`` now."""

    revision: str
    generation: int
    pods: tuple[str, ...]
    model: str
    version: str


@dataclasses.dataclass(frozen=True)
class Outcome:
    deployments: tuple[workload.Manifest, ...]
    delete: tuple[str, ...]
    service: workload.Manifest | None
    status: mdapi.ModelDeploymentStatus
    events: tuple[Event, ...]
    services: tuple[workload.Manifest, ...] = ()
    """Per-revision Services the routes send to (apply them before the routes)."""
    routes: tuple[workload.Manifest, ...] = ()
    """HTTPRoute manifests (only when the cluster serves the Gateway API)."""
    validate: Validate | None = None
    """Golden requests to send (recorded as Validating in ``status`` already)."""
    retry_in: float | None = None
    """Seconds until a revision that could not be validated yet is tried again."""


@dataclasses.dataclass
class _Draft:
    """Mutable working copy while one decision is made."""

    status: mdapi.ModelDeploymentStatus
    events: list[Event]
    generation: int
    now: datetime.datetime

    def condition(
        self, type_: str, status: cond.ConditionStatus, reason: str, message: str, warning: bool = False
    ) -> None:
        self.status.conditions, flipped = cond.set_condition(
            self.status.conditions, type_, status, reason, message, self.generation, self.now
        )
        if flipped:
            warning = warning or (type_ == DEGRADED and status is T) or (type_ == AVAILABLE and status is F)
            self.events.append(Event("Warning" if warning else "Normal", f"{type_}{status.value}", message))


def _seconds_since(stamp: str | None, now: datetime.datetime) -> float:
    if stamp is None:
        return 0.0
    return (now - cond.parse_time(stamp)).total_seconds()


def _clear_stale_overrides(draft: _Draft, spec_revision: str | None) -> None:
    """Drop the overrides a new spec generation supersedes; see the module docstring for the rules.

    ``spec_revision``: the revision the new spec asks for, None when the spec cannot be honoured.
    """
    generation = draft.generation
    status = draft.status
    if status.rollback is not None and status.rollback.generation != generation and spec_revision is not None:
        rb = status.rollback
        if spec_revision == rb.from_revision:
            rb.generation = generation
            draft.events.append(
                Event(
                    "Normal",
                    "RollbackKept",
                    f"spec generation {generation} keeps revision {rb.from_revision} that incident {rb.incident} "
                    f"rolled back from: still serving {rb.revision}, with the new spec's replicas",
                )
            )
        else:
            draft.events.append(
                Event(
                    "Normal",
                    "OverrideCleared",
                    f"spec generation {generation} (revision {spec_revision}) supersedes the rollback to {rb.revision}",
                )
            )
            status.rollback = None
    if status.scale is not None and status.scale.generation != generation:
        draft.events.append(
            Event("Normal", "OverrideCleared", f"spec generation {generation} supersedes the scale-out")
        )
        status.scale = None
    if status.traffic is not None and status.traffic.generation != generation:
        draft.events.append(
            Event("Normal", "OverrideCleared", f"spec generation {generation} supersedes the traffic shift")
        )
        status.traffic = None


def _record_revision(
    status: mdapi.ModelDeploymentStatus,
    spec: mdapi.ModelDeploymentSpec,
    name: str,
    generation: int,
    now: datetime.datetime,
) -> list[Event]:
    if any(r.name == name for r in status.revisions):
        return []
    shape = mdapi.PodShape(model=spec.model, triton=spec.triton)
    status.revisions.append(
        mdapi.Revision(
            name=name,
            model_version=spec.model.version,
            shape=shape,
            generation=generation,
            created=cond.rfc3339(now),
        )
    )
    return [Event("Normal", "RevisionCreated", f"revision {name} (model version {spec.model.version})")]


def _trim_history(status: mdapi.ModelDeploymentStatus, keep: set[str], limit: int) -> None:
    while len(status.revisions) > limit:
        victim = next((r for r in status.revisions if r.name not in keep), None)
        if victim is None:
            return
        status.revisions.remove(victim)


def _track_goodness(
    status: mdapi.ModelDeploymentStatus,
    spec: mdapi.ModelDeploymentSpec,
    slo_met: Mapping[str, bool | None],
    now: datetime.datetime,
) -> list[Event]:
    """Mark last-known-good: a serving revision that met its SLOs (or, without SLOs, stayed ready)
    for the whole bake time. Unknown verdicts (no data) neither start nor break a good run."""
    bake = sloapi.duration_seconds(spec.bake_time)
    events: list[Event] = []
    for rev in status.revisions:
        if rev.name != status.current_revision:
            continue
        verdict: bool | None = (rev.ready_since is not None) if not spec.slos else slo_met.get(rev.name)
        if verdict is False:
            rev.good_since = None
            continue
        if verdict is True and rev.good_since is None:
            rev.good_since = cond.rfc3339(now)
        if not rev.last_known_good and rev.good_since is not None and _seconds_since(rev.good_since, now) >= bake:
            rev.last_known_good = True
            events.append(Event("Normal", "LastKnownGood", f"revision {rev.name} met its SLOs for {spec.bake_time}"))
    return events


def decide(
    md: mdapi.ModelDeployment,
    uid: str,
    observed: Observed,
    now: datetime.datetime,
    slo_met: Mapping[str, bool | None] | None = None,
    gateway_api: bool = False,
) -> Outcome:
    """Decide the children and status of one ModelDeployment.

    ``gateway_api``: whether the cluster serves ``gateway.networking.k8s.io/v1`` HTTPRoutes, which
    decides how a traffic override is carried out.
    """
    name = str(md.metadata.get("name"))
    namespace = str(md.metadata.get("namespace"))
    generation = int(md.metadata.get("generation") or 0)
    owner = workload.Owner(name=name, namespace=namespace, uid=uid)
    spec = md.spec
    draft = _Draft(status=md.status.model_copy(deep=True), events=[], generation=generation, now=now)
    status = draft.status
    status.observed_generation = generation
    problems = route.spec_problems(spec)
    desired = revisions.revision_of(spec)
    _clear_stale_overrides(draft, None if problems else desired)

    if problems:
        draft.condition(DEGRADED, T, "InvalidSpec", "; ".join(problems))
        # Keep serving whatever serves now; never roll out a spec vigil cannot honour.
        desired = status.desired_revision or desired
        if not any(r.name == desired for r in status.revisions):
            return _finish(owner, draft, {}, observed, serving=None)
    else:
        draft.events.extend(_record_revision(status, spec, desired, generation, now))
    status.desired_revision = desired

    target = mdapi.replicas_target(status, desired)
    wanted = status.scale.replicas if status.scale is not None else spec.replicas
    current = status.current_revision
    if current is not None and not any(r.name == current for r in status.revisions):
        current = None

    target_load = observed.workloads.get(target)
    target_ready = target_load is not None and target_load.ready >= wanted and target_load.replicas == wanted
    replicas: dict[str, int] = {target: wanted}
    check = _gate(
        draft, spec, target, current, rollback=status.rollback is not None and status.rollback.revision == target
    )
    if check.blocked:
        replicas[target] = 0  # a revision that answered wrongly gives its GPUs back
    if current == target or wanted == 0 or (check.open and (current is None or target_ready)):
        if current is not None and current != target:
            status.previous_revision = current
            status.switched_at = cond.rfc3339(now)
            draft.events.append(
                Event("Normal", "TrafficSwitched", f"traffic moved from revision {current} to {target}")
            )
        elif current is None:
            status.switched_at = cond.rfc3339(now)
        current = target
    elif current is not None:
        current_load = observed.workloads.get(current)
        replicas[current] = current_load.replicas if current_load is not None else wanted
    status.current_revision = current
    validate = _validate(draft, spec, observed, target, current, check, target_ready, wanted)
    if current is None:
        return _unserved(owner, draft, observed, target, wanted, replicas, validate, check)

    previous = status.previous_revision
    bad = status.rollback.from_revision if status.rollback is not None else None
    if previous is not None and previous not in replicas and previous != bad:
        previous_load = observed.workloads.get(previous)
        warm = _seconds_since(status.switched_at, now) < sloapi.duration_seconds(spec.bake_time)
        if warm and previous_load is not None:
            replicas[previous] = previous_load.replicas
    for rev in status.revisions:
        replicas.setdefault(rev.name, 0)
    shift = route.plan(
        owner,
        spec,
        status.traffic,
        serving=current,
        wanted=wanted,
        replicas=replicas,
        ready={rev: load.ready for rev, load in observed.workloads.items()},
        gateway_api=gateway_api,
        route_exists=observed.http_route,
    )
    replicas = dict(shift.replicas)

    _trim_history(status, {target, current, *(r for r, n in replicas.items() if n > 0)}, spec.revision_history_limit)
    replicas = {r: n for r, n in replicas.items() if any(x.name == r for x in status.revisions)}

    for rev in status.revisions:
        load = observed.workloads.get(rev.name)
        if rev.ready_since is None and load is not None and load.replicas > 0 and load.ready >= load.replicas:
            rev.ready_since = cond.rfc3339(now)
    draft.events.extend(_track_goodness(status, spec, slo_met or {}, now))

    if not problems:
        _degraded(draft, observed, target, now)
    _progress(draft, observed, target, current, wanted, replicas if shift.ratio is not None else None)
    _overrides(draft, desired)
    _traffic(draft, shift, current)
    _blocked(draft, target, check)
    outcome = _finish(owner, draft, replicas, observed, serving=current, shift=shift)
    return dataclasses.replace(outcome, validate=validate, retry_in=check.retry_in)


@dataclasses.dataclass(frozen=True)
class _GateCheck:
    """What the golden-request gate says about moving traffic to the target revision."""

    gated: bool = False
    open: bool = True
    """Traffic may move to the target (not gated, passed, or failed with onFailure: warn)."""
    blocked: bool = False
    """Failed with onFailure: block for this generation: the target stays off the wire."""
    retry_in: float | None = None


def _gate(
    draft: _Draft, spec: mdapi.ModelDeploymentSpec, target: str, current: str | None, rollback: bool
) -> _GateCheck:
    """Judge the target revision against the gate and keep the ``Validated`` condition honest."""
    revision = next(r for r in draft.status.revisions if r.name == target)
    found = gate.deployment_condition(spec, revision, rollback, draft.generation, serving=current == target)
    if found is None:
        draft.status.conditions = [c for c in draft.status.conditions if c.type != gate.VALIDATED]
    else:
        value, reason, message = found
        draft.condition(gate.VALIDATED, value, reason, message, warning=value is F)
    if spec.validation is None or current == target or not gate.gated(spec, revision, rollback):
        return _GateCheck()
    failed = gate.failed(revision, draft.generation)
    warn = spec.validation.on_failure is vapi.OnFailure.WARN
    return _GateCheck(
        gated=True,
        open=gate.passed(revision) or (failed and warn),
        blocked=failed and not warn,
        retry_in=gate.retry_in(revision, draft.generation, draft.now),
    )


def _validate(
    draft: _Draft,
    spec: mdapi.ModelDeploymentSpec,
    observed: Observed,
    target: str,
    current: str | None,
    check: _GateCheck,
    target_ready: bool,
    wanted: int,
) -> Validate | None:
    """Golden requests are due: the target is gated, not yet proven, and all its pods are Ready.

    The intent (``Validating``) is recorded in status here, before the edge sends anything, so an
    operator that dies mid-validation leaves a record that makes its successor validate again.
    The Deployment's readyReplicas can run ahead of the pod cache: validating then would prove only
    the pods seen so far, so the gate waits until the cache holds as many Ready pods.
    """
    if not check.gated or check.open or check.blocked or target == current or not target_ready:
        return None
    revision = next(r for r in draft.status.revisions if r.name == target)
    if not gate.due(revision, draft.generation, draft.now):
        return None
    pods = tuple(sorted(p.name for p in observed.pods if p.revision == target and p.ready))
    if not pods or len(pods) < wanted:
        return None
    validation = spec.validation
    gate.start(revision, draft.generation, pods, validation.requests if validation else None, draft.now)
    draft.events.append(
        Event("Normal", "ValidationStarted", revision.validation.message if revision.validation else "")
    )
    return Validate(
        revision=target,
        generation=draft.generation,
        pods=pods,
        model=revision.shape.model.name,
        version=revision.shape.model.version,
    )


def _blocked(draft: _Draft, target: str, check: _GateCheck) -> None:
    if check.blocked:
        draft.condition(
            PROGRESSING,
            F,
            "ValidationFailed",
            f"revision {target} failed its golden requests: traffic stays on revision "
            f"{draft.status.current_revision}; a new spec generation is needed to try again",
            warning=True,
        )


def _unserved(
    owner: workload.Owner,
    draft: _Draft,
    observed: Observed,
    target: str,
    wanted: int,
    replicas: dict[str, int],
    validate: Validate | None,
    check: _GateCheck,
) -> Outcome:
    """The first revision of a deployment, gated and not passed yet: it runs, but nothing serves."""
    status = draft.status
    for rev in status.revisions:
        replicas.setdefault(rev.name, 0)
        load = observed.workloads.get(rev.name)
        if rev.ready_since is None and load is not None and load.replicas > 0 and load.ready >= load.replicas:
            rev.ready_since = cond.rfc3339(draft.now)
    load = observed.workloads.get(target)
    status.replicas = 0
    status.ready_replicas = 0
    status.model_version = None
    why = "failed its golden requests" if check.blocked else "has not passed its golden requests yet"
    draft.condition(AVAILABLE, F, "AwaitingValidation", f"nothing serves: revision {target} {why}")
    if check.blocked:
        _blocked(draft, target, check)
    else:
        ready = load.ready if load is not None else 0
        draft.condition(
            PROGRESSING,
            T,
            "RolloutInProgress",
            f"revision {target}: {ready}/{wanted} replicas ready, awaiting validation",
        )
    degraded = cond.find(status.conditions, DEGRADED)
    if degraded is None or degraded.reason != "InvalidSpec":
        _degraded(draft, observed, target, draft.now)
    outcome = _finish(owner, draft, replicas, observed, serving=None)
    status.selector = ",".join(f"{k}={v}" for k, v in workload.selector_labels(owner.name, target).items())
    return dataclasses.replace(outcome, validate=validate, retry_in=check.retry_in)


def _degraded(draft: _Draft, observed: Observed, target: str, now: datetime.datetime) -> None:
    mine = [p for p in observed.pods if p.revision == target]
    unschedulable = [p for p in mine if cause.unschedulable(p)]
    crashing = [p for p in mine if cause.failing(p, now)]
    load = observed.workloads.get(target)
    if load is not None and load.refused is not None:
        # No pod exists to show why: only the Deployment knows, so without this the user would see
        # nothing but Available=False.
        before = cond.find(draft.status.conditions, DEGRADED)
        message = f"the API server refuses pods of revision {target}: {load.refused}"
        draft.condition(DEGRADED, T, FAILED_CREATE, message)
        if before is not None and before.status is T and before.reason != FAILED_CREATE:
            draft.events.append(Event("Warning", FAILED_CREATE, message))  # Degraded already, for another reason
    elif unschedulable:
        first = unschedulable[0]
        draft.condition(
            DEGRADED,
            T,
            "Unschedulable",
            f"{len(unschedulable)} pod(s) of revision {target} pending: {first.schedule_message or first.schedule_reason}",
        )
    elif crashing:
        draft.condition(DEGRADED, T, "PodsFailing", f"{len(crashing)} pod(s) failing: {podfacts.describe(crashing[0])}")
    else:
        draft.condition(DEGRADED, F, "AsExpected", "all pods of the target revision are placed and healthy")


def _progress(
    draft: _Draft,
    observed: Observed,
    target: str,
    current: str,
    wanted: int,
    ratio_replicas: Mapping[str, int] | None = None,
) -> None:
    """Available and Progressing; under replica ratios every revision with pods serves."""
    if ratio_replicas is not None:
        _progress_by_ratio(draft, observed, target, current, wanted, ratio_replicas)
        return
    status = draft.status
    load = observed.workloads.get(current)
    ready = load.ready if load is not None else 0
    serving_wanted = wanted if current == target else (load.replicas if load is not None else wanted)
    status.replicas = load.replicas if load is not None else 0
    status.ready_replicas = ready
    status.model_version = next((r.model_version for r in status.revisions if r.name == current), None)
    _available(draft, observed, f"revision {current}", ready, serving_wanted)
    target_load = observed.workloads.get(target)
    target_ready = target_load.ready if target_load is not None else 0
    if current != target or target_ready < wanted:
        draft.condition(
            PROGRESSING, T, "RolloutInProgress", f"revision {target}: {target_ready}/{wanted} replicas ready"
        )
    else:
        draft.condition(PROGRESSING, F, "RolloutComplete", f"revision {target} serves with {wanted} replica(s)")


def _available(draft: _Draft, observed: Observed, which: str, ready: int, wanted: int) -> None:
    """Available: the wanted replicas are ready and clients can reach them by the stable Service.

    A new deployment's Service is created beside the reconcile (:mod:`vigil.reconcile.creations`);
    until it exists the deployment is not Available (``ServicePending``), since what Argo CD and
    ``kubectl wait`` take Available for is a model that answers at its Service.
    """
    if wanted == 0:
        draft.condition(AVAILABLE, T, "ScaledToZero", "no replicas requested")
    elif ready < wanted:
        draft.condition(AVAILABLE, F, "ReplicasUnavailable", f"{which}: {ready}/{wanted} ready")
    elif observed.service is False:
        draft.condition(
            AVAILABLE, F, "ServicePending", f"{which}: {ready}/{wanted} ready; the Service is not created yet"
        )
    else:
        draft.condition(AVAILABLE, T, "MinimumReplicasAvailable", f"{which}: {ready}/{wanted} ready")


def _progress_by_ratio(
    draft: _Draft, observed: Observed, target: str, current: str, wanted: int, replicas: Mapping[str, int]
) -> None:
    """Under replica ratios the stable Service selects every revision: judge them together.

    Available asks for the deployment's wanted capacity across the serving revisions (the serving
    revision keeps its pods until the others are ready, so a shift does not flap it); a rollout
    waits while the override decides which revisions run.
    """
    status = draft.status
    serving = sorted(rev for rev, count in replicas.items() if count > 0)
    loads = [observed.workloads[rev] for rev in serving if rev in observed.workloads]
    ready = sum(load.ready for load in loads)
    status.replicas = sum(load.replicas for load in loads)
    status.ready_replicas = ready
    status.model_version = next((r.model_version for r in status.revisions if r.name == current), None)
    which = f"revisions {', '.join(serving)}" if len(serving) > 1 else f"revision {current}"
    _available(draft, observed, which, ready, wanted)
    if current != target:
        draft.condition(
            PROGRESSING,
            T,
            "TrafficOverride",
            f"revision {target} waits: a traffic shift runs revisions by replica ratio until it is cleared",
        )
        return
    target_load = observed.workloads.get(target)
    target_ready = target_load.ready if target_load is not None else 0
    target_wanted = replicas.get(target, 0)
    if target_ready < target_wanted:
        draft.condition(
            PROGRESSING, T, "RolloutInProgress", f"revision {target}: {target_ready}/{target_wanted} replicas ready"
        )
    else:
        draft.condition(PROGRESSING, F, "RolloutComplete", f"revision {target} serves with {target_wanted} replica(s)")


def _traffic(draft: _Draft, shift: route.Shift, serving: str) -> None:
    verdict = shift.verdict
    if verdict is not None:
        draft.condition(TRAFFIC_SHIFTED, verdict.status, verdict.reason, verdict.message, warning=verdict.warning)
    elif cond.find(draft.status.conditions, TRAFFIC_SHIFTED) is not None:
        draft.condition(TRAFFIC_SHIFTED, F, route.REASON_SPEC, f"revision {serving} serves all traffic")


def _overrides(draft: _Draft, desired: str) -> None:
    status = draft.status
    if status.rollback is not None:
        rb = status.rollback
        draft.condition(
            ROLLED_BACK,
            T,
            "IncidentRollback",
            f"spec asks for revision {desired}, serving last-known-good {rb.revision} because of incident {rb.incident}; "
            f"spec changes that keep revision {rb.from_revision} (replicas, SLOs) apply to {rb.revision}, "
            "a new revision supersedes the rollback",
        )
    elif cond.find(status.conditions, ROLLED_BACK) is not None:
        draft.condition(ROLLED_BACK, F, "SpecRevision", f"serving the spec's revision {desired}")
    if status.scale is not None:
        sc = status.scale
        draft.condition(
            SCALED_OUT, T, "IncidentScaleOut", f"serving {sc.replicas} replicas because of incident {sc.incident}"
        )
    elif cond.find(status.conditions, SCALED_OUT) is not None:
        draft.condition(SCALED_OUT, F, "SpecReplicas", "serving the spec's replicas")


def _finish(
    owner: workload.Owner,
    draft: _Draft,
    replicas: Mapping[str, int],
    observed: Observed,
    serving: str | None,
    shift: route.Shift | None = None,
) -> Outcome:
    status = draft.status
    shapes = {r.name: r.shape for r in status.revisions}
    manifests = tuple(
        workload.deployment(owner, rev, shapes[rev], count) for rev, count in sorted(replicas.items()) if rev in shapes
    )
    keep = {r.name for r in status.revisions}
    delete = tuple(revisions.workload_name(owner.name, rev) for rev in sorted(observed.workloads) if rev not in keep)
    selected = shift.service_revision if shift is not None else serving
    status.selector = ",".join(f"{k}={v}" for k, v in workload.selector_labels(owner.name, selected).items())
    service = workload.service(owner, selected) if serving is not None else None
    return Outcome(
        deployments=manifests,
        delete=delete,
        service=service,
        status=status,
        events=tuple(draft.events),
        services=shift.services if shift is not None else (),
        routes=shift.routes if shift is not None else (),
    )
