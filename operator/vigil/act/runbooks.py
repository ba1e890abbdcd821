"""Which runbook answers a breach, and the built-in default used when none is referenced.

:func:`resolve` fails safe. A ModelDeployment *without* a ``runbookRef`` gets the built-in
default. A deployment *with* one gets that Runbook when it exists, reads as a valid spec and one
of its triggers matches the breached SLO and the diagnosed cause. Any other outcome (not found,
invalid, no trigger matches) means **no automatic action**: the built-in default is planned as a
dry run, so the Incident still shows what would have been done, and the resolution says what is
wrong with the reference (the worker turns it into the ``RunbookResolved`` condition and an
Event). Someone who wrote an ``approval`` or ``dryRun`` runbook never gets automatic rollbacks
because of a typo in a name or a field.

The built-in default (``builtin-default``, mode ``auto``) is one ordered list whose steps are
gated by cause (``when.causes``); steps for other causes are skipped when the plan starts. When no
step restores the SLO, the plan escalates: it notifies (Events only: the default knows no
webhook) and hands over.

=========================  ======================================================================
cause                      steps
=========================  ======================================================================
``BadRollout``             ``rollback`` to the newest last-known-good revision (other than the
                           breached one), verified after 60s; on failure escalate. Without a
                           last-known-good revision the step is skipped and the plan escalates.
``CrashingPods``           ``restart-pods``: delete the failing pods of the breached revision one
                           at a time (each only when the other pods are ready), verified after
                           60s per pod; then ``rollback-crashing``: roll back, but only if the
                           serving revision changed within 24h before the breach (a revision that
                           served well for a day is more likely hurt by its environment than by
                           its release); on failure escalate.
``LoadSurge``              ``scale-out`` up to ``spec.maxReplicas`` in rounds sized from the
                           measured demand (:mod:`vigil.act.sizing`) at 70 % utilisation, for
                           the demand 90s ahead along its rise, at least 2 more replicas per
                           round (2 when the data cannot say), each round verified 90s after its
                           replicas are ready, the next one early once fresh data shows the load
                           outgrew it; a round that would
                           need more ``nvidia.com/gpu`` than is free, or meets unschedulable pods,
                           fails at once ("blocked by GPU capacity") and so does a breach at
                           ``maxReplicas``; then ``shift-to-fallback``.
``Capacity``               ``shift-to-fallback``: all traffic to ``spec.traffic.fallback`` if one
                           is configured (else skipped), verified after 60s; on failure escalate.
``Unknown``                no step applies: notify and escalate.
=========================  ======================================================================

Guards: ``cooldown: 10m`` (no new plan this soon after a plan that acted) and
``maxActionsPerHour: 6`` per deployment.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import pydantic

from vigil.api import incident as incapi
from vigil.api import runbook as rbapi

BUILTIN = "builtin-default"


def builtin_default() -> rbapi.RunbookSpec:
    """The runbook used when a ModelDeployment references none (see the module docstring)."""
    cause = rbapi.Cause
    return rbapi.RunbookSpec(
        mode=rbapi.Mode.AUTO,
        triggers=[rbapi.Trigger(slo="*")],
        steps=[
            rbapi.Step(
                name="rollback",
                action=rbapi.Action.ROLLBACK,
                when=rbapi.StepWhen(causes=[cause.BAD_ROLLOUT]),
                verify_after="60s",
                timeout="5m",
                on_failure=rbapi.OnFailure.ESCALATE,
            ),
            rbapi.Step(
                name="restart-pods",
                action=rbapi.Action.RESTART_PODS,
                when=rbapi.StepWhen(causes=[cause.CRASHING_PODS]),
                verify_after="60s",
                timeout="5m",
                on_failure=rbapi.OnFailure.NEXT,
            ),
            rbapi.Step(
                name="rollback-crashing",
                action=rbapi.Action.ROLLBACK,
                when=rbapi.StepWhen(causes=[cause.CRASHING_PODS], revision_changed_within="24h"),
                verify_after="60s",
                timeout="5m",
                on_failure=rbapi.OnFailure.ESCALATE,
            ),
            rbapi.Step(
                name="scale-out",
                action=rbapi.Action.SCALE_OUT,
                params=rbapi.Params(step_replicas=2, target_utilization=70, size_ahead="90s"),
                when=rbapi.StepWhen(causes=[cause.LOAD_SURGE]),
                verify_after="90s",
                timeout="10m",
                on_failure=rbapi.OnFailure.NEXT,
            ),
            rbapi.Step(
                name="shift-to-fallback",
                action=rbapi.Action.SHIFT_TRAFFIC,
                params=rbapi.Params(target="fallback", weight=100),
                when=rbapi.StepWhen(causes=[cause.LOAD_SURGE, cause.CAPACITY]),
                verify_after="60s",
                timeout="5m",
                on_failure=rbapi.OnFailure.ESCALATE,
            ),
        ],
        guards=rbapi.Guards(cooldown="10m", max_actions_per_hour=6),
    )


def plan_spec(plan: incapi.Plan) -> rbapi.RunbookSpec | None:
    """The runbook a plan runs: its snapshot, or the built-in default for a built-in plan recorded
    without one (None: a named runbook's plan without its snapshot)."""
    if plan.spec is None and plan.runbook == BUILTIN:
        return builtin_default()
    return plan.spec


def matches(spec: rbapi.RunbookSpec, slo: str, cause: rbapi.Cause) -> bool:
    """Whether one of ``spec``'s triggers answers a breach of ``slo`` diagnosed as ``cause``."""
    return any(
        (trigger.slo in ("*", slo)) and (not trigger.causes or cause in trigger.causes) for trigger in spec.triggers
    )


class Reason(enum.StrEnum):
    """Reasons of the ``RunbookResolved`` condition."""

    RESOLVED = "Resolved"
    BUILTIN_DEFAULT = "BuiltinDefault"
    NOT_FOUND = "NotFound"
    INVALID = "Invalid"
    NO_MATCHING_TRIGGER = "NoMatchingTrigger"


@dataclasses.dataclass(frozen=True)
class Found:
    """The referenced Runbook as read from the API server: its spec, or why it cannot be read."""

    name: str
    spec: rbapi.RunbookSpec | None
    problem: str | None = None


@dataclasses.dataclass(frozen=True)
class Breach:
    """What a runbook must answer: the breached SLO and the diagnosed cause."""

    slo: str
    cause: rbapi.Cause


@dataclasses.dataclass(frozen=True)
class Resolution:
    """The runbook a plan runs (``runbook``, ``spec``), the mode it is forced into, and why.

    ``mode`` is ``dryRun`` when the reference cannot be used (no automatic action), else None
    (the runbook's own mode). ``usable`` is the ``RunbookResolved`` condition's status.
    """

    runbook: str
    spec: rbapi.RunbookSpec
    mode: rbapi.Mode | None
    reason: Reason
    message: str

    @property
    def usable(self) -> bool:
        return self.reason in (Reason.RESOLVED, Reason.BUILTIN_DEFAULT)


NO_ACTION = "no automatic action: plans run the built-in default as a dry run"


def parse(name: str, raw_spec: Any) -> Found:
    """Validate a Runbook's ``spec`` as read from the API server; a failure names the field."""
    try:
        return Found(name=name, spec=rbapi.RunbookSpec.model_validate(raw_spec or {}))
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in issue['loc'])}: {issue['msg']}"
            for issue in error.errors(include_url=False)
        )
        return Found(name=name, spec=None, problem=problems)


