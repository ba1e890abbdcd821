"""``spec.validation``: the golden-request gate of a ModelDeployment, and its verdicts in ``status``.

A new revision takes traffic only after every one of its Ready pods answered the golden requests
of a golden set (made with torch by ``vigil golden``, stored in a ConfigMap or beside the model in
its repository) within tolerance.
The spec says where the golden set is, how strict to be and what a failure does; each revision's
verdict lives in its ``status.revisions[]`` entry (``validation`` and a ``Validated`` condition),
so a restarted operator knows what was proven and never moves traffic on a verdict it lost.

Tolerances default to the golden set's own (per output); ``tolerance`` overrides them for every
output, and ``tolerance.outputs`` for one output by name (the most specific value wins).
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

import pydantic

from vigil.api import formats
from vigil.api._base import KubeModel, Rule

DEFAULT_KEY = "golden.json"
TIMEOUT_MAX_SECONDS = 300
REQUESTS_MAX = 10_000
TOP_K_MAX = 1000
CONFIG_MAP_KEY = r"^[-._a-zA-Z0-9]+$"
TENSOR_NAME = r"^[A-Za-z0-9_.:\-]+$"
GOLDEN_SET_PATH = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"
"""A relative path of plain segments: no leading '/', no empty segment, nothing a URL would need to escape."""
PARENT_SEGMENT = r"(^|/)[.][.](/|$)"
PATH_MAX_LENGTH = 512


class ConfigMapKeyRef(KubeModel):
    """A key of a ConfigMap in the ModelDeployment's namespace."""

    name: str = pydantic.Field(
        min_length=1,
        max_length=253,
        pattern=formats.DNS1123_SUBDOMAIN,
        description="The ConfigMap (a Kubernetes object name) in the ModelDeployment's namespace.",
    )
    key: str = pydantic.Field(
        default=DEFAULT_KEY,
        min_length=1,
        max_length=253,
        pattern=CONFIG_MAP_KEY,
        description=f"The key holding the golden-set JSON document (default {DEFAULT_KEY}).",
    )


class GoldenSetRef(KubeModel):
    """Where the golden set (``vigil golden``'s output) is stored: a ConfigMap, or the model repository.

    A ConfigMap holds at most 1 MiB; a golden set of any size can live beside the model in its
    repository (``path``), which the operator reads when it can reach the repository: a local path
    (``/models``, ``file:///models``: the repository mounted into the operator) or http(s)://.
    """

    rules = (
        Rule(
            "has(self.configMapRef) != has(self.path)",
            "exactly one of configMapRef (a ConfigMap key) or path (a file in the model repository) must be set",
            lambda ref: (ref.config_map_ref is None) != (ref.path is None),
        ),
        Rule(
            f"!has(self.path) || !self.path.matches('{PARENT_SEGMENT}')",
            "path must stay inside the model's directory: no '..' segment",
            lambda ref: ref.path is None or ".." not in ref.path.split("/"),
            ".path",
        ),
    )

    config_map_ref: ConfigMapKeyRef | None = pydantic.Field(
        default=None, description="The ConfigMap key holding the golden set (at most 1 MiB)."
    )
    path: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=PATH_MAX_LENGTH,
        pattern=GOLDEN_SET_PATH,
        description="The golden-set file relative to the model's directory in spec.model.repository "
        "(<repository>/<model name>/<path>), e.g. golden.json or 3/golden.json; no leading '/', no '..'. "
        "The operator reads absolute-path and file:// repositories mounted into it (Helm value "
        "modelRepositories) and http(s):// ones; s3://, gs:// and as:// leave the revision NotValidated.",
    )


class OutputTolerance(KubeModel):
    """How far one output may be from the reference; unset fields keep the broader setting."""

    name: str = pydantic.Field(
        min_length=1, max_length=128, pattern=TENSOR_NAME, description="The output tensor's name, e.g. OUTPUT__0."
    )
    atol: float | None = pydantic.Field(default=None, ge=0, description="Absolute tolerance (>= 0).")
    rtol: float | None = pydantic.Field(default=None, ge=0, description="Relative tolerance (>= 0).")
    top_k: int | None = pydantic.Field(
        default=None,
        ge=1,
        le=TOP_K_MAX,
        description=f"The served top-k indices must equal the reference's (classifiers; 1-{TOP_K_MAX}).",
    )


class Tolerance(KubeModel):
    """Overrides of the golden set's tolerances: every output, then per output by name.

    An output passes when ``|served - reference| <= atol + rtol * |reference|`` elementwise (and,
    with ``topK``, its top-k indices equal the reference's).
    """

    atol: float | None = pydantic.Field(default=None, ge=0, description="Absolute tolerance of every output (>= 0).")
    rtol: float | None = pydantic.Field(default=None, ge=0, description="Relative tolerance of every output (>= 0).")
    top_k: int | None = pydantic.Field(
        default=None, ge=1, le=TOP_K_MAX, description=f"Top-k agreement for every output (1-{TOP_K_MAX})."
    )
    outputs: Annotated[list[OutputTolerance], pydantic.AfterValidator(formats.unique_names)] = pydantic.Field(
        default_factory=list,
        max_length=64,
        json_schema_extra=formats.LIST_MAP,
        description="Per-output overrides (at most 64, names unique); they win over atol, rtol and topK above.",
    )


