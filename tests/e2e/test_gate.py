"""The golden-request gate on the sandbox: no new revision takes traffic before its pods answer right.

The real operator (a subprocess, so it can be SIGKILLed) reaches every simulated pod's KServe v2
endpoint with ``tritonclient.http.aio`` through the simulator, the way it reaches ``<podIP>:8000``
in a cluster. The golden set lives in a ConfigMap as ``vigil golden`` writes it. The simulator
routes user traffic by the Service the operator renders and counts requests per pod, so "answers
zero user requests" is measured, not inferred. No SLOs and no Prometheus: the gate needs neither.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.e2e import fleet, waiting
from tests.e2e.operator_fixtures import OperatorProcess
from tests.e2e.test_modeldeployment import GROUP, PLURAL, VERSION, condition, create, get, manifest
from tests.unit import gatekit
from vigil.dev import sandbox as sandbox_mod
from vigil.gate import goldenset
from vigil.sim import client as simclient

pytestmark = [pytest.mark.e2e, pytest.mark.isolated]

NAME = "resnet"
GOLDEN = "resnet-golden"
RATE = 20.0
SETTLE = 60  # seconds for a rollout: pods Ready 2 s after start, golden requests well under a second


@pytest.fixture(scope="module")
def gate_operator(
    sandbox: sandbox_mod.SandboxInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """This module's own operator: no Prometheus (no SLOs here), pods reached through the simulator."""
    proc = OperatorProcess(
        str(sandbox.kubeconfig), tmp_path_factory.mktemp("gate-operator"), None, inference_url=sandbox.inference_url
    )
    proc.start()
    yield proc
    proc.stop()
    print(proc.logs()[-3000:])


def store_golden(kube: client.ApiClient, ns: str, golden: goldenset.GoldenSet) -> None:
    body = goldenset.configmap_manifest(golden, GOLDEN, ns)
    client.CoreV1Api(kube).create_namespaced_config_map(ns, body)


def validation(**fields: Any) -> dict[str, Any]:
    return {"goldenSet": {"configMapRef": {"name": GOLDEN}}, "requests": 64, **fields}


def deploy(kube: client.ApiClient, ns: str, version: str = "1", **spec: Any) -> None:
    spec.setdefault("validation", validation())
    create(kube, ns, manifest(NAME, version=version, triton=fleet.NO_GPU, **spec))


def patch_spec(kube: client.ApiClient, ns: str, spec: dict[str, Any]) -> None:
    client.CustomObjectsApi(kube).patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, NAME, {"spec": spec})


def revision(md: dict[str, Any], version: str) -> dict[str, Any] | None:
    """The newest revision record of a model version."""
    found = [r for r in md.get("status", {}).get("revisions", []) if r["modelVersion"] == version]
    return found[-1] if found else None


def phase(md: dict[str, Any], version: str) -> str | None:
    record = revision(md, version)
    return (record or {}).get("validation", {}).get("phase")


def selected(kube: client.ApiClient, ns: str) -> str | None:
    """The revision the stable Service sends user traffic to (None: no Service yet)."""
    try:
        service = client.CoreV1Api(kube).read_namespaced_service(NAME, ns)
    except client.exceptions.ApiException:
        return None
    return (service.spec.selector or {}).get("vigil.dev/revision")


def serving(kube: client.ApiClient, ns: str, version: str) -> dict[str, Any] | None:
    """The md once ``version`` serves: its revision is current and the Service selects it."""
    md = get(kube, ns, NAME)
    record = revision(md, version)
    if record is None or md["status"].get("currentRevision") != record["name"]:
        return None
    return md if selected(kube, ns) == record["name"] else None


def requests_by_revision(sim: simclient.ControlClient, ns: str) -> dict[str, int]:
    """Requests each revision's pods answered (user traffic and golden requests alike)."""
    totals: dict[str, int] = {}
    for pod in sim.state()["pods"]:
        if pod["namespace"] == ns and pod["modeldeployment"] == NAME:
            rev = str(pod["revision"])
            totals[rev] = totals.get(rev, 0) + int(pod["success"]) + sum(pod["failure"].values())
    return totals


def events(kube: client.ApiClient, ns: str, reason: str) -> list[str]:
    listed = client.CoreV1Api(kube).list_namespaced_event(ns, field_selector=f"reason={reason}")
    return [e.message for e in listed.items]


