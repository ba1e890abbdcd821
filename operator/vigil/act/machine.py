"""The runbook step machine: (Incident status, what is true now) -> (new status, intents, events).

Pure and deterministic. The Incident's status *is* the machine's state (phase, the plan's step
progress, the timeline), so a restarted operator resumes any plan from the API server alone, and
every rule is tested state-in/state-out without a cluster.

The worker drives it, one ModelDeployment at a time (it is the single writer of the md's status
and of its Incidents)::

    decision = advance(incident.status, ctx)
    write decision.status                # the intent is durable before anything happens
    results = execute(decision.intents)  # absolute, idempotent; md-status overrides or I/O
    decision = advance(decision.status, ctx with done=results)   # Intended -> Verifying
    write decision.status

Exactly once, across crashes
  A step's intent is recorded in ``StepProgress.target`` (state ``Intended``) *before* it is
  executed, and every later cycle rebuilds the intent from that record instead of recomputing it.
  ``advance`` on an ``Intended`` step returns the very same intent again (same target, same key)
  until it learns that the intent was executed: from ``Context.done`` (results by intent key), or
  by observation, which needs no report at all: the md's status already carries the override
  for this incident, or the pod to restart is gone. A crash anywhere therefore leads either to
  re-issuing the same absolute intent (a no-op; notifications carry an ``Idempotency-Key``) or
  to noticing it was done; never to a second, different action.

States of one step (``StepProgress.state``)::

    Pending --when/precondition fails--------------------------------> Skipped
    Pending --blocked (GPU capacity, maxReplicas)--------------------> Failed -> onFailure
    Pending --dryRun / paused----------------------------------------> DryRun (target recorded)
    Pending --metrics missing, SLO not Breached, guard, approval-----> Pending (held, noted once)
    Pending --intent recorded----------------------------------------> Intended  => intent
    Intended --executed (done or observed)---------------------------> Verifying (notify: Succeeded)
    Intended --not executed, before timeout--------------------------> Intended  => same intent
    Intended --timeout-----------------------------------------------> Failed -> onFailure
    Verifying --until the action took effect (timeout)---------------> Verifying, then verifyAt and
                                                                         judgedFrom set
    Verifying --metrics missing--------------------------------------> Verifying (metricsMissingSince)
    Verifying --metrics back after a gap-----------------------------> Verifying, judgedFrom and
                                                                         verifyAt restarted
    Verifying --at verifyAt, verdict on data older than judgedFrom---> Verifying (waits)
    Verifying --at verifyAt: SLO Met---------------------------------> Succeeded (plan done)
    Verifying --at verifyAt: Breached (or inconclusive one more
                verifyAfter): another round (scaleOut, restartPods)--> Intended  => next intent
    Verifying --before verifyAt: Breached on fresh data and the fresh
                demand outgrew a demand-sized round-------------------> Intended  => next intent
    Verifying --before verifyAt, sizeAhead: Met/Warning on fresh data,
                the demand rising past the round's target utilisation-> Intended  => next intent
    Verifying --no further round-------------------------------------> Failed -> onFailure
    any unfinished --new md generation with another revision, or
                     superseding the plan's scale-out/traffic overrides---> Cancelled

``onFailure``: ``next`` moves on; ``escalate`` skips the rest and escalates; ``stop`` skips the
rest and hands over without notifying. A plan whose steps all ended without restoring the SLO
escalates. Escalating appends a notify step named ``escalate`` (the first notify step's webhook, if
any; else Events only) that runs through the same Intended -> Succeeded path, so it is sent
exactly once too.

Incident phases: ``Open`` (no plan yet) -> ``Mitigating`` (plan running, possibly held) <->
``AwaitingApproval`` -> ``Escalated`` (escalated, stopped, cancelled, or a dry run played through)
and the worker sets ``Resolved`` (:func:`vigil.record.incidents.resolve`) once the SLO stays Met.
A succeeded plan stays ``Mitigating`` until then; a breach that returns before that escalates.

Safety, in the order it is checked
  1. A new md generation with another revision cancels the running plan: the spec is the
     humans' answer and it supersedes every override (recorded, no intents). One that keeps the
     revision (``kubectl scale``, SLOs) cancels it only if the plan made or intends a scale-out or
     traffic override, which the new spec replaces; otherwise the plan continues (recorded once).
  2. No new action while metrics are unavailable or the SLO is NoData ("holding: metrics
     unavailable", recorded once), and none unless the SLO is Breached: a plan acts on a breach,
     not on a Warning and not on a recovery. The exceptions: the next round of a verifying
     ``sizeAhead`` scale-out inside the same plan, on fresh data and a measured rise (above); and
     a headroom plan (``spec.trigger: Headroom``, :mod:`vigil.act.headroom`), whose scale-out acts
     while the SLO is Met or Warning, only while the rising demand still needs more replicas than
     run (else the step is Skipped); it never escalates, and the worker ends it on a breach
     (:func:`end_ahead`).
  3. ``when`` preconditions, then the action's own: rollback needs a last-known-good revision
     other than the breached one; shiftTraffic to fallback needs ``spec.traffic.fallback``
     (else Skipped); scaleOut needs free ``nvidia.com/gpu`` for its new replicas and no
     unschedulable pods (when free GPUs are known; see :class:`Capacity`), else it fails at once
     ("blocked by GPU capacity") so the plan moves to
     the next step (e.g. shiftTraffic) instead of waiting for capacity that is not coming.
  4. dryRun (and a paused md) records what would be done as DryRun and returns no intents.
  5. Guards (cooldown, maxActionsPerHour; :mod:`vigil.act.guards`) hold new actions. The
     cooldown is waived (recorded, ``CooldownWaived``) for a new breach's scale-out when the
     demand now, measured on data none of which belongs to the last breach, asks for more
     replicas than are running: load that kept rising past what the last plan provisioned
     (:func:`_cooldown_waiver`).
  6. Approval mode holds new actions (phase AwaitingApproval) until the runbook's approval
     annotation is ``"true"`` on the Incident.
  Notifications are not cluster actions: they pass 2, 5 and 6.

Sizing: a ``scaleOut`` step with ``targetUtilization`` sizes each round from the measured
demand (:mod:`vigil.act.sizing`, ``Context.demand``): at least ``stepReplicas`` (default 1)
more, as many as the demand needs at that utilisation, at most the ceiling; the record
(``sizedFor``) says what it was sized for, and a round without usable data adds the fixed step.
With ``sizeAhead`` a round is sized for the demand that far ahead along its measured rise.
Such a round is judged early when the load outgrows it (:func:`_outgrown`): Breached on data
from after it took effect, with the measured demand needing more replicas than are running,
the next round starts without waiting for ``verifyAt``. A step with ``sizeAhead`` follows a
rising load: its next round starts as soon as the demand, still rising, needs more replicas at
the target utilisation than are running, before the load breaches the SLO again (a ramp that
outgrows each round would otherwise breach once per round).

Hysteresis: a step counts as succeeded only when the SLO is Met at its verification time, which
starts ``verifyAfter`` after the action took effect (rollback: traffic switched; scale-out:
replicas ready; a restart or a shift: once carried out). A Warning at verification gets one more
``verifyAfter``; a Breached verdict is final.

Fresh data: a verdict counts only if every window behind it starts at or after the step's
``judgedFrom``, the moment the action took effect (``Context.judged`` says which data a verdict
rests on). The worker copies ``judgedFrom`` into the md's ``status.freshData`` and the fleet
caps the deployment's windows to it, as it does for a young revision, so a 5-minute average
still full of the surge that a scale-out answered cannot order another round. Metrics missing
during verification hold it (recorded in ``metricsMissingSince``, which survives restarts);
when they return, ``judgedFrom`` moves to that moment and ``verifyAt`` to a full ``verifyAfter``
later: windows reaching into the gap read low rates, and the wall clock that ran through the
gap must not turn the first inconclusive verdict into a failure. A shift of all traffic to a fallback leaves the SLO without traffic (InsufficientTraffic),
which is final too: the shift stays in place and the plan moves on (usually to escalate).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import TypeAlias

from vigil.act import guards, runbooks, sizing
from vigil.act import intents as acts
from vigil.api import conditions as cond
from vigil.api import incident as incapi
from vigil.api import modeldeployment as mdapi
from vigil.api import runbook as rbapi
from vigil.api import slo as sloapi
from vigil.record import incidents as records

PlanState: TypeAlias = incapi.IncidentStatus
"""The machine's state is the Incident's status: phase, plan (with step progress) and timeline."""

ESCALATE = "escalate"
ESCALATION_TIMEOUT = "5m"
HOLD_NO_METRICS = "holding: metrics unavailable"

# Timeline entry types (Incident.status.timeline[].type); guards.INTENT marks cluster actions.
PLANNED = "Planned"
SKIPPED = "Skipped"
NOTIFY = "Notify"
APPLIED = "Applied"
RETRY = "Retry"
EFFECTIVE = "Effective"
RESUMED = "Resumed"
VERIFIED = "Verified"
FAILED = "Failed"
HOLD = "Hold"
AWAITING_APPROVAL = "AwaitingApproval"
APPROVED = "Approved"
DRY_RUN = "DryRun"
CANCELLED = "Cancelled"
ESCALATED = "Escalated"
STOPPED = "Stopped"
NOTIFIED = "Notified"
SPEC_CHANGED = "SpecChanged"
COOLDOWN_WAIVED = "CooldownWaived"

SIZED_FOR = "sizedFor"
"""Key of a demand-sized scale-out's record: what the round was sized for."""

