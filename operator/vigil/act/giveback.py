"""Give back: return what an incident added, step by step and verified, once the SLOs held again.

Design rule 7. An incident's plan may leave the deployment running more replicas than
``spec.replicas`` (a ScaleOverride) or sending traffic to a fallback (a TrafficOverride). Both
cost: GPUs that nobody needs any more, users served by a deployment that was only meant to help
out. This machine returns them, and the Incident stays the record of what was added and returned.

Pure and deterministic, like the plan's step machine (:mod:`vigil.act.machine`): the Incident's
``status.giveBack`` is the state, every intent is recorded there (an absolute target) before the
worker executes it, and a replay re-issues the very same target or notices it was carried out.

When
  The give-back of an incident starts once its plan has finished (or the incident resolved) and
  the md's status still carries an override that names it. It waits, ``Stabilizing``, until every
  SLO of the deployment has been Met for ``spec.giveBack.stabilizationWindow`` (default 5m, like
  the HPA's scale-down stabilization), counted from the latest of: the moment the level it holds
  took effect, and the last state change of any SLO; nothing moves while another incident of
  the deployment is open, while metrics are unavailable, or while the deployment is paused.

  The level took effect when the plan's last action did (its step's ``judgedFrom``: replicas
  ready, the route in force; an action that never took effect, when its step ended), or, after
  a stopped give-back, when its last step (or the restore) did. From then on the deployment's
  SLO windows start there (``status.freshData``), so a Met verdict since then rests on data of
  the level held now: the window already runs while the plan verifies its last step, as the
  HPA's scale-down looks back over its window whatever happened in it, instead of starting
  only at the incident's resolution (which would hold the added replicas ``verifyAfter`` longer
  for nothing). An SLO that changed state since restarts the count; a plan without a recorded
  action counts from its end or the incident's resolution.
  A deployment whose traffic the incident moved away *entirely* cannot show a Met SLO (it has no
  traffic): it counts as settled when no SLO is Warning or Breached and it is Available, and the
  first step home is the first real judgement of it.

Steps (``Returning``), traffic first (the primary should take its traffic back while it still
has the extra replicas), then replicas:
  * traffic: the share away from the serving revision shrinks by at most ``stepWeight`` percent
    per step (shared out over the away backends in proportion); at 0 the override is released.
  * replicas: at most ``stepReplicas`` fewer per step, never below ``spec.replicas``, nor below
    what the measured demand needs now at the utilisation the incident's scale-out was sized for
    (its ``targetUtilization``; like the HPA, which scales down only to its recommendation); at the
    spec the override is released. While the demand needs every replica held, the give-back
    holds (``Stabilizing``, a ``GiveBackHolding`` entry) and the next step again needs every SLO Met
    for a stabilization window. Without a ``targetUtilization``, or without demand data, the SLO
    verdicts alone decide, step by step.
  A step is judged only on data from after it: once it took effect (replicas ready, the route or
  the replica ratio in force) its ``judgedFrom`` is set (and copied to the md's freshness mark, so
  the fleet caps the SLO windows to the data since), and at ``judgedFrom + interval`` it succeeds
  only on a verdict whose every window starts after ``judgedFrom``, with every SLO Met. The next
  step follows at once: at most one step per ``interval``.

Degradation stops it, for a while
  An SLO that turns Warning or Breached after a step (or another incident opening meanwhile)
  restores the last level that held: the replica count before the step, or, for traffic, the
  shift as the incident left it (back to the fallback). Then the give-back is ``Stopped``, with a
  Warning Event and the ``GivingBack`` condition saying why. A verdict that stays inconclusive
  (no traffic, no data) for a second interval stops it the same way, and so does a step that is
  not carried out or never takes effect: nothing is returned without evidence.

  Retry: the load that made a step fail rarely lasts for ever, and GPUs held for good cost money
  every hour, so a stopped give-back is tried again, as an HPA keeps re-deciding its scale-down:
  at ``retryAt`` (twice the stabilization window after the stop, doubled for every earlier stop
  of the same give-back, at most :data:`RETRY_CAP`: 10m, 20m, 40m, then hourly with the defaults)
  it goes back to ``Stabilizing``, so the first step again needs every SLO Met for a whole
  stabilization window, counted as above (from the restore's effect or a later SLO change). It
  goes on from the level that held.
  A new spec generation or another incident's override while it waits ends it ``Superseded``;
  another incident open at ``retryAt`` holds it as it holds any give-back. ``stops`` and
  ``retryAt`` are in the record, so a restarted operator keeps the same schedule.

One owner of the replica count
  While an override is in force, vigil owns the replica count it set; ``spec.replicas`` (the user,
  Argo CD, or an HPA writing through the scale subresource) owns it otherwise. A write to the
  spec is a new generation, which supersedes the override at once (the reconcile core drops it):
  the give-back ends ``Superseded`` and returns nothing the new owner did not ask for. So an HPA on
  the same ModelDeployment takes over the moment it scales, and vigil never scales below what it
  set.

Give-back intents are recorded as ``GiveBack`` timeline entries, not ``Intent``: they are not
emergency actions, so they do not spend the runbook's ``maxActionsPerHour``.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping

from vigil.act import guards, machine, runbooks, sizing
from vigil.act import intents as acts
from vigil.api import conditions as cond
from vigil.api import incident as incapi
from vigil.api import modeldeployment as mdapi
from vigil.api import runbook as rbapi
from vigil.api import slo as sloapi
from vigil.record import incidents as records
from vigil.render import route

# Timeline entry types (Incident.status.timeline[].type).
HOLDING = "GiveBackHolding"
STABILIZING = "GiveBackStabilizing"
STEP = "GiveBack"
EFFECTIVE = "GiveBackEffective"
VERIFIED = "GiveBackVerified"
STOPPED = "GiveBackStopped"
RETURNED = "GiveBackReturned"
SUPERSEDED = "GiveBackSuperseded"
KEPT = "GiveBackKept"

CONDITION = "GivingBack"
SPEC = "spec"  # target replicas: the override released

RETRYING = "GiveBackRetrying"

_P = incapi.GiveBackPhase
_S = incapi.StepState
TERMINAL = frozenset({_P.RETURNED, _P.STOPPED, _P.SUPERSEDED, _P.KEPT})
RETRY_CAP = datetime.timedelta(hours=1)
"""The longest a stopped give-back waits before it is tried again."""


@dataclasses.dataclass(frozen=True)
class Context:
    """What one give-back decision may depend on; the worker gathers it each pass.

    ``other_incident``: an unresolved Incident of the deployment other than this one, if any.
    ``done``: results of the intents executed since the last decision, by key.
    ``demand``: the serving revision's measured load this cycle (None: not measured).
    """

    now: datetime.datetime
    incident: str
    incident_status: incapi.IncidentStatus
    md: mdapi.ModelDeployment
    metrics_available: bool
    other_incident: str | None = None
    done: Mapping[str, acts.Result] = dataclasses.field(default_factory=dict)
    demand: sizing.Demand | None = None


@dataclasses.dataclass(frozen=True)
class Decision:
    """The new give-back record (write it first), the intents, the timeline entries and Events."""

    record: incapi.GiveBack | None
    intents: tuple[acts.Intent, ...] = ()
    entries: tuple[incapi.TimelineEntry, ...] = ()
    events: tuple[machine.Event, ...] = ()


@dataclasses.dataclass(frozen=True)
class Held:
    """What an incident's overrides hold now: replicas (None: the spec's) and splits (None: all home)."""

    replicas: int | None
    splits: tuple[tuple[str, int], ...] | None

    @property
    def nothing(self) -> bool:
        return self.replicas is None and self.splits is None

    def target(self) -> dict[str, str]:
        found: dict[str, str] = {}
        if self.replicas is not None:
            found[acts.REPLICAS] = str(self.replicas)
        if self.splits is not None:
            found[acts.SPLITS] = acts.encode_splits(self.splits)
        return found

    def describe(self, spec_replicas: int) -> str:
        parts = []
        if self.splits is not None:
            parts.append("traffic " + ", ".join(f"{b} {w}%" for b, w in self.splits))
        if self.replicas is not None:
            parts.append(f"{self.replicas} replicas (spec.replicas {spec_replicas})")
        return " and ".join(parts) or "nothing"


def held(md: mdapi.ModelDeployment, incident: str) -> Held:
    """What the md's overrides hold on behalf of ``incident``."""
    scale, traffic = md.status.scale, md.status.traffic
    return Held(
        replicas=scale.replicas if scale is not None and scale.incident == incident else None,
        splits=tuple((s.backend, s.weight) for s in traffic.splits)
        if traffic is not None and traffic.incident == incident
        else None,
    )


