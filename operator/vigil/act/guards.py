"""Guards: how often a runbook may act on one deployment, judged from durable records only.

A flapping signal must not make vigil flap the cluster, so a runbook's ``guards`` bound it:

* ``cooldown``: a plan takes no first action until this long after the deployment's last plan
  that *acted* ended (a plan that only skipped steps or escalated changed nothing to settle);
* ``maxActionsPerHour``: no action while the deployment's Incidents record this many actions in
  the last hour. Every cluster action (rollback, scale round, traffic shift, pod restart) counts;
  notifications do not, nor do dry-run records.

Both are computed from the Incidents' timelines and plans (:func:`actions_within`,
:func:`last_plan_end`), never from memory, so a restarted operator enforces the same limits.
The plan predicates (:func:`finished`, :func:`succeeded`, :func:`acted`) live here because both
the guards and the step machine read plans through them.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Iterator

from vigil.act import intents
from vigil.api import conditions as cond
from vigil.api import incident as incapi
from vigil.api import runbook as rbapi
from vigil.api import slo as sloapi

# Timeline entry type of a recorded cluster action: what maxActionsPerHour counts.
INTENT = "Intent"
HOUR = datetime.timedelta(hours=1)

TERMINAL = frozenset(
    {
        incapi.StepState.SUCCEEDED,
        incapi.StepState.FAILED,
        incapi.StepState.SKIPPED,
        incapi.StepState.DRY_RUN,
        incapi.StepState.CANCELLED,
    }
)


def finished(plan: incapi.Plan) -> bool:
    """The machine has moved past every step: succeeded, escalated, stopped or cancelled."""
    return plan.current >= len(plan.steps) and all(s.state in TERMINAL for s in plan.steps)


def succeeded(plan: incapi.Plan) -> incapi.StepProgress | None:
    """The step whose action restored the SLO (notifications restore nothing), if any."""
    return next(
        (s for s in plan.steps if s.state is incapi.StepState.SUCCEEDED and s.action is not rbapi.Action.NOTIFY),
        None,
    )


def acting_steps(plan: incapi.Plan) -> Iterator[incapi.StepProgress]:
    """The steps that recorded a cluster action (an intent that was neither a notification nor a dry run)."""
    return (
        s
        for s in plan.steps
        if s.action is not rbapi.Action.NOTIFY
        and intents.INTENDED_AT in s.target
        and s.state is not incapi.StepState.DRY_RUN
    )


def acted(plan: incapi.Plan) -> bool:
    """Whether the plan recorded any cluster action (see :func:`acting_steps`)."""
    return next(acting_steps(plan), None) is not None


def actions_within(
    statuses: Iterable[incapi.IncidentStatus], now: datetime.datetime, window: datetime.timedelta = HOUR
) -> int:
    """Cluster actions recorded in ``statuses`` (one deployment's Incidents) during ``window`` before ``now``."""
    since = now - window
    count = 0
    for status in statuses:
        for entry in status.timeline:
            if entry.type == INTENT and since < cond.parse_time(entry.time) <= now:
                count += 1
    return count


def last_plan_end(statuses: Iterable[incapi.IncidentStatus]) -> datetime.datetime | None:
    """When the most recent finished plan that acted ended, over one deployment's Incidents."""
    ends: list[datetime.datetime] = []
    for status in statuses:
        plan = status.plan
        if plan is None or not finished(plan) or not acted(plan):
            continue
        stamps = [cond.parse_time(s.finished_at) for s in plan.steps if s.finished_at]
        if stamps:
            ends.append(max(stamps))
    return max(ends) if ends else None


def last_plan_met_since(statuses: Iterable[incapi.IncidentStatus]) -> datetime.datetime | None:
    """Since when the SLO was judged Met when the most recent finished plan that acted ended (the
    data its succeeded last step was verified on, from ``judgedFrom``), or None: that plan did not
    end on such a verdict, or there is none."""
    latest: tuple[datetime.datetime, datetime.datetime | None] | None = None
    for status in statuses:
        plan = status.plan
        if plan is None or not finished(plan) or not acted(plan):
            continue
        done = [s for s in plan.steps if s.finished_at]
        if not done:
            continue
        last = max(done, key=lambda s: cond.parse_time(s.finished_at or ""))
        end = cond.parse_time(last.finished_at or "")
        met = last.judged_from if last.state is incapi.StepState.SUCCEEDED else None
        if latest is None or end > latest[0]:
            latest = (end, cond.parse_time(met) if met else None)
    return None if latest is None else latest[1]


def cooling(
    guards: rbapi.Guards, plan: incapi.Plan, last_plan_ended_at: datetime.datetime | None, now: datetime.datetime
) -> datetime.datetime | None:
    """Until when the cooldown holds ``plan``'s first action (None: it does not).

    The cooldown keeps a plan from acting on the same signal before the last plan's action has
    settled. The step machine waives it for the scale-out of a breach that began after the last
    plan ended, sized from demand measured on data none of which belongs to the last breach (after
    that plan ended, or after the data its last step was verified Met on began), when it asks for more replicas
    than are running: load that kept rising past what the last plan provisioned is a new
    signal, and adding capacity undoes nothing (flapping is undoing; giving back waits for its
    own stabilization window).
    """
    if acted(plan) or last_plan_ended_at is None:
        return None
    until = last_plan_ended_at + datetime.timedelta(seconds=sloapi.duration_seconds(guards.cooldown))
    return until if now < until else None


def blocked(
    guards: rbapi.Guards,
    plan: incapi.Plan,
    actions_last_hour: int,
    last_plan_ended_at: datetime.datetime | None,
    now: datetime.datetime,
    waive_cooldown: bool = False,
) -> str | None:
    """Why a new action may not be taken now, or None. Messages stay constant while the block lasts.

    ``waive_cooldown``: the action answers fresh evidence the last plan could not have seen
    (see :func:`cooling`); ``maxActionsPerHour`` still holds it.
    """
    until = cooling(guards, plan, last_plan_ended_at, now)
    if until is not None and not waive_cooldown:
        return f"holding: cooldown {guards.cooldown} after the last plan, until {cond.rfc3339(until)}"
    if actions_last_hour >= guards.max_actions_per_hour:
        return f"holding: maxActionsPerHour ({guards.max_actions_per_hour}) reached for this deployment"
    return None