def _triggers(spec: rbapi.RunbookSpec) -> str:
    return ", ".join(f"slo {t.slo} causes {'/'.join(t.causes) if t.causes else 'any'}" for t in spec.triggers)


def resolve(reference: str | None, found: Found | None, breach: Breach | None) -> Resolution:
    """The runbook for ``breach`` (None: no breach to match, only check the reference); see the module docstring.

    ``reference`` is the ModelDeployment's ``runbookRef.name``; ``found`` the Runbook of that name
    in its namespace (None: not found).
    """
    if reference is None:
        message = "no runbookRef: the built-in default applies"
        return Resolution(BUILTIN, builtin_default(), None, Reason.BUILTIN_DEFAULT, message)
    unsafe = (BUILTIN, builtin_default(), rbapi.Mode.DRY_RUN)
    if found is None:
        return Resolution(
            *unsafe, Reason.NOT_FOUND, f"runbookRef {reference}: no Runbook {reference} in this namespace; {NO_ACTION}"
        )
    if found.spec is None:
        return Resolution(
            *unsafe,
            Reason.INVALID,
            f"runbookRef {reference}: Runbook {reference} is invalid: {found.problem}; {NO_ACTION}",
        )
    if breach is None:
        return Resolution(reference, found.spec, None, Reason.RESOLVED, f"runbookRef {reference}: Runbook is valid")
    if not matches(found.spec, breach.slo, breach.cause):
        return Resolution(
            *unsafe,
            Reason.NO_MATCHING_TRIGGER,
            f"runbookRef {reference}: no trigger of Runbook {reference} ({_triggers(found.spec)}) matches "
            f"SLO {breach.slo} with cause {breach.cause}; {NO_ACTION}",
        )
    return Resolution(
        reference,
        found.spec,
        None,
        Reason.RESOLVED,
        f"runbookRef {reference}: Runbook answers SLO {breach.slo} with cause {breach.cause}",
    )
