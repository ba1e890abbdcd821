"""State-in/state-out tests of the reconcile decision."""

from __future__ import annotations

import datetime

from tests.unit import factories
from vigil.api import conditions as cond
from vigil.api import modeldeployment as mdapi
from vigil.diagnose import pods as podfacts
from vigil.reconcile import core
from vigil.render import revision

NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)


def later(seconds: float) -> datetime.datetime:
    return NOW + datetime.timedelta(seconds=seconds)


def observed(**loads: tuple[int, int]) -> core.Observed:
    return core.Observed(
        workloads={rev: core.Workload(rev, replicas, ready, ready) for rev, (replicas, ready) in loads.items()}
    )


def replicas_of(outcome: core.Outcome) -> dict[str, int]:
    return {m["metadata"]["labels"]["vigil.dev/revision"]: m["spec"]["replicas"] for m in outcome.deployments}


def status_of(outcome: core.Outcome, type_: str) -> cond.Condition:
    found = cond.find(outcome.status.conditions, type_)
    assert found is not None
    return found


def settle(md: mdapi.ModelDeployment, outcome: core.Outcome) -> mdapi.ModelDeployment:
    md.status = outcome.status
    return md


def test_new_deployment_creates_first_revision_and_serves_it() -> None:
    md = factories.md(replicas=2)
    rev = revision.revision_of(md.spec)
    outcome = core.decide(md, "uid-1", observed(), NOW)
    assert replicas_of(outcome) == {rev: 2}
    assert outcome.status.current_revision == rev
    assert outcome.service is not None
    assert outcome.service["spec"]["selector"]["vigil.dev/revision"] == rev
    assert status_of(outcome, "Progressing").status is cond.ConditionStatus.TRUE
    assert status_of(outcome, "Available").status is cond.ConditionStatus.FALSE
    assert [r.name for r in outcome.status.revisions] == [rev]
    assert any(e.reason == "RevisionCreated" for e in outcome.events)


def test_ready_replicas_without_their_service_are_not_available_until_it_exists() -> None:
    md = factories.md(replicas=2)
    rev = revision.revision_of(md.spec)
    md = settle(md, core.decide(md, "uid-1", observed(), NOW))
    loads = {rev: core.Workload(rev, 2, 2, 2)}
    pending = core.decide(md, "uid-1", core.Observed(workloads=loads, service=False), later(5))
    available = status_of(pending, "Available")
    assert (available.status, available.reason) == (cond.ConditionStatus.FALSE, "ServicePending")
    assert available.message == f"revision {rev}: 2/2 ready; the Service is not created yet"
    assert pending.service is not None  # still decided: the edge creates it
    md = settle(md, pending)
    created = core.decide(md, "uid-1", core.Observed(workloads=loads, service=True), later(6))
    assert status_of(created, "Available").status is cond.ConditionStatus.TRUE
    assert any(e.reason == "AvailableTrue" for e in created.events)


def test_all_replicas_ready_makes_it_available_and_rollout_complete() -> None:
    md = factories.md(replicas=2)
    rev = revision.revision_of(md.spec)
    md = settle(md, core.decide(md, "uid-1", observed(), NOW))
    outcome = core.decide(md, "uid-1", observed(**{rev: (2, 2)}), later(5))
    assert status_of(outcome, "Available").status is cond.ConditionStatus.TRUE
    assert status_of(outcome, "Progressing").reason == "RolloutComplete"
    assert status_of(outcome, "Degraded").status is cond.ConditionStatus.FALSE
    assert outcome.status.ready_replicas == 2
    assert outcome.status.model_version == "1"
    assert any(e.reason == "AvailableTrue" for e in outcome.events)


def test_version_change_keeps_traffic_on_old_revision_until_new_is_ready() -> None:
    md = factories.md(replicas=2)
    old = revision.revision_of(md.spec)
    md = settle(md, core.decide(md, "uid-1", observed(**{old: (2, 2)}), NOW))
    v2 = factories.md(version="2", replicas=2, generation=2, status=md.status)
    new = revision.revision_of(v2.spec)
    during = core.decide(v2, "uid-1", observed(**{old: (2, 2)}), later(10))
    assert replicas_of(during) == {old: 2, new: 2}
    assert during.status.current_revision == old
    assert during.service is not None
    assert during.service["spec"]["selector"]["vigil.dev/revision"] == old
    assert status_of(during, "Progressing").status is cond.ConditionStatus.TRUE
    assert status_of(during, "Available").status is cond.ConditionStatus.TRUE
    v2 = settle(v2, during)
    after = core.decide(v2, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(20))
    assert after.status.current_revision == new
    assert after.status.previous_revision == old
    assert after.status.model_version == "2"
    assert replicas_of(after) == {old: 2, new: 2}  # old stays warm during the bake time
    assert any(e.reason == "TrafficSwitched" for e in after.events)
    assert [r.name for r in after.status.revisions] == [old, new]


