"""Runbook: the emergency plan run when a ModelDeployment's SLO is breached.

A runbook says *for which breaches* (triggers: SLO names and diagnosed causes) it applies, and
*which ordered steps* to take. Each step is an action with absolute parameters, a verification
(wait, then judge the SLO again) and what to do when the step did not help. Guards bound how often
a runbook may act, so a flapping signal cannot make vigil flap the cluster.
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

import pydantic

from vigil.api import formats
from vigil.api._base import KubeModel, Rule
from vigil.api.formats import LIST_MAP, LIST_SET, Duration, unique, unique_names

KIND = "Runbook"
PLURAL = "runbooks"
SINGULAR = "runbook"
SHORT_NAMES = ["rb"]


class Mode(enum.StrEnum):
    AUTO = "auto"
    DRY_RUN = "dryRun"
    APPROVAL = "approval"


class Cause(enum.StrEnum):
    """What a diagnosis can name as the likely cause of a breach."""

    BAD_ROLLOUT = "BadRollout"
    LOAD_SURGE = "LoadSurge"
    CAPACITY = "Capacity"
    CRASHING_PODS = "CrashingPods"
    BAD_MODEL = "BadModel"
    """A new revision answered its golden requests wrongly (the gate, not an SLO, found it)."""
    UNKNOWN = "Unknown"


class Action(enum.StrEnum):
    ROLLBACK = "rollback"
    SCALE_OUT = "scaleOut"
    SHIFT_TRAFFIC = "shiftTraffic"
    RESTART_PODS = "restartPods"
    NOTIFY = "notify"


class OnFailure(enum.StrEnum):
    NEXT = "next"
    ESCALATE = "escalate"
    STOP = "stop"


Causes = Annotated[list[Cause], pydantic.AfterValidator(unique)]


class Trigger(KubeModel):
    """A breach this runbook answers: an SLO (``*`` for any) and, optionally, diagnosed causes."""

    slo: str = pydantic.Field(
        default="*",
        min_length=1,
        max_length=40,
        pattern=r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$",
        description="SLO name (as in the ModelDeployment's spec.slos), or * for any SLO of the deployment.",
    )
    causes: Causes = pydantic.Field(
        default_factory=list,
        max_length=len(Cause),
        json_schema_extra=LIST_SET,
        description="Diagnosed causes that match (BadRollout, LoadSurge, Capacity, CrashingPods, Unknown; "
        "each at most once); empty matches any cause.",
    )


class StepWhen(KubeModel):
    """Preconditions; a step whose preconditions do not hold is skipped (and recorded as such)."""

    causes: Causes = pydantic.Field(
        default_factory=list,
        max_length=len(Cause),
        json_schema_extra=LIST_SET,
        description="Run only for these causes (each at most once); empty runs for any cause.",
    )
    revision_changed_within: Duration | None = pydantic.Field(
        default=None,
        description="Run only if the serving revision changed this recently before the breach (longer than 0s).",
    )


class SecretKeyRef(KubeModel):
    """One key of a Secret in the ModelDeployment's namespace."""

    name: str = pydantic.Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        max_length=253,
        description="Name of the Secret, in the namespace of the ModelDeployment the runbook acts for.",
    )
    key: str = pydantic.Field(
        pattern=r"^[-._a-zA-Z0-9]+$", max_length=253, description="Key of the Secret whose value is the webhook URL."
    )


class Webhook(KubeModel):
    """Where a notify step POSTs. The URL is a secret (it often carries a token), so it lives in a
    Secret, is read only when sending, and is never written into status, Events or logs."""

    secret_key_ref: SecretKeyRef = pydantic.Field(description="The Secret key holding the webhook URL.")
    allow_insecure: bool = pydantic.Field(
        default=False, description="Allow a plain http:// URL; by default only https:// is sent to."
    )
    allow_private_network: bool = pydantic.Field(
        default=False,
        description=(
            "Allow a URL whose host resolves to a loopback, link-local (cloud metadata), private or otherwise "
            "non-public address; by default such a notification is refused."
        ),
    )


class Params(KubeModel):
    """Action parameters; each action reads the ones it documents (others are refused)."""

    step_replicas: int | None = pydantic.Field(
        default=None,
        ge=1,
        le=100,
        description="scaleOut: replicas added per step, 1-100 (absolute target recorded); with targetUtilization, "
        "the fewest a round adds (default 1).",
    )
    target_utilization: int | None = pydantic.Field(
        default=None,
        ge=1,
        le=100,
        description="scaleOut: size each round from the measured demand: the replicas that serve the current "
        "request rate plus the queue's growth at this percent (1-100) of each replica's measured throughput "
        "when busy (the default sizes by stepReplicas only).",
    )
    size_ahead: Duration | None = pydantic.Field(
        default=None,
        description="scaleOut with targetUtilization: size each round for the demand this far ahead, along the "
        "rise of the offered rate over the baseline before the current window (a rise only, at most twice "
        "the demand now); e.g. the step's verifyAfter, so a round carries a rising load until it is judged "
        "(default: the demand now). The step then also follows the rise: while a round is verified, the next "
        "starts as soon as the still-rising demand needs more replicas at targetUtilization than run, before "
        "it breaches the SLO again.",
    )
    max_replicas: int | None = pydantic.Field(
        default=None, ge=1, le=1000, description="scaleOut: ceiling, 1-1000 (default spec.maxReplicas)."
    )
    target: Literal["fallback", "lastKnownGood"] | None = pydantic.Field(
        default=None,
        description="shiftTraffic (required there): fallback (spec.traffic.fallback) or lastKnownGood revision.",
    )
    weight: int | None = pydantic.Field(
        default=None, ge=0, le=100, description="shiftTraffic: percent of traffic moved to the target (0-100)."
    )
    webhook: Webhook | None = pydantic.Field(
        default=None,
        description="notify: the webhook that receives a JSON POST; without one the notification is an Event only.",
    )
    message: str | None = pydantic.Field(default=None, max_length=1024, description="notify: text (at most 1024).")


