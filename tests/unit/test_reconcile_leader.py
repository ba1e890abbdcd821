"""Leader election: the pure decisions, and two real Electors sharing one lease store.

The store below keeps one Lease with a resourceVersion and answers a stale write with 409, as the
API server does; each replica reaches it through its own "network", which a test can cut. Time is
a fake clock the test moves, so expiry and renew deadlines are exact.
"""

from __future__ import annotations

import dataclasses

import pytest
import urllib3
from kubernetes.client import exceptions

from vigil.reconcile import leader

TIMING = leader.Timing(lease_duration=15, renew_deadline=10, retry_period=2)
STAMP = "2026-11-29T10:00:00.000000Z"


def record(holder: str, transitions: int = 0, renew: str = STAMP) -> leader.Record:
    return leader.Record(holder, 15, STAMP, renew, transitions)


def test_an_absent_lease_is_claimed_with_no_transitions() -> None:
    assert leader.claim(None, "a", 0.0, STAMP, 15) == leader.Record("a", 15, STAMP, STAMP, 0)


def test_a_lease_held_by_another_is_left_alone_until_it_expires_by_our_clock() -> None:
    seen = leader.Seen(record("b"), at=100.0)
    assert leader.claim(seen, "a", 114.9, STAMP, 15) is None
    taken = leader.claim(seen, "a", 115.0, "later", 15)
    assert taken == leader.Record("a", 15, "later", "later", 1)


def test_expiry_counts_from_when_we_saw_the_record_change_not_from_its_timestamps() -> None:
    old = leader.Seen(record("b", renew="2001-01-01T00:00:00.000000Z"), at=100.0)
    assert leader.observe(old, old.record, 200.0) is old  # unchanged: the clock keeps running
    renewed = leader.observe(old, record("b", renew="2001-01-01T00:00:02.000000Z"), 200.0)
    assert renewed.at == 200.0  # changed: a skewed or ancient renewTime does not matter
    assert not renewed.expired(214.0)
    assert renewed.expired(215.0)


def test_the_holder_renews_keeping_its_acquire_time_and_transitions() -> None:
    seen = leader.Seen(leader.Record("a", 15, "acquired", "renewed", 4), at=0.0)
    assert leader.claim(seen, "a", 1000.0, "now", 15) == leader.Record("a", 15, "acquired", "now", 4)


def test_a_released_lease_is_free_at_once() -> None:
    released = leader.release(record("b", transitions=3), "now")
    assert released == leader.Record("", 1, "now", "now", 3)
    assert leader.claim(leader.Seen(released, at=50.0), "a", 50.0, "now", 15) == leader.Record("a", 15, "now", "now", 4)


@dataclasses.dataclass
class Store:
    """One Lease with optimistic concurrency, like the API server keeps it."""

    lease: tuple[leader.Record, str] | None = None
    version: int = 0
    writes: list[tuple[str, leader.Record]] = dataclasses.field(default_factory=list)

    def bump(self, who: str, new: leader.Record) -> str:
        self.version += 1
        self.lease = (new, str(self.version))
        self.writes.append((who, new))
        return str(self.version)


@dataclasses.dataclass
class Link:
    """One replica's view of the store, through a network the test can cut."""

    store: Store
    who: str
    up: bool = True

    def _reach(self) -> None:
        if not self.up:
            raise urllib3.exceptions.MaxRetryError(None, "/apis/coordination.k8s.io", "connection refused")  # type: ignore[arg-type]

    def read(self, namespace: str, name: str) -> tuple[leader.Record, str] | None:
        self._reach()
        return self.store.lease

    def create(self, namespace: str, name: str, record: leader.Record) -> str:
        self._reach()
        if self.store.lease is not None:
            raise exceptions.ApiException(status=409, reason="AlreadyExists")
        return self.store.bump(self.who, record)

    def replace(self, namespace: str, name: str, record: leader.Record, resource_version: str) -> str:
        self._reach()
        if self.store.lease is None or self.store.lease[1] != resource_version:
            raise exceptions.ApiException(status=409, reason="Conflict")
        return self.store.bump(self.who, record)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def elector(link: Link, clock: Clock, log: list[str]) -> leader.Elector:
    return leader.Elector(
        link,
        "vigil-system",
        "vigil",
        link.who,
        TIMING,
        on_started=lambda: log.append(f"{link.who} started"),
        on_stopped=lambda: log.append(f"{link.who} stopped"),
        clock=clock,
    )


