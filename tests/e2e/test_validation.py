"""End to end: every malformed manifest is refused naming its field, and nothing else is disturbed.

Each case of :mod:`tests.validation_cases` is created on the real API server (with strict field
validation, as kubectl does by default). Most are refused there, by the CRD's OpenAPI schema or
its CEL rules; the few that only a running operator can judge are accepted and must come back as
``Degraded=True``/``InvalidSpec`` naming the field. Throughout the table a healthy neighbour with an
SLO, in the same namespace and under real traffic, keeps every condition exactly as it was, and
the operator neither exits nor logs a traceback.

Set ``VIGIL_VALIDATION_REPORT`` to a path to get the table of cases and refusals as Markdown.

Then: Triton pods that vigil renders are admitted in a namespace that enforces the ``restricted``
Pod Security Standard, and a spec whose pods that namespace refuses is reported on the
ModelDeployment with the API server's own message (Degraded, reason FailedCreate).

Isolated lane: the module's operator watches only this session's namespaces and is judged by the
lane's own Prometheus; the pods are CPU-only (``triton: {gpus: 0}``). The table's manifests ask
for a GPU, but none is accepted and valid, so none runs a pod (the operator cases are asserted to
create no Deployment).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests import validation_cases as cases
from tests.e2e import operator_fixtures, waiting
from tests.e2e.operator_fixtures import OperatorProcess
from tests.e2e.test_heal import CPU_ONLY
from tests.e2e.test_modeldeployment import GROUP, PLURAL, VERSION, condition, condition_is, create, get, manifest
from tests.e2e.test_observe import deploy_and_warm
from vigil.dev import sandbox as sandbox_mod
from vigil.sim import client as simclient

pytestmark = [pytest.mark.e2e, pytest.mark.isolated]

PLURALS = {"ModelDeployment": PLURAL, "Runbook": "runbooks"}
REFUSALS: list[tuple[cases.Case, str, str]] = []


def refused_by(message: str) -> str:
    """Which part of the API server refused a manifest, from its message."""
    if "unknown field" in message:
        return "strict"
    if "Duplicate value" in message:
        return "list"
    openapi = r"in body should|Unsupported value|Required value|must be of type|Too many|should have at (most|least)"
    if re.search(openapi, message):
        return "openapi"
    return "cel" if "Invalid value" in message else "unknown"


def snapshot(md: dict[str, Any]) -> dict[str, Any]:
    """What must not move on the neighbour: its conditions with their transition times, its
    generation and revision, and its SLO states."""
    status = md.get("status", {})
    return {
        "generation": md["metadata"]["generation"],
        "observedGeneration": status.get("observedGeneration"),
        "currentRevision": status.get("currentRevision"),
        "conditions": sorted(
            (c["type"], c["status"], c["reason"], c["lastTransitionTime"]) for c in status.get("conditions", [])
        ),
        "slos": sorted((s["name"], s["state"]) for s in status.get("slos", [])),
    }


@pytest.fixture(scope="module")
def table_namespace(kube: client.ApiClient) -> Iterator[str]:
    """One namespace for the whole table, so the neighbour lives beside every malformed object."""
    with operator_fixtures.scoped_namespace(kube) as name:  # inside the test operator's scope
        yield name


@pytest.fixture(scope="module")
def neighbour(
    kube: client.ApiClient, table_namespace: str, operator: OperatorProcess, sandbox: sandbox_mod.SandboxInfo
) -> dict[str, Any]:
    """A healthy ModelDeployment with an SLO under clean traffic: Available, SLO Met. Its snapshot."""
    sim = simclient.ControlClient(sandbox.simulator_url)
    md = deploy_and_warm(kube, sim, table_namespace, "neighbour", triton=CPU_ONLY)
    assert (condition(md, "Available") or {}).get("status") == "True"
    return snapshot(get(kube, table_namespace, "neighbour"))


def create_refused(kube: client.ApiClient, namespace: str, case: cases.Case) -> client.exceptions.ApiException:
    body = cases.manifest(case, "bad")
    with pytest.raises(client.exceptions.ApiException) as raised:
        client.CustomObjectsApi(kube).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURALS[case.kind], body, field_validation="Strict"
        )
    return raised.value


def invalid_spec(kube: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    md = get(kube, namespace, name)
    degraded = condition(md, "Degraded")
    current = md.get("status", {}).get("observedGeneration") == md["metadata"]["generation"]
    if degraded and degraded["status"] == "True" and degraded["reason"] == "InvalidSpec" and current:
        return degraded
    return None


def warning_events(kube: client.ApiClient, namespace: str, name: str) -> list[Any]:
    events = client.CoreV1Api(kube).list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return [e for e in events.items if e.type == "Warning" and e.reason == "InvalidSpec"]


@pytest.mark.parametrize("case", cases.CASES, ids=[c.id for c in cases.CASES])
def test_malformed_manifest_is_refused_naming_the_field_and_the_neighbour_is_untouched(
    kube: client.ApiClient,
    table_namespace: str,
    neighbour: dict[str, Any],
    operator: OperatorProcess,
    case: cases.Case,
) -> None:
    if case.by == "operator":
        name = f"op-{cases.CASES.index(case)}"
        create(kube, table_namespace, cases.manifest(case, name))  # the API server accepts it
        degraded = waiting.until(lambda: invalid_spec(kube, table_namespace, name), 60, f"{name} InvalidSpec")
        assert cases.names_field(degraded["message"], case.field), degraded["message"]
        events = waiting.until(lambda: warning_events(kube, table_namespace, name), 30, "an InvalidSpec Warning")
        assert cases.names_field(events[0].message, case.field)
        selector = f"vigil.dev/modeldeployment={name}"
        assert not client.AppsV1Api(kube).list_namespaced_deployment(table_namespace, label_selector=selector).items
        REFUSALS.append((case, "operator: Degraded/InvalidSpec", degraded["message"]))
    else:
        error = create_refused(kube, table_namespace, case)
        message = json.loads(error.body)["message"]
        assert error.status in (400, 422), error.body
        assert cases.names_field(message, case.field), message
        assert refused_by(message) == case.by, message
        REFUSALS.append((case, f"API server: {case.by}", message))
    assert operator.alive()
    assert snapshot(get(kube, table_namespace, "neighbour")) == neighbour


def test_the_operator_survived_the_whole_table_and_the_neighbour_still_serves(
    kube: client.ApiClient, table_namespace: str, neighbour: dict[str, Any], operator: OperatorProcess
) -> None:
    assert operator.alive()
    logs = "\n".join(p.read_text(errors="replace") for p in sorted(operator.log_dir.glob("operator-*.log")))
    assert "Traceback" not in logs
    md = get(kube, table_namespace, "neighbour")
    assert snapshot(md) == neighbour
    assert (condition(md, "Available") or {}).get("status") == "True"
    assert (condition(md, "Degraded") or {}).get("reason") != "InvalidSpec"
    report = os.environ.get("VIGIL_VALIDATION_REPORT")
    if report and REFUSALS:
        write_report(pathlib.Path(report))


def write_report(path: pathlib.Path) -> None:
    by_how: dict[str, int] = {}
    for _, how, _ in REFUSALS:
        by_how[how] = by_how.get(how, 0) + 1
    lines = [
        "# Malformed manifests tried on the sandbox (tests/e2e/test_validation.py)",
        "",
        f"{len(REFUSALS)} manifests, each refused naming its field: "
        + ", ".join(f"{n} by {how}" for how, n in sorted(by_how.items()))
        + ". A healthy neighbour (SLO Met under traffic) kept every condition; the operator never exited "
        "nor logged a traceback.",
        "",
        "| case | kind | field | refused by | message |",
        "|---|---|---|---|---|",
    ]
    for case, how, message in REFUSALS:
        text = message.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {case.id} | {case.kind} | `{case.field}` | {how} | {text[:300]} |")
    path.write_text("\n".join(lines) + "\n")


def restrict(core: client.CoreV1Api, namespace: str) -> None:
    """Enforce the ``restricted`` Pod Security Standard in ``namespace``."""
    enforce = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    core.patch_namespace(namespace, {"metadata": {"labels": enforce}})


def test_a_modeldeployment_in_a_restricted_namespace_gets_its_pods_admitted_and_ready(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    core = client.CoreV1Api(kube)
    restrict(core, namespace)
    # The control: a pod without a hardened securityContext is refused there.
    plain = client.V1Pod(
        metadata=client.V1ObjectMeta(name="plain"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nvcr.io/nvidia/tritonserver:25.01-py3")]),
    )
    with pytest.raises(client.exceptions.ApiException) as raised:
        core.create_namespaced_pod(namespace, plain)
    assert raised.value.status == 403
    assert "violates PodSecurity" in raised.value.body

    create(kube, namespace, manifest("secure", replicas=2, triton=CPU_ONLY))
    waiting.until(
        lambda: (condition(get(kube, namespace, "secure"), "Available") or {}).get("status") == "True",
        120,
        "Available=True in a restricted namespace",
    )
    pods = core.list_namespaced_pod(namespace, label_selector="vigil.dev/modeldeployment=secure").items
    ready = [p for p in pods if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
    assert len(ready) == 2
    for pod in ready:
        assert pod.spec.security_context.run_as_non_root is True
        assert pod.spec.security_context.seccomp_profile.type == "RuntimeDefault"
        container = pod.spec.containers[0].security_context
        assert container.allow_privilege_escalation is False
        assert container.capabilities.drop == ["ALL"]
    assert operator.alive()


def test_pods_refused_by_pod_security_degrade_the_modeldeployment_with_the_api_servers_message(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    """No pod exists to show why, so the revision Deployment's ReplicaFailure is what the user sees."""
    core = client.CoreV1Api(kube)
    restrict(core, namespace)
    create(
        kube,
        namespace,
        manifest("loose", replicas=1, triton={**CPU_ONLY, "securityContext": {"allowPrivilegeEscalation": True}}),
    )

    def refused() -> dict[str, Any] | None:
        found = condition(get(kube, namespace, "loose"), "Degraded") or {}
        return found if (found.get("status"), found.get("reason")) == ("True", "FailedCreate") else None

    degraded = waiting.until(refused, 120, "Degraded=True FailedCreate")
    assert 'violates PodSecurity "restricted:latest"' in degraded["message"]
    assert "allowPrivilegeEscalation" in degraded["message"]
    assert (condition(get(kube, namespace, "loose"), "Available") or {}).get("status") == "False"

    def warned() -> bool:
        events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=loose").items
        return any(e.type == "Warning" and "violates PodSecurity" in (e.message or "") for e in events)

    waiting.until(warned, 30, "a Warning Event with the API server's message")  # posted after the status write

    # The user complies: a new revision is admitted and serves, and the condition says so.
    client.CustomObjectsApi(kube).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "loose", {"spec": {"triton": {"securityContext": None}}}
    )
    waiting.until(lambda: condition_is(kube, namespace, "loose", "Available", "True"), 120, "Available=True")
    assert (condition(get(kube, namespace, "loose"), "Degraded") or {}).get("status") == "False"
    assert operator.alive()


def test_kubectl_scale_beyond_max_replicas_is_refused_naming_spec_replicas(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    """The scale subresource writes spec.replicas, and the same CEL rule guards it."""
    create(kube, namespace, manifest("capped", replicas=1, maxReplicas=2, triton=CPU_ONLY))
    with pytest.raises(client.exceptions.ApiException) as raised:
        client.CustomObjectsApi(kube).patch_namespaced_custom_object_scale(
            GROUP, VERSION, namespace, PLURAL, "capped", {"spec": {"replicas": 5}}
        )
    assert raised.value.status == 422, raised.value.body
    assert "spec.replicas must be <= spec.maxReplicas" in json.loads(raised.value.body)["message"]
    assert get(kube, namespace, "capped")["spec"]["replicas"] == 1
