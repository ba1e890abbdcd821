"""End to end: vigil installed the way users install it, and proven under the chart's own RBAC.

* ``helm install`` into a namespace that enforces the ``restricted`` Pod Security Standard: the
  StatefulSet's pods are admitted (nothing runs them, there is no container runtime, but kwok
  plays their kubelet), and a non-compliant pod in the same namespace is rejected.
* The operator then runs as a host process authenticated as the chart's ServiceAccount (a token
  from the TokenRequest API), with the chart's own arguments, and heals a bad release.
* ``kubectl auth can-i`` proves what a namespace-mode install cannot do elsewhere, and two
  namespace-scoped installs live side by side.
* The chart's renderings pass server-side dry-run, and ``kubectl apply -f crds/ -f deploy/``
  installs the plain manifests.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.e2e import waiting
from tests.e2e.test_heal import healthy_v1, release_bad_v2, resolved, step
from tests.e2e.test_modeldeployment import condition, get
from vigil.dev import build, chart
from vigil.dev import sandbox as sandbox_mod
from vigil.sim import client as simclient

pytestmark = pytest.mark.e2e

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
RESULTS = pathlib.Path(os.environ.get("VIGIL_INSTALL_RESULTS", "/tmp/vigil-install-results.json"))


@pytest.fixture(scope="module")
def helm() -> chart.Helm:
    return chart.Helm.from_toolchain(progress=lambda message: print(f"[helm] {message}", file=sys.stderr))


@pytest.fixture(scope="module")
def kubectl() -> pathlib.Path:
    return build.ensure_binaries(components=[build.KUBE])["kubectl"]


def run_kubectl(kubectl: pathlib.Path, sandbox: sandbox_mod.SandboxInfo, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        [str(kubectl), "--kubeconfig", str(sandbox.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def make_namespace(kube: client.ApiClient, prefix: str, labels: dict[str, str] | None = None) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    meta = client.V1ObjectMeta(name=name, labels=labels)
    client.CoreV1Api(kube).create_namespace(client.V1Namespace(metadata=meta))
    return name


@contextlib.contextmanager
def installed(
    helm: chart.Helm, sandbox: sandbox_mod.SandboxInfo, kube: client.ApiClient, values: dict[str, Any]
) -> Iterator[tuple[str, str, float]]:
    """A release in a fresh restricted namespace: (release, namespace, seconds ``helm install`` took)."""
    namespace = make_namespace(kube, "vigil", RESTRICTED)
    release = f"v{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    try:
        helm.install(release, namespace, values, sandbox.kubeconfig)
        yield release, namespace, time.monotonic() - started
    finally:
        with contextlib.suppress(chart.ChartError):
            helm.uninstall(release, namespace, sandbox.kubeconfig)
        with contextlib.suppress(client.exceptions.ApiException):
            client.CoreV1Api(kube).delete_namespace(namespace)


def record(**numbers: Any) -> None:
    """Keep the measured numbers for the report (one JSON file, merged across tests)."""
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    data.update(numbers)
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True))


def statefulset_pods(kube: client.ApiClient, namespace: str, release: str) -> list[client.V1Pod]:
    selector = f"app.kubernetes.io/instance={release}"
    return list(client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector=selector).items)


def service_account_kubeconfig(
    kube: client.ApiClient, sandbox: sandbox_mod.SandboxInfo, namespace: str, account: str, path: pathlib.Path
) -> pathlib.Path:
    """A kubeconfig that authenticates as ``namespace/account`` with a TokenRequest token."""
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))
    token = client.CoreV1Api(kube).create_namespaced_service_account_token(account, namespace, request).status.token
    admin = yaml.safe_load(sandbox.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [{"name": account, "context": {"cluster": cluster["name"], "user": account}}],
                "current-context": account,
            }
        )
    )
    return path


def host_args(chart_args: list[str]) -> list[str]:
    """The chart's container arguments for a host process: no health or metrics ports to bind."""
    skip = ("--liveness=", "--metrics-port=", "--metrics-address=")
    return [a for a in chart_args if not a.startswith(skip)] + ["--liveness", "", "--metrics-port", "0"]


def operator_values(sandbox: sandbox_mod.SandboxInfo, watch: list[str]) -> dict[str, Any]:
    return {
        "watchNamespaces": watch,
        "prometheus": {"url": sandbox.prometheus_url},
        # Test deployments live minutes and the sandbox scrapes every 5 s (as the e2e operator fixture).
        "intervals": {"minWindow": "20s", "rateWindow": "30s", "baselineWindow": "10m", "resync": 10},
        # kwok's GPU nodes are tainted; tolerating it lets kwok play the operator pods' kubelet.
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "podMonitor": {"enabled": True},
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
    }


