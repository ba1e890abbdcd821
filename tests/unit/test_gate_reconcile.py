"""The gate through the operator's real reconcile (``operator.reconcile``), against an in-memory
cluster and a KServe v2 server on loopback: verdicts durable before traffic moves, BadModel
Incidents created exactly once (crashes and failed writes included) and resolved when superseded."""

from __future__ import annotations

import copy
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.unit import fakekube, gatekit
from vigil.api import validation as vapi
from vigil.diagnose import pods as podfacts
from vigil.reconcile import operator as op
from vigil.render import revision as revisions

NS, NAME = "ml", "resnet"
MODEL = {"name": gatekit.MODEL, "repository": "s3://models/resnet"}


def spec(version: str, **validation: Any) -> dict[str, Any]:
    return {
        "model": {**MODEL, "version": version},
        "replicas": 2,
        "validation": {"goldenSet": {"configMapRef": {"name": "golden"}}, "timeout": "10s", **validation},
    }


def revision_of(version: str) -> str:
    from vigil.api import modeldeployment as mdapi

    return revisions.revision_of(mdapi.ModelDeploymentSpec.model_validate(spec(version)))


@pytest.fixture
def pods() -> dict[str, gatekit.Pod]:
    # The model behaves by revision: the Deployment's name prefixes its pods' names.
    return {f"{NAME}-{revision_of('1')}": gatekit.Pod(), f"{NAME}-{revision_of('3')}": gatekit.Pod()}


@pytest.fixture
async def address(pods: dict[str, gatekit.Pod]) -> AsyncIterator[str]:
    async for served in gatekit.serve(pods):
        yield served


@pytest.fixture
def kube() -> fakekube.FakeKube:
    fake = fakekube.FakeKube()
    fake.objects[("modeldeployments", NS, NAME)] = {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": NS, "generation": 1, "uid": "uid-1"},
        "spec": spec("1"),
        "status": {},
    }
    golden = gatekit.golden_set(count=16)
    fake.config_maps[(NS, "golden")] = {"golden.json": golden.dumps()}
    return fake


def physics(kube: fakekube.FakeKube) -> None:
    """The cluster's side: each revision Deployment runs its replicas as Ready pods."""
    kube.pods = [
        podfacts.PodFacts(name=f"{NAME}-{rev}-{i}", revision=rev, phase="Running", ready=True)
        for rev, deployment in sorted(kube.deployments.items())
        for i in range(deployment["spec"]["replicas"])
    ]


def md(kube: fakekube.FakeKube) -> dict[str, Any]:
    return kube.objects[("modeldeployments", NS, NAME)]


def edit(kube: fakekube.FakeKube, new_spec: dict[str, Any]) -> None:
    body = md(kube)
    body["spec"] = new_spec
    body["metadata"]["generation"] += 1


def revision_status(kube: fakekube.FakeKube, rev: str) -> dict[str, Any]:
    return next(r for r in md(kube)["status"]["revisions"] if r["name"] == rev)


async def passes(runtime: op.Runtime, kube: fakekube.FakeKube, count: int) -> None:
    for _ in range(count):
        await op.reconcile(runtime, (NS, NAME))
        await runtime.poster.flush()  # the Events it decided, posted beside it
        physics(kube)


def runtime_for(kube: fakekube.FakeKube, address: str) -> op.Runtime:
    settings = op.Settings(standalone=True, inference_url=f"{address}/pods/{{pod}}")
    return op.Runtime(settings=settings, kube=kube)  # type: ignore[arg-type]


async def serving_v1(kube: fakekube.FakeKube, runtime: op.Runtime) -> str:
    await passes(runtime, kube, 3)
    v1 = revision_of("1")
    assert md(kube)["status"]["currentRevision"] == v1
    return v1


async def bad_rollout(kube: fakekube.FakeKube, address: str, pods: dict[str, gatekit.Pod]) -> tuple[op.Runtime, str]:
    """v1 serves; the spec moves to v2, whose model answers 0.25 off."""
    runtime = runtime_for(kube, address)
    await serving_v1(kube, runtime)
    v2 = revision_of("2")
    pods[f"{NAME}-{v2}"] = gatekit.Pod(delta=0.25)
    edit(kube, spec("2"))
    return runtime, v2


async def test_a_good_first_revision_is_served_only_after_its_verdict_was_written(
    kube: fakekube.FakeKube, address: str, pods: dict[str, gatekit.Pod]
) -> None:
    runtime = runtime_for(kube, address)
    v1 = await serving_v1(kube, runtime)
    writes = [w.get("currentRevision") for w in kube.md_status_writes]
    first_serving = writes.index(v1)
    verdicts = [
        next((r.get("validation", {}).get("phase") for r in w.get("revisions", []) if r["name"] == v1), None)
        for w in kube.md_status_writes
    ]
    assert "Passed" in verdicts[:first_serving]  # the verdict was durable before traffic moved
    assert sum(p.requests for p in pods.values()) == 32  # 16 golden requests x 2 pods
    validated = next(c for c in md(kube)["status"]["conditions"] if c["type"] == "Validated")
    assert validated["status"] == "True"
    assert any(e[2] == "ValidationPassed" for e in kube.events)


