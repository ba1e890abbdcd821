"""``make demo``: the main job end to end on the local sandbox, narrated.

It brings up the sandbox, runs the operator, deploys a model under simulated traffic, then does
what a bad release does to users: version 2 answers 30% errors. vigil notices, diagnoses a bad
rollout, rolls back to the last-known-good revision without touching the spec, and resolves the
incident; the demo prints each step as it is observed in the cluster, then the status and the
incident's timeline. Everything stays up afterwards for exploring (`vigil status -n demo`).
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
import time
import typing
from collections.abc import Callable
from typing import Any

from kubernetes import client
from rich import console as rich_console

from vigil import api
from vigil.api import incident as incapi
from vigil.api import modeldeployment as mdapi
from vigil.dev import kwok, procs
from vigil.dev import sandbox as sandbox_mod
from vigil.record import views
from vigil.sim import client as simclient

NAMESPACE = "demo"
NAME = "resnet"
RATE = 40.0

out = rich_console.Console(highlight=False)


def _operator(box: sandbox_mod.Sandbox) -> procs.Background:
    return procs.Background("operator", box.state_dir)


def operator_argv(info: sandbox_mod.SandboxInfo) -> list[str]:
    """The demo's operator: scoped to the demo's namespace, so it never acts on anyone else's objects.

    The demo stays up for exploring; a test run or a benchmark started meanwhile on the same sandbox
    runs its own operator on its own namespaces, and two operators must never act on one object.
    """
    return [
        sys.executable,
        "-m",
        "vigil",
        "run",
        "--namespace",
        NAMESPACE,
        "--standalone",
        "--liveness",
        "http://127.0.0.1:8080/healthz",
        "--prometheus-url",
        info.prometheus_url,
        "--kubeconfig",
        str(info.kubeconfig),
        "--rate-window",
        "30s",
        "--baseline-window",
        "10m",
        "--inference-url",
        info.inference_url,
    ]


def sample(version: str = "1", node: str | None = None) -> dict[str, Any]:
    """The demo's ModelDeployment; ``node`` pins its pods to one node (see :func:`demo_node`)."""
    triton: dict[str, Any] = {"gpus": 1}
    if node:
        triton["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {
        "apiVersion": api.API_VERSION,
        "kind": mdapi.KIND,
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "model": {"name": "resnet50", "repository": "s3://models/resnet50", "version": version},
            "triton": triton,
            "replicas": 2,
            "maxReplicas": 4,
            "bakeTime": "20s",
            "slos": [{"name": "availability", "kind": "availability", "objective": 99.0, "period": "1h"}],
        },
    }


