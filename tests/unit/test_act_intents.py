"""Intents: recorded targets round-trip, and md-status overrides are absolute and idempotent."""

from __future__ import annotations

import pytest

from tests.unit import actkit
from tests.unit.actkit import BAD, GOOD, NOW, at
from vigil.act import intents
from vigil.api import runbook as rbapi

ALL: list[tuple[rbapi.Action, intents.Intent]] = [
    (rbapi.Action.ROLLBACK, intents.Rollback(GOOD, BAD, key="k")),
    (rbapi.Action.SCALE_OUT, intents.Scale(4, key="k")),
    (rbapi.Action.SHIFT_TRAFFIC, intents.ShiftTraffic((("md:big", 80), (BAD, 20)), key="k")),
    (rbapi.Action.RESTART_PODS, intents.RestartPod("ml", "p-1", key="k")),
    (rbapi.Action.NOTIFY, intents.Notify(intents.WebhookRef("pager", "url"), "hello", key="k")),
    (rbapi.Action.NOTIFY, intents.Notify(None, "hello", key="k")),
]


@pytest.mark.parametrize(("action", "intent"), ALL)
def test_an_intent_is_rebuilt_exactly_from_its_recorded_target(action: rbapi.Action, intent: intents.Intent) -> None:
    target = intents.to_target(intent)
    assert all(isinstance(v, str) for v in target.values())
    assert intents.from_target(action, {**target, intents.ROUND: "1"}, "k", "ml") == intent


def test_splits_encode_and_decode() -> None:
    splits = (("md:resnet-big", 70), (GOOD, 30))
    assert intents.encode_splits(splits) == "md:resnet-big=70,good000000=30"
    assert intents.decode_splits(intents.encode_splits(splits)) == splits
    assert intents.moves_all_traffic_away((("md:big", 100),))
    assert not intents.moves_all_traffic_away((("md:big", 60), (BAD, 40)))
    assert not intents.moves_all_traffic_away(((GOOD, 100),))


def test_only_rollback_scale_and_traffic_are_status_overrides() -> None:
    assert [intents.is_override(i) for _, i in ALL] == [True, True, True, False, False, False]


def test_override_writes_each_intent_into_its_status_field() -> None:
    md = actkit.deployment()
    rolled = intents.override(md.status, intents.Rollback(GOOD, BAD, "k"), "inc", 3, NOW)
    assert rolled.rollback is not None
    assert (rolled.rollback.revision, rolled.rollback.from_revision, rolled.rollback.incident) == (GOOD, BAD, "inc")
    assert rolled.rollback.generation == 3
    assert rolled.rollback.since == "2026-11-22T12:00:00Z"
    scaled = intents.override(md.status, intents.Scale(5, "k"), "inc", 1, NOW)
    assert scaled.scale is not None
    assert scaled.scale.replicas == 5
    shifted = intents.override(md.status, intents.ShiftTraffic((("md:big", 100),), "k"), "inc", 1, NOW)
    assert shifted.traffic is not None
    assert [(s.backend, s.weight) for s in shifted.traffic.splits] == [("md:big", 100)]
    assert md.status.rollback is None
    assert md.status.scale is None


def test_reapplying_an_override_is_a_no_op_that_keeps_its_since() -> None:
    md = actkit.deployment()
    intent = intents.Scale(4, "k")
    once = intents.override(md.status, intent, "inc", 1, NOW)
    twice = intents.override(once, intent, "inc", 1, at(60))
    assert twice == once
    assert intents.applied(once, intent, "inc")


def test_an_override_made_for_another_incident_or_target_is_not_applied() -> None:
    md = actkit.deployment()
    once = intents.override(md.status, intents.Scale(4, "k"), "other", 1, NOW)
    assert not intents.applied(once, intents.Scale(4, "k"), "inc")
    assert not intents.applied(once, intents.Scale(6, "k"), "other")
    assert not intents.applied(md.status, intents.Rollback(GOOD, BAD, "k"), "inc")
    assert not intents.applied(md.status, intents.ShiftTraffic((("md:x", 100),), "k"), "inc")


def test_descriptions_name_the_absolute_target() -> None:
    assert [intents.describe(i) for _, i in ALL] == [
        f"roll back to revision {GOOD} (from {BAD})",
        "scale to 4 replicas",
        f"shift traffic to md:big 80%, {BAD} 20%",
        "restart pod p-1",
        "notify the webhook in Secret pager (key url)",
        "notify (Events only: no webhook configured)",
    ]