def gate_seconds(kube: client.ApiClient, ns: str, rev: str) -> float:
    """How long the golden requests took, as the operator's ValidationPassed Event says."""
    for message in events(kube, ns, "ValidationPassed"):
        match = re.search(r"\(([0-9.]+)s\)$", message)
        if message.startswith(f"revision {rev}:") and match:
            return float(match.group(1))
    raise AssertionError(f"no ValidationPassed event for {rev}")


def at(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def serving_v1(kube: client.ApiClient, ns: str, sim: simclient.ControlClient, **spec: Any) -> dict[str, Any]:
    store_golden(kube, ns, gatekit.golden_set(count=64, shape=(1, 16)))
    deploy(kube, ns, **spec)
    md = waiting.until(lambda: serving(kube, ns, "1"), SETTLE, "v1 validated and serving")
    sim.set_load({"namespace": ns, "name": NAME, "rate": RATE})
    return md


def test_a_good_version_passes_its_golden_requests_before_it_takes_traffic(
    kube: client.ApiClient,
    namespace: str,
    gate_operator: OperatorProcess,
    sim: simclient.ControlClient,
    record_property: Any,
) -> None:
    md = serving_v1(kube, namespace, sim)
    v1 = revision(md, "1")
    assert v1 is not None
    assert v1["validation"]["phase"] == "Passed"
    assert v1["validation"]["requests"] == 64
    assert len(v1["validation"]["pods"]) == 2
    assert (condition(md, "Validated") or {}).get("status") == "True"
    patch_spec(kube, namespace, {"model": {"version": "2"}})
    md = waiting.until(lambda: serving(kube, namespace, "2"), SETTLE, "v2 validated and serving")
    v2 = revision(md, "2")
    assert v2 is not None
    assert v2["validation"]["phase"] == "Passed"
    assert at(md["status"]["switchedAt"]) >= at(v2["validation"]["finished"])  # the verdict came first
    seconds = gate_seconds(kube, namespace, v2["name"])
    record_property("gate", f"{seconds:.2f}s for 64 golden requests x 2 pods")
    assert seconds < 30


def test_a_version_that_answers_with_errors_is_blocked_and_serves_no_user(
    kube: client.ApiClient, namespace: str, gate_operator: OperatorProcess, sim: simclient.ControlClient
) -> None:
    serving_v1(kube, namespace, sim)
    sim.set_fault({"namespace": namespace, "name": NAME, "version": "2", "errorRatio": 1.0})
    patch_spec(kube, namespace, {"model": {"version": "2"}})
    md = waiting.until(lambda: phase(get(kube, namespace, NAME), "2") == "Failed" or None, SETTLE, "v2 Failed")
    v1, v2 = revision(md, "1"), revision(md, "2")
    assert v1 is not None
    assert v2 is not None
    validated = condition(md, "Validated") or {}
    assert (validated.get("status"), validated.get("reason")) == ("False", "InferenceError")
    incident_name = v2["validation"]["incident"]
    incident = waiting.until(
        lambda: client.CustomObjectsApi(kube).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "incidents", incident_name
        ),
        30,
        "the BadModel incident",
    )
    assert incident["status"]["diagnosis"]["cause"] == "BadModel"
    # Traffic never moved: v2 scales to zero, the Service keeps selecting v1, and v2's pods saw only
    # the golden requests (each answered with an error), no user request.
    waiting.until(lambda: not [p for p in sim.state()["pods"] if p["revision"] == v2["name"]], SETTLE, "v2 gone")
    assert selected(kube, namespace) == v1["name"]
    assert get(kube, namespace, NAME)["status"]["currentRevision"] == v1["name"]
    progressing = condition(get(kube, namespace, NAME), "Progressing") or {}
    assert (progressing.get("status"), progressing.get("reason")) == ("False", "ValidationFailed")


