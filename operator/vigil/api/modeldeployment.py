"""ModelDeployment: what the user wants served, and what vigil observed and decided about it.

The spec is the user's (or Argo CD's) and vigil never writes it. Everything vigil decides, such as
a rollback to last-known-good or a scale-out, lives in ``status`` with a condition that says why;
a new spec generation supersedes those overrides.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

import pydantic

from vigil.api import formats
from vigil.api._base import KubeModel, Rule
from vigil.api.conditions import Condition
from vigil.api.slo import DURATION_PATTERN as DURATION_PATTERN
from vigil.api.slo import SLOSpec, SLOStatus
from vigil.api.validation import RevisionValidation, ValidationSpec

KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ["md"]

NAME_MAX_LENGTH = 40
"""A ModelDeployment's name: its revisions run as ``<name>-<10-hex revision>`` Deployments and
Services, which must stay DNS-1035 labels (at most 63 characters); 40 leaves room to spare."""
DNS_LABEL = formats.DNS1123_LABEL
MODEL_URI = r"^((s3|gs|as|file|https?)://|/)[^\s]+$"
MANAGED_FLAGS = (
    "--model-repository",
    "--model-control-mode",
    "--strict-readiness",
    "--http-port",
    "--grpc-port",
    "--metrics-port",
    "--allow-metrics",
)
"""tritonserver flags vigil renders: a user arg that set one would silently fight the rendering."""
_MANAGED_FLAG = "^(" + "|".join(MANAGED_FLAGS) + ")(=.*)?$"
INT32_MAX = 2_147_483_647


class Model(KubeModel):
    """The model Triton serves."""

    name: str = pydantic.Field(
        min_length=1,
        max_length=63,
        pattern=formats.LABEL_VALUE,
        description="Model name in the repository (also a pod label value: at most 63 alphanumerics, "
        "'-', '_' or '.', alphanumeric at both ends).",
    )
    repository: str = pydantic.Field(
        min_length=2,
        max_length=1024,
        pattern=MODEL_URI,
        description="Model repository URI without spaces: s3://, gs://, as://, file://, http(s):// or an absolute path.",
    )
    version: str = pydantic.Field(
        min_length=1,
        max_length=63,
        pattern=r"^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$",
        description="Model version to serve; a change rolls out a new revision. Also a pod label value.",
    )


EnvName = Annotated[str, pydantic.Field(min_length=1, max_length=128, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")]


class EnvVar(KubeModel):
    """One environment variable of the Triton container."""

    name: EnvName = pydantic.Field(description="Variable name (letters, digits, '-', '.', '_'; not a digit first).")
    value: str = pydantic.Field(default="", max_length=4096, description="Value (at most 4096 characters).")


class Toleration(KubeModel):
    """A toleration of the Triton pods, as in a pod spec."""

    rules = (
        Rule(
            "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
            "value must be empty when operator is Exists",
            lambda t: t.operator != "Exists" or not t.value,
            ".value",
        ),
        Rule(
            "has(self.key) || has(self.operator) && self.operator == 'Exists'",
            "operator must be Exists when key is empty (a toleration of every taint)",
            lambda t: t.key is not None or t.operator == "Exists",
            ".operator",
        ),
        Rule(
            "!has(self.tolerationSeconds) || has(self.effect) && self.effect == 'NoExecute'",
            "tolerationSeconds applies to effect NoExecute only",
            lambda t: t.toleration_seconds is None or t.effect == "NoExecute",
            ".tolerationSeconds",
        ),
    )

    key: formats.LabelKey | None = pydantic.Field(
        default=None, description="Taint key (label-key syntax); empty with operator Exists tolerates every taint."
    )
    operator: Literal["Exists", "Equal"] | None = pydantic.Field(
        default=None, description="Exists or Equal (the default)."
    )
    value: formats.LabelValue | None = pydantic.Field(
        default=None, description="Taint value for operator Equal (label-value syntax); empty for Exists."
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = pydantic.Field(
        default=None, description="NoSchedule, PreferNoSchedule or NoExecute; empty matches every effect."
    )
    toleration_seconds: int | None = pydantic.Field(
        default=None,
        ge=0,
        le=31_536_000,
        description="effect NoExecute only: how long the pod stays bound after the taint appears (at most a year).",
    )


Capability = Annotated[str, pydantic.Field(min_length=1, max_length=64, pattern=r"^[A-Z][A-Z0-9_]*$")]


class Capabilities(KubeModel):
    """Linux capabilities added to or dropped from the container's default set."""

    add: Annotated[list[Capability], pydantic.AfterValidator(formats.unique)] | None = pydantic.Field(
        default=None,
        max_length=64,
        json_schema_extra=formats.LIST_SET,
        description="Capabilities to add (e.g. NET_BIND_SERVICE); restricted Pod Security allows only that one.",
    )
    drop: Annotated[list[Capability], pydantic.AfterValidator(formats.unique)] | None = pydantic.Field(
        default=None,
        max_length=64,
        json_schema_extra=formats.LIST_SET,
        description="Capabilities to drop (default: ALL).",
    )


