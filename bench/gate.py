"""Benchmark 4: the golden-request gate: wrong answers served during a bad export, and what it costs.

Two deployments run side by side in one namespace under the same operator and the same user load
(:data:`RATE` requests/s each), serving the same real torch model (a small CNN classifier, exported
TorchScript into a local model repository that the simulator's pods load, as Triton would):
``gated`` carries ``spec.validation`` (64 golden requests per pod, made once by ``vigil golden`` from
version 1 and stored as a ConfigMap in each run's namespace), ``ungated`` does not. Per run:

1. **Bad export.** Version 2 is the same network with perturbed weights (it answers 200, at
   normal latency, with wrong logits). Both deployments move to it at the same moment. For
   :data:`WINDOW` seconds the simulator counts the user requests each revision answered: every
   one answered by version 2 is a wrong answer served. Baseline: ``ungated``, in the same run.
2. **Good rollout.** Both move to version 3 (a correct re-export). Measured per deployment: from
   the moment all its new pods are Ready to the moment the Service selects them. The gate's cost
   is the difference (``gated`` minus ``ungated``), and the operator's own measure of the golden
   requests (its ``ValidationPassed`` Event).
"""

from __future__ import annotations

import functools
import pathlib
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

from kubernetes import client

from bench import cluster, stats, waiting
from bench.common import Context, attempt
from vigil.gate import goldenset

RATE = 20.0
WINDOW = 30.0
QUICK_WINDOW = 20.0
REQUESTS = 64
REPLICAS = 2
MODEL = "cnn"
GATED, UNGATED = "gated", "ungated"
GOLDEN = f"{MODEL}-golden"
BAD_EXPORT_NOISE = 0.05
SETTLE = 120.0
# No GPU held (a toleration for the GPU nodes' taint instead): benchmarks must not starve the tests.
NO_GPU = {
    "gpus": 0,
    "cpu": "100m",
    "memory": "256Mi",
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}


def export_models(repository: pathlib.Path) -> None:
    """Versions 1 and 3: the same good weights; version 2: a bad export (perturbed weights)."""
    from vigil.sim import torchmodels  # torch: the bench runs with the dev extras

    torchmodels.export(torchmodels.small_cnn(seed=0), repository, MODEL, "1")
    torchmodels.export(torchmodels.perturbed(torchmodels.small_cnn(seed=0), BAD_EXPORT_NOISE), repository, MODEL, "2")
    torchmodels.export(torchmodels.small_cnn(seed=0), repository, MODEL, "3")


