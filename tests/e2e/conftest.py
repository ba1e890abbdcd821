"""Session fixtures for the end-to-end tests: the local sandbox and a client for its API server.

``sandbox`` calls :meth:`vigil.dev.sandbox.Sandbox.up`, which reuses a sandbox that already runs
(seconds on a warm machine) and builds or starts whatever is missing. The sandbox is left
running after the session, so the next run starts warm; ``vigil dev down`` removes it.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.e2e import operator_fixtures, waiting
from vigil.dev import sandbox as sandbox_mod
from vigil.sim import client as simclient


def _progress(message: str) -> None:
    # Shown with `pytest -s`; otherwise captured and printed only if the fixture fails.
    print(f"[sandbox] {message}", file=sys.stderr)


@pytest.fixture(scope="session")
def sandbox_handle() -> sandbox_mod.Sandbox:
    """The Sandbox object itself, for tests that stop and start its parts (e.g. Prometheus)."""
    return sandbox_mod.Sandbox()


@pytest.fixture(scope="session")
def sandbox(sandbox_handle: sandbox_mod.Sandbox) -> sandbox_mod.SandboxInfo:
    """A running sandbox (4 nodes x 8 nvidia.com/gpu, pods Ready 2s after start, 5s scrapes)."""
    return sandbox_handle.up(progress=_progress)


@pytest.fixture(scope="session")
def kube(sandbox: sandbox_mod.SandboxInfo, sandbox_handle: sandbox_mod.Sandbox) -> Iterator[client.ApiClient]:
    """A kubernetes ApiClient configured from the sandbox's kubeconfig."""
    with contextlib.closing(sandbox_handle.api_client()) as api:
        yield api


@pytest.fixture(scope="module")
def operator(
    sandbox: sandbox_mod.SandboxInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[operator_fixtures.OperatorProcess]:
    """The real operator as a subprocess (so tests can SIGKILL and restart it), one per test module."""
    proc = operator_fixtures.OperatorProcess(
        str(sandbox.kubeconfig), tmp_path_factory.mktemp("operator"), sandbox.prometheus_url
    )
    proc.start()
    yield proc
    proc.stop()
    print(proc.logs()[-3000:])


@pytest.fixture
def namespace(kube: client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (its objects go with it)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    with contextlib.suppress(client.exceptions.ApiException):
        core.delete_namespace(name)
    # Wait for the namespace to go, so its pods' GPUs are free for the next test.
    with contextlib.suppress(waiting.Timeout):
        waiting.until(lambda: not core.list_namespaced_pod(name).items or None, 120, f"namespace {name} emptied")


@pytest.fixture
def sim(sandbox: sandbox_mod.SandboxInfo) -> simclient.ControlClient:
    """The simulator's control API (load and faults)."""
    return simclient.ControlClient(sandbox.simulator_url)
