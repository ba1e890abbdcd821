"""The golden-request gate at the edge: read the golden set, ask each new pod's Triton, keep the record.

The reconcile core decides *that* a revision must be validated (``Outcome.validate``, already
recorded as ``Validating`` in status); this module does the I/O and nothing else:

* reads the golden set from the ConfigMap ``spec.validation.goldenSet.configMapRef`` names, or
  from the model repository (``spec.validation.goldenSet.path``, :mod:`vigil.reconcile.repository`);
  a missing ConfigMap, key or file, an unreachable repository or a malformed document proves
  nothing: the revision stays ``NotValidated`` and the condition names the field;
* per Ready pod, with ``tritonclient.http.aio`` (KServe v2 over HTTP, binary tensors): checks
  that the model version is ready, then sends the golden requests (a few in flight per pod, all
  pods at once) and compares every answer with :func:`vigil.gate.goldenset.compare_request`. A
  timeout, a refused connection or a 503 stops that pod's attempt: it is "not validated yet";
* hands the facts to :func:`vigil.gate.verdict.judge` and records the verdict on the revision.

A Failed verdict names its BadModel Incident before the Incident exists (``incidentState:
Intended``); :func:`bookkeep` creates it on this pass or, after a crash, on the next one, and
resolves it once the revision is superseded. Each step is recorded in status before the next, so
a restarted operator neither loses an Incident nor creates a second one.

tritonclient and the golden set's numpy are imported by the first validation, not with the operator:
an operator whose deployments have no golden set never loads them (about 18 MiB of RSS).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from typing import TYPE_CHECKING, Any

import aiohttp
from kubernetes.client import exceptions

from vigil.api import incident as incapi
from vigil.api import modeldeployment as mdapi
from vigil.api import slo as sloapi
from vigil.api import validation as vapi
from vigil.diagnose import pods as podfacts
from vigil.gate import source
from vigil.gate import verdict as gate
from vigil.reconcile import core, kube, repository
from vigil.record import incidents as record

if TYPE_CHECKING:
    from vigil.gate import goldenset

log = logging.getLogger("vigil.gate")
IN_FLIGHT_PER_POD = 8
"""Golden requests in flight to one pod: enough to finish 64 requests in well under a second on a
real Triton, few enough not to queue behind a serving revision's own traffic."""
BUSY_STATUSES = frozenset({"429", "503"})


@dataclasses.dataclass(frozen=True)
class Golden:
    """A golden set ready to send: the requests to use and each output's tolerance."""

    golden_set: goldenset.GoldenSet
    tolerances: dict[str, goldenset.Tolerance]
    requests: tuple[goldenset.GoldenRequest, ...]
    label: str


def _where(namespace: str, ref: vapi.ConfigMapKeyRef) -> str:
    return f"spec.validation.goldenSet.configMapRef: ConfigMap {namespace}/{ref.name} key {ref.key}"


def prepare(golden: goldenset.GoldenSet, spec: vapi.ValidationSpec, where: str) -> Golden | gate.Verdict:
    """Apply ``spec.validation``'s tolerances and request count to the golden set read from ``where``."""
    from vigil.gate import goldenset

    every, per_output = gate.overrides(spec.tolerance)
    try:
        tolerances = golden.tolerances(every, per_output)
    except goldenset.GoldenSetError as error:
        return gate.unavailable(f"spec.validation.tolerance: {error}")
    count = spec.requests if spec.requests is not None else len(golden.requests)
    model = _label(golden)
    return Golden(
        golden_set=golden,
        tolerances=tolerances,
        requests=tuple(golden.requests[:count]),
        label=f"{where.split(': ', 1)[1]}: {model}, {min(count, len(golden.requests))} request(s)",
    )


def _label(golden: goldenset.GoldenSet) -> str:
    version = f" version {golden.model.version}" if golden.model.version else ""
    return f"model {golden.model.name}{version} ({golden.model.digest[:19]}...)"