def holders(status: mdapi.ModelDeploymentStatus) -> list[str]:
    """The incidents the md's scale and traffic overrides name (traffic's first), without repeats."""
    names = [o.incident for o in (status.traffic, status.scale) if o is not None]
    return list(dict.fromkeys(names))


@dataclasses.dataclass
class _Draft:
    record: incapi.GiveBack
    ctx: Context
    intents: list[acts.Intent] = dataclasses.field(default_factory=list)
    entries: list[incapi.TimelineEntry] = dataclasses.field(default_factory=list)
    events: list[machine.Event] = dataclasses.field(default_factory=list)

    def note(self, type_: str, message: str, *, reason: str, warning: bool = False, once: bool = False) -> None:
        """A timeline entry and its Event; ``once``: not when it repeats the record's message."""
        if once and self.record.message == message:
            return
        self.record.message = message
        self.entries.append(records.entry(type_, message, self.ctx.now))
        self.events.append(
            machine.Event("Warning" if warning else "Normal", reason, f"incident {self.ctx.incident}: {message}")
        )

    @property
    def stamp(self) -> str:
        return cond.rfc3339(self.ctx.now)

    @property
    def settings(self) -> mdapi.GiveBack:
        return self.ctx.md.spec.give_back


def advance(record: incapi.GiveBack | None, ctx: Context) -> Decision:
    """One give-back decision for ``ctx.incident``; see the module docstring."""
    now_held = held(ctx.md, ctx.incident)
    if record is None:
        if now_held.nothing or not _plan_over(ctx.incident_status):
            return Decision(None)
        record = _begin(ctx, now_held)
        draft = _Draft(record=record, ctx=ctx)
        window = draft.settings.stabilization_window
        what = now_held.describe(ctx.md.spec.replicas)
        if not draft.settings.enabled:
            record.phase = _P.KEPT
            draft.note(KEPT, f"keeping {what}: spec.giveBack.enabled is false", reason="GiveBackKept")
        else:
            draft.note(
                STABILIZING,
                f"holding {what}: returned step by step once every SLO has been Met for {window}",
                reason="GiveBackStabilizing",
            )
    else:
        record = record.model_copy(deep=True)
        draft = _Draft(record=record, ctx=ctx)
    if record.phase is _P.STOPPED and record.retry_at is not None:
        _retry(draft, now_held)
    if record.phase not in TERMINAL:
        _run(draft, now_held)
    return Decision(
        record=record,
        intents=tuple(draft.intents),
        entries=tuple(draft.entries),
        events=tuple(draft.events),
    )


