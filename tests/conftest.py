"""Hooks the xdist controller needs (it loads only the conftest files above the paths it is given)."""

from __future__ import annotations

from typing import Any

import pytest


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` runs the e2e lanes (see :mod:`tests.e2e.lanes`); other modes stay xdist's."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from tests.e2e import lanes

    return lanes.LaneScheduling(config, log)