async def test_a_bad_revision_is_blocked_and_recorded_in_one_bad_model_incident(
    kube: fakekube.FakeKube, address: str, pods: dict[str, gatekit.Pod]
) -> None:
    runtime, v2 = await bad_rollout(kube, address, pods)
    v1 = revision_of("1")
    await passes(runtime, kube, 4)
    status = md(kube)["status"]
    assert status["currentRevision"] == v1
    assert kube.deployments[v2]["spec"]["replicas"] == 0
    validation = revision_status(kube, v2)["validation"]
    assert validation["phase"] == "Failed"
    assert validation["incidentState"] == "Recorded"
    (incident,) = kube.incidents()
    assert incident["metadata"]["name"] == validation["incident"]
    assert incident["spec"]["slo"] == "GoldenRequests"
    assert incident["spec"]["revision"] == v2
    diagnosis = incident["status"]["diagnosis"]
    assert diagnosis["cause"] == "BadModel"
    assert any(
        "OUTPUT__0: 32/32 answers out of tolerance; max abs error 0.25" in e["message"] for e in diagnosis["evidence"]
    )
    assert any(e[2] == "ValidationFailed" for e in kube.events)
    # Resyncs of the same generation send nothing more and open nothing more.
    sent = pods[f"{NAME}-{v2}"].requests
    await passes(runtime, kube, 3)
    assert pods[f"{NAME}-{v2}"].requests == sent
    assert len(kube.incidents()) == 1


@pytest.mark.parametrize("fault", ["server-500", "timeout-after-write"])
async def test_a_failed_incident_create_is_retried_and_creates_exactly_one(
    kube: fakekube.FakeKube, address: str, pods: dict[str, gatekit.Pod], fault: str
) -> None:
    runtime, v2 = await bad_rollout(kube, address, pods)
    original = kube.create_custom
    failed: list[str] = []

    async def flaky(plural: str, namespace: str, body: dict[str, Any]) -> None:
        if not failed:
            failed.append(body["metadata"]["name"])
            error = fakekube.FAULTS[fault]
            if error.after:
                await original(plural, namespace, body)
            raise error.error
        await original(plural, namespace, body)

    kube.create_custom = flaky  # type: ignore[method-assign]
    await passes(runtime, kube, 5)
    assert failed
    (incident,) = kube.incidents()
    assert incident["metadata"]["name"] == failed[0]
    assert incident["status"]["diagnosis"]["cause"] == "BadModel"
    assert revision_status(kube, v2)["validation"]["incidentState"] == "Recorded"


async def test_an_operator_restarted_mid_validation_validates_again_before_moving_traffic(
    kube: fakekube.FakeKube, address: str, pods: dict[str, gatekit.Pod]
) -> None:
    runtime = runtime_for(kube, address)
    v1 = await serving_v1(kube, runtime)
    v3 = revision_of("3")
    edit(kube, spec("3"))
    await passes(runtime, kube, 1)  # v3's Deployment is created; its pods come up
    # The next pass records Validating, then dies before any verdict: the status it leaves behind.
    runtime.kube = kube  # type: ignore[assignment]
    crashed = copy.deepcopy(md(kube))

    async def dead(*_: Any, **__: Any) -> Any:
        raise SystemExit("SIGKILL")

    original = op.validate.run
    op.validate.run = dead  # type: ignore[assignment]
    try:
        with pytest.raises(SystemExit):
            await op._reconcile(runtime, NS, NAME)
    finally:
        op.validate.run = original  # type: ignore[assignment]
    assert revision_status(kube, v3)["validation"]["phase"] == "Validating"
    assert md(kube)["status"]["currentRevision"] == v1
    assert crashed["status"]["currentRevision"] == v1
    sent = pods[f"{NAME}-{v3}"].requests
    successor = runtime_for(kube, address)
    await op.reconcile(successor, (NS, NAME))
    await successor.poster.flush()  # the Events it decided, posted beside it
    assert pods[f"{NAME}-{v3}"].requests == sent + 32  # validated again, from the start
    assert revision_status(kube, v3)["validation"]["phase"] == "Passed"
    assert md(kube)["status"]["currentRevision"] == v1  # the verdict is written; traffic moves next
    await op.reconcile(successor, (NS, NAME))
    await successor.poster.flush()  # the Events it decided, posted beside it
    assert md(kube)["status"]["currentRevision"] == v3


