"""Incident: one per breach, the durable record and the durable state of the running plan.

The operator keeps no plan state in memory: before an action runs its intent (with an absolute
target) is written here, after it runs its result. A restarted operator reads the Incident and
resumes; re-running a recorded intent is a no-op because its target is absolute.
"""

from __future__ import annotations

import enum

import pydantic

from vigil.api._base import KubeModel
from vigil.api.conditions import Condition
from vigil.api.runbook import Action, Cause, Mode, RunbookSpec

KIND = "Incident"
PLURAL = "incidents"
SINGULAR = "incident"
SHORT_NAMES = ["inc"]
TIMELINE_LIMIT = 200


class Phase(enum.StrEnum):
    OPEN = "Open"
    MITIGATING = "Mitigating"
    AWAITING_APPROVAL = "AwaitingApproval"
    ESCALATED = "Escalated"
    RESOLVED = "Resolved"


class StepState(enum.StrEnum):
    PENDING = "Pending"
    INTENDED = "Intended"
    VERIFYING = "Verifying"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    DRY_RUN = "DryRun"
    CANCELLED = "Cancelled"


class Evidence(KubeModel):
    """One fact behind a diagnosis."""

    kind: str = pydantic.Field(description="revisionChange, requestRate, pendingPods, restarts, ...")
    message: str = pydantic.Field(description="The fact in words.")
    value: float | None = pydantic.Field(default=None, description="The fact as a number, when it is one.")


class Diagnosis(KubeModel):
    """The likely cause of the breach and the evidence for it."""

    cause: Cause = pydantic.Field(description="BadRollout, LoadSurge, Capacity, CrashingPods, BadModel or Unknown.")
    summary: str = pydantic.Field(description="The diagnosis in one sentence.")
    evidence: list[Evidence] = pydantic.Field(default_factory=list, description="The facts it rests on.")


class TimelineEntry(KubeModel):
    """One decision or observation, in order."""

    time: str = pydantic.Field(description="When (RFC 3339).")
    type: str = pydantic.Field(description="Detected, Diagnosed, Intent, Action, Verified, Resolved, ...")
    message: str = pydantic.Field(description="What happened.")
    step: str | None = pydantic.Field(default=None, description="The plan step it concerns, if any.")


class StepProgress(KubeModel):
    """Where one step of the plan stands."""

    name: str = pydantic.Field(description="The step's name in the runbook.")
    action: Action = pydantic.Field(description="The step's action.")
    state: StepState = pydantic.Field(
        default=StepState.PENDING,
        description="Pending, Intended, Verifying, Succeeded, Failed, Skipped, DryRun or Cancelled.",
    )
    target: dict[str, str] = pydantic.Field(
        default_factory=dict, description="The absolute target recorded before acting (the intent)."
    )
    started_at: str | None = pydantic.Field(default=None, description="When the action started.")
    verify_at: str | None = pydantic.Field(default=None, description="When the SLO is judged again.")
    judged_from: str | None = pydantic.Field(
        default=None,
        description="Verification judges only data from this moment on: when the action took effect, "
        "or when metrics came back after a gap during verification.",
    )
    metrics_missing_since: str | None = pydantic.Field(
        default=None,
        description="Set while verification holds for missing metrics (since when); once they are back, "
        "verification starts again on data from then.",
    )
    finished_at: str | None = pydantic.Field(default=None, description="When the step ended.")
    result: str | None = pydantic.Field(default=None, description="How it ended, in words.")


class GiveBackPhase(enum.StrEnum):
    STABILIZING = "Stabilizing"
    RETURNING = "Returning"
    RETURNED = "Returned"
    STOPPED = "Stopped"
    SUPERSEDED = "Superseded"
    KEPT = "Kept"


GIVE_BACK_STEPS_LIMIT = 16


class GiveBackStep(KubeModel):
    """One step of returning what the incident added: an absolute target, recorded before acting."""

    number: int = pydantic.Field(ge=1, description="Steps are numbered from 1, in order.")
    target: dict[str, str] = pydantic.Field(
        description="replicas (a count, or 'spec': the scale override removed) or splits (weighted backends, "
        "'' for all traffic home: the traffic override removed); intendedAt."
    )
    restore: bool = pydantic.Field(
        default=False, description="This step restores a level that held, after the previous step degraded the SLO."
    )
    state: StepState = pydantic.Field(
        default=StepState.INTENDED, description="Intended, Verifying, Succeeded or Failed."
    )
    judged_from: str | None = pydantic.Field(
        default=None, description="When the step took effect: it is judged only on data from then on."
    )
    verify_at: str | None = pydantic.Field(default=None, description="When the SLOs are judged.")
    finished_at: str | None = pydantic.Field(default=None, description="When the step ended.")
    result: str | None = pydantic.Field(default=None, description="How it ended, in words.")


