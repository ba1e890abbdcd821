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
    kind: str = pydantic.Field(description="revisionChange, requestRate, pendingPods, restarts, ...")
    message: str
    value: float | None = None


class Diagnosis(KubeModel):
    cause: Cause
    summary: str
    evidence: list[Evidence] = pydantic.Field(default_factory=list)


class TimelineEntry(KubeModel):
    time: str
    type: str = pydantic.Field(description="Detected, Diagnosed, Intent, Action, Verified, Resolved, ...")
    message: str
    step: str | None = None


class StepProgress(KubeModel):
    name: str
    action: Action
    state: StepState = StepState.PENDING
    target: dict[str, str] = pydantic.Field(
        default_factory=dict, description="The absolute target recorded before acting (the intent)."
    )
    started_at: str | None = None
    verify_at: str | None = None
    finished_at: str | None = None
    result: str | None = None


class Plan(KubeModel):
    runbook: str = pydantic.Field(description="Runbook name, or 'builtin-default'.")
    mode: Mode
    current: int = pydantic.Field(default=0, description="Index of the step in progress.")
    steps: list[StepProgress] = pydantic.Field(default_factory=list)
    spec: RunbookSpec | None = pydantic.Field(
        default=None,
        description="The runbook as it was when the plan started: edits to the Runbook do not change a running plan.",
    )


class IncidentSpec(KubeModel):
    model_deployment: str
    slo: str
    revision: str | None = None
    generation: int = pydantic.Field(description="ModelDeployment generation at detection.")


class IncidentStatus(KubeModel):
    phase: Phase = Phase.OPEN
    opened_at: str | None = None
    resolved_at: str | None = None
    sli: float | None = None
    burn_rate: float | None = None
    diagnosis: Diagnosis | None = None
    plan: Plan | None = None
    timeline: list[TimelineEntry] = pydantic.Field(default_factory=list, max_length=TIMELINE_LIMIT)
    conditions: list[Condition] = pydantic.Field(default_factory=list)


class Incident(KubeModel):
    """A breach of a ModelDeployment's SLO and everything done about it."""

    api_version: str = "vigil.dev/v1alpha1"
    kind: str = KIND
    metadata: dict[str, object] = pydantic.Field(default_factory=dict)
    spec: IncidentSpec
    status: IncidentStatus = pydantic.Field(default_factory=IncidentStatus)
