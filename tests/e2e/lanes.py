"""The e2e lanes for pytest-xdist: the serial lane in one worker, the isolated modules on the others.

pytest 9 builds a node id from a structured id, so xdist's ``--dist loadgroup`` can no longer add
the group to it and ``xdist_group`` markers are silently ignored (every test becomes its own unit,
and disruptive tests would run side by side). The lanes are therefore decided by the scheduler
itself, in the xdist controller, which sees node ids only: by module. A module listed here must
mark its tests ``isolated`` and an ``isolated`` test must live in a listed module (checked at
collection by ``tests/e2e/conftest.py``), so the declaration stays visible in the test file.

Work units: the whole serial lane is one (its tests stop the shared Prometheus and count free GPUs,
so they never run beside each other), and every isolated module is one. The serial lane goes to
the first worker; the isolated modules go out to whichever worker runs out of work, the serial
lane's worker too once its lane is done, as longest-processing-time-first list scheduling would
hand them out given how long each module took (:data:`SECONDS`). A worker must be given its next
unit while it still runs its last test (xdist starts a test only once the worker holds the next
one), so the scheduler plans with the expected free time of every worker rather than handing the
longest unit to whoever asks first: a long module neither waits behind another on a busy worker
nor starts last and becomes the tail.
"""

from __future__ import annotations

import dataclasses
import heapq
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from xdist.scheduler import LoadScopeScheduling

ISOLATED = "isolated"
SERIAL = "serial"
ISOLATED_MODULES = frozenset(
    {
        "tests/e2e/test_chaos.py",
        "tests/e2e/test_gate.py",
        "tests/e2e/test_shards.py",
        "tests/e2e/test_golden.py",
        "tests/e2e/test_fresh_verification.py",
        "tests/e2e/test_prometheus_outage.py",
        "tests/e2e/test_giveback.py",
        "tests/e2e/test_giveback_ratio.py",
        "tests/e2e/test_giveback_retry.py",
        "tests/e2e/test_sim_queue.py",
        "tests/e2e/test_control_plane_restarts.py",
        "tests/e2e/test_scale_mid_plan.py",
        "tests/e2e/test_leader.py",
        "tests/e2e/test_gitops.py",
        "tests/e2e/test_failsafe.py",
        "tests/e2e/test_priority.py",
        "tests/e2e/test_validation.py",
        "tests/e2e/test_heal.py",
    }
)
# Seconds each e2e module took (setup to teardown, all its tests) in a full `make test` on the
# 2-core machine (fresh clone of main a851876, 05:29-05:53 UTC 2026-12-03, 3 workers, 183 passed, the
# demo's operator beside it, machine otherwise idle), as the "e2e lanes" terminal section prints them.
# Only the order of the units depends on them; a module not listed counts DEFAULT_SECONDS.
SECONDS: dict[str, float] = {
    "tests/e2e/test_prometheus_outage.py": 745,
    # Since its headroom test is its own (alone on a helper slot, 14:07-14:17: tests 255 + 127 + 181 s).
    "tests/e2e/test_demand_scale.py": 586,
    "tests/e2e/test_heal.py": 352,
    "tests/e2e/test_giveback.py": 273,
    "tests/e2e/test_gate.py": 247,
    "tests/e2e/test_chaos.py": 239,
    "tests/e2e/test_giveback_retry.py": 205,
    "tests/e2e/test_heal_shared_sandbox.py": 204,
    "tests/e2e/test_control_plane_restarts.py": 199,
    "tests/e2e/test_giveback_ratio.py": 147,
    "tests/e2e/test_sim_queue.py": 143,
    "tests/e2e/test_observe.py": 142,
    "tests/e2e/test_fresh_verification.py": 139,
    "tests/e2e/test_scale_mid_plan.py": 139,
    "tests/e2e/test_leader.py": 130,
    "tests/e2e/test_install.py": 124,
    "tests/e2e/test_failsafe.py": 122,
    "tests/e2e/test_gitops.py": 115,
    "tests/e2e/test_priority.py": 50,
    "tests/e2e/test_modeldeployment.py": 43,
    "tests/e2e/test_validation.py": 36,
    "tests/e2e/test_shards.py": 34,
    "tests/e2e/test_traffic.py": 26,
    "tests/e2e/test_runtime_image.py": 21,
    "tests/e2e/test_sandbox.py": 16,
    "tests/e2e/test_golden.py": 10,
    "tests/e2e/test_sim.py": 10,
    "tests/e2e/test_scope.py": 9,
}
DEFAULT_SECONDS = 60.0


def module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def lane(nodeid: str) -> str:
    return ISOLATED if module(nodeid) in ISOLATED_MODULES else SERIAL


def unit(nodeid: str) -> str:
    """The scheduler's work unit of a test: the serial lane, or its isolated module."""
    return SERIAL if lane(nodeid) == SERIAL else module(nodeid)


def seconds(nodeid_or_module: str) -> float:
    return SECONDS.get(module(nodeid_or_module), DEFAULT_SECONDS)