_S = incapi.StepState
_MAX_TRANSITIONS = 4 * (16 + 1) + 4  # every transition that continues the loop ends a step or starts one


@dataclasses.dataclass(frozen=True)
class Capacity:
    """GPU facts for capacity decisions.

    ``free_gpus`` None means unknown: a namespace-scoped operator cannot see the other namespaces'
    pods, so it cannot count free GPUs. Then no free-GPU check blocks an action; the scheduler is
    the judge, and pods it marks Unschedulable fail the step (``unschedulable_pods``), as they
    would after a count that raced with someone else's pods.
    """

    free_gpus: int | None
    gpus_per_replica: int
    unschedulable_pods: int = 0


@dataclasses.dataclass(frozen=True)
class Pod:
    """One pod of the ModelDeployment. ``failing``: crash-looping, OOMKilled, failing to start, ..."""

    name: str
    revision: str | None
    ready: bool
    failing: bool = False


@dataclasses.dataclass(frozen=True)
class Judged:
    """The data an SLO verdict rests on: from the start of its longest window to its evaluation."""

    since: datetime.datetime
    until: datetime.datetime

    @classmethod
    def of(cls, status: sloapi.SLOStatus | None) -> Judged | None:
        """The span behind ``status`` (None if it was never evaluated)."""
        if status is None or status.last_evaluation_time is None:
            return None
        until = cond.parse_time(status.last_evaluation_time)
        longest = max((sloapi.duration_seconds(b.window) for b in status.burn_rates), default=0.0)
        return cls(since=until - datetime.timedelta(seconds=longest), until=until)

    def __str__(self) -> str:
        return f"judged on data from {cond.rfc3339(self.since)} to {cond.rfc3339(self.until)}"


@dataclasses.dataclass(frozen=True)
class Context:
    """Everything true now that a decision may depend on; the worker gathers it each cycle.

    ``pods`` must list every pod of the deployment: a pod missing from it counts as restarted.
    ``done`` holds the results of the intents the worker executed since the last ``advance``,
    by intent key. ``actions_last_hour`` and ``last_plan_ended_at`` come from the deployment's
    Incidents via :func:`vigil.act.guards.actions_within` and :func:`vigil.act.guards.last_plan_end`.
    ``judged`` is the data ``slo_state`` rests on (:meth:`Judged.of` the SLO's status); a verdict
    whose data starts before the step's ``judgedFrom`` is not taken (None: not known, not taken).
    """

    now: datetime.datetime
    incident: str
    incident_spec: incapi.IncidentSpec
    md: mdapi.ModelDeployment
    slo_state: sloapi.SLOState | None
    metrics_available: bool
    cause: rbapi.Cause
    capacity: Capacity
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    pods: tuple[Pod, ...] = ()
    actions_last_hour: int = 0
    last_plan_ended_at: datetime.datetime | None = None
    last_plan_met_since: datetime.datetime | None = None
    """Since when the SLO was Met when that plan ended (:func:`vigil.act.guards.last_plan_met_since`)."""
    done: Mapping[str, acts.Result] = dataclasses.field(default_factory=dict)
    judged: Judged | None = None
    demand: sizing.Demand | None = None
    """The breached revision's measured load, for scale-out rounds sized from demand (None: unknown)."""


Event = cond.Event


@dataclasses.dataclass(frozen=True)
class Decision:
    """The Incident's new status (write it first), the intents to execute, the Events to post."""

    status: incapi.IncidentStatus
    intents: tuple[acts.Intent, ...]
    events: tuple[Event, ...]


@dataclasses.dataclass(frozen=True)
class _Proposal:
    """A step's next intent, before it is recorded. ``wait``: why it may not be issued yet."""

    intent: acts.Intent
    round: int = 1
    extra: Mapping[str, str] = dataclasses.field(default_factory=dict)
    wait: str | None = None
    rising: sizing.Sized | None = None
    """A scale-out round the measured demand asks for beyond the replicas running."""


@dataclasses.dataclass(frozen=True)
class _Skip:
    reason: str


@dataclasses.dataclass(frozen=True)
class _Blocked:
    reason: str


@dataclasses.dataclass
class _Draft:
    """Mutable working copy while one decision is made."""

    status: incapi.IncidentStatus
    plan: incapi.Plan
    spec: rbapi.RunbookSpec
    ctx: Context
    intents: list[acts.Intent] = dataclasses.field(default_factory=list)
    events: list[Event] = dataclasses.field(default_factory=list)

    def record(
        self,
        type_: str,
        message: str,
        step: str | None = None,
        *,
        reason: str | None = None,
        warning: bool = False,
        once: bool = False,
    ) -> None:
        """Append a timeline entry and its Event; ``once``: not if it repeats the latest entry."""
        if once and self.status.timeline:
            last = self.status.timeline[-1]
            if (last.type, last.message, last.step) == (type_, message, step):
                return
        self.status.timeline.append(records.entry(type_, message, self.ctx.now, step))
        text = message if step is None else f"{step}: {message}"
        self.events.append(Event("Warning" if warning else "Normal", reason or type_, text))

    @property
    def stamp(self) -> str:
        return cond.rfc3339(self.ctx.now)