def waiting_to_retry(record: incapi.GiveBack | None) -> bool:
    """A stopped give-back that will be tried again (the worker keeps looking at it)."""
    return record is not None and record.phase is _P.STOPPED and record.retry_at is not None


def _retry(d: _Draft, now_held: Held) -> None:
    """A stopped give-back at its ``retryAt``: stabilizing again (unless someone else owns it now)."""
    record, ctx = d.record, d.ctx
    taken = _taken_over(d, now_held)
    if taken is not None:
        record.retry_at = None
        _end(d, _P.SUPERSEDED, SUPERSEDED, taken, reason="GiveBackSuperseded")
        return
    if ctx.now < cond.parse_time(record.retry_at or d.stamp):
        return
    record.retry_at = None
    record.phase = _P.STABILIZING
    record.stable_since = None
    window = d.settings.stabilization_window
    d.note(
        RETRYING,
        f"trying again after stop {record.stops}: holding {now_held.describe(ctx.md.spec.replicas)}, returned step "
        f"by step once every SLO has been Met for {window}",
        reason="GiveBackRetrying",
    )


def retry_delay(window: str, stops: int) -> datetime.timedelta:
    """How long the ``stops``-th stop waits: twice the stabilization window, doubled per earlier stop, capped."""
    base = _seconds(window)
    return min(base * (1 << min(max(stops, 1), 16)), max(RETRY_CAP, base))


