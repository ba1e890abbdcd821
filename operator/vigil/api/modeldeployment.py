"""ModelDeployment: what the user wants served, and what vigil observed and decided about it.

The spec is the user's (or Argo CD's) and vigil never writes it. Everything vigil decides, such as
a rollback to last-known-good or a scale-out, lives in ``status`` with a condition that says why;
a new spec generation supersedes those overrides.
"""

from __future__ import annotations

from typing import Any

import pydantic

from vigil.api._base import KubeModel, cel, validations
from vigil.api.conditions import Condition
from vigil.api.slo import DURATION_PATTERN, SLOSpec, SLOStatus

KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ["md"]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
MODEL_URI = r"^(s3|gs|as|file|https?)://.+|^/.+"


class Model(KubeModel):
    """The model Triton serves."""

    name: str = pydantic.Field(
        min_length=1,
        max_length=63,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Model name in the repository.",
    )
    repository: str = pydantic.Field(
        pattern=MODEL_URI,
        description="Model repository URI: s3://, gs://, as://, file://, http(s):// or an absolute path.",
    )
    version: str = pydantic.Field(
        min_length=1,
        max_length=63,
        pattern=r"^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$",
        description="Model version to serve; a change rolls out a new revision.",
    )


class EnvVar(KubeModel):
    name: str = pydantic.Field(min_length=1, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    value: str = ""


class Toleration(KubeModel):
    key: str | None = None
    operator: str | None = pydantic.Field(default=None, pattern=r"^(Exists|Equal)$")
    value: str | None = None
    effect: str | None = pydantic.Field(default=None, pattern=r"^(NoSchedule|PreferNoSchedule|NoExecute)$")
    toleration_seconds: int | None = None


class Triton(KubeModel):
    """How each Triton pod runs."""

    image: str = pydantic.Field(
        default="nvcr.io/nvidia/tritonserver:25.01-py3", min_length=1, description="Triton server image."
    )
    args: list[str] = pydantic.Field(
        default_factory=list, max_length=64, description="Extra tritonserver arguments, appended."
    )
    model_control_mode: str = pydantic.Field(
        default="explicit", pattern=r"^(none|poll|explicit)$", description="--model-control-mode."
    )
    cpu: str = pydantic.Field(default="2", pattern=QUANTITY, description="CPU request and limit per pod.")
    memory: str = pydantic.Field(default="8Gi", pattern=QUANTITY, description="Memory request and limit per pod.")
    gpus: int = pydantic.Field(default=1, ge=0, le=16, description="nvidia.com/gpu per replica (whole GPUs).")
    env: list[EnvVar] = pydantic.Field(default_factory=list, max_length=64, description="Extra environment.")
    node_selector: dict[str, str] = pydantic.Field(
        default_factory=dict, description="Extra node labels the pods require (GPU product, zone, ...)."
    )
    tolerations: list[Toleration] = pydantic.Field(
        default_factory=list, max_length=32, description="Extra tolerations (nvidia.com/gpu is tolerated always)."
    )
    startup_timeout_seconds: int = pydantic.Field(
        default=300, ge=10, le=3600, description="How long a pod may take to load its models before restart."
    )


class RunbookRef(KubeModel):
    name: str = pydantic.Field(pattern=DNS_LABEL, max_length=63, description="Runbook in the same namespace.")


class Traffic(KubeModel):
    """Traffic options used by rollouts and by shiftTraffic actions."""

    fallback: str | None = pydantic.Field(
        default=None,
        pattern=DNS_LABEL,
        description="A ModelDeployment in the same namespace that may take this one's traffic.",
    )
    gateway: str | None = pydantic.Field(
        default=None,
        description="Parent Gateway (namespace/name or name) of the HTTPRoute that weighted traffic "
        "shifts use; without it the route's parent is the stable Service (mesh style). Clusters "
        "without Gateway API split revisions by replica ratio behind the stable Service.",
    )


class PodShape(KubeModel):
    """Everything that shapes a Triton pod: its hash is the revision."""

    model: Model = pydantic.Field(description="The model to serve.")
    triton: Triton = pydantic.Field(default_factory=Triton, description="Triton server settings.")


class ModelDeploymentSpec(PodShape):
    """What the user wants served."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
                "spec.minReplicas must be <= spec.maxReplicas",
                ".minReplicas",
            ),
            cel(
                "!has(self.maxReplicas) || self.replicas <= self.maxReplicas",
                "spec.replicas must be <= spec.maxReplicas",
                ".replicas",
            ),
            cel(
                "!has(self.minReplicas) || self.replicas >= self.minReplicas",
                "spec.replicas must be >= spec.minReplicas",
                ".replicas",
            ),
            cel(
                "!has(self.slos) || self.slos.all(a, self.slos.exists_one(b, b.name == a.name))",
                "spec.slos names must be unique",
                ".slos",
            ),
        )
    )

    replicas: int = pydantic.Field(default=1, ge=0, le=1000, description="Desired serving replicas.")
    min_replicas: int | None = pydantic.Field(default=None, ge=0, le=1000, description="Lower bound for scaling.")
    max_replicas: int | None = pydantic.Field(
        default=None, ge=1, le=1000, description="Upper bound for scale-out (defaults to replicas)."
    )
    slos: list[SLOSpec] = pydantic.Field(default_factory=list, max_length=16, description="Service-level objectives.")
    runbook_ref: RunbookRef | None = pydantic.Field(
        default=None, description="Runbook to run on a breach; without one the built-in default applies."
    )
    traffic: Traffic = pydantic.Field(default_factory=Traffic, description="Traffic options.")
    bake_time: str = pydantic.Field(
        default="5m",
        pattern=DURATION_PATTERN,
        description="How long a revision must meet its SLOs to become last-known-good; the previous "
        "revision stays warm this long after a rollout.",
    )
    revision_history_limit: int = pydantic.Field(
        default=5, ge=1, le=20, description="Revisions kept (as Deployments scaled to zero) for rollback."
    )
    paused: bool = pydantic.Field(default=False, description="Stop automatic actions for this deployment.")

    def max_replicas_or_default(self) -> int:
        return self.max_replicas if self.max_replicas is not None else max(self.replicas, 1)


class Revision(KubeModel):
    """One revision: a hash of everything that shapes a pod, served by its own Deployment.

    The pod shape is kept so that a rollback can recreate the revision's Deployment even after
    the spec moved on (or someone deleted the scaled-down Deployment).
    """

    name: str = pydantic.Field(description="Revision hash (label vigil.dev/revision).")
    model_version: str
    shape: PodShape = pydantic.Field(description="The model and Triton settings of this revision.")
    generation: int = pydantic.Field(description="Spec generation that introduced it.")
    created: str
    ready_since: str | None = pydantic.Field(default=None, description="When it first had all replicas ready.")
    last_known_good: bool = pydantic.Field(
        default=False, description="Met its SLOs for the bake time: a rollback target."
    )
    good_since: str | None = pydantic.Field(default=None, description="Start of its current run of met SLOs.")


class RollbackOverride(KubeModel):
    """Serving a revision other than the spec's, because of an incident."""

    revision: str
    from_revision: str
    incident: str
    generation: int = pydantic.Field(description="The spec generation this override applies to.")
    since: str


class ScaleOverride(KubeModel):
    replicas: int
    incident: str
    generation: int
    since: str


class TrafficSplit(KubeModel):
    """Where traffic goes: a revision of this deployment, or a fallback deployment."""

    backend: str = pydantic.Field(description="A revision hash, or 'md:<name>' for a fallback deployment.")
    weight: int = pydantic.Field(ge=0, le=100)


class TrafficOverride(KubeModel):
    splits: list[TrafficSplit]
    incident: str
    generation: int
    since: str


class ModelDeploymentStatus(KubeModel):
    observed_generation: int = 0
    replicas: int = pydantic.Field(default=0, description="Pods of the serving revision.")
    ready_replicas: int = 0
    selector: str = pydantic.Field(default="", description="Label selector of serving pods (scale subresource).")
    desired_revision: str | None = pydantic.Field(default=None, description="Revision the spec asks for.")
    current_revision: str | None = pydantic.Field(default=None, description="Revision serving traffic.")
    model_version: str | None = pydantic.Field(default=None, description="Model version serving traffic.")
    previous_revision: str | None = pydantic.Field(
        default=None, description="Revision that served before the last switch (kept warm for the bake time)."
    )
    switched_at: str | None = pydantic.Field(default=None, description="When currentRevision last changed.")
    revisions: list[Revision] = pydantic.Field(default_factory=list, description="Bounded revision history.")
    rollback: RollbackOverride | None = None
    scale: ScaleOverride | None = None
    traffic: TrafficOverride | None = None
    slos: list[SLOStatus] = pydantic.Field(default_factory=list)
    active_incident: str | None = None
    conditions: list[Condition] = pydantic.Field(default_factory=list)


class ModelDeployment(KubeModel):
    """A Triton model deployment kept inside its SLOs by vigil."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=validations(
            cel(
                "size(self.metadata.name) <= 40",
                "metadata.name must be at most 40 characters (revision Deployments append a hash)",
            ),
        )
    )

    api_version: str = "vigil.dev/v1alpha1"
    kind: str = KIND
    metadata: dict[str, Any] = pydantic.Field(default_factory=dict)
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus = pydantic.Field(default_factory=ModelDeploymentStatus)