def mode_override(md_spec: mdapi.ModelDeploymentSpec) -> rbapi.Mode | None:
    """The mode a deployment forces on its plans: a paused deployment only records (dryRun)."""
    return rbapi.Mode.DRY_RUN if md_spec.paused else None


def start_plan(
    runbook_name: str,
    spec: rbapi.RunbookSpec,
    mode: rbapi.Mode | None,
    cause: rbapi.Cause,
    now: datetime.datetime,
    revision: str | None = None,
) -> incapi.Plan:
    """A new plan for ``cause``: ``mode`` (see :func:`mode_override`) wins over the runbook's.

    The runbook is snapshotted into the plan, so editing the Runbook never changes a running plan.
    Steps for other causes are skipped up front, so the plan shows at once what may run.
    ``revision`` is the one the spec asks for now: only a spec with another one supersedes the plan.
    """
    steps: list[incapi.StepProgress] = []
    for step in spec.steps:
        progress = incapi.StepProgress(name=step.name, action=step.action)
        if step.when.causes and cause not in step.when.causes:
            records.end_step(progress, _S.SKIPPED, f"not for cause {cause}", cond.rfc3339(now))
        steps.append(progress)
    return incapi.Plan(
        runbook=runbook_name,
        mode=mode or spec.mode,
        current=0,
        steps=steps,
        spec=spec.model_copy(deep=True),
        revision=revision,
    )


def advance(state: PlanState, ctx: Context) -> Decision:
    """One decision of the plan in ``state`` given ``ctx``; see the module docstring."""
    status = state.model_copy(deep=True)
    plan = status.plan
    if plan is None or status.phase is incapi.Phase.RESOLVED:
        return Decision(status=status, intents=(), events=())
    spec = runbooks.plan_spec(plan)
    problem = _snapshot_problem(plan, spec)
    # A plan without a usable snapshot is only ever cancelled, which reads no step definition.
    draft = _Draft(status=status, plan=plan, spec=spec or runbooks.builtin_default(), ctx=ctx)
    generation = int(ctx.md.metadata.get("generation") or 0)
    changed = generation != ctx.incident_spec.generation
    superseded = _superseded(draft, generation) if changed else None
    if guards.finished(plan):
        _after_plan(draft)
    elif superseded is not None:
        _cancel(draft, f"plan cancelled: {superseded}")
    elif problem is not None:
        _cancel(draft, f"plan cancelled: {problem}")
    else:
        if changed:
            _carry_on(draft, generation)
        if status.phase is incapi.Phase.OPEN:
            _announce(draft)
        _run(draft)
    status.timeline = records.bounded(status.timeline, incapi.TIMELINE_LIMIT)
    return Decision(status=status, intents=tuple(draft.intents), events=tuple(draft.events))


def end_ahead(state: PlanState, now: datetime.datetime, reason: str) -> incapi.IncidentStatus:
    """A headroom plan (trigger ``Headroom``) ended before it finished, for ``reason`` (a breach):
    its unfinished steps Cancelled and recorded. An intent recorded but not yet carried out is never
    carried out; one carried out stays held by the incident, for its give-back."""
    status = state.model_copy(deep=True)
    plan = status.plan
    stamp = cond.rfc3339(now)
    if plan is not None:
        for progress in plan.steps:
            if progress.state not in guards.TERMINAL:
                records.end_step(progress, _S.CANCELLED, reason, stamp)
        plan.current = len(plan.steps)
    status.timeline = records.bounded([*status.timeline, records.entry(CANCELLED, reason, now)], incapi.TIMELINE_LIMIT)
    return status


def judged_from(state: PlanState) -> tuple[str, str] | None:
    """The plan's latest ``judgedFrom`` and its step: verification reads data from then on only."""
    plan = state.plan
    marks = (
        [(cond.parse_time(s.judged_from), s.judged_from, s.name) for s in plan.steps if s.judged_from] if plan else []
    )
    if not marks:
        return None
    _, stamp, name = max(marks)
    return stamp, name


# --- the loop -------------------------------------------------------------------------------


def _run(d: _Draft) -> None:
    plan = d.plan
    for _ in range(_MAX_TRANSITIONS):
        if d.intents:
            return  # one intent per decision: it is executed (and confirmed) before anything else
        while plan.current < len(plan.steps) and plan.steps[plan.current].state in guards.TERMINAL:
            plan.current += 1
        if plan.current >= len(plan.steps):
            if _escalated(d) or d.status.phase is incapi.Phase.ESCALATED:
                return  # escalated already, or stopped: handed over either way
            if _ahead(d):
                return  # before any breach there is nothing to escalate: the worker closes the incident
            _escalate(d, "no step of the plan restored the SLO")
            continue
        index = plan.current
        state = plan.steps[index].state
        if state is _S.PENDING:
            proceed = _start(d, index)
        elif state is _S.INTENDED:
            proceed = _confirm(d, index)
        else:
            proceed = _verify(d, index)
        if not proceed:
            return


def _after_plan(d: _Draft) -> None:
    """A finished plan: only a breach returning after success (before resolution) is news."""
    winner = guards.succeeded(d.plan)
    if (
        d.status.phase is incapi.Phase.MITIGATING
        and not _ahead(d)
        and winner is not None
        and not _escalated(d)
        and not _no_metrics(d.ctx)
        and d.ctx.slo_state is sloapi.SLOState.BREACHED
    ):
        _escalate(d, f"SLO breached again after step {winner.name} succeeded")


def _start(d: _Draft, index: int) -> bool:
    progress = d.plan.steps[index]
    step = _definition(d, index)
    ctx = d.ctx
    acting = step.action is not rbapi.Action.NOTIFY
    if acting and _held(d):
        return False
    unmet = _when_unmet(d, step)
    if unmet is None and acting and _ahead(d):
        unmet = _not_needed_ahead(d, step)
    if unmet is not None:
        _skip(d, index, unmet)
        return True
    proposal = _propose(d, index, step, 1)
    if isinstance(proposal, _Skip):
        _skip(d, index, proposal.reason)
        return True
    if isinstance(proposal, _Blocked):
        if _dry(d):
            _dry_record(d, index, {}, f"would fail: {proposal.reason}")
        else:
            _fail(d, index, proposal.reason)
        return True
    if _dry(d):
        _dry_record(d, index, _target(proposal), f"would {acts.describe(proposal.intent)}")
        return True
    if proposal.wait is not None:
        progress.started_at = progress.started_at or d.stamp
        deadline = cond.parse_time(progress.started_at) + _seconds(step.timeout)
        if ctx.now >= deadline:
            _fail(d, index, f"{proposal.wait} for longer than {step.timeout}")
            return True
        d.record(HOLD, proposal.wait, step.name, once=True)
        return False
    if acting and not _gate(d, index, proposal):
        return False
    _intend(d, index, proposal)
    return False


