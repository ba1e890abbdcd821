"""Runbook selection and the built-in default."""

from __future__ import annotations

import pytest

from tests.unit import actkit
from vigil.act import machine, runbooks
from vigil.api import incident as incapi
from vigil.api import runbook as rbapi

Cause = rbapi.Cause


def custom(*triggers: dict[str, object]) -> rbapi.RunbookSpec:
    return actkit.runbook({"name": "back", "action": "rollback"}, triggers=list(triggers) or [{}])


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


def test_select_uses_the_referenced_runbook_when_a_trigger_matches() -> None:
    md = actkit.deployment(runbookRef={"name": "mine"})
    spec = custom({"slo": "latency", "causes": ["BadRollout"]})
    assert runbooks.select([("other", custom()), ("mine", spec)], md.spec, "latency", Cause.BAD_ROLLOUT) == (
        "mine",
        spec,
    )


@pytest.mark.parametrize(
    ("slo", "cause"),
    [("availability", Cause.BAD_ROLLOUT), ("latency", Cause.LOAD_SURGE)],
)
def test_select_falls_back_to_the_default_when_no_trigger_matches(slo: str, cause: Cause) -> None:
    md = actkit.deployment(runbookRef={"name": "mine"})
    spec = custom({"slo": "latency", "causes": ["BadRollout"]})
    name, chosen = runbooks.select([("mine", spec)], md.spec, slo, cause)
    assert (name, chosen) == (runbooks.BUILTIN, runbooks.builtin_default())


def test_select_falls_back_to_the_default_without_a_reference_or_when_it_is_missing() -> None:
    spec = custom()
    assert runbooks.select([("mine", spec)], actkit.deployment().spec, "latency", Cause.UNKNOWN)[0] == runbooks.BUILTIN
    md = actkit.deployment(runbookRef={"name": "gone"})
    assert runbooks.select([("mine", spec)], md.spec, "latency", Cause.UNKNOWN)[0] == runbooks.BUILTIN


def test_a_wildcard_trigger_with_no_causes_matches_every_breach() -> None:
    assert runbooks.matches(custom({}), "latency", Cause.CAPACITY)
    assert runbooks.matches(custom({"slo": "x"}, {"causes": ["Capacity"]}), "latency", Cause.CAPACITY)
    assert not runbooks.matches(custom({"slo": "x"}), "latency", Cause.CAPACITY)