class SeccompProfile(KubeModel):
    """The seccomp profile of the pod or container."""

    rules = (
        Rule(
            "self.type == 'Localhost' ? has(self.localhostProfile) : !has(self.localhostProfile)",
            "localhostProfile is required for type Localhost and only for it",
            lambda p: (p.type == "Localhost") == (p.localhost_profile is not None),
            ".localhostProfile",
        ),
    )

    type: Literal["RuntimeDefault", "Localhost", "Unconfined"] = pydantic.Field(
        description="RuntimeDefault (the default), Localhost or Unconfined (not allowed by restricted Pod Security)."
    )
    localhost_profile: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=256,
        pattern=r"^[^\s]+$",
        description="type Localhost only: profile path relative to the kubelet's seccomp directory.",
    )


def _root_needs_explicit_consent(context: Any) -> bool:
    return context.run_as_user != 0 or context.run_as_non_root is False


_ROOT_RULE = Rule(
    "!has(self.runAsUser) || self.runAsUser != 0 || has(self.runAsNonRoot) && !self.runAsNonRoot",
    "runAsUser 0 (root) needs runAsNonRoot: false (vigil sets runAsNonRoot: true by default)",
    _root_needs_explicit_consent,
    ".runAsUser",
)
UserId = Annotated[int, pydantic.Field(ge=0, le=INT32_MAX)]


class ContainerSecurityContext(KubeModel):
    """Overrides of the Triton container's securityContext; unset fields keep vigil's defaults
    (allowPrivilegeEscalation: false, capabilities.drop: [ALL], restricted Pod Security)."""

    rules = (
        _ROOT_RULE,
        Rule(
            "!has(self.privileged) || !self.privileged || has(self.allowPrivilegeEscalation) "
            "&& self.allowPrivilegeEscalation",
            "privileged: true needs allowPrivilegeEscalation: true (vigil sets it to false by default)",
            lambda c: not c.privileged or c.allow_privilege_escalation is True,
            ".privileged",
        ),
        Rule(
            "!has(self.capabilities) || !has(self.capabilities.add) || "
            "!self.capabilities.add.exists(c, c == 'SYS_ADMIN' || c == 'CAP_SYS_ADMIN') || "
            "has(self.allowPrivilegeEscalation) && self.allowPrivilegeEscalation",
            "capabilities.add SYS_ADMIN needs allowPrivilegeEscalation: true (vigil sets it to false by default)",
            lambda c: (
                c.capabilities is None
                or not {"SYS_ADMIN", "CAP_SYS_ADMIN"} & set(c.capabilities.add or ())
                or c.allow_privilege_escalation is True
            ),
            ".capabilities",
        ),
    )

    run_as_user: UserId | None = pydantic.Field(default=None, description="UID the container runs as.")
    run_as_group: UserId | None = pydantic.Field(default=None, description="GID the container runs as.")
    run_as_non_root: bool | None = pydantic.Field(default=None, description="Refuse to start as UID 0.")
    allow_privilege_escalation: bool | None = pydantic.Field(
        default=None, description="Whether a process may gain more privileges than its parent (default false)."
    )
    privileged: bool | None = pydantic.Field(default=None, description="Run privileged (never in restricted).")
    read_only_root_filesystem: bool | None = pydantic.Field(
        default=None, description="Mount the container's root filesystem read-only."
    )
    capabilities: Capabilities | None = pydantic.Field(
        default=None, description="Capabilities to add or drop (default: drop ALL)."
    )
    seccomp_profile: SeccompProfile | None = pydantic.Field(
        default=None, description="Seccomp profile of the container (default: the pod's, RuntimeDefault)."
    )