def test_previous_revision_scales_to_zero_after_bake_time() -> None:
    md = factories.md(replicas=2, bakeTime="1m")
    old = revision.revision_of(md.spec)
    md = settle(md, core.decide(md, "uid-1", observed(**{old: (2, 2)}), NOW))
    v2 = factories.md(version="2", replicas=2, generation=2, bakeTime="1m", status=md.status)
    new = revision.revision_of(v2.spec)
    v2 = settle(v2, core.decide(v2, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(10)))
    outcome = core.decide(v2, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(80))
    assert replicas_of(outcome) == {old: 0, new: 2}


def test_history_is_bounded_and_pruned_revisions_are_deleted() -> None:
    md = factories.md(revisionHistoryLimit=2, bakeTime="1s")
    seen: list[str] = []
    loads: dict[str, tuple[int, int]] = {}
    for version in range(1, 5):
        md = factories.md(
            version=str(version), generation=version, revisionHistoryLimit=2, bakeTime="1s", status=md.status
        )
        rev = revision.revision_of(md.spec)
        seen.append(rev)
        loads[rev] = (2, 2)
        md = settle(md, core.decide(md, "uid-1", observed(**loads), later(version * 100)))
    outcome = core.decide(md, "uid-1", observed(**loads), later(1000))
    assert [r.name for r in outcome.status.revisions] == seen[-2:]
    assert set(outcome.delete) == {f"resnet-{rev}" for rev in seen[:2]}


def test_unschedulable_pods_degrade_with_the_schedulers_message() -> None:
    md = factories.md(replicas=1, triton={"gpus": 16})
    rev = revision.revision_of(md.spec)
    pending = podfacts.PodFacts(
        "resnet-x-1",
        rev,
        phase="Pending",
        scheduled=False,
        schedule_reason="Unschedulable",
        schedule_message="0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
    )
    outcome = core.decide(md, "uid-1", core.Observed({rev: core.Workload(rev, 1, 0, 0)}, (pending,)), NOW)
    degraded = status_of(outcome, "Degraded")
    assert degraded.status is cond.ConditionStatus.TRUE
    assert degraded.reason == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in degraded.message
    assert any(e.type == "Warning" and e.reason == "DegradedTrue" for e in outcome.events)


REFUSED = (
    'pods "resnet-x-abcde" is forbidden: violates PodSecurity "restricted:latest": '
    'allowPrivilegeEscalation != false (container "triton" must set securityContext.allowPrivilegeEscalation=false)'
)


def test_pods_the_api_server_refuses_degrade_with_its_message_and_a_warning() -> None:
    md = factories.md(replicas=1)
    rev = revision.revision_of(md.spec)
    md = settle(md, core.decide(md, "uid-1", observed(), NOW))
    outcome = core.decide(md, "uid-1", core.Observed({rev: core.Workload(rev, 1, 0, 0, refused=REFUSED)}), later(5))
    degraded = status_of(outcome, "Degraded")
    assert degraded.status is cond.ConditionStatus.TRUE
    assert degraded.reason == "FailedCreate"
    assert degraded.message == f"the API server refuses pods of revision {rev}: {REFUSED}"
    assert [e.reason for e in outcome.events if e.type == "Warning"] == ["DegradedTrue"]
    assert status_of(outcome, "Available").status is cond.ConditionStatus.FALSE
    # admitted again (the Deployment's ReplicaFailure cleared): no longer degraded
    md = settle(md, outcome)
    healed = core.decide(md, "uid-1", observed(**{rev: (1, 1)}), later(10))
    assert status_of(healed, "Degraded").status is cond.ConditionStatus.FALSE
    assert status_of(healed, "Available").status is cond.ConditionStatus.TRUE


