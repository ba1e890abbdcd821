"""Runbook selection and the built-in default."""

from __future__ import annotations

import pytest

from tests.unit import actkit
from vigil.act import machine, runbooks
from vigil.api import incident as incapi
from vigil.api import runbook as rbapi

Cause = rbapi.Cause


def custom(*triggers: dict[str, object], **fields: object) -> rbapi.RunbookSpec:
    return actkit.runbook({"name": "back", "action": "rollback"}, triggers=list(triggers) or [{}], **fields)


def test_builtin_default_is_a_valid_auto_runbook_for_any_slo() -> None:
    spec = runbooks.builtin_default()
    assert rbapi.RunbookSpec.model_validate(spec.wire()) == spec
    assert spec.mode is rbapi.Mode.AUTO
    assert runbooks.matches(spec, "anything", Cause.UNKNOWN)
    assert spec.guards == rbapi.Guards(cooldown="10m", max_actions_per_hour=6)


@pytest.mark.parametrize(
    ("cause", "runnable"),
    [
        (Cause.BAD_ROLLOUT, ["rollback"]),
        (Cause.CRASHING_PODS, ["restart-pods", "rollback-crashing"]),
        (Cause.LOAD_SURGE, ["scale-out", "shift-to-fallback"]),
        (Cause.CAPACITY, ["shift-to-fallback"]),
        (Cause.UNKNOWN, []),
    ],
)
def test_builtin_default_runs_the_documented_steps_per_cause(cause: Cause, runnable: list[str]) -> None:
    plan = machine.start_plan(runbooks.BUILTIN, runbooks.builtin_default(), None, cause, actkit.NOW)
    assert [s.name for s in plan.steps if s.state is incapi.StepState.PENDING] == runnable


def test_builtin_default_escalates_when_its_key_steps_fail() -> None:
    steps = {s.name: s for s in runbooks.builtin_default().steps}
    assert steps["rollback"].on_failure is rbapi.OnFailure.ESCALATE
    assert steps["rollback"].verify_after == "60s"
    assert steps["restart-pods"].on_failure is rbapi.OnFailure.NEXT
    assert steps["scale-out"].on_failure is rbapi.OnFailure.NEXT
    assert steps["shift-to-fallback"].params.target == "fallback"
    assert steps["shift-to-fallback"].on_failure is rbapi.OnFailure.ESCALATE


def found(spec: rbapi.RunbookSpec, name: str = "mine") -> runbooks.Found:
    return runbooks.Found(name=name, spec=spec)


LATENCY_ROLLOUT = runbooks.Breach("latency", Cause.BAD_ROLLOUT)


def test_the_referenced_runbook_answers_a_breach_one_of_its_triggers_matches() -> None:
    spec = custom({"slo": "latency", "causes": ["BadRollout"]}, mode="approval")
    resolution = runbooks.resolve("mine", found(spec), LATENCY_ROLLOUT)
    assert (resolution.runbook, resolution.spec, resolution.mode) == ("mine", spec, None)
    assert resolution.reason is runbooks.Reason.RESOLVED
    assert resolution.usable
    assert resolution.message == "runbookRef mine: Runbook answers SLO latency with cause BadRollout"


def test_without_a_reference_the_builtin_default_applies_in_its_own_mode() -> None:
    resolution = runbooks.resolve(None, None, LATENCY_ROLLOUT)
    assert (resolution.runbook, resolution.spec, resolution.mode) == (
        runbooks.BUILTIN,
        runbooks.builtin_default(),
        None,
    )
    assert resolution.reason is runbooks.Reason.BUILTIN_DEFAULT
    assert resolution.usable


def test_a_missing_runbook_means_no_automatic_action() -> None:
    resolution = runbooks.resolve("gone", None, LATENCY_ROLLOUT)
    assert (resolution.runbook, resolution.mode) == (runbooks.BUILTIN, rbapi.Mode.DRY_RUN)
    assert resolution.reason is runbooks.Reason.NOT_FOUND
    assert not resolution.usable
    assert resolution.message == f"runbookRef gone: no Runbook gone in this namespace; {runbooks.NO_ACTION}"
    assert runbooks.resolve("gone", None, None).reason is runbooks.Reason.NOT_FOUND


def test_an_invalid_runbook_means_no_automatic_action_and_names_the_field() -> None:
    broken = runbooks.parse("mine", {"mode": "yolo", "steps": [{"name": "x", "action": "rollback"}]})
    assert broken.spec is None
    assert broken.problem is not None
    assert broken.problem.startswith("spec.mode: Input should be 'auto', 'dryRun' or 'approval'")
    resolution = runbooks.resolve("mine", broken, LATENCY_ROLLOUT)
    assert resolution.mode is rbapi.Mode.DRY_RUN
    assert resolution.reason is runbooks.Reason.INVALID
    assert resolution.message == f"runbookRef mine: Runbook mine is invalid: {broken.problem}; {runbooks.NO_ACTION}"
    assert runbooks.parse("mine", None).problem == "spec.steps: Field required"


@pytest.mark.parametrize(
    ("slo", "cause"),
    [("availability", Cause.BAD_ROLLOUT), ("latency", Cause.LOAD_SURGE)],
)
def test_a_runbook_no_trigger_of_which_matches_means_no_automatic_action(slo: str, cause: Cause) -> None:
    spec = custom({"slo": "latency", "causes": ["BadRollout"]})
    resolution = runbooks.resolve("mine", found(spec), runbooks.Breach(slo, cause))
    assert (resolution.runbook, resolution.spec, resolution.mode) == (
        runbooks.BUILTIN,
        runbooks.builtin_default(),
        rbapi.Mode.DRY_RUN,
    )
    assert resolution.reason is runbooks.Reason.NO_MATCHING_TRIGGER
    assert resolution.message == (
        f"runbookRef mine: no trigger of Runbook mine (slo latency causes BadRollout) matches SLO {slo} "
        f"with cause {cause}; {runbooks.NO_ACTION}"
    )


def test_a_valid_runbook_is_resolved_before_any_breach() -> None:
    resolution = runbooks.resolve("mine", found(custom({"slo": "latency"})), None)
    assert resolution.usable
    assert resolution.message == "runbookRef mine: Runbook is valid"


def test_a_plan_from_an_unusable_reference_records_and_never_acts() -> None:
    resolution = runbooks.resolve("gone", None, LATENCY_ROLLOUT)
    plan = machine.start_plan(resolution.runbook, resolution.spec, resolution.mode, Cause.BAD_ROLLOUT, actkit.NOW)
    md = actkit.deployment()
    decision = machine.advance(actkit.opened(plan), actkit.context(md))
    assert decision.intents == ()
    assert actkit.step(decision.status, "rollback").state is incapi.StepState.DRY_RUN


def test_a_wildcard_trigger_with_no_causes_matches_every_breach() -> None:
    assert runbooks.matches(custom({}), "latency", Cause.CAPACITY)
    assert runbooks.matches(custom({"slo": "x"}, {"causes": ["Capacity"]}), "latency", Cause.CAPACITY)
    assert not runbooks.matches(custom({"slo": "x"}), "latency", Cause.CAPACITY)
