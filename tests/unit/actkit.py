"""Builders and a simulated worker for the step machine's tests.

:class:`World` plays the per-deployment worker and the cluster around it: it persists the
Incident status, executes intents (md-status overrides through :func:`vigil.act.intents.override`,
pod deletions, webhook posts into a receiver that dedups by idempotency key), lets the reconcile
core's effects happen (traffic switches, replicas become ready) and can "crash" at any point of
a cycle, so tests replay a plan from what was durably written.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from typing import Any

from tests.unit import factories
from vigil.act import intents, machine, runbooks
from vigil.api import conditions as cond
from vigil.api import incident as incapi
from vigil.api import modeldeployment as mdapi
from vigil.api import runbook as rbapi
from vigil.api import slo as sloapi
from vigil.record import incidents as records

NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
INCIDENT = "resnet-latency-20261122115500"
GOOD = "good000000"
BAD = "bad0000000"
BREACHED = sloapi.SLOState.BREACHED
MET = sloapi.SLOState.MET


def at(seconds: float) -> datetime.datetime:
    return NOW + datetime.timedelta(seconds=seconds)


def revision(name: str, good: bool, gpus: int = 1, version: str = "1") -> mdapi.Revision:
    shape = mdapi.PodShape.model_validate(
        {
            "model": {"name": "resnet50", "repository": "s3://models/resnet50", "version": version},
            "triton": {"gpus": gpus},
        }
    )
    return mdapi.Revision(
        name=name,
        model_version=version,
        shape=shape,
        generation=1,
        created=cond.rfc3339(at(-7200)),
        last_known_good=good,
    )


def deployment(
    *,
    replicas: int = 2,
    generation: int = 1,
    revisions: tuple[mdapi.Revision, ...] | None = None,
    current: str | None = BAD,
    previous: str | None = GOOD,
    switched_at: datetime.datetime | None = None,
    ready: int | None = None,
    **spec: Any,
) -> mdapi.ModelDeployment:
    """A ModelDeployment serving ``current`` (default: a fresh bad revision after a good one)."""
    status = mdapi.ModelDeploymentStatus(
        observed_generation=generation,
        replicas=replicas,
        ready_replicas=replicas if ready is None else ready,
        current_revision=current,
        previous_revision=previous,
        switched_at=cond.rfc3339(switched_at or at(-600)),
        revisions=list(revisions if revisions is not None else (revision(GOOD, True), revision(BAD, False))),
    )
    return factories.md(replicas=replicas, generation=generation, status=status, **spec)


def incident_spec(generation: int = 1, revision_: str | None = BAD) -> incapi.IncidentSpec:
    return incapi.IncidentSpec(model_deployment="resnet", slo="latency", revision=revision_, generation=generation)


def opened(plan: incapi.Plan | None) -> incapi.IncidentStatus:
    """A freshly detected Incident status carrying ``plan``."""
    status = incapi.IncidentStatus(
        phase=incapi.Phase.OPEN,
        opened_at=cond.rfc3339(at(-300)),
        timeline=[records.entry(records.DETECTED, "SLO latency Breached", at(-300))],
    )
    status.plan = plan
    return status


def plan(
    cause: rbapi.Cause,
    spec: rbapi.RunbookSpec | None = None,
    mode: rbapi.Mode | None = None,
    name: str | None = None,
) -> incapi.Plan:
    chosen = spec if spec is not None else runbooks.builtin_default()
    return machine.start_plan(name or ("custom" if spec is not None else runbooks.BUILTIN), chosen, mode, cause, NOW)


def runbook(*steps: dict[str, Any], **fields: Any) -> rbapi.RunbookSpec:
    return rbapi.RunbookSpec.model_validate({"steps": list(steps), **fields})


def context(
    md: mdapi.ModelDeployment,
    *,
    now: datetime.datetime = NOW,
    cause: rbapi.Cause = rbapi.Cause.BAD_ROLLOUT,
    slo: sloapi.SLOState | None = BREACHED,
    metrics: bool = True,
    free_gpus: int | None = 8,
    gpus: int = 1,
    unschedulable: int = 0,
    generation: int = 1,
    data_seconds: float | None = 0.0,
    **fields: Any,
) -> machine.Context:
    """``data_seconds``: the verdict rests on the data of that many seconds before ``now`` (None: unknown)."""
    return machine.Context(
        now=now,
        incident=INCIDENT,
        incident_spec=incident_spec(generation),
        md=md,
        slo_state=slo,
        metrics_available=metrics,
        cause=cause,
        capacity=machine.Capacity(free_gpus=free_gpus, gpus_per_replica=gpus, unschedulable_pods=unschedulable),
        judged=None if data_seconds is None else judged(now, data_seconds),
        **fields,
    )


def judged(now: datetime.datetime, seconds: float) -> machine.Judged:
    """A verdict on the ``seconds`` of data before ``now``."""
    return machine.Judged(since=now - datetime.timedelta(seconds=seconds), until=now)


def states(status: incapi.IncidentStatus) -> list[tuple[str, incapi.StepState]]:
    assert status.plan is not None
    return [(s.name, s.state) for s in status.plan.steps]


def step(status: incapi.IncidentStatus, name: str) -> incapi.StepProgress:
    assert status.plan is not None
    return next(s for s in status.plan.steps if s.name == name)


def types(status: incapi.IncidentStatus) -> list[str]:
    return [e.type for e in status.timeline]


def ok(*intent_list: intents.Intent) -> dict[str, intents.Result]:
    return {i.key: intents.Result(ok=True, message="done") for i in intent_list}


MAX_PASSES = 8


@dataclasses.dataclass
class World:
    """The worker, the cluster and a webhook receiver, in one deterministic loop."""

    md: mdapi.ModelDeployment
    status: incapi.IncidentStatus
    cause: rbapi.Cause
    slo: Callable[[World], sloapi.SLOState]
    now: datetime.datetime = NOW
    step_seconds: float = 20.0
    free_gpus: int | None = 8
    gpus: int = 1
    pods: list[machine.Pod] = dataclasses.field(default_factory=list)
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    issued: list[intents.Intent] = dataclasses.field(default_factory=list)
    md_writes: list[str] = dataclasses.field(default_factory=list)
    deleted: list[str] = dataclasses.field(default_factory=list)
    received: list[str] = dataclasses.field(default_factory=list)
    saved: list[tuple[incapi.IncidentStatus, mdapi.ModelDeployment, list[machine.Pod], datetime.datetime]] = (
        dataclasses.field(default_factory=list)
    )
    replacements: int = 0
    data_seconds: float = 0.0

    def context(self, done: dict[str, intents.Result] | None = None) -> machine.Context:
        unschedulable = sum(1 for p in self.pods if p.name.startswith("pending-"))
        return machine.Context(
            now=self.now,
            incident=INCIDENT,
            incident_spec=incident_spec(),
            md=self.md,
            slo_state=self.slo(self),
            metrics_available=True,
            cause=self.cause,
            capacity=machine.Capacity(self.free_gpus, self.gpus, unschedulable),
            annotations=dict(self.annotations),
            pods=tuple(self.pods),
            actions_last_hour=0,
            done=done or {},
            judged=judged(self.now, self.data_seconds),
        )

    def write(self, decision: machine.Decision) -> None:
        self.status = decision.status
        self.saved.append((self.status.model_copy(deep=True), self.md.model_copy(deep=True), list(self.pods), self.now))

    def execute(self, intent: intents.Intent) -> intents.Result:
        if isinstance(intent, intents.Notify):
            self.received.append(intent.key)
            return intents.Result(ok=True, message="delivered (HTTP 200)")
        if isinstance(intent, intents.RestartPod):
            if all(p.name != intent.pod for p in self.pods):
                return intents.Result(ok=True, message=f"pod {intent.pod} already gone")
            self.deleted.append(intent.pod)
            self.replacements += 1
            self.pods = [p for p in self.pods if p.name != intent.pod]
            self.pods.append(machine.Pod(f"fresh-{self.replacements}", BAD, ready=False))
            return intents.Result(ok=True, message=f"pod {intent.pod} deleted")
        new = intents.override(self.md.status, intent, INCIDENT, 1, self.now)
        if new.wire() != self.md.status.wire():
            self.md_writes.append(intent.key)
        self.md.status = new
        return intents.Result(ok=True, message="status written")

    def physics(self) -> None:
        """What the reconcile core and the kubelet do between cycles."""
        status = self.md.status
        if status.rollback is not None:
            status.current_revision = status.rollback.revision
        if status.scale is not None:
            status.replicas = status.scale.replicas
            status.ready_replicas = status.scale.replicas
        self.pods = [dataclasses.replace(p, ready=True) if p.name.startswith("fresh-") else p for p in self.pods]

    passes: int = 0

    def cycle(self, crashes: dict[int, str]) -> None:
        """One worker cycle: advance and write; while intents come back, execute them and advance
        again with their results. ``crashes`` maps a pass number (counted over the whole run) to
        where that pass dies: ``after-write`` or ``after-execute``."""
        done: dict[str, intents.Result] = {}
        for _ in range(MAX_PASSES):
            number = self.passes
            self.passes += 1
            decision = machine.advance(self.status, self.context(done))
            self.issued.extend(decision.intents)
            self.write(decision)
            if not decision.intents or crashes.get(number) == "after-write":
                return
            done = {intent.key: self.execute(intent) for intent in decision.intents}
            if crashes.get(number) == "after-execute":
                return
        raise AssertionError("a cycle kept returning intents")

    def run(self, crashes: dict[int, str] | None = None, limit: int = 80) -> int:
        """Cycle until the plan is finished; returns the number of passes."""
        for number in range(limit):
            plan_ = self.status.plan
            if plan_ is not None and plan_.current >= len(plan_.steps) and number > 0:
                return self.passes
            self.cycle(crashes or {})
            self.physics()
            self.now += datetime.timedelta(seconds=self.step_seconds)
        raise AssertionError(f"plan did not finish in {limit} cycles: {states(self.status)}")