def test_helm_install_in_a_restricted_namespace_then_the_charts_service_account_heals_a_bad_release(
    helm: chart.Helm,
    sandbox: sandbox_mod.SandboxInfo,
    kube: client.ApiClient,
    namespace: str,
    sim: simclient.ControlClient,
    tmp_path: pathlib.Path,
) -> None:
    with installed(helm, sandbox, kube, operator_values(sandbox, [namespace])) as (release, home, seconds):
        record(helm_install_seconds=round(seconds, 2))
        docs = helm.manifest(release, home, sandbox.kubeconfig)
        assert {"PodMonitor", "ServiceMonitor", "PrometheusRule"} <= {d["kind"] for d in docs}

        # Pod Security admission let the chart's pods in, and would not let a careless one in.
        pods = waiting.until(lambda: (p := statefulset_pods(kube, home, release)) and len(p) == 2 and p, 60, "2 pods")
        running = waiting.until(
            lambda: all(p.status.phase == "Running" for p in statefulset_pods(kube, home, release)) or None,
            90,
            "the operator pods Running on kwok nodes",
        )
        assert running
        careless = client.V1Pod(
            metadata=client.V1ObjectMeta(name="careless"),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
        )
        with pytest.raises(client.exceptions.ApiException) as rejected:
            client.CoreV1Api(kube).create_namespaced_pod(home, careless, dry_run="All")
        assert rejected.value.status == 403
        assert 'violates PodSecurity "restricted:latest"' in json.loads(rejected.value.body)["message"]
        record(restricted_namespace_admitted=sorted(p.metadata.name for p in pods))

        # The operator, as the chart's ServiceAccount, with the chart's own arguments.
        statefulset = next(d for d in docs if d["kind"] == "StatefulSet")
        pod_spec = statefulset["spec"]["template"]["spec"]
        kubeconfig = service_account_kubeconfig(
            kube, sandbox, home, pod_spec["serviceAccountName"], tmp_path / "sa.kubeconfig"
        )
        log_path = tmp_path / "operator.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "vigil", "run", *host_args(pod_spec["containers"][0]["args"])],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"},
            )
        try:
            _, good = healthy_v1(kube, sim, namespace, "resnet")
            release_bad_v2(kube, sim, namespace, "resnet")
            incident = waiting.until(lambda: resolved(kube, namespace), 300, "the incident to resolve")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            print(log_path.read_text(errors="replace")[-4000:])
        md = get(kube, namespace, "resnet")
        assert md["spec"]["model"]["version"] == "2"
        assert md["status"]["currentRevision"] == good
        assert (condition(md, "RolledBack") or {}).get("status") == "True"
        assert step(incident, "rollback")["state"] == "Succeeded"
        logs = log_path.read_text(errors="replace")
        assert "Forbidden" not in logs, "the chart's RBAC must cover every call the operator makes"
        assert " 403 " not in logs


def can_i(kubectl: pathlib.Path, sandbox: sandbox_mod.SandboxInfo, who: str, *question: str) -> bool:
    proc = subprocess.run(
        [str(kubectl), "--kubeconfig", str(sandbox.kubeconfig), "auth", "can-i", f"--as={who}", *question],
        capture_output=True,
        text=True,
        timeout=30,
    )
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), proc.stderr
    return answer == "yes"


WORKLOAD_QUESTIONS = (
    ("list", "pods"),
    ("delete", "pods"),
    ("create", "deployments.apps"),
    ("patch", "deployments.apps"),
    ("delete", "deployments.apps"),
    ("get", "modeldeployments.vigil.dev"),
    ("list", "modeldeployments.vigil.dev"),
    ("patch", "modeldeployments.vigil.dev", "--subresource=status"),
    ("create", "incidents.vigil.dev"),
    ("get", "secrets"),
)
CLUSTER_KINDS = {"ClusterRole", "ClusterRoleBinding", "Namespace"}


