"""Many cheap ModelDeployments healed at once, and the evidence that each was healed exactly once.

The isolated-lane tests (chaos, API server restart, Prometheus outage, a scale mid-plan) heal
deployments the same way; chaos heals many concurrently, so one run exercises many plans. Their
deployments hold no GPU (``gpus: 0`` and a toleration for the GPU nodes' taint) and little CPU:
the serial lane counts free GPUs and must see the same cluster whether or not these run beside it.

:class:`Recorder` watches the namespace's ModelDeployments and Deployments from the test process
(independently of the operator) and keeps every distinct ``status.rollback`` and every
``spec.replicas`` a Deployment went through, so "the action happened once" is judged from the
API server's history, not only from what the operator wrote about itself.
:func:`check_heal` is the verdict for one healed deployment.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import json
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from kubernetes import client, watch
from kubernetes.client import exceptions

from tests.e2e import events, waiting
from vigil.sim import client as simclient

GROUP, VERSION, PLURAL = "vigil.dev", "v1alpha1", "modeldeployments"
APPLY = "application/apply-patch+yaml"
AVAILABILITY = {"name": "availability", "kind": "availability", "objective": 99.0, "period": "1h"}
NO_GPU = {
    "gpus": 0,
    "cpu": "100m",
    "memory": "256Mi",
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}
# Timeline entries that a plan writes once per step and round; a second one is a replayed action.
ONCE_ENTRIES = ("Detected", "Diagnosed", "Planned", "Intent", "Applied", "Verified", "Resolved")
T = TypeVar("T")


def md_manifest(name: str, version: str = "1", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {"name": "resnet50", "repository": "s3://models/resnet50", "version": version},
        "replicas": 1,
        "maxReplicas": 2,
        "bakeTime": "15s",
        "triton": NO_GPU,
        "slos": [AVAILABILITY],
    }
    body.update(spec)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": name}, "spec": body}


def retried(call: Callable[[], T], what: str, timeout: float = 90) -> T:
    """An idempotent API call, retried through an API server restart (the other lane may cause one)."""
    box: list[T] = []

    def attempt() -> bool:
        box.append(call())
        return True

    waiting.until(attempt, timeout, what, interval=1.0)
    return box[-1]


def apply_md(kube: client.ApiClient, ns: str, body: dict[str, Any]) -> None:
    """Server-side apply as a user would (``kubectl apply --server-side``): idempotent, so retryable."""
    name = body["metadata"]["name"]
    custom = client.CustomObjectsApi(kube)
    retried(
        lambda: custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, name, body, field_manager="e2e-user", force=True, _content_type=APPLY
        ),
        f"apply ModelDeployment {ns}/{name}",
    )


def apply_runbook(kube: client.ApiClient, ns: str, name: str, spec: dict[str, Any]) -> None:
    """A Runbook applied the way a user would (server-side, idempotent)."""
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Runbook", "metadata": {"name": name}, "spec": spec}
    retried(
        lambda: client.CustomObjectsApi(kube).patch_namespaced_custom_object(
            GROUP, VERSION, ns, "runbooks", name, body, field_manager="e2e-user", force=True, _content_type=APPLY
        ),
        f"apply Runbook {ns}/{name}",
    )


def step_of(incident: dict[str, Any], name: str) -> dict[str, Any]:
    """A plan step's progress by name ({} while the plan has no such step yet)."""
    steps = ((incident.get("status") or {}).get("plan") or {}).get("steps", [])
    return next((s for s in steps if s["name"] == name), {})