class PodSecurityContext(KubeModel):
    """Overrides of the Triton pods' securityContext; unset fields keep vigil's defaults
    (runAsNonRoot: true, runAsUser/runAsGroup/fsGroup 1000, seccompProfile RuntimeDefault)."""

    rules = (_ROOT_RULE,)

    run_as_user: UserId | None = pydantic.Field(default=None, description="UID of every container.")
    run_as_group: UserId | None = pydantic.Field(default=None, description="GID of every container.")
    run_as_non_root: bool | None = pydantic.Field(default=None, description="Refuse to start as UID 0.")
    fs_group: UserId | None = pydantic.Field(default=None, description="GID that owns mounted volumes.")
    supplemental_groups: list[UserId] | None = pydantic.Field(
        default=None, max_length=32, description="Extra GIDs of every container (at most 32)."
    )
    seccomp_profile: SeccompProfile | None = pydantic.Field(
        default=None, description="Seccomp profile of the pod (default RuntimeDefault)."
    )


def _no_managed_flags(args: list[str]) -> list[str]:
    for index, arg in enumerate(args):
        flag = arg.split("=", 1)[0]
        if flag in MANAGED_FLAGS:
            raise ValueError(f"args[{index}]: {flag} is set by vigil and cannot be overridden")
    return args


def _label_keys(selector: dict[str, str]) -> dict[str, str]:
    for key in selector:
        if not formats.is_label_key(key):
            raise ValueError(f"{key!r} is not a label key ([prefix/]name, name at most 63 characters)")
    return selector


TritonArg = Annotated[str, pydantic.Field(min_length=1, max_length=512)]


class Triton(KubeModel):
    """How each Triton pod runs."""

    image: str = pydantic.Field(
        default="nvcr.io/nvidia/tritonserver:25.01-py3",
        min_length=1,
        max_length=formats.IMAGE_MAX_LENGTH,
        pattern=formats.IMAGE_REFERENCE,
        description="Triton server image: [registry[:port]/]path[:tag][@digest], no spaces.",
    )
    args: Annotated[list[TritonArg], pydantic.AfterValidator(_no_managed_flags)] = pydantic.Field(
        default_factory=list,
        max_length=64,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"self.all(a, !a.matches('{_MANAGED_FLAG}'))",
                    "message": "spec.triton.args must not set a flag vigil renders: " + ", ".join(MANAGED_FLAGS),
                }
            ]
        },
        description="Extra tritonserver arguments (at most 64), appended; flags vigil renders "
        "(" + ", ".join(MANAGED_FLAGS) + ") are refused.",
    )
    model_control_mode: Literal["none", "poll", "explicit"] = pydantic.Field(
        default="explicit", description="--model-control-mode: none, poll or explicit."
    )
    cpu: formats.Cpu = pydantic.Field(
        default="2", description=f"CPU request and limit per pod: a quantity above 0, at most {formats.CPU_MAX}."
    )
    memory: formats.Memory = pydantic.Field(
        default="8Gi",
        description=f"Memory request and limit per pod: a quantity above 0, at most {formats.MEMORY_MAX}.",
    )
    gpus: int = pydantic.Field(default=1, ge=0, le=16, description="nvidia.com/gpu per replica (whole GPUs, 0-16).")
    env: Annotated[list[EnvVar], pydantic.AfterValidator(formats.unique_names)] = pydantic.Field(
        default_factory=list,
        max_length=64,
        json_schema_extra=formats.LIST_MAP,
        description="Extra environment (at most 64 variables, names unique).",
    )
    node_selector: Annotated[dict[str, formats.LabelValue], pydantic.AfterValidator(_label_keys)] = pydantic.Field(
        default_factory=dict,
        max_length=32,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"self.all(k, {formats.LABEL_KEY_CEL})",
                    "message": "spec.triton.nodeSelector keys must be label keys ([prefix/]name)",
                }
            ]
        },
        description="Extra node labels the pods require (GPU product, zone, ...); at most 32, label syntax.",
    )
    tolerations: list[Toleration] = pydantic.Field(
        default_factory=list,
        max_length=32,
        description="Extra tolerations (at most 32; nvidia.com/gpu is tolerated always).",
    )
    startup_timeout_seconds: int = pydantic.Field(
        default=300, ge=10, le=3600, description="How long a pod may take to load its models before restart (10-3600)."
    )
    security_context: ContainerSecurityContext | None = pydantic.Field(
        default=None,
        description="Overrides of the container securityContext; vigil's defaults meet restricted Pod Security.",
    )
    pod_security_context: PodSecurityContext | None = pydantic.Field(
        default=None,
        description="Overrides of the pod securityContext; vigil's defaults meet restricted Pod Security.",
    )


