"""The watch caches: a relist replaces the store, vigil's own writes are read back and never requeue.

The store's rules are tested state-in/state-out; the informer itself streams from kmock, which
plays the API server, including a watch that answers 410 Gone while objects change unseen.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import kmock
import kubernetes
import pytest

from vigil import labels
from vigil.reconcile import informer, kube, supervise, watched

NS = "ml"
PODS = f"/api/v1/namespaces/{NS}/pods"


def pod(name: str, version: int, owner: str = "resnet", **extra: Any) -> dict[str, Any]:
    meta = {"name": name, "namespace": NS, "resourceVersion": str(version), "labels": {labels.MODEL_DEPLOYMENT: owner}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, **extra}


def names(store: informer.Store) -> list[str]:
    return sorted(name for _, name in store.listed())


class Changes:
    """The store's change reports, as (old name, new name); awaitable until a condition holds."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str | None]] = []
        self.arrived = asyncio.Event()

    def __call__(self, old: informer.Obj | None, new: informer.Obj | None) -> None:
        name = lambda obj: None if obj is None else obj["metadata"]["name"]  # noqa: E731
        self.seen.append((name(old), name(new)))
        self.arrived.set()

    async def until(self, check: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
        try:
            async with asyncio.timeout(seconds):
                while not check():
                    self.arrived.clear()
                    await self.arrived.wait()
        except TimeoutError:
            raise AssertionError(f"not within {seconds}s: {what}; changes seen: {self.seen}") from None


# -- the store ------------------------------------------------------------------------------------


def test_a_relist_drops_what_was_deleted_unseen_and_keeps_what_vigil_wrote_after_the_snapshot() -> None:
    changes = Changes()
    store = informer.Store(watched.PODS, changes)
    store.replace([pod("a", 1), pod("b", 2)], 2)
    store.offer(pod("c", 9), notify=False)  # vigil's own write, answered after the next list's snapshot
    changes.seen.clear()
    store.replace([pod("a", 5)], 8)  # b was deleted while the watch was down; a changed
    assert names(store) == ["a", "c"]
    assert sorted(changes.seen, key=str) == sorted([("a", "a"), ("b", None)], key=str)
    assert [p["metadata"]["name"] for p in store.owned_by(NS, "resnet")] == ["a", "c"]


def test_the_echo_of_vigils_own_write_changes_nothing_and_reports_nothing() -> None:
    changes = Changes()
    store = informer.Store(watched.PODS, changes)
    assert store.offer(pod("a", 3), notify=False)  # the answer to vigil's write
    assert changes.seen == []
    assert not store.offer(pod("a", 3))  # its watch event
    assert not store.offer(pod("a", 2))  # an older event still in flight
    assert changes.seen == []
    assert store.offer(pod("a", 4))  # someone else's change
    assert changes.seen == [("a", "a")]


def test_the_owner_index_follows_relabels_and_deletions() -> None:
    store = informer.Store(watched.PODS)
    store.offer(pod("a", 1, owner="x"))
    store.offer(pod("a", 2, owner="y"))
    assert list(store.owned_by(NS, "x")) == []
    assert [p["metadata"]["name"] for p in store.owned_by(NS, "y")] == ["a"]
    store.delete(pod("a", 3, owner="y"))
    assert list(store.owned_by(NS, "y")) == []
    assert len(store) == 0


def test_a_doubtful_write_is_read_again_until_the_server_answers() -> None:
    store = informer.Store(watched.PODS)
    store.offer(pod("a", 1))
    store.doubt((NS, "a"))
    assert store.doubtful((NS, "a"))
    store.offer(pod("a", 2))
    assert not store.doubtful((NS, "a"))


def test_pods_are_kept_slim_and_managed_fields_are_dropped() -> None:
    store = informer.Store(watched.PODS)
    big = pod(
        "a", 1, spec={"containers": [{"name": "t", "image": "x", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}
    )
    big["metadata"]["managedFields"] = [{"manager": "kubelet"}]
    store.offer(big)
    kept = store.get((NS, "a"))
    assert kept is not None
    assert "managedFields" not in kept["metadata"]
    assert kept["spec"]["containers"] == [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]


SCALE_ENTRY = {"manager": "kube-controller-manager", "operation": "Update", "subresource": "scale",
               "fieldsV1": {"f:spec": {"f:replicas": {}}}}  # fmt: skip


def test_only_the_scale_subresource_entries_of_managed_fields_are_kept() -> None:
    """Who set the replicas through /scale (an HPA) is what headroom reads; the rest is bulk."""
    whole = {"metadata": {"name": "m", "managedFields": [{"manager": "argocd", "operation": "Apply"}, SCALE_ENTRY]}}
    assert informer.strip(whole)["metadata"] == {"name": "m", "managedFields": [SCALE_ENTRY]}
    assert informer.strip({"metadata": {"name": "m", "managedFields": [{"manager": "argocd"}]}}) == {
        "metadata": {"name": "m"}
    }


DESIRED = {
    "metadata": {"name": "d", "labels": {"a": "1"}},
    "spec": {
        "replicas": 2,
        "template": {"spec": {"nodeSelector": {}, "containers": [{"name": "triton", "args": ["--x"], "env": []}]}},
    },
}


def live(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": "d", "labels": {"a": "1", "other": "x"}, "uid": "u", "resourceVersion": "5"},
        "spec": {
            "replicas": 2,
            "progressDeadlineSeconds": 600,  # a default the server added
            "template": {
                "spec": {"containers": [{"name": "triton", "args": ["--x"], "imagePullPolicy": "IfNotPresent"}]}
            },
        },
        "status": {"readyReplicas": 2},
    }
    obj["spec"].update(changes)
    return obj


def test_a_child_that_carries_what_vigil_applies_is_covered_whatever_the_server_added() -> None:
    assert informer.covers(live(), DESIRED)


@pytest.mark.parametrize(
    "drifted",
    [
        {"replicas": 5},  # kubectl scale
        {"template": {"spec": {"containers": [{"name": "triton", "args": ["--y"]}]}}},
        {"template": {"spec": {"containers": [{"name": "triton", "args": ["--x"]}, {"name": "sidecar"}]}}},
    ],
)
def test_drift_or_an_item_vigil_does_not_set_is_not_covered(drifted: dict[str, Any]) -> None:
    assert not informer.covers(live(**drifted), DESIRED)


def service(selector: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "ratio"}, "spec": {"type": "ClusterIP", "selector": selector}}


def test_a_service_selector_that_lost_a_key_is_not_covered_by_the_live_one_that_still_has_it() -> None:
    # Under replica ratios the stable Service selects every revision: the revision key must go.
    one = {"vigil.dev/modeldeployment": "ratio", "vigil.dev/revision": "r2"}
    every = {"vigil.dev/modeldeployment": "ratio"}
    live_one = service(one)
    live_one["spec"]["clusterIP"] = "10.0.0.7"  # a field the server added
    assert not informer.covers(live_one, service(every))
    assert informer.covers(live_one, service(one))
    assert not informer.covers(service(every), service(one))


# -- the informer against kmock --------------------------------------------------------------------


@pytest.fixture
def api(kmock: kmock.KubernetesEmulator) -> kubernetes.client.ApiClient:
    configuration = kubernetes.client.Configuration(host=str(kmock.url).rstrip("/"))
    return kubernetes.client.ApiClient(configuration)


async def create(api: kubernetes.client.ApiClient, body: dict[str, Any]) -> None:
    await asyncio.to_thread(kubernetes.client.CoreV1Api(api).create_namespaced_pod, NS, body)


async def delete(api: kubernetes.client.ApiClient, name: str) -> None:
    await asyncio.to_thread(kubernetes.client.CoreV1Api(api).delete_namespaced_pod, name, NS)


@pytest.fixture
async def streaming(
    kmock: kmock.KubernetesEmulator, api: kubernetes.client.ApiClient
) -> AsyncIterator[tuple[informer.Store, informer.Informer, Changes, asyncio.Event]]:
    """A pods informer whose first watch waits for the test, then answers 410 Gone."""
    kmock.resources["v1/pods"] = {}
    await create(api, pod("a", 1))
    await create(api, pod("b", 2))
    gone = asyncio.Event()
    expired = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}

    async def held() -> None:  # the watch is down until the test says so
        await gone.wait()

    kmock[f"get {PODS}"][{"watch": "true"}][:1] << (held, expired)
    changes = Changes()
    store = informer.Store(watched.PODS, changes)
    stream = informer.Informer(api, store, namespace=NS)
    task = asyncio.create_task(stream.run(supervise.Heartbeat("watch pods", 600.0)))
    try:
        await asyncio.wait_for(stream.synced.wait(), 10)
        yield store, stream, changes, gone
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_after_410_gone_the_relist_drops_a_pod_deleted_unseen_and_adds_one_created_unseen(
    api: kubernetes.client.ApiClient,
    streaming: tuple[informer.Store, informer.Informer, Changes, asyncio.Event],
) -> None:
    store, _, changes, gone = streaming
    assert names(store) == ["a", "b"]
    changes.seen.clear()
    await delete(api, "b")  # while the watch is down: no event reaches the informer
    await create(api, pod("c", 3))
    gone.set()  # the watch resumes with 410 Gone: relist
    await changes.until(lambda: names(store) == ["a", "c"], "the relist replaced the store")
    assert ("b", None) in changes.seen
    assert (None, "c") in changes.seen
    assert not any("a" in seen for seen in changes.seen)  # unchanged: not reported


async def test_the_watch_after_the_relist_streams_changes_and_deletions(
    kmock: kmock.KubernetesEmulator,
    api: kubernetes.client.ApiClient,
    streaming: tuple[informer.Store, informer.Informer, Changes, asyncio.Event],
) -> None:
    store, _, changes, gone = streaming
    gone.set()
    for _ in range(1000):  # until the second watch (after the relist) is connected
        if len(kmock[f"get {PODS}"][{"watch": "true"}]) >= 2:
            break
        await asyncio.sleep(0.01)
    await create(api, pod("d", 4))
    await changes.until(lambda: store.get((NS, "d")) is not None, "the new pod arrived by the watch")
    await delete(api, "a")
    await changes.until(lambda: store.get((NS, "a")) is None, "the deleted pod left the store")


async def test_a_list_answered_429_waits_out_its_retry_after_and_lists_again_without_a_restart(
    kmock: kmock.KubernetesEmulator, api: kubernetes.client.ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    kmock.resources["v1/pods"] = {}
    await create(api, pod("a", 1))
    busy = {"kind": "Status", "code": 429, "reason": "TooManyRequests", "message": "storage is (re)initializing"}
    kmock[f"get {PODS}"][:1] << 429 << kmock.headers({"Retry-After": "1"}) << busy
    configuration = kubernetes.client.Configuration(host=str(kmock.url).rstrip("/"))
    configuration.retries = kube.RETRIES  # as the operator's client: urllib3 never sleeps it out in a thread
    store = informer.Store(watched.PODS)
    stream = informer.Informer(kubernetes.client.ApiClient(configuration), store, namespace=NS)
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.create_task(stream.run(supervise.Heartbeat("watch pods", 600.0)))
    try:
        await asyncio.wait_for(stream.synced.wait(), 10)
        assert loop.time() - started >= 1.0  # the server's pace, not an immediate retry
        assert not task.done()  # waited out in place: nothing raised to the supervisor
        assert names(store) == ["a"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    warned = [r for r in caplog.records if "Retry-After" in r.getMessage()]
    assert [(r.levelname, r.exc_info) for r in warned] == [("WARNING", None)]  # one line, no traceback


async def test_a_watch_thread_that_starts_only_after_stop_ends_as_soon_as_it_connects(
    monkeypatch: pytest.MonkeyPatch, kmock: kmock.KubernetesEmulator, api: kubernetes.client.ApiClient
) -> None:
    """The interleaving that leaked a watch: run() starts the watch's thread, is cancelled (its finally
    calls stop()) before that thread has run a line of the watch, and only then does the thread go on.
    The watch must still see that stop and end once connected, not read on for the server's minutes."""
    kmock.resources["v1/pods"] = {}
    stream = informer.Informer(api, informer.Store(watched.PODS), namespace=NS)
    started, stopped, ended = threading.Event(), threading.Event(), threading.Event()
    real = stream.watch

    def watch(*args: Any) -> str:  # on the watch's thread, before the real watch reads anything
        started.set()
        stopped.wait(10)
        try:
            return real(*args)
        finally:
            ended.set()

    monkeypatch.setattr(stream, "watch", watch)
    task = asyncio.create_task(stream.run(supervise.Heartbeat("watch pods", 600.0)))
    assert await asyncio.to_thread(started.wait, 10), "the watch thread never started"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)  # run() has ended and its finally called stop()
    stopped.set()
    assert await asyncio.to_thread(ended.wait, 10), "the watch read on after stop()"
    assert len(kmock[f"get {PODS}"][{"watch": "true"}]) == 1  # it did connect, then ended at once


async def test_stop_closes_the_open_watch_and_run_returns(
    kmock: kmock.KubernetesEmulator, api: kubernetes.client.ApiClient
) -> None:
    kmock.resources["v1/pods"] = {}
    await create(api, pod("a", 1))
    connected, released = asyncio.Event(), asyncio.Event()

    async def held() -> None:  # the watch is open and silent: only stop() ends it
        connected.set()
        await released.wait()

    bookmark = {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "1"}}}
    kmock[f"get {PODS}"][{"watch": "true"}] << (bookmark, held)
    stream = informer.Informer(api, informer.Store(watched.PODS), namespace=NS)
    task = asyncio.create_task(stream.run(supervise.Heartbeat("watch pods", 600.0)))
    try:
        await asyncio.wait_for(connected.wait(), 10)
        stream.stop()
        await asyncio.wait_for(asyncio.shield(task), 10)  # returned: no new watch after the stop
    finally:
        released.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(kmock[f"get {PODS}"][{"watch": "true"}]) == 1