def test_refused_pods_of_an_already_degraded_deployment_still_raise_a_warning() -> None:
    md = factories.md(replicas=2, triton={"gpus": 16})
    rev = revision.revision_of(md.spec)
    pending = podfacts.PodFacts(
        "resnet-x-1", rev, phase="Pending", scheduled=False, schedule_reason="Unschedulable", schedule_message="no"
    )
    md = settle(md, core.decide(md, "uid-1", core.Observed({rev: core.Workload(rev, 2, 0, 0)}, (pending,)), NOW))
    before = cond.find(md.status.conditions, "Degraded")
    assert before is not None
    assert before.reason == "Unschedulable"
    refused = core.Observed({rev: core.Workload(rev, 2, 0, 0, refused="exceeded quota: q")}, (pending,))
    outcome = core.decide(md, "uid-1", refused, later(5))
    assert status_of(outcome, "Degraded").reason == "FailedCreate"
    warnings = [(e.reason, e.message) for e in outcome.events if e.type == "Warning"]
    assert warnings == [("FailedCreate", f"the API server refuses pods of revision {rev}: exceeded quota: q")]
    again = core.decide(settle(md, outcome), "uid-1", refused, later(10))
    assert not [e for e in again.events if e.type == "Warning"]  # said once


def test_crash_looping_pods_degrade_with_their_observed_restarts_and_reasons() -> None:
    md = factories.md(replicas=1)
    rev = revision.revision_of(md.spec)
    crashing = podfacts.PodFacts(
        "resnet-x-1",
        rev,
        phase="Running",
        scheduled=True,
        containers=(
            podfacts.ContainerFacts(
                "triton",
                ready=False,
                restarts=4,
                state="waiting",
                reason="CrashLoopBackOff",
                last_reason="OOMKilled",
                last_exit_code=137,
            ),
        ),
    )
    starting = podfacts.PodFacts(
        "resnet-x-2", rev, phase="Running", containers=(podfacts.ContainerFacts("triton", False, 0, "running"),)
    )
    outcome = core.decide(md, "uid-1", core.Observed({rev: core.Workload(rev, 1, 0, 0)}, (crashing, starting)), NOW)
    degraded = status_of(outcome, "Degraded")
    assert degraded.reason == "PodsFailing"
    assert degraded.message == (
        "1 pod(s) failing: resnet-x-1 (triton: CrashLoopBackOff, last OOMKilled exit code 137, 4 restarts; not ready)"
    )


def test_invalid_spec_is_degraded_and_keeps_serving_the_current_revision() -> None:
    md = factories.md(replicas=2)
    old = revision.revision_of(md.spec)
    md = settle(md, core.decide(md, "uid-1", observed(**{old: (2, 2)}), NOW))
    bad = factories.md(version="2", generation=2, status=md.status)
    bad.spec.traffic.gateway = "a/b/c"  # the models refuse it; a spec that got past them is refused here
    outcome = core.decide(bad, "uid-1", observed(**{old: (2, 2)}), later(5))
    assert replicas_of(outcome) == {old: 2}
    assert outcome.status.current_revision == old
    degraded = status_of(outcome, "Degraded")
    assert degraded.reason == "InvalidSpec"
    assert "spec.traffic.gateway" in degraded.message


def test_invalid_first_spec_creates_nothing() -> None:
    md = factories.md()
    md.spec.traffic.gateway = "-gw"
    outcome = core.decide(md, "uid-1", observed(), NOW)
    assert outcome.deployments == ()
    assert outcome.service is None
    assert status_of(outcome, "Degraded").reason == "InvalidSpec"


def test_rollback_override_scales_target_then_switches_and_stops_bad_revision() -> None:
    md = factories.md(replicas=2)
    good = revision.revision_of(md.spec)
    md = settle(md, core.decide(md, "uid-1", observed(**{good: (2, 2)}), NOW))
    v2 = factories.md(version="2", generation=2, bakeTime="1h", status=md.status)
    bad = revision.revision_of(v2.spec)
    v2 = settle(v2, core.decide(v2, "uid-1", observed(**{good: (2, 2), bad: (2, 2)}), later(10)))
    v2.status.rollback = mdapi.RollbackOverride(
        revision=good, from_revision=bad, incident="resnet-abc", generation=2, since=cond.rfc3339(later(20))
    )
    outcome = core.decide(v2, "uid-1", observed(**{good: (2, 2), bad: (2, 2)}), later(30))
    assert outcome.status.current_revision == good
    assert replicas_of(outcome) == {good: 2, bad: 0}
    rolled = status_of(outcome, "RolledBack")
    assert rolled.status is cond.ConditionStatus.TRUE
    assert f"spec asks for revision {bad}, serving last-known-good {good}" in rolled.message
    assert "resnet-abc" in rolled.message