def _plan_over(status: incapi.IncidentStatus) -> bool:
    return status.phase is incapi.Phase.RESOLVED or (status.plan is not None and guards.finished(status.plan))


def _begin(ctx: Context, now_held: Held) -> incapi.GiveBack:
    return incapi.GiveBack(
        phase=_P.STABILIZING,
        generation=int(ctx.md.metadata.get("generation") or 0),
        held=now_held.target(),
    )


# --- the loop -------------------------------------------------------------------------------


def _run(d: _Draft, now_held: Held) -> None:
    ctx = d.ctx
    taken = _taken_over(d, now_held)
    if taken is not None:
        _end(d, _P.SUPERSEDED, SUPERSEDED, taken, reason="GiveBackSuperseded")
        return
    if ctx.md.spec.paused:
        d.note(HOLDING, "holding: the deployment is paused (spec.paused)", reason="GiveBackHolding", once=True)
        return
    step = _in_flight(d.record)
    if not ctx.metrics_available:
        if step is not None and step.state is _S.VERIFYING and step.judged_from is not None:
            # Windows reaching into the gap read low: verification restarts on data from after it.
            step.judged_from = None
            step.verify_at = None
        d.note(HOLDING, "holding: metrics unavailable", reason="GiveBackHolding", warning=True, once=True)
        return
    if step is not None and not _follow(d, step):
        return
    if d.record.phase in TERMINAL:
        return
    if ctx.other_incident is not None:
        message = f"holding: incident {ctx.other_incident} is open"
        d.note(HOLDING, message, reason="GiveBackHolding", once=True)
        return
    if d.record.phase is _P.STABILIZING and not _stable(d, now_held):
        return
    _next_step(d, held(ctx.md, ctx.incident))


def _follow(d: _Draft, step: incapi.GiveBackStep) -> bool:
    """Drive the step in flight; True when it ended well and the next one may start now."""
    ctx = d.ctx
    intent = _intent(d, step)
    what = acts.describe(intent)
    settings = d.settings
    timeout = _seconds(settings.timeout)
    if step.state is _S.INTENDED:
        result = ctx.done.get(intent.key)
        if not ((result is not None and result.ok) or acts.applied(ctx.md.status, intent, ctx.incident)):
            if ctx.now >= _intended_at(step) + timeout:
                _fail(d, step, f"{what} not carried out within {settings.timeout}")
                return False
            d.intents.append(intent)
            return False
        step.state = _S.VERIFYING
    if not step.restore and _degraded(d, step):
        return False
    if step.judged_from is None:
        if not _effective(ctx.md, intent):
            if ctx.now >= _intended_at(step) + timeout:
                _fail(d, step, f"{what} did not take effect within {settings.timeout}")
            return False
        if step.restore:
            records.end_step(step, _S.SUCCEEDED, f"{what}: restored", d.stamp)
            why = next((s.result for s in reversed(d.record.steps) if s.state is _S.FAILED), None)
            _stop(d, f"stopped after step {step.number - 1} ({why}); {what} restored")
            return False
        step.judged_from = d.stamp
        step.verify_at = cond.rfc3339(ctx.now + _seconds(settings.interval))
        d.note(
            EFFECTIVE,
            f"step {step.number}: {what} took effect; judging every SLO on data from {step.judged_from} on, "
            f"at {step.verify_at}",
            reason="GiveBackEffective",
        )
        return False
    verify_at = cond.parse_time(step.verify_at or step.judged_from)
    if ctx.now < verify_at:
        return False
    judged_from = cond.parse_time(step.judged_from)
    slos = ctx.md.status.slos
    stale = [s.name for s in slos if not _fresh(s, judged_from)]
    if stale:
        message = f"step {step.number}: waiting for a verdict on data from {step.judged_from} on ({', '.join(stale)})"
        d.note(HOLDING, message, reason="GiveBackHolding", once=True)
        return False
    unmet = [f"{s.name} {s.state}" for s in slos if s.state is not sloapi.SLOState.MET]
    if not slos or unmet:
        if ctx.now >= verify_at + _seconds(settings.interval):
            _restore(d, step, f"step {step.number} ({what}) could not be verified: {', '.join(unmet) or 'no SLO'}")
            return False
        message = f"step {step.number}: verification inconclusive ({', '.join(unmet) or 'no SLO'}); judging again"
        d.note(HOLDING, message, reason="GiveBackHolding", once=True)
        return False
    records.end_step(step, _S.SUCCEEDED, f"every SLO Met on data from {step.judged_from} on", d.stamp)
    d.note(
        VERIFIED,
        f"step {step.number}: {what}: every SLO Met on data from {step.judged_from} on",
        reason="GiveBackVerified",
    )
    if held(ctx.md, ctx.incident).nothing:
        _end(
            d,
            _P.RETURNED,
            RETURNED,
            f"returned everything the incident added ({_held_of(d.record).describe(ctx.md.spec.replicas)})",
            reason="GiveBackReturned",
        )
        return False
    return True