def _confirm(d: _Draft, index: int) -> bool:
    progress = d.plan.steps[index]
    step = _definition(d, index)
    ctx = d.ctx
    intent = _intent(d, index)
    result = ctx.done.get(intent.key)
    what = acts.describe(intent)
    if (result is not None and result.ok) or _observed(d, intent):
        detail = result.message if result is not None else "found already applied"
        progress.result = detail
        if isinstance(intent, acts.Notify):
            records.end_step(progress, _S.SUCCEEDED, detail, d.stamp)
            d.record(NOTIFIED, f"{what}: {detail}", progress.name)
            d.plan.current = index + 1
            return True
        progress.state = _S.VERIFYING
        if isinstance(intent, acts.Rollback | acts.Scale):
            # Judged only once it took effect (traffic switched, replicas ready): see _verify.
            progress.verify_at = None
            d.record(APPLIED, f"{what}: {detail}; waiting for it to take effect", progress.name, reason="ActionApplied")
        else:
            progress.verify_at = cond.rfc3339(ctx.now + _seconds(step.verify_after))
            progress.judged_from = d.stamp
            d.record(
                APPLIED,
                f"{what}: {detail}; judging the SLO on data from {d.stamp} on, at {progress.verify_at}",
                progress.name,
                reason="ActionApplied",
            )
        return True
    if result is not None:
        d.record(RETRY, f"{what} failed: {result.message}; retrying", progress.name, warning=True, once=True)
    if ctx.now >= _intended_at(progress) + _seconds(step.timeout):
        tail = f": {result.message}" if result is not None else ""
        _fail(d, index, f"{what} not carried out within {step.timeout}{tail}")
        return True
    if not isinstance(intent, acts.Notify) and _no_metrics(ctx):
        d.record(HOLD, HOLD_NO_METRICS, reason="Holding", warning=True, once=True)
        return False
    d.intents.append(intent)
    return False


def _verify(d: _Draft, index: int) -> bool:
    progress = d.plan.steps[index]
    step = _definition(d, index)
    ctx = d.ctx
    intent = _intent(d, index)
    what = acts.describe(intent)
    if _no_metrics(ctx):
        if progress.verify_at is not None and progress.metrics_missing_since is None:
            progress.metrics_missing_since = d.stamp  # durable: a restarted operator knows of the gap
        d.record(HOLD, HOLD_NO_METRICS, reason="Holding", warning=True, once=True)
        return False
    if progress.metrics_missing_since is not None:
        _restart_verification(d, index, step)
        return False
    if progress.verify_at is None:
        if isinstance(intent, acts.Scale) and ctx.capacity.unschedulable_pods > 0:
            _fail(d, index, f"blocked by GPU capacity: {ctx.capacity.unschedulable_pods} pod(s) unschedulable")
            return True
        if _effective(d, intent):
            verify_at = ctx.now + _seconds(step.verify_after)
            progress.verify_at = cond.rfc3339(verify_at)
            progress.judged_from = d.stamp
            d.record(
                EFFECTIVE,
                f"{what} took effect; judging the SLO on data from {d.stamp} on, at {progress.verify_at}",
                progress.name,
            )
            return True
        if ctx.now >= _intended_at(progress) + _seconds(step.timeout):
            if ctx.slo_state is sloapi.SLOState.MET:
                _succeed(d, index, f"SLO Met although {what} had not fully taken effect")
                return False
            _fail(d, index, f"{what} did not take effect within {step.timeout}")
            return True
        return False
    verify_at = cond.parse_time(progress.verify_at)
    if ctx.now < verify_at:
        outgrown = _outgrown(d, index, step)
        if outgrown is not None:
            return _another_round(d, index, step, outgrown, f" ({ctx.judged})" if ctx.judged is not None else "")
        return False
    if not _fresh(ctx, progress):
        # The verdict still reads series from before the action (or the gap): a lagging window
        # must not decide; the fleet's next evaluation caps the windows to the fresh data.
        d.record(HOLD, f"waiting for an SLO verdict on data from {progress.judged_from} on", progress.name, once=True)
        return False
    judged = f" ({ctx.judged})" if ctx.judged is not None else ""
    slo_state = ctx.slo_state
    if slo_state is sloapi.SLOState.MET:
        _succeed(d, index, f"SLO Met at verification after {what}{judged}")
        return False
    away = isinstance(intent, acts.ShiftTraffic) and acts.moves_all_traffic_away(intent.splits)
    last_chance = verify_at + _seconds(step.verify_after)
    if away and slo_state is sloapi.SLOState.INSUFFICIENT_TRAFFIC:
        verdict = "all traffic moved away: the SLO cannot be met without traffic"
    elif slo_state is sloapi.SLOState.BREACHED or ctx.now >= last_chance:
        verdict = f"SLO {slo_state} at verification"
    else:
        d.record(
            HOLD,
            f"verification inconclusive (SLO {slo_state}); judging again until {cond.rfc3339(last_chance)}",
            progress.name,
            once=True,
        )
        return False
    return _another_round(d, index, step, verdict, judged)


def _outgrown(d: _Draft, index: int, step: rbapi.Step) -> str | None:
    """Why a demand-sized scale-out round is judged before its ``verifyAt``, or None.

    The load kept rising past what the round was sized for: the SLO is Breached on data from
    after the round took effect, and the measured demand needs more replicas than are running.
    Waiting out ``verifyAfter`` would only prolong the breach. The demand's window may reach back
    before the action: what arrives does not depend on how many replicas serve it (served plus
    the queue's growth counts every arrival, before and after), so the round starts on the first
    fresh Breached verdict instead of a full rate window later. A backlog the new replicas are
    still draining is not such a case: its completions are old arrivals, which the queue's
    shrinking takes back out of the demand (:mod:`vigil.act.sizing`). So the test reads the
    demand now, without ``sizeAhead``; the round it starts is sized ahead as every round is.

    A step with ``sizeAhead`` also starts its next round while the fresh verdict is still Met (or
    Warning), when the demand now needs more replicas at the target utilisation than are running
    and it is measurably rising (:meth:`vigil.act.sizing.Demand.trend`), the demand read at the end
    of its window (its average is the rate at the window's middle, half a window ago, which on a
    rise lags by that much): on a ramp, waiting for
    the breach costs the SLO the time from detection until the new replicas' data fills its
    windows, once per round. Missing demand, a flat or falling load, or a round still within its
    target utilisation leave the judgement to ``verifyAt``.
    """
    ctx = d.ctx
    progress = d.plan.steps[index]
    if step.params.target_utilization is None or progress.judged_from is None or not _fresh(ctx, progress):
        return None
    state = ctx.slo_state
    breached = state is sloapi.SLOState.BREACHED
    following = step.params.size_ahead is not None and state in (sloapi.SLOState.MET, sloapi.SLOState.WARNING)
    if not (breached or following):
        return None
    current = wanted_replicas(ctx.md)
    if current >= ceiling(ctx.md, step):
        return None  # at the ceiling, verifyAt decides what comes next
    if breached:
        # The demand now, not ahead: a rise still expected must not turn a draining backlog into a round.
        sized = sizing.size(ctx.demand, step.params.target_utilization)
        if not isinstance(sized, sizing.Sized) or sized.replicas <= current:
            return None
        return f"SLO Breached on data from {progress.judged_from} on and {sized} ({current} running)"
    # Before a breach only a measured rise counts, read at the window's end (now), not further ahead.
    now = sizing.size(ctx.demand, step.params.target_utilization, ahead_seconds=0)
    if not isinstance(now, sizing.Sized) or now.trend is None or now.replicas <= current:
        return None  # not measurably rising, or within the target: verifyAt judges the round
    return (
        f"SLO {state} on data from {progress.judged_from} on, but the demand outgrew the round before it breached: "
        f"{now} ({current} running)"
    )