class RunbookRef(KubeModel):
    """A Runbook in the ModelDeployment's namespace."""

    name: str = pydantic.Field(
        min_length=1,
        max_length=253,
        pattern=formats.DNS1123_SUBDOMAIN,
        description="Runbook in the same namespace (a Kubernetes object name).",
    )


GATEWAY_PATTERN = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class Traffic(KubeModel):
    """Traffic options used by rollouts and by shiftTraffic actions."""

    fallback: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=NAME_MAX_LENGTH,
        pattern=formats.DNS1035_LABEL,
        description="Another ModelDeployment in the same namespace that may take this one's traffic.",
    )
    gateway: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=63 + 1 + 253,
        pattern=GATEWAY_PATTERN,
        description="Parent Gateway (namespace/name or name) of the HTTPRoute that weighted traffic "
        "shifts use; without it the route's parent is the stable Service (mesh style). Clusters "
        "without Gateway API split revisions by replica ratio behind the stable Service.",
    )


class GiveBack(KubeModel):
    """How vigil returns what an incident added (replicas beyond spec.replicas, a traffic shift).

    It lives on the ModelDeployment, not on the Runbook: it returns what *any* incident added,
    under the built-in runbook as under a referenced one, and it is the deployment's capacity
    policy, as an HPA's scale-down behaviour is the workload's (see vigil.act.giveback).
    """

    enabled: bool = pydantic.Field(
        default=True, description="Return what incidents added; false keeps it until the next spec generation."
    )
    stabilization_window: formats.Duration = pydantic.Field(
        default="5m",
        description="Every SLO must have stayed Met this long before the first step, counted from when what the "
        "incident holds took effect (already while its plan verifies it) or the last SLO change, whichever is "
        "later (like the HPA's scale-down stabilization window). Longer than 0s.",
    )
    step_replicas: int = pydantic.Field(
        default=1,
        ge=1,
        le=100,
        description="Replicas returned per step, at most (1-100); never below spec.replicas, nor below what the "
        "measured demand needs at the targetUtilization the incident's scale-out was sized for.",
    )
    step_weight: int = pydantic.Field(
        default=25, ge=1, le=100, description="Percent of traffic shifted home per step, at most (1-100)."
    )
    interval: formats.Duration = pydantic.Field(
        default="60s",
        description="Each step is judged on this much data from after it took effect; the next step waits for "
        "that verdict, so at most one step per interval. Longer than 0s.",
    )
    timeout: formats.Duration = pydantic.Field(
        default="5m", description="A step not in effect after this long stops the give-back. Longer than 0s."
    )