def make_golden(repository: pathlib.Path) -> goldenset.GoldenSet:
    """``vigil golden`` on version 1 (the user's own command), once per invocation: ``import torch``
    alone takes most of a minute on a loaded machine."""
    out = repository / "golden.json"
    command = [sys.executable, "-m", "vigil", "golden", str(repository / MODEL / "1" / "model.pt")]
    command += ["--requests", str(REQUESTS), "--top-k", "5", "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    return goldenset.GoldenSet.parse(out.read_text())


def store_golden(ctx: Context, golden: goldenset.GoldenSet, namespace: str) -> None:
    """The ConfigMap ``vigil golden --apply`` would write, in this run's namespace."""
    body = goldenset.configmap_manifest(golden, GOLDEN, namespace)
    ctx.kube.core.create_namespaced_config_map(namespace, body)  # type: ignore[arg-type]  # a dict is a body too


def _spec(repository: pathlib.Path, version: str, gated: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": {"name": MODEL, "repository": str(repository), "version": version}}
    if gated:
        spec["validation"] = {"goldenSet": {"configMapRef": {"name": GOLDEN}}, "requests": REQUESTS}
    return spec


def _revision(md: dict[str, Any], version: str) -> str | None:
    found = [r["name"] for r in md.get("status", {}).get("revisions", []) if r["modelVersion"] == version]
    return found[-1] if found else None


def _selected(kube: cluster.Cluster, namespace: str, name: str) -> str | None:
    try:
        service = kube.core.read_namespaced_service(name, namespace, _request_timeout=cluster.TIMEOUT)
    except Exception:
        return None
    selector = (service.spec.selector if service.spec is not None else None) or {}
    return selector.get("vigil.dev/revision")


def _user_requests(kube: cluster.Cluster, namespace: str, name: str, version: str) -> int:
    """User requests (the simulator's load, routed by the Service) answered by one version's pods."""
    rows = kube.sim.state().get("revisions", [])
    return sum(
        int(r["userRequests"])
        for r in rows
        if r["namespace"] == namespace and r["name"] == name and str(r["version"]) == version
    )


def _ready(kube: cluster.Cluster, namespace: str, name: str, revision: str) -> bool:
    apps = client.AppsV1Api(kube.api)
    deployment = apps.read_namespaced_deployment(f"{name}-{revision}", namespace, _request_timeout=cluster.TIMEOUT)
    status = deployment.status
    return status is not None and (status.ready_replicas or 0) >= REPLICAS


def _gate_seconds(kube: cluster.Cluster, namespace: str, revision: str) -> float | None:
    events = kube.core.list_namespaced_event(
        namespace,
        field_selector=f"involvedObject.name={GATED},reason=ValidationPassed",
        _request_timeout=cluster.TIMEOUT,
    )
    for event in events.items:
        match = re.search(r"\(([0-9.]+)s\)$", event.message or "")
        if (event.message or "").startswith(f"revision {revision}:") and match:
            return float(match.group(1))
    return None


def _rollout(kube: cluster.Cluster, namespace: str, version: str) -> dict[str, dict[str, float | None]]:
    """Per deployment: when its new pods were all Ready, and when the Service moved to them."""
    marks: dict[str, dict[str, float | None]] = {name: {"ready": None, "switched": None} for name in (GATED, UNGATED)}

    def progressed() -> bool:
        now = time.time()
        for name, seen in marks.items():
            md = kube.get(namespace, name)
            revision = _revision(md, version)
            if revision is None:
                continue
            if seen["ready"] is None and _ready(kube, namespace, name, revision):
                seen["ready"] = now
            if seen["switched"] is None and _selected(kube, namespace, name) == revision:
                seen["switched"] = now
        return all(seen["switched"] is not None and seen["ready"] is not None for seen in marks.values())

    waiting.until(progressed, SETTLE, f"both deployments serving version {version}", interval=0.1)
    return marks


def one_run(ctx: Context, index: int, repository: pathlib.Path, golden: goldenset.GoldenSet) -> dict[str, Any]:
    window = QUICK_WINDOW if ctx.quick else WINDOW
    with ctx.namespace("gate") as ns:
        store_golden(ctx, golden, ns)
        with ctx.operator([ns], f"gate-{index}"):
            for name in (GATED, UNGATED):
                body = cluster.manifest(name, version="1", replicas=REPLICAS, triton=NO_GPU)
                body["spec"].update(_spec(repository, "1", gated=name == GATED))
                ctx.kube.create(ns, cluster.MDS, body)
            _rollout(ctx.kube, ns, "1")
            for name in (GATED, UNGATED):
                ctx.kube.sim.set_load({"namespace": ns, "name": name, "rate": RATE})
            try:
                released = time.time()
                for name in (GATED, UNGATED):
                    ctx.kube.patch_spec(ns, name, {"model": {"version": "2"}})
                waiting.until(lambda: time.time() - released >= window, window + 5, "the bad-export window")
                wrong = {name: _user_requests(ctx.kube, ns, name, "2") for name in (GATED, UNGATED)}
                served = {
                    name: sum(_user_requests(ctx.kube, ns, name, v) for v in ("1", "2")) for name in (GATED, UNGATED)
                }
                gated_md = ctx.kube.get(ns, GATED)
                verdict = (cluster.condition(gated_md, "Validated") or {}).get("reason")
                for name in (GATED, UNGATED):
                    ctx.kube.patch_spec(ns, name, {"model": {"version": "3"}})
                marks = _rollout(ctx.kube, ns, "3")
            finally:
                for name in (GATED, UNGATED):
                    ctx.kube.forget_traffic(ns, name)
            good = _revision(ctx.kube.get(ns, GATED), "3")
            delays = {name: stats.elapsed(seen["ready"], seen["switched"]) for name, seen in marks.items()}
            return {
                "windowSeconds": window,
                "wrongAnswers": wrong,
                "userRequests": served,
                "gatedVerdict": verdict,
                "readyToTrafficSeconds": delays,
                "gateAddsSeconds": stats.elapsed(delays[UNGATED], delays[GATED]),
                "goldenRequestsSeconds": _gate_seconds(ctx.kube, ns, good) if good else None,
            }


def summarize(runs: list[dict[str, Any]], environment: dict[str, Any]) -> dict[str, Any]:
    """The result: every run, and min/median/p90/max of each measure over the runs that completed."""
    good = [r for r in runs if "error" not in r]

    def values(*path: str) -> list[float | None]:
        found: list[float | None] = []
        for r in good:
            value: Any = r
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            found.append(float(value) if isinstance(value, int | float) else None)
        return found

    def summary(*path: str) -> dict[str, Any] | None:
        found = stats.summarize(values(*path))
        return found.to_json() if found is not None else None

    return {
        "benchmark": "gate",
        "environment": environment,
        "settings": {
            "rate": RATE,
            "goldenRequests": REQUESTS,
            "replicas": REPLICAS,
            "badExportNoise": BAD_EXPORT_NOISE,
        },
        "runs": runs,
        "summary": {
            "wrongAnswersGated": summary("wrongAnswers", GATED),
            "wrongAnswersUngated": summary("wrongAnswers", UNGATED),
            "gateAddsSeconds": summary("gateAddsSeconds"),
            "goldenRequestsSeconds": summary("goldenRequestsSeconds"),
            "readyToTrafficGated": summary("readyToTrafficSeconds", GATED),
            "readyToTrafficUngated": summary("readyToTrafficSeconds", UNGATED),
        },
    }


def run(ctx: Context) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vigil-bench-gate-") as tmp:
        repository = pathlib.Path(tmp) / "repository"  # read by the simulator's pods: this machine, an absolute path
        export_models(repository)
        golden = make_golden(repository)
        runs = [
            attempt(ctx, f"gate run {i + 1}", functools.partial(one_run, ctx, i, repository, golden))
            for i in range(ctx.runs)
        ]
    return summarize(runs, ctx.environment())
