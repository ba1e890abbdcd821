"""``bench plane``'s numbers without a cluster: metric deltas per component, stages, the report and plot."""

from __future__ import annotations

import pathlib
from typing import Any

from bench import __main__ as bench_main
from bench import plane, plots, report


def _histogram(name: str, labels: str, count: float, total: float) -> str:
    return f"{name}_count{{{labels}}} {count}\n{name}_sum{{{labels}}} {total}\n"


def _apiserver(services: float, service_seconds: float, allocations: float, allocating: float) -> str:
    duration = "apiserver_request_duration_seconds"
    text = f"# TYPE {duration} histogram\n"
    text += _histogram(duration, 'resource="services",subresource="",verb="POST"', services, service_seconds)
    text += _histogram(duration, 'resource="pods",subresource="status",verb="PATCH"', 2 * services, services)
    text += _histogram(duration, 'resource="pods",subresource="",verb="LIST"', 1000, 100)
    allocation = "kube_apiserver_clusterip_allocator_allocation_duration_seconds"
    text += f"# TYPE {allocation} histogram\n"
    text += _histogram(allocation, 'cidr="10.96.0.0/12"', allocations, allocating)
    return text


def test_apiserver_writes_are_counted_per_resource_with_their_mean_latency_and_reads_are_left_out() -> None:
    before = plane.parse_samples(_apiserver(10, 1.0, 11, 0.1))
    after = plane.parse_samples(_apiserver(110, 21.0, 111, 10.1))
    numbers = plane.apiserver_numbers(before, after)
    assert numbers["writes"] == [
        {"resource": "pods/status", "verb": "PATCH", "count": 200, "meanMs": 500.0},
        {"resource": "services", "verb": "POST", "count": 100, "meanMs": 200.0},
    ]
    assert numbers["writeCount"] == 300
    # 100 allocations in 10 s: 100 ms each, one at a time.
    assert numbers["clusterIPAllocations"] == 100
    assert numbers["clusterIPAllocationMeanMs"] == 100.0


def test_a_resource_first_seen_after_the_burst_started_counts_from_zero() -> None:
    before = plane.parse_samples("")
    after = plane.parse_samples(_apiserver(5, 0.5, 0, 0))
    numbers = plane.apiserver_numbers(before, after)
    assert {row["resource"]: row["count"] for row in numbers["writes"]} == {"services": 5, "pods/status": 10}
    assert numbers["clusterIPAllocationMeanMs"] is None  # no allocation: no mean


def _queues(deployment: tuple[float, float, float, float]) -> str:
    waits, waited, syncs, worked = deployment
    text = "# TYPE workqueue_queue_duration_seconds histogram\n"
    text += _histogram("workqueue_queue_duration_seconds", 'name="deployment"', waits, waited)
    text += "# TYPE workqueue_work_duration_seconds histogram\n"
    text += _histogram("workqueue_work_duration_seconds", 'name="deployment"', syncs, worked)
    text += _histogram("workqueue_work_duration_seconds", 'name="namespace"', 0, 0)
    return text


def test_controller_queues_report_the_mean_wait_and_sync_of_the_controllers_on_a_bursts_path() -> None:
    before = plane.parse_samples(_queues((100, 10.0, 100, 5.0)))
    after = plane.parse_samples(_queues((3100, 43_510.0, 3100, 625.0)))
    queues = plane.controller_queues(before, after)
    # 3,000 syncs of 200 ms each by 5 workers: the queue waited 14.5 s on average.
    assert queues == {"deployment": {"syncs": 3000, "meanQueueWaitSeconds": 14.5, "meanSyncMs": 206.7}}


def test_etcd_reports_the_mean_wal_fsync_and_backend_commit() -> None:
    text = "# TYPE etcd_disk_wal_fsync_duration_seconds histogram\n"
    before = plane.parse_samples(text + _histogram("etcd_disk_wal_fsync_duration_seconds", "", 10, 0.01))
    after = plane.parse_samples(text + _histogram("etcd_disk_wal_fsync_duration_seconds", "", 1010, 1.01))
    numbers = plane.etcd_numbers(before, after)
    assert numbers["walFsyncs"] == 1000
    assert numbers["walFsyncMeanMs"] == 1.0
    assert numbers["backendCommits"] == 0
    assert numbers["backendCommitMeanMs"] is None


def test_a_stage_gives_each_objects_own_time_and_when_the_last_one_arrived() -> None:
    created = {"a": 10.0, "b": 11.0, "c": 12.0}
    ready = {"a": 12.0, "b": 14.0, "c": 16.0}
    found = plane.stage(created, ready, origin=10.0)
    assert found == {"n": 3, "p50": 3.0, "p99": 3.98, "last": 6.0}
    assert plane.stage(created, {}, origin=10.0) is None


def test_ready_and_service_is_the_later_of_the_two_for_objects_that_have_both() -> None:
    ready = {"a": 5.0, "b": 9.0, "c": 1.0}
    services = {"a": 7.0, "b": 3.0}
    assert plane.both(ready, services) == {"a": 7.0, "b": 9.0}


def test_cpu_seconds_are_per_process_and_unknown_for_one_that_started_meanwhile() -> None:
    assert plane.cpu_seconds({"etcd": 1.0}, {"etcd": 3.5, "kube-apiserver": 9.0}) == {
        "etcd": 2.5,
        "kube-apiserver": None,
    }


def _result() -> dict[str, Any]:
    stage = {"n": 1000, "p50": 1.0, "p99": 2.0, "last": 3.0}
    burst: dict[str, Any] = {
        "scenario": "operator-shaped",
        "n": 1000,
        "wallSeconds": 76.6,
        "loadBefore": [2.55, 4.7, 7.5],
        "cpuSeconds": {name: 1.0 for name in report.PLANE_CPU},
        "apiserver": {"writeCount": 16020, "clusterIPAllocationMeanMs": 74.5},
        "controllerQueues": {"deployment": {"syncs": 3420, "meanQueueWaitSeconds": 14.3, "meanSyncMs": 349.0}},
        "etcd": {"walFsyncMeanMs": 0.8},
        "stages": {"Service created": stage, "pod Ready and Service": stage},
        "servicesPerSecond": 13.1,
    }
    return {"benchmark": "plane", "n": 1000, "clients": 16, "serviceLanes": 4, "bursts": [burst]}


def test_the_report_shows_each_burst_its_stages_and_the_components_numbers() -> None:
    text = report.plane_section(_result())
    assert "N = 1000" in text
    row = next(line for line in text.splitlines() if line.startswith("| operator-shaped | 2.5"))
    assert "1.0 / 2.0 / 3.0" in row
    numbers = next(line for line in text.splitlines() if "16020" in line)
    assert "13.1" in numbers
    assert "74.5" in numbers
    assert "14.30 s / 349 ms" in numbers


def test_the_plot_is_written(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "plane.png"
    plots.plane(_result(), path)
    assert path.stat().st_size > 1000


def test_plane_is_a_separate_benchmark_named_on_the_command_line() -> None:
    assert bench_main.BENCHMARKS["plane"] is plane.run
    assert "plane" in bench_main.SEPARATE
    assert "plane" not in bench_main.DEFAULT
    assert bench_main.parse_args(["plane", "--sizes", "300"]).sizes == (300,)
