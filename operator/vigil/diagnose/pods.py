"""Pod facts: what the API server says about a pod, copied as plain data and judged nowhere here.

The edge (:func:`vigil.reconcile.kube.pod_facts`) copies these fields from a pod's status
without interpreting them; what counts as crashing or as unschedulable is decided in one place,
:mod:`vigil.diagnose.cause`, for the diagnosis, the ``Degraded`` condition and the runbooks
alike. The evidence an Incident stores is :func:`describe` of these facts, so it says what was
observed (restart counts, reasons, exit codes, the scheduler's message) and nothing invented.
"""

from __future__ import annotations

import dataclasses
import datetime

RUNNING = "running"
WAITING = "waiting"
TERMINATED = "terminated"
UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class ContainerFacts:
    """One container's status: its current state and its last termination."""

    name: str
    ready: bool
    restarts: int
    state: str = UNKNOWN
    """``running``, ``waiting``, ``terminated`` or ``unknown`` (no state reported yet)."""
    reason: str = ""
    """The current state's reason: ``CrashLoopBackOff``, ``ErrImagePull``, ``OOMKilled``, ..."""
    message: str = ""
    exit_code: int | None = None
    """The current state's exit code, when it is ``terminated``."""
    last_reason: str = ""
    """Why the container last terminated (``lastState.terminated.reason``)."""
    last_exit_code: int | None = None
    last_finished_at: datetime.datetime | None = None


@dataclasses.dataclass(frozen=True)
class PodFacts:
    """One live pod of a ModelDeployment (pods being deleted are not observed)."""

    name: str
    revision: str | None
    phase: str = ""
    ready: bool = False
    reason: str = ""
    """The pod's own status reason (``Evicted``, ``NodeLost``, ...)."""
    scheduled: bool | None = None
    """The ``PodScheduled`` condition: True, False, or None when not reported."""
    schedule_reason: str = ""
    """The ``PodScheduled`` condition's reason when False (``Unschedulable``, ``SchedulingGated``)."""
    schedule_message: str = ""
    """The scheduler's message, e.g. ``0/4 nodes are available: 4 Insufficient nvidia.com/gpu.``."""
    gpus: int = 0
    containers: tuple[ContainerFacts, ...] = ()
    ip: str = ""
    """``status.podIP``: where the golden-request gate reaches the pod's Triton."""

    @property
    def restarts(self) -> int:
        return sum(c.restarts for c in self.containers)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def describe_container(container: ContainerFacts) -> str:
    """``triton: CrashLoopBackOff, last Error exit code 1, 4 restarts``."""
    parts: list[str] = []
    if container.reason:
        exit_code = f" exit code {container.exit_code}" if container.exit_code is not None else ""
        parts.append(f"{container.reason}{exit_code}")
    elif container.state != UNKNOWN:
        parts.append(container.state)
    if container.last_reason or container.last_exit_code is not None:
        code = f" exit code {container.last_exit_code}" if container.last_exit_code is not None else ""
        parts.append(f"last {container.last_reason or 'terminated'}{code}")
    parts.append(_plural(container.restarts, "restart"))
    return f"{container.name}: {', '.join(parts)}"


def describe(pod: PodFacts) -> str:
    """The observed facts of ``pod`` in one line, as evidence and condition messages show them."""
    parts: list[str] = []
    if pod.reason:
        parts.append(pod.reason)
    if pod.scheduled is False:
        parts.append(f"not scheduled: {pod.schedule_message or pod.schedule_reason or 'no reason given'}")
    parts += [describe_container(c) for c in pod.containers]
    parts.append("ready" if pod.ready else "not ready")
    return f"{pod.name} ({'; '.join(parts)})"