def _degraded(d: _Draft, step: incapi.GiveBackStep) -> bool:
    """An SLO gone bad (or a new incident) after the step: restore the level that held, and stop."""
    ctx = d.ctx
    bad = [f"SLO {s.name} {s.state}" for s in ctx.md.status.slos if s.state in _BAD]
    if ctx.other_incident is not None:
        bad.append(f"incident {ctx.other_incident} opened")
    if not bad:
        return False
    _restore(d, step, f"{', '.join(bad)} after step {step.number} ({acts.describe(_intent(d, step))})")
    return True


_BAD = frozenset({sloapi.SLOState.WARNING, sloapi.SLOState.BREACHED})


def _restore(d: _Draft, step: incapi.GiveBackStep, why: str) -> None:
    """Fail ``step`` and put back the last level that held (traffic: as the incident left it)."""
    records.end_step(step, _S.FAILED, why, d.stamp)
    traffic = acts.SPLITS in step.target
    level = _level_before(d.record, step, traffic)
    number = step.number + 1
    key = _key(d.ctx, number)
    intent: acts.Intent
    if traffic:
        intent = acts.ShiftTraffic(splits=acts.decode_splits(level), key=key)
        message = f"shift home aborted: {why}; back to {acts.describe(intent)[len('shift traffic to ') :]}"
    else:
        intent = acts.Scale(replicas=int(level), key=key)
        message = f"scale-in stopped: {why}; back to {level} replicas"
    d.record.steps.append(
        incapi.GiveBackStep(number=number, target={**acts.to_target(intent), acts.INTENDED_AT: d.stamp}, restore=True)
    )
    d.record.steps = d.record.steps[-incapi.GIVE_BACK_STEPS_LIMIT :]
    d.note(STOPPED, message, reason="ShiftHomeAborted" if traffic else "ScaleInStopped", warning=True)
    d.intents.append(intent)


def _level_before(record: incapi.GiveBack, step: incapi.GiveBackStep, traffic: bool) -> str:
    field = acts.SPLITS if traffic else acts.REPLICAS
    if traffic:
        return record.held[field]  # abort back to the shift as the incident left it
    earlier = [
        s
        for s in record.steps
        if s.number < step.number and field in s.target and s.state is _S.SUCCEEDED and s.target[field] != SPEC
    ]
    return earlier[-1].target[field] if earlier else record.held[field]


def _fail(d: _Draft, step: incapi.GiveBackStep, why: str) -> None:
    records.end_step(step, _S.FAILED, why, d.stamp)
    _stop(d, f"stopped: {why}")


