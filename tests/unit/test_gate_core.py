"""State-in/state-out tests of the golden-request gate in the reconcile decision."""

from __future__ import annotations

import datetime
from typing import Any

from tests.unit import factories
from vigil.api import conditions as cond
from vigil.api import modeldeployment as mdapi
from vigil.api import validation as vapi
from vigil.diagnose import pods as podfacts
from vigil.gate import verdict as gate
from vigil.reconcile import core
from vigil.render import revision

NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
VALIDATION = {"goldenSet": {"configMapRef": {"name": "resnet-golden"}}}
PASSED = gate.Verdict(vapi.ValidationPhase.PASSED, gate.REASON_PASSED, "all within tolerance")
FAILED = gate.Verdict(vapi.ValidationPhase.FAILED, gate.REASON_MISMATCH, "OUTPUT__0: max abs error 0.4 (atol 0.0001)")
TIMED_OUT = gate.Verdict(vapi.ValidationPhase.NOT_VALIDATED, gate.REASON_TIMEOUT, "1 of 2 pod(s) not validated yet")


def later(seconds: float) -> datetime.datetime:
    return NOW + datetime.timedelta(seconds=seconds)


def observed(**loads: tuple[int, int]) -> core.Observed:
    pods = tuple(
        podfacts.PodFacts(name=f"{rev}-pod-{i}", revision=rev, phase="Running", ready=True)
        for rev, (_, ready) in loads.items()
        for i in range(ready)
    )
    return core.Observed(
        workloads={rev: core.Workload(rev, replicas, ready, ready) for rev, (replicas, ready) in loads.items()},
        pods=pods,
    )


def replicas_of(outcome: core.Outcome) -> dict[str, int]:
    return {m["metadata"]["labels"]["vigil.dev/revision"]: m["spec"]["replicas"] for m in outcome.deployments}


def condition(outcome: core.Outcome, type_: str) -> cond.Condition:
    found = cond.find(outcome.status.conditions, type_)
    assert found is not None, type_
    return found


def selected(outcome: core.Outcome) -> str | None:
    return None if outcome.service is None else outcome.service["spec"]["selector"]["vigil.dev/revision"]


def settle(md: mdapi.ModelDeployment, outcome: core.Outcome) -> mdapi.ModelDeployment:
    md.status = outcome.status
    return md


def record(md: mdapi.ModelDeployment, rev: str, verdict: gate.Verdict, at: datetime.datetime) -> None:
    """What the edge does after sending the golden requests."""
    found = next(r for r in md.status.revisions if r.name == rev)
    generation = int(md.metadata["generation"])
    incident = "resnet-bad" if verdict.phase is vapi.ValidationPhase.FAILED else None
    gate.finish(found, generation, verdict, at, "cm/golden.json", incident)


def rolled_out(**validation: Any) -> tuple[mdapi.ModelDeployment, str, str]:
    """v1 serving (validated long ago) and v2 applied with the gate; returns (md at gen 2, old, new)."""
    spec = {"validation": {**VALIDATION, **validation}}
    md = factories.md(replicas=2, **spec)
    old = revision.revision_of(md.spec)
    md = settle(md, core.decide(md, "uid-1", observed(**{old: (2, 2)}), NOW))
    record(md, old, PASSED, NOW)
    md = settle(md, core.decide(md, "uid-1", observed(**{old: (2, 2)}), later(1)))
    assert md.status.current_revision == old
    v2 = factories.md(version="2", replicas=2, generation=2, status=md.status, **spec)
    return v2, old, revision.revision_of(v2.spec)