def entries(incident: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [e for e in (incident.get("status") or {}).get("timeline", []) if e["type"] == type_]


def get_md(kube: client.ApiClient, ns: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(kube).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    return found


def list_mds(kube: client.ApiClient, ns: str) -> dict[str, dict[str, Any]]:
    listed = client.CustomObjectsApi(kube).list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
    return {item["metadata"]["name"]: item for item in listed["items"]}


def incidents_by_md(kube: client.ApiClient, ns: str) -> dict[str, list[dict[str, Any]]]:
    listed = client.CustomObjectsApi(kube).list_namespaced_custom_object(GROUP, VERSION, ns, "incidents")
    found: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for item in listed["items"]:
        found[item["spec"]["modelDeployment"]].append(item)
    return found


def condition(md: dict[str, Any], type_: str) -> str | None:
    found = next((c for c in md.get("status", {}).get("conditions", []) if c["type"] == type_), None)
    return str(found["status"]) if found else None


def last_known_good(md: dict[str, Any]) -> str | None:
    return next((r["name"] for r in md.get("status", {}).get("revisions", []) if r.get("lastKnownGood")), None)


def all_of(names: Iterable[str], probe: Callable[[dict[str, Any]], bool], kube: client.ApiClient, ns: str) -> bool:
    mds = list_mds(kube, ns)
    return all(name in mds and probe(mds[name]) for name in names)


def pending(
    names: Iterable[str], probe: Callable[[dict[str, Any]], bool], kube: client.ApiClient, ns: str
) -> list[str]:
    mds = list_mds(kube, ns)
    return [name for name in names if name not in mds or not probe(mds[name])]


def warm_up(
    kube: client.ApiClient, sim: simclient.ControlClient, ns: str, names: list[str], rate: float
) -> dict[str, str]:
    """Every deployment Available, under clean load, with version 1 last-known-good; returns name -> LKG."""
    waiting.until(
        lambda: all_of(names, lambda md: condition(md, "Available") == "True", kube, ns), 240, "all Available"
    )
    for name in names:
        retried(lambda name=name: sim.set_load({"namespace": ns, "name": name, "rate": rate}), f"load on {name}")  # type: ignore[misc]
    waiting.until(
        lambda: all_of(names, lambda md: last_known_good(md) is not None, kube, ns) or None,
        360,
        "version 1 last-known-good everywhere",
        interval=2.0,
    )
    return {name: str(last_known_good(md)) for name, md in list_mds(kube, ns).items() if name in names}


def scraped_seconds(prometheus_url: str, ns: str, name: str) -> float:
    """How many seconds of request counts Prometheus holds for every pod of ``name`` (0: none yet)."""
    selector = f'{{namespace="{ns}",modeldeployment="{name}"}}'
    query = urllib.parse.urlencode({"query": f"nv_inference_request_success{selector}[10m]"})
    with urllib.request.urlopen(f"{prometheus_url}/api/v1/query?{query}", timeout=10) as response:
        series: list[dict[str, Any]] = json.loads(response.read())["data"]["result"]
    spans = [float(s["values"][-1][0]) - float(s["values"][0][0]) for s in series if s["values"]]
    return min(spans, default=0.0)


def steady_for_a_baseline(prometheus_url: str, ns: str, name: str) -> None:
    """Wait until a surge from now on can be told from the load before it.

    Diagnosis compares the request rate over the last 20 s (the e2e operator's ``--rate-window``)
    with at least as long a stretch just before it, from half a minimum window (10 s) after the
    pods were ready: that needs 50 s of data when the breach is diagnosed. A surge breaches within
    seconds, so the steady load must have been scraped for 45 s before it starts; with less, the
    honest diagnosis is Unknown (too young for a baseline).
    """
    waiting.until(lambda: scraped_seconds(prometheus_url, ns, name) >= 45, 120, f"45 s of {name}'s load in Prometheus")


def release_bad_version(kube: client.ApiClient, sim: simclient.ControlClient, ns: str, name: str, **spec: Any) -> None:
    """Version 2 answers 30% errors: a bad release the default runbook rolls back."""
    retried(
        lambda: sim.set_fault({"namespace": ns, "name": name, "version": "2", "errorRatio": 0.3}), f"fault on {name}"
    )
    apply_md(kube, ns, md_manifest(name, version="2", **spec))


def quiet(sim: simclient.ControlClient, ns: str, names: Iterable[str]) -> None:
    """Stop the simulator's load and faults for these deployments (deleting a namespace does not)."""
    for name in names:
        with contextlib.suppress(Exception):
            sim.stop_load(ns, name)
        with contextlib.suppress(Exception):
            sim.clear_faults(ns, name)


@dataclasses.dataclass
class History:
    rollbacks: dict[str, list[dict[str, Any]]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )
    replicas: dict[str, list[int]] = dataclasses.field(default_factory=lambda: collections.defaultdict(list))
    slo_states: dict[str, list[str]] = dataclasses.field(default_factory=lambda: collections.defaultdict(list))
    """Per ModelDeployment, every SLO state its status went through (each change once, in order)."""
    watch_restarts: int = 0


class Recorder:
    """Watches ModelDeployments and Deployments of one namespace in two threads, until stopped."""

    def __init__(self, kube: client.ApiClient, ns: str) -> None:
        self.kube = kube
        self.ns = ns
        self.history = History()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.threads = [
            threading.Thread(target=self._follow, args=(self._list_mds, self._on_md), daemon=True),
            threading.Thread(target=self._follow, args=(self._list_deployments, self._on_deployment), daemon=True),
        ]

    def __enter__(self) -> Recorder:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=15)

    def _list_mds(self, **kwargs: Any) -> Any:
        return client.CustomObjectsApi(self.kube).list_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, **kwargs
        )

    def _list_deployments(self, **kwargs: Any) -> Any:
        # A docstring-less wrapper: the watch then yields plain dicts, as for custom objects.
        listed = client.AppsV1Api(self.kube).list_namespaced_deployment(self.ns, **kwargs)
        return listed if kwargs.get("watch") else self.kube.sanitize_for_serialization(listed)

    def _on_md(self, obj: Any) -> None:
        name = obj["metadata"]["name"]
        rollback = (obj.get("status") or {}).get("rollback")
        if rollback:
            # Carried to a newer spec generation (RollbackKept) it is still the same rollback.
            rollback = {key: value for key, value in rollback.items() if key != "generation"}
        seen = self.history.rollbacks[name]
        if rollback and (not seen or seen[-1] != rollback):
            seen.append(rollback)
        states = self.history.slo_states[name]
        for slo in (obj.get("status") or {}).get("slos", []):
            if not states or states[-1] != slo.get("state"):
                states.append(str(slo.get("state")))

    def _on_deployment(self, obj: Any) -> None:
        name = obj["metadata"]["name"]
        replicas = int(obj["spec"].get("replicas") or 0)
        seen = self.history.replicas[name]
        if not seen or seen[-1] != replicas:
            seen.append(replicas)

    def _follow(self, lister: Callable[..., Any], record: Callable[[Any], None]) -> None:
        """List, then watch from the list's resourceVersion; on any break, resume (or re-list on 410)."""
        version: str | None = None
        while not self.stopped.is_set():
            try:
                if version is None:
                    listed = lister()
                    with self.lock:
                        for item in listed["items"]:
                            record(item)
                    version = listed["metadata"]["resourceVersion"]
                for event in watch.Watch().stream(lister, resource_version=version, timeout_seconds=20):
                    obj = event["object"]
                    if event["type"] == "ERROR":  # typically 410 Gone: the version is too old
                        version = None
                        break
                    if event["type"] != "DELETED":
                        with self.lock:
                            record(obj)
                    version = obj["metadata"]["resourceVersion"]
                    if self.stopped.is_set():
                        break
            except exceptions.ApiException as error:
                if error.status == 410:
                    version = None
                self.history.watch_restarts += 1
                self.stopped.wait(1.0)
            except Exception:  # connection refused while the API server restarts: resume
                self.history.watch_restarts += 1
                self.stopped.wait(1.0)


