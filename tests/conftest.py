"""Hooks the xdist controller needs (it loads only the conftest files above the paths it is given, so
``tests/e2e/conftest.py``'s hooks never run there)."""

from __future__ import annotations

from typing import Any

import pytest


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` runs the e2e lanes (see :mod:`tests.e2e.lanes`); other modes stay xdist's."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from tests.e2e import lanes

    return lanes.LaneScheduling(config, log)


# record_property names printed in the terminal summary (chaos and outage results).
MEASURED = ("chaos", "outage", "apiserver-restart", "sim-queue")


def _worker(report: pytest.TestReport) -> str:
    node = getattr(report, "node", None)  # set by xdist on the controller
    return str(node.gateway.id) if node is not None else "main"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """What the e2e lanes took (per worker and per module), and what the chaos and outage tests measured
    (their record_property), from xdist's workers too."""
    from tests.e2e import lanes

    reports = [
        report
        for reports in terminalreporter.stats.values()
        for report in reports
        if isinstance(report, pytest.TestReport) and report.nodeid.startswith("tests/e2e/")
    ]
    phases = [lanes.Phase(_worker(report), report.nodeid, report.start, report.stop) for report in reports]
    if phases:
        terminalreporter.section("e2e lanes")
        for line in lanes.summary(phases):
            terminalreporter.write_line(line)
    measured = [
        f"{report.nodeid}: {name} {value}"
        for report in reports
        if report.when == "call"
        for name, value in report.user_properties
        if name in MEASURED
    ]
    if measured:
        terminalreporter.section("e2e measurements")
        for line in measured:
            terminalreporter.write_line(line)
