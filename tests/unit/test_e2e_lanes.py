"""The e2e lane scheduler (tests/e2e/lanes.py), driven as xdist's controller drives it, on simulated workers.

A simulated worker behaves as xdist's: it starts a test only once it holds the next one or has been
told to shut down, and reports each test complete when its (given) duration has passed.
"""

from __future__ import annotations

import heapq
import types
from collections.abc import Mapping
from typing import Any

import pytest

from tests.e2e import lanes

SERIAL_TESTS = [f"tests/e2e/test_serial_{i}.py::test_{j}" for i in range(3) for j in range(4)]


class Worker:
    def __init__(self, name: str) -> None:
        self.gateway = types.SimpleNamespace(id=name)
        self.shutting_down = False
        self.held: list[int] = []
        self.ran: list[int] = []
        self.running: int | None = None
        self.most_held_units = 0

    def send_runtest_some(self, indices: list[int]) -> None:
        self.held.extend(indices)

    def shutdown(self) -> None:
        self.shutting_down = True

    def can_start(self) -> bool:
        return self.running is None and (len(self.held) >= 2 or (self.shutting_down and len(self.held) == 1))


def simulate(
    collection: list[str], seconds: Mapping[str, float], workers: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[Worker], float]:
    """Run ``collection`` (sorted as the e2e conftest sorts it) on ``workers`` simulated workers; the makespan."""
    collection = sorted(collection, key=lanes.order)
    config: Any = types.SimpleNamespace(
        getvalue=lambda name: [f"{workers}*popen"] if name == "tx" else None,
        option=types.SimpleNamespace(loadscopereorder=True),
    )
    scheduler = lanes.LaneScheduling(config)
    clock = [0.0]
    scheduler._clock = lambda: clock[0]
    nodes = [Worker(f"gw{i}") for i in range(workers)]
    for node in nodes:
        scheduler.add_node(node)
        scheduler.add_node_collection(node, collection)
    scheduler.schedule()
    ends = list[tuple[float, int]]()
    while True:
        for i, node in enumerate(nodes):
            if node.can_start():
                node.running = node.held.pop(0)
                heapq.heappush(ends, (clock[0] + seconds[collection[node.running]], i))
                others = {lanes.unit(collection[j]) for j in node.held} - {lanes.unit(collection[node.running])}
                node.most_held_units = max(node.most_held_units, len(others))
        if not ends:
            break
        clock[0], i = heapq.heappop(ends)
        node = nodes[i]
        assert node.running is not None
        node.ran.append(node.running)
        done, node.running = node.running, None
        scheduler.mark_test_complete(node, done)
    assert sorted(j for node in nodes for j in node.ran) == list(range(len(collection))), "every test ran once"
    return nodes, clock[0]


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    modules = {f"tests/e2e/test_iso_{name}.py": seconds for name, seconds in [("a", 100), ("b", 750), ("c", 300)]}
    modules.update({f"tests/e2e/test_iso_short{i}.py": 45 for i in range(6)})
    monkeypatch.setattr(lanes, "ISOLATED_MODULES", frozenset(modules))
    monkeypatch.setattr(lanes, "SECONDS", {**modules, **{lanes.module(t): 80 for t in SERIAL_TESTS}})
    return modules