def step_state(kube: client.ApiClient, ns: str, name: str, step: str = "rollback") -> str | None:
    """The state of ``step`` in the plan of deployment ``name``'s only Incident (None: no such thing yet)."""
    incidents = incidents_by_md(kube, ns).get(name, [])
    if len(incidents) != 1:
        return None
    steps = (incidents[0].get("status", {}).get("plan") or {}).get("steps", [])
    return next((str(s["state"]) for s in steps if s["name"] == step), None)


def all_resolved(kube: client.ApiClient, ns: str, names: Iterable[str]) -> bool:
    """Whether each deployment has exactly one Incident and it is Resolved."""
    found = incidents_by_md(kube, ns)
    return all([i.get("status", {}).get("phase") for i in found.get(name, [])] == ["Resolved"] for name in names)


def problems_by_md(kube: client.ApiClient, ns: str, good: dict[str, str], history: History) -> dict[str, list[str]]:
    """:func:`check_heal` for every deployment in ``good`` (name -> its last-known-good revision); only failures."""
    incidents = incidents_by_md(kube, ns)
    verdicts = {name: check_heal(kube, ns, name, lkg, history, incidents.get(name, [])) for name, lkg in good.items()}
    return {name: problems for name, problems in verdicts.items() if problems}


def rises(values: list[int]) -> int:
    """How often a Deployment went from 0 replicas to some: each is one scale-up that happened."""
    return sum(1 for before, after in itertools.pairwise(values) if before == 0 and after > 0)


