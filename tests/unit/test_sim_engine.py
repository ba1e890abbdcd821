"""The simulator end to end without I/O: pods from a static source, loads, routing, faults, ticks."""

from __future__ import annotations

import asyncio
import contextlib
import json

import numpy as np
import pytest

from vigil import labels
from vigil.sim import cluster, engine, routing, schema
from vigil.sim import testing as simtest


def simulator(snapshot: cluster.Cluster, seed: int = 1) -> tuple[engine.Simulator, cluster.StaticSource]:
    source = cluster.StaticSource(snapshot)
    return engine.Simulator(source, rng=np.random.default_rng(seed)), source


def load(rate: float, name: str = "md", **extra: object) -> schema.LoadRequest:
    return schema.LoadRequest.model_validate({"namespace": "ns", "name": name, "rate": rate, **extra})


def fault(name: str = "md", **fields: object) -> schema.FaultRequest:
    return schema.FaultRequest.model_validate({"namespace": "ns", "name": name, **fields})


def ticks(sim: engine.Simulator, seconds: float) -> None:
    for _ in range(round(seconds / sim.tick_seconds)):
        sim.advance()


def successes(sim: engine.Simulator, *pods: str) -> dict[str, int]:
    return {pod: int(sim.records[("ns", pod)].state.total("success")) for pod in pods}


def queue_seconds(sim: engine.Simulator) -> float:
    states = [record.state for record in sim.records.values() if record.pod.served]
    return sum(s.total("queue_duration_us") for s in states) / sum(s.total("success") for s in states) / 1e6


def test_pods_are_played_while_ready_and_forgotten_when_gone() -> None:
    sim, source = simulator(simtest.make_cluster([simtest.pod("p0", ready=False), simtest.pod("p1")]))
    sim.advance()
    assert sim.record("ns", "p0") is None
    assert sim.record("ns", "p1") is not None
    source.set(simtest.make_cluster([simtest.pod("p0"), simtest.pod("p1")]))
    sim.advance()
    assert sim.record("ns", "p0") is not None
    source.set(simtest.make_cluster([simtest.pod("p0")]))
    sim.advance()
    assert ("ns", "p1") not in sim.records


def test_counters_survive_a_readiness_blip_but_not_a_restart() -> None:
    services = [simtest.md_service("md")]
    sim, source = simulator(simtest.make_cluster([simtest.pod("p0")], services))
    sim.set_load(load(50))
    ticks(sim, 2)
    before = successes(sim, "p0")["p0"]
    assert before > 0
    source.set(simtest.make_cluster([simtest.pod("p0", ready=False)], services))
    ticks(sim, 1)
    assert sim.record("ns", "p0") is None
    assert sim.state()["lost"] == {"ns/md": {routing.LOST_NO_READY_PODS: pytest.approx(50, rel=0.5)}}
    source.set(simtest.make_cluster([simtest.pod("p0")], services))
    sim.advance()
    assert successes(sim, "p0")["p0"] >= before
    source.set(simtest.make_cluster([simtest.pod("p0", restarts=1)], services))
    sim.advance()
    assert successes(sim, "p0")["p0"] <= 10  # a new process: counted from zero
    source.set(simtest.make_cluster([simtest.pod("p0", uid="another")], services))
    sim.sync()
    assert successes(sim, "p0")["p0"] == 0


def test_traffic_without_ready_pods_is_lost_and_counted() -> None:
    sim, _ = simulator(simtest.make_cluster([simtest.pod("p0", ready=False)], [simtest.md_service("md")]))
    sim.set_load(load(100))
    ticks(sim, 3)
    state = sim.state()
    assert state["totals"]["delivered"] == 0
    assert state["totals"]["lost"][routing.LOST_NO_READY_PODS] == state["totals"]["sent"] > 200
    assert state["loads"][0]["lost"] == state["totals"]["lost"]


def test_service_selector_change_moves_traffic() -> None:
    pods = [simtest.pod("a-0", revision="a"), simtest.pod("b-0", revision="b", version="2")]
    sim, source = simulator(simtest.make_cluster(pods, [simtest.md_service("md", revision="a")]))
    sim.set_load(load(50))
    ticks(sim, 2)
    first = successes(sim, "a-0", "b-0")
    assert first["a-0"] > 50
    assert first["b-0"] == 0
    source.set(simtest.make_cluster(pods, [simtest.md_service("md", revision="b")]))
    ticks(sim, 2)
    second = successes(sim, "a-0", "b-0")
    assert second["a-0"] - first["a-0"] <= 5  # only what was queued at the switch
    assert second["b-0"] > 50


