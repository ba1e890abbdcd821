"""End to end: healing does not wait behind routine work.

One operator, reached through an API proxy that makes every write for the routine deployments
slow (1.5 s), watches a namespace with 24 routine deployments (no pods) and one serving
deployment. A background loop edits the routine specs without pause, so the work queue is never
empty of routine keys for the rest of the test; then the serving deployment gets a bad release.
The operator's own queue metrics show where the time went: the heal's reconciles waited for no
routine key (the urgent lane) while routine keys waited for seconds, and the bad release is
rolled back as it is without load.

Isolated lane: the operator watches only the test's namespace and is judged by the lane's own
Prometheus; the serving pods are CPU-only (``triton: {gpus: 0}``), the routine ones run no pods.
"""

from __future__ import annotations

import pathlib
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.e2e import waiting
from tests.e2e.apiproxy import WRITES, ApiProxy
from tests.e2e.operator_fixtures import OperatorProcess
from tests.e2e.own_prometheus import OwnPrometheus
from tests.e2e.test_heal import CPU_ONLY, healthy_v1, patch_spec, release_bad_v2
from tests.e2e.test_modeldeployment import create, get, manifest
from vigil.dev import sandbox as sandbox_mod
from vigil.sim import client as simclient

pytestmark = [pytest.mark.e2e, pytest.mark.isolated]

ROUTINE = 24
SLOW_SECONDS = 1.5
FAULTY = "faulty"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def waits(port: int) -> dict[str, dict[float, float]]:
    """``vigil_workqueue_wait_seconds`` buckets by lane: {lane: {le: cumulative count}}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found: dict[str, dict[float, float]] = {}
    for lane, le, count in re.findall(
        r'^vigil_workqueue_wait_seconds_bucket\{lane="(\w+)",le="([^"]+)"\} ([0-9.e+]+)$', text, re.M
    ):
        found.setdefault(lane, {})[float(le)] = float(count)
    return found


def saturated(port: int) -> bool:
    routine = waits(port).get("routine", {})
    return bool(routine) and routine[1.0] < routine[float("inf")]


@pytest.fixture
def proxied_operator(
    sandbox: sandbox_mod.SandboxInfo, namespace: str, own_prometheus: OwnPrometheus, tmp_path: pathlib.Path
) -> Iterator[tuple[OperatorProcess, ApiProxy, int]]:
    with ApiProxy(sandbox.kubeconfig) as proxy:
        kubeconfig = proxy.kubeconfig(tmp_path / "kubeconfig")
        operator = OperatorProcess(str(kubeconfig), tmp_path, own_prometheus.url, namespaces=(namespace,))
        port = free_port()
        # 4 workers for 24 routine keys with 1.5 s writes: the queue saturates (the default 16 would drain it).
        operator.start("--metrics-port", str(port), "--metrics-address", "127.0.0.1", "--workers", "4")
        try:
            yield operator, proxy, port
        finally:
            operator.stop()
            print(operator.logs()[-3000:])


def test_a_bad_release_is_healed_ahead_of_a_saturated_queue_of_routine_work(
    kube: client.ApiClient,
    namespace: str,
    sim: simclient.ControlClient,
    proxied_operator: tuple[OperatorProcess, ApiProxy, int],
) -> None:
    _, proxy, port = proxied_operator
    routine = [f"routine-{n}" for n in range(ROUTINE)]
    for name in routine:
        create(kube, namespace, manifest(name, replicas=0))
    _, good = healthy_v1(kube, sim, namespace, FAULTY, triton=CPU_ONLY)

    proxy.slow(lambda method, path: method in WRITES and "/modeldeployments/routine-" in path, SLOW_SECONDS)
    stop = threading.Event()

    def edit_routine_specs() -> None:  # every edit is a new generation: a routine reconcile with a slow write
        flip = 0
        while not stop.is_set():
            flip += 1
            for name in routine:
                patch_spec(kube, namespace, name, {"bakeTime": f"{30 + flip % 2}s"})
            stop.wait(0.5)

    editor = threading.Thread(target=edit_routine_specs, daemon=True)
    editor.start()
    try:
        waiting.until(lambda: saturated(port), 120, "routine keys waiting over a second in the queue")
        before = waits(port).get("urgent", {})
        started = time.monotonic()
        release_bad_v2(kube, sim, namespace, FAULTY)
        rolled = waiting.until(lambda: get(kube, namespace, FAULTY)["status"].get("rollback"), 180, "the rollback")
        healed_in = time.monotonic() - started
    finally:
        stop.set()
        editor.join(timeout=30)
    assert rolled["revision"] == good

    after = waits(port)
    urgent = {le: count - before.get(le, 0.0) for le, count in after.get("urgent", {}).items()}
    routine_waits = after["routine"]
    assert urgent.get(float("inf"), 0) >= 1, "the heal's reconciles went through the urgent lane"
    # No heal reconcile waited behind the routine backlog: each was taken within a slow write or two
    # (a worker finishing its routine pass), while routine keys waited for seconds.
    assert urgent[5.0] == urgent[float("inf")], urgent
    assert routine_waits[2.5] < routine_waits[float("inf")], routine_waits
    assert healed_in < 120, healed_in