def _sized(demand: sizing.Demand | None, step: rbapi.Step) -> sizing.Sized | str:
    """What ``demand`` asks of a ``scaleOut`` step with ``targetUtilization`` (and ``sizeAhead``)."""
    assert step.params.target_utilization is not None
    ahead = step.params.size_ahead
    return sizing.size(
        demand, step.params.target_utilization, None if ahead is None else int(sloapi.duration_seconds(ahead))
    )


def _fresh(ctx: Context, progress: incapi.StepProgress) -> bool:
    """Whether the verdict rests only on data from the step's ``judgedFrom`` on (steps recorded
    before ``judgedFrom`` existed take any verdict)."""
    if progress.judged_from is None:
        return True
    return ctx.judged is not None and ctx.judged.since >= cond.parse_time(progress.judged_from)


def _restart_verification(d: _Draft, index: int, step: rbapi.Step) -> None:
    """Metrics are back after a gap: judge again from scratch, on data from now on only.

    Windows reaching into the gap read low request rates (InsufficientTraffic) and hold stale
    series; and the verification clock kept running through the gap, so judging at once would
    fail a step on the first inconclusive verdict. Hence a full ``verifyAfter`` from now.
    """
    progress = d.plan.steps[index]
    ctx = d.ctx
    missing = cond.parse_time(progress.metrics_missing_since or d.stamp)
    progress.metrics_missing_since = None
    progress.judged_from = d.stamp
    verify_at = max(cond.parse_time(progress.verify_at or d.stamp), ctx.now + _seconds(step.verify_after))
    progress.verify_at = cond.rfc3339(verify_at)
    gap = sloapi.format_duration(max((ctx.now - missing).total_seconds(), 1.0))
    d.record(
        RESUMED,
        f"metrics back after {gap} without: judging the SLO again on data from {d.stamp} on, at {progress.verify_at}",
        progress.name,
        reason="VerificationRestarted",
    )


def _another_round(d: _Draft, index: int, step: rbapi.Step, verdict: str, judged: str) -> bool:
    """scaleOut and restartPods act in rounds: a failed verification tries the next one.

    ``judged`` (which data the verdict rests on) goes into the step's record, not into the
    escalation, whose message must not depend on when a cycle happened to run.
    """
    if step.action not in (rbapi.Action.SCALE_OUT, rbapi.Action.RESTART_PODS):
        _fail(d, index, verdict, f"{verdict}{judged}")
        return True
    progress = d.plan.steps[index]
    proposal = _propose(d, index, step, int(progress.target.get(acts.ROUND, "1")) + 1)
    if not isinstance(proposal, _Proposal):
        _fail(d, index, f"{verdict}; {proposal.reason}", f"{verdict}{judged}; {proposal.reason}")
        return True
    if proposal.wait is not None:
        verify_at = cond.parse_time(progress.verify_at or d.stamp)
        if d.ctx.now >= verify_at + _seconds(step.timeout):
            tail = f"{proposal.wait} for longer than {step.timeout}"
            _fail(d, index, f"{verdict}; {tail}", f"{verdict}{judged}; {tail}")
            return True
        d.record(HOLD, proposal.wait, progress.name, once=True)
        return False
    if not _gate(d, index, proposal):
        return False
    d.record(VERIFIED, f"{verdict}{judged}: next round", progress.name)
    _intend(d, index, proposal)
    return False


# --- transitions ----------------------------------------------------------------------------


def _intend(d: _Draft, index: int, proposal: _Proposal) -> None:
    progress = d.plan.steps[index]
    progress.target = {**_target(proposal), acts.INTENDED_AT: d.stamp}
    progress.state = _S.INTENDED
    progress.started_at = progress.started_at or d.stamp
    progress.verify_at = None
    progress.judged_from = None
    progress.metrics_missing_since = None
    progress.result = None
    intent = _intent(d, index)
    d.intents.append(intent)
    if isinstance(intent, acts.Notify):
        d.record(NOTIFY, acts.describe(intent), progress.name)
        return
    suffix = f" (round {proposal.round})" if proposal.round > 1 else ""
    basis = proposal.extra.get(SIZED_FOR)
    if basis:
        suffix += f": {basis}"
    d.record(guards.INTENT, f"{acts.describe(intent)}{suffix}", progress.name, reason="ActionIntended")


def _succeed(d: _Draft, index: int, message: str) -> None:
    progress = d.plan.steps[index]
    records.end_step(progress, _S.SUCCEEDED, message, d.stamp)
    d.record(VERIFIED, message, progress.name, reason="StepSucceeded")
    for later in d.plan.steps[index + 1 :]:
        if later.state is _S.PENDING:
            records.end_step(later, _S.SKIPPED, f"not needed: SLO met after {progress.name}", d.stamp)
    d.plan.current = len(d.plan.steps)


def _fail(d: _Draft, index: int, reason: str, shown: str | None = None) -> None:
    """``shown``: the step's record, when it says more than ``reason`` (see :func:`_another_round`)."""
    progress = d.plan.steps[index]
    shown = shown or reason
    records.end_step(progress, _S.FAILED, shown, d.stamp)
    d.record(FAILED, shown, progress.name, reason="StepFailed", warning=True)
    d.plan.current = index + 1
    if index >= len(d.spec.steps):
        return
    on_failure = d.spec.steps[index].on_failure
    if on_failure is rbapi.OnFailure.ESCALATE:
        _escalate(d, f"step {progress.name} failed: {reason}")
    elif on_failure is rbapi.OnFailure.STOP:
        _stop(d, f"step {progress.name} failed: {reason}")


def _skip(d: _Draft, index: int, reason: str) -> None:
    progress = d.plan.steps[index]
    records.end_step(progress, _S.SKIPPED, reason, d.stamp)
    d.record(SKIPPED, reason, progress.name, reason="StepSkipped")
    d.plan.current = index + 1


def _dry_record(d: _Draft, index: int, target: Mapping[str, str], message: str) -> None:
    progress = d.plan.steps[index]
    progress.target = dict(target)
    records.end_step(progress, _S.DRY_RUN, f"dry run: {message}", d.stamp)
    d.record(DRY_RUN, message, progress.name)
    d.plan.current = index + 1


def _escalate(d: _Draft, reason: str) -> None:
    plan = d.plan
    for progress in plan.steps:
        if progress.state is _S.PENDING:
            records.end_step(progress, _S.SKIPPED, "not run: plan escalated", d.stamp)
    d.status.phase = incapi.Phase.ESCALATED
    d.record(ESCALATED, reason, reason="Escalated", warning=True)
    message = _escalation_message(d, reason)
    plan.steps.append(incapi.StepProgress(name=ESCALATE, action=rbapi.Action.NOTIFY, started_at=d.stamp))
    index = len(plan.steps) - 1
    plan.current = index
    hook = next((s.params.webhook for s in d.spec.steps if s.params.webhook), None)
    notify = acts.Notify(webhook=acts.WebhookRef.of(hook), message=message, key=_key(d, index, 1))
    if _dry(d):
        _dry_record(d, index, acts.to_target(notify), f"would {acts.describe(notify)}")
    else:
        _intend(d, index, _Proposal(intent=notify))