class Headroom(KubeModel):
    """Scaling out before an SLO breaches, on the measured demand (opt-in; see vigil.act.headroom).

    It lives on the ModelDeployment beside ``giveBack``: both are the deployment's capacity policy,
    as an HPA's scale-up and scale-down behaviour are the workload's. The runbook still says how
    (its LoadSurge ``scaleOut`` step with ``targetUtilization``) and bounds it (maxReplicas, guards,
    mode); the give-back returns what it added.
    """

    enabled: bool = pydantic.Field(
        default=False,
        description="Scale out ahead of a breach: while no incident is open, every SLO is Met or Warning with "
        "metrics available, and the measured demand, rising, needs more replicas than run at the targetUtilization "
        "of the runbook's scaleOut step for LoadSurge (beyond the HPA's 10% tolerance), vigil opens an Incident "
        "with trigger Headroom whose plan is that step alone: recorded before it acts, bounded by the step's "
        "maxReplicas, free nvidia.com/gpu and the runbook's guards (its cooldown waived only for a demand still "
        "rising past the last plan), and given back by spec.giveBack once the demand no longer needs it. A breach "
        "ends it and opens its own Incident. It holds while an autoscaler (an HPA) owns spec.replicas through the "
        "scale subresource, and during a rollout. Default false: vigil acts only on breaches.",
    )


class PodShape(KubeModel):
    """Everything that shapes a Triton pod: its hash is the revision."""

    model: Model = pydantic.Field(description="The model to serve.")
    triton: Triton = pydantic.Field(default_factory=Triton, description="Triton server settings.")


class ModelDeploymentSpec(PodShape):
    """What the user wants served."""

    rules = (
        Rule(
            "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
            "spec.minReplicas must be <= spec.maxReplicas",
            lambda s: s.min_replicas is None or s.max_replicas is None or s.min_replicas <= s.max_replicas,
            ".minReplicas",
        ),
        Rule(
            "!has(self.maxReplicas) || !has(self.replicas) || self.replicas <= self.maxReplicas",
            "spec.replicas must be <= spec.maxReplicas",
            lambda s: s.max_replicas is None or s.replicas <= s.max_replicas,
            ".replicas",
        ),
        Rule(
            "!has(self.minReplicas) || !has(self.replicas) || self.replicas >= self.minReplicas",
            "spec.replicas must be >= spec.minReplicas",
            lambda s: s.min_replicas is None or s.replicas >= s.min_replicas,
            ".replicas",
        ),
    )

    replicas: int = pydantic.Field(default=1, ge=0, le=1000, description="Desired serving replicas (0-1000).")
    min_replicas: int | None = pydantic.Field(
        default=None, ge=0, le=1000, description="Lower bound for scaling (0-1000, at most replicas)."
    )
    max_replicas: int | None = pydantic.Field(
        default=None,
        ge=1,
        le=1000,
        description="Upper bound for scale-out (1-1000, at least replicas; defaults to replicas).",
    )
    slos: Annotated[list[SLOSpec], pydantic.AfterValidator(formats.unique_names)] = pydantic.Field(
        default_factory=list,
        max_length=16,
        json_schema_extra=formats.LIST_MAP,
        description="Service-level objectives (at most 16, names unique).",
    )
    runbook_ref: RunbookRef | None = pydantic.Field(
        default=None, description="Runbook to run on a breach; without one the built-in default applies."
    )
    traffic: Traffic = pydantic.Field(default_factory=Traffic, description="Traffic options.")
    bake_time: formats.Duration = pydantic.Field(
        default="5m",
        description="How long a revision must meet its SLOs to become last-known-good; the previous "
        "revision stays warm this long after a rollout. Longer than 0s.",
    )
    revision_history_limit: int = pydantic.Field(
        default=5, ge=1, le=20, description="Revisions kept (as Deployments scaled to zero) for rollback (1-20)."
    )
    paused: bool = pydantic.Field(default=False, description="Stop automatic actions for this deployment.")
    validation: ValidationSpec | None = pydantic.Field(
        default=None,
        description="Golden-request gate: a new revision takes traffic only after each of its pods answers the "
        "golden set within tolerance (rollbacks to last-known-good are never gated). Without it, a revision "
        "takes traffic once its pods are Ready.",
    )
    give_back: GiveBack = pydantic.Field(
        default_factory=GiveBack,
        description="Returning what an incident added, step by step and verified, once the SLOs held again.",
    )
    headroom: Headroom = pydantic.Field(
        default_factory=Headroom,
        description="Scaling out before an SLO breaches when the rising demand needs it (opt-in, off by default).",
    )

    def max_replicas_or_default(self) -> int:
        return self.max_replicas if self.max_replicas is not None else max(self.replicas, 1)


