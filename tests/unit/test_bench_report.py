"""bench.report (Markdown rendering) and the pure summaries of the detection, healing and cost results."""

from __future__ import annotations

from typing import Any

from bench import cost, detection, gate, healing, report

ENV = {"scrapeIntervalSeconds": 5.0, "evalIntervalSeconds": 5.0, "otherOperators": []}


def detection_result() -> dict[str, Any]:
    runs = {
        "steady": [{"detectionSeconds": 6.0, "conditionSeconds": 5.5}, {"detectionSeconds": 9.0}],
        "rollout": [{"detectionSeconds": 12.0, "prometheusErrors": 3}, {"error": "timed out", "contended": True}],
    }
    return detection.summarize(runs, ENV)


def healing_result() -> dict[str, Any]:
    rollback = {
        "vigil": [{"toRollbackSeconds": 8.0, "toMetSeconds": 12.0}, {"toRollbackSeconds": 10.0, "toMetSeconds": 16.0}],
        "baseline": [
            {"toRollbackSeconds": 40.0, "toMetSeconds": 50.0},
            {"toRollbackSeconds": 60.0, "toMetSeconds": 70.0},
        ],
    }
    scale = {
        "vigil": [{"toScaleSeconds": 10.0, "toMetSeconds": 60.0}, {"error": "timed out"}],
        "baseline": [{"toScaleSeconds": 50.0, "toMetSeconds": 240.0}, {"toScaleSeconds": 30.0, "toMetSeconds": 200.0}],
    }
    return healing.summarize(rollback, scale, ENV)


def cost_result() -> dict[str, Any]:
    steps = [
        {"n": 0, "rssBytes": 80 * 2**20, "meanLoopSeconds": 0.02, "queriesPerCycle": 6.0, "cycles": 3},
        {"n": 10, "rssBytes": 100 * 2**20, "meanLoopSeconds": 0.07, "queriesPerCycle": 12.0, "cycles": 3},
        {"n": 50, "rssBytes": 104 * 2**20, "meanLoopSeconds": 0.09, "queriesPerCycle": 12.0, "cycles": 3},
    ]
    return cost.summarize(steps, ENV)


def test_detection_summary_reports_target_and_verdicts() -> None:
    result = detection_result()
    assert result["targetSeconds"] == 15.0
    steady, rollout = result["scenarios"]["steady"], result["scenarios"]["rollout"]
    assert steady["summary"]["median"] == 7.5
    assert steady["summary"]["max"] == 9.0
    assert steady["pass"]
    assert rollout["failedRuns"] == 1
    assert rollout["contendedRuns"] == 1
    assert rollout["summary"]["n"] == 1


def test_detection_fails_the_target_when_any_run_misses_it() -> None:
    result = detection.summarize({"steady": [{"detectionSeconds": 14.0}, {"detectionSeconds": 15.5}]}, ENV)
    assert not result["scenarios"]["steady"]["pass"]


def test_detection_section_is_a_table_with_one_row_per_scenario() -> None:
    text = report.detection_section(detection_result())
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(lines) == 4
    assert "| min | median | p90 | max |" in lines[0]
    assert lines[2].startswith("| steady-state fault")
    assert "| 2/2 |" in lines[2]
    assert "| 7.5 s |" in lines[2]
    assert lines[2].endswith("| 15.0 s | PASS |")
    assert "| 1/2 |" in lines[3]
    assert "1 of 4 runs were contended" in text
    assert "1 of 4 runs saw Prometheus queries fail" in text


def test_healing_ratios_are_vigil_over_baseline_medians() -> None:
    result = healing_result()
    assert result["rollback"]["ratios"]["toRollbackSeconds"] == 9.0 / 50.0
    assert result["scaleOut"]["ratios"]["toScaleSeconds"] == 10.0 / 40.0
    assert result["scaleOut"]["failedRuns"] == {"vigil": 1, "baseline": 0}
    assert result["rollback"]["pairedRatios"]["toMetSeconds"] == [12.0 / 50.0, 16.0 / 70.0]
    assert result["scaleOut"]["pairedRatios"]["toMetSeconds"] == [60.0 / 240.0]


