"""A fault-injecting, in-memory stand-in for the operator's Kubernetes edge (:class:`vigil.reconcile.kube.Kube`).

It has the same async methods as ``Kube`` and keeps the objects they read and write in memory,
so tests drive the operator's real code (``operator._reconcile``, ``healing.run_plan``) and
look at the cluster afterwards. Every call is counted; :attr:`FakeKube.faults` maps a call
number to a :class:`Fault`, which raises instead of the call (``before``: nothing happened) or
after it (``after``: it happened, but the caller saw an error, like a timed-out write).

What it plays of the cluster, kept deliberately small: Deployments applied become ready at once;
a deleted pod is replaced by a fresh, ready one of the same revision; custom objects keep their
status apart from their spec, as the status subresource does.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import urllib3
from kubernetes.client import exceptions

from vigil.api import incident as incapi
from vigil.diagnose import pods as podfacts
from vigil.reconcile import core

Key = tuple[str, str, str]  # plural, namespace, name


@dataclasses.dataclass(frozen=True)
class Fault:
    """What goes wrong at one call: ``error`` is raised ``before`` the call takes effect or ``after``."""

    error: BaseException
    after: bool = False


def api_error(status: int, reason: str) -> exceptions.ApiException:
    error = exceptions.ApiException(status=status, reason=reason)
    error.body = f'{{"kind": "Status", "message": "injected {status} {reason}"}}'
    return error


FAULTS: dict[str, Fault] = {
    "connection-refused": Fault(urllib3.exceptions.MaxRetryError(None, "/", "Connection refused")),  # type: ignore[arg-type]
    "conflict-409": Fault(api_error(409, "Conflict")),
    "gone-410": Fault(api_error(410, "Gone")),
    "throttled-429": Fault(api_error(429, "Too Many Requests")),
    "server-500": Fault(api_error(500, "Internal Server Error")),
    "timeout": Fault(TimeoutError("read timed out")),
    "timeout-after-write": Fault(TimeoutError("read timed out"), after=True),
    "reset-after-write": Fault(urllib3.exceptions.ProtocolError("Connection aborted"), after=True),
}


@dataclasses.dataclass
class _Pods:
    """``pod_deleter.delete_namespaced_pod``, as :mod:`vigil.act.restart` calls it (synchronously)."""

    kube: FakeKube

    def delete_namespaced_pod(self, name: str, namespace: str, **_: Any) -> None:
        self.kube.enter("delete_pod", lambda: self.kube.delete_pod(name))


@dataclasses.dataclass
class FakeKube:
    objects: dict[Key, dict[str, Any]] = dataclasses.field(default_factory=dict)
    secrets: dict[tuple[str, str, str], str] = dataclasses.field(default_factory=dict)
    config_maps: dict[tuple[str, str], dict[str, str]] = dataclasses.field(default_factory=dict)
    """(namespace, name) -> data."""
    pods: list[podfacts.PodFacts] = dataclasses.field(default_factory=list)
    deployments: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    events: list[tuple[str, str, str, str]] = dataclasses.field(default_factory=list)
    """(involved object's name, type, reason, message)."""
    faults: dict[int, Fault] = dataclasses.field(default_factory=dict)
    calls: list[str] = dataclasses.field(default_factory=list)
    deleted_pods: list[str] = dataclasses.field(default_factory=list)
    md_status_writes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    free: int = 8
    _replacements: int = 0

    def fence(self) -> None:
        """Like ``Kube.fence`` for a single replica: it always holds the lease."""

    # -- fault injection -----------------------------------------------------------------------

    def enter(self, name: str, effect: Any) -> Any:
        """Count the call, raise its fault (if any) before or after ``effect()``."""
        number = len(self.calls)
        self.calls.append(name)
        fault = self.faults.get(number)
        if fault is not None and not fault.after:
            raise fault.error
        result = effect()
        if fault is not None:
            raise fault.error
        return result

    @property
    def pod_deleter(self) -> _Pods:
        return _Pods(self)

    # -- the cluster's side --------------------------------------------------------------------

    def delete_pod(self, name: str) -> None:
        found = next((p for p in self.pods if p.name == name), None)
        if found is None:
            raise api_error(404, "Not Found")
        self.deleted_pods.append(name)
        self._replacements += 1
        fresh = podfacts.PodFacts(
            name=f"{name}-r{self._replacements}",
            revision=found.revision,
            phase="Running",
            ready=True,
            scheduled=True,
            containers=(podfacts.ContainerFacts("triton", ready=True, restarts=0, state=podfacts.RUNNING),),
        )
        self.pods = [p for p in self.pods if p.name != name] + [fresh]

    def incidents(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (plural, _, _), o in self.objects.items() if plural == incapi.PLURAL]

    # -- Kube's methods ------------------------------------------------------------------------

    async def get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.enter("get_custom", lambda: copy.deepcopy(self.objects.get((plural, namespace, name))))  # type: ignore[no-any-return]

    async def list_custom(self, plural: str, namespace: str | None, selector: str = "") -> list[dict[str, Any]]:
        def listed() -> list[dict[str, Any]]:
            wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
            return [
                copy.deepcopy(o)
                for (p, ns, _), o in sorted(self.objects.items())
                if p == plural
                and namespace in (None, ns)
                and all((o["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
            ]

        return self.enter("list_custom", listed)  # type: ignore[no-any-return]

    async def create_custom(self, plural: str, namespace: str, body: dict[str, Any]) -> None:
        def create() -> None:
            key = (plural, namespace, body["metadata"]["name"])
            if key in self.objects:
                raise api_error(409, "AlreadyExists")
            stored = copy.deepcopy(body)
            stored["metadata"]["namespace"] = namespace
            stored.pop("status", None)
            self.objects[key] = stored

        self.enter("create_custom", create)

    async def delete_custom(self, plural: str, namespace: str, name: str) -> None:
        self.enter("delete_custom", lambda: self.objects.pop((plural, namespace, name), None))

    async def apply_status(self, plural: str, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        def write() -> None:
            found = self.objects.get((plural, namespace, name))
            if found is None:
                raise api_error(404, "Not Found")
            found["status"] = copy.deepcopy(status)
            if plural == "modeldeployments":
                self.md_status_writes.append(copy.deepcopy(status))

        self.enter(f"apply_status:{plural}", write)

    async def apply_md_status(self, namespace: str, name: str, status: Any) -> None:
        await self.apply_status("modeldeployments", "ModelDeployment", namespace, name, status.wire())

    async def observe(self, namespace: str, md_name: str) -> core.Observed:
        def observed() -> core.Observed:
            workloads = {
                rev: core.Workload(rev, d["spec"]["replicas"], d["spec"]["replicas"], d["spec"]["replicas"])
                for rev, d in self.deployments.items()
            }
            return core.Observed(workloads=workloads, pods=tuple(self.pods))

        return self.enter("observe", observed)  # type: ignore[no-any-return]

    async def has_gateway_api(self) -> bool:
        return self.enter("has_gateway_api", lambda: False)  # type: ignore[no-any-return]

    async def free_gpus(self) -> int:
        return self.enter("free_gpus", lambda: self.free)  # type: ignore[no-any-return]

    async def apply(self, manifest: dict[str, Any]) -> None:
        def applied() -> None:
            if manifest["kind"] == "Deployment":
                revision = manifest["metadata"]["labels"]["vigil.dev/revision"]
                self.deployments[revision] = copy.deepcopy(manifest)

        self.enter(f"apply:{manifest['kind']}", applied)

    async def delete_deployment(self, namespace: str, name: str) -> None:
        self.enter("delete_deployment", lambda: None)

    async def post_event(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.enter("post_event", lambda: self.events.append((involved["metadata"]["name"], type_, reason, message)))

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        return self.enter("secret_value", lambda: self.secrets.get((namespace, name, key)))  # type: ignore[no-any-return]

    async def config_map_data(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.enter("config_map_data", lambda: copy.deepcopy(self.config_maps.get((namespace, name))))  # type: ignore[no-any-return]
