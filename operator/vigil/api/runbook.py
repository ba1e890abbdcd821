"""Runbook: the emergency plan run when a ModelDeployment's SLO is breached.

A runbook says *for which breaches* (triggers: SLO names and diagnosed causes) it applies, and
*which ordered steps* to take. Each step is an action with absolute parameters, a verification
(wait, then judge the SLO again) and what to do when the step did not help. Guards bound how often
a runbook may act, so a flapping signal cannot make vigil flap the cluster.
"""

from __future__ import annotations

import enum

import pydantic

from vigil.api._base import KubeModel, cel, validations
from vigil.api.slo import DURATION_PATTERN

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


class Trigger(KubeModel):
    """A breach this runbook answers: an SLO (``*`` for any) and, optionally, diagnosed causes."""

    slo: str = pydantic.Field(default="*", description="SLO name, or * for any SLO of the deployment.")
    causes: list[Cause] = pydantic.Field(
        default_factory=list, description="Diagnosed causes that match; empty matches any cause."
    )


class StepWhen(KubeModel):
    """Preconditions; a step whose preconditions do not hold is skipped (and recorded as such)."""

    causes: list[Cause] = pydantic.Field(default_factory=list, description="Run only for these causes.")
    revision_changed_within: str | None = pydantic.Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="Run only if the serving revision changed this recently before the breach.",
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
    """Action parameters; each action reads the ones it documents."""

    step_replicas: int | None = pydantic.Field(
        default=None, ge=1, le=100, description="scaleOut: replicas added per step (absolute target recorded)."
    )
    max_replicas: int | None = pydantic.Field(
        default=None, ge=1, le=1000, description="scaleOut: ceiling (default spec.maxReplicas)."
    )
    target: str | None = pydantic.Field(
        default=None,
        pattern=r"^(fallback|lastKnownGood)$",
        description="shiftTraffic: fallback (spec.traffic.fallback) or lastKnownGood revision.",
    )
    weight: int | None = pydantic.Field(
        default=None, ge=0, le=100, description="shiftTraffic: percent of traffic moved to the target."
    )
    webhook: Webhook | None = pydantic.Field(
        default=None,
        description="notify: the webhook that receives a JSON POST; without one the notification is an Event only.",
    )
    message: str | None = pydantic.Field(default=None, max_length=1024, description="notify: text.")


class Step(KubeModel):
    model_config = pydantic.ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.action != 'shiftTraffic' || has(self.params) && has(self.params.target)",
                "params.target is required for shiftTraffic steps",
                ".params",
            ),
        )
    )

    name: str = pydantic.Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)
    action: Action
    params: Params = pydantic.Field(default_factory=Params)
    when: StepWhen = pydantic.Field(default_factory=StepWhen)
    verify_after: str = pydantic.Field(
        default="60s", pattern=DURATION_PATTERN, description="Wait this long, then judge the SLO again."
    )
    timeout: str = pydantic.Field(
        default="5m", pattern=DURATION_PATTERN, description="Give up on the action finishing after this long."
    )
    on_failure: OnFailure = pydantic.Field(
        default=OnFailure.NEXT, description="next step, escalate (notify and stop), or stop."
    )


class Guards(KubeModel):
    cooldown: str = pydantic.Field(
        default="10m", pattern=DURATION_PATTERN, description="No new plan for a deployment this soon after one ended."
    )
    max_actions_per_hour: int = pydantic.Field(default=6, ge=1, le=100)


class RunbookSpec(KubeModel):
    model_config = pydantic.ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.steps.all(a, self.steps.exists_one(b, b.name == a.name))",
                "spec.steps names must be unique",
                ".steps",
            ),
        )
    )

    mode: Mode = pydantic.Field(default=Mode.AUTO, description="auto, dryRun (record only) or approval.")
    approval_annotation: str = pydantic.Field(
        default="vigil.dev/approve",
        description="approval mode: annotation on the Incident that lets the plan run (value 'true').",
    )
    triggers: list[Trigger] = pydantic.Field(default_factory=lambda: [Trigger()], max_length=16)
    steps: list[Step] = pydantic.Field(min_length=1, max_length=16)
    guards: Guards = pydantic.Field(default_factory=Guards)


class Runbook(KubeModel):
    """An emergency plan."""

    api_version: str = "vigil.dev/v1alpha1"
    kind: str = KIND
    metadata: dict[str, object] = pydantic.Field(default_factory=dict)
    spec: RunbookSpec