def test_ready_new_revision_is_validated_before_any_traffic_moves() -> None:
    md, old, new = rolled_out()
    starting = core.decide(md, "uid-1", observed(**{old: (2, 1)}), later(10))
    assert starting.validate is None  # its pods are not Ready yet
    assert condition(starting, gate.VALIDATED).reason == gate.REASON_AWAITING
    md = settle(md, starting)
    ready = core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(20))
    assert ready.status.current_revision == old
    assert selected(ready) == old
    assert ready.validate == core.Validate(
        revision=new, generation=2, pods=(f"{new}-pod-0", f"{new}-pod-1"), model="resnet50", version="2"
    )
    rev = next(r for r in ready.status.revisions if r.name == new)
    assert rev.validation is not None
    assert rev.validation.phase is vapi.ValidationPhase.VALIDATING
    assert condition(ready, gate.VALIDATED).status is cond.ConditionStatus.UNKNOWN
    assert any(e.reason == "ValidationStarted" for e in ready.events)


def test_the_gate_waits_for_the_pod_cache_to_show_every_ready_pod_the_deployment_counts() -> None:
    md, old, new = rolled_out()
    lagging = observed(**{old: (2, 2), new: (2, 2)})
    lagging = core.Observed(
        workloads=lagging.workloads, pods=tuple(p for p in lagging.pods if p.name != f"{new}-pod-1")
    )
    early = core.decide(md, "uid-1", lagging, later(20))
    assert early.validate is None  # readyReplicas says 2, the cache has seen one: proving one pod is not enough
    assert early.status.current_revision == old
    caught_up = core.decide(settle(md, early), "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(21))
    assert caught_up.validate is not None
    assert caught_up.validate.pods == (f"{new}-pod-0", f"{new}-pod-1")


def test_a_passed_verdict_moves_traffic_on_the_next_decision() -> None:
    md, old, new = rolled_out()
    md = settle(md, core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(20)))
    record(md, new, PASSED, later(21))
    after = core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(22))
    assert after.status.current_revision == new
    assert selected(after) == new
    assert after.validate is None
    assert condition(after, gate.VALIDATED).status is cond.ConditionStatus.TRUE
    assert any(e.reason == "TrafficSwitched" for e in after.events)


def test_a_failed_revision_never_takes_traffic_and_gives_its_pods_back() -> None:
    md, old, new = rolled_out()
    md = settle(md, core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(20)))
    record(md, new, FAILED, later(21))
    blocked = core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(22))
    assert blocked.status.current_revision == old
    assert selected(blocked) == old
    assert replicas_of(blocked) == {old: 2, new: 0}
    assert blocked.validate is None
    validated = condition(blocked, gate.VALIDATED)
    assert validated.status is cond.ConditionStatus.FALSE
    assert "OUTPUT__0: max abs error 0.4" in validated.message
    assert "new spec generation" in validated.message
    progressing = condition(blocked, core.PROGRESSING)
    assert (progressing.status, progressing.reason) == (cond.ConditionStatus.FALSE, "ValidationFailed")
    md = settle(md, blocked)
    # Still blocked a minute later, and nothing is sent again: the same generation never retries.
    again = core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 0)}), later(80))
    assert again.status.current_revision == old
    assert again.validate is None
    assert replicas_of(again)[new] == 0


def test_the_verdict_write_carries_the_deployment_condition_the_next_decision_keeps() -> None:
    md, old, new = rolled_out()
    md = settle(md, core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(20)))
    assert condition_of(md, gate.VALIDATED).reason == gate.REASON_AWAITING
    record(md, new, FAILED, later(21))
    gate.align_deployment_condition(md.status, md.spec, revision_of(md, new), 2, later(21))
    written = condition_of(md, gate.VALIDATED)
    assert (written.status, written.reason) == (cond.ConditionStatus.FALSE, gate.REASON_MISMATCH)
    decided = condition(core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(22)), gate.VALIDATED)
    assert (decided.status, decided.reason, decided.message) == (written.status, written.reason, written.message)
    assert decided.last_transition_time == written.last_transition_time


def test_a_verdict_on_a_revision_the_spec_no_longer_asks_for_leaves_the_condition_alone() -> None:
    md, old, new = rolled_out()
    md = settle(md, core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(20)))
    before = condition_of(md, gate.VALIDATED)
    gate.align_deployment_condition(md.status, md.spec, revision_of(md, old), 2, later(21))
    assert condition_of(md, gate.VALIDATED) == before


