"""What a steady fleet costs the API server: writes only on material change, a spread resync, O(1) lookups.

The reconcile under test is the real one (``operator.reconcile``) against
:class:`tests.unit.fakekube.FakeKube`, fed fleet evaluations whose numbers move while the verdicts stay.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import itertools
import time

import pytest

from tests.unit import factories, fakekube
from vigil.api import conditions as cond
from vigil.api import modeldeployment as mdapi
from vigil.api import slo as sloapi
from vigil.observe import fleet, merge, slo
from vigil.reconcile import core, healing, supervise, validate, watched
from vigil.reconcile import operator as op

NS, NAME = "ml", "resnet"
KEY = (NS, NAME)
PROMETHEUS = "http://127.0.0.1:9"  # never queried: the tests hand the reconcile its evaluations
SLOS = [{"name": "availability", "kind": "availability", "objective": 99.0, "period": "1h"}]


def cluster() -> fakekube.FakeKube:
    kube = fakekube.FakeKube()
    body = factories.md(slos=SLOS).model_dump(by_alias=True, exclude_none=True, mode="json")
    body.update(apiVersion="vigil.dev/v1alpha1", kind="ModelDeployment")
    kube.objects[("modeldeployments", NS, NAME)] = body
    return kube


def report(state: str, sli: float, revision: str, judged: datetime.datetime | None = None) -> slo.DeploymentReport:
    status = sloapi.SLOStatus.model_validate(
        {
            "name": "availability",
            "state": state,
            "sli": sli,
            "revision": revision,
            "message": f"sli {sli} over 20s",
            "lastEvaluationTime": cond.rfc3339(judged or datetime.datetime.now(datetime.UTC)),
        }
    )
    verdict = slo.Verdict(cond.ConditionStatus.TRUE if state == "Met" else cond.ConditionStatus.FALSE, state, "")
    return slo.DeploymentReport(NS, NAME, 1, (status,), verdict, ())


def evaluated(
    runtime: op.Runtime, kube: fakekube.FakeKube, state: str, sli: float, judged: datetime.datetime | None = None
) -> None:
    revision = kube.objects[("modeldeployments", NS, NAME)]["status"]["currentRevision"]
    runtime.fleet = fleet.FleetResult(True, None, (report(state, sli, revision, judged),), 12, 0.1)


async def test_numbers_alone_are_written_once_the_refresh_is_due_and_a_new_state_at_once() -> None:
    kube = cluster()
    runtime = op.Runtime(settings=op.Settings(status_refresh_seconds=3600.0, prometheus_url=PROMETHEUS), kube=kube)  # type: ignore[arg-type]
    await op.reconcile(runtime, KEY)  # the first pass: revisions, conditions
    await runtime.poster.flush()  # the Events it decided, posted beside it
    evaluated(runtime, kube, "Met", 99.9)
    await op.reconcile(runtime, KEY)
    await runtime.poster.flush()  # the Events it decided, posted beside it
    writes = len(kube.md_status_writes)
    assert kube.objects[("modeldeployments", NS, NAME)]["status"]["slos"][0]["sli"] == 99.9

    for sli in (99.8, 99.7, 99.95):  # every evaluation moves the numbers, never the verdict
        evaluated(runtime, kube, "Met", sli)
        await op.reconcile(runtime, KEY)
        await runtime.poster.flush()  # the Events it decided, posted beside it
    assert len(kube.md_status_writes) == writes
    assert not runtime.refresh_due(KEY)

    refreshes, verdicts = written("refresh"), written("activeIncident")
    runtime.refresh_at[KEY] = time.monotonic()  # the refresh interval has passed
    await op.reconcile(runtime, KEY)
    await runtime.poster.flush()  # the Events it decided, posted beside it
    assert len(kube.md_status_writes) == writes + 1
    assert kube.objects[("modeldeployments", NS, NAME)]["status"]["slos"][0]["sli"] == 99.95
    assert written("refresh") == refreshes + 1  # vigil_status_writes_total{why="refresh"}

    evaluated(runtime, kube, "Breached", 80.0)  # a verdict: written at once, refresh or not
    await op.reconcile(runtime, KEY)
    await runtime.poster.flush()  # the Events it decided, posted beside it
    assert len(kube.md_status_writes) == writes + 2
    assert kube.objects[("modeldeployments", NS, NAME)]["status"]["slos"][0]["state"] == "Breached"
    assert written("activeIncident") == verdicts + 1  # the first changed field (by name) labels the write
    assert written("refresh") == refreshes + 1


async def test_an_idle_deployment_s_evaluation_time_alone_is_written_at_its_heartbeat_not_each_refresh() -> None:
    """The same numbers judged again (an idle deployment's): not written when the numbers' refresh
    is due, nor requeued for it by the fleet loop; written once its heartbeat is due."""
    kube = cluster()
    settings = op.Settings(status_refresh_seconds=120.0, status_heartbeat_seconds=600.0, prometheus_url=PROMETHEUS)
    runtime = op.Runtime(settings=settings, kube=kube)  # type: ignore[arg-type]
    await op.reconcile(runtime, KEY)
    now = datetime.datetime.now(datetime.UTC)
    evaluated(runtime, kube, "Met", 99.9, judged=now - datetime.timedelta(seconds=5))
    await op.reconcile(runtime, KEY)  # its first verdict: written
    stored = lambda: kube.objects[("modeldeployments", NS, NAME)]["status"]["slos"][0]  # noqa: E731
    writes, heartbeats = len(kube.md_status_writes), written("heartbeat")

    evaluated(runtime, kube, "Met", 99.9, judged=now)  # judged again, the very same numbers
    runtime.refresh_at[KEY] = 0.0  # the numbers' refresh is due
    assert runtime.fleet is not None
    status = mdapi.ModelDeploymentStatus.model_validate(kube.objects[("modeldeployments", NS, NAME)]["status"])
    assert not op.needs_pass(runtime, KEY, status, runtime.fleet.deployment(*KEY), availability_changed=False)
    await op.reconcile(runtime, KEY)
    assert len(kube.md_status_writes) == writes
    assert stored()["lastEvaluationTime"] == cond.rfc3339(now - datetime.timedelta(seconds=5))
    assert runtime.heartbeat_at[KEY] > time.time()

    long_ago = now - datetime.timedelta(seconds=2 * 600 + 120)  # a period and more since it was judged
    stored()["lastEvaluationTime"] = cond.rfc3339(long_ago)
    runtime.kept(
        KEY, mdapi.ModelDeploymentStatus.model_validate(kube.objects[("modeldeployments", NS, NAME)]["status"])
    )
    assert op.needs_pass(runtime, KEY, status, runtime.fleet.deployment(*KEY), availability_changed=False)
    await op.reconcile(runtime, KEY)
    assert len(kube.md_status_writes) == writes + 1
    assert written("heartbeat") == heartbeats + 1  # vigil_status_writes_total{why="heartbeat"}
    assert stored()["lastEvaluationTime"] == cond.rfc3339(now)
    assert runtime.heartbeat_at[KEY] > time.time() + 120.0  # not again within --status-refresh


async def test_numbers_a_reconcile_left_unwritten_are_requeued_once_their_refresh_is_due() -> None:
    """A reconcile for another reason (a watch event, the resync) saw moved numbers before their
    refresh was due: the deployment's in-memory status has them, the stored one does not."""
    kube, runtime = await steady()
    runtime.known.add(KEY)
    evaluated(runtime, kube, "Met", 99.5)
    writes = len(kube.md_status_writes)
    await op.reconcile(runtime, KEY)  # refresh not due: left unwritten
    assert len(kube.md_status_writes) == writes
    assert runtime.fleet is not None
    latest, same = runtime.mds[KEY].status, runtime.fleet.deployment(*KEY)
    assert latest.slos[0].sli == 99.5
    assert not op.needs_pass(runtime, KEY, latest, same, availability_changed=False)
    runtime.refresh_at[KEY] = 0.0
    assert op.needs_pass(runtime, KEY, latest, same, availability_changed=False)
    await op.reconcile(runtime, KEY)
    assert kube.objects[("modeldeployments", NS, NAME)]["status"]["slos"][0]["sli"] == 99.5
    assert not op.needs_pass(runtime, KEY, latest, same, availability_changed=False)


def test_the_fleet_s_heartbeats_are_spread_evenly_over_the_period_after_a_burst() -> None:
    """1,000 deployments created in one burst, their statuses all written within a minute: their
    timestamp-only writes come one period apart each, evenly over the period, not in one wave."""
    settings = op.Settings(status_refresh_seconds=120.0, status_heartbeat_seconds=600.0)
    runtime = op.Runtime(settings=settings, kube=cluster())  # type: ignore[arg-type]
    burst = datetime.datetime(2026, 12, 3, 7, 0, tzinfo=datetime.UTC)
    due = []
    for i in range(1000):
        status = mdapi.ModelDeploymentStatus(
            slos=[
                sloapi.SLOStatus(
                    name="availability",
                    state=sloapi.SLOState.NO_DATA,
                    last_evaluation_time=cond.rfc3339(burst + datetime.timedelta(seconds=i % 60)),
                )
            ]
        )
        due.append(runtime.next_heartbeat(("fleet", f"fleet-{i:04d}"), status) - burst.timestamp())
    assert all(120.0 <= at < 120.0 + 60.0 + 600.0 for at in due)
    per_minute = [sum(1 for at in due if 180.0 + 60 * m <= at < 240.0 + 60 * m) for m in range(10)]
    assert all(60 <= count <= 140 for count in per_minute), per_minute  # 100 a minute, give or take


def written(why: str) -> float:
    return float(op.STATUS_WRITES.labels(why)._value.get())


def test_a_condition_that_changed_names_the_write_by_its_type() -> None:
    old = {"conditions": [{"type": "Available", "status": "False"}, {"type": "Degraded", "status": "False"}]}
    new = {"conditions": [{"type": "Available", "status": "True"}, {"type": "Degraded", "status": "False"}]}
    assert op._first_difference(new, old) == "conditions/Available"
    assert op._first_difference({**old, "currentRevision": "a"}, old) == "currentRevision"


def test_material_parts_ignore_the_refreshed_numbers_and_keep_states_and_conditions() -> None:
    base = factories.md(slos=SLOS).status
    base.slos = [sloapi.SLOStatus(name="availability", state=sloapi.SLOState.MET, sli=99.9, message="a")]
    moved = base.model_copy(deep=True)
    moved.slos[0].sli = 99.1
    moved.slos[0].message = "b"
    moved.slos[0].last_evaluation_time = "2026-12-02T18:00:00Z"
    assert merge.material(moved) == merge.material(base)
    assert moved.wire() != base.wire()
    breached = moved.model_copy(deep=True)
    breached.slos[0].state = sloapi.SLOState.BREACHED
    assert merge.material(breached) != merge.material(base)


async def steady() -> tuple[fakekube.FakeKube, op.Runtime]:
    """A deployment reconciled once, then again with a Met evaluation (its numbers refreshed)."""
    kube = cluster()
    runtime = op.Runtime(settings=op.Settings(status_refresh_seconds=3600.0, prometheus_url=PROMETHEUS), kube=kube)  # type: ignore[arg-type]
    await op.reconcile(runtime, KEY)
    await runtime.poster.flush()  # the Events it decided, posted beside it
    evaluated(runtime, kube, "Met", 99.9)
    await op.reconcile(runtime, KEY)
    await runtime.poster.flush()  # the Events it decided, posted beside it
    return kube, runtime


async def test_a_fresh_status_is_not_requeued_by_the_fleet_loop_every_cycle() -> None:
    """Nothing to write still counts as refreshed: the fleet loop does not requeue it each cycle."""
    _, runtime = await steady()
    await op.reconcile(runtime, KEY)  # equal status: nothing written, and refreshed
    await runtime.poster.flush()  # the Events it decided, posted beside it
    assert not runtime.refresh_due(KEY)
    assert time.monotonic() - runtime.visited[KEY] < 60.0  # the resync passes over it a while


async def test_the_resync_spreads_the_fleet_over_its_period(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = op.Runtime(settings=op.Settings(resync_seconds=100.0, standalone=True), kube=cluster())  # type: ignore[arg-type]
    runtime.known = {(NS, f"md-{i}") for i in range(10)}
    added: list[tuple[float, tuple[str, str]]] = []
    clock = [0.0]
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        clock[0] += seconds
        if len(added) >= 10:
            raise asyncio.CancelledError
        await real_sleep(0)

    monkeypatch.setattr(op.asyncio, "sleep", sleep)
    monkeypatch.setattr(runtime.queue, "add", lambda key, urgent=False: added.append((clock[0], key)))
    with pytest.raises(asyncio.CancelledError):
        await op._resync(runtime, supervise.Heartbeat("resync", 300.0))
    times = [t for t, _ in added]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert sorted(k for _, k in added) == sorted(runtime.known)  # every key once
    assert all(9.0 <= gap <= 11.0 for gap in gaps), gaps  # one every period/N (jittered by 10%)
    assert 9.0 <= times[0] <= 11.0


async def test_the_resync_passes_over_deployments_reconciled_in_the_last_half_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = op.Runtime(settings=op.Settings(resync_seconds=100.0, standalone=True), kube=cluster())  # type: ignore[arg-type]
    runtime.known = {(NS, f"md-{i}") for i in range(10)}
    refreshed = {(NS, f"md-{i}") for i in range(0, 10, 2)}
    runtime.visited = {key: time.monotonic() for key in refreshed}  # just reconciled (a status refresh)
    runtime.visited[(NS, "md-1")] = time.monotonic() - 60.0  # longer ago than half a period
    added: list[tuple[str, str]] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        if len(added) + len(refreshed) >= 10:
            raise asyncio.CancelledError
        await real_sleep(0)

    monkeypatch.setattr(op.asyncio, "sleep", sleep)
    monkeypatch.setattr(runtime.queue, "add", lambda key, urgent=False: added.append(key))
    with pytest.raises(asyncio.CancelledError):
        await op._resync(runtime, supervise.Heartbeat("resync", 300.0))
    assert sorted(added) == sorted(runtime.known - refreshed)


def serving(name: str, switched: str = "2026-12-02T10:00:00Z") -> mdapi.ModelDeployment:
    md = factories.md(name=name, slos=SLOS)
    md.status.current_revision = "r1"
    md.status.switched_at = switched
    md.status.revisions = [
        mdapi.Revision(name="r1", model_version="1", shape=md.spec, generation=1, created="2026-12-02T10:00:00Z")
    ]
    return md


def test_the_fleet_loop_builds_a_target_again_only_for_a_deployment_whose_object_or_status_was_replaced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mds = [serving(f"md-{i}") for i in range(4)]
    targets = op.FleetTargets()
    first = targets(mds)
    assert first == op.fleet_targets(mds)
    assert all(a is b for a, b in zip(targets(mds), first, strict=True))  # nothing replaced: the very same

    mds[1].status = mds[1].status.model_copy(update={"switched_at": "2026-12-02T11:00:00Z"})  # a reconcile's new status
    mds[2] = serving("md-2", switched="2026-12-02T12:00:00Z")  # a reconcile's new object
    again = targets(mds)
    assert again == op.fleet_targets(mds)
    assert again[0] is first[0]
    assert again[3] is first[3]
    assert again[1].revisions[0].since == datetime.datetime(2026, 12, 2, 11, 0, tzinfo=datetime.UTC)
    assert again[2].revisions[0].since == datetime.datetime(2026, 12, 2, 12, 0, tzinfo=datetime.UTC)

    unreadable = serving("odd", switched="not a time")
    with caplog.at_level("WARNING", logger="vigil.reconcile"):
        for _ in range(3):
            assert [t.name for t in targets([*mds[:2], unreadable])] == ["md-0", "md-1"]  # the others are gone
    assert sum("unreadable status" in r.getMessage() for r in caplog.records) == 1  # said once, not every cycle


def test_fleet_lookups_find_each_deployment_and_failure_by_key() -> None:
    reports = tuple(
        slo.DeploymentReport(NS, f"md-{i}", 1, (), slo.Verdict(cond.ConditionStatus.TRUE, "Met", ""), ())
        for i in range(1000)
    )
    failures = (fleet.TargetFailure(NS, "md-7", "first"), fleet.TargetFailure(NS, "md-7", "second"))
    result = fleet.FleetResult(True, None, reports, 12, 0.1, failures)
    assert result.deployment(NS, "md-999") is reports[999]
    assert result.deployment(NS, "absent") is None
    assert result.failure(NS, "md-7") == "first"
    assert result.failure(NS, "md-8") is None


async def test_an_open_incident_is_reconciled_after_every_evaluation() -> None:
    """Its plan's clock (verifyAt, timeouts) must not wait for the next numbers refresh."""
    kube, runtime = await steady()
    status = mdapi.ModelDeploymentStatus.model_validate(kube.objects[("modeldeployments", NS, NAME)]["status"])
    assert runtime.fleet is not None
    same = runtime.fleet.deployment(*KEY)
    assert not op.needs_pass(runtime, KEY, status, same, availability_changed=False)
    assert op.needs_pass(runtime, KEY, status, same, availability_changed=True)
    acting = status.model_copy(update={"active_incident": "resnet-availability-20261202180000"})
    assert op.needs_pass(runtime, KEY, acting, same, availability_changed=False)
    assert op.needs_pass(runtime, KEY, status, report("Breached", 80.0, str(status.current_revision)), False)


async def test_a_healthy_deployment_s_incident_and_gate_bookkeeping_reads_nothing_and_copies_nothing() -> None:
    """No incident, breach, give-back, runbookRef or BadModel verdict (almost every status refresh
    of a steady fleet): both return the very status they were given and ask the API for nothing."""
    kube, runtime = await steady()
    raw = kube.objects[("modeldeployments", NS, NAME)]
    md = mdapi.ModelDeployment.model_validate(raw)
    assert runtime.fleet is not None
    ctx = healing.Context(
        raw, md, core.Observed(workloads={}), runtime.fleet.deployment(*KEY), True, datetime.datetime.now(datetime.UTC)
    )
    calls = len(kube.calls)
    status, events = await healing.tend(kube, ctx, md.status)  # type: ignore[arg-type]
    assert status is md.status
    assert events == []
    status, events = await validate.bookkeep(kube, raw, md, md.status)  # type: ignore[arg-type]
    assert status is md.status
    assert events == []
    assert len(kube.calls) == calls
    breached = md.status.model_copy(update={"active_incident": "resnet-availability-1"})
    copied, _ = await healing.tend(kube, ctx, breached)  # type: ignore[arg-type]
    assert copied is not breached  # something to tend: a draft of its own, as before


async def test_the_pass_that_opens_an_incident_queues_the_deployment_again_at_once_for_its_plan() -> None:
    """The plan's first step runs in the next pass, at once: not after the next evaluation (up to
    --eval-interval later), which made a first action at N = 1,000 come 3.8 s after the breach."""
    kube, runtime = await steady()
    assert len(runtime.queue) == 0
    evaluated(runtime, kube, "Met", 99.8)
    await op.reconcile(runtime, KEY)  # nothing opened: nothing queued
    assert len(runtime.queue) == 0
    evaluated(runtime, kube, "Breached", 80.0)
    await op.reconcile(runtime, KEY)
    opened = kube.objects[("modeldeployments", NS, NAME)]["status"]["activeIncident"]
    assert ("incidents", NS, opened) in kube.objects
    assert runtime.queue.urgent(KEY)  # ahead of routine work
    assert not kube.objects[("incidents", NS, opened)]["status"].get("plan")  # the plan starts in that pass
    runtime.queue.discard(KEY)
    await op.reconcile(runtime, KEY)
    await runtime.poster.flush()
    assert kube.objects[("incidents", NS, opened)]["status"]["plan"]  # its plan is under way
    assert kube.objects[("modeldeployments", NS, NAME)]["status"]["activeIncident"] == opened  # the same one


def test_a_deployment_that_needs_healing_is_queued_urgent_and_a_healthy_one_routine() -> None:
    runtime = op.Runtime(settings=op.Settings(standalone=True), kube=cluster())  # type: ignore[arg-type]
    healthy = factories.md(name="healthy", slos=SLOS)
    incident = factories.md(name="incident", slos=SLOS)
    incident.status.active_incident = "incident-availability-1"
    breached = factories.md(name="breached", slos=SLOS)
    for md in (healthy, incident, breached):
        runtime.mds[(NS, str(md.metadata["name"]))] = md
    fresh = report("Breached", 80.0, "r1")  # the latest evaluation: a breach not yet reconciled
    runtime.fleet = fleet.FleetResult(True, None, (dataclasses.replace(fresh, name="breached"),), 12, 0.1)
    for name in ("healthy", "incident", "breached"):
        pod = {"metadata": {"namespace": NS, "name": f"{name}-pod", "labels": {"vigil.dev/modeldeployment": name}}}
        op.changed(runtime, watched.PODS, None, pod)
    assert not runtime.queue.urgent((NS, "healthy"))
    assert runtime.queue.urgent((NS, "incident"))
    assert runtime.queue.urgent((NS, "breached"))
