"""A sandbox of a test module's own, for tests that stop or kill control-plane processes.

Killing the shared sandbox's API server or controllers would interrupt every test running beside
it, so such tests bring up a small private sandbox instead (its own etcd, control plane, one kwok
GPU node, Prometheus and simulator, on free ports, under a temporary directory) and live in the
isolated lane. It is the same :class:`vigil.dev.sandbox.Sandbox` code that ``vigil dev up`` runs,
only smaller: 15-60 s to bring up on the 2-core machine, 2-3 s to remove.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from tests.e2e.own_prometheus import free_port
from vigil.dev import sandbox as sandbox_mod


@dataclasses.dataclass
class Private:
    box: sandbox_mod.Sandbox
    info: sandbox_mod.SandboxInfo
    options: dict[str, Any]
    """What ``up`` was called with: ``box.up(**options)`` repairs the same sandbox."""
    cost: dict[str, float]
    """Seconds to bring it up (``up_seconds``) and, once the context ends, to remove it (``down_seconds``)."""


@contextlib.contextmanager
def private_sandbox(
    name: str, state_dir: pathlib.Path, progress: Callable[[str], None], gpus_per_node: int = 8
) -> Iterator[Private]:
    """A running one-node sandbox named ``name`` under ``state_dir``, removed when the context ends."""
    box = sandbox_mod.Sandbox(name=name, state_dir=state_dir)
    options: dict[str, Any] = {
        "nodes": 1,
        "cpu_nodes": 0,
        "gpus_per_node": gpus_per_node,
        "prometheus_port": free_port(),
        "sim_port": free_port(),
    }
    cost: dict[str, float] = {}
    started = time.monotonic()
    try:
        info = box.up(**options, progress=progress)
        cost["up_seconds"] = round(time.monotonic() - started, 1)
        yield Private(box, info, options, cost)
    finally:
        stopping = time.monotonic()
        box.down(progress=progress)
        cost["down_seconds"] = round(time.monotonic() - stopping, 1)
        print(f"private sandbox {name} cost: {json.dumps(cost)}")