def test_rollback_to_a_cold_revision_waits_for_it_before_switching() -> None:
    md = factories.md(replicas=2)
    good = revision.revision_of(md.spec)
    md = settle(md, core.decide(md, "uid-1", observed(**{good: (2, 2)}), NOW))
    v2 = factories.md(version="2", generation=2, status=md.status)
    bad = revision.revision_of(v2.spec)
    v2 = settle(v2, core.decide(v2, "uid-1", observed(**{good: (2, 2), bad: (2, 2)}), later(10)))
    v2.status.rollback = mdapi.RollbackOverride(
        revision=good, from_revision=bad, incident="i", generation=2, since=cond.rfc3339(later(20))
    )
    cold = core.decide(v2, "uid-1", observed(**{good: (0, 0), bad: (2, 2)}), later(400))
    assert cold.status.current_revision == bad
    assert replicas_of(cold) == {good: 2, bad: 2}


def test_new_generation_clears_the_rollback_override() -> None:
    md = factories.md(replicas=2, generation=2)
    md.status.rollback = mdapi.RollbackOverride(revision="x", from_revision="y", incident="i", generation=1, since="t")
    outcome = core.decide(md, "uid-1", observed(), NOW)
    assert outcome.status.rollback is None
    assert any(e.reason == "OverrideCleared" for e in outcome.events)


def test_scale_override_sets_absolute_replicas_for_its_generation() -> None:
    md = factories.md(replicas=2)
    rev = revision.revision_of(md.spec)
    md = settle(md, core.decide(md, "uid-1", observed(**{rev: (2, 2)}), NOW))
    md.status.scale = mdapi.ScaleOverride(replicas=4, incident="i", generation=1, since=cond.rfc3339(NOW))
    outcome = core.decide(md, "uid-1", observed(**{rev: (2, 2)}), later(5))
    assert replicas_of(outcome) == {rev: 4}
    assert status_of(outcome, "ScaledOut").status is cond.ConditionStatus.TRUE


def test_deciding_twice_on_the_same_state_changes_nothing() -> None:
    md = factories.md(replicas=2)
    rev = revision.revision_of(md.spec)
    md = settle(md, core.decide(md, "uid-1", observed(**{rev: (2, 2)}), NOW))
    first = core.decide(md, "uid-1", observed(**{rev: (2, 2)}), later(1))
    md = settle(md, first)
    second = core.decide(md, "uid-1", observed(**{rev: (2, 2)}), later(2))
    assert second.status.wire() == first.status.wire()
    assert second.events == ()


def test_without_slos_a_revision_ready_for_the_bake_time_becomes_last_known_good() -> None:
    md = factories.md(replicas=1, bakeTime="1m")
    rev = revision.revision_of(md.spec)
    md = settle(md, core.decide(md, "uid-1", observed(**{rev: (1, 1)}), NOW))
    md = settle(md, core.decide(md, "uid-1", observed(**{rev: (1, 1)}), later(10)))
    assert not md.status.revisions[0].last_known_good
    outcome = core.decide(md, "uid-1", observed(**{rev: (1, 1)}), later(75))
    assert outcome.status.revisions[0].last_known_good


def test_with_slos_last_known_good_needs_met_verdicts_and_ignores_no_data() -> None:
    slos = [{"name": "avail", "kind": "availability", "objective": 99.0}]
    md = factories.md(replicas=1, bakeTime="1m", slos=slos)
    rev = revision.revision_of(md.spec)
    md = settle(md, core.decide(md, "uid-1", observed(**{rev: (1, 1)}), NOW, {rev: None}))
    md = settle(md, core.decide(md, "uid-1", observed(**{rev: (1, 1)}), later(100), {rev: None}))
    assert md.status.revisions[0].good_since is None
    md = settle(md, core.decide(md, "uid-1", observed(**{rev: (1, 1)}), later(110), {rev: True}))
    md = settle(md, core.decide(md, "uid-1", observed(**{rev: (1, 1)}), later(140), {rev: None}))
    assert not md.status.revisions[0].last_known_good
    md = settle(md, core.decide(md, "uid-1", observed(**{rev: (1, 1)}), later(175), {rev: True}))
    assert md.status.revisions[0].last_known_good


def test_a_breach_restarts_the_good_run() -> None:
    slos = [{"name": "avail", "kind": "availability"}]
    md = factories.md(replicas=1, bakeTime="1m", slos=slos)
    rev = revision.revision_of(md.spec)
    md = settle(md, core.decide(md, "uid-1", observed(**{rev: (1, 1)}), NOW, {rev: True}))
    md = settle(md, core.decide(md, "uid-1", observed(**{rev: (1, 1)}), later(30), {rev: False}))
    md = settle(md, core.decide(md, "uid-1", observed(**{rev: (1, 1)}), later(40), {rev: True}))
    outcome = core.decide(md, "uid-1", observed(**{rev: (1, 1)}), later(70), {rev: True})
    assert not outcome.status.revisions[0].last_known_good