class Revision(KubeModel):
    """One revision: a hash of everything that shapes a pod, served by its own Deployment.

    The pod shape is kept so that a rollback can recreate the revision's Deployment even after
    the spec moved on (or someone deleted the scaled-down Deployment).
    """

    name: str = pydantic.Field(description="Revision hash (label vigil.dev/revision).")
    model_version: str = pydantic.Field(description="spec.model.version of this revision.")
    shape: PodShape = pydantic.Field(description="The model and Triton settings of this revision.")
    generation: int = pydantic.Field(description="Spec generation that introduced it.")
    created: str = pydantic.Field(description="When vigil first recorded it.")
    ready_since: str | None = pydantic.Field(default=None, description="When it first had all replicas ready.")
    last_known_good: bool = pydantic.Field(
        default=False, description="Met its SLOs for the bake time: a rollback target."
    )
    good_since: str | None = pydantic.Field(default=None, description="Start of its current run of met SLOs.")
    validation: RevisionValidation | None = pydantic.Field(
        default=None, description="Its golden-request verdict (with spec.validation)."
    )
    conditions: list[Condition] = pydantic.Field(
        default_factory=list, description="Validated: whether it answered its golden requests within tolerance."
    )


class RollbackOverride(KubeModel):
    """Serving a revision other than the spec's, because of an incident."""

    revision: str = pydantic.Field(description="The revision served instead of the spec's.")
    from_revision: str = pydantic.Field(description="The revision rolled back from.")
    incident: str = pydantic.Field(description="The Incident that decided it.")
    generation: int = pydantic.Field(description="The spec generation this override applies to.")
    since: str = pydantic.Field(description="When the override was set.")


class ScaleOverride(KubeModel):
    """Serving more replicas than spec.replicas, because of an incident."""

    replicas: int = pydantic.Field(description="Replicas served instead of spec.replicas.")
    incident: str = pydantic.Field(description="The Incident that decided it.")
    generation: int = pydantic.Field(description="The spec generation this override applies to.")
    since: str = pydantic.Field(description="When the override was set.")


class TrafficSplit(KubeModel):
    """Where traffic goes: a revision of this deployment, or a fallback deployment."""

    backend: str = pydantic.Field(description="A revision hash, or 'md:<name>' for a fallback deployment.")
    weight: int = pydantic.Field(ge=0, le=100, description="Percent of traffic.")


class TrafficOverride(KubeModel):
    """Traffic split away from the serving revision, because of an incident."""

    splits: list[TrafficSplit] = pydantic.Field(description="Backends and their weights.")
    incident: str = pydantic.Field(description="The Incident that decided it.")
    generation: int = pydantic.Field(description="The spec generation this override applies to.")
    since: str = pydantic.Field(description="When the override was set.")


class FreshData(KubeModel):
    """SLO windows start no earlier than ``since``: older series describe the deployment before an action."""

    since: str = pydantic.Field(description="When the incident's action took effect (or metrics came back).")
    incident: str = pydantic.Field(description="The Incident whose step is, or was, verified on this data.")
    step: str = pydantic.Field(description="That step's name.")