async def load(
    client: kube.Kube,
    namespace: str,
    spec: vapi.ValidationSpec,
    model: mdapi.Model,
    files: repository.Files | None = None,
) -> Golden | gate.Verdict:
    """The golden set of ``model`` (the revision's), from its ConfigMap or its model repository
    (read through ``files``, which keeps it while it does not change)."""
    from vigil.gate import goldenset

    ref = spec.golden_set.config_map_ref
    try:
        if ref is None:
            location = source.locate(model.repository, model.name, spec.golden_set.path or "")
            where = location.where
            files = files if files is not None else repository.Files()
            seconds = sloapi.duration_seconds(spec.timeout)
            golden = await files.parsed(location, seconds, goldenset.GoldenSet.parse)
        else:
            where = _where(namespace, ref)
            data = await client.config_map_data(namespace, ref.name)
            if data is None:
                return gate.unavailable(f"{where}: no such ConfigMap")
            if ref.key not in data:
                keys = ", ".join(sorted(data)) or "none"
                return gate.unavailable(f"{where}: the ConfigMap has no such key (keys: {keys})")
            golden = goldenset.GoldenSet.parse(data[ref.key])
    except source.UnreadableError as error:
        return gate.unavailable(str(error))
    except goldenset.GoldenSetError as error:
        return gate.unavailable(f"{where}: {error}")
    return prepare(golden, spec, where)


def pod_url(template: str, pod: podfacts.PodFacts, namespace: str) -> str | None:
    """The pod's Triton HTTP endpoint from ``--inference-url``; None while it has no IP to fill in."""
    if "{ip}" in template and not pod.ip:
        return None
    return template.format(ip=pod.ip, pod=pod.name, namespace=namespace)


def _inputs(golden: goldenset.GoldenSet, request: goldenset.GoldenRequest) -> list[Any]:
    import tritonclient.http.aio as triton

    from vigil.gate import goldenset

    inputs = []
    for name, array in golden.input_arrays(request).items():
        tensor = triton.InferInput(name, list(array.shape), goldenset.datatype_of(array.dtype))
        tensor.set_data_from_numpy(array, binary_data=True)
        inputs.append(tensor)
    return inputs


async def ask_pod(url: str, pod: str, model: str, version: str, golden: Golden, seconds: float) -> gate.PodResult:
    """Send every golden request to one pod, each within ``seconds``; a pod that cannot answer proves nothing."""
    import tritonclient.http.aio as triton
    from tritonclient.utils import InferenceServerException

    from vigil.gate import goldenset

    timeout = seconds
    outputs = [triton.InferRequestedOutput(spec.name, binary_data=True) for spec in golden.golden_set.outputs]
    try:
        async with triton.InferenceServerClient(url, conn_timeout=timeout, conn_limit=IN_FLIGHT_PER_POD) as client:
            try:
                ready = await asyncio.wait_for(client.is_model_ready(model, version), timeout)
            except TimeoutError:
                return gate.PodResult(
                    pod, gate.PodState.TIMEOUT, detail=f"model readiness check took over {timeout:g}s"
                )
            if not ready:
                return gate.PodResult(
                    pod,
                    gate.PodState.MODEL_NOT_READY,
                    detail=f"Triton says model {model} version {version} is not ready",
                )
            slots = asyncio.Semaphore(IN_FLIGHT_PER_POD)

            async def one(request: goldenset.GoldenRequest) -> goldenset.RequestResult | tuple[str, str]:
                async with slots:
                    try:
                        result = await asyncio.wait_for(
                            client.infer(
                                model,
                                _inputs(golden.golden_set, request),
                                model_version=version,
                                outputs=outputs,
                                request_id=f"vigil-golden-{request.id}",
                            ),
                            timeout,
                        )
                    except InferenceServerException as error:
                        if str(error.status()) in BUSY_STATUSES:
                            raise _Busy(f"HTTP {error.status()}: {error.message()}") from error
                        return (request.id, f"HTTP {error.status()}: {error.message()}")
                served = {spec.name: result.as_numpy(spec.name) for spec in golden.golden_set.outputs}
                return goldenset.compare_request(golden.golden_set, request, served, golden.tolerances)

            try:
                answers = await asyncio.gather(*(one(request) for request in golden.requests))
            except TimeoutError:
                return gate.PodResult(pod, gate.PodState.TIMEOUT, detail=f"a golden request took over {timeout:g}s")
            except _Busy as busy:
                return gate.PodResult(pod, gate.PodState.BUSY, detail=str(busy))
    except (aiohttp.ClientError, OSError) as error:
        return gate.PodResult(pod, gate.PodState.UNREACHABLE, detail=f"{url}: {error or type(error).__name__}")
    except InferenceServerException as error:  # the readiness check itself failed with an HTTP error
        state = gate.PodState.BUSY if str(error.status()) in BUSY_STATUSES else gate.PodState.UNREACHABLE
        return gate.PodResult(pod, state, detail=f"HTTP {error.status()}: {error.message()}")
    compared = tuple(a for a in answers if isinstance(a, goldenset.RequestResult))
    errors = tuple(a for a in answers if not isinstance(a, goldenset.RequestResult))
    return gate.PodResult(pod, gate.PodState.ANSWERED, answers=compared, errors=errors)