def order(nodeid: str) -> tuple[int, float]:
    """Sort key for the collection (a stable sort): the serial lane first, then the isolated modules longest first."""
    return (0, 0.0) if lane(nodeid) == SERIAL else (1, -seconds(nodeid))


@dataclasses.dataclass(frozen=True)
class Phase:
    """One phase (setup, call or teardown) of a test as a worker reported it."""

    worker: str
    nodeid: str
    start: float
    stop: float


def summary(phases: Iterable[Phase]) -> list[str]:
    """What the lanes took: the run's wall time, each worker's span and its units in order, and the
    seconds of every module (setup to teardown of all its tests), longest first, for :data:`SECONDS`."""
    phases = sorted(phases, key=lambda phase: phase.start)
    if not phases:
        return []
    began = phases[0].start
    spans: dict[str, list[float]] = {}
    units: dict[str, list[str]] = {}
    per_module: Counter[str] = Counter()
    worker_of: dict[str, str] = {}
    for phase in phases:
        span = spans.setdefault(phase.worker, [phase.start, phase.stop])
        span[0], span[1] = min(span[0], phase.start), max(span[1], phase.stop)
        done = units.setdefault(phase.worker, [])
        if not done or done[-1] != unit(phase.nodeid):
            done.append(unit(phase.nodeid))
        per_module[module(phase.nodeid)] += phase.stop - phase.start
        worker_of[module(phase.nodeid)] = phase.worker
    wall = max(stop for _, stop in spans.values()) - began
    lines = [f"wall {wall:.0f} s ({wall / 60:.1f} min) from the first test's setup to the last teardown"]
    for worker in sorted(spans):
        start, stop = spans[worker]
        busy = sum(phase.stop - phase.start for phase in phases if phase.worker == worker)
        lines.append(
            f"{worker}: {busy:.0f} s of tests, +{start - began:.0f} s to +{stop - began:.0f} s: {', '.join(units[worker])}"
        )
    lines += [
        f'"{name}": {seconds:.0f},  # {lane(name)}, {worker_of[name]}'
        for name, seconds in sorted(per_module.items(), key=lambda item: -item[1])
    ]
    return lines


class LaneScheduling(LoadScopeScheduling):
    """xdist's scope scheduling with the lanes' units, each handed out when a worker needs work."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        # Units in collection order (see order()), not re-sorted by their number of tests.
        config.option.loadscopereorder = False
        self._clock: Callable[[], float] = time.monotonic
        self._started: dict[Any, float] = {}  # node -> when its current test began (its previous one ended)
        self._per_test: dict[str, float] = {}

    def _split_scope(self, nodeid: str) -> str:
        return unit(nodeid)

    def schedule(self) -> None:
        if self.collection is None and self.collection_is_completed:
            now = self._clock()
            self._started = {node: now for node in self.nodes}
            collected: list[str] = next(iter(self.registered_collections.values()), [])
            counts = Counter(module(nodeid) for nodeid in collected)
            self._per_test = {name: seconds(name) / count for name, count in counts.items()}
        super().schedule()

    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        self._started[node] = self._clock()
        super().mark_test_complete(node, item_index, duration)

    def _expected_free(self, node: Any, now: float) -> float:
        pending = [nodeid for work in self.assigned_work[node].values() for nodeid, done in work.items() if not done]
        left = self._unit_seconds(pending)
        if pending:  # the first pending test is running (or about to): part of it is done
            running = self._per_test.get(module(pending[0]), DEFAULT_SECONDS)
            left -= min(running, now - self._started.get(node, now))
        return now + max(left, 0.0)

    def _unit_seconds(self, nodeids: Iterable[str]) -> float:
        return sum(self._per_test.get(module(nodeid), DEFAULT_SECONDS) for nodeid in nodeids)

    def _planned_unit(self, node: Any) -> str | None:
        """The unit list scheduling gives ``node``: the queue in order, each unit to the worker expected free first."""
        now = self._clock()
        free = [
            (self._expected_free(other, now), i, other)
            for i, other in enumerate(self.nodes)
            if other is node or not other.shutting_down
        ]
        heapq.heapify(free)
        for scope, work in self.workqueue.items():
            at, i, other = heapq.heappop(free)
            if other is node:
                return str(scope)
            heapq.heappush(free, (at + self._unit_seconds(work), i, other))
        return None

    def _reschedule(self, node: Any) -> None:
        # A worker starts a test only once it holds the next one (or is told to shut down), so one
        # pending test means it waits for work: only then does it get a unit, the one list scheduling
        # plans for it. If the others are expected to finish the queue first, it runs its last test and ends.
        if node.shutting_down:
            return
        if not self.workqueue:
            node.shutdown()
            return
        if self._pending_of(self.assigned_work[node]) > 1:
            return
        scope = self._planned_unit(node)
        if scope is None:
            node.shutdown()
            return
        self.workqueue.move_to_end(scope, last=False)
        self._assign_work_unit(node)