async def test_the_stream_hands_over_slim_objects_from_its_own_thread(
    kmock: kmock.KubernetesEmulator, api: kubernetes.client.ApiClient
) -> None:
    """A burst queues thousands of events for a busy event loop: they wait slim, not whole."""
    kmock.resources["v1/pods"] = {}
    big = pod("a", 1, spec={"containers": [{"name": "t", "image": "x", "env": [{"name": "E", "value": "v" * 5000}]}]})
    big["metadata"]["managedFields"] = [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]
    await create(api, big)
    added = {"type": "ADDED", "object": {**big, "metadata": {**big["metadata"], "name": "b", "resourceVersion": "2"}}}
    kmock[f"get {PODS}"][{"watch": "true"}][:1] << (added,)
    stream = informer.Informer(api, informer.Store(watched.PODS), namespace=NS)
    listed, _ = await asyncio.to_thread(stream.list)
    handed: list[informer.Obj] = []
    await asyncio.to_thread(stream.watch, "1", lambda _kind, obj: handed.append(obj), informer.Session())
    for obj in (*listed, *handed):
        assert "managedFields" not in obj["metadata"]
        assert obj["spec"]["containers"] == [{"name": "t", "resources": {"limits": {}}}]
    assert [o["metadata"]["name"] for o in (*listed, *handed)] == ["a", "b"]


