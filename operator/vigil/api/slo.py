"""Service-level objectives declared on a ModelDeployment, and their observed state in its status.

Two families of SLO share one shape:

* ratio SLOs (``availability``; ``latency`` with ``method: histogram``) count good and bad
  requests; their burn rate is the bad ratio divided by the error budget (1 - objective), as in the
  Google SRE workbook;
* threshold SLOs (``latency`` with ``method: average``, ``queueTime``, ``gpuMemory``) compare a
  measured value with a threshold; their "burn rate" is value / threshold, so 1.0 means "at the
  threshold" and the window factor defaults to 1.

Either way an SLO is breached only when *both* windows of an alerting pair exceed the factor, and
missing data is never read as healthy nor as broken (``noDataPolicy``).
"""

from __future__ import annotations

import enum
import re

import pydantic

from vigil.api._base import KubeModel, cel, validations

_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w))+$")
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d|w))+$"
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(text: str) -> float:
    """Seconds in a Prometheus-style duration such as ``1h30m`` or ``250ms``."""
    if not _DURATION.match(text):
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 1h, 30d")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h|d|w)", text))


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for a whole number of seconds (``90`` -> ``1m30s``)."""
    remaining = max(1, round(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if remaining >= size:
            parts.append(f"{remaining // size}{unit}")
            remaining %= size
    return "".join(parts)


class SLOKind(enum.StrEnum):
    AVAILABILITY = "availability"
    LATENCY = "latency"
    QUEUE_TIME = "queueTime"
    GPU_MEMORY = "gpuMemory"


class LatencyMethod(enum.StrEnum):
    AVERAGE = "average"
    HISTOGRAM = "histogram"


class NoDataPolicy(enum.StrEnum):
    HOLD = "Hold"
    WARN = "Warn"


class BurnWindow(KubeModel):
    """One multi-window alerting pair: breach when both windows burn faster than ``factor``."""

    long: str = pydantic.Field(pattern=DURATION_PATTERN, description="Long window, e.g. 1h.")
    short: str = pydantic.Field(pattern=DURATION_PATTERN, description="Short window, usually long / 12.")
    factor: float = pydantic.Field(gt=0, description="Burn-rate factor both windows must exceed, e.g. 14.4.")
    severity: str = pydantic.Field(
        default="page", pattern=r"^(page|ticket)$", description="page (acts) or ticket (warns only)."
    )


class SLOSpec(KubeModel):
    """A named objective judged from Triton's Prometheus metrics."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.kind != 'latency' && self.kind != 'queueTime' || has(self.thresholdMs)",
                "thresholdMs is required for latency and queueTime SLOs",
                ".thresholdMs",
            ),
            cel(
                "self.kind != 'gpuMemory' || has(self.maxUtilization)",
                "maxUtilization is required for gpuMemory SLOs",
                ".maxUtilization",
            ),
        )
    )

    name: str = pydantic.Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40, description="Name, unique per deployment."
    )
    kind: SLOKind = pydantic.Field(description="availability, latency, queueTime or gpuMemory.")
    objective: float = pydantic.Field(
        default=99.0,
        gt=0,
        lt=100,
        description="Target percentage of good requests (ratio SLOs), e.g. 99.9.",
    )
    threshold_ms: float | None = pydantic.Field(
        default=None, gt=0, description="Latency or queue-time threshold in milliseconds."
    )
    method: LatencyMethod = pydantic.Field(
        default=LatencyMethod.AVERAGE,
        description="latency only: average (duration/success counters) or histogram "
        "(ratio of first responses under thresholdMs; thresholdMs must be a bucket boundary).",
    )
    max_utilization: float | None = pydantic.Field(
        default=None, gt=0, le=1, description="gpuMemory only: highest used/total GPU memory ratio."
    )
    period: str = pydantic.Field(
        default="30d", pattern=DURATION_PATTERN, description="SLO period (error-budget window)."
    )
    windows: list[BurnWindow] | None = pydantic.Field(
        default=None,
        max_length=4,
        description="Alerting windows; default: the SRE workbook table scaled to the period.",
    )
    min_request_rate: float = pydantic.Field(
        default=0.1,
        ge=0,
        description="Requests/s below which the SLO is not judged (state InsufficientTraffic).",
    )
    no_data_policy: NoDataPolicy = pydantic.Field(
        default=NoDataPolicy.HOLD,
        description="Hold: missing metrics keep the last verdict and trigger nothing. "
        "Warn: likewise, plus a Warning event.",
    )


class SLOState(enum.StrEnum):
    MET = "Met"
    WARNING = "Warning"
    BREACHED = "Breached"
    NO_DATA = "NoData"
    INSUFFICIENT_TRAFFIC = "InsufficientTraffic"


class WindowBurn(KubeModel):
    window: str
    burn_rate: float | None = None
    sli: float | None = None


class SLOStatus(KubeModel):
    """The observed state of one SLO (written by the fleet evaluation loop)."""

    name: str
    state: SLOState
    sli: float | None = pydantic.Field(default=None, description="Current SLI over the shortest window.")
    request_rate: float | None = None
    burn_rates: list[WindowBurn] = pydantic.Field(default_factory=list)
    budget_remaining: float | None = pydantic.Field(
        default=None, description="Fraction of the error budget left over the longest window observed."
    )
    revision: str | None = pydantic.Field(default=None, description="Revision the verdict was judged on.")
    held_state: SLOState | None = pydantic.Field(
        default=None,
        description="While the state is NoData: the last state judged on data, which hysteresis resumes from.",
    )
    message: str = ""
    last_transition_time: str | None = None
    last_evaluation_time: str | None = None
