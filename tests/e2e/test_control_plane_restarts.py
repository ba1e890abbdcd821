"""Control-plane processes stopped and killed, on a private sandbox: the operator and `vigil dev up` recover.

1. The API server stops for 10 seconds in the middle of an incident. A bad release is detected and
   rolled back by the default runbook; while the rollback is being verified, kube-apiserver is
   stopped (SIGTERM) and started again 10 s later. The operator runs as in production, electing
   itself leader through a Lease, so the outage also lapses its leadership (the renew deadline is
   10 s). Then its watches recover (a ModelDeployment created after the restart is reconciled,
   which only a watch event can start: a resync re-reconciles known objects only); the plan resumes
   where it stood and finishes (the rollback is verified after the outage and the Incident is
   Resolved); every action happened exactly once and the timeline is complete
   (:func:`tests.e2e.fleet.check_heal`, judged from the Incident, the Events and an independent
   watch of the child objects). kube-controller-manager and kube-scheduler exit when they lose their
   leader leases during the outage; :meth:`vigil.dev.sandbox.Sandbox.restart_component` starts them
   again, as a supervisor would.
2. Every control-plane process is SIGKILLed, what a machine that stopped without ``vigil dev down``
   leaves behind (a new CI session, a reboot): etcd's data, the nodes and their old leases, and no
   process. ``up`` starts what died and returns only once the new controllers lead, so pods start at once.

Both happen on one private sandbox (:mod:`tests.e2e.private_sandbox`; its own etcd, API server,
controllers, kwok node, Prometheus and simulator): restarting the shared API server would interrupt
every test beside these, so they live in the isolated lane. One module, one sandbox: kwokctl picks
its ports by probing from 32767 down, so two private sandboxes created at the same moment would
take the same ports; the shared sandbox is up before this one is created, for the same reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.e2e import fleet, operator_fixtures, private_sandbox, waiting
from tests.e2e.operator_fixtures import OperatorProcess
from tests.e2e.test_sandbox import create_namespace, deployment, internal_ip, pod_ready, pods
from vigil.dev import kwok
from vigil.dev import sandbox as sandbox_mod
from vigil.sim import client as simclient

pytestmark = [pytest.mark.e2e, pytest.mark.isolated]

# How long the API server stays away (from its SIGTERM); VIGIL_APISERVER_OUTAGE tries longer ones.
OUTAGE_SECONDS = float(os.environ.get("VIGIL_APISERVER_OUTAGE", "10"))
# kube-apiserver takes its time to drain on SIGTERM; its listener is closed at once either way.
STOP_GRACE_SECONDS = 5.0
RATE = 10.0
LEASE = "vigil"


def _progress(message: str) -> None:
    print(f"[private sandbox] {message}", file=sys.stderr)


@pytest.fixture(scope="module")
def private(
    sandbox: sandbox_mod.SandboxInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[private_sandbox.Private]:
    """A sandbox of this module's own (one kwok node), removed afterwards; with what it cost.

    It asks for the shared ``sandbox`` only so that the shared one is up first (see the module docstring)."""
    with private_sandbox.private_sandbox("vigil-restart", tmp_path_factory.mktemp("sandbox"), _progress) as box:
        yield box


def acquisitions(proc: OperatorProcess) -> int:
    log = (proc.log_dir / f"operator-{proc.starts}.log").read_text(errors="replace")
    return len(re.findall(r"lease \S+: acquired by", log))


@pytest.mark.timeout(1200)
def test_apiserver_restarted_mid_incident_the_watches_recover_and_the_plan_finishes_exactly_once(
    private: private_sandbox.Private, tmp_path: pathlib.Path, record_property: Any
) -> None:
    box, cost, info = private.box, private.cost, private.info
    sim = simclient.ControlClient(info.simulator_url)
    with contextlib.closing(box.api_client()) as kube:
        # Not deleted afterwards: the whole sandbox goes.
        ns = operator_fixtures.namespace_name()
        client.CoreV1Api(kube).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        operator = OperatorProcess(
            str(info.kubeconfig), tmp_path, info.prometheus_url, standalone=False, namespaces=(ns,)
        )
        operator.start("--lease-name", LEASE, "--lease-namespace", ns)
        try:
            fleet.apply_md(kube, ns, fleet.md_manifest("r"))
            good = fleet.warm_up(kube, sim, ns, ["r"], RATE)
            with fleet.Recorder(kube, ns) as recorder:
                fleet.release_bad_version(kube, sim, ns, "r")
                interrupted = waiting.until(
                    lambda: (
                        fleet.step_state(kube, ns, "r") in ("Intended", "Verifying") and fleet.step_state(kube, ns, "r")
                    ),
                    300,
                    "the rollback to be under way",
                )
                before = acquisitions(operator)
                outage_began = time.time()
                restart = box.restart_component(
                    "kube-apiserver", down_for=OUTAGE_SECONDS, grace=STOP_GRACE_SECONDS, progress=_progress
                )
                back = time.monotonic()

                # A new object only a watch event can bring to the operator's attention.
                fleet.apply_md(kube, ns, fleet.md_manifest("after"))
                waiting.until(
                    lambda: fleet.get_md(kube, ns, "after").get("status", {}).get("observedGeneration") == 1,
                    120,
                    "the ModelDeployment created after the restart to be reconciled",
                )
                watch_recovered = time.monotonic() - back
                waiting.until(lambda: fleet.all_resolved(kube, ns, ["r"]), 300, "the incident Resolved", interval=2.0)
                resolved = time.monotonic() - back
                problems = fleet.check_heal(
                    kube, ns, "r", good["r"], recorder.history, fleet.incidents_by_md(kube, ns)["r"]
                )
            incident = fleet.incidents_by_md(kube, ns)["r"][0]
            timeline = incident["status"]["timeline"]
            began = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(outage_began))
            verified = next(e["time"] for e in timeline if e["type"] == "Verified")
            reacquired = acquisitions(operator) > before
            alive = operator.alive()
        finally:
            operator.stop()
            fleet.quiet(sim, ns, ["r"])
            print(operator.logs()[-3000:])

    measured = {
        **cost,
        "outage_seconds": OUTAGE_SECONDS,
        "rollback_state_at_outage": interrupted,
        "apiserver_stopped_seconds": restart.stopped,
        "apiserver_down_seconds": restart.down,
        "control_plane_settled_seconds": restart.settled,
        "components_started": list(restart.repaired),
        "watch_recovered_seconds": round(watch_recovered, 1),
        "resolved_after_seconds": round(resolved, 1),
        "lease_reacquired": reacquired,
        "watch_restarts_seen_by_the_test": recorder.history.watch_restarts,
        "problems": problems,
    }
    text = json.dumps(measured, sort_keys=True)
    print(f"apiserver restart: {text}")
    record_property("apiserver-restart", text)
    assert not problems, text
    assert alive, "the operator process exited during the outage"
    assert "kube-apiserver" in restart.repaired
    assert verified >= began, f"the rollback was verified before the outage: {timeline}"


def test_a_killed_control_plane_comes_back_with_up_and_starts_new_pods_at_once(
    private: private_sandbox.Private,
) -> None:
    box = private.box
    recorded = kwok.Kwokctl(pathlib.Path("kwokctl"), box.name, box.kwok_workdir).component_pids()
    assert set(recorded) >= {"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller"}
    for pid in recorded.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    started = time.monotonic()
    assert box.up(**private.options, progress=_progress) == private.info
    print(f"up repaired the killed control plane in {time.monotonic() - started:.1f} s")
    with contextlib.closing(box.api_client()) as kube:
        core = client.CoreV1Api(kube)
        name = f"sandbox-{uuid.uuid4().hex[:8]}"
        # Once `up` returns, the new controllers lead: the ServiceAccount and the pods come at once.
        create_namespace(core, name, 20)
        client.AppsV1Api(kube).create_namespaced_deployment(name, deployment("after-restart", gpus=1, replicas=4))

        def all_ready() -> list[client.V1Pod] | None:
            found = pods(kube, name, "after-restart")
            return found if len(found) == 4 and all(pod_ready(p) for p in found) else None

        ready = waiting.until(all_ready, 30, "4 pods Ready on the restarted control plane")
        assert all(p.status.host_ip == internal_ip(kube, p.spec.node_name) for p in ready)
