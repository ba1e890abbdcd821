"""Fixtures shared by the unit tests that render the Helm chart with the sandbox toolchain's helm."""

from __future__ import annotations

import sys

import pytest

from vigil.dev import chart


@pytest.fixture(scope="session")
def helm() -> chart.Helm:
    """helm v4 from the sandbox toolchain (built once from its Go module, then cached)."""
    return chart.Helm.from_toolchain(progress=lambda message: print(f"[helm] {message}", file=sys.stderr))