def condition_of(md: mdapi.ModelDeployment, type_: str) -> cond.Condition:
    found = cond.find(md.status.conditions, type_)
    assert found is not None, type_
    return found


def revision_of(md: mdapi.ModelDeployment, name: str) -> mdapi.Revision:
    return next(r for r in md.status.revisions if r.name == name)


def test_a_new_generation_retries_a_failed_revision() -> None:
    md, old, new = rolled_out(tolerance={"atol": 1e-6})
    md = settle(md, core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(20)))
    record(md, new, FAILED, later(21))
    md = settle(md, core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 0)}), later(22)))
    loosened = factories.md(
        version="2", replicas=2, generation=3, status=md.status, validation={**VALIDATION, "tolerance": {"atol": 0.5}}
    )
    assert revision.revision_of(loosened.spec) == new  # a tolerance is not part of the pods
    scaling = core.decide(loosened, "uid-1", observed(**{old: (2, 2), new: (0, 0)}), later(30))
    assert replicas_of(scaling)[new] == 2
    assert scaling.status.current_revision == old
    loosened = settle(loosened, scaling)
    retry = core.decide(loosened, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(40))
    assert retry.validate is not None
    assert retry.validate.generation == 3


def test_on_failure_warn_serves_the_failed_revision_and_says_so() -> None:
    md, old, new = rolled_out(onFailure="warn")
    md = settle(md, core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(20)))
    record(md, new, FAILED, later(21))
    after = core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(22))
    assert after.status.current_revision == new
    validated = condition(after, gate.VALIDATED)
    assert validated.status is cond.ConditionStatus.FALSE
    assert "onFailure: warn" in validated.message


def test_a_pod_that_timed_out_is_not_validated_and_is_retried_later() -> None:
    md, old, new = rolled_out()
    md = settle(md, core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(20)))
    record(md, new, TIMED_OUT, later(21))
    waiting = core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(22))
    assert waiting.status.current_revision == old
    assert waiting.validate is None
    assert waiting.retry_in is not None
    assert 0 < waiting.retry_in <= gate.RETRY_SECONDS
    assert condition(waiting, gate.VALIDATED).status is cond.ConditionStatus.UNKNOWN
    md = settle(md, waiting)
    due = core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(21 + gate.RETRY_SECONDS))
    assert due.validate is not None
    assert due.status.current_revision == old


def test_a_validation_interrupted_by_a_crash_is_run_again_without_moving_traffic() -> None:
    md, old, new = rolled_out()
    md = settle(md, core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(20)))
    # The operator died after recording Validating: its successor reads the same status.
    restarted = mdapi.ModelDeployment.model_validate(md.model_dump(by_alias=True))
    resumed = core.decide(restarted, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(300))
    assert resumed.status.current_revision == old
    assert selected(resumed) == old
    assert resumed.validate is not None
    assert resumed.validate.revision == new


def test_rollback_to_last_known_good_is_never_gated() -> None:
    md, old, new = rolled_out()
    md = settle(md, core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(20)))
    record(md, new, PASSED, later(21))
    md = settle(md, core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(22)))
    assert md.status.current_revision == new
    # An incident rolls back to old, whose verdict was lost (say, its record predates the gate).
    next(r for r in md.status.revisions if r.name == old).validation = None
    md.status.rollback = mdapi.RollbackOverride(
        revision=old, from_revision=new, incident="inc-1", generation=2, since=cond.rfc3339(later(30))
    )
    back = core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(31))
    assert back.status.current_revision == old
    assert back.validate is None
    validated = condition(back, gate.VALIDATED)
    assert (validated.status, validated.reason) == (cond.ConditionStatus.TRUE, gate.REASON_NOT_GATED)