class GiveBack(KubeModel):
    """Returning what the incident added, once its SLOs held again: the durable state of the return."""

    phase: GiveBackPhase = pydantic.Field(
        description="Stabilizing, Returning, Returned, Stopped (the SLO degraded: the last level that held is "
        "kept until retryAt), Superseded (a new spec generation or incident owns it now) or Kept (giveBack "
        "disabled)."
    )
    generation: int = pydantic.Field(ge=0, description="The ModelDeployment generation the overrides apply to.")
    held: dict[str, str] = pydantic.Field(
        description="What the incident held when the give-back began: replicas and/or splits (as recorded)."
    )
    stable_since: str | None = pydantic.Field(
        default=None, description="Start of the current run of SLOs Met (stabilization)."
    )
    steps: list[GiveBackStep] = pydantic.Field(
        default_factory=list,
        max_length=GIVE_BACK_STEPS_LIMIT,
        description="The latest steps (bounded; the timeline records all of them).",
    )
    message: str | None = pydantic.Field(default=None, description="Where the give-back stands, in words.")
    stops: int = pydantic.Field(
        default=0, ge=0, description="How often it stopped; each retry waits twice as long as the one before."
    )
    retry_at: str | None = pydantic.Field(
        default=None,
        description="Stopped: when it starts stabilizing again (twice the stabilization window, doubled for "
        "every earlier stop, at most an hour).",
    )


class Plan(KubeModel):
    """The runbook being played and its progress."""

    runbook: str = pydantic.Field(description="Runbook name, or 'builtin-default'.")
    mode: Mode = pydantic.Field(description="auto, dryRun or approval, as the plan started.")
    current: int = pydantic.Field(default=0, description="Index of the step in progress.")
    steps: list[StepProgress] = pydantic.Field(default_factory=list, description="Every step's progress.")
    spec: RunbookSpec | None = pydantic.Field(
        default=None,
        description="The runbook as it was when the plan started: edits to the Runbook do not change a running plan.",
    )
    revision: str | None = pydantic.Field(
        default=None,
        max_length=63,
        description=(
            "The revision the spec asked for when the plan started. A spec generation with another revision "
            "cancels the plan; one that keeps it (kubectl scale, SLOs, bake time) does not."
        ),
    )


class Trigger(enum.StrEnum):
    """Why an Incident was opened."""

    BREACH = "Breach"
    HEADROOM = "Headroom"
    """Before any breach: the rising demand needed more replicas than ran (spec.headroom)."""


class IncidentSpec(KubeModel):
    """The breach (written by vigil when it opens the Incident)."""

    model_deployment: str = pydantic.Field(
        min_length=1, max_length=253, description="The ModelDeployment, in the Incident's namespace."
    )
    slo: str = pydantic.Field(
        min_length=1,
        max_length=63,
        description="The breached SLO's name; GoldenRequests for a revision the golden-request gate refused.",
    )
    revision: str | None = pydantic.Field(
        default=None, max_length=63, description="The revision the breach was judged on."
    )
    generation: int = pydantic.Field(ge=0, description="ModelDeployment generation at detection.")
    trigger: Trigger = pydantic.Field(
        default=Trigger.BREACH,
        description="Breach (an SLO breached; slo names it) or Headroom (opened before any breach because the "
        "rising demand needed more replicas than ran, spec.headroom; slo names the SLO it protects).",
    )

    @property
    def ahead(self) -> bool:
        """Opened ahead of any breach (``trigger: Headroom``): its plan acts before one, never escalates."""
        return self.trigger is Trigger.HEADROOM


class IncidentStatus(KubeModel):
    """The state of the plan and the record of everything done."""

    phase: Phase = pydantic.Field(
        default=Phase.OPEN, description="Open, Mitigating, AwaitingApproval, Escalated or Resolved."
    )
    opened_at: str | None = pydantic.Field(default=None, description="When the breach was detected.")
    resolved_at: str | None = pydantic.Field(default=None, description="When the SLO was met again.")
    sli: float | None = pydantic.Field(default=None, description="The SLI at detection.")
    burn_rate: float | None = pydantic.Field(default=None, description="The burn rate at detection.")
    diagnosis: Diagnosis | None = pydantic.Field(default=None, description="The likely cause.")
    plan: Plan | None = pydantic.Field(default=None, description="The runbook being played.")
    give_back: GiveBack | None = pydantic.Field(
        default=None, description="Returning what the plan added, once the SLOs held again."
    )
    timeline: list[TimelineEntry] = pydantic.Field(
        default_factory=list, max_length=TIMELINE_LIMIT, description="Every decision, oldest first (bounded)."
    )
    conditions: list[Condition] = pydantic.Field(default_factory=list, description="metav1 conditions.")


class Incident(KubeModel):
    """A breach of a ModelDeployment's SLO and everything done about it."""

    api_version: str = "vigil.dev/v1alpha1"
    kind: str = KIND
    metadata: dict[str, object] = pydantic.Field(default_factory=dict)
    spec: IncidentSpec = pydantic.Field(description="The breach.")
    status: IncidentStatus = pydantic.Field(
        default_factory=IncidentStatus, description="The plan's state and the record; written by vigil only."
    )