def test_a_pod_that_times_out_is_not_validated_until_it_answers(
    kube: client.ApiClient, namespace: str, gate_operator: OperatorProcess, sim: simclient.ControlClient
) -> None:
    serving_v1(kube, namespace, sim, validation=validation(timeout="1s", requests=8))
    sim.set_fault({"namespace": namespace, "name": NAME, "version": "2", "baseLatencyMs": 3000})
    patch_spec(kube, namespace, {"model": {"version": "2"}})
    md = waiting.until(
        lambda: phase(get(kube, namespace, NAME), "2") == "NotValidated" or None, SETTLE, "v2 NotValidated"
    )
    validated = condition(md, "Validated") or {}
    assert (validated.get("status"), validated.get("reason")) == ("Unknown", "PodTimeout")
    v1 = revision(md, "1")
    assert v1 is not None
    assert selected(kube, namespace) == v1["name"]
    sim.clear_faults(namespace, NAME, "2")
    waiting.until(lambda: serving(kube, namespace, "2"), SETTLE, "v2 serving once its pods answer in time")


def test_an_operator_killed_mid_validation_validates_again_before_moving_traffic(
    kube: client.ApiClient, namespace: str, gate_operator: OperatorProcess, sim: simclient.ControlClient
) -> None:
    serving_v1(kube, namespace, sim, validation=validation(timeout="5s"))
    # Each golden request takes ~0.8 s: 64 of them, 8 in flight, hold the validation for ~6 s.
    sim.set_fault({"namespace": namespace, "name": NAME, "version": "2", "baseLatencyMs": 800})
    patch_spec(kube, namespace, {"model": {"version": "2"}})
    waiting.until(lambda: phase(get(kube, namespace, NAME), "2") == "Validating" or None, SETTLE, "v2 Validating")
    gate_operator.kill()
    killed = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    md = get(kube, namespace, NAME)
    v1, v2 = revision(md, "1"), revision(md, "2")
    assert v1 is not None
    assert v2 is not None
    assert md["status"]["currentRevision"] == v1["name"]
    assert selected(kube, namespace) == v1["name"]
    sim.clear_faults(namespace, NAME, "2")
    gate_operator.start()
    md = waiting.until(lambda: serving(kube, namespace, "2"), SETTLE, "v2 serving after the restart")
    record = revision(md, "2")
    assert record is not None
    assert record["validation"]["phase"] == "Passed"
    assert at(record["validation"]["started"]) >= killed  # validated again from the start
    assert at(md["status"]["switchedAt"]) >= at(record["validation"]["finished"])


def test_a_model_with_several_inputs_and_outputs_is_compared_output_by_output(
    kube: client.ApiClient, namespace: str, gate_operator: OperatorProcess, sim: simclient.ControlClient
) -> None:
    golden = gatekit.golden_set(count=16, names=(("IMAGE", "LOGITS"), ("META", "EMBEDDING")), shape=(1, 8))
    store_golden(kube, namespace, golden)
    deploy(kube, namespace, validation=validation(requests=16))
    md = waiting.until(lambda: serving(kube, namespace, "1"), SETTLE, "v1 validated and serving")
    record = revision(md, "1")
    assert record is not None
    outputs = {o["name"]: o for o in record["validation"]["outputs"]}
    assert set(outputs) == {"LOGITS", "EMBEDDING"}
    assert all(o["passed"] and o["requests"] == 32 for o in outputs.values())


def test_a_rollback_to_last_known_good_is_never_gated(
    kube: client.ApiClient, namespace: str, gate_operator: OperatorProcess, sim: simclient.ControlClient
) -> None:
    serving_v1(kube, namespace, sim)
    waiting.until(
        lambda: (revision(get(kube, namespace, NAME), "1") or {}).get("lastKnownGood"), SETTLE, "v1 last-known-good"
    )
    patch_spec(kube, namespace, {"model": {"version": "2"}})
    waiting.until(lambda: serving(kube, namespace, "2"), SETTLE, "v2 serving")
    # From now on nothing can pass the gate: the golden set is gone.
    client.CoreV1Api(kube).delete_namespaced_config_map(GOLDEN, namespace)
    before = revision(get(kube, namespace, NAME), "1")
    assert before is not None
    patch_spec(kube, namespace, {"model": {"version": "1"}})
    md = waiting.until(lambda: serving(kube, namespace, "1"), SETTLE, "v1 serving again")
    validated = condition(md, "Validated") or {}
    assert (validated.get("status"), validated.get("reason")) == ("True", "RollbackNotGated")
    after = revision(md, "1")
    assert after is not None
    assert after["validation"] == before["validation"]  # no golden request was needed