def test_healing_section_shows_medians_spreads_and_ratios() -> None:
    text = report.healing_section(healing_result())
    rows = [line for line in text.splitlines() if line.startswith("| bad rollout") or line.startswith("| x3")]
    assert len(rows) == 4
    assert rows[0] == (
        "| bad rollout → rollback | first bad request -> rollback started | 9.0 s (8.0-10.0) | 50.0 s (40.0-60.0) | 0.18 |"
    )
    assert "scaleOut vigil: 1 failed run(s)" in text


def test_cost_summary_checks_constant_queries_and_rss_over_the_baseline() -> None:
    result = cost_result()
    assert result["queriesConstant"]
    by_n = {step["n"]: step for step in result["steps"]}
    assert by_n[0]["rssOverBaselineBytes"] == 0
    assert by_n[50]["rssOverBaselineBytes"] == 24 * 2**20
    assert by_n[50]["rssPerAddedDeploymentBytes"] == 4 * 2**20 / 40
    assert by_n[0]["rssPerAddedDeploymentBytes"] is None


def test_cost_section_table() -> None:
    text = report.cost_section(cost_result())
    assert "| 50 | 104.0 | 24.0 | 102.4 | 90.0 | 12.0 | 3 |" in text
    assert "**yes**" in text
    growing = cost.summarize([{**s, "queriesPerCycle": 6.0 * (1 + s["n"])} for s in cost_result()["steps"]], ENV)
    assert "**NO**" in report.cost_section(growing)


def test_missing_values_render_as_not_available() -> None:
    assert report.seconds(None) == report.DASH
    assert report.number(None) == report.DASH
    assert report.mebibytes(None) == report.DASH


def test_table_escapes_pipes() -> None:
    assert report.table(["a"], [["x|y"]]).splitlines()[-1] == "| x\\|y |"


def test_render_has_every_section_failures_and_warnings() -> None:
    results = {
        "meta": {"started": "t0", "finished": "t1", "runs": 2, "quick": True, "plots": ["detection.png"]},
        "benchmarks": {
            "detection": detection_result(),
            "healing": {**healing_result(), "environment": {**ENV, "otherOperators": ["python -m vigil run -A"]}},
            "cost": {"benchmark": "cost", "error": "RuntimeError('boom')"},
        },
    }
    text = report.render(results)
    assert text.startswith("# vigil benchmarks")
    assert "2 run(s) per scenario (--quick)" in text
    assert "## 1. Detection time" in text
    assert "## 2. Healing" in text
    assert "## cost\n\nFAILED: RuntimeError('boom')" in text
    assert "- `python -m vigil run -A`" in text
    assert "![detection.png](detection.png)" in text


def gate_result() -> dict[str, Any]:
    runs: list[dict[str, Any]] = [
        {
            "wrongAnswers": {"gated": 0, "ungated": 540},
            "readyToTrafficSeconds": {"gated": 1.4, "ungated": 0.3},
            "gateAddsSeconds": 1.1,
            "goldenRequestsSeconds": 0.8,
        },
        {
            "wrongAnswers": {"gated": 0, "ungated": 560},
            "readyToTrafficSeconds": {"gated": 1.6, "ungated": 0.4},
            "gateAddsSeconds": 1.2,
            "goldenRequestsSeconds": 0.9,
        },
        {"error": "timed out"},
    ]
    return gate.summarize(runs, ENV)


def test_gate_summary_compares_wrong_answers_with_and_without_the_gate() -> None:
    summary = gate_result()["summary"]
    assert summary["wrongAnswersGated"]["max"] == 0
    assert summary["wrongAnswersUngated"]["median"] == 550
    assert summary["gateAddsSeconds"]["n"] == 2


def test_gate_section_shows_both_sides_and_the_target() -> None:
    text = report.gate_section(gate_result())
    assert "| wrong answers served in the bad-export window (median) | 0 | 550 |" in text
    assert "2 of 3 runs completed" in text
    assert "target <= 5 s" in text
