"""The pure parts of the quiet and efficiency benchmarks: samples, the HPA-like policy, verdicts, report."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml
from bench import efficiency, hpa, plots, quiet, report, watch


def sample(at: float, queue: str = "Met", gpus: int = 2, overrides: tuple[str, ...] = ()) -> watch.Sample:
    return watch.Sample(
        at=at,
        slos={"queue": queue, "availability": "Met"},
        overrides=overrides,
        spec_replicas=gpus,
        ready_replicas=gpus,
        pods=gpus,
        gpus=gpus,
    )


def test_episodes_count_entries_into_a_state() -> None:
    states = ["Met", "Warning", "Warning", "Met", "Warning", "Breached", "Breached", "Met"]
    samples = [sample(i, s) for i, s in enumerate(states)]
    assert watch.episodes(samples, "queue", "Warning") == 2
    assert watch.episodes(samples, "queue", "Breached") == 1
    assert watch.episodes(samples, "availability", "Breached") == 0
    assert watch.share(samples, "queue") == pytest.approx(3 / 8)
    assert watch.share([], "queue") is None


def test_gpu_minutes_integrate_each_sample_until_the_next() -> None:
    samples = [sample(0, gpus=2), sample(60, gpus=4), sample(90, gpus=1)]
    assert watch.gpu_minutes(samples, end=150) == pytest.approx((2 * 60 + 4 * 30 + 1 * 60) / 60)
    assert watch.gpu_minutes(samples) == pytest.approx(4.0)  # the last sample counts nothing without an end
    assert watch.overrides_seen([sample(0, overrides=("scale",)), sample(1)]) == ["scale"]
    assert watch.replicas_range(samples) == (1, 4)
    assert watch.timeline(samples[:1], origin=-5.0, slos=["queue"]) == [[5.0, 2, "Met"]]


def test_hpa_scales_up_at_once_and_down_only_after_the_stabilisation_window() -> None:
    policy = hpa.Policy(minimum=2, maximum=8, target=0.6)
    assert policy.desired(2, 0.63, now=0) == 2  # within the 10 % tolerance
    assert policy.desired(2, 0.9, now=15) == 3  # ceil(2 x 0.9 / 0.6)
    assert policy.desired(3, 1.0, now=30) == 5
    assert policy.desired(5, 2.0, now=45) == 8  # clamped to the maximum
    assert policy.desired(8, 0.1, now=60) == 8  # the recommendation of t=45 (8) is in the 5 min window
    assert policy.desired(8, 0.1, now=344) == 8  # 299 s later it still is
    assert policy.desired(8, 0.1, now=346) == 2  # 301 s: every recent recommendation is the minimum
    assert policy.desired(2, None, now=400) == 2  # no metric: no change


def test_hpa_scale_up_is_limited_to_max_of_four_pods_or_double() -> None:
    policy = hpa.Policy(minimum=1, maximum=100, target=0.5)
    assert policy.desired(1, 10.0, now=0) == 5  # +4 pods
    assert policy.desired(10, 10.0, now=15) == 20  # +100 %
    with pytest.raises(ValueError, match="minimum"):
        hpa.Policy(minimum=0, maximum=1)


def test_hpa_reads_the_deployments_mean_gpu_utilisation_over_a_minute() -> None:
    query = hpa.utilisation_query("ns", "md")
    assert query == 'avg(avg_over_time(nv_gpu_utilization{namespace="ns", modeldeployment="md"}[1m]))'


def incident(name: str, created: str, *states: tuple[str, str | None]) -> dict[str, Any]:
    return {
        "name": name,
        "created": created,
        "steps": [
            {"name": f"s{i}", "action": "scaleOut", "state": s, "startedAt": at} for i, (s, at) in enumerate(states)
        ],
    }


def test_quiet_counts_the_steps_that_ran_and_those_from_the_outage_on() -> None:
    incidents = [
        incident("a", "2026-01-01T00:00:00Z", ("Succeeded", "2026-01-01T00:00:05Z"), ("DryRun", None)),
        incident("b", "2026-01-01T00:10:00Z", ("Intended", None), ("Pending", None)),
    ]
    acted = quiet.acted_steps(incidents)
    assert [(s["incident"], s["state"]) for s in acted] == [("a", "Succeeded"), ("b", "Intended")]
    outage = 1767225600.0 + 300  # 2026-01-01T00:05:00Z
    assert [s["incident"] for s in quiet.started_after(acted, outage)] == ["b"]


def quiet_run(actions: int = 0, from_outage: int = 0) -> dict[str, Any]:
    phase = {
        "samples": 10,
        "warnings": {"availability": 0, "queue": 1},
        "breaches": {"availability": 0, "queue": 0},
        "metShare": {},
        "overrides": [],
    }
    deployment = {
        "trace": "azure-llm-conv-2023.csv: 19366 requests",
        "meanRate": 22.1,
        "peak10sRate": 36.8,
        "capacityPerReplica": 36.8,
        "perfectServerMaxQueueMs": 12.5,
        "quiet": phase,
        "outage": phase,
        "incidentCount": 1 if actions else 0,
        "actions": actions,
        "actionsFromOutage": from_outage,
        "timeline": [[0.0, 2, "Met", "Met"], [5.0, 2, "Met", "Warning"]],
    }
    run = {
        "quietSeconds": 900.0,
        "outageSeconds": 600.0,
        "outageStartsAt": 900.0,
        "deployments": {"replay": deployment},
    }
    return quiet.summarize(run, quiet.Plan(4.0, 600.0, 120.0), {"otherOperators": []})


def test_quiet_passes_only_without_incidents_and_actions() -> None:
    assert quiet_run()["pass"]
    assert quiet_run()["outagePass"]
    noisy = quiet_run(actions=2, from_outage=1)
    assert not noisy["pass"]
    assert not noisy["outagePass"]
    text = report.quiet_section(noisy)
    assert "**FAIL** (1 incident(s), 2 action(s))" in text
    assert "| replay | azure-llm-conv-2023.csv: 19366 requests | 22.1 / 36.8 |" in text
    assert "availability 0, queue 1" in text
    failed = quiet.summarize({"error": "Timeout"}, quiet.Plan(4.0, 600.0, 120.0), {})
    assert not failed["pass"]
    assert "FAILED: Timeout" in report.quiet_section(failed)


def policies(vigil_gpu: float, vigil_attainment: float, vigil_violating: int) -> dict[str, Any]:
    def numbers(gpu: float, attainment: float, violating: int) -> dict[str, Any]:
        return {
            "attainment": attainment,
            "gpuMinutes": gpu,
            "violatingMinutes": violating,
            "measuredMinutes": 9,
            "replicas": (1, 6),
            "incidents": 0,
            "timeline": [[0.0, 1, "Met"]],
        }

    return {
        "vigil": numbers(vigil_gpu, vigil_attainment, vigil_violating),
        "static": numbers(60.0, 1.0, 0),
        "hpa": numbers(35.0, 0.9, 3),
    }


def test_efficiency_verdict_against_static_and_the_hpa() -> None:
    good = efficiency.verdict(policies(40.0, 0.97, 1))
    assert good == {
        "gpuRatioToStatic": 0.667,
        "attainmentMet": True,
        "gpuMet": True,
        "fewerViolatingMinutesThanHpa": True,
    }
    bad = efficiency.verdict(policies(50.0, 0.9, 3))
    assert not bad["gpuMet"]
    assert not bad["attainmentMet"]
    assert not bad["fewerViolatingMinutesThanHpa"]


def test_efficiency_measures_judged_intervals_gpu_minutes_and_violating_minutes() -> None:
    samples = [sample(0, "NoData"), sample(10, "Met"), sample(20, "Breached"), sample(30, "Met", gpus=4)]
    measured = efficiency.measure(samples, [(60.0, 50.0), (120.0, 150.0), (180.0, 101.0)], 0.0, 40.0)
    assert measured["attainment"] == pytest.approx(2 / 3, abs=1e-3)
    assert measured["judgedIntervals"] == 3
    assert measured["breachedIntervals"] == 1
    assert measured["gpuMinutes"] == pytest.approx((2 * 30 + 4 * 10) / 60, abs=0.01)
    assert measured["violatingMinutes"] == 2


def test_efficiency_manifests_differ_only_in_who_sets_the_replicas() -> None:
    ramp = next(s for s in efficiency.scenarios(quick=False) if s.name == "ramp")
    start, peak = ramp.replicas()
    assert (start, peak) == (1, 6)
    vigil, static, autoscaled = (efficiency.manifest(ramp, p)["spec"] for p in efficiency.POLICIES)
    assert (vigil["replicas"], vigil["maxReplicas"], vigil["runbookRef"]) == (1, 6, {"name": "load-surge-scale-out"})
    assert "paused" not in vigil
    assert (static["replicas"], static["paused"]) == (6, True)
    assert (autoscaled["replicas"], autoscaled["maxReplicas"], autoscaled["paused"]) == (1, 6, True)


def test_efficiency_scales_both_scale_down_stabilisations_with_the_speed_up() -> None:
    # Five minutes of the trace for both: the HPA's 300 s and vigil's give-back 5m, over x3 and x6.
    ramp, trace = efficiency.scenarios(quick=False)
    assert (ramp.speedup, ramp.stabilisation_seconds) == (3.0, 100)
    assert (trace.speedup, trace.stabilisation_seconds) == (6.0, 50)
    assert efficiency.manifest(trace, "vigil")["spec"]["giveBack"] == {"stabilizationWindow": "50s"}
    assert "giveBack" not in efficiency.manifest(trace, "hpa")["spec"]
    assert efficiency.STABILISATION_TRACE_SECONDS == hpa.STABILISATION_SECONDS


def test_efficiency_measures_vigil_with_the_ready_made_runbook_as_shipped() -> None:
    body = efficiency._runbook("bench-efficiency-x")
    shipped = yaml.safe_load(
        (pathlib.Path(__file__).resolve().parents[2] / "runbooks" / "load-surge-scale-out.yaml").read_text()
    )
    assert body["spec"] == shipped["spec"]
    assert body["metadata"] == {"name": "load-surge-scale-out", "namespace": "bench-efficiency-x"}


def efficiency_result(*scenario_runs: dict[str, Any]) -> dict[str, Any]:
    return {
        "slo": efficiency.QUEUE,
        "capacityPerReplica": 30.0,
        "baseLatencyMs": 200.0,
        "sizingUtilisation": 0.6,
        "hpaTarget": 0.6,
        "targets": {"attainment": 0.95, "gpuRatioToStatic": 0.75},
        "runs": [{"scenarios": {"ramp": ramp}} for ramp in scenario_runs],
    }


def ramp_run(vigil_gpu: float, vigil_attainment: float, vigil_violating: int) -> dict[str, Any]:
    numbers = policies(vigil_gpu, vigil_attainment, vigil_violating)
    return {
        "traffic": "Poisson ramp",
        "speedup": 3.0,
        "wallMinutes": 10.0,
        "offeredPerMinute": [18.0, 20.0],
        "policies": numbers,
        "verdict": efficiency.verdict(numbers),
    }


def test_efficiency_section_reports_each_policy_and_the_targets() -> None:
    text = report.efficiency_section(efficiency_result(ramp_run(40.0, 0.97, 1)))
    assert "| ramp | vigil | 97.0% | 40.0 | 1 of 9 | 1-6 | 0 |" in text
    assert "| ramp | hpa | 90.0% | 35.0 | 3 of 9 | 1-6 | 0 |" in text
    assert "GPU-minutes 0.667 x static (target <= 0.75): **yes**" in text
    assert "violating minutes 1 vs the HPA-like baseline's 3, fewer: **yes**" in text
    assert "One run." in text


def test_efficiency_section_lists_every_run_and_counts_the_runs_that_met_each_target() -> None:
    text = report.efficiency_section(efficiency_result(ramp_run(40.0, 0.97, 1), ramp_run(50.0, 0.93, 3)))
    assert "| ramp | vigil | 97.0% / 93.0% | 40.0 / 50.0 | 1 / 3 of 9 | 1-6 | 0 / 0 |" in text
    assert "attainment 97.0% / 93.0% >= 95%: **1 of 2**" in text
    assert "GPU-minutes 0.667 / 0.833 x static (target <= 0.75): **1 of 2**" in text
    assert "violating minutes 1 / 3 vs the HPA-like baseline's 3 / 3, fewer: **1 of 2**" in text
    assert "2 runs one after the other" in text


def test_efficiency_section_says_where_vigils_violating_minutes_were() -> None:
    ramp = ramp_run(40.0, 0.97, 1)
    ramp["policies"]["vigil"]["queueMsPerMinute"] = [5.0, 9.0, 104.0, 7.0]
    ramp["policies"]["hpa"]["queueMsPerMinute"] = [8.0, 12.0, 26.0, 10.0]
    ramp["policies"]["vigil"]["decisions"] = [
        {"t": 141.0, "type": "Detected"},
        {"t": 141.5, "type": "Intent"},
        {"t": 300.0, "type": "Intent"},
    ]
    ramp["policies"]["vigil"]["servingPods"] = [[0.0, 2.0], [146.0, 3.0], [250.0, 2.0]]
    text = report.efficiency_section(efficiency_result(ramp))
    assert (
        "ramp, run 1: vigil's violating minute 120-180 s averaged 104 ms (HPA-like: 26 ms); "
        "scale-out intent at 141.5 s; pods serving 2 -> 3 at 146 s"
    ) in text
    assert text.count("violating minute ") == 1


def test_efficiency_section_reads_results_written_before_runs_and_failed_runs() -> None:
    old = efficiency_result(ramp_run(40.0, 0.97, 1))
    old["run"] = old.pop("runs")[0]
    assert "| ramp | vigil | 97.0% | 40.0 | 1 of 9 | 1-6 | 0 |" in report.efficiency_section(old)
    failed = efficiency_result(ramp_run(40.0, 0.97, 1))
    failed["runs"].append({"error": "Timeout"})
    text = report.efficiency_section(failed)
    assert "Failed runs: run 2: Timeout." in text
    assert "| ramp | vigil | 97.0% | 40.0 |" in text
    assert report.efficiency_section({**failed, "runs": [{"error": "Timeout"}]}).endswith("FAILED: run 1: Timeout\n")


def test_efficiency_serving_pods_keep_only_changes() -> None:
    points = [(100.0, 2.0), (105.0, 2.0), (110.0, 3.0), (115.0, 3.0), (120.0, 2.0)]
    assert efficiency.changes(points, 100.0) == [[0.0, 2.0], [10.0, 3.0], [20.0, 2.0]]
    assert efficiency.changes([], 0.0) == []


def test_both_plots_render(tmp_path: pathlib.Path) -> None:
    quiet_result = quiet_run(actions=1)
    quiet_result["run"]["deployments"]["replay"]["timeline"] = [[0.0, 2, "Met", "Met"], [600.0, 4, "Met", "Breached"]]
    efficiency_result = {
        "runs": [
            {
                "scenarios": {
                    "ramp": {"speedup": 3.0, "offeredPerMinute": [18.0, 90.0, 9.0], "policies": policies(40.0, 0.97, 1)}
                }
            },
            {"error": "Timeout"},
        ]
    }
    written = plots.write({"quiet": quiet_result, "efficiency": efficiency_result}, tmp_path)
    assert written == ["quiet.png", "efficiency.png"]
    assert all((tmp_path / name).stat().st_size > 10_000 for name in written)