def test_namespace_scoped_installs_cannot_touch_other_namespaces_and_do_not_fight(
    helm: chart.Helm,
    sandbox: sandbox_mod.SandboxInfo,
    kube: client.ApiClient,
    namespace: str,
    kubectl: pathlib.Path,
) -> None:
    other = make_namespace(kube, "t")
    try:
        with (
            installed(helm, sandbox, kube, operator_values(sandbox, [namespace])) as (release_a, home_a, _),
            installed(helm, sandbox, kube, operator_values(sandbox, [other])) as (release_b, home_b, seconds),
        ):
            record(helm_install_seconds_second_release=round(seconds, 2))
            manifests = {
                r: helm.manifest(r, h, sandbox.kubeconfig) for r, h in ((release_a, home_a), (release_b, home_b))
            }
            for docs in manifests.values():
                assert not CLUSTER_KINDS & {d["kind"] for d in docs}, "namespace mode renders nothing cluster-wide"
            account_a = next(d for d in manifests[release_a] if d["kind"] == "ServiceAccount")["metadata"]["name"]
            me = f"system:serviceaccount:{home_a}:{account_a}"
            # What the code needs, in its own namespace, and none of it in another install's namespaces.
            for question in WORKLOAD_QUESTIONS:
                assert can_i(kubectl, sandbox, me, *question, "-n", namespace), question
                for where in (other, home_b):
                    assert not can_i(kubectl, sandbox, me, *question, "-n", where), (where, question)
            # Nothing cluster-wide.
            for question in (
                ("list", "pods", "--all-namespaces"),
                ("list", "modeldeployments.vigil.dev", "--all-namespaces"),
                ("list", "nodes"),
                ("list", "namespaces"),
                ("list", "customresourcedefinitions.apiextensions.k8s.io"),
            ):
                assert not can_i(kubectl, sandbox, me, *question), question
            # No broader than needed in its own namespace either.
            assert not can_i(kubectl, sandbox, me, "update", "deployments.apps", "-n", namespace)
            assert not can_i(kubectl, sandbox, me, "patch", "modeldeployments.vigil.dev", "-n", namespace)
            # Side by side: each release owns its own objects, both deployed.
            rbac = client.RbacAuthorizationV1Api(kube)
            for release, watched in ((release_a, namespace), (release_b, other)):
                roles = rbac.list_namespaced_role(watched, label_selector=f"app.kubernetes.io/instance={release}")
                (role,) = roles.items
                assert role.metadata.annotations["meta.helm.sh/release-name"] == release
            status = json.loads(
                helm.run(["status", release_a, "-n", home_a, "-o", "json", "--kubeconfig", str(sandbox.kubeconfig)])
            )
            assert status["info"]["status"] == "deployed"
    finally:
        with contextlib.suppress(client.exceptions.ApiException):
            client.CoreV1Api(kube).delete_namespace(other)


@pytest.mark.parametrize("mode", ["cluster", "namespace"])
def test_rendered_manifests_pass_server_side_dry_run(
    helm: chart.Helm,
    sandbox: sandbox_mod.SandboxInfo,
    kube: client.ApiClient,
    namespace: str,
    kubectl: pathlib.Path,
    mode: str,
) -> None:
    values = {**chart.deploy_values(), **({"watchNamespaces": [namespace]} if mode == "namespace" else {})}
    docs = helm.template(values, release=f"dry-{mode}", namespace=namespace)
    text = yaml.safe_dump_all(docs)
    out = run_kubectl(kubectl, sandbox, "apply", "--server-side", "--dry-run=server", "-f", "-", stdin=text)
    applied = [line for line in out.splitlines() if line.strip()]
    assert len(applied) == len(docs), out
    assert all("serverside-applied (server dry run)" in line for line in applied), out


def test_kubectl_apply_of_crds_and_deploy_installs_vigil_in_a_restricted_namespace(
    sandbox: sandbox_mod.SandboxInfo, kube: client.ApiClient, kubectl: pathlib.Path
) -> None:
    root = chart.CHECKOUT
    args = ["apply", "--server-side", "-f", str(root / "crds"), "-f", str(chart.DEPLOY_DIR)]
    try:
        run_kubectl(kubectl, sandbox, *args, "-f", str(chart.DEPLOY_DIR / "monitoring"))
        pods = waiting.until(
            lambda: statefulset_pods(kube, chart.DEPLOY_NAMESPACE, chart.DEPLOY_RELEASE) or None,
            60,
            "the StatefulSet's pods admitted in vigil-system (restricted)",
        )
        assert len(pods) == 2
        namespace = client.CoreV1Api(kube).read_namespace(chart.DEPLOY_NAMESPACE)
        assert namespace.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
        role = client.RbacAuthorizationV1Api(kube).read_cluster_role(chart.DEPLOY_RELEASE)
        assert any("nodes" in rule.resources for rule in role.rules)
        found = client.CustomObjectsApi(kube).list_namespaced_custom_object(
            "monitoring.coreos.com", "v1", chart.DEPLOY_NAMESPACE, "podmonitors"
        )
        assert [m["metadata"]["name"] for m in found["items"]] == ["vigil-triton"]
    finally:
        with contextlib.suppress(AssertionError):
            run_kubectl(
                kubectl,
                sandbox,
                "delete",
                "--wait=false",
                "-f",
                str(chart.DEPLOY_DIR / "monitoring"),
                "-f",
                str(chart.DEPLOY_DIR),
            )
