"""Sampling deployments through a long run, and the pure summaries of the samples.

The quiet and efficiency benchmarks run for many minutes; what they report is a function of a
time series: each deployment's SLO verdicts (vigil's own, from ``status.slos``), the overrides
in force (``status.scale``, ``rollback``, ``traffic``: what vigil or a baseline did), its
replicas, and the GPUs its pods hold. :class:`Watcher` takes a :class:`Sample` of every
deployment every ``interval`` seconds on a thread; the functions below turn the samples into the
numbers of the report and have unit tests.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from bench import cluster
from vigil import labels

OVERRIDES = ("scale", "rollback", "traffic")
TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclasses.dataclass(frozen=True)
class Sample:
    at: float
    slos: dict[str, str]
    """SLO name -> state (Met, Warning, Breached, NoData...)."""
    overrides: tuple[str, ...]
    spec_replicas: int
    ready_replicas: int
    pods: int
    gpus: int
    """GPUs requested by the deployment's pods that hold them (scheduled, not terminating)."""


def _holds_gpus(pod: Any) -> bool:
    """Scheduled on a node, not terminating, not finished: its GPUs are taken."""
    scheduled = bool(pod.spec and pod.spec.node_name)
    terminating = bool(pod.metadata and pod.metadata.deletion_timestamp)
    finished = bool(pod.status and pod.status.phase in TERMINAL_PHASES)
    return scheduled and not terminating and not finished


def _gpus(pod: Any) -> int:
    total = 0
    for container in pod.spec.containers or []:
        limits = (container.resources.limits if container.resources else None) or {}
        total += int(limits.get(labels.GPU_RESOURCE, 0) or 0)
    return total


def take(kube: cluster.Cluster, namespace: str, name: str, at: float) -> Sample:
    md = kube.get(namespace, name)
    status = md.get("status", {})
    pods = kube.core.list_namespaced_pod(
        namespace, label_selector=f"{labels.MODEL_DEPLOYMENT}={name}", _request_timeout=cluster.TIMEOUT
    ).items
    holding = [p for p in pods if _holds_gpus(p)]
    return Sample(
        at=at,
        slos={str(s.get("name")): str(s.get("state")) for s in status.get("slos", [])},
        overrides=tuple(key for key in OVERRIDES if status.get(key)),
        spec_replicas=int(md["spec"].get("replicas", 0)),
        ready_replicas=int(status.get("readyReplicas", 0) or 0),
        pods=len(holding),
        gpus=sum(_gpus(p) for p in holding),
    )


class Watcher(threading.Thread):
    """Samples the named deployments every ``interval`` seconds until stopped."""

    def __init__(self, kube: cluster.Cluster, namespace: str, names: Sequence[str], interval: float) -> None:
        super().__init__(name=f"watch-{namespace}", daemon=True)
        self.kube = kube
        self.namespace = namespace
        self.names = list(names)
        self.interval = interval
        self.samples: dict[str, list[Sample]] = {name: [] for name in self.names}
        self.errors = 0
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        deadline = time.monotonic()
        while not self._stop_event.is_set():
            at = time.time()
            for name in self.names:
                try:
                    self.samples[name].append(take(self.kube, self.namespace, name, at))
                except Exception:  # a slow or failing API call: a missing sample, counted
                    self.errors += 1
            # The sampling period is the measurement's resolution, not a wait for a condition.
            deadline += self.interval
            self._stop_event.wait(max(0.0, deadline - time.monotonic()))

    def between(self, name: str, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples[name] if start <= s.at < end]


def episodes(samples: Sequence[Sample], slo: str, state: str) -> int:
    """How many times the SLO entered ``state`` (a run of consecutive samples in it counts once)."""
    count, inside = 0, False
    for sample in samples:
        now = sample.slos.get(slo) == state
        count += now and not inside
        inside = now
    return count


def share(samples: Sequence[Sample], slo: str, state: str = "Met") -> float | None:
    """Share of the samples whose verdict for ``slo`` is ``state``."""
    if not samples:
        return None
    return sum(1 for s in samples if s.slos.get(slo) == state) / len(samples)


def gpu_minutes(samples: Sequence[Sample], end: float | None = None) -> float:
    """GPUs held integrated over time (each sample's count holds until the next sample or ``end``)."""
    total = 0.0
    for sample, following in zip(samples, [*samples[1:], None], strict=True):
        until = following.at if following is not None else (end if end is not None else sample.at)
        total += sample.gpus * max(0.0, until - sample.at)
    return total / 60.0


def overrides_seen(samples: Iterable[Sample]) -> list[str]:
    """The override kinds (scale, rollback, traffic) that were in force at any sample."""
    seen: set[str] = set()
    for sample in samples:
        seen.update(sample.overrides)
    return sorted(seen)


def replicas_range(samples: Sequence[Sample]) -> tuple[int, int] | None:
    if not samples:
        return None
    return min(s.pods for s in samples), max(s.pods for s in samples)


def timeline(samples: Sequence[Sample], origin: float, slos: Sequence[str]) -> list[list[Any]]:
    """Compact series for the JSON and the plots: [seconds since origin, pods, state of each SLO]."""
    return [[round(s.at - origin, 1), s.pods, *(s.slos.get(slo) for slo in slos)] for s in samples]
