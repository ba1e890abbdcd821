"""Exactly once across crashes: whole plans replayed with a crash at every point of every cycle.

A worker pass is: advance, *write*, execute the intents (the next pass advances with their
results). A crash after the write leaves a recorded intent that was never executed; a crash after
executing leaves an executed intent that was never confirmed. Either way the restarted worker
starts again from what was written. The properties:

* the plan issues the same intents, in the same order, as without crashes;
* a replay re-issues only the very same intent (same key, same absolute target), never a new one;
* every cluster action takes effect exactly once (md-status overrides are observed as applied,
  a deleted pod is observed as gone); only a notification may be re-sent, under the same
  idempotency key, when the crash fell between sending it and recording that it was sent;
* the plan ends in the same state.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import pytest

from tests.unit import actkit
from tests.unit.actkit import BAD
from vigil.act import intents, machine
from vigil.api import incident as incapi
from vigil.api import runbook as rbapi
from vigil.api import slo as sloapi

Cause = rbapi.Cause
S = incapi.StepState


def load_surge() -> actkit.World:
    """scale-out 2 -> 4 -> 6 (max) still breached, shift to fallback, no traffic left: escalate."""
    md = actkit.deployment(replicas=2, maxReplicas=6, traffic={"fallback": "resnet-big"})

    def slo(world: actkit.World) -> sloapi.SLOState:
        if world.md.status.traffic is not None:
            return sloapi.SLOState.INSUFFICIENT_TRAFFIC
        return actkit.BREACHED

    return actkit.World(
        md=md, status=actkit.opened(actkit.plan(Cause.LOAD_SURGE)), cause=Cause.LOAD_SURGE, slo=slo, step_seconds=60
    )


def crashing_pods() -> actkit.World:
    """Two failing pods restarted one at a time, still breached, then a rollback that heals it."""
    md = actkit.deployment(switched_at=actkit.at(-3600))
    pods = [
        machine.Pod("p-1", BAD, ready=False, failing=True),
        machine.Pod("p-2", BAD, ready=False, failing=True),
        machine.Pod("p-3", BAD, ready=True),
    ]

    def slo(world: actkit.World) -> sloapi.SLOState:
        return actkit.MET if world.md.status.current_revision == actkit.GOOD else actkit.BREACHED

    return actkit.World(
        md=md,
        status=actkit.opened(actkit.plan(Cause.CRASHING_PODS)),
        cause=Cause.CRASHING_PODS,
        slo=slo,
        pods=pods,
        step_seconds=40,
    )


def notify_then_rollback() -> actkit.World:
    """A custom runbook: notify a webhook, then roll back, which heals."""
    spec = actkit.runbook(
        {"name": "page", "action": "notify", "params": {"webhook": {"secretKeyRef": {"name": "pager", "key": "url"}}}},
        {"name": "back", "action": "rollback", "verifyAfter": "30s"},
    )

    def slo(world: actkit.World) -> sloapi.SLOState:
        return actkit.MET if world.md.status.current_revision == actkit.GOOD else actkit.BREACHED

    return actkit.World(
        md=actkit.deployment(),
        status=actkit.opened(actkit.plan(Cause.BAD_ROLLOUT, spec)),
        cause=Cause.BAD_ROLLOUT,
        slo=slo,
        step_seconds=20,
    )


SCENARIOS: dict[str, Callable[[], actkit.World]] = {
    "load-surge": load_surge,
    "crashing-pods": crashing_pods,
    "notify-then-rollback": notify_then_rollback,
}


def first_seen(issued: list[intents.Intent]) -> list[intents.Intent]:
    seen: dict[str, intents.Intent] = {}
    for intent in issued:
        seen.setdefault(intent.key, intent)
    return list(seen.values())


def outcome(world: actkit.World) -> tuple[list[tuple[str, incapi.StepState]], incapi.Phase]:
    return actkit.states(world.status), world.status.phase


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_plan_without_crashes_issues_each_intent_once(scenario: str) -> None:
    world = SCENARIOS[scenario]()
    world.run()
    assert len(world.issued) == len({i.key for i in world.issued})
    assert len(world.md_writes) == len(set(world.md_writes))
    assert len(world.received) == len(set(world.received))


def test_the_scenarios_cover_every_action_and_an_escalation() -> None:
    kinds: set[type] = set()
    for make in SCENARIOS.values():
        world = make()
        world.run()
        kinds |= {type(i) for i in world.issued}
    assert kinds == {intents.Rollback, intents.Scale, intents.ShiftTraffic, intents.RestartPod, intents.Notify}
    surge = load_surge()
    surge.run()
    assert outcome(surge)[1] is incapi.Phase.ESCALATED
    assert [type(i).__name__ for i in first_seen(surge.issued)] == [
        "Scale",
        "Scale",
        "ShiftTraffic",
        "Notify",
    ]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("point", ["after-write", "after-execute"])
def test_a_crash_at_any_point_of_any_pass_changes_nothing_but_timing(scenario: str, point: str) -> None:
    reference = SCENARIOS[scenario]()
    passes = reference.run()
    expected = first_seen(reference.issued)
    for crash_pass in range(passes):
        world = SCENARIOS[scenario]()
        world.run({crash_pass: point})
        assert first_seen(world.issued) == expected, f"crash {point} in cycle {crash_pass}"
        by_key: dict[str, set[intents.Intent]] = collections.defaultdict(set)
        for intent in world.issued:
            by_key[intent.key].add(intent)
        assert all(len(variants) == 1 for variants in by_key.values()), "a replay changed an intent"
        assert sorted(world.md_writes) == sorted(reference.md_writes), "an override was applied twice"
        assert world.deleted == reference.deleted, "a pod was restarted twice"
        assert set(world.received) == set(reference.received)
        resent = len(world.received) - len(reference.received)
        assert resent <= (1 if point == "after-execute" else 0), "only an unconfirmed notification is re-sent"
        assert outcome(world) == outcome(reference), f"crash {point} in cycle {crash_pass}"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_crashing_after_executing_in_every_other_pass_still_acts_exactly_once(scenario: str) -> None:
    reference = SCENARIOS[scenario]()
    reference.run()
    world = SCENARIOS[scenario]()
    world.run({n: "after-execute" for n in range(0, 400, 2)}, limit=200)
    assert first_seen(world.issued) == first_seen(reference.issued)
    assert sorted(world.md_writes) == sorted(reference.md_writes)
    assert world.deleted == reference.deleted
    assert collections.Counter(world.received).keys() == collections.Counter(reference.received).keys()
    assert outcome(world) == outcome(reference)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_saved_state_replays_its_recorded_intent_and_nothing_else(scenario: str) -> None:
    reference = SCENARIOS[scenario]()
    reference.run()
    known = {i.key: i for i in reference.issued}
    for status, md, pods, now in reference.saved:
        world = SCENARIOS[scenario]()
        world.md, world.pods, world.now, world.status = md.model_copy(deep=True), list(pods), now, status
        ctx = world.context()
        first = machine.advance(status, ctx)
        assert machine.advance(status, ctx) == first, "advance is not deterministic"
        for intent in first.intents:
            assert intent.key not in known or known[intent.key] == intent
        plan = status.plan
        assert plan is not None
        if plan.current < len(plan.steps) and plan.steps[plan.current].state is S.INTENDED:
            recorded = plan.steps[plan.current]
            replayed = [i for i in first.intents if i.key.startswith(f"{actkit.INCIDENT}/{plan.current}-")]
            assert len(first.intents) <= 1
            if replayed:
                assert known[replayed[0].key] == replayed[0]
                assert intents.to_target(replayed[0]).items() <= recorded.target.items()


def test_feeding_the_same_intended_state_twice_returns_the_same_intent() -> None:
    world = load_surge()
    decision = machine.advance(world.status, world.context())
    (scale,) = decision.intents
    world.now = actkit.at(30)
    once = machine.advance(decision.status, world.context())
    twice = machine.advance(once.status, world.context())
    assert once.intents == twice.intents == (scale,)
    assert once.status == twice.status == decision.status