@dataclasses.dataclass
class Watch:
    api: client.CustomObjectsApi
    started: float = dataclasses.field(default_factory=time.monotonic)

    def md(self) -> dict[str, Any]:
        found = self.api.get_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, mdapi.PLURAL, NAME)
        return typing.cast(dict[str, Any], found)

    def until(self, what: str, probe: Callable[[dict[str, Any]], bool], timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with out.status(what):
            while True:
                md = self.md()
                if probe(md):
                    out.print(f"[green]✓[/] {time.monotonic() - self.started:6.1f}s  {what}")
                    return md
                if time.monotonic() > deadline:
                    raise SystemExit(f"demo: timed out waiting for: {what}")
                time.sleep(0.5)


def _condition(md: dict[str, Any], type_: str) -> str | None:
    found = next((c for c in md.get("status", {}).get("conditions", []) if c["type"] == type_), None)
    return str(found["status"]) if found else None


def _slo(md: dict[str, Any]) -> str | None:
    slos = md.get("status", {}).get("slos", [])
    return str(slos[0]["state"]) if slos else None


def demo_node(info: sandbox_mod.SandboxInfo) -> str:
    """The sandbox's last GPU node, where the demo keeps its pods.

    The demo stays up while ``make test`` may run beside it, and the capacity tests place 8-GPU
    replicas on whole nodes (the first node holds their fallback). Left to the scheduler, the
    demo's two 1-GPU pods could take a GPU on two of the nodes those replicas need.
    """
    return kwok.node_name(info.nodes - 1)


def up() -> None:
    box = sandbox_mod.Sandbox()
    out.rule("vigil demo: sandbox")
    info = box.up(progress=lambda message: out.print(f"  {message}"))
    operator = _operator(box)
    argv = operator_argv(info)
    if not operator.runs(argv):
        operator.stop()
        operator.start(argv)
    out.print(f"  operator running (pid {operator.pid()}); log {operator.log_file}")

    kube = box.api_client()
    core = client.CoreV1Api(kube)
    custom = client.CustomObjectsApi(kube)
    sim = simclient.ControlClient(info.simulator_url)
    if not any(ns.metadata and ns.metadata.name == NAMESPACE for ns in core.list_namespace().items):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    sim.clear_faults(NAMESPACE, NAME)
    custom.patch_namespaced_custom_object(
        api.GROUP,
        api.VERSION,
        NAMESPACE,
        mdapi.PLURAL,
        NAME,
        sample(node=demo_node(info)),
        field_manager="demo-user",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    watch = Watch(custom)
    out.rule("1. a model deployment, version 1, 2 replicas x 1 GPU")
    watch.until("Available: pods scheduled on kwok GPU nodes and Ready", lambda m: _condition(m, "Available") == "True")
    sim.set_load({"namespace": NAMESPACE, "name": NAME, "rate": RATE})
    out.print(f"  simulator: {RATE:.0f} req/s of Poisson traffic through the Service")
    watch.until("SLO availability Met (real Prometheus, multi-window burn rates)", lambda m: _slo(m) == "Met")
    watch.until(
        "version 1 is last-known-good (met its SLO for the 20s bake time)",
        lambda m: any(r.get("lastKnownGood") for r in m["status"].get("revisions", [])),
    )

    out.rule("2. a bad release: version 2 answers 30% errors")
    sim.set_fault({"namespace": NAMESPACE, "name": NAME, "version": "2", "errorRatio": 0.3})
    custom.patch_namespaced_custom_object(
        api.GROUP,
        api.VERSION,
        NAMESPACE,
        mdapi.PLURAL,
        NAME,
        sample("2", node=demo_node(info)),
        field_manager="demo-user",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    watch.until("version 2 rolled out and serving", lambda m: m["status"].get("modelVersion") == "2")
    watch.until("SLO Breached", lambda m: _slo(m) == "Breached")
    md = watch.until("Incident opened", lambda m: bool(m["status"].get("activeIncident")))
    incident = md["status"]["activeIncident"]
    watch.until("rolled back to last-known-good (spec untouched)", lambda m: "rollback" in m["status"])
    watch.until("serving version 1 again", lambda m: m["status"].get("modelVersion") == "1")
    watch.until("SLO Met again", lambda m: _slo(m) == "Met")
    watch.until("Incident resolved", lambda m: not m["status"].get("activeIncident"), timeout=300)

    out.rule("3. what vigil recorded")
    now = datetime.datetime.now(datetime.UTC)
    listed = custom.list_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, mdapi.PLURAL)
    mds = typing.cast(dict[str, Any], listed)["items"]
    out.print(views.status_view(views.parse(mdapi.ModelDeployment, mds).objects, now))
    record = typing.cast(
        dict[str, Any], custom.get_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, incapi.PLURAL, incident)
    )
    out.print(views.incident_detail(views.parse(incapi.Incident, [record]).objects[0], now))
    final = watch.md()
    out.print(f"spec.model.version is still {final['spec']['model']['version']!r}: GitOps-safe.")
    out.print(f"\nExplore: export KUBECONFIG={info.kubeconfig}; vigil status -n {NAMESPACE}; kubectl get md,inc -A")
    out.print("Stop everything: make demo-down")


def down() -> None:
    box = sandbox_mod.Sandbox()
    _operator(box).stop()
    box.down()
    out.print("sandbox removed")