async def test_a_new_good_generation_resolves_the_bad_model_incident(
    kube: fakekube.FakeKube, address: str, pods: dict[str, gatekit.Pod]
) -> None:
    runtime, _v2 = await bad_rollout(kube, address, pods)
    await passes(runtime, kube, 4)
    edit(kube, spec("3"))
    await passes(runtime, kube, 4)
    assert md(kube)["status"]["currentRevision"] == revision_of("3")
    (incident,) = kube.incidents()
    assert incident["status"]["phase"] == "Resolved"
    assert "superseded: the spec now asks for revision" in incident["status"]["timeline"][-1]["message"]
    assert any(e[2] == "IncidentResolved" for e in kube.events)


async def test_a_missing_golden_set_keeps_traffic_and_names_the_field(kube: fakekube.FakeKube, address: str) -> None:
    runtime = runtime_for(kube, address)
    v1 = await serving_v1(kube, runtime)
    del kube.config_maps[(NS, "golden")]
    edit(kube, spec("3"))
    await passes(runtime, kube, 4)
    status = md(kube)["status"]
    assert status["currentRevision"] == v1
    validated = next(c for c in status["conditions"] if c["type"] == "Validated")
    assert validated["status"] == "Unknown"
    assert validated["reason"] == "GoldenSetUnavailable"
    assert (
        "spec.validation.goldenSet.configMapRef: ConfigMap ml/golden key golden.json: no such ConfigMap"
        in (validated["message"])
    )
    assert revision_status(kube, revision_of("3"))["validation"]["phase"] == vapi.ValidationPhase.NOT_VALIDATED


def in_repository(root: pathlib.Path, version: str, path: str) -> dict[str, Any]:
    """A spec whose golden set lives in the (local) model repository, at ``path`` beside the model."""
    model = {"name": gatekit.MODEL, "repository": f"file://{root}", "version": version}
    return {**spec(version, goldenSet={"path": path}), "model": model}


async def test_a_golden_set_in_the_mounted_model_repository_gates_and_a_missing_one_names_the_field(
    kube: fakekube.FakeKube, address: str, pods: dict[str, gatekit.Pod], tmp_path: pathlib.Path
) -> None:
    from vigil.api import modeldeployment as mdapi

    def revision(version: str, path: str) -> str:
        shape = mdapi.ModelDeploymentSpec.model_validate(in_repository(tmp_path, version, path))
        return revisions.revision_of(shape)

    v1, v3 = revision("1", "golden.json"), revision("3", "3/golden.json")
    pods.update({f"{NAME}-{v1}": gatekit.Pod(), f"{NAME}-{v3}": gatekit.Pod()})
    golden = tmp_path / gatekit.MODEL / "golden.json"
    golden.parent.mkdir()
    golden.write_text(gatekit.golden_set(count=4).dumps())
    edit(kube, in_repository(tmp_path, "1", "golden.json"))
    settings = op.Settings(
        standalone=True, inference_url=f"{address}/pods/{{pod}}", model_repository_roots=(str(tmp_path),)
    )
    runtime = op.Runtime(settings=settings, kube=kube)  # type: ignore[arg-type]
    await passes(runtime, kube, 3)
    assert md(kube)["status"]["currentRevision"] == v1
    validation = revision_status(kube, v1)["validation"]
    assert validation["phase"] == "Passed"
    assert validation["goldenSet"].startswith(f"{golden}: model {gatekit.MODEL}")
    assert pods[f"{NAME}-{v1}"].requests == 8  # 4 golden requests x 2 pods
    # Version 3 names a golden set beside it that was never written: its pods come up, take nothing.
    edit(kube, in_repository(tmp_path, "3", "3/golden.json"))
    await passes(runtime, kube, 4)
    assert md(kube)["status"]["currentRevision"] == v1
    assert pods[f"{NAME}-{v3}"].requests == 0
    validated = next(c for c in md(kube)["status"]["conditions"] if c["type"] == "Validated")
    assert (validated["status"], validated["reason"]) == ("Unknown", "GoldenSetUnavailable")
    missing = tmp_path / gatekit.MODEL / "3" / "golden.json"
    assert f"spec.validation.goldenSet.path: {missing}: no such file in the model repository" in validated["message"]
    assert revision_status(kube, v3)["validation"]["phase"] == vapi.ValidationPhase.NOT_VALIDATED


async def test_a_golden_set_in_a_cloud_repository_is_not_validated_and_takes_no_traffic(
    kube: fakekube.FakeKube, address: str
) -> None:
    runtime = runtime_for(kube, address)
    v1 = await serving_v1(kube, runtime)
    edit(kube, spec("3", goldenSet={"path": "golden.json"}))
    await passes(runtime, kube, 4)
    status = md(kube)["status"]
    assert status["currentRevision"] == v1
    validated = next(c for c in status["conditions"] if c["type"] == "Validated")
    assert (validated["status"], validated["reason"]) == ("Unknown", "GoldenSetUnavailable")
    assert "spec.validation.goldenSet.path: the operator cannot read s3:// model repositories" in validated["message"]
