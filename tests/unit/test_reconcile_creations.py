"""New Services are created beside the reconcile: a few at a time, one per deployment, refusals kept."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.unit import fakekube
from vigil.reconcile import creations, leader


def service(name: str) -> dict[str, Any]:
    return {"kind": "Service", "metadata": {"namespace": "ml", "name": name}}


class Server:
    """An API server whose Service creations wait until released, counting how many run at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.running = 0
        self.most = 0
        self.created: list[str] = []
        self.refuse: dict[str, BaseException] = {}

    async def apply(self, manifest: dict[str, Any]) -> None:
        name = manifest["metadata"]["name"]
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.release.wait()
            if name in self.refuse:
                raise self.refuse[name]
            self.created.append(name)
        finally:
            self.running -= 1


async def test_services_are_created_in_the_background_a_few_at_a_time_and_each_deployment_queued_after() -> None:
    server, done = Server(), []
    creator = creations.Creator(server.apply, done.append, concurrency=2)
    for index in range(5):
        creator.create(("ml", f"m{index}"), service(f"m{index}"))
    await asyncio.sleep(0.05)
    assert (server.running, len(creator), done) == (2, 5, [])  # handed over at once, two at the API server
    server.release.set()
    await creator.flush()
    assert server.most == 2
    assert sorted(server.created) == [f"m{i}" for i in range(5)]
    assert sorted(done) == [("ml", f"m{i}") for i in range(5)]
    assert len(creator) == 0


async def test_a_deployment_has_one_creation_under_way_at_a_time() -> None:
    server = Server()
    creator = creations.Creator(server.apply, lambda key: None)
    creator.create(("ml", "m"), service("m"))
    creator.create(("ml", "m"), service("m"))
    assert creator.under_way(("ml", "m"))
    server.release.set()
    await creator.flush()
    assert server.created == ["m"]
    assert not creator.under_way(("ml", "m"))


async def test_a_refused_creation_is_kept_for_the_deployments_next_reconcile_once() -> None:
    server, done = Server(), []
    quota = fakekube.api_error(403, "Forbidden")
    server.refuse["m"] = quota
    creator = creations.Creator(server.apply, done.append)
    creator.create(("ml", "m"), service("m"))
    server.release.set()
    await creator.flush()
    assert done == [("ml", "m")]  # queued again: its reconcile reports the refusal
    assert creator.refusal(("ml", "m")) is quota
    assert creator.refusal(("ml", "m")) is None


async def test_a_replica_that_lost_the_lease_keeps_no_refusal_and_a_forgotten_deployment_none() -> None:
    server = Server()
    server.refuse["lost"] = leader.NotLeading("lease lost")
    server.refuse["gone"] = fakekube.api_error(404, "NotFound")
    creator = creations.Creator(server.apply, lambda key: None)
    creator.create(("ml", "lost"), service("lost"))
    creator.create(("ml", "gone"), service("gone"))
    server.release.set()
    await creator.flush()
    creator.forget(("ml", "gone"))
    assert creator.refusal(("ml", "lost")) is None
    assert creator.refusal(("ml", "gone")) is None


def test_a_creator_needs_a_lane() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        creations.Creator(lambda manifest: asyncio.sleep(0), lambda key: None, concurrency=0)