def _stop(d: _Draft, why: str) -> None:
    """Stopped, to be tried again at ``retryAt`` (see the module docstring)."""
    record = d.record
    record.stops += 1
    if held(d.ctx.md, d.ctx.incident).nothing:  # the failed step released the last override: nothing to retry
        _end(d, _P.STOPPED, STOPPED, f"{why}; nothing is held any more", reason="GiveBackStopped", warning=True)
        return
    retry_at = d.ctx.now + retry_delay(d.settings.stabilization_window, record.stops)
    record.retry_at = cond.rfc3339(retry_at)
    message = f"{why}; the rest stays, tried again from {record.retry_at} (stop {record.stops})"
    _end(d, _P.STOPPED, STOPPED, message, reason="GiveBackStopped", warning=True)


def _end(
    d: _Draft, phase: incapi.GiveBackPhase, type_: str, message: str, *, reason: str, warning: bool = False
) -> None:
    d.record.phase = phase
    d.note(type_, message, reason=reason, warning=warning)


def _stable(d: _Draft, now_held: Held) -> bool:
    """Whether every SLO has held for the stabilization window; records why not, once."""
    ctx = d.ctx
    window = d.settings.stabilization_window
    slos = ctx.md.status.slos
    away = now_held.splits is not None and acts.moves_all_traffic_away(now_held.splits)
    judged = {sloapi.SLOState.MET}
    if away:
        judged |= {sloapi.SLOState.INSUFFICIENT_TRAFFIC, sloapi.SLOState.NO_DATA}
    unsettled = [f"SLO {s.name} {s.state}" for s in slos if s.state not in judged]
    if away and not _available(ctx.md):
        unsettled.append("the deployment is not Available")
    if not slos or unsettled:
        d.record.stable_since = None
        message = f"stabilizing: waiting for {', '.join(unsettled) or 'an SLO verdict'} to settle"
        d.note(STABILIZING, message, reason="GiveBackStabilizing", once=True)
        return False
    since = _settled_since(d)
    d.record.stable_since = cond.rfc3339(since)
    ready_at = since + _seconds(window)
    if ctx.now < ready_at:
        message = f"stabilizing: every SLO held since {d.record.stable_since}; first step at {cond.rfc3339(ready_at)}"
        d.note(STABILIZING, message, reason="GiveBackStabilizing", once=True)
        return False
    d.record.phase = _P.RETURNING
    return True


def _settled_since(d: _Draft) -> datetime.datetime:
    """The latest of: when the level held now took effect (:func:`took_effect`) and any SLO's last change."""
    stamps = [s.last_transition_time for s in d.ctx.md.status.slos]
    moments = [cond.parse_time(s) for s in stamps if s]
    moments.append(took_effect(d.ctx.incident_status, d.record) or d.ctx.now)
    return max(moments)


def took_effect(status: incapi.IncidentStatus, record: incapi.GiveBack | None = None) -> datetime.datetime | None:
    """When what the incident holds now took effect: the latest of its actions' effects.

    A plan step or give-back step that acted counts from its ``judgedFrom`` (it took effect), or
    from its end when it never did (a restore, or an action given up on); notifications and
    skipped steps changed nothing. Without any recorded action: the plan's end or the incident's
    resolution, whichever is later (None: neither is known).
    """
    acted: list[str | None] = []
    plan = status.plan
    if plan is not None:
        acted += [s.judged_from or s.finished_at for s in guards.acting_steps(plan)]
    if record is not None:
        acted += [s.judged_from or s.finished_at for s in record.steps]
    moments = [cond.parse_time(s) for s in acted if s]
    if moments:
        return max(moments)
    ends = [status.resolved_at, *(s.finished_at for s in plan.steps)] if plan is not None else [status.resolved_at]
    found = [cond.parse_time(s) for s in ends if s]
    return max(found) if found else None


def _available(md: mdapi.ModelDeployment) -> bool:
    found = cond.find(md.status.conditions, "Available")
    return found is not None and found.status is cond.ConditionStatus.TRUE


