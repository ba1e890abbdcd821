"""The golden-request gate on the sandbox: no new revision takes traffic before its pods answer right.

Real models: the tests export small torch models (TorchScript, Triton's repository layout) into a
local model repository, ``vigil golden`` makes the golden set from version 1 and applies it as a
ConfigMap (or writes it beside the model in the repository, which the operator reads from its
"mount": the local directory), and the simulator's pods load ``<repository>/<model>/<version>/model.pt`` and run it on
CPU, as Triton would. A "bad export" is a version whose weights are perturbed: it answers 200 at
normal latency with wrong numbers. The real operator (a subprocess, so it can be SIGKILLed) reaches
every pod's KServe v2 endpoint with ``tritonclient.http.aio`` through the simulator, the way it
reaches ``<podIP>:8000`` in a cluster. The simulator routes user traffic by the Service the operator
renders and counts each revision's user and direct (golden) requests, so "answers zero user
requests" is measured. No SLOs and no Prometheus: the gate needs neither. No GPU is held.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import http.server
import pathlib
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from typer.testing import CliRunner

from tests.e2e import events, fleet, waiting
from tests.e2e.operator_fixtures import OperatorProcess
from tests.e2e.test_modeldeployment import GROUP, PLURAL, VERSION, condition, create, get, manifest
from vigil import cli as vigil_cli
from vigil.dev import sandbox as sandbox_mod
from vigil.sim import client as simclient
from vigil.sim import torchmodels

pytestmark = [pytest.mark.e2e, pytest.mark.isolated]

NAME = "resnet"
CNN = "cnn"
TWO = "twoio"
GOLDEN = "resnet-golden"
RATE = 20.0
# Seconds for a rollout: pods Ready 2 s after start, golden requests in about a second on an idle machine.
# A deadline, not a speed claim (gate_seconds is that): a full run at load 14 once hit 60 s here.
SETTLE = 120
GOOD, BAD, GOOD_AGAIN, DRIFT = "1", "2", "3", "4"


@pytest.fixture(scope="module")
def gate_operator(
    sandbox: sandbox_mod.SandboxInfo, tmp_path_factory: pytest.TempPathFactory, repository: pathlib.Path
) -> Iterator[OperatorProcess]:
    """This module's own operator: no Prometheus (no SLOs here), pods reached through the simulator,
    the model repository "mounted" (it is local: the operator may read golden sets under it)."""
    proc = OperatorProcess(
        str(sandbox.kubeconfig),
        tmp_path_factory.mktemp("gate-operator"),
        None,
        inference_url=sandbox.inference_url,
        args=("--model-repository-root", str(repository)),
    )
    proc.start()
    yield proc
    proc.stop()
    print(proc.logs()[-3000:])


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Good exports (1, 3 and 4: the same weights), a bad one (2: perturbed), and a two-in two-out model."""
    root = tmp_path_factory.mktemp("models")
    for version in (GOOD, GOOD_AGAIN, DRIFT):
        torchmodels.export(torchmodels.small_cnn(seed=0), root, CNN, version)
    torchmodels.export(torchmodels.perturbed(torchmodels.small_cnn(seed=0), 0.05), root, CNN, BAD)
    torchmodels.export(torchmodels.two_in_two_out(seed=0), root, TWO, GOOD)
    torchmodels.export(torchmodels.perturbed(torchmodels.two_in_two_out(seed=0), 0.5), root, TWO, BAD)
    return root


@dataclasses.dataclass(frozen=True)
class Cluster:
    """What each test works in: the sandbox, the test's namespace, the simulator that plays its pods,
    the local model repository, and this module's operator, which watches them."""

    sandbox: sandbox_mod.SandboxInfo
    kube: client.ApiClient
    ns: str
    sim: simclient.ControlClient
    repository: pathlib.Path
    operator: OperatorProcess


@pytest.fixture
def cluster(
    sandbox: sandbox_mod.SandboxInfo,
    kube: client.ApiClient,
    namespace: str,
    gate_operator: OperatorProcess,
    sim: simclient.ControlClient,
    repository: pathlib.Path,
) -> Cluster:
    return Cluster(sandbox, kube, namespace, sim, repository, gate_operator)