async def test_a_stream_waits_while_its_limit_of_events_waits_for_a_busy_event_loop() -> None:
    applied: list[int] = []
    handover = informer.Handover(asyncio.get_running_loop(), lambda _kind, obj: applied.append(obj["n"]), limit=2)
    session = informer.Session()
    handed: list[int] = []
    done = threading.Event()

    def stream() -> None:  # the stream's thread
        for n in range(3):
            handover.deliver("ADDED", {"n": n}, session)
            handed.append(n)
        done.set()

    threading.Thread(target=stream, daemon=True).start()
    # The event loop is busy (this test holds it): two events wait for it, the third is not read yet.
    assert not done.wait(0.5)
    assert handed == [0, 1]
    assert applied == []
    assert await asyncio.to_thread(done.wait, 10)  # the loop applies them: room for the third
    await asyncio.sleep(0)
    assert applied == [0, 1, 2]


def test_a_stream_waiting_for_room_ends_when_it_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(informer, "HANDOVER_POLL", 0.05)
    busy = asyncio.new_event_loop()  # never runs: what it was handed waits for ever
    try:
        handover = informer.Handover(busy, lambda _kind, _obj: None, limit=1)
        session = informer.Session()
        outcomes: list[bool] = []
        thread = threading.Thread(
            target=lambda: outcomes.extend(handover.deliver("ADDED", {}, session) for _ in range(2)), daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not outcomes and time.monotonic() < deadline:  # the first is handed over; the second finds no room
            thread.join(0.01)
        session.stop("pods")
        thread.join(5)
        assert not thread.is_alive()
        assert outcomes == [True, False]
    finally:
        busy.close()


# -- Kube on the caches ----------------------------------------------------------------------------


def test_observe_and_child_reads_come_from_the_caches_without_a_request() -> None:
    stores = {r.plural: informer.Store(r) for r in (watched.DEPLOYMENTS, watched.PODS)}
    deployment = {
        "metadata": {
            "name": "resnet-abc",
            "namespace": NS,
            "resourceVersion": "3",
            "labels": {labels.MODEL_DEPLOYMENT: "resnet", labels.REVISION: "abc"},
        },
        "spec": {"replicas": 2},
        "status": {"readyReplicas": 1, "availableReplicas": 1},
    }
    stores["deployments"].offer(deployment)
    stores["pods"].offer(pod("resnet-abc-1", 4, status={"phase": "Running"}))
    terminating = pod("resnet-abc-2", 5, status={"phase": "Running"})
    terminating["metadata"]["deletionTimestamp"] = "2026-12-02T18:00:00Z"
    stores["pods"].offer(terminating)
    unreachable = kubernetes.client.ApiClient(kubernetes.client.Configuration(host="http://127.0.0.1:9"))
    edge = kube.Kube(unreachable, caches=watched.Caches(stores, []))
    edge._gateway_api = (float("inf"), False)  # discovery answered: no Gateway API
    observed = asyncio.run(edge.observe(NS, "resnet"))
    assert dict(observed.workloads) == {"abc": kube.core.Workload("abc", 2, 1, 1)}
    assert [p.name for p in observed.pods] == ["resnet-abc-1"]  # the terminating one is not live


def test_a_kind_not_listed_yet_is_read_from_the_server_and_the_others_from_their_caches() -> None:
    stores = {r.plural: informer.Store(r) for r in (watched.DEPLOYMENTS, watched.PODS)}
    unreachable = kubernetes.client.ApiClient(kubernetes.client.Configuration(host="http://127.0.0.1:9"))
    listed, waiting = (informer.Informer(unreachable, stores[p], namespace=NS) for p in ("deployments", "pods"))
    listed.synced.set()  # the pods stream has not listed (say, no RBAC to): pods come from the server
    edge = kube.Kube(unreachable, caches=watched.Caches(stores, [listed, waiting]))
    assert edge._cached("deployments") is stores["deployments"]
    assert edge._cached("pods") is None
    assert watched.Caches(stores, [listed, waiting]).unsynced() == [waiting.name]
