"""The benchmarks' handful of Kubernetes and simulator calls, against the local sandbox only.

Every object the benchmarks create lives in a namespace of their own (prefix ``bench-``), which
is deleted at the end; simulator loads and faults are keyed by (namespace, name) and are stopped
and cleared explicitly, since deleting a namespace does not reach the simulator's tables.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import datetime
import os
import pathlib
import time
import typing
import uuid
from typing import Any

from kubernetes import client, config
from kubernetes.client import exceptions

from bench import waiting
from vigil.sim import behaviour
from vigil.sim import client as simclient

GROUP, VERSION = "vigil.dev", "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
MDS, RUNBOOKS, INCIDENTS = "modeldeployments", "runbooks", "incidents"
APPLY = "application/apply-patch+yaml"
NAMESPACE_PREFIX = "bench-"
TIMEOUT = 15


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def new_namespace_name(kind: str) -> str:
    return f"{NAMESPACE_PREFIX}{kind}-{uuid.uuid4().hex[:6]}"


def manifest(name: str, *, version: str = "1", replicas: int = 2, **spec: Any) -> dict[str, Any]:
    """A ModelDeployment of the simulated resnet50 (``spec`` keys are camelCase, as on the wire)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "resnet50", "repository": "s3://models/resnet50", "version": version},
            "replicas": replicas,
            **spec,
        },
    }


def condition(md: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in md.get("status", {}).get("conditions", []) if c.get("type") == type_), None)