def store_golden(c: Cluster, model: str = CNN, requests: int = 64) -> None:
    """What a user runs: ``vigil golden <repository>/<model>/1/model.pt ... --apply``."""
    args = ["golden", str(c.repository / model / GOOD / "model.pt"), "--requests", str(requests)]
    if model == CNN:
        args += ["--top-k", "3"]
    args += ["--configmap", GOLDEN, "--apply", "-n", c.ns, "--kubeconfig", str(c.sandbox.kubeconfig)]
    made = CliRunner().invoke(vigil_cli.app, args)
    assert made.exit_code == 0, made.output


def validation(**fields: Any) -> dict[str, Any]:
    return {"goldenSet": {"configMapRef": {"name": GOLDEN}}, "requests": 64, **fields}


def deploy(c: Cluster, repository: pathlib.Path | str, model: str = CNN, **spec: Any) -> None:
    spec.setdefault("validation", validation())
    body = manifest(NAME, version=GOOD, triton=fleet.NO_GPU, **spec)
    body["spec"]["model"] = {"name": model, "repository": str(repository), "version": GOOD}
    create(c.kube, c.ns, body)


def release(c: Cluster, version: str, **spec: Any) -> None:
    patch_spec(c, {"model": {"version": version}, **spec})


def patch_spec(c: Cluster, spec: dict[str, Any]) -> None:
    client.CustomObjectsApi(c.kube).patch_namespaced_custom_object(GROUP, VERSION, c.ns, PLURAL, NAME, {"spec": spec})


def md_of(c: Cluster) -> dict[str, Any]:
    return get(c.kube, c.ns, NAME)


def in_phase(c: Cluster, version: str, wanted: str) -> dict[str, Any] | None:
    """The ModelDeployment once the validation of ``version`` is in phase ``wanted`` (for waiting.until)."""
    md = md_of(c)
    return md if phase(md, version) == wanted else None


def timed_out(c: Cluster, version: str) -> dict[str, Any] | None:
    """The ModelDeployment once ``version`` is NotValidated because a pod timed out."""
    md = in_phase(c, version, "NotValidated")
    return md if md is not None and (condition(md, "Validated") or {}).get("reason") == "PodTimeout" else None


def revision(md: dict[str, Any], version: str) -> dict[str, Any] | None:
    """The newest revision record of a model version."""
    found = [r for r in md.get("status", {}).get("revisions", []) if r["modelVersion"] == version]
    return found[-1] if found else None


def phase(md: dict[str, Any], version: str) -> str | None:
    record = revision(md, version)
    return (record or {}).get("validation", {}).get("phase")


def selected(c: Cluster) -> str | None:
    """The revision the stable Service sends user traffic to (None: no Service yet)."""
    try:
        service = client.CoreV1Api(c.kube).read_namespaced_service(NAME, c.ns)
    except client.exceptions.ApiException:
        return None
    return (service.spec.selector or {}).get("vigil.dev/revision")


def serving(c: Cluster, version: str) -> dict[str, Any] | None:
    """The md once ``version`` serves: its revision is current and the Service selects it."""
    md = md_of(c)
    record = revision(md, version)
    if record is None or md["status"].get("currentRevision") != record["name"]:
        return None
    return md if selected(c) == record["name"] else None


def user_requests(c: Cluster, revision: str) -> int:
    """User requests (the simulator's load, routed by the Service) a revision's pods answered."""
    rows = c.sim.state()["revisions"]
    return sum(int(r["userRequests"]) for r in rows if r["namespace"] == c.ns and r["revision"] == revision)


def direct_requests(c: Cluster, revision: str) -> int:
    rows = c.sim.state()["revisions"]
    return sum(int(r["directRequests"]) for r in rows if r["namespace"] == c.ns and r["revision"] == revision)


def assert_blocked(c: Cluster, serving: dict[str, Any], blocked: list[dict[str, Any]]) -> None:
    """Users stayed on the revision ``serving``: the Service selects it, it is current, it answered user
    requests, and no ``blocked`` revision answered a single one."""
    assert selected(c) == serving["name"]
    assert md_of(c)["status"]["currentRevision"] == serving["name"]
    assert {r["name"]: user_requests(c, r["name"]) for r in blocked} == {r["name"]: 0 for r in blocked}
    assert user_requests(c, serving["name"]) > 0


