"""The e2e lanes for pytest-xdist: the isolated tests in one worker, everything else serial in another.

pytest 9 builds a node id from a structured id, so xdist's ``--dist loadgroup`` can no longer add
the group to it and ``xdist_group`` markers are silently ignored (every test becomes its own unit,
and disruptive tests would run side by side). The lanes are therefore decided by the scheduler
itself, in the xdist controller, which sees node ids only: by module. A module listed here must
mark its tests ``isolated`` and an ``isolated`` test must live in a listed module (checked at
collection by ``tests/e2e/conftest.py``), so the declaration stays visible in the test file.
"""

from __future__ import annotations

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
        "tests/e2e/test_sim_queue.py",
        "tests/e2e/test_apiserver_restart.py",
        "tests/e2e/test_scale_mid_plan.py",
    }
)


def lane(nodeid: str) -> str:
    return ISOLATED if nodeid.split("::", 1)[0] in ISOLATED_MODULES else SERIAL


class LaneScheduling(LoadScopeScheduling):
    """xdist's scope scheduling with two scopes, the lanes: each runs in one worker, in collection order."""

    def _split_scope(self, nodeid: str) -> str:
        return lane(nodeid)