def _stop(d: _Draft, reason: str) -> None:
    for progress in d.plan.steps:
        if progress.state is _S.PENDING:
            records.end_step(progress, _S.SKIPPED, "not run: plan stopped", d.stamp)
    d.plan.current = len(d.plan.steps)
    d.status.phase = incapi.Phase.ESCALATED
    d.record(STOPPED, f"plan stopped ({reason}); handed over without notification", reason="Stopped", warning=True)


def _cancel(d: _Draft, reason: str) -> None:
    for progress in d.plan.steps:
        if progress.state not in guards.TERMINAL:
            records.end_step(progress, _S.CANCELLED, reason, d.stamp)
    d.plan.current = len(d.plan.steps)
    d.status.phase = incapi.Phase.ESCALATED
    d.record(CANCELLED, reason, reason="PlanCancelled")


def _planned_revision(d: _Draft) -> str | None:
    return d.plan.revision or d.ctx.incident_spec.revision


def _superseded(d: _Draft, generation: int) -> str | None:
    """Why spec ``generation`` (newer than the incident's) ends the plan; None when the plan carries on.

    A new revision (model version, image, resources) is the humans' answer to the incident: it
    supersedes the plan and every override made for it. A generation that keeps the plan's revision
    (``kubectl scale``, SLOs, bake time) does not, as Flagger and Argo Rollouts keep a rollout's
    analysis through a scale: the reconcile core keeps the rollback (RollbackKept). It does drop a
    scale-out or traffic override on any new generation (the spec's replicas win), so a plan that
    made or intends one of those is cancelled instead of fighting the new spec.
    """
    planned = _planned_revision(d)
    wanted = d.ctx.md.status.desired_revision
    if planned is None or wanted is None:
        opened = d.ctx.incident_spec.generation
        return f"spec generation {generation} supersedes generation {opened} (and the overrides made for it)"
    if wanted != planned:
        return (
            f"spec generation {generation} asks for revision {wanted}, superseding the plan made for "
            f"revision {planned} and the overrides made for it"
        )
    overriding = (rbapi.Action.SCALE_OUT, rbapi.Action.SHIFT_TRAFFIC)
    made = [s for s in d.plan.steps if s.action in overriding and s.target and s.state is not _S.DRY_RUN]
    if made:
        names = ", ".join(f"{s.name} ({s.action})" for s in made)
        return (
            f"spec generation {generation} keeps revision {planned} but sets replicas and traffic itself, "
            f"superseding what step {names} changed"
        )
    return None


def _carry_on(d: _Draft, generation: int) -> None:
    """Say once per generation that a spec change left the plan running, and why."""
    planned = _planned_revision(d)
    message = f"spec generation {generation} keeps revision {planned}: the plan continues"
    rollback = d.ctx.md.status.rollback
    if rollback is not None and rollback.incident == d.ctx.incident:
        message += f", serving the rollback to {rollback.revision} at the spec's replicas"
    if not any(e.type == SPEC_CHANGED and e.message == message for e in d.status.timeline):
        d.record(SPEC_CHANGED, message, reason="PlanContinues")


def _announce(d: _Draft) -> None:
    plan = d.plan
    d.status.phase = incapi.Phase.MITIGATING
    runnable = [s.name for s in plan.steps if s.state is _S.PENDING]
    skipped = [s.name for s in plan.steps if s.state is _S.SKIPPED]
    text = f"runbook {plan.runbook} ({plan.mode}) for cause {d.ctx.cause}: "
    text += f"steps {', '.join(runnable)}" if runnable else "no step applies"
    if skipped:
        text += f"; skipped (not for this cause): {', '.join(skipped)}"
    d.record(PLANNED, text, reason="PlanStarted")


# --- gates ----------------------------------------------------------------------------------


def _no_metrics(ctx: Context) -> bool:
    return not ctx.metrics_available or ctx.slo_state is None or ctx.slo_state is sloapi.SLOState.NO_DATA


def _held(d: _Draft) -> bool:
    """Whether a new action must wait for data or for a breach; records why, once."""
    if _no_metrics(d.ctx):
        d.record(HOLD, HOLD_NO_METRICS, reason="Holding", warning=True, once=True)
        return True
    if _ahead(d) and d.ctx.slo_state in (sloapi.SLOState.MET, sloapi.SLOState.WARNING):
        return False  # a headroom plan acts before the breach, on the demand (_not_needed_ahead)
    if d.ctx.slo_state is not sloapi.SLOState.BREACHED:
        d.record(HOLD, f"holding: SLO {d.ctx.slo_state}, acting only while Breached", once=True)
        return True
    return False


def _ahead(d: _Draft) -> bool:
    """A headroom plan (:mod:`vigil.act.headroom`): it acts before any breach, never escalates."""
    return d.ctx.incident_spec.ahead


def sized_elsewhere(md: mdapi.ModelDeployment) -> str | None:
    """Why ``md``'s replicas may not be sized ahead of a breach whatever the demand (None: they may):
    an autoscaler owns the count, or they would go to a revision that serves no traffic yet. Checked
    when a headroom Incident would open and again before its step acts (an approval, a restart and
    the pass between leave time for either to start)."""
    owner = mdapi.scale_owner(md.metadata)
    if owner is not None:
        # An HPA sizes on its own target: two owners of one count oscillate, period about a cooldown.
        return (
            f"spec.replicas is set by {owner} through the scale subresource: the replica count has one owner at a time"
        )
    rolling = mdapi.rolling_out(md.status)
    if rolling is not None:
        # The serving revision's demand would size the one rolled out, and delay its switch (which
        # waits for all its replicas).
        return f"a rollout to revision {rolling} is in progress"
    return None


def _not_needed_ahead(d: _Draft, step: rbapi.Step) -> str | None:
    """Why a headroom plan's step does not act (None: it does): only a scaleOut sized from demand
    acts before a breach, and only while the demand, rising, still needs more replicas than run
    (:func:`vigil.act.sizing.outgrows`), as when the incident was opened: after a restart, or an
    approval that came late, a load that fell back is no reason any more."""
    target = step.params.target_utilization
    if step.action is not rbapi.Action.SCALE_OUT or target is None:
        return f"no breach: only a scaleOut sized from demand acts ahead of one ({step.action})"
    elsewhere = sized_elsewhere(d.ctx.md)
    if elsewhere is not None:
        return f"not scaled ahead of a breach: {elsewhere}"
    if d.ctx.slo_state is sloapi.SLOState.BREACHED:
        return None
    running = wanted_replicas(d.ctx.md)
    if running < 1:
        return "no longer needed ahead of a breach: scaled to zero (spec.replicas 0)"
    sized = sizing.outgrows(d.ctx.demand, target, running)
    return f"no longer needed ahead of a breach: {sized}" if isinstance(sized, str) else None


def _dry(d: _Draft) -> bool:
    return d.plan.mode is rbapi.Mode.DRY_RUN or d.ctx.md.spec.paused