def _next_step(d: _Draft, now_held: Held) -> None:
    ctx = d.ctx
    settings = d.settings
    number = (d.record.steps[-1].number if d.record.steps else 0) + 1
    key = _key(ctx, number)
    intent: acts.Intent
    if now_held.splits is not None:
        home = ctx.md.status.current_revision or ""
        splits = homeward(now_held.splits, home, settings.step_weight)
        intent = acts.Release(acts.TRAFFIC, key) if splits is None else acts.ShiftTraffic(splits, key)
    elif now_held.replicas is not None:
        needed = needed_now(ctx.incident_status, ctx.demand)
        floor = max(ctx.md.spec.replicas, needed.replicas if needed is not None else 0)
        target = max(floor, now_held.replicas - settings.step_replicas)
        if target >= now_held.replicas and needed is not None:
            # Stabilizing again: the next step needs every SLO Met for a window, as the first did.
            d.record.phase = _P.STABILIZING
            message = (
                f"holding {now_held.replicas} replicas: the measured demand needs {needed.replicas} at "
                f"{needed.target_utilization}% utilisation"
            )
            d.note(HOLDING, message, reason="GiveBackHolding", once=True)
            return
        intent = acts.Release(acts.SCALE, key) if target == ctx.md.spec.replicas else acts.Scale(target, key)
    else:
        return
    d.record.phase = _P.RETURNING
    d.record.steps.append(
        incapi.GiveBackStep(number=number, target={**acts.to_target(intent), acts.INTENDED_AT: d.stamp})
    )
    d.record.steps = d.record.steps[-incapi.GIVE_BACK_STEPS_LIMIT :]
    d.note(STEP, f"step {number}: {acts.describe(intent)}", reason="GiveBackStep")
    d.intents.append(intent)


def needed_now(status: incapi.IncidentStatus, demand: sizing.Demand | None) -> sizing.Sized | None:
    """The replicas the measured demand needs now at the utilisation the incident's scale-out was
    sized for (its plan's ``targetUtilization``, the lowest if several), or None: the plan sized
    nothing from demand, or the demand says nothing (no data, too little work to measure)."""
    plan = status.plan
    if plan is None:
        return None
    spec = runbooks.plan_spec(plan)
    if spec is None:
        return None
    targets = [
        s.params.target_utilization
        for s in spec.steps
        if s.action is rbapi.Action.SCALE_OUT and s.params.target_utilization is not None
    ]
    if not targets:
        return None
    sized = sizing.size(demand, min(targets), ahead_seconds=0)
    return sized if isinstance(sized, sizing.Sized) else None


def homeward(splits: tuple[tuple[str, int], ...], home: str, step: int) -> tuple[tuple[str, int], ...] | None:
    """``splits`` with at most ``step`` percent more for ``home``; None once nothing is away any more.

    The away share is taken from the away backends in proportion to their weights (largest
    remainder, ties by order), so several fallbacks come home together.
    """
    away = [(backend, weight) for backend, weight in splits if backend != home and weight > 0]
    total = sum(weight for _, weight in away)
    left = max(0, total - step)
    if left == 0:
        return None
    shares = route.apportion({backend: weight for backend, weight in away}, left) if left >= len(away) else {}
    if not shares:  # fewer percent left than away backends: the largest keep one each
        shares = {backend: 1 for backend, _ in sorted(away, key=lambda bw: -bw[1])[:left]}
    result = tuple((backend, shares[backend]) for backend, _ in away if shares.get(backend))
    return ((home, 100 - left), *result) if home else result


# --- facts ----------------------------------------------------------------------------------


def _taken_over(d: _Draft, now_held: Held) -> str | None:
    """Why this give-back no longer owns what it returns, or None."""
    md = d.ctx.md
    generation = int(md.metadata.get("generation") or 0)
    if generation != d.record.generation:
        return (
            f"superseded: spec generation {generation} (spec.replicas {md.spec.replicas}) owns the replica count "
            "and the traffic now; nothing more is returned"
        )
    for kind, override in (("scale", md.status.scale), ("traffic", md.status.traffic)):
        if override is not None and override.incident != d.ctx.incident and _owns(d.record, kind):
            return f"superseded: incident {override.incident} holds the {kind} override now"
    if now_held.nothing and _in_flight(d.record) is None:
        return "superseded: the overrides were removed by someone else; nothing more is returned"
    return None


