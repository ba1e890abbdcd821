"""Supervision: the real Supervisor restarts failing loops with backoff, counts them, and the
liveness probe fails once a loop stops beating."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
import urllib.request
from typing import Any

import aiohttp
import kopf
import kubernetes.client
import prometheus_client
import pytest
import urllib3

from vigil.reconcile import backoff, kube, leader, memory, operator, supervise
from vigil.reconcile import queue as workqueue
from vigil.reconcile import settings as config

FAST = backoff.Backoff(base=0.01, cap=0.05, jitter=0.0)


def restarts(task: str) -> float:
    value = prometheus_client.REGISTRY.get_sample_value("vigil_task_restarts_total", {"task": task})
    return value or 0.0


async def eventually(check: Any, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    "error",
    [
        urllib3.exceptions.MaxRetryError(None, "/api", "connection refused"),  # type: ignore[arg-type]
        TimeoutError("read timed out"),
        ZeroDivisionError("a bug"),
    ],
    ids=["connection", "timeout", "bug"],
)
async def test_a_loop_that_raises_anything_is_restarted_and_counted(error: Exception) -> None:
    task = f"flaky-{type(error).__name__}"
    before = restarts(task)
    runs = 0

    async def flaky(heartbeat: supervise.Heartbeat) -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise error
        await asyncio.Event().wait()

    supervisor = supervise.Supervisor(restart_backoff=FAST, draw=lambda: 0.0)
    supervisor.spawn(task, flaky, allowance=60)
    try:
        await eventually(lambda: runs == 4, "the fourth start")
        assert restarts(task) - before == 3
        assert not supervisor.tasks[0].done()
    finally:
        await supervisor.stop()


async def test_restarts_back_off_exponentially() -> None:
    starts: list[float] = []
    loop = asyncio.get_running_loop()

    async def failing(heartbeat: supervise.Heartbeat) -> None:
        starts.append(loop.time())
        raise RuntimeError("boom")

    supervisor = supervise.Supervisor(restart_backoff=backoff.Backoff(base=0.05, cap=1.0, jitter=0.0))
    supervisor.spawn("failing", failing, allowance=60)
    try:
        await eventually(lambda: len(starts) >= 4, "four starts")
    finally:
        await supervisor.stop()
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps[0] >= 0.05
    assert gaps[1] >= 0.1
    assert gaps[2] >= 0.2


async def test_a_loop_that_returns_is_a_fault_too() -> None:
    before = restarts("quitter")
    runs = 0

    async def quitter(heartbeat: supervise.Heartbeat) -> None:
        nonlocal runs
        runs += 1
        if runs > 1:
            await asyncio.Event().wait()

    supervisor = supervise.Supervisor(restart_backoff=FAST)
    supervisor.spawn("quitter", quitter, allowance=60)
    try:
        await eventually(lambda: runs == 2, "a restart")
        assert restarts("quitter") - before == 1
    finally:
        await supervisor.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_loop_that_stops_beating_is_reported_stuck_and_fails_the_probe() -> None:
    clock = Clock()
    supervisor = supervise.Supervisor(clock=clock)
    hang = asyncio.Event()

    async def beating(heartbeat: supervise.Heartbeat) -> None:
        while True:
            heartbeat.beat()
            await asyncio.sleep(0.01)
            await hang.wait()  # the second iteration hangs (a stuck call)

    supervisor.spawn("resync", beating, allowance=30)
    runtime = operator.Runtime(
        settings=config.Settings(standalone=True),
        kube=kube.Kube(kubernetes.client.ApiClient(kubernetes.client.Configuration(host="http://127.0.0.1:9"))),
        supervisor=supervisor,
    )
    memo = kopf.Memo(runtime=runtime)
    try:
        await asyncio.sleep(0.05)
        assert operator.tasks_probe(memo=memo) == {"tasks": 1, "leading": True}
        clock.now += 29
        assert supervisor.stuck() == []
        clock.now += 2
        assert supervisor.stuck() == ["resync (1s late)"]
        with pytest.raises(kopf.PermanentError, match=r"stopped beating: resync \(1s late\)"):
            operator.tasks_probe(memo=memo)
    finally:
        await supervisor.stop()


async def test_an_idle_worker_is_not_stuck_but_a_hanging_reconcile_is() -> None:
    clock = Clock()
    supervisor = supervise.Supervisor(clock=clock)
    queue = workqueue.WorkQueue()
    started = asyncio.Event()

    async def hangs(key: workqueue.Key) -> None:
        started.set()
        await asyncio.Event().wait()

    supervisor.spawn("worker-0", lambda beat: queue.worker(hangs, beat), allowance=300)
    try:
        await asyncio.sleep(0.01)
        clock.now += 10_000  # waiting for work for hours is fine
        assert supervisor.stuck() == []
        queue.add(("ns", "md"))
        await asyncio.wait_for(started.wait(), 5)
        clock.now += 301
        assert supervisor.stuck() == ["worker-0 (1s late)"]
    finally:
        await supervisor.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_start_supervises_every_background_task() -> None:
    settings = config.Settings(prometheus_url="http://127.0.0.1:9", metrics_port=free_port())
    runtime = operator.Runtime(
        settings=settings,
        kube=kube.Kube(kubernetes.client.ApiClient(kubernetes.client.Configuration(host="http://127.0.0.1:9"))),
    )
    runtime.elector = leader.Elector(leader.KubeLeases(runtime.kube.api_client, 1), "ns", "vigil", "a", leader.Timing())
    operator.start(runtime)
    try:
        workers = {f"worker-{n}" for n in range(settings.workers)}
        posters = {f"events-{n}" for n in range(runtime.poster.concurrency)}
        expected = {"metrics", "resync", "fleet", "leader", *workers, *posters}
        if memory.available():
            expected.add("memory")
        assert set(runtime.supervisor.heartbeats) == expected
    finally:
        await runtime.supervisor.stop()


async def test_a_busy_metrics_port_is_retried_until_it_serves() -> None:
    before = restarts("metrics")
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = int(blocker.getsockname()[1])
    settings = config.Settings(standalone=True, metrics_port=port)
    runtime = operator.Runtime(
        settings=settings,
        kube=kube.Kube(kubernetes.client.ApiClient(kubernetes.client.Configuration(host="http://127.0.0.1:9"))),
        supervisor=supervise.Supervisor(restart_backoff=FAST),
    )
    operator.start(runtime)
    try:
        await eventually(lambda: restarts("metrics") - before >= 2, "two failed binds")
        blocker.close()
        served = await asyncio.to_thread(wait_for_metrics, port)
        assert b"vigil_task_restarts_total" in served
    finally:
        blocker.close()
        await runtime.supervisor.stop()


def wait_for_metrics(port: int) -> bytes:
    deadline = time.monotonic() + 5
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as response:
                return bytes(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


async def test_the_liveness_endpoint_answers_500_while_a_loop_is_stuck() -> None:
    # kopf's own health server (what --liveness starts), with vigil's registered probe handlers.
    from kopf._core.engines import probing

    clock = Clock()
    supervisor = supervise.Supervisor(clock=clock)
    supervisor.heartbeats["resync"] = supervise.Heartbeat("resync", 30, clock, deadline=clock.now - 1)
    runtime = operator.Runtime(
        settings=config.Settings(standalone=True),
        kube=kube.Kube(kubernetes.client.ApiClient(kubernetes.client.Configuration(host="http://127.0.0.1:9"))),
        supervisor=supervisor,
    )
    port = free_port()
    ready = asyncio.Event()
    server = asyncio.create_task(
        probing.health_reporter(
            f"http://127.0.0.1:{port}/healthz",
            memo=kopf.Memo(runtime=runtime),
            indices={},
            registry=kopf.get_default_registry(),
            settings=kopf.OperatorSettings(),
            ready_flag=ready,
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 5)
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as answer:
            assert answer.status == 500
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
