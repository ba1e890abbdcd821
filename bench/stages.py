"""Where a burst's create → Available time goes: each deployment's milestones, stage by stage.

A ModelDeployment becomes Available through six hands, each of which can be the bottleneck of a
burst of N creations:

1. **operator**: the create is seen, queued, reconciled; vigil applies the revision Deployment;
2. **controllers**: kube-controller-manager's Deployment and ReplicaSet controllers create the pod;
3. **scheduler**: kube-scheduler binds it to a node;
4. **kwok**: kwok's pod-start Stage plays the kubelet (phase Running, pod IP);
5. **kwok**: the pod-ready Stage turns it Ready after the sandbox's ready delay (the model load);
6. **operator**: the pod's change is seen, queued, reconciled; vigil writes ``Available=True``
   once the deployment's Service exists too, which vigil creates beside the reconcile after the
   Deployment and the API server allocates a cluster IP for (one at a time: a stage of its own).

:class:`Milestones` watches the namespace's Deployments, Services and pods from the benchmark (plain JSON,
client-side receive times, no polling), and :func:`breakdown` turns the milestones into each
stage's duration per deployment (p50/p99) and its *makespan* (when the last deployment finished
it, from the burst's start): a stage that is slow for everyone shows in its duration; a stage that
is a throughput limit shows as a makespan that grows with N while its per-item duration is small.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from kubernetes.watch import watch as kwatch

from bench import cluster, stats
from vigil import labels
from vigil.reconcile import informer

# (stage, from milestone, to milestone); "created" and "available" come from the burst and FleetWatch.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("operator: create -> Deployment applied", "created", "deployment"),
    ("controllers: Deployment -> pod", "deployment", "pod"),
    ("scheduler: pod -> bound", "pod", "scheduled"),
    ("kwok: bound -> running", "scheduled", "started"),
    ("kwok: running -> Ready (ready delay)", "started", "ready"),
    # Beside the pod's stages: the stable Service, created after the Deployment (and needed for
    # Available); the API server allocates cluster IPs one at a time, so its makespan grows with N.
    ("API server: Deployment applied -> Service created", "deployment", "service"),
    ("operator: pod Ready -> Available", "ready", "available"),
)
WATCH_SECONDS = 1800


def _owner(obj: dict[str, Any]) -> str | None:
    owner = ((obj.get("metadata") or {}).get("labels") or {}).get(labels.MODEL_DEPLOYMENT)
    return None if owner is None else str(owner)


def pod_milestones(pod: dict[str, Any]) -> list[str]:
    """The milestones a pod's current state shows it has reached."""
    reached = ["pod"]
    if (pod.get("spec") or {}).get("nodeName"):
        reached.append("scheduled")
    status = pod.get("status") or {}
    if status.get("podIP"):
        reached.append("started")
    if any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []):
        reached.append("ready")
    return reached


class Milestones:
    """The first moment (receive time) each deployment's Deployment and pod reached each milestone."""

    def __init__(self, kube: cluster.Cluster, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.seen: dict[str, dict[str, float]] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.responses: list[Any] = []
        self.threads = [
            threading.Thread(target=self._follow, args=(path, kind), name=f"stages-{kind}", daemon=True)
            for path, kind in (
                (f"/apis/apps/v1/namespaces/{namespace}/deployments", "deployment"),
                (f"/api/v1/namespaces/{namespace}/pods", "pod"),
                (f"/api/v1/namespaces/{namespace}/services", "service"),
            )
        ]

    def __enter__(self) -> Milestones:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        for response in list(self.responses):  # wake the threads blocked reading their streams
            sock = getattr(getattr(response, "connection", None), "sock", None)
            with contextlib.suppress(OSError):
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
                response.close()
        for thread in self.threads:
            thread.join(timeout=10)
        self.kube.close()

    def _reach(self, owner: str, reached: Sequence[str], at: float) -> None:
        with self.lock:
            mine = self.seen.setdefault(owner, {})
            for milestone in reached:
                mine.setdefault(milestone, at)

    def _follow(self, path: str, kind: str) -> None:
        query = [("watch", "true"), ("labelSelector", labels.MODEL_DEPLOYMENT), ("timeoutSeconds", str(WATCH_SECONDS))]
        while not self.stopped.is_set():
            try:
                response = informer.stream(self.kube.api, path, query, (10.0, WATCH_SECONDS + 60.0))
            except Exception:  # the API server busy with the burst: try again
                self.stopped.wait(0.5)
                continue
            self.responses.append(response)
            try:
                for line in _lines(response):
                    now = time.time()
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    owner = _owner(obj)
                    if owner is None or event.get("type") in ("DELETED", "ERROR", "BOOKMARK"):
                        continue
                    self._reach(owner, pod_milestones(obj) if kind == "pod" else [kind], now)
                    if self.stopped.is_set():
                        return
            except Exception:  # a broken stream: resume (milestones already seen are kept)
                self.stopped.wait(0.5)
            finally:
                self.responses.remove(response)
                response.release_conn()

    def snapshot(self) -> dict[str, dict[str, float]]:
        with self.lock:
            return {name: dict(found) for name, found in self.seen.items()}


def _lines(response: Any) -> Iterator[str]:
    for line in kwatch.iter_resp_lines(response):  # type: ignore[no-untyped-call]
        if line and not line.isspace():
            yield line


def breakdown(
    created: Mapping[str, float],
    available: Mapping[str, float],
    seen: Mapping[str, Mapping[str, float]],
    started: float,
) -> list[dict[str, Any]]:
    """Each stage's duration over the deployments that reached both its ends (p50, p99, max,
    seconds), how many did, and its makespan: from ``started`` to the last one reaching its end."""
    moments: dict[str, dict[str, float]] = {}
    for name, at in created.items():
        moments[name] = {"created": at, **dict(seen.get(name, {}))}
        if name in available:
            moments[name]["available"] = available[name]
    rows = []
    for stage, begin, end in STAGES:
        durations = [m[end] - m[begin] for m in moments.values() if begin in m and end in m]
        ends = [m[end] - started for m in moments.values() if end in m]
        rows.append(
            {
                "stage": stage,
                "from": begin,
                "to": end,
                "count": len(durations),
                "p50": round(stats.percentile(durations, 50.0), 3) if durations else None,
                "p99": round(stats.percentile(durations, 99.0), 3) if durations else None,
                "max": round(max(durations), 3) if durations else None,
                "makespan": round(max(ends), 3) if ends else None,
            }
        )
    return rows