def test_route_weights_split_traffic_80_20() -> None:
    pods = [simtest.pod("a-0", revision="a"), simtest.pod("b-0", revision="b")]
    services = [
        simtest.md_service("md"),
        simtest.service("md-a", {labels.MODEL_DEPLOYMENT: "md", labels.REVISION: "a"}),
        simtest.service("md-b", {labels.MODEL_DEPLOYMENT: "md", labels.REVISION: "b"}),
    ]
    rule = cluster.RouteRule((), (cluster.BackendRef("ns", "md-a", 80), cluster.BackendRef("ns", "md-b", 20)))
    sim, _ = simulator(simtest.make_cluster(pods, services, [cluster.Route("ns", "md", (rule,))]))
    sim.set_load(load(60))
    ticks(sim, 60)
    done = successes(sim, "a-0", "b-0")
    assert done["a-0"] / (done["a-0"] + done["b-0"]) == pytest.approx(0.8, abs=0.02)


def test_fallback_route_sends_traffic_to_another_deployment() -> None:
    pods = [simtest.pod("md-0"), simtest.pod("fb-0", md="fallback", model="small")]
    services = [simtest.md_service("md"), simtest.md_service("fallback")]
    rule = cluster.RouteRule((), (cluster.BackendRef("ns", "fallback", 100),))
    sim, _ = simulator(simtest.make_cluster(pods, services, [cluster.Route("ns", "md", (rule,))]))
    sim.set_load(load(30))
    ticks(sim, 3)
    assert successes(sim, "md-0", "fb-0")["md-0"] == 0
    assert successes(sim, "md-0", "fb-0")["fb-0"] > 50
    assert sim.records[("ns", "fb-0")].model == "small"


def test_halving_replicas_at_a_fixed_rate_increases_queue_time() -> None:
    waits = []
    for replicas in (4, 2):
        pods = [simtest.pod(f"p{i}") for i in range(replicas)]
        sim, _ = simulator(simtest.make_cluster(pods, [simtest.md_service("md")]))
        sim.set_load(load(160))  # 40% then 80% of capacity per pod
        ticks(sim, 30)
        waits.append(queue_seconds(sim))
    assert waits[1] > 2 * waits[0]


def test_version_fault_hits_only_that_versions_pods() -> None:
    pods = [simtest.pod("old-0", revision="a", version="1"), simtest.pod("new-0", revision="b", version="2")]
    sim, _ = simulator(simtest.make_cluster(pods, [simtest.md_service("md")]))
    sim.set_fault(fault(version="2", errorRatio=0.3))
    sim.set_load(load(80))
    ticks(sim, 30)
    old, new = sim.records[("ns", "old-0")].state, sim.records[("ns", "new-0")].state
    assert old.failures()["BACKEND"] == 0
    ratio = new.failures()["BACKEND"] / (new.failures()["BACKEND"] + new.total("success"))
    assert ratio == pytest.approx(0.3, abs=0.03)
    sim.clear_faults("ns", "md")
    assert sim.records[("ns", "new-0")].settings.error_ratio == 0


def test_crash_loses_traffic_and_recovery_restarts_counters() -> None:
    sim, _ = simulator(simtest.make_cluster([simtest.pod("p0")], [simtest.md_service("md")]))
    sim.set_load(load(50))
    ticks(sim, 2)
    assert successes(sim, "p0")["p0"] > 0
    sim.set_fault(fault(crash=True))
    assert sim.records[("ns", "p0")].crashed
    ticks(sim, 2)
    assert sim.state()["totals"]["lost"][engine.LOST_CRASHED] > 50
    sim.set_fault(fault(crash=False))
    assert not sim.records[("ns", "p0")].crashed
    assert successes(sim, "p0")["p0"] == 0


def test_load_duration_replay_and_stop() -> None:
    sim, _ = simulator(simtest.make_cluster([simtest.pod("p0")], [simtest.md_service("md")]))
    sim.set_load(load(100, duration=1.0))
    ticks(sim, 2)
    first = sim.state()["loads"][0]
    assert first["finished"]
    assert first["sent"] == pytest.approx(100, rel=0.3)
    csv = "timestamp\n" + "".join(f"{i * 0.01}\n" for i in range(40))
    sim.set_load(schema.LoadRequest(namespace="ns", name="md", csv=csv, speedup=2))
    ticks(sim, 1)
    replay = sim.state()["loads"][0]
    assert (replay["kind"], replay["sent"], replay["finished"]) == ("replay", 40, True)
    assert sim.stop_load("ns", "md")
    assert not sim.stop_load("ns", "md")


def test_batch_size_counts_inferences() -> None:
    sim, _ = simulator(simtest.make_cluster([simtest.pod("p0")], [simtest.md_service("md")]))
    sim.set_load(load(20, batchSize=8))
    ticks(sim, 2)
    state = sim.records[("ns", "p0")].state
    assert state.total("inference_count") == 8 * state.total("success") > 0


def test_direct_infer_and_state_are_json() -> None:
    sim, _ = simulator(simtest.make_cluster([simtest.pod("p0", gpus=2)], [simtest.md_service("md")]))
    sim.set_load(load(10))
    sim.set_fault(fault(version="1", latencyMultiplier=2))
    ticks(sim, 1)
    record = sim.record("ns", "p0")
    assert record is not None
    assert sim.infer(record).ok
    state = json.loads(json.dumps(sim.state()))
    assert state["totals"]["direct"] == 1
    assert state["pods"][0]["gpus"] == 2
    assert state["pods"][0]["revision"] == "r1"
    assert state["faults"] == [{"namespace": "ns", "name": "md", "version": "1", "latencyMultiplier": 2.0}]