def slo_status(md: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((s for s in md.get("status", {}).get("slos", []) if s.get("name") == name), None)


def slo_state(md: dict[str, Any], name: str) -> str | None:
    state = (slo_status(md, name) or {}).get("state")
    return None if state is None else str(state)


def last_known_good(md: dict[str, Any]) -> str | None:
    """The newest last-known-good revision other than the serving one, else the serving one if good."""
    status = md.get("status", {})
    good = [str(r["name"]) for r in status.get("revisions", []) if r.get("lastKnownGood")]
    others = [r for r in good if r != status.get("currentRevision")]
    if others:
        return others[-1]
    return good[-1] if good else None


def parse_time(text: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp (Kubernetes writes whole seconds)."""
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclasses.dataclass
class Cluster:
    """A client of the sandbox's API server and simulator, one per thread."""

    kubeconfig: pathlib.Path
    simulator_url: str
    api: client.ApiClient = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.api = typing.cast(
            client.ApiClient,
            config.new_client_from_config(config_file=str(self.kubeconfig)),  # type: ignore[no-untyped-call]
        )
        self.sim = simclient.ControlClient(self.simulator_url)

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]

    def fork(self) -> Cluster:
        """A fresh client for another thread."""
        return Cluster(self.kubeconfig, self.simulator_url)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    # -- namespaces -------------------------------------------------------------------------

    def create_namespace(self, name: str) -> None:
        if not name.startswith(NAMESPACE_PREFIX):
            raise ValueError(f"benchmark namespaces start with {NAMESPACE_PREFIX!r}, not {name!r}")
        body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"vigil.dev/bench": "true"}))
        self.core.create_namespace(body, _request_timeout=TIMEOUT)

    def delete_namespace(self, name: str, timeout: float = 120.0) -> bool:
        """Delete one of our namespaces and wait (bounded) until it is gone; False if it lingers."""
        if not name.startswith(NAMESPACE_PREFIX):
            raise ValueError(f"refusing to delete {name!r}: not a benchmark namespace")
        with contextlib.suppress(exceptions.ApiException):
            self.core.delete_namespace(name, _request_timeout=TIMEOUT)

        def gone() -> bool:
            try:
                self.core.read_namespace(name, _request_timeout=TIMEOUT)
            except exceptions.ApiException as error:
                return bool(error.status == 404)
            return False

        try:
            waiting.until(gone, timeout, f"namespace {name} to be deleted", interval=1.0)
        except waiting.Timeout:
            return False
        return True

    # -- custom objects ---------------------------------------------------------------------

    def create(self, namespace: str, plural: str, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body, _request_timeout=TIMEOUT)

    def get(self, namespace: str, name: str, plural: str = MDS) -> dict[str, Any]:
        found = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, _request_timeout=TIMEOUT
        )
        return typing.cast(dict[str, Any], found)

    def list(self, namespace: str, plural: str) -> list[dict[str, Any]]:
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural, _request_timeout=TIMEOUT)
        return typing.cast(list[dict[str, Any]], typing.cast(dict[str, Any], listed)["items"])

    def patch_spec(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, MDS, name, {"spec": spec}, _request_timeout=TIMEOUT
        )

    def apply_md_status(self, namespace: str, name: str, status: dict[str, Any], field_manager: str) -> None:
        """Server-side apply of a partial ModelDeployment status (only the fields given are owned)."""
        body = {
            "apiVersion": API_VERSION,
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": namespace},
            "status": status,
        }
        self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            MDS,
            name,
            body,
            field_manager=field_manager,
            force=True,
            _content_type=APPLY,
            _request_timeout=TIMEOUT,
        )

    def delete(self, namespace: str, name: str, plural: str = MDS) -> None:
        with contextlib.suppress(exceptions.ApiException):
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, _request_timeout=TIMEOUT
            )

    def event_time(self, namespace: str, involved: str, reason: str) -> float | None:
        """When the first Event ``reason`` about ``involved`` was posted (whole seconds), if any."""
        events = self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={involved},reason={reason}", _request_timeout=TIMEOUT
        )
        moments = []
        for event in events.items:
            stamp = event.first_timestamp or (event.metadata.creation_timestamp if event.metadata else None)
            if stamp is not None:
                moments.append(float(stamp.timestamp()))
        return min(moments) if moments else None

    def reconcilers(self, namespace: str, involved: str) -> int:
        """How many operators reconciled this object: the most copies of one RevisionCreated Event.

        One operator posts that Event once per revision; every other operator reconciling the same
        object (another ``vigil run -A`` on the shared sandbox) posts its own copy.
        """
        events = self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={involved},reason=RevisionCreated", _request_timeout=TIMEOUT
        )
        copies: dict[str, int] = {}
        for event in events.items:
            copies[event.message or ""] = copies.get(event.message or "", 0) + 1
        return max(copies.values(), default=0)

    def incidents_of(self, namespace: str, name: str) -> builtins.list[dict[str, Any]]:
        """A summary of every Incident of one deployment: cause, plan, steps and timeline."""
        found = []
        for incident in self.list(namespace, INCIDENTS):
            if incident.get("spec", {}).get("modelDeployment") != name:
                continue
            status = incident.get("status", {})
            plan = status.get("plan") or {}
            found.append(
                {
                    "name": incident["metadata"]["name"],
                    "created": incident["metadata"].get("creationTimestamp"),
                    "slo": incident.get("spec", {}).get("slo"),
                    "phase": status.get("phase"),
                    "cause": (status.get("diagnosis") or {}).get("cause"),
                    "runbook": plan.get("runbook"),
                    "mode": plan.get("mode"),
                    "steps": [
                        {
                            "name": s.get("name"),
                            "action": s.get("action"),
                            "state": s.get("state"),
                            "startedAt": s.get("startedAt"),
                        }
                        for s in plan.get("steps", [])
                    ],
                    "timeline": [{"time": e.get("time"), "type": e.get("type")} for e in status.get("timeline", [])],
                }
            )
        return found

    # -- simulator --------------------------------------------------------------------------

    def set_behaviour(self, namespace: str, name: str, settings: behaviour.Behaviour) -> None:
        """How the simulator plays a deployment's replicas: capacity, latency, service-time variation."""
        self.sim.set_fault(
            {
                "namespace": namespace,
                "name": name,
                "capacity": settings.capacity,
                "baseLatencyMs": settings.base_latency_ms,
                "serviceCv": settings.service_cv,
            }
        )

    def forget_traffic(self, namespace: str, name: str) -> bool:
        """Stop the simulator's load and clear its faults for one deployment (best effort); False
        when the simulator could not be reached."""
        for call in (self.sim.stop_load, self.sim.clear_faults):
            try:
                call(namespace, name)
            except simclient.ControlError as error:
                if error.status is None:  # unreachable, not a refusal
                    return False
        return True

    def pod_counts(self, namespace: str, name: str, version: str | None = None) -> tuple[int, int]:
        """(success, failure) requests the simulator served for a deployment's pods (of one version)."""
        success = failure = 0
        for pod in self.sim.state()["pods"]:
            if pod.get("namespace") != namespace or pod.get("modeldeployment") != name:
                continue
            if version is not None and str(pod.get("version")) != version:
                continue
            success += int(pod.get("success", 0))
            failure += sum(int(v) for v in pod.get("failure", {}).values())
        return success, failure


def wait_available(kube: Cluster, namespace: str, name: str, timeout: float) -> None:
    waiting.until(
        lambda: (condition(kube.get(namespace, name), "Available") or {}).get("status") == "True",
        timeout,
        f"{name} Available",
    )


def other_operators(mine: set[int]) -> list[str]:
    """Command lines of ``vigil run`` processes on this machine that the benchmark did not start.

    They may reconcile the benchmark's namespaces too (``-A``), which would skew the numbers; the
    report says so rather than hiding it.
    """
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        if "vigil" in words and "run" in words and "-m" in words:
            found.append(" ".join(words))
    return found