def _owns(record: incapi.GiveBack, kind: str) -> bool:
    field = acts.REPLICAS if kind == "scale" else acts.SPLITS
    if field not in record.held:
        return False
    targets = [s.target[field] for s in record.steps if field in s.target and s.state is not _S.FAILED]
    return not targets or targets[-1] not in (SPEC, "")


def _held_of(record: incapi.GiveBack) -> Held:
    replicas = record.held.get(acts.REPLICAS)
    splits = record.held.get(acts.SPLITS)
    return Held(replicas=int(replicas) if replicas else None, splits=acts.decode_splits(splits) if splits else None)


def _in_flight(record: incapi.GiveBack) -> incapi.GiveBackStep | None:
    if record.steps and record.steps[-1].state in (_S.INTENDED, _S.VERIFYING):
        return record.steps[-1]
    return None


def _intent(d: _Draft, step: incapi.GiveBackStep) -> acts.Override:
    """The step's intent, rebuilt from its record (never recomputed)."""
    key = _key(d.ctx, step.number)
    if acts.SPLITS in step.target:
        text = step.target[acts.SPLITS]
        return acts.ShiftTraffic(acts.decode_splits(text), key) if text else acts.Release(acts.TRAFFIC, key)
    replicas = step.target[acts.REPLICAS]
    return acts.Release(acts.SCALE, key) if replicas == SPEC else acts.Scale(int(replicas), key)


def _effective(md: mdapi.ModelDeployment, intent: acts.Override) -> bool:
    """Whether a carried-out step is in force: replicas running and ready, the split in force."""
    status = md.status
    if isinstance(intent, acts.Scale):
        return status.replicas == intent.replicas and status.ready_replicas >= intent.replicas
    if isinstance(intent, acts.Release) and intent.what == acts.SCALE:
        return status.replicas == md.spec.replicas and status.ready_replicas >= md.spec.replicas
    shifted = cond.find(status.conditions, route.TRAFFIC_SHIFTED)
    if isinstance(intent, acts.Release):
        return shifted is None or shifted.status is not cond.ConditionStatus.TRUE
    return (
        shifted is not None and shifted.status is cond.ConditionStatus.TRUE and shifted.reason == route.REASON_SHIFTED
    )


def _fresh(status: sloapi.SLOStatus, since: datetime.datetime) -> bool:
    """Whether every window of ``status``'s verdict starts at or after ``since``."""
    judged = machine.Judged.of(status)
    return judged is not None and judged.since >= since


def judged_from(record: incapi.GiveBack | None) -> tuple[str, str] | None:
    """The latest step's ``judgedFrom`` and a name for it: the md's SLO windows start there
    (``status.freshData``), so the step's verdict reads only data from after it."""
    marked = [s for s in record.steps if s.judged_from] if record is not None else []
    if not marked:
        return None
    step = max(marked, key=lambda s: cond.parse_time(s.judged_from or ""))
    return str(step.judged_from), f"give-back-{step.number}"


def _intended_at(step: incapi.GiveBackStep) -> datetime.datetime:
    return cond.parse_time(step.target[acts.INTENDED_AT])


def _key(ctx: Context, number: int) -> str:
    return f"{ctx.incident}/give-back/{number}"


def _seconds(duration: str) -> datetime.timedelta:
    return datetime.timedelta(seconds=sloapi.duration_seconds(duration))


# --- the condition --------------------------------------------------------------------------


def condition(record: incapi.GiveBack | None, incident: str) -> tuple[cond.ConditionStatus, str, str] | None:
    """The md's ``GivingBack`` condition for ``record``: True while it waits or returns."""
    if record is None:
        return None
    message = f"incident {incident}: {record.message or record.phase}"
    if record.phase in (_P.STABILIZING, _P.RETURNING):
        return cond.ConditionStatus.TRUE, str(record.phase), message
    return cond.ConditionStatus.FALSE, str(record.phase), message
