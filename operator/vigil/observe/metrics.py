"""vigil's own Prometheus metrics about its observation loop.

Collectors are module-level, as ``prometheus_client`` expects (one registration per process).
The per-deployment SLI and burn-rate gauges are labelled with the *nominal* window of the spec
(``1h``), not the window actually measured for a young revision (``4m``): the nominal window is a
stable series identity, while the measured one changes as a revision ages. ``SLOStatus`` in the
deployment's status shows the measured windows.

Gauges of deployments, SLOs or windows that are no longer evaluated are removed, and so is every
SLO gauge when Prometheus can't be queried: a stale SLI read as a current one would be the
"no data counted as healthy" mistake in a dashboard.
"""

from __future__ import annotations

import collections.abc
import dataclasses

import prometheus_client

from vigil.api import slo as sloapi
from vigil.observe import slo

SLO_LABELS = ("namespace", "modeldeployment", "slo", "window")

SLI = prometheus_client.Gauge(
    "vigil_slo_sli",
    "SLI per nominal window: good percent (ratio SLOs), ms (latency, queue time) or used/total (GPU memory).",
    SLO_LABELS,
)
BURN_RATE = prometheus_client.Gauge(
    "vigil_slo_burn_rate",
    "Burn rate per nominal window (value / threshold for threshold SLOs).",
    SLO_LABELS,
)
METRICS_AVAILABLE = prometheus_client.Gauge(
    "vigil_observe_metrics_available", "1 when the last evaluation cycle could query Prometheus."
)
LOOP_DURATION = prometheus_client.Histogram(
    "vigil_observe_loop_duration_seconds",
    "Duration of one fleet-wide evaluation cycle.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
QUERY_DURATION = prometheus_client.Histogram(
    "vigil_prometheus_query_duration_seconds",
    "Duration of one PromQL query.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
JUDGEMENTS = prometheus_client.Counter(
    "vigil_observe_judgements_total",
    "Deployments evaluated by the fleet loop: judged in full, or their last report reused (nothing it read changed).",
    ("outcome",),
)
QUERY_ERRORS = prometheus_client.Counter(
    "vigil_prometheus_query_errors_total",
    "PromQL queries that failed, by reason (connection, timeout, http, bad_response, deadline).",
    ("reason",),
)

LabelSet = tuple[str, str, str, str]


@dataclasses.dataclass(frozen=True)
class _Sample:
    labels: LabelSet
    sli: float | None
    burn_rate: float | None


def _samples(report: slo.DeploymentReport) -> list[_Sample]:
    """The decisive revision's readings of each SLO, by nominal window."""
    samples = []
    for status in report.slos:
        judgement = next(
            (
                j
                for r in report.revisions
                if r.revision == status.revision
                for j in r.judgements
                if j.slo == status.name
            ),
            None,
        )
        if judgement is None:
            continue
        seen: set[int] = set()
        for pair in judgement.measurement.pairs:
            for reading in (pair.short, pair.long):
                if reading.nominal_seconds in seen:
                    continue
                seen.add(reading.nominal_seconds)
                window = sloapi.format_duration(reading.nominal_seconds)
                samples.append(
                    _Sample((report.namespace, report.name, status.name, window), reading.sli, reading.burn_rate)
                )
    return samples


@dataclasses.dataclass(frozen=True)
class _Published:
    revisions: tuple[slo.RevisionReport, ...]
    slos: tuple[tuple[str, str | None], ...]
    samples: list[_Sample]


class SLOGauges:
    """Keeps the SLI and burn-rate gauges equal to the last evaluation, removing stale series.

    A report reused by the memo (:mod:`vigil.observe.memo`) carries the very judgements of the
    report published before it, so its gauges already hold its values: they are not set again.
    """

    def __init__(self) -> None:
        self._exported: dict[prometheus_client.Gauge, set[LabelSet]] = {SLI: set(), BURN_RATE: set()}
        self._published: dict[tuple[str, str], _Published] = {}

    def publish(self, reports: collections.abc.Iterable[slo.DeploymentReport]) -> None:
        fresh: dict[prometheus_client.Gauge, set[LabelSet]] = {SLI: set(), BURN_RATE: set()}
        published: dict[tuple[str, str], _Published] = {}
        for report in reports:
            key = (report.namespace, report.name)
            shape = tuple((status.name, status.revision) for status in report.slos)
            last = self._published.get(key)
            if last is not None and last.revisions is report.revisions and last.slos == shape:
                unchanged, samples = True, last.samples
            else:
                unchanged, samples = False, _samples(report)
            published[key] = _Published(report.revisions, shape, samples)
            for sample in samples:
                for gauge, value in ((SLI, sample.sli), (BURN_RATE, sample.burn_rate)):
                    if value is not None:
                        if not unchanged:
                            gauge.labels(*sample.labels).set(value)
                        fresh[gauge].add(sample.labels)
        self._drop_except(fresh)
        self._published = published

    def clear(self) -> None:
        self._drop_except({SLI: set(), BURN_RATE: set()})
        self._published = {}

    def _drop_except(self, keep: dict[prometheus_client.Gauge, set[LabelSet]]) -> None:
        for gauge, exported in self._exported.items():
            for labels in exported - keep[gauge]:
                gauge.remove(*labels)
        self._exported = keep
