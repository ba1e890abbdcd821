"""Which runbook answers a breach, and the built-in default used when none is referenced.

:func:`select` picks the ModelDeployment's ``runbookRef`` when that Runbook exists and one of its
triggers matches the breached SLO and the diagnosed cause; otherwise the built-in default. A
deployment is never left without a plan: a missing or non-matching reference falls back to the
default, which only acts where acting is safe and otherwise escalates to humans.

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
``LoadSurge``              ``scale-out`` by 2 replicas per round up to ``spec.maxReplicas``, each
                           round verified 90s after its replicas are ready; a round that would
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

from collections.abc import Sequence

from vigil.api import modeldeployment as mdapi
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
                params=rbapi.Params(step_replicas=2),
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


def matches(spec: rbapi.RunbookSpec, slo: str, cause: rbapi.Cause) -> bool:
    """Whether one of ``spec``'s triggers answers a breach of ``slo`` diagnosed as ``cause``."""
    return any(
        (trigger.slo in ("*", slo)) and (not trigger.causes or cause in trigger.causes) for trigger in spec.triggers
    )


def select(
    runbooks: Sequence[tuple[str, rbapi.RunbookSpec]],
    md_spec: mdapi.ModelDeploymentSpec,
    slo: str,
    cause: rbapi.Cause,
) -> tuple[str, rbapi.RunbookSpec]:
    """``(name, spec)`` of the runbook for this breach: the referenced one if it matches, else the default.

    ``runbooks`` are the Runbooks in the deployment's namespace.
    """
    if md_spec.runbook_ref is not None:
        wanted = md_spec.runbook_ref.name
        for name, spec in runbooks:
            if name == wanted and matches(spec, slo, cause):
                return name, spec
    return BUILTIN, builtin_default()
