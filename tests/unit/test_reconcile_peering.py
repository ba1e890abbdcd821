"""Which replica is active, from kopf's peering records."""

from __future__ import annotations

import datetime

from vigil.reconcile import peering

NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)


def peer(priority: int, seconds_ago: float = 1, lifetime: int = 60) -> dict[str, object]:
    seen = NOW - datetime.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}


def test_alone_the_replica_works() -> None:
    assert peering.blocking_peer({"me": peer(10)}, "me", 10, NOW) is None


def test_a_live_higher_priority_peer_pauses_this_replica() -> None:
    assert peering.blocking_peer({"me": peer(10), "other": peer(20)}, "me", 10, NOW) == ("other", 20)


def test_a_lower_priority_peer_does_not() -> None:
    assert peering.blocking_peer({"me": peer(20), "other": peer(10)}, "me", 20, NOW) is None


def test_equal_priorities_freeze_as_kopf_does() -> None:
    assert peering.blocking_peer({"me": peer(5), "other": peer(5)}, "me", 5, NOW) == ("other", 5)


def test_a_dead_peer_is_ignored() -> None:
    assert peering.blocking_peer({"other": peer(99, seconds_ago=61)}, "me", 1, NOW) is None


def test_malformed_records_are_ignored() -> None:
    assert peering.blocking_peer({"a": "x", "b": {"priority": 9}}, "me", 1, NOW) is None