class ModelDeploymentStatus(KubeModel):
    """What vigil observed and decided; written by vigil only."""

    observed_generation: int = pydantic.Field(default=0, description="The spec generation last reconciled.")
    replicas: int = pydantic.Field(default=0, description="Pods of the serving revision.")
    ready_replicas: int = pydantic.Field(default=0, description="Ready pods of the serving revision.")
    selector: str = pydantic.Field(default="", description="Label selector of serving pods (scale subresource).")
    desired_revision: str | None = pydantic.Field(default=None, description="Revision the spec asks for.")
    current_revision: str | None = pydantic.Field(default=None, description="Revision serving traffic.")
    model_version: str | None = pydantic.Field(default=None, description="Model version serving traffic.")
    previous_revision: str | None = pydantic.Field(
        default=None, description="Revision that served before the last switch (kept warm for the bake time)."
    )
    switched_at: str | None = pydantic.Field(default=None, description="When currentRevision last changed.")
    revisions: list[Revision] = pydantic.Field(default_factory=list, description="Bounded revision history.")
    rollback: RollbackOverride | None = pydantic.Field(default=None, description="A rollback in force, if any.")
    scale: ScaleOverride | None = pydantic.Field(default=None, description="A scale-out in force, if any.")
    traffic: TrafficOverride | None = pydantic.Field(default=None, description="A traffic shift in force, if any.")
    slos: list[SLOStatus] = pydantic.Field(default_factory=list, description="The state of each SLO.")
    fresh_data: FreshData | None = pydantic.Field(
        default=None,
        description="SLOs are judged only on data from freshData.since (windows capped as for a young revision), "
        "so an action's verification never reads the series from before it took effect; no effect once older "
        "than the longest window.",
    )
    active_incident: str | None = pydantic.Field(default=None, description="The open Incident, if any.")
    giving_back: list[str] = pydantic.Field(
        default_factory=list,
        description="Incidents whose give-back (of replicas or a traffic shift they added) is under way.",
    )
    conditions: list[Condition] = pydantic.Field(
        default_factory=list,
        description="Available, Progressing, Degraded (reason InvalidSpec for a spec vigil refuses), SLOMet, "
        "MetricsAvailable, RolledBack, ScaledOut, TrafficShifted, GivingBack, Validated (the spec's revision's "
        "golden requests).",
    )


def _name_of(md: Any) -> str:
    return str(md.metadata.get("name", ""))


class ModelDeployment(KubeModel):
    """A Triton model deployment kept inside its SLOs by vigil."""

    rules = (
        Rule(
            f"self.metadata.name.matches('{formats.DNS1035_LABEL}')",
            "metadata.name must be a DNS-1035 label (lower-case letters, digits and '-', a letter first): "
            "revision Deployments and Services are named after it",
            lambda md: not _name_of(md) or bool(re.match(formats.DNS1035_LABEL, _name_of(md))),
        ),
        Rule(
            f"size(self.metadata.name) <= {NAME_MAX_LENGTH}",
            f"metadata.name must be at most {NAME_MAX_LENGTH} characters (revision Deployments append a hash)",
            lambda md: len(_name_of(md)) <= NAME_MAX_LENGTH,
        ),
        Rule(
            "!has(self.spec.traffic) || !has(self.spec.traffic.fallback) "
            "|| self.spec.traffic.fallback != self.metadata.name",
            "spec.traffic.fallback must name another ModelDeployment, not this one",
            lambda md: md.spec.traffic.fallback is None or md.spec.traffic.fallback != _name_of(md),
            ".spec.traffic.fallback",
        ),
    )

    api_version: str = "vigil.dev/v1alpha1"
    kind: str = KIND
    metadata: dict[str, Any] = pydantic.Field(default_factory=dict)
    spec: ModelDeploymentSpec = pydantic.Field(description="What the user wants served.")
    status: ModelDeploymentStatus = pydantic.Field(
        default_factory=ModelDeploymentStatus, description="What vigil observed and decided; written by vigil only."
    )


def scale_owner(metadata: dict[str, Any]) -> str | None:
    """The field manager that set ``spec.replicas`` through the scale subresource and still owns it
    (an HPA, ``kubectl scale``), from ``metadata.managedFields``; None: the spec's own writers own it."""
    for entry in metadata.get("managedFields") or ():
        if not isinstance(entry, dict) or entry.get("subresource") != "scale":
            continue
        spec = (entry.get("fieldsV1") or {}).get("f:spec")
        if isinstance(spec, dict) and "f:replicas" in spec:
            return str(entry.get("manager") or "an unnamed manager")
    return None


_Desired = TypeVar("_Desired", bound=str | None)


def replicas_target(status: ModelDeploymentStatus, desired: _Desired) -> str | _Desired:
    """The revision the reconcile gives the replicas: a rollback's target in force while its
    revision is still kept, else ``desired`` (the spec's)."""
    rollback = status.rollback
    if rollback is not None and any(r.name == rollback.revision for r in status.revisions):
        return rollback.revision
    return desired


def rolling_out(status: ModelDeploymentStatus) -> str | None:
    """:func:`replicas_target` while it does not serve yet; None: it serves (or nothing is known)."""
    target = replicas_target(status, status.desired_revision)
    return target if target is not None and target != status.current_revision else None
