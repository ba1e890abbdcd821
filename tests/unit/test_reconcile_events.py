"""Events posted beside the reconcile: in order per object, a few objects at once, bounded, never fatal."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes.client import exceptions

from vigil.reconcile import events, leader, supervise


def involved(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"namespace": "ml", "name": name},
    }


class Server:
    """An API server whose POSTs take ``delay`` seconds; records what arrived and how many were in flight."""

    def __init__(self, delay: float = 0.01, fail: dict[str, BaseException] | None = None) -> None:
        self.delay = delay
        self.fail = fail or {}
        self.posted: list[tuple[str, str]] = []
        self.in_flight = 0
        self.most = 0

    async def send(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if reason in self.fail:
                raise self.fail[reason]
            self.posted.append((obj["metadata"]["name"], reason))
        finally:
            self.in_flight -= 1


async def running(poster: events.Poster) -> supervise.Supervisor:
    supervisor = supervise.Supervisor()
    for number in range(poster.concurrency):
        supervisor.spawn(f"events-{number}", poster.run, allowance=60.0)
    await asyncio.sleep(0)  # the tasks start
    return supervisor


async def test_one_objects_events_arrive_in_the_order_they_were_decided() -> None:
    server = Server()
    poster = events.Poster(server.send, concurrency=4)
    supervisor = await running(poster)
    try:
        for n in range(10):
            poster.post(involved("a"), "Normal", f"R{n}", "")
            await asyncio.sleep(0.003)  # some handed over while earlier ones are being posted
        await poster.flush()
    finally:
        await supervisor.stop()
    assert server.posted == [("a", f"R{n}") for n in range(10)]
    assert server.most == 1  # one object: never two of its posts at once
    assert len(poster) == 0


async def test_different_objects_are_posted_concurrently_up_to_the_limit() -> None:
    server = Server(delay=0.05)
    poster = events.Poster(server.send, concurrency=4)
    supervisor = await running(poster)
    try:
        for n in range(20):
            for reason in ("RevisionCreated", "ProgressingTrue"):
                poster.post(involved(f"md-{n:02d}"), "Normal", reason, "")
        started = asyncio.get_running_loop().time()
        await poster.flush()
        elapsed = asyncio.get_running_loop().time() - started
    finally:
        await supervisor.stop()
    assert server.most == 4
    assert len(server.posted) == 40
    for n in range(20):  # each object's two in order
        mine = [reason for name, reason in server.posted if name == f"md-{n:02d}"]
        assert mine == ["RevisionCreated", "ProgressingTrue"]
    assert elapsed < 40 * 0.05 / 2  # far from one at a time (2 s); 4 at once take about 0.5 s


async def test_flush_posts_what_waits_without_running_posting_tasks() -> None:
    server = Server(delay=0.0)
    poster = events.Poster(server.send)
    poster.post(involved("a"), "Normal", "First", "")
    poster.post(involved("b"), "Normal", "Other", "")
    poster.post(involved("a"), "Warning", "Second", "")
    assert server.posted == []  # handing over posts nothing by itself
    await poster.flush()
    assert server.posted == [("a", "First"), ("a", "Second"), ("b", "Other")]


async def test_a_full_backlog_drops_new_events_and_counts_them(caplog: pytest.LogCaptureFixture) -> None:
    server = Server(delay=0.0)
    poster = events.Poster(server.send, backlog=3)
    before = events.DROPPED._value.get()
    for n in range(5):
        poster.post(involved("a"), "Normal", f"R{n}", "")
    assert len(poster) == 3
    assert events.DROPPED._value.get() - before == 2
    assert "event R3 on ml/a dropped: 3 events wait already" in caplog.text
    await poster.flush()
    assert server.posted == [("a", "R0"), ("a", "R1"), ("a", "R2")]
    poster.post(involved("a"), "Normal", "Later", "")  # room again
    await poster.flush()
    assert server.posted[-1] == ("a", "Later")


async def test_refused_and_unfenced_posts_are_dropped_and_the_rest_still_go(caplog: pytest.LogCaptureFixture) -> None:
    refused = exceptions.ApiException(status=403, reason="Forbidden")
    refused.body = b'{"kind":"Status","message":"events is forbidden: no RBAC","reason":"Forbidden"}'
    server = Server(
        delay=0.0,
        fail={"Refused": refused, "Unreachable": ConnectionRefusedError("refused"), "Fenced": leader.NotLeading("x")},
    )
    poster = events.Poster(server.send)
    for reason in ("Before", "Refused", "Unreachable", "Fenced", "After"):
        poster.post(involved("a"), "Normal", reason, "")
    await poster.flush()
    assert server.posted == [("a", "Before"), ("a", "After")]
    assert "event Refused on ml/a not posted: events is forbidden: no RBAC" in caplog.text
    assert "event Unreachable on ml/a not posted: API server unreachable" in caplog.text
    assert len(poster) == 0


def test_a_poster_needs_room_and_hands() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        events.Poster(Server().send, concurrency=0)


async def test_a_waiting_event_keeps_only_the_involved_objects_reference() -> None:
    server = Server()
    seen: list[dict[str, Any]] = []

    async def send(obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        seen.append(obj)
        await server.send(obj, type_, reason, message)

    poster = events.Poster(send)
    md = {
        **involved("big"),
        "spec": {"replicas": 3, "slos": [{"name": f"slo-{n}"} for n in range(50)]},
        "status": {"conditions": [{"type": "Available", "status": "True"}] * 20},
    }
    md["metadata"].update(uid="u-1", resourceVersion="42", annotations={"note": "x" * 10_000}, labels={"a": "b"})
    poster.post(md, "Normal", "RevisionCreated", "revision 1")
    md["metadata"]["name"] = "renamed"  # the reconcile's copy is its own again once handed over
    await poster.flush()
    assert seen == [
        {
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "big", "namespace": "ml", "uid": "u-1", "resourceVersion": "42"},
        }
    ]
    assert server.posted == [("big", "RevisionCreated")]
