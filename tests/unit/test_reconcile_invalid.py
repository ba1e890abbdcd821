"""The real reconcile of a spec vigil refuses: Degraded/InvalidSpec naming the field, on that object only.

The Kubernetes edge is replaced by a recorder that serves the one object and records what is
written; any other call fails the test, which proves a refused spec touches nothing else.
"""

from __future__ import annotations

import asyncio
import copy
import typing
from typing import Any

import pytest

from tests import validation_cases as cases
from tests.unit import factories
from vigil.api import conditions as cond
from vigil.api import modeldeployment as mdapi
from vigil.reconcile import kube, operator


class RecordingKube:
    """Serves one ModelDeployment; records status writes and Events."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.statuses: list[mdapi.ModelDeploymentStatus] = []
        self.events: list[tuple[str, str, str]] = []

    async def get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.raw)

    async def apply_md_status(self, namespace: str, name: str, status: mdapi.ModelDeploymentStatus) -> None:
        self.statuses.append(status)
        self.raw["status"] = status.wire()

    async def post_event(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a refused spec must not reach Kube.{name}")


def stored(patch: dict[str, Any], generation: int = 3) -> dict[str, Any]:
    """A ModelDeployment as the API server stores it (e.g. from before the schema was tightened)."""
    raw = cases.merge(cases.md_manifest("resnet"), patch)
    raw["metadata"].update(namespace="ml", uid="uid-1", generation=generation)
    return raw


def reconcile(raw: dict[str, Any], min_window: str = "20s") -> tuple[RecordingKube, operator.Runtime]:
    recorder = RecordingKube(raw)
    runtime = operator.Runtime(settings=operator.Settings(min_window=min_window), kube=typing.cast(kube.Kube, recorder))
    runtime.mds[("ml", "resnet")] = factories.md()  # what an earlier, valid generation left behind

    async def once() -> None:
        await operator.reconcile(runtime, ("ml", "resnet"))
        await runtime.poster.flush()  # the Events it decided, posted beside it

    asyncio.run(once())
    return recorder, runtime


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"spec": {"triton": {"cpu": "0"}}}, "spec.triton.cpu"),
        ({"spec": {"slos": [{"name": "a", "kind": "availability", "period": "0s"}]}}, "spec.slos[0].period"),
        ({"spec": {"traffic": {"gateway": ""}}}, "spec.traffic.gateway"),
        ({"spec": {"slos": [{"name": "a", "kind": "availability", "period": "10s"}]}}, "spec.slos[0].period"),
    ],
    ids=[
        "cpu-0-stored-before-the-schema",
        "period-0s-stored-before-the-schema",
        "blank-gateway",
        "period-below-min-window",
    ],
)
def test_a_refused_spec_is_degraded_invalid_spec_naming_the_field_and_nothing_else(
    patch: dict[str, Any], field: str
) -> None:
    recorder, runtime = reconcile(stored(patch))
    (status,) = recorder.statuses
    degraded = cond.find(status.conditions, "Degraded")
    assert degraded is not None
    assert (degraded.status, degraded.reason) == (cond.ConditionStatus.TRUE, "InvalidSpec")
    assert field in degraded.message
    assert degraded.observed_generation == status.observed_generation == 3
    ((type_, reason, message),) = recorder.events
    assert (type_, reason) == ("Warning", "InvalidSpec")
    assert field in message
    assert ("ml", "resnet") not in runtime.mds  # out of the fleet evaluation


def test_the_same_refusal_again_posts_no_second_event_but_a_new_problem_does() -> None:
    raw = stored({"spec": {"triton": {"cpu": "0"}}})
    recorder, _ = reconcile(raw)
    again, _ = reconcile(recorder.raw)
    assert again.events == []
    assert again.statuses == []  # nothing to write either
    recorder.raw["spec"]["triton"]["memory"] = "1.2.3"
    changed, _ = reconcile(recorder.raw)
    assert [e[1] for e in changed.events] == ["InvalidSpec"]
    assert "spec.triton.memory" in changed.events[0][2]


def test_the_period_rule_follows_the_operators_min_window() -> None:
    raw = stored({"spec": {"slos": [{"name": "a", "kind": "availability", "period": "10s"}]}})
    recorder, _ = reconcile(raw, min_window="20s")
    assert recorder.statuses
    degraded = cond.find(recorder.statuses[0].conditions, "Degraded")
    assert degraded is not None
    assert "--min-window" in degraded.message


def test_a_deployment_whose_status_cannot_be_read_leaves_the_fleet_targets_alone() -> None:
    slos = [{"name": "a", "kind": "availability"}]
    good, unreadable = factories.md(name="good", slos=slos), factories.md(name="odd", slos=slos)
    for md in (good, unreadable):
        md.status.current_revision = "r1"
        md.status.revisions = [
            mdapi.Revision(name="r1", model_version="1", shape=md.spec, generation=1, created="2026-11-29T10:00:00Z")
        ]
    unreadable.status.switched_at = "not a time"
    targets = operator.fleet_targets([unreadable, factories.md(name="no-slos"), good])
    assert [t.name for t in targets] == ["good"]