def test_a_spec_reverted_to_a_last_known_good_revision_is_not_gated() -> None:
    md, old, new = rolled_out()
    md = settle(md, core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(20)))
    record(md, new, FAILED, later(21))
    md = settle(md, core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 0)}), later(22)))
    lkg = next(r for r in md.status.revisions if r.name == old)
    lkg.validation, lkg.last_known_good = None, True
    back = factories.md(version="1", replicas=2, generation=3, status=md.status, validation=VALIDATION)
    outcome = core.decide(back, "uid-1", observed(**{old: (2, 2), new: (0, 0)}), later(30))
    assert outcome.status.current_revision == old
    assert outcome.validate is None


def test_the_first_revision_serves_nothing_until_it_passed() -> None:
    md = factories.md(replicas=1, validation=VALIDATION)
    rev = revision.revision_of(md.spec)
    first = core.decide(md, "uid-1", observed(), NOW)
    assert first.status.current_revision is None
    assert first.service is None
    assert replicas_of(first) == {rev: 1}
    assert condition(first, core.AVAILABLE).reason == "AwaitingValidation"
    md = settle(md, first)
    ready = core.decide(md, "uid-1", observed(**{rev: (1, 1)}), later(10))
    assert ready.service is None
    assert ready.validate is not None
    md = settle(md, ready)
    record(md, rev, PASSED, later(11))
    serving = core.decide(md, "uid-1", observed(**{rev: (1, 1)}), later(12))
    assert serving.status.current_revision == rev
    assert selected(serving) == rev
    assert condition(serving, core.AVAILABLE).status is cond.ConditionStatus.TRUE


def test_a_failed_first_revision_runs_no_pods_and_serves_nothing() -> None:
    md = factories.md(replicas=1, validation=VALIDATION)
    rev = revision.revision_of(md.spec)
    md = settle(md, core.decide(md, "uid-1", observed(**{rev: (1, 1)}), NOW))
    record(md, rev, FAILED, later(1))
    blocked = core.decide(md, "uid-1", observed(**{rev: (1, 1)}), later(2))
    assert blocked.service is None
    assert replicas_of(blocked) == {rev: 0}
    assert condition(blocked, core.PROGRESSING).reason == "ValidationFailed"


def test_without_spec_validation_nothing_is_gated_and_no_condition_is_set() -> None:
    md = factories.md(replicas=1)
    old = revision.revision_of(md.spec)
    md = settle(md, core.decide(md, "uid-1", observed(**{old: (1, 1)}), NOW))
    v2 = factories.md(version="2", replicas=1, generation=2, status=md.status)
    new = revision.revision_of(v2.spec)
    after = core.decide(v2, "uid-1", observed(**{old: (1, 1), new: (1, 1)}), later(10))
    assert after.status.current_revision == new
    assert after.validate is None
    assert cond.find(after.status.conditions, gate.VALIDATED) is None


def test_removing_spec_validation_drops_the_condition_and_opens_the_gate() -> None:
    md, old, new = rolled_out()
    md = settle(md, core.decide(md, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(20)))
    assert cond.find(md.status.conditions, gate.VALIDATED) is not None
    plain = factories.md(version="2", replicas=2, generation=3, status=md.status)
    after = core.decide(plain, "uid-1", observed(**{old: (2, 2), new: (2, 2)}), later(30))
    assert after.status.current_revision == new
    assert cond.find(after.status.conditions, gate.VALIDATED) is None


def test_spec_validation_added_to_a_serving_revision_does_not_unserve_it() -> None:
    md = factories.md(replicas=1)
    rev = revision.revision_of(md.spec)
    md = settle(md, core.decide(md, "uid-1", observed(**{rev: (1, 1)}), NOW))
    gated = factories.md(replicas=1, generation=2, status=md.status, validation=VALIDATION)
    outcome = core.decide(gated, "uid-1", observed(**{rev: (1, 1)}), later(10))
    assert outcome.status.current_revision == rev
    assert outcome.validate is None
    validated = condition(outcome, gate.VALIDATED)
    assert (validated.status, validated.reason) == (cond.ConditionStatus.UNKNOWN, gate.REASON_SERVING_UNVALIDATED)