def test_fifty_pods_at_hundreds_of_requests_per_second_are_cheap() -> None:
    pods = [simtest.pod(f"p{i}", md=f"md{i % 5}") for i in range(50)]
    services = [simtest.md_service(f"md{i}") for i in range(5)]
    sim, _ = simulator(simtest.make_cluster(pods, services))
    for i in range(5):
        sim.set_load(load(400, name=f"md{i}"))
    ticks(sim, 10)  # 100 ticks, 20,000 requests
    assert sim.totals.success > 19_000


def test_advance_rejects_a_non_positive_tick() -> None:
    sim, _ = simulator(cluster.Cluster())
    with pytest.raises(ValueError, match="dt"):
        sim.advance(0)


async def test_run_ticks_on_and_survives_a_failing_tick() -> None:
    class Flaky:
        calls = 0

        def snapshot(self) -> cluster.Cluster:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("odd object")
            return cluster.Cluster()

    source = Flaky()
    sim = engine.Simulator(source, tick_seconds=0.01)
    task = asyncio.create_task(sim.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    try:
        while sim.now == 0:
            assert loop.time() < deadline, "the tick loop stopped after a failing tick"
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert source.calls >= 2


def _fleet(idle: int, busy: int) -> tuple[engine.Simulator, cluster.StaticSource]:
    pods = [simtest.pod(f"p{i}", md=f"md{i}", gpus=0) for i in range(idle + busy)]
    services = [simtest.md_service(f"md{i}") for i in range(idle + busy)]
    sim, source = simulator(simtest.make_cluster(pods, services))
    for i in range(busy):
        sim.set_load(load(20, name=f"md{i}"))
    return sim, source


def test_a_fleet_of_idle_pods_costs_one_step_per_pod_per_second_and_busy_pods_one_per_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim, _ = _fleet(idle=1000, busy=10)
    steps: list[int] = []
    real = engine.queueing.step

    def counted(*args: object, **kwargs: object) -> object:
        steps.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine.queueing, "step", counted)
    ticks(sim, 2)  # 20 ticks of 0.1 s
    # 10 loaded pods every tick; 1,000 idle ones twice (once per IDLE_STEP_SECONDS), not 20 times.
    assert len(steps) <= 10 * 20 + 1000 * 2 + 10
    assert sim.totals.success > 0


def test_idle_time_is_settled_exactly_before_new_requests_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    # Idle, loaded, idle longer than a lazy step, loaded again: the lazily stepped pod ends where a
    # twin stepped every tick (the old behaviour; same seed, same arrivals) does.
    phases = [(0.7, None), (1.3, 30.0), (2.5, None), (0.4, 60.0)]

    def play(sim: engine.Simulator) -> engine.PodRecord:
        for seconds, rate in phases:
            if rate is None:
                sim.stop_load("ns", "md0")
            else:
                sim.set_load(load(rate, name="md0"))
            ticks(sim, seconds)
        (record,) = sim.records.values()
        return record

    mine = play(_fleet(idle=1, busy=0)[0])
    with monkeypatch.context() as patched:
        patched.setattr(engine, "IDLE_STEP_SECONDS", 0.0)
        theirs = play(_fleet(idle=1, busy=0)[0])
    assert mine.idle_seconds == 0.0  # the last tick had requests: nothing left to settle
    assert mine.state.total("success") == theirs.state.total("success") > 0
    assert mine.state.total("queue_duration_us") == pytest.approx(theirs.state.total("queue_duration_us"), rel=1e-9)
    assert mine.state.clock == pytest.approx(theirs.state.clock)
    assert mine.state.busy == pytest.approx(theirs.state.busy, rel=1e-9)
    assert mine.state.in_flight == theirs.state.in_flight


def test_selector_index_finds_the_same_pods_as_a_scan() -> None:
    pods = [
        simtest.pod(f"p{i}", md=f"md{i % 7}", namespace=f"ns{i % 3}", revision=f"r{i % 2}", ready=i % 5 != 0)
        for i in range(200)
    ]
    snapshot = simtest.make_cluster(pods)
    for selector in (
        {labels.MODEL_DEPLOYMENT: "md3"},
        {labels.MODEL_DEPLOYMENT: "md3", labels.REVISION: "r1"},
        {labels.REVISION: "r0"},
        {"absent": "x"},
        {},
    ):
        for namespace in ("ns0", "ns1", "ns9"):
            scanned = [p for p in pods if p.namespace == namespace and routing.selects(selector, p.labels)]
            assert snapshot.selected(namespace, selector) == scanned
    assert snapshot.pod("ns1", "p1") is pods[1]
    assert snapshot.pod("ns1", "nope") is None
