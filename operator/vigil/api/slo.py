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
from typing import Literal

import pydantic

from vigil.api._base import KubeModel, Rule
from vigil.api.formats import DURATION_PATTERN as DURATION_PATTERN
from vigil.api.formats import Duration, ShortName, cel_milliseconds
from vigil.api.formats import duration_seconds as duration_seconds
from vigil.api.formats import format_duration as format_duration

PERIOD_MAX_SECONDS = 366 * 86400
THRESHOLD_MS_MAX = 3_600_000.0


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

    rules = (
        Rule(
            f"{cel_milliseconds('self.short')} <= {cel_milliseconds('self.long')}",
            "short must not be longer than long",
            lambda w: duration_seconds(w.short) <= duration_seconds(w.long),
            ".short",
        ),
    )

    long: Duration = pydantic.Field(description="Long window, e.g. 1h; at most the SLO's period.")
    short: Duration = pydantic.Field(description="Short window, usually long / 12; at most the long window.")
    factor: float = pydantic.Field(
        gt=0, le=1000, description="Burn-rate factor both windows must exceed, e.g. 14.4 (above 0, at most 1000)."
    )
    severity: Literal["page", "ticket"] = pydantic.Field(
        default="page", description="page (a breach: acts) or ticket (a warning only)."
    )


_THRESHOLD_KINDS = (SLOKind.LATENCY, SLOKind.QUEUE_TIME)


class SLOSpec(KubeModel):
    """A named objective judged from Triton's Prometheus metrics."""

    rules = (
        Rule(
            "self.kind != 'latency' && self.kind != 'queueTime' || has(self.thresholdMs)",
            "thresholdMs is required for latency and queueTime SLOs",
            lambda s: s.kind not in _THRESHOLD_KINDS or s.threshold_ms is not None,
            ".thresholdMs",
        ),
        Rule(
            "self.kind == 'latency' || self.kind == 'queueTime' || !has(self.thresholdMs)",
            "thresholdMs applies to latency and queueTime SLOs only",
            lambda s: s.kind in _THRESHOLD_KINDS or s.threshold_ms is None,
            ".thresholdMs",
        ),
        Rule(
            "self.kind != 'gpuMemory' || has(self.maxUtilization)",
            "maxUtilization is required for gpuMemory SLOs",
            lambda s: s.kind is not SLOKind.GPU_MEMORY or s.max_utilization is not None,
            ".maxUtilization",
        ),
        Rule(
            "self.kind == 'gpuMemory' || !has(self.maxUtilization)",
            "maxUtilization applies to gpuMemory SLOs only",
            lambda s: s.kind is SLOKind.GPU_MEMORY or s.max_utilization is None,
            ".maxUtilization",
        ),
        Rule(
            "self.kind == 'latency' || !has(self.method) || self.method == 'average'",
            "method: histogram applies to latency SLOs only",
            lambda s: s.kind is SLOKind.LATENCY or s.method is LatencyMethod.AVERAGE,
            ".method",
        ),
        Rule(
            f"!has(self.period) || {cel_milliseconds('self.period')} <= {PERIOD_MAX_SECONDS * 1000}",
            "period must be at most 366d",
            lambda s: duration_seconds(s.period) <= PERIOD_MAX_SECONDS,
            ".period",
        ),
        Rule(
            f"!has(self.windows) || !has(self.period) || self.windows.all(w, "
            f"{cel_milliseconds('w.long')} <= {cel_milliseconds('self.period')})",
            "windows[].long must not be longer than period",
            lambda s: all(duration_seconds(w.long) <= duration_seconds(s.period) for w in s.windows or ()),
            ".windows",
        ),
    )

    name: ShortName = pydantic.Field(description="Name, unique per deployment (a DNS label of at most 40 characters).")
    kind: SLOKind = pydantic.Field(description="availability, latency, queueTime or gpuMemory.")
    objective: float = pydantic.Field(
        default=99.0,
        gt=0,
        lt=100,
        description="Target percentage of good requests (ratio SLOs), e.g. 99.9; above 0 and below 100.",
    )
    threshold_ms: float | None = pydantic.Field(
        default=None,
        gt=0,
        le=THRESHOLD_MS_MAX,
        description="latency and queueTime only (and required there): threshold in milliseconds, above 0.",
    )
    method: LatencyMethod = pydantic.Field(
        default=LatencyMethod.AVERAGE,
        description="latency only: average (duration/success counters) or histogram "
        "(ratio of first responses under thresholdMs; thresholdMs must be a bucket boundary).",
    )
    max_utilization: float | None = pydantic.Field(
        default=None,
        gt=0,
        le=1,
        description="gpuMemory only (and required there): highest used/total GPU memory ratio, in (0, 1].",
    )
    period: Duration = pydantic.Field(
        default="30d", description="SLO period (error-budget window), longer than 0s and at most 366d."
    )
    windows: list[BurnWindow] | None = pydantic.Field(
        default=None,
        max_length=4,
        description="Alerting windows (at most 4); default: the SRE workbook table scaled to the period.",
    )
    min_request_rate: float = pydantic.Field(
        default=0.1,
        ge=0,
        le=1_000_000,
        description="Requests/s below which the SLO is not judged (state InsufficientTraffic); 0 judges always.",
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
    """One measured window of the decisive revision."""

    window: str = pydantic.Field(description="The window as measured (capped for a young revision).")
    burn_rate: float | None = pydantic.Field(
        default=None, description="Burn rate (ratio SLOs) or value / threshold (threshold SLOs)."
    )
    sli: float | None = pydantic.Field(default=None, description="The SLI over this window.")


class SLOStatus(KubeModel):
    """The observed state of one SLO (written by the fleet evaluation loop)."""

    name: str = pydantic.Field(description="The SLO's name in spec.slos.")
    state: SLOState = pydantic.Field(description="Met, Warning, Breached, NoData or InsufficientTraffic.")
    sli: float | None = pydantic.Field(default=None, description="Current SLI over the shortest window.")
    request_rate: float | None = pydantic.Field(default=None, description="Requests/s over the shortest window.")
    burn_rates: list[WindowBurn] = pydantic.Field(default_factory=list, description="Every measured window.")
    budget_remaining: float | None = pydantic.Field(
        default=None, description="Fraction of the error budget left over the longest window observed."
    )
    revision: str | None = pydantic.Field(default=None, description="Revision the verdict was judged on.")
    held_state: SLOState | None = pydantic.Field(
        default=None,
        description="While the state is NoData: the last state judged on data, which hysteresis resumes from.",
    )
    message: str = pydantic.Field(default="", description="Why the state is what it is, naming the windows.")
    last_transition_time: str | None = pydantic.Field(default=None, description="When the state last changed.")
    last_evaluation_time: str | None = pydantic.Field(default=None, description="When the SLO was last judged.")