def _gate(d: _Draft, index: int, proposal: _Proposal) -> bool:
    """Guards, then approval; records why an action is held, once."""
    progress = d.plan.steps[index]
    ctx = d.ctx
    waiver = _cooldown_waiver(d, proposal)
    blocked = guards.blocked(
        d.spec.guards, d.plan, ctx.actions_last_hour, ctx.last_plan_ended_at, ctx.now, waiver is not None
    )
    if blocked is not None:
        d.record(HOLD, blocked, progress.name, reason="Holding", warning=True, once=True)
        return False
    if waiver is not None:
        d.record(COOLDOWN_WAIVED, waiver, progress.name, reason="CooldownWaived")
    if d.plan.mode is rbapi.Mode.APPROVAL:
        key = d.spec.approval_annotation
        if ctx.annotations.get(key) != "true":
            message = f"awaiting approval to {acts.describe(proposal.intent)}: annotate the Incident {key}=true"
            d.status.phase = incapi.Phase.AWAITING_APPROVAL
            progress.result = message
            d.record(AWAITING_APPROVAL, message, progress.name, once=True)
            return False
        if d.status.phase is incapi.Phase.AWAITING_APPROVAL:
            d.status.phase = incapi.Phase.MITIGATING
            d.record(APPROVED, f"approved by annotation {key}=true", progress.name)
    return True


def _cooldown_waiver(d: _Draft, proposal: _Proposal) -> str | None:
    """Why the cooldown does not hold ``proposal`` (see :func:`vigil.act.guards.cooling`), or None.

    Only a scale-out the measured demand asks for beyond the replicas running, for a breach that
    began after the last plan ended (this incident was opened then: the SLO had recovered), on
    demand read from data none of which belongs to the old breach: the load kept rising past what
    that plan provisioned. The demand's window may reach back before the plan's end, but only as
    far as the data that plan's last step was verified Met on (``last_plan_met_since``): what
    arrived then was served within the SLO, and arrivals do not depend on how many replicas
    serve them. Without such a verdict, the window starts after the plan's end. Neither the old
    breach nor a window reaching back into it can waive it.
    """
    ctx = d.ctx
    until = guards.cooling(d.spec.guards, d.plan, ctx.last_plan_ended_at, ctx.now)
    sized = proposal.rising
    ended = ctx.last_plan_ended_at
    if until is None or sized is None or ended is None or d.status.opened_at is None:
        return None
    if cond.parse_time(d.status.opened_at) <= ended:
        return None
    window = sized.window_seconds
    clean_since = min(ctx.last_plan_met_since or ended, ended)
    if window is None or ctx.now - datetime.timedelta(seconds=window) < clean_since:
        return None
    return (
        f"cooldown {d.spec.guards.cooldown} (until {cond.rfc3339(until)}) waived: the SLO breached again after "
        f"the last plan ended ({cond.rfc3339(ended)}) and {sized} ({wanted_replicas(ctx.md)} running)"
    )


def _when_unmet(d: _Draft, step: rbapi.Step) -> str | None:
    when = step.when
    ctx = d.ctx
    if when.causes and ctx.cause not in when.causes:
        return f"not for cause {ctx.cause} (only {', '.join(when.causes)})"
    if when.revision_changed_within is not None:
        switched = ctx.md.status.switched_at
        if switched is None:
            return "the serving revision has no recorded switch time"
        opened = cond.parse_time(d.status.opened_at) if d.status.opened_at else ctx.now
        age = (opened - cond.parse_time(switched)).total_seconds()
        if age < 0:
            return "the serving revision changed after the breach began"
        if age > sloapi.duration_seconds(when.revision_changed_within):
            return (
                f"the serving revision changed {sloapi.format_duration(age)} before the breach, "
                f"not within {when.revision_changed_within}"
            )
    return None


# --- proposals ------------------------------------------------------------------------------


def _propose(d: _Draft, index: int, step: rbapi.Step, round_: int) -> _Proposal | _Skip | _Blocked:
    if step.action is rbapi.Action.ROLLBACK:
        return _propose_rollback(d, index)
    if step.action is rbapi.Action.SCALE_OUT:
        return _propose_scale(d, index, step, round_)
    if step.action is rbapi.Action.SHIFT_TRAFFIC:
        return _propose_shift(d, index, step)
    if step.action is rbapi.Action.RESTART_PODS:
        return _propose_restart(d, index, round_)
    message = step.params.message or (
        f"vigil: incident {d.ctx.incident}: {d.ctx.incident_spec.model_deployment} SLO "
        f"{d.ctx.incident_spec.slo} breached (cause {d.ctx.cause}); runbook {d.plan.runbook}, step {step.name}"
    )
    webhook = acts.WebhookRef.of(step.params.webhook)
    return _Proposal(intent=acts.Notify(webhook=webhook, message=message, key=_key(d, index, 1)))


def _propose_rollback(d: _Draft, index: int) -> _Proposal | _Skip | _Blocked:
    md = d.ctx.md
    breached = _breached_revision(d.ctx)
    if breached is None:
        return _Skip("no serving revision to roll back from")
    good = _last_known_good(md, breached)
    if good is None:
        return _Skip(f"no last-known-good revision other than {breached}")
    if md.status.current_revision == good.name:
        return _Skip(f"already serving last-known-good revision {good.name}")
    if not _warm(d, good.name):
        shortfall = _gpu_shortfall(d.ctx, wanted_replicas(md) * good.shape.triton.gpus)
        if shortfall is not None:
            return _Blocked(f"{shortfall} to start cold revision {good.name}")
    return _Proposal(intent=acts.Rollback(to_revision=good.name, from_revision=breached, key=_key(d, index, 1)))


def _propose_scale(d: _Draft, index: int, step: rbapi.Step, round_: int) -> _Proposal | _Skip | _Blocked:
    md = d.ctx.md
    capacity = d.ctx.capacity
    current = wanted_replicas(md)
    top = ceiling(md, step)
    extra: dict[str, str] = {}
    rising: sizing.Sized | None = None
    if step.params.target_utilization is not None:
        sized = _sized(d.ctx.demand, step)
        least = current + (step.params.step_replicas or 1)
        if isinstance(sized, sizing.Sized):
            target = min(max(least, sized.replicas), top)
            extra[SIZED_FOR] = str(sized)
            # Evidence for the cooldown waiver is the demand now, not a rise still expected.
            now = sized if sized.projected is None else sizing.size(d.ctx.demand, step.params.target_utilization)
            rising = now if isinstance(now, sizing.Sized) and now.replicas > current else None
        else:
            target = min(least, top)
            extra[SIZED_FOR] = f"{sized}: by stepReplicas"
    else:
        increment = step.params.step_replicas or max(top - current, 1)
        target = min(current + increment, top)
    if target <= current:
        return _Blocked(f"already at maxReplicas {top} ({current} replicas)")
    if capacity.unschedulable_pods > 0:
        return _Blocked(
            f"blocked by GPU capacity: {capacity.unschedulable_pods} pod(s) of this deployment unschedulable"
        )
    shortfall = _gpu_shortfall(d.ctx, (target - current) * capacity.gpus_per_replica)
    if shortfall is not None:
        return _Blocked(f"{shortfall} to scale from {current} to {target} replicas")
    intent = acts.Scale(replicas=target, key=_key(d, index, round_))
    return _Proposal(intent=intent, round=round_, extra=extra, rising=rising)


