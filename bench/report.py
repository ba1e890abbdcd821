"""Pure rendering of the benchmark results (the JSON written to ``bench/results``) as Markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

DASH = "n/a"
SCENARIO_TITLES = {"steady": "steady-state fault (errorRatio 0.3)", "rollout": "bad rollout (version 2 faulted)"}
MIB = 2**20


def seconds(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{value:.{digits}f} s"


def number(value: float | None, digits: int = 2) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def mebibytes(value: float | None) -> str:
    return DASH if value is None else f"{value / MIB:.1f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table; pipes inside cells are escaped."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


def _spread(summary: Mapping[str, Any] | None) -> str:
    if not summary:
        return DASH
    return f"{seconds(summary['median'])} ({number(summary['min'], 1)}-{number(summary['max'], 1)})"


def detection_section(result: Mapping[str, Any]) -> str:
    target = float(result["targetSeconds"])
    rows = []
    for scenario, data in result["scenarios"].items():
        summary = data.get("summary") or {}
        condition = data.get("conditionSummary") or {}
        count = len(data["runs"])
        ok = count - int(data["failedRuns"])
        rows.append(
            [
                SCENARIO_TITLES.get(scenario, scenario),
                f"{ok}/{count}",
                seconds(summary.get("min")),
                seconds(summary.get("median")),
                seconds(summary.get("p90")),
                seconds(summary.get("max")),
                seconds(condition.get("median")),
                seconds(target),
                "PASS" if data["pass"] else "FAIL",
            ]
        )
    intro = (
        f"Fault onset → `status.slos[0].state == Breached` (polled every {result['pollSeconds']:g} s). "
        f"Scrape interval {seconds(result['scrapeIntervalSeconds'], 0)}, evaluation interval "
        f"{seconds(result['evalIntervalSeconds'], 0)}; target ≤ 2 scrapes + 1 evaluation = {seconds(target, 0)} "
        "(PASS when every run meets it). Rollout onset: `status.currentRevision` switches to the new revision."
    )
    header = ["scenario", "runs ok", "min", "median", "p90", "max", "SLOMet condition (median)", "target", "result"]
    every = [run for data in result["scenarios"].values() for run in data["runs"]]
    return f"## 1. Detection time\n\n{intro}\n\n{table(header, rows)}\n{disturbances(every)}"


def disturbances(runs: Sequence[Mapping[str, Any]]) -> str:
    """A note on runs the shared sandbox disturbed: other operators, Prometheus outages."""
    contended = sum(1 for run in runs if run.get("contended"))
    outages = sum(1 for run in runs if run.get("prometheusErrors"))
    notes = []
    if contended:
        notes.append(
            f"{contended} of {len(runs)} runs were contended: another vigil operator ran on this machine, or the "
            "run's deployment was reconciled by more than one operator (duplicate Events). Such runs measure the "
            "fastest of several operators, whose status writes can also undo each other's (see the warning below)."
        )
    if outages:
        notes.append(
            f"{outages} of {len(runs)} runs saw Prometheus queries fail (the shared Prometheus was stopped by "
            "something else); vigil holds its verdicts while it cannot query, which delays it."
        )
    return "".join(f"\n{note}\n" for note in notes)


def _healing_rows(title: str, data: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for key, label in data["metrics"].items():
        vigil = data["summaries"]["vigil"].get(key)
        base = data["summaries"]["baseline"].get(key)
        ratio = data["ratios"].get(key)
        rows.append([title, label, _spread(vigil), _spread(base), number(ratio)])
    return rows


def healing_section(result: Mapping[str, Any]) -> str:
    policy = result["baselinePolicy"]
    rows = _healing_rows("bad rollout → rollback", result["rollback"]) + _healing_rows(
        "x3 load surge → scale-out", result["scaleOut"]
    )
    failed = []
    for scenario in ("rollback", "scaleOut"):
        for who, count in result[scenario]["failedRuns"].items():
            if count:
                failed.append(f"{scenario} {who}: {count} failed run(s)")
    intro = (
        "vigil's runbooks vs a Flagger-like baseline measured side by side in the same run: "
        f"fixed {policy['intervalSeconds']:g} s analysis interval, {policy['window']} window, action on the "
        f"first failed check (request-success-rate ≥ {policy['successRateThreshold']:g} %; request duration "
        f"= average queue time ≤ {policy['queueTimeThresholdMs']} ms, the queue-time SLO's threshold). "
        "Median (min-max); ratio = vigil / baseline of the medians, lower is better."
    )
    header = ["scenario", "measure", "vigil", "baseline", "vigil / baseline"]
    note = ("\n\nFailed runs: " + "; ".join(failed) + ".") if failed else ""
    runs = [run for s in ("rollback", "scaleOut") for who in result[s]["runs"] for run in result[s]["runs"][who]]
    return f"## 2. Healing vs a Flagger-like baseline\n\n{intro}\n\n{table(header, rows)}{note}\n{disturbances(runs)}"


def cost_section(result: Mapping[str, Any]) -> str:
    rows = [
        [
            str(step["n"]),
            mebibytes(step.get("rssBytes")),
            mebibytes(step.get("rssOverBaselineBytes")),
            number(step["rssPerAddedDeploymentBytes"] / 1024 if step.get("rssPerAddedDeploymentBytes") else None, 1),
            number((step.get("meanLoopSeconds") or 0) * 1000 if step.get("meanLoopSeconds") is not None else None, 1),
            number(step.get("queriesPerCycle"), 1),
            str(step.get("cycles")),
        ]
        for step in result["steps"]
    ]
    verdict = "yes" if result["queriesConstant"] else "NO"
    intro = (
        "One operator, started with no ModelDeployment (N = 0, the baseline), then the fleet grown to each N "
        "(replicas 0, two SLOs each). RSS from /proc; loop duration and queries from the operator's own /metrics."
    )
    header = [
        "N ModelDeployments",
        "RSS (MiB)",
        "RSS over N=0 (MiB)",
        "RSS per added MD (KiB)",
        "fleet loop (ms)",
        "queries / cycle",
        "cycles",
    ]
    return (
        f"## 3. Operator cost\n\n{intro}\n\n{table(header, rows)}\n\n"
        f"Queries per cycle constant as N grows (N > 0): **{verdict}**.\n"
    )


SECTIONS = {"detection": detection_section, "healing": healing_section, "cost": cost_section}


def render(results: Mapping[str, Any]) -> str:
    """The whole Markdown report for one invocation (``results`` as written to results.json)."""
    meta = results["meta"]
    parts = [
        "# vigil benchmarks",
        "",
        f"Measured {meta['started']} - {meta['finished']} on the local sandbox, {meta['runs']} run(s) per scenario"
        + (" (--quick)" if meta.get("quick") else "")
        + ". Every number below was measured in this run.",
        "",
    ]
    for name, section in results["benchmarks"].items():
        if "error" in section:
            parts.append(f"## {name}\n\nFAILED: {section['error']}\n")
            continue
        parts.append(SECTIONS[name](section))
    others = sorted(
        {o for s in results["benchmarks"].values() for o in s.get("environment", {}).get("otherOperators", [])}
    )
    if others:
        parts.append(
            "**Warning:** other vigil operators ran on this machine during the benchmark and may have "
            "reconciled the same objects:\n\n" + "\n".join(f"- `{o}`" for o in others) + "\n"
        )
    plots = meta.get("plots") or []
    if plots:
        parts.append("\n".join(f"![{p}]({p})" for p in plots) + "\n")
    return "\n".join(parts)