def gate_seconds(c: Cluster, rev: str) -> float:
    """How long the golden requests took, as the operator's ValidationPassed Event says (posted after
    the verdict's status write, so it may trail the traffic switch)."""
    mine = events.posted(
        c.kube, c.ns, NAME, "ValidationPassed", lambda e: str(e.message).startswith(f"revision {rev}:")
    )
    message = str(mine[0].message)
    match = re.search(r"\(([0-9.]+)s\)$", message)
    assert match, message
    return float(match.group(1))


def at(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def serving_v1(c: Cluster, **spec: Any) -> dict[str, Any]:
    store_golden(c)
    deploy(c, c.repository, **spec)
    md = waiting.until(lambda: serving(c, GOOD), SETTLE, "v1 validated and serving")
    c.sim.set_load({"namespace": c.ns, "name": NAME, "rate": RATE})
    return md


def test_a_good_version_passes_its_golden_requests_before_it_takes_traffic(
    cluster: Cluster, record_property: Any
) -> None:
    md = serving_v1(cluster)
    v1 = revision(md, GOOD)
    assert v1 is not None
    assert v1["validation"]["phase"] == "Passed"
    assert v1["validation"]["requests"] == 64
    assert len(v1["validation"]["pods"]) == 2
    assert (condition(md, "Validated") or {}).get("status") == "True"
    release(cluster, GOOD_AGAIN)
    md = waiting.until(lambda: serving(cluster, GOOD_AGAIN), SETTLE, "v3 validated and serving")
    v3 = revision(md, GOOD_AGAIN)
    assert v3 is not None
    assert v3["validation"]["phase"] == "Passed"
    (output,) = v3["validation"]["outputs"]
    assert output["maxAbsError"] < 1e-4
    assert output["topKAgreement"] == 1.0
    assert at(md["status"]["switchedAt"]) >= at(v3["validation"]["finished"])  # the verdict came first
    assert direct_requests(cluster, v3["name"]) >= 128  # 64 golden requests x 2 pods (more after a retry)
    seconds = gate_seconds(cluster, v3["name"])
    record_property("gate", f"{seconds:.2f}s for 64 golden requests x 2 pods")
    assert seconds < 30


def test_a_bad_export_is_blocked_answers_zero_user_requests_and_is_recorded_as_bad_model(cluster: Cluster) -> None:
    serving_v1(cluster)
    release(cluster, BAD)
    md = waiting.until(lambda: in_phase(cluster, BAD, "Failed"), SETTLE, "v2 Failed")
    v1, v2 = revision(md, GOOD), revision(md, BAD)
    assert v1 is not None
    assert v2 is not None
    validated = condition(md, "Validated") or {}
    assert (validated.get("status"), validated.get("reason")) == ("False", "GoldenMismatch")
    assert "OUTPUT__0: " in validated["message"]
    assert "answers out of tolerance; max abs error" in validated["message"]
    incident_name = v2["validation"]["incident"]
    incident = waiting.until(lambda: incident_of(cluster, incident_name), 30, "the BadModel incident")
    assert incident["status"]["diagnosis"]["cause"] == "BadModel"
    assert any(e["kind"] == "goldenOutput" for e in incident["status"]["diagnosis"]["evidence"])
    # Traffic never moved: v2 scales to zero, the Service keeps selecting v1, users never reached v2.
    waiting.until(
        lambda: not [p for p in cluster.sim.state()["pods"] if p["revision"] == v2["name"]], SETTLE, "v2 gone"
    )
    assert_blocked(cluster, v1, [v2])
    progressing = condition(md_of(cluster), "Progressing") or {}
    assert (progressing.get("status"), progressing.get("reason")) == ("False", "ValidationFailed")
    # One wrong pod is enough to fail (test_one_wrong_pod_fails_the_revision_even_while_another_times_out):
    # the second pod may not have answered yet, so count what the verdict compared, not pods x 64.
    (output,) = v2["validation"]["outputs"]
    assert output["requests"] >= 64
    assert direct_requests(cluster, v2["name"]) >= output["requests"]
    # A fixed export (a new generation) is validated, takes traffic, and closes the incident.
    release(cluster, GOOD_AGAIN)
    waiting.until(lambda: serving(cluster, GOOD_AGAIN), SETTLE, "v3 serving")
    closed = waiting.until(
        lambda: (incident_of(cluster, incident_name) or {}).get("status", {}).get("phase") == "Resolved" or None,
        30,
        "the BadModel incident resolved",
    )
    assert closed


def write_golden(repository: pathlib.Path) -> pathlib.Path:
    """What a user runs to keep the golden set in the repository: ``vigil golden ... --out <model dir>/golden.json``."""
    out = repository / CNN / "golden.json"
    args = ["golden", str(repository / CNN / GOOD / "model.pt"), "--requests", "64", "--top-k", "3", "--out", str(out)]
    made = CliRunner().invoke(vigil_cli.app, args)
    assert made.exit_code == 0, made.output
    assert "spec.validation.goldenSet.path: golden.json" in made.output
    return out


def serving_from_repository(
    c: Cluster, repository: pathlib.Path | str, golden: str, model: str = CNN, requests: int = 64
) -> dict[str, Any]:
    """v1's record once it passed the golden set ``golden.json`` beside the model in ``repository``
    (its label starts with ``golden``) and serves; user load then runs on it."""
    validation = {"goldenSet": {"path": "golden.json"}, "requests": requests}
    deploy(c, repository, model=model, validation=validation)
    md = waiting.until(lambda: serving(c, GOOD), SETTLE, "v1 validated from its repository and serving")
    v1 = revision(md, GOOD)
    assert v1 is not None
    assert v1["validation"]["phase"] == "Passed"
    assert v1["validation"]["goldenSet"].startswith(golden)
    c.sim.set_load({"namespace": c.ns, "name": NAME, "rate": RATE})
    return v1


def refused_s3(c: Cluster) -> dict[str, Any] | None:
    """The md once its Validated condition says the operator cannot read its s3:// repository."""
    md = md_of(c)
    return md if "cannot read s3://" in (condition(md, "Validated") or {}).get("message", "") else None


def test_a_golden_set_in_the_model_repository_gates_releases_and_an_unreadable_one_holds_traffic(
    cluster: Cluster,
) -> None:
    golden = write_golden(cluster.repository)
    v1 = serving_from_repository(cluster, cluster.repository, f"{golden}: model cnn version 1")
    # A bad export is blocked by the same file.
    release(cluster, BAD)
    md = waiting.until(lambda: in_phase(cluster, BAD, "Failed"), SETTLE, "v2 Failed")
    v2 = revision(md, BAD)
    assert v2 is not None
    assert (condition(md, "Validated") or {}).get("reason") == "GoldenMismatch"
    # A golden set that was never written proves nothing: v3's pods come up and wait, serving no one.
    release(cluster, GOOD_AGAIN, validation={"goldenSet": {"path": f"{GOOD_AGAIN}/golden.json"}})
    md = waiting.until(lambda: in_phase(cluster, GOOD_AGAIN, "NotValidated"), SETTLE, "v3 NotValidated")
    v3 = revision(md, GOOD_AGAIN)
    assert v3 is not None
    validated = condition(md, "Validated") or {}
    assert (validated.get("status"), validated.get("reason")) == ("Unknown", "GoldenSetUnavailable")
    missing = cluster.repository / CNN / GOOD_AGAIN / "golden.json"
    assert f"spec.validation.goldenSet.path: {missing}: no such file in the model repository" in validated["message"]
    # Nor does one in a repository the operator cannot reach (no cloud credentials).
    patch_spec(cluster, {"model": {"repository": "s3://models"}})
    md = waiting.until(lambda: refused_s3(cluster), SETTLE, "the s3:// revision NotValidated")
    cloud = revision(md, GOOD_AGAIN)
    assert cloud is not None
    assert cloud["name"] != v3["name"]
    assert cloud["validation"]["phase"] == "NotValidated"
    validated = condition(md, "Validated") or {}
    assert validated.get("reason") == "GoldenSetUnavailable"
    assert "spec.validation.goldenSet.path: the operator cannot read s3:// model repositories" in validated["message"]
    assert "http(s)://" in validated["message"]
    # Through all of it the users stayed on v1.
    assert_blocked(cluster, v1, [v2, v3, cloud])


ECHO = "echo"


@pytest.fixture
def http_repository(tmp_path: pathlib.Path) -> Iterator[tuple[str, pathlib.Path]]:
    """A model repository served over http (its URL and its directory), as an object store's HTTP
    endpoint or a plain web server would serve it; it answers 404 for files it does not have."""
    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="http-repository", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/models", tmp_path / "models"
    finally:
        server.shutdown()
        server.server_close()


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def unavailable(c: Cluster, version: str, says: str) -> dict[str, Any] | None:
    """The md once ``version`` is NotValidated and its Validated condition says ``says``."""
    md = in_phase(c, version, "NotValidated")
    return md if md is not None and says in (condition(md, "Validated") or {}).get("message", "") else None


def test_a_golden_set_served_over_http_gates_the_release_and_a_missing_or_invalid_one_holds_traffic(
    cluster: Cluster, http_repository: tuple[str, pathlib.Path]
) -> None:
    """The simulator serves its identity model from a repository it cannot read itself (not a local
    path), so a golden set whose expected outputs are its inputs is the right one for it."""
    url, root = http_repository
    (root / ECHO).mkdir(parents=True)
    args = ["golden", "torch.nn:Identity", "--input", "INPUT__0:FP32:1x8", "--requests", "8"]
    made = CliRunner().invoke(vigil_cli.app, [*args, "--out", str(root / ECHO / "golden.json")])
    assert made.exit_code == 0, made.output
    (root / ECHO / "broken.json").write_text('{"format": "vigil.dev/golden-set/v1"}')
    golden = f"{url}/{ECHO}/golden.json: model Identity"
    v1 = serving_from_repository(cluster, url, golden, model=ECHO, requests=8)
    # A golden set the server does not have: v2's pods come up and wait, serving no one.
    release(cluster, BAD, validation={"goldenSet": {"path": f"{BAD}/golden.json"}})
    missing = f"spec.validation.goldenSet.path: {url}/{ECHO}/{BAD}/golden.json: HTTP 404"
    md = waiting.until(lambda: unavailable(cluster, BAD, missing), SETTLE, "v2 NotValidated: HTTP 404")
    v2 = revision(md, BAD)
    assert v2 is not None
    assert (condition(md, "Validated") or {}).get("reason") == "GoldenSetUnavailable"
    # One the server has but that is no golden set: the same revision, tried again, still waits.
    patch_spec(cluster, {"validation": {"goldenSet": {"path": "broken.json"}}})
    invalid = f"spec.validation.goldenSet.path: {url}/{ECHO}/broken.json: invalid golden set: "
    md = waiting.until(lambda: unavailable(cluster, BAD, invalid), SETTLE, "v2 NotValidated: invalid")
    assert (revision(md, BAD) or {}).get("name") == v2["name"]
    assert_blocked(cluster, v1, [v2])


def incident_of(c: Cluster, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = client.CustomObjectsApi(c.kube).get_namespaced_custom_object(
            GROUP, VERSION, c.ns, "incidents", name
        )
    except client.exceptions.ApiException:
        return None
    return found


def test_fp16_drift_fails_a_tight_tolerance_and_passes_a_loose_one(cluster: Cluster) -> None:
    tight = validation(tolerance={"atol": 1e-6, "rtol": 1e-6})
    serving_v1(cluster, validation=validation())
    cluster.sim.set_fault({"namespace": cluster.ns, "name": NAME, "version": DRIFT, "precision": "fp16"})
    release(cluster, DRIFT, validation=tight)
    md = waiting.until(lambda: in_phase(cluster, DRIFT, "Failed"), SETTLE, "FP16 Failed")
    drift = revision(md, DRIFT)
    assert drift is not None
    (output,) = drift["validation"]["outputs"]
    assert 1e-6 < output["maxAbsError"] < 0.1
    assert selected(cluster) == (revision(md, GOOD) or {}).get("name")
    # A looser tolerance is a new generation: the same revision is tried again, and passes.
    patch_spec(cluster, {"validation": {"tolerance": {"atol": 0.1, "rtol": 1e-2}}})
    md = waiting.until(lambda: serving(cluster, DRIFT), SETTLE, "FP16 serving at a loose tolerance")
    assert phase(md, DRIFT) == "Passed"


def test_a_pod_that_times_out_is_not_validated_until_it_answers(cluster: Cluster) -> None:
    serving_v1(cluster, validation=validation(timeout="1s", requests=8))
    cluster.sim.set_fault({"namespace": cluster.ns, "name": NAME, "version": GOOD_AGAIN, "baseLatencyMs": 3000})
    release(cluster, GOOD_AGAIN)
    # A pod whose model Triton has not loaded yet is ModelNotReady first (also "not validated yet");
    # the retry then reaches the slow answers.
    md = waiting.until(lambda: timed_out(cluster, GOOD_AGAIN), SETTLE, "v3 NotValidated: PodTimeout")
    validated = condition(md, "Validated") or {}
    assert validated.get("status") == "Unknown"
    v1 = revision(md, GOOD)
    assert v1 is not None
    assert selected(cluster) == v1["name"]
    cluster.sim.clear_faults(cluster.ns, NAME, GOOD_AGAIN)
    waiting.until(lambda: serving(cluster, GOOD_AGAIN), SETTLE, "v3 serving once its pods answer in time")


def test_an_operator_killed_mid_validation_validates_again_before_moving_traffic(cluster: Cluster) -> None:
    serving_v1(cluster, validation=validation(timeout="5s"))
    # Each golden request takes ~0.8 s: 64 of them, 8 in flight, hold the validation for ~6 s.
    cluster.sim.set_fault({"namespace": cluster.ns, "name": NAME, "version": GOOD_AGAIN, "baseLatencyMs": 800})
    release(cluster, GOOD_AGAIN)
    waiting.until(lambda: in_phase(cluster, GOOD_AGAIN, "Validating"), SETTLE, "v3 Validating")
    cluster.operator.kill()
    killed = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    md = md_of(cluster)
    v1 = revision(md, GOOD)
    assert v1 is not None
    assert md["status"]["currentRevision"] == v1["name"]
    assert selected(cluster) == v1["name"]
    cluster.sim.clear_faults(cluster.ns, NAME, GOOD_AGAIN)
    cluster.operator.start()
    md = waiting.until(lambda: serving(cluster, GOOD_AGAIN), SETTLE, "v3 serving after the restart")
    record = revision(md, GOOD_AGAIN)
    assert record is not None
    assert record["validation"]["phase"] == "Passed"
    assert at(record["validation"]["started"]) >= killed  # validated again from the start
    assert at(md["status"]["switchedAt"]) >= at(record["validation"]["finished"])


def test_a_model_with_several_inputs_and_outputs_is_compared_output_by_output(cluster: Cluster) -> None:
    store_golden(cluster, model=TWO, requests=16)
    deploy(cluster, cluster.repository, model=TWO, validation=validation(requests=16))
    md = waiting.until(lambda: serving(cluster, GOOD), SETTLE, "v1 validated and serving")
    record = revision(md, GOOD)
    assert record is not None
    outputs = {o["name"]: o for o in record["validation"]["outputs"]}
    assert set(outputs) == {"OUTPUT__0", "OUTPUT__1"}
    assert all(o["passed"] and o["requests"] == 32 for o in outputs.values())
    release(cluster, BAD)
    md = waiting.until(lambda: in_phase(cluster, BAD, "Failed"), SETTLE, "v2 Failed")
    bad = revision(md, BAD)
    assert bad is not None
    failed = {o["name"]: o for o in bad["validation"]["outputs"]}
    assert failed["OUTPUT__0"]["passed"] is False
    assert failed["OUTPUT__0"]["maxAbsError"] > 1e-3


def test_a_rollback_to_last_known_good_is_never_gated(cluster: Cluster) -> None:
    serving_v1(cluster)
    waiting.until(lambda: (revision(md_of(cluster), GOOD) or {}).get("lastKnownGood"), SETTLE, "v1 last-known-good")
    release(cluster, GOOD_AGAIN)
    waiting.until(lambda: serving(cluster, GOOD_AGAIN), SETTLE, "v3 serving")
    # From now on nothing can pass the gate: the golden set is gone.
    client.CoreV1Api(cluster.kube).delete_namespaced_config_map(GOLDEN, cluster.ns)
    before = revision(md_of(cluster), GOOD)
    assert before is not None
    release(cluster, GOOD)
    md = waiting.until(lambda: serving(cluster, GOOD), SETTLE, "v1 serving again")
    validated = condition(md, "Validated") or {}
    assert (validated.get("status"), validated.get("reason")) == ("True", "RollbackNotGated")
    after = revision(md, GOOD)
    assert after is not None
    assert after["validation"] == before["validation"]  # no golden request was needed
