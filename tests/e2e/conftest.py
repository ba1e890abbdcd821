"""Session fixtures for the end-to-end tests: the local sandbox and a client for its API server.

``sandbox`` calls :meth:`vigil.dev.sandbox.Sandbox.up`, which reuses a sandbox that already runs
(seconds on a warm machine) and builds or starts whatever is missing. The sandbox is left
running after the session, so the next run starts warm; ``vigil dev down`` removes it.

Lanes (``make e2e`` runs them side by side with pytest-xdist, ``--dist loadgroup``, which
:mod:`tests.e2e.lanes` schedules): tests marked ``isolated`` use only their own operator, namespaces
and Prometheus and hold no GPU, so they run beside the rest, which stays one serial lane (those
tests stop the shared Prometheus and count free GPUs). A test that kills or restarts control-plane
processes does so on a private sandbox (:mod:`tests.e2e.private_sandbox`), never on the shared one.
Each xdist worker is its own pytest session with its own namespace prefix and operators scoped to
it (see :mod:`tests.e2e.operator_fixtures`).
"""

from __future__ import annotations

import contextlib
import fcntl
import sys
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.e2e import lanes, operator_fixtures
from tests.e2e import own_prometheus as own_prometheus_mod
from vigil.dev import sandbox as sandbox_mod
from vigil.sim import client as simclient


def _progress(message: str) -> None:
    # Shown with `pytest -s`; otherwise captured and printed only if the fixture fails.
    print(f"[sandbox] {message}", file=sys.stderr)


@pytest.fixture(scope="session")
def sandbox_handle() -> sandbox_mod.Sandbox:
    """The Sandbox object itself, for tests that stop and start its parts (e.g. Prometheus)."""
    return sandbox_mod.Sandbox()


ISOLATED = lanes.ISOLATED


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{ISOLATED}: an e2e test with its own operator, namespaces and Prometheus and no GPUs; "
        "runs in the lane beside the others",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """An ``isolated`` test must live in a module of :data:`tests.e2e.lanes.ISOLATED_MODULES`, and only there.

    The order is the scheduler's: the serial lane first, then the isolated modules longest first.
    """
    items.sort(key=lambda item: lanes.order(item.nodeid))
    for item in items:
        if item.get_closest_marker("e2e") is None:
            continue
        marked = item.get_closest_marker(ISOLATED) is not None
        if marked != (lanes.lane(item.nodeid) == lanes.ISOLATED):
            raise pytest.UsageError(
                f"{item.nodeid}: mark a test isolated exactly when its module is in tests/e2e/lanes.py ISOLATED_MODULES"
            )


@pytest.fixture(scope="session")
def sandbox(sandbox_handle: sandbox_mod.Sandbox) -> sandbox_mod.SandboxInfo:
    """A running sandbox (4 nodes x 8 nvidia.com/gpu, pods Ready 2s after start, 5s scrapes)."""
    # The workers start at once: one brings the sandbox up, the others then find it running.
    lock_file = sandbox_handle.state_dir.parent / "sandbox-up.lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return sandbox_handle.up(progress=_progress)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def kube(sandbox: sandbox_mod.SandboxInfo, sandbox_handle: sandbox_mod.Sandbox) -> Iterator[client.ApiClient]:
    """A kubernetes ApiClient configured from the sandbox's kubeconfig."""
    with contextlib.closing(sandbox_handle.api_client()) as api:
        yield api


def lane_prometheus_url(request: pytest.FixtureRequest, sandbox: sandbox_mod.SandboxInfo) -> str:
    """The Prometheus that judges a module's operator: in the isolated lane the lane's own (the serial
    lane stops the shared one), in the serial lane the sandbox's."""
    if lanes.lane(request.node.nodeid) == lanes.ISOLATED:
        own: own_prometheus_mod.OwnPrometheus = request.getfixturevalue("own_prometheus")
        return own.url
    return sandbox.prometheus_url


@pytest.fixture(scope="module")
def operator(
    request: pytest.FixtureRequest, sandbox: sandbox_mod.SandboxInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[operator_fixtures.OperatorProcess]:
    """The real operator as a subprocess (so tests can SIGKILL and restart it), one per test module.

    It watches this session's namespaces; an isolated module's is judged by the lane's own Prometheus.
    """
    proc = operator_fixtures.OperatorProcess(
        str(sandbox.kubeconfig),
        tmp_path_factory.mktemp("operator"),
        lane_prometheus_url(request, sandbox),
        inference_url=sandbox.inference_url,
    )
    proc.start()
    yield proc
    proc.stop()
    print(proc.logs()[-3000:])


@pytest.fixture
def namespace(kube: client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test inside this session's operator scope, deleted afterwards (its objects go with it)."""
    with operator_fixtures.scoped_namespace(kube) as name:
        yield name


@pytest.fixture
def sim(sandbox: sandbox_mod.SandboxInfo) -> simclient.ControlClient:
    """The simulator's control API (load and faults)."""
    return simclient.ControlClient(sandbox.simulator_url)


@pytest.fixture(scope="session")
def own_prometheus(
    sandbox: sandbox_mod.SandboxInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[own_prometheus_mod.OwnPrometheus]:
    """The isolated lane's own Prometheus (sandbox binary and scrape config, another port, this session's pods)."""
    prom = own_prometheus_mod.OwnPrometheus(
        sandbox, tmp_path_factory.mktemp("prometheus"), f"{operator_fixtures.PREFIX}.*"
    )
    prom.start()
    yield prom
    prom.stop()


@pytest.fixture
def scoped_operator(
    sandbox: sandbox_mod.SandboxInfo,
    namespace: str,
    own_prometheus: own_prometheus_mod.OwnPrometheus,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[operator_fixtures.OperatorProcess]:
    """An operator (not started yet) watching only this test's namespace, judged by the lane's own Prometheus."""
    logs = tmp_path_factory.mktemp("scoped-operator")
    proc = operator_fixtures.OperatorProcess(str(sandbox.kubeconfig), logs, own_prometheus.url, namespaces=(namespace,))
    yield proc
    proc.stop()
    print(proc.logs()[-3000:])
