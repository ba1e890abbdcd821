"""Prometheus alerting rules for Triton availability, from the same maths as the operator.

The chart ships these as a PrometheusRule (``charts/vigil/templates/prometheusrule.yaml`` is
generated from :func:`rule_groups` by ``vigil dev chart``; a unit test fails when it is stale), so
Alertmanager pages on the same multi-window burn rates the operator judges, even while the
operator itself is down. Three pieces are shared with the operator rather than restated:

* the windows and factors are :data:`vigil.observe.windows.WORKBOOK` scaled by
  :func:`vigil.observe.windows.default_pairs` to the default 30-day period of an SLO;
* the counter rates are the operator's own PromQL (:func:`vigil.observe.promql.expression`),
  aggregated ``by (namespace, modeldeployment, revision)`` over the relabelled Triton series, so a
  young bad revision shows on its own series, as the operator sees it;
* an absent success or failure counter next to a present sibling counts as 0, and 0/0 is no
  value at all (NaN compares false): missing data never pages, exactly as in
  :mod:`vigil.observe.slo`.

The objective is a chart value (``prometheusRule.objective``): Prometheus cannot read a
ModelDeployment's spec, so the rule applies one fleet-wide objective and the operator applies each
deployment's own. :data:`OBJECTIVE` is the placeholder the chart template replaces.
"""

from __future__ import annotations

from typing import Any

from vigil.api import slo as sloapi
from vigil.observe import promql, windows

OBJECTIVE = "__OBJECTIVE__"
PERIOD_SECONDS = 30 * 86400
MIN_WINDOW_SECONDS = 60
ALERT = "TritonAvailabilityBurnRate"
RECORD_PREFIX = "vigil:triton_request_error_ratio:rate"


def pairs() -> tuple[windows.WindowPair, ...]:
    """The alerting pairs of a ratio SLO with the default period."""
    return windows.default_pairs(PERIOD_SECONDS, threshold=False, min_window=MIN_WINDOW_SECONDS)


def record_name(seconds: int) -> str:
    return f"{RECORD_PREFIX}{sloapi.format_duration(seconds)}"


def error_ratio(seconds: int) -> str:
    """Failed over all requests per revision over ``seconds``, with the operator's counter rules."""
    failure = promql.expression(promql.Need(promql.Family.FAILURE, seconds))
    success = promql.expression(promql.Need(promql.Family.SUCCESS, seconds))
    failed = f"({failure} or {success} * 0)"
    succeeded = f"({success} or {failure} * 0)"
    return f"{failed} / ({failed} + {succeeded})"


def _limit(factor: float) -> str:
    return f"{factor:g} * (1 - {OBJECTIVE} / 100)"


def rule_groups() -> list[dict[str, Any]]:
    """The PrometheusRule ``spec.groups``: one recording rule per window, one alert per pair."""
    seconds = sorted({s for p in pairs() for s in (p.long_seconds, p.short_seconds)})
    records = [{"record": record_name(s), "expr": error_ratio(s)} for s in seconds]
    alerts = []
    for pair in pairs():
        limit = _limit(pair.factor)
        alerts.append(
            {
                "alert": ALERT,
                "expr": f"{record_name(pair.long_seconds)} > ({limit})\n"
                f"and {record_name(pair.short_seconds)} > ({limit})",
                "labels": {"severity": str(pair.severity), "long_window": pair.long, "short_window": pair.short},
                "annotations": {
                    "summary": "Triton model deployment {{ $labels.namespace }}/{{ $labels.modeldeployment }} "
                    "burns its availability error budget",
                    "description": f"Revision {{{{ $labels.revision }}}} fails more than {pair.factor:g}x the error "
                    f"budget over both {pair.long} and {pair.short} (objective {OBJECTIVE}%).",
                },
            }
        )
    operator = [
        {
            "alert": "VigilMetricsUnavailable",
            "expr": "max by (namespace) (vigil_observe_metrics_available) == 0",
            "for": "5m",
            "labels": {"severity": str(windows.Severity.TICKET)},
            "annotations": {
                "summary": "vigil cannot query Prometheus: SLO verdicts are held and no healing runs",
                "description": "The active vigil replica in {{ $labels.namespace }} has had no answer from "
                "Prometheus for 5 minutes (see vigil_prometheus_query_errors_total).",
            },
        }
    ]
    return [
        {"name": "vigil-triton-availability.records", "rules": records},
        {"name": "vigil-triton-availability.alerts", "rules": alerts},
        {"name": "vigil-operator", "rules": operator},
    ]
