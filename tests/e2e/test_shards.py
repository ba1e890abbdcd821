"""Horizontal sharding: two operator shards on one cluster, each with its namespaces and its own Lease.

A shard is one install of vigil (the chart: one release per shard) whose ``--namespace`` names
only its namespaces and whose Lease (``--lease-name``) is its own, so each shard elects its own
leader and the shards run side by side. They must never act on each other's objects: with shard
A stopped, a change in A's namespace waits for A while B, running, rolls out the same change in
its own namespace and leaves A's alone. Each shard's fleet loop asks Prometheus about its own
namespaces only (``namespace=~"..."`` in every query); the SLO verdicts written here prove those
scoped queries are valid and find the shard's series.
"""

from __future__ import annotations

import contextlib
import pathlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.e2e import fleet, operator_fixtures, waiting
from tests.e2e.operator_fixtures import OperatorProcess
from tests.e2e.own_prometheus import OwnPrometheus
from vigil.dev import sandbox as sandbox_mod
from vigil.sim import client as simclient

pytestmark = [pytest.mark.e2e, pytest.mark.isolated]

MODEL = "model"
CAMPAIGN = re.compile(r"replica (\S+) campaigns for lease")


@contextlib.contextmanager
def shard(
    sandbox: sandbox_mod.SandboxInfo, log_dir: pathlib.Path, namespace: str, prometheus_url: str
) -> Iterator[OperatorProcess]:
    """One shard: elects a leader through its own Lease (in its namespace), watches its namespace."""
    log_dir.mkdir()
    proc = OperatorProcess(str(sandbox.kubeconfig), log_dir, prometheus_url, standalone=False, namespaces=(namespace,))
    proc.start("--lease-name", "vigil-shard", "--lease-namespace", namespace)
    try:
        yield proc
    finally:
        proc.stop()


def lease_holder(kube: client.ApiClient, namespace: str) -> Callable[[], str | None]:
    def holder() -> str | None:
        try:
            lease = client.CoordinationV1Api(kube).read_namespaced_lease("vigil-shard", namespace)
        except client.exceptions.ApiException:
            return None
        return (lease.spec.holder_identity if lease.spec else None) or None

    return holder


def campaigner(proc: OperatorProcess) -> Callable[[], str | None]:
    """The identity a shard's replica campaigns with (its log says so)."""

    def identity() -> str | None:
        found = CAMPAIGN.search(proc.logs())
        return found.group(1) if found else None

    return identity


def available(kube: client.ApiClient, namespace: str) -> Callable[[], bool]:
    return lambda: fleet.condition(fleet.get_md(kube, namespace, MODEL), "Available") == "True"


def judged_met(kube: client.ApiClient, namespace: str) -> Callable[[], dict[str, Any] | None]:
    def met() -> dict[str, Any] | None:
        md = fleet.get_md(kube, namespace, MODEL)
        slo: dict[str, Any] = next(iter(md.get("status", {}).get("slos", [])), {})
        ok = fleet.condition(md, "Available") == "True" and fleet.condition(md, "MetricsAvailable") == "True"
        return md if ok and slo.get("state") == "Met" else None

    return met


def serving(kube: client.ApiClient, namespace: str, version: str) -> dict[str, Any] | None:
    md = fleet.get_md(kube, namespace, MODEL)
    status = md.get("status", {})
    done = status.get("observedGeneration") == md["metadata"]["generation"] and status.get("modelVersion") == version
    return md if done and fleet.condition(md, "Available") == "True" else None


def test_two_shards_with_their_own_leases_each_act_only_on_their_own_namespaces(
    kube: client.ApiClient,
    sandbox: sandbox_mod.SandboxInfo,
    own_prometheus: OwnPrometheus,
    sim: simclient.ControlClient,
    tmp_path: pathlib.Path,
) -> None:
    with (
        operator_fixtures.scoped_namespace(kube) as ns_a,
        operator_fixtures.scoped_namespace(kube) as ns_b,
        shard(sandbox, tmp_path / "a", ns_a, own_prometheus.url) as a,
        shard(sandbox, tmp_path / "b", ns_b, own_prometheus.url) as b,
    ):
        try:
            for ns in (ns_a, ns_b):
                fleet.apply_md(kube, ns, fleet.md_manifest(MODEL))
            for ns in (ns_a, ns_b):
                waiting.until(available(kube, ns), 120, f"{ns} Available")
                sim.set_load({"namespace": ns, "name": MODEL, "rate": 10})
            # Each shard judged its own deployment through its namespace-scoped queries.
            for ns in (ns_a, ns_b):
                waiting.until(judged_met(kube, ns), 180, f"{ns}: SLO Met through the shard's queries")
            # Two Leases, two leaders: each the shard of that namespace.
            identity = {
                ns: waiting.until(campaigner(proc), 30, "the shard's identity") for ns, proc in ((ns_a, a), (ns_b, b))
            }
            assert identity[ns_a] != identity[ns_b]
            for ns in (ns_a, ns_b):
                assert waiting.until(lease_holder(kube, ns), 30, f"{ns}: the shard's Lease held") == identity[ns]

            a.stop()
            for ns in (ns_a, ns_b):
                fleet.apply_md(kube, ns, fleet.md_manifest(MODEL, version="2"))
            waiting.until(lambda: serving(kube, ns_b, "2"), 120, "shard b to roll out version 2 in its namespace")
            # By then shard b has seen, decided and written everything it ever would: A's change waits for A.
            md_a = fleet.get_md(kube, ns_a, MODEL)
            assert md_a["status"]["observedGeneration"] < md_a["metadata"]["generation"]
            assert md_a["status"]["modelVersion"] == "1"
            revisions = client.AppsV1Api(kube).list_namespaced_deployment(
                ns_a, label_selector=f"vigil.dev/modeldeployment={MODEL},vigil.dev/model-version=2"
            )
            assert not revisions.items, "a Deployment for version 2 was written in shard a's namespace"

            a.start("--lease-name", "vigil-shard", "--lease-namespace", ns_a)
            waiting.until(lambda: serving(kube, ns_a, "2"), 120, "shard a, back, to roll out version 2")
            assert ns_a not in b.logs()
            assert ns_b not in a.logs()
        finally:
            fleet.quiet(sim, ns_a, [MODEL])
            fleet.quiet(sim, ns_b, [MODEL])