def _propose_shift(d: _Draft, index: int, step: rbapi.Step) -> _Proposal | _Skip | _Blocked:
    md = d.ctx.md
    weight = step.params.weight if step.params.weight is not None else 100
    if weight == 0:
        return _Skip("weight 0 moves no traffic")
    if (step.params.target or "fallback") == "fallback":
        fallback = md.spec.traffic.fallback
        if fallback is None:
            return _Skip("no spec.traffic.fallback configured")
        backend = f"{acts.FALLBACK_PREFIX}{fallback}"
    else:
        breached = _breached_revision(d.ctx)
        good = _last_known_good(md, breached) if breached is not None else None
        if good is None:
            return _Skip(f"no last-known-good revision other than {breached}")
        backend = good.name
    splits: tuple[tuple[str, int], ...] = ((backend, weight),)
    current = md.status.current_revision
    if weight < 100 and current is not None and current != backend:
        splits += ((current, 100 - weight),)
    return _Proposal(intent=acts.ShiftTraffic(splits=splits, key=_key(d, index, 1)))


def _propose_restart(d: _Draft, index: int, round_: int) -> _Proposal | _Skip | _Blocked:
    ctx = d.ctx
    revision = _breached_revision(ctx)
    pods = [p for p in ctx.pods if revision is None or p.revision in (revision, None)]
    failing = sorted(p.name for p in pods if p.failing)
    if round_ == 1:
        if not failing:
            return _Skip(f"no failing pods of revision {revision}")
        listed = failing
        chosen = failing[0]
    else:
        target = d.plan.steps[index].target
        listed = [name for name in target.get(acts.PODS, "").split(",") if name]
        last = target.get(acts.POD, "")
        after = listed[listed.index(last) + 1 :] if last in listed else listed
        remaining = [name for name in after if name in failing]
        if not remaining:
            return _Skip("no failing pod left to restart")
        chosen = remaining[0]
    starting = sorted(p.name for p in pods if not p.ready and not p.failing)
    wait = f"waiting for pod(s) {', '.join(starting)} to be ready before restarting {chosen}" if starting else None
    namespace = str(ctx.md.metadata.get("namespace") or "")
    return _Proposal(
        intent=acts.RestartPod(namespace=namespace, pod=chosen, key=_key(d, index, round_)),
        round=round_,
        extra={acts.PODS: ",".join(listed)},
        wait=wait,
    )


# --- facts ----------------------------------------------------------------------------------


def _breached_revision(ctx: Context) -> str | None:
    return ctx.incident_spec.revision or ctx.md.status.current_revision


def _last_known_good(md: mdapi.ModelDeployment, breached: str) -> mdapi.Revision | None:
    """The newest last-known-good revision that is not the breached one."""
    good = [r for r in md.status.revisions if r.last_known_good and r.name != breached]
    return good[-1] if good else None


def _warm(d: _Draft, revision: str) -> bool:
    """The reconcile core keeps the previous revision running for bakeTime after a switch."""
    status = d.ctx.md.status
    if status.previous_revision != revision or status.switched_at is None:
        return False
    age = (d.ctx.now - cond.parse_time(status.switched_at)).total_seconds()
    return age < sloapi.duration_seconds(d.ctx.md.spec.bake_time)


def ceiling(md: mdapi.ModelDeployment, step: rbapi.Step) -> int:
    """The most replicas ``step`` may scale ``md`` to: spec.maxReplicas, or the step's own lower maxReplicas."""
    top = md.spec.max_replicas_or_default()
    return top if step.params.max_replicas is None else min(top, step.params.max_replicas)


def wanted_replicas(md: mdapi.ModelDeployment) -> int:
    """The replicas ``md`` runs by its current generation: a scale override's, else spec.replicas."""
    generation = int(md.metadata.get("generation") or 0)
    scale = md.status.scale
    return scale.replicas if scale is not None and scale.generation == generation else md.spec.replicas


def _gpu_shortfall(ctx: Context, needed: int) -> str | None:
    if needed <= 0:
        return None
    free = ctx.capacity.free_gpus
    if free is not None and free < needed:
        return f"blocked by GPU capacity: {needed} nvidia.com/gpu needed, {free} free"
    return None


def _observed(d: _Draft, intent: acts.Intent) -> bool:
    """Whether the world shows ``intent`` carried out, though nobody reported it."""
    if isinstance(intent, acts.Notify):
        return False
    if isinstance(intent, acts.RestartPod):
        return all(p.name != intent.pod for p in d.ctx.pods)
    return acts.applied(d.ctx.md.status, intent, d.ctx.incident)


def _effective(d: _Draft, intent: acts.Intent) -> bool:
    """Whether an executed intent took effect: traffic switched, replicas ready."""
    status = d.ctx.md.status
    if isinstance(intent, acts.Rollback):
        return status.current_revision == intent.to_revision
    if isinstance(intent, acts.Scale):
        return status.ready_replicas >= intent.replicas
    return True


# --- records --------------------------------------------------------------------------------


def _definition(d: _Draft, index: int) -> rbapi.Step:
    if index < len(d.spec.steps):
        return d.spec.steps[index]
    return rbapi.Step(
        name=ESCALATE, action=rbapi.Action.NOTIFY, timeout=ESCALATION_TIMEOUT, on_failure=rbapi.OnFailure.STOP
    )


def _escalated(d: _Draft) -> bool:
    return len(d.plan.steps) > len(d.spec.steps)


def _snapshot_problem(plan: incapi.Plan, spec: rbapi.RunbookSpec | None) -> str | None:
    if spec is None:
        return f"the plan carries no snapshot of runbook {plan.runbook}"
    recorded = [(s.name, s.action) for s in plan.steps[: len(spec.steps)]]
    if recorded != [(s.name, s.action) for s in spec.steps]:
        return f"the plan's steps do not match its snapshot of runbook {plan.runbook}"
    extra = plan.steps[len(spec.steps) :]
    if len(extra) > 1 or any(s.action is not rbapi.Action.NOTIFY for s in extra):
        return "the plan holds steps its runbook does not"
    return None


def _key(d: _Draft, index: int, round_: int) -> str:
    """Unique per incident, step and round; stable across replays."""
    return f"{d.ctx.incident}/{index}-{d.plan.steps[index].name}/{round_}"


def _target(proposal: _Proposal) -> dict[str, str]:
    return {**acts.to_target(proposal.intent), **proposal.extra, acts.ROUND: str(proposal.round)}


def _intent(d: _Draft, index: int) -> acts.Intent:
    """The intent recorded for step ``index``: rebuilt from the record, never recomputed."""
    progress = d.plan.steps[index]
    round_ = int(progress.target.get(acts.ROUND, "1"))
    namespace = str(d.ctx.md.metadata.get("namespace") or "")
    return acts.from_target(progress.action, progress.target, _key(d, index, round_), namespace)


def _intended_at(progress: incapi.StepProgress) -> datetime.datetime:
    stamp = progress.target.get(acts.INTENDED_AT) or progress.started_at
    return cond.parse_time(stamp) if stamp else datetime.datetime.min.replace(tzinfo=datetime.UTC)


def _seconds(duration: str) -> datetime.timedelta:
    return datetime.timedelta(seconds=sloapi.duration_seconds(duration))


def _escalation_message(d: _Draft, reason: str) -> str:
    ctx = d.ctx
    steps = ", ".join(f"{s.name} {s.state}" for s in d.plan.steps)
    return (
        f"vigil escalates incident {ctx.incident}: ModelDeployment {ctx.incident_spec.model_deployment} "
        f"SLO {ctx.incident_spec.slo} (cause {ctx.cause}): {reason}. Runbook {d.plan.runbook}: {steps}."
    )