class OnFailure(enum.StrEnum):
    BLOCK = "block"
    WARN = "warn"


class ValidationSpec(KubeModel):
    """The golden-request gate: what a new revision must answer before it takes traffic."""

    rules = (
        Rule(
            f"!has(self.timeout) || {formats.cel_milliseconds('self.timeout')} <= {TIMEOUT_MAX_SECONDS * 1000}",
            f"timeout must be at most {TIMEOUT_MAX_SECONDS}s",
            lambda v: formats.duration_seconds(v.timeout) <= TIMEOUT_MAX_SECONDS,
            ".timeout",
        ),
    )

    golden_set: GoldenSetRef = pydantic.Field(description="Where the golden set is stored.")
    tolerance: Tolerance = pydantic.Field(
        default_factory=Tolerance, description="Overrides of the golden set's tolerances (default: the golden set's)."
    )
    requests: int | None = pydantic.Field(
        default=None,
        ge=1,
        le=REQUESTS_MAX,
        description=f"Golden requests sent to each new pod: the first N of the set (default: all; 1-{REQUESTS_MAX}).",
    )
    timeout: formats.Duration = pydantic.Field(
        default="5s",
        description=f"Per-request timeout (and for the readiness check); longer than 0s, at most {TIMEOUT_MAX_SECONDS}s. "
        "A pod that times out is not validated yet: it is tried again, never passed.",
    )
    on_failure: OnFailure = pydantic.Field(
        default=OnFailure.BLOCK,
        description="block (default): a revision that answers wrongly never takes traffic; warn: it does, "
        "with a Warning Event and an Incident. Either way the Validated condition says what was wrong.",
    )


# -- status ----------------------------------------------------------------------------------------


class ValidationPhase(enum.StrEnum):
    VALIDATING = "Validating"
    """Golden requests are being sent (recorded before the first one, so a restart knows)."""
    NOT_VALIDATED = "NotValidated"
    """Not proven yet: a pod timed out, was unreachable or not ready, or the golden set unreadable."""
    PASSED = "Passed"
    FAILED = "Failed"


class OutputDeviation(KubeModel):
    """The worst deviation of one output from its reference, over every pod and request."""

    name: str = pydantic.Field(description="The output tensor.")
    passed: bool = pydantic.Field(description="Whether every answer was within tolerance.")
    max_abs_error: float | None = pydantic.Field(default=None, description="Largest |served - reference|.")
    max_rel_error: float | None = pydantic.Field(
        default=None, description="Largest |served - reference| / |reference|."
    )
    top_k_agreement: float | None = pydantic.Field(
        default=None, description="Share of answers whose top-k indices equal the reference's (0-1), with topK."
    )
    worst_request: str | None = pydantic.Field(default=None, description="The golden request with the largest error.")
    worst_pod: str | None = pydantic.Field(default=None, description="The pod that gave that answer.")
    atol: float = pydantic.Field(description="The absolute tolerance applied.")
    rtol: float = pydantic.Field(description="The relative tolerance applied.")
    top_k: int | None = pydantic.Field(default=None, description="The top-k applied, if any.")
    problem: str | None = pydantic.Field(
        default=None, description="What made the output fail besides its error (missing, shape, datatype)."
    )
    failed_requests: int = pydantic.Field(default=0, description="Answers out of tolerance (over every pod).")
    requests: int = pydantic.Field(default=0, description="Answers compared (over every pod).")


class RevisionValidation(KubeModel):
    """The golden-request verdict of one revision."""

    phase: ValidationPhase = pydantic.Field(description="Validating, NotValidated, Passed or Failed.")
    generation: int = pydantic.Field(description="The spec generation it was made for (a new one retries a failure).")
    reason: str = pydantic.Field(description="Machine-readable CamelCase reason.")
    message: str = pydantic.Field(default="", description="What was found, readable.")
    started: str | None = pydantic.Field(default=None, description="When the golden requests started.")
    finished: str | None = pydantic.Field(default=None, description="When the verdict was reached.")
    pods: list[str] = pydantic.Field(default_factory=list, description="The pods the golden requests were sent to.")
    requests: int = pydantic.Field(default=0, description="Golden requests per pod.")
    golden_set: str | None = pydantic.Field(
        default=None, description="The golden set used: ConfigMap/key or file, model name and version, digest."
    )
    outputs: list[OutputDeviation] = pydantic.Field(default_factory=list, description="Worst deviation per output.")
    retry_at: str | None = pydantic.Field(default=None, description="NotValidated: when it is tried again.")
    incident: str | None = pydantic.Field(default=None, description="Failed: the BadModel Incident recording it.")
    incident_state: Literal["Intended", "Recorded", "Resolved"] | None = pydantic.Field(
        default=None,
        description="Intended (named, before it is created), Recorded (created) or Resolved (superseded).",
    )