def test_the_serial_lane_runs_in_one_worker_in_collection_order(
    isolated: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    collection = [f"{m}::test_x" for m in isolated] + SERIAL_TESTS
    seconds = {nodeid: 30.0 for nodeid in collection}
    nodes, _ = simulate(collection, seconds, 3, monkeypatch)
    ordered = sorted(collection, key=lanes.order)
    serial_runs = [[ordered[j] for j in node.ran if lanes.lane(ordered[j]) == lanes.SERIAL] for node in nodes]
    assert sorted(serial_runs, key=len) == [[], [], SERIAL_TESTS]


def test_isolated_modules_go_out_longest_first_and_the_serial_worker_takes_some_once_its_lane_ends(
    isolated: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    collection = [f"{m}::test_{j}" for m in isolated for j in range(2)] + SERIAL_TESTS
    seconds = {nodeid: isolated.get(lanes.module(nodeid), 20) / 2 for nodeid in collection}
    nodes, makespan = simulate(collection, seconds, 3, monkeypatch)
    ordered = sorted(collection, key=lanes.order)
    first_isolated = [
        lanes.module(ordered[node.ran[0]]) for node in nodes if lanes.lane(ordered[node.ran[0]]) != "serial"
    ]
    assert first_isolated == ["tests/e2e/test_iso_b.py", "tests/e2e/test_iso_c.py"]
    serial_worker = next(node for node in nodes if lanes.lane(ordered[node.ran[0]]) == lanes.SERIAL)
    assert any(lanes.lane(ordered[j]) == lanes.ISOLATED for j in serial_worker.ran)
    # 1660 s of work on three workers, the longest module 750 s: no worker idles long.
    assert makespan <= 750 + 60
    assert all(node.most_held_units <= 1 for node in nodes), "a busy worker never holds a second unit in reserve"


def test_two_workers_keep_the_serial_lane_and_one_isolated_lane(
    isolated: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    collection = [f"{m}::test_x" for m in isolated] + SERIAL_TESTS
    seconds = {nodeid: float(isolated.get(lanes.module(nodeid), 20)) for nodeid in collection}
    nodes, makespan = simulate(collection, seconds, 2, monkeypatch)
    assert makespan == pytest.approx((sum(isolated.values()) + 20 * len(SERIAL_TESTS)) / 2, abs=100)
    assert all(node.ran for node in nodes)


def test_when_the_measured_seconds_are_wrong_every_test_still_runs_exactly_once(
    isolated: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    collection = [f"{m}::test_{j}" for m in isolated for j in range(3)] + SERIAL_TESTS
    # Actual durations unrelated to the table: the plan is wrong, never the outcome.
    actual = {nodeid: float(7 + (i * 37) % 300) for i, nodeid in enumerate(collection)}
    for workers in (1, 2, 3, 4):
        nodes, makespan = simulate(collection, actual, workers, monkeypatch)
        assert makespan <= sum(actual.values())
        assert all(node.most_held_units <= 1 for node in nodes)


def test_a_module_missing_from_the_table_counts_the_default_and_goes_after_longer_ones(
    isolated: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lanes, "ISOLATED_MODULES", lanes.ISOLATED_MODULES | {"tests/e2e/test_iso_new.py"})
    collection = [f"{m}::test_x" for m in lanes.ISOLATED_MODULES] + SERIAL_TESTS
    ordered = [lanes.unit(nodeid) for nodeid in sorted(collection, key=lanes.order)]
    assert ordered.index("tests/e2e/test_iso_a.py") < ordered.index("tests/e2e/test_iso_new.py")
    assert ordered.index("tests/e2e/test_iso_new.py") < ordered.index("tests/e2e/test_iso_short0.py")
    assert ordered[0] == lanes.SERIAL


def test_the_summary_gives_the_wall_time_each_workers_span_and_units_and_each_modules_seconds() -> None:
    serial, isolated = "tests/e2e/test_serial_0.py", "tests/e2e/test_chaos.py"
    phases = [
        lanes.Phase("gw0", f"{serial}::test_0", 100.0, 130.0),
        lanes.Phase("gw0", f"{serial}::test_1", 130.0, 150.0),
        lanes.Phase("gw1", f"{isolated}::test_a", 101.0, 161.0),
        lanes.Phase("gw1", f"{isolated}::test_a", 161.0, 163.0),  # its teardown
        lanes.Phase("gw0", "tests/e2e/test_golden.py::test_b", 150.0, 160.0),
    ]
    assert lanes.summary(phases) == [
        "wall 63 s (1.1 min) from the first test's setup to the last teardown",
        "gw0: 60 s of tests, +0 s to +60 s: serial, tests/e2e/test_golden.py",
        f"gw1: 62 s of tests, +1 s to +63 s: {isolated}",
        f'"{isolated}": 62,  # isolated, gw1',
        f'"{serial}": 50,  # serial, gw0',
        '"tests/e2e/test_golden.py": 10,  # isolated, gw0',
    ]
    assert lanes.summary([]) == []
