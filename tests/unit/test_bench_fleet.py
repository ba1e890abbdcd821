"""``bench fleet``'s logic without a cluster: request accounting, CPU, the fleet's shape, the report."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from bench import __main__ as bench_main
from bench import fleet, plots, report, stages, stats
from bench.operator import OperatorSettings

from vigil.dev import sandbox as sandbox_mod
from vigil.sim import client as simclient

APISERVER_METRICS = """\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests.
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="vigil.dev",resource="modeldeployments",scope="resource",subresource="",verb="GET",version="v1alpha1"} 120
apiserver_request_total{code="404",component="apiserver",dry_run="",group="vigil.dev",resource="modeldeployments",scope="resource",subresource="",verb="GET",version="v1alpha1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="vigil.dev",resource="modeldeployments",scope="resource",subresource="status",verb="APPLY",version="v1alpha1"} 40
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1"} 7
# HELP apiserver_request_duration_seconds Response latency.
# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_count{verb="GET",resource="pods"} 999
"""


def test_apiserver_requests_are_summed_by_verb_resource_and_subresource() -> None:
    counts = stats.parse_apiserver_requests(APISERVER_METRICS)
    assert counts == {
        ("GET", "modeldeployments", ""): 123.0,  # both response codes
        ("APPLY", "modeldeployments", "status"): 40.0,
        ("LIST", "pods", ""): 7.0,
    }


def test_increase_between_scrapes_and_a_restarted_api_server_is_refused() -> None:
    before = {("GET", "pods", ""): 10.0}
    after = {("GET", "pods", ""): 15.0, ("LIST", "pods", ""): 2.0}
    assert stats.increase(before, after) == {("GET", "pods", ""): 5.0, ("LIST", "pods", ""): 2.0}
    with pytest.raises(ValueError, match="restarted"):
        stats.increase(after, before)


def test_the_operators_requests_are_the_running_rate_minus_the_paused_rate() -> None:
    # 60 s running: the controllers' 120 requests plus the operator's 300; 60 s paused: 120 again.
    running = {("GET", "modeldeployments", ""): 240.0, ("PATCH", "nodes", "status"): 120.0, ("LIST", "pods", ""): 60.0}
    paused = {("PATCH", "nodes", "status"): 120.0}
    found = stats.operator_requests(running, 60.0, paused, 60.0)
    assert found.per_second == pytest.approx(5.0)
    assert list(found.by_kind) == [("GET", "modeldeployments", ""), ("LIST", "pods", "")]
    assert found.by_kind[("GET", "modeldeployments", "")] == pytest.approx(4.0)
    assert found.per_deployment_per_minute(100) == pytest.approx(3.0)
    assert found.per_deployment_per_minute(0) is None
    quieter = stats.operator_requests({}, 60.0, paused, 60.0)  # noise: never a negative rate
    assert quieter.per_second == 0.0
    with pytest.raises(ValueError, match="longer than zero"):
        stats.operator_requests(running, 0.0, paused, 60.0)


def test_cpu_ticks_of_a_process_whose_name_has_spaces_and_parentheses() -> None:
    stat = "4242 (python (vigil) run) S 1 4242 4242 0 -1 4194560 5000 0 0 0 1500 250 0 0 20 0 9 0 100 0 0"
    assert stats.proc_cpu_ticks(stat) == 1750
    assert stats.core_fraction(1750, 35.0, 100.0) == pytest.approx(0.5)
    assert stats.core_fraction(10, 0.0, 100.0) is None


def test_machine_busy_counts_everything_but_idle_and_iowait() -> None:
    before = "cpu  100 0 100 700 100 0 0 0 0 0"
    after = "cpu  200 0 200 1300 200 0 0 0 0 0"  # +200 busy, +700 idle/iowait
    assert stats.machine_busy(before, after) == pytest.approx(200 / 900)


def test_the_fleet_is_the_faulty_deployment_plus_cpu_only_members_and_a_loaded_sample() -> None:
    members = fleet.names(1000)
    assert len(members) == len(set(members)) == 1000
    assert members[0] == fleet.FAULTY
    assert fleet.names(0) == []
    assert fleet.names(1) == [fleet.FAULTY]
    loaded = fleet.sample(members)
    assert len(loaded) == 50  # 10 %, at most 50
    assert fleet.FAULTY not in loaded
    assert len(fleet.sample(fleet.names(100))) == 10
    assert fleet.sample(fleet.names(1)) == []
    body = fleet.manifest("fleet-0001")["spec"]
    assert body["replicas"] == 1
    assert body["triton"]["gpus"] == 0
    assert "tolerations" not in body["triton"]  # CPU nodes only: the GPU nodes stay free for other tests
    assert [slo["name"] for slo in body["slos"]] == ["availability"]
    assert fleet.manifest(fleet.FAULTY)["spec"]["bakeTime"] == fleet.BAKE_TIME


def _info(**size: Any) -> sandbox_mod.SandboxInfo:
    return sandbox_mod.SandboxInfo(
        name="vigil",
        state_dir=pathlib.Path("/s"),
        kubeconfig=pathlib.Path("/s/k"),
        apiserver_url="https://127.0.0.1:1",
        prometheus_url="http://127.0.0.1:9090",
        simulator_url="http://127.0.0.1:9400",
        nodes=4,
        gpus_per_node=8,
        gpu_product="x",
        ready_delay="2s",
        scrape_interval="5s",
        prometheus_port=9090,
        sim_port=9400,
        **size,
    )


def test_a_sandbox_too_small_for_the_fleet_is_refused_before_anything_is_created() -> None:
    fleet.check_capacity(_info(cpu_nodes=20, pods_per_node=110, service_cidr="10.96.0.0/12"), fleet.SIZES)
    with pytest.raises(RuntimeError, match="--cpu-nodes"):
        fleet.check_capacity(_info(), fleet.SIZES)  # an old sandbox: no CPU nodes, 253 Services


def _step(
    n: int, rss: float, cpu: float, per_min: float | None, p99: float | None, detect: float | None
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "n": n,
        "rssBytes": rss * fleet.MIB,
        "cpuCores": cpu,
        "requestsPerSecond": (per_min or 0) * n / 60,
        "requestsPerDeploymentPerMinute": per_min,
        "queriesPerCycle": 12.0,
        "meanLoopSeconds": 0.05,
        "running": {
            "usage": {
                "cores": {"operator": cpu, "prometheus": 0.2, "simulator": 0.1, "kube-apiserver": 0.3},
                "rssBytes": {"prometheus": 300 * fleet.MIB},
                "machineBusy": 0.8,
                "loadAverage1m": 6.0,
            }
        },
        "requestsByKind": {"GET/modeldeployments": 1.5},
        "prometheusHeadSeries": 1000.0 * n,
    }
    if p99 is not None:
        result["createToAvailable"] = {"median": p99 / 2}
        result["createToAvailableP99Seconds"] = p99
        result["stages"] = [
            {"stage": stage, "p50": p99 / 12, "p99": p99 / 6, "makespan": p99} for stage, _, _ in stages.STAGES
        ]
    if detect is not None:
        result.update(detectionSeconds=detect, firstActionSeconds=detect + 4)
    result["verdicts"] = fleet.verdicts(result)
    return result


def _result() -> dict[str, Any]:
    steps = [
        _step(0, 80, 0.01, None, None, None),
        _step(100, 95, 0.04, 0.5, 4.0, 9.0),
        _step(1000, 230, 0.08, 0.7, 12.0, 11.0),
        {"n": 500, "error": "TimeoutError()"},
    ]
    return fleet.summarize(steps, {"otherOperators": []}, 60.0)


def test_verdicts_compare_each_measure_with_its_target_and_leave_unmeasured_ones_open() -> None:
    result = _result()
    verdicts = result["targetVerdicts"]
    assert verdicts == {
        "rssBytes": False,  # 230 MiB > 200 MiB
        "cpuCores": True,
        "requestsPerDeploymentPerMinute": True,
        "createToAvailableP99Seconds": False,  # 12 s > 10 s
        "detectionSeconds": True,
        "firstActionSeconds": True,
    }
    assert result["steps"][0]["verdicts"]["detectionSeconds"] is None  # N = 0: nothing to detect


def test_fleet_report_has_the_cost_table_the_sandbox_table_and_the_targets() -> None:
    text = report.fleet_section(_result())
    assert "| N | RSS (MiB) |" in text
    assert "| 1000 | 230.0 | 8.0 | " in text
    assert "| 0 | 80.0 | 1.0 |" in text
    assert "Targets at N = 1000" in text
    assert "| operator RSS | 230.0 MiB | ≤ 200.0 MiB | FAIL |" in text
    assert "| create → Available p99 | 12.0 s | ≤ 10 s | FAIL |" in text
    assert "prometheus" in text
    assert "Failed steps: N = 500: TimeoutError()" in text
    assert "GET/modeldeployments 1.50/s" in text
    assert "| N | operator: create -> Deployment applied | controllers: Deployment -> pod |" in text
    assert "| 1000 | 1.0 s / 2.0 s / 12.0 s |" in text


def test_fleet_burst_only_measures_the_burst_alone() -> None:
    assert bench_main.parse_args(["fleet", "--burst-only"]).burst_only
    assert not bench_main.parse_args(["fleet"]).burst_only


def test_fleet_plot_is_written(tmp_path: pathlib.Path) -> None:
    written = plots.write({"fleet": _result()}, tmp_path)
    assert written == ["fleet.png"]
    assert (tmp_path / "fleet.png").read_bytes()[:4] == b"\x89PNG"


def test_fleet_runs_only_when_named_and_takes_its_sizes() -> None:
    args = bench_main.parse_args(["fleet", "--sizes", "0,100", "--quick"])
    assert args.benchmarks == ["fleet"]
    assert args.sizes == (0, 100)
    assert "fleet" not in bench_main.DEFAULT
    with pytest.raises(SystemExit):
        bench_main.parse_args(["fleet", "--sizes", "ten"])
    with pytest.raises(SystemExit):
        bench_main.parse_args(["fleet", "--sizes", "-1"])


def test_deployments_not_available_by_the_deadline_censor_the_burst_at_the_deadline() -> None:
    complete = fleet.burst_summary({"a": 1.0, "b": 3.0}, 2, 60.0)
    assert complete["createToAvailableCensored"] is False
    assert complete["createToAvailable"]["median"] == 2.0
    partial = fleet.burst_summary({"a": 1.0, "b": 3.0}, 4, 60.0)
    assert partial["createToAvailableCensored"] is True
    assert partial["createToAvailableP99Seconds"] == 60.0  # a lower bound, and a missed target
    assert fleet.verdicts(partial)["createToAvailableP99Seconds"] is False


def test_the_steady_state_starts_when_the_operators_cpu_is_low_or_stops_falling() -> None:
    assert not fleet.settled([])
    assert fleet.settled([0.9, 0.03])  # low
    assert not fleet.settled([0.9, 0.5])  # still working off the burst
    assert fleet.settled([0.9, 0.5, 0.45])  # a plateau: that is its steady cost
    assert not fleet.settled([0.4])


def test_the_steady_state_waits_one_status_refresh_interval_after_the_last_deployment_was_available() -> None:
    refresh = fleet.STATUS_REFRESH_SECONDS
    assert refresh == 120.0  # the operator's default, as the benchmark runs it
    assert fleet.refresh_settle(last_available=1000.0, now=1010.0) == refresh - 10.0
    assert fleet.refresh_settle(last_available=1000.0, now=1000.0 + refresh) == fleet.SETTLE_SECONDS


def test_the_steady_state_waits_until_the_burst_s_revisions_are_older_than_their_longest_window() -> None:
    # The bench's 1h availability SLO at a 20 s min window: its longest window is 3d / 720 = 6 min.
    young = fleet.young_seconds(OperatorSettings(min_window="20s"))
    assert young == 360.0
    wait = fleet.refresh_settle(last_available=1000.0, now=1010.0, young_seconds=young)
    assert wait == 360.0 + fleet.STATUS_REFRESH_SECONDS - 10.0


def test_a_pod_reaches_bound_running_and_ready_in_turn() -> None:
    pod: dict[str, Any] = {"metadata": {"name": "p"}, "spec": {}, "status": {}}
    assert stages.pod_milestones(pod) == ["pod"]
    pod["spec"]["nodeName"] = "cpu-node-0"
    assert stages.pod_milestones(pod) == ["pod", "scheduled"]
    pod["status"] = {"phase": "Running", "podIP": "10.244.0.7", "conditions": [{"type": "Ready", "status": "False"}]}
    assert stages.pod_milestones(pod) == ["pod", "scheduled", "started"]
    pod["status"]["conditions"][0]["status"] = "True"
    assert stages.pod_milestones(pod) == ["pod", "scheduled", "started", "ready"]


def test_the_burst_breakdown_gives_each_stage_its_durations_and_when_the_last_one_finished() -> None:
    started = 1000.0
    created = {"a": 1000.0, "b": 1001.0, "c": 1002.0}
    seen = {
        "a": {"deployment": 1001.0, "pod": 1001.5, "scheduled": 1001.6, "started": 1001.7, "ready": 1003.7},
        "b": {"deployment": 1011.0, "pod": 1011.2, "scheduled": 1011.3, "started": 1011.4, "ready": 1013.4},
        "c": {"deployment": 1004.0},  # its pod never came
    }
    available = {"a": 1004.7, "b": 1020.4}
    rows = {row["stage"]: row for row in stages.breakdown(created, available, seen, started)}
    assert [row for row in rows] == [stage for stage, _, _ in stages.STAGES]
    first = rows["operator: create -> Deployment applied"]
    assert (first["count"], first["p50"], first["max"], first["makespan"]) == (3, 2.0, 10.0, 11.0)
    last = rows["operator: pod Ready -> Available"]
    assert (last["count"], last["max"], last["makespan"]) == (2, 7.0, 20.4)
    assert last["p50"] == pytest.approx(4.0)
    ready = rows["kwok: running -> Ready (ready delay)"]
    assert (ready["count"], ready["p50"]) == (2, 2.0)
    assert stages.breakdown({}, {}, {}, started)[0]["p50"] is None  # N = 0: nothing to break down


def test_a_simulator_that_cannot_be_reached_to_fault_the_release_is_recorded_not_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unreachable(_ctx: object, _ns: str) -> dict[str, object]:
        raise simclient.ControlError("cannot reach the simulator at http://127.0.0.1:9600: timed out")

    monkeypatch.setattr(fleet, "_detect", unreachable)
    found = fleet.detect_or_error(None, "ns")  # type: ignore[arg-type]
    assert "could not be set" in str(found["detectionError"])


def test_the_load_of_the_rest_is_left_once_the_simulator_does_not_answer() -> None:
    asked: list[str] = []

    class Kube:
        def forget_traffic(self, _ns: str, name: str) -> bool:
            asked.append(name)
            return name != "b"

    fleet.forget_all(Kube(), "ns", ["a", "b", "c", "d"])  # type: ignore[arg-type]
    assert asked == ["a", "b"]