async def test_one_replica_leads_and_the_other_takes_over_only_after_expiry_never_both() -> None:
    store, clock, log = Store(), Clock(), []
    link_a, link_b = Link(store, "a"), Link(store, "b")
    a, b = elector(link_a, clock, log), elector(link_b, clock, log)
    both: list[float] = []
    a_led: list[float] = []
    b_led: list[float] = []
    a_last_write = 0.0
    while clock.now < 60:
        writes = len(store.writes)
        await a.step()
        if len(store.writes) > writes:
            a_last_write = clock.now
        await b.step()
        if a.leading():
            a_led.append(clock.now)
        if b.leading():
            b_led.append(clock.now)
        if a.leading() and b.leading():
            both.append(clock.now)
        if clock.now == 20.0:
            link_a.up = False  # a loses its network to the API server
        clock.now += TIMING.retry_period
    assert both == []
    assert log == ["a started", "a stopped", "b started"]
    assert a_last_write == 20.0  # its last renewal went through just before the cut
    assert max(a_led) < a_last_write + TIMING.renew_deadline  # a stopped within the renew deadline
    assert min(b_led) >= a_last_write + TIMING.lease_duration  # b waited a full lease duration
    assert min(b_led) <= a_last_write + TIMING.lease_duration + TIMING.retry_period
    assert next(w.transitions for who, w in store.writes if who == "b") == 1


async def test_a_replica_whose_network_returns_after_losing_the_lease_writes_nothing() -> None:
    store, clock, log = Store(), Clock(), []
    link_a, link_b = Link(store, "a"), Link(store, "b")
    a, b = elector(link_a, clock, log), elector(link_b, clock, log)
    await a.step()
    await b.step()
    link_a.up = False
    while not b.leading():
        clock.now += TIMING.retry_period
        await a.step()
        await b.step()
    assert not a.leading()
    link_a.up = True
    writes_before = len(store.writes)
    for _ in range(10):
        clock.now += TIMING.retry_period
        await a.step()
        await b.step()
        assert not a.leading()
        with pytest.raises(leader.NotLeading):
            a.fence()
    assert {who for who, _ in store.writes[writes_before:]} == {"b"}  # only renewals by the holder


async def test_leadership_lapses_at_the_renew_deadline_even_if_the_loop_never_runs_again() -> None:
    store, clock = Store(), Clock()
    a = elector(Link(store, "a"), clock, [])
    await a.step()
    a.fence()  # holds: no exception
    clock.now = TIMING.renew_deadline - 0.001
    assert a.leading()
    clock.now = TIMING.renew_deadline
    assert not a.leading()
    with pytest.raises(leader.NotLeading, match="does not hold lease vigil-system/vigil"):
        a.fence()


async def test_seeing_another_holder_ends_leadership_immediately() -> None:
    store, clock, log = Store(), Clock(), []
    a = elector(Link(store, "a"), clock, log)
    await a.step()
    assert store.lease is not None
    store.bump("intruder", record("b", transitions=1))  # e.g. an operator of another version, or a human
    clock.now += 1
    await a.step()
    assert not a.leading()
    assert log == ["a started", "a stopped"]


async def test_two_candidates_racing_for_a_free_lease_cannot_both_win() -> None:
    store, clock = Store(), Clock()
    link_a, link_b = Link(store, "a"), Link(store, "b")
    a, b = elector(link_a, clock, []), elector(link_b, clock, [])
    a.seen = b.seen = leader.Seen(leader.release(record("old"), STAMP), at=0.0)
    store.lease = (a.seen.record, "7")
    # both read version 7; a writes first, b's write carries the stale version and gets 409
    assert link_a.read("", "") == link_b.read("", "")
    await a.step()
    await b.step()
    assert a.leading() != b.leading()


async def test_api_errors_and_timeouts_count_as_failed_attempts_not_crashes() -> None:
    class Broken(Link):
        def read(self, namespace: str, name: str) -> tuple[leader.Record, str] | None:
            raise exceptions.ApiException(status=500, reason="Internal Server Error")

    a = elector(Broken(Store(), "a"), Clock(), [])
    await a.step()
    assert not a.leading()


async def test_release_on_shutdown_lets_the_standby_take_over_without_waiting() -> None:
    store, clock, log = Store(), Clock(), []
    a, b = elector(Link(store, "a"), clock, log), elector(Link(store, "b"), clock, log)
    await a.step()
    await b.step()
    await a.release()
    assert not a.leading()
    clock.now += TIMING.retry_period
    await b.step()
    assert b.leading()
    assert log == ["a started", "a stopped", "b started"]


def test_timing_must_let_the_leader_stop_before_others_may_take_over() -> None:
    assert TIMING.problems() == []
    assert leader.Timing(10, 10, 2).problems()[0].startswith("--lease-duration (10s) must be longer")
    assert leader.Timing(15, 2, 2).problems()[0].startswith("--renew-deadline (2s) must be longer")
    assert leader.Timing(0, 10, 2).problems() == ["--lease-duration must be positive, got 0"]