_PARAMS_OF: dict[str, tuple[str, ...]] = {
    "stepReplicas": ("scaleOut",),
    "targetUtilization": ("scaleOut",),
    "sizeAhead": ("scaleOut",),
    "maxReplicas": ("scaleOut",),
    "target": ("shiftTraffic",),
    "weight": ("shiftTraffic",),
    "webhook": ("notify",),
    "message": ("notify",),
}


def _param_rule(param: str, actions: tuple[str, ...]) -> Rule:
    allowed = " || ".join(f"self.action == '{a}'" for a in actions)
    python_name = next(k for k, f in Params.model_fields.items() if f.alias == param)
    return Rule(
        f"!has(self.params) || !has(self.params.{param}) || {allowed}",
        f"params.{param} applies to {' and '.join(actions)} steps only",
        lambda step: getattr(step.params, python_name) is None or step.action in actions,
        f".params.{param}",
    )


class Step(KubeModel):
    """One action of the plan, with its verification and what to do when it did not help."""

    rules = (
        Rule(
            "self.action != 'shiftTraffic' || has(self.params) && has(self.params.target)",
            "params.target is required for shiftTraffic steps",
            lambda step: step.action is not Action.SHIFT_TRAFFIC or step.params.target is not None,
            ".params",
        ),
        *(_param_rule(param, actions) for param, actions in _PARAMS_OF.items()),
        Rule(
            "!has(self.params) || !has(self.params.sizeAhead) || has(self.params.targetUtilization)",
            "params.sizeAhead sizes from demand: it needs params.targetUtilization",
            lambda step: step.params.size_ahead is None or step.params.target_utilization is not None,
            ".params.sizeAhead",
        ),
    )

    name: formats.ShortName = pydantic.Field(
        description="Step name, unique in the runbook (a DNS label of at most 40 characters)."
    )
    action: Action = pydantic.Field(description="rollback, scaleOut, shiftTraffic, restartPods or notify.")
    params: Params = pydantic.Field(default_factory=Params, description="Parameters of the action.")
    when: StepWhen = pydantic.Field(default_factory=StepWhen, description="Preconditions of the step.")
    verify_after: Duration = pydantic.Field(
        default="60s", description="Wait this long, then judge the SLO again (longer than 0s)."
    )
    timeout: Duration = pydantic.Field(
        default="5m", description="Give up on the action finishing after this long (longer than 0s)."
    )
    on_failure: OnFailure = pydantic.Field(
        default=OnFailure.NEXT, description="next step, escalate (notify and stop), or stop."
    )


class Guards(KubeModel):
    """Bounds on how often a runbook may act, so a flapping signal cannot make vigil flap the cluster."""

    cooldown: Duration = pydantic.Field(
        default="10m", description="No new plan for a deployment this soon after one ended (longer than 0s)."
    )
    max_actions_per_hour: int = pydantic.Field(
        default=6, ge=1, le=100, description="Actions per deployment and hour, at most (1-100)."
    )


class RunbookSpec(KubeModel):
    """Which breaches the runbook answers, and the ordered steps it takes."""

    mode: Mode = pydantic.Field(default=Mode.AUTO, description="auto, dryRun (record only) or approval.")
    approval_annotation: formats.LabelKey = pydantic.Field(
        default="vigil.dev/approve",
        description="approval mode: annotation on the Incident that lets the plan run (value 'true'); "
        "an annotation key ([prefix/]name).",
    )
    triggers: list[Trigger] = pydantic.Field(
        default_factory=lambda: [Trigger()],
        min_length=1,
        max_length=16,
        description="Breaches this runbook answers (1-16); default: any SLO, any cause.",
    )
    steps: Annotated[list[Step], pydantic.AfterValidator(unique_names)] = pydantic.Field(
        min_length=1,
        max_length=16,
        json_schema_extra=LIST_MAP,
        description="Ordered steps (1-16, names unique).",
    )
    guards: Guards = pydantic.Field(default_factory=Guards, description="Rate limits of the runbook's actions.")


class Runbook(KubeModel):
    """An emergency plan."""

    api_version: str = "vigil.dev/v1alpha1"
    kind: str = KIND
    metadata: dict[str, object] = pydantic.Field(default_factory=dict)
    spec: RunbookSpec = pydantic.Field(description="Triggers, steps and guards.")