class _Busy(Exception):
    """A pod answered 429/503 to a golden request: stop asking it, try again later."""


async def validate(
    client: kube.Kube,
    template: str,
    md: mdapi.ModelDeployment,
    observed: core.Observed,
    request: core.Validate,
    files: repository.Files | None = None,
) -> tuple[gate.Verdict, Golden | None]:
    """The verdict over ``request.pods``, and the golden set used (None when it could not be read).

    ``files``: golden sets in model repositories, read under the mounted roots (``--model-repository-root``)."""
    spec = md.spec.validation
    namespace = str(md.metadata["namespace"])
    if spec is None:
        return gate.unavailable("spec.validation was removed"), None
    validated = next((r for r in md.status.revisions if r.name == request.revision), None)
    model = validated.shape.model if validated is not None else md.spec.model
    golden = await load(client, namespace, spec, model, files)
    if isinstance(golden, gate.Verdict):
        return golden, None
    timeout = sloapi.duration_seconds(spec.timeout)
    pods = [p for p in observed.pods if p.name in request.pods]
    asks = []
    results: list[gate.PodResult] = []
    for pod in pods:
        url = pod_url(template, pod, namespace)
        if url is None:
            results.append(gate.PodResult(pod.name, gate.PodState.UNREACHABLE, detail="the pod has no IP yet"))
            continue
        asks.append(ask_pod(url, pod.name, request.model, request.version, golden, timeout))
    results += await asyncio.gather(*asks)
    results.sort(key=lambda r: r.pod)
    return gate.judge(golden.golden_set, golden.tolerances, results), golden


_EVENTS: dict[vapi.ValidationPhase, tuple[str, str]] = {
    vapi.ValidationPhase.PASSED: ("Normal", "ValidationPassed"),
    vapi.ValidationPhase.FAILED: ("Warning", "ValidationFailed"),
    vapi.ValidationPhase.NOT_VALIDATED: ("Warning", "NotValidated"),
}


async def run(
    client: kube.Kube,
    template: str,
    md: mdapi.ModelDeployment,
    observed: core.Observed,
    request: core.Validate,
    files: repository.Files | None = None,
) -> tuple[mdapi.ModelDeploymentStatus, list[core.Event]]:
    """Validate and record the verdict on the revision (the caller writes the status, then
    :func:`bookkeep` creates a BadModel Incident the verdict names)."""
    started = datetime.datetime.now(datetime.UTC)
    found, golden = await validate(client, template, md, observed, request, files)
    now = datetime.datetime.now(datetime.UTC)
    status = md.status.model_copy(deep=True)
    revision = next((r for r in status.revisions if r.name == request.revision), None)
    if revision is None:
        return status, []  # trimmed from history meanwhile: nothing to record
    incident = None
    if found.phase is vapi.ValidationPhase.FAILED:
        incident = record.bad_model_name(str(md.metadata["name"]), revision.name, now)
    label, count = (golden.label, len(golden.requests)) if golden is not None else (None, None)
    gate.finish(revision, request.generation, found, now, label, incident, requests=count)
    gate.align_deployment_condition(status, md.spec, revision, request.generation, now)
    kind, reason = _EVENTS.get(found.phase, ("Normal", "Validated"))
    seconds = (now - started).total_seconds()
    log.info(
        "%s/%s revision %s: %s in %.2fs: %s",
        md.metadata["namespace"],
        md.metadata["name"],
        revision.name,
        found.phase,
        seconds,
        found.message,
    )
    return status, [core.Event(kind, reason, f"revision {revision.name}: {found.message} ({seconds:.2f}s)")]