def check_heal(
    kube: client.ApiClient, ns: str, name: str, good: str, history: History, incidents: list[dict[str, Any]]
) -> list[str]:
    """Everything wrong with one healed deployment (empty: healed exactly once, timeline complete)."""
    problems: list[str] = []
    if len(incidents) != 1:
        return [f"{len(incidents)} Incidents (want exactly 1)"]
    incident = incidents[0]
    status = incident.get("status", {})
    if status.get("phase") != "Resolved":
        problems.append(f"phase {status.get('phase')}")
    if (status.get("diagnosis") or {}).get("cause") != "BadRollout":
        problems.append(f"diagnosis {(status.get('diagnosis') or {}).get('cause')}")
    steps = {s["name"]: s for s in (status.get("plan") or {}).get("steps", [])}
    if (steps.get("rollback") or {}).get("state") != "Succeeded":
        problems.append(f"rollback step {(steps.get('rollback') or {}).get('state')}")
    timeline = status.get("timeline", [])
    types = [e["type"] for e in timeline]
    if not types or types[0] != "Detected" or types[-1] != "Resolved":
        problems.append(f"timeline does not run Detected .. Resolved: {types}")
    if types.count("Intent") != 1:
        problems.append(f"{types.count('Intent')} Intent entries: {types}")
    elif not {"Applied", "Effective", "Verified"} & set(types[types.index("Intent") :]):
        problems.append(f"no result after the Intent: {types}")
    counted = collections.Counter(
        (e["type"], e.get("step"), e["message"]) for e in timeline if e["type"] in ONCE_ENTRIES
    )
    problems += [f"duplicate timeline entry {key}" for key, n in counted.items() if n > 1]
    times = [e["time"] for e in timeline]
    if times != sorted(times):
        problems.append("timeline out of order")

    md = get_md(kube, ns, name)
    rollback = md["status"].get("rollback") or {}
    if rollback.get("revision") != good or md["status"].get("currentRevision") != good:
        problems.append(f"serving {md['status'].get('currentRevision')}, rollback {rollback}, want {good}")
    if md["spec"]["model"]["version"] != "2":
        problems.append("the user's spec was edited")
    written = history.rollbacks.get(name, [])
    if len(written) != 1:
        problems.append(f"status.rollback written {len(written)} distinct times: {written}")
    lkg_replicas = history.replicas.get(f"{name}-{good}", [])
    if rises(lkg_replicas) > 1:
        problems.append(f"last-known-good Deployment scaled up {rises(lkg_replicas)} times: {lkg_replicas}")
    # The plan's Events are posted on the ModelDeployment (an Intent entry is an ActionIntended Event
    # "<step>: <action>"); read once, a late one can only be missed, never counted twice.
    intended = events.on(kube, ns, name, "ActionIntended")
    intents = sum(e.count or 1 for e in intended if str(e.message).startswith("rollback: "))
    if intents > 1:
        problems.append(f"{intents} ActionIntended Events for the rollback")
    return problems