async def bookkeep(
    client: kube.Kube,
    raw: dict[str, Any],
    md: mdapi.ModelDeployment,
    status: mdapi.ModelDeploymentStatus,
    before: mdapi.ModelDeploymentStatus | None = None,
) -> tuple[mdapi.ModelDeploymentStatus, list[core.Event]]:
    """Create the BadModel Incidents verdicts named (Intended -> Recorded), and resolve those whose
    revision was superseded (``before``: the status this pass started from)."""
    if not any(_incident(r, "Intended") for r in status.revisions) and not any(
        _incident(r, "Recorded") for r in (before or md.status).revisions
    ):
        return status, []  # nothing to create or resolve (almost every pass): not even a copy
    now = datetime.datetime.now(datetime.UTC)
    namespace = str(md.metadata["namespace"])
    events: list[core.Event] = []
    status = status.model_copy(deep=True)
    served = md.spec.validation is not None and md.spec.validation.on_failure is vapi.OnFailure.WARN
    for revision in status.revisions:
        validation = revision.validation
        if validation is None or validation.incident is None or validation.incident_state != "Intended":
            continue
        current = md.model_copy(update={"status": status})
        manifest = record.bad_model_incident(
            current, str(raw["metadata"]["uid"]), revision, gate.evidence(validation), served
        )
        await _create(client, namespace, manifest)
        validation.incident_state = "Recorded"
        events.append(
            core.Event(
                "Warning",
                "IncidentOpened",
                f"incident {validation.incident}: BadModel: revision {revision.name} failed its golden requests",
            )
        )
    for old in (before or md.status).revisions:
        validation = old.validation
        if validation is None or validation.incident is None or validation.incident_state != "Recorded":
            continue
        now_rev = next((r for r in status.revisions if r.name == old.name), None)
        still = (
            now_rev is not None
            and now_rev.validation is not None
            and now_rev.validation.incident == validation.incident
        )
        if still and status.desired_revision == old.name:
            continue
        why = (
            f"superseded: the spec now asks for revision {status.desired_revision}"
            if status.desired_revision != old.name
            else f"superseded: spec generation {int(md.metadata.get('generation') or 0)} validates revision {old.name} again"
        )
        if await _close(client, namespace, validation.incident, why, now):
            events.append(core.Event("Normal", "IncidentResolved", f"incident {validation.incident}: {why}"))
        if still and now_rev is not None and now_rev.validation is not None:
            now_rev.validation.incident_state = "Resolved"
    return status, events


def _incident(revision: mdapi.Revision, state: str) -> bool:
    """Whether the revision's verdict names a BadModel Incident in ``state``."""
    validation = revision.validation
    return validation is not None and validation.incident is not None and validation.incident_state == state


async def _create(client: kube.Kube, namespace: str, manifest: dict[str, Any]) -> None:
    """Create the Incident with its status; after a crash it may exist already (409), with or without it."""
    body = {k: v for k, v in manifest.items() if k != "status"}
    try:
        await client.create_custom(incapi.PLURAL, namespace, body)
    except exceptions.ApiException as error:
        if error.status != 409:
            raise
    name = str(manifest["metadata"]["name"])
    await client.apply_status(incapi.PLURAL, incapi.KIND, namespace, name, manifest["status"])


async def _close(client: kube.Kube, namespace: str, name: str, why: str, now: datetime.datetime) -> bool:
    """Resolve a BadModel Incident (a missing one, deleted by a person, needs nothing)."""
    raw = await client.get_custom(incapi.PLURAL, namespace, name)
    if raw is None:
        return False
    found = incapi.Incident.model_validate(raw)
    if found.status.phase is incapi.Phase.RESOLVED:
        return False
    closed = record.close(found.status, now, why)
    await client.apply_status(incapi.PLURAL, incapi.KIND, namespace, name, closed.wire())
    return True
