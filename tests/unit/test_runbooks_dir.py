"""The ready-made runbooks in runbooks/ parse with the API models and plan what they say."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from tests.unit import actkit
from vigil import api
from vigil.act import machine
from vigil.api import incident as incapi
from vigil.api import runbook as rbapi

ROOT = pathlib.Path(__file__).resolve().parents[2]
DIRECTORY = ROOT / "runbooks"
EXPECTED = {
    "approval-example.yaml",
    "bad-release-rollback.yaml",
    "capacity-fallback.yaml",
    "crash-restart.yaml",
    "dry-run-example.yaml",
    "load-surge-scale-out.yaml",
}
FILES = sorted(p.name for p in DIRECTORY.glob("*.yaml"))


def load(name: str) -> tuple[dict[str, Any], rbapi.Runbook]:
    document = yaml.safe_load((DIRECTORY / name).read_text())
    return document, rbapi.Runbook.model_validate(document)


def unknown_keys(document: Any, parsed: Any, path: str = "") -> list[str]:
    """Keys of the YAML that the model dropped: typos the tolerant models would ignore silently."""
    if isinstance(document, dict):
        missing = [f"{path}.{key}" for key in document if not isinstance(parsed, dict) or key not in parsed]
        nested = [
            unknown_keys(value, parsed[key], f"{path}.{key}")
            for key, value in document.items()
            if isinstance(parsed, dict) and key in parsed
        ]
        return missing + [key for keys in nested for key in keys]
    if isinstance(document, list) and isinstance(parsed, list):
        return [
            key
            for i, (d, p) in enumerate(zip(document, parsed, strict=True))
            for key in unknown_keys(d, p, f"{path}[{i}]")
        ]
    return []


def test_the_directory_holds_the_ready_made_runbooks() -> None:
    assert set(FILES) == EXPECTED


@pytest.mark.parametrize("name", FILES)
def test_each_runbook_validates_against_the_models(name: str) -> None:
    document, runbook = load(name)
    assert runbook.api_version == api.API_VERSION
    assert runbook.kind == rbapi.KIND
    assert runbook.metadata["name"] == name.removesuffix(".yaml")
    assert unknown_keys(document, runbook.wire()) == []


@pytest.mark.parametrize("name", FILES)
def test_each_runbook_keeps_the_rules_the_crd_enforces_with_cel(name: str) -> None:
    _, runbook = load(name)
    names = [step.name for step in runbook.spec.steps]
    assert len(names) == len(set(names))
    for step in runbook.spec.steps:
        if step.action is rbapi.Action.SHIFT_TRAFFIC:
            assert step.params.target is not None


@pytest.mark.parametrize("name", FILES)
def test_each_runbook_plans_an_action_for_the_causes_it_triggers_on(name: str) -> None:
    _, runbook = load(name)
    # BadModel is the gate's: it kept the revision off the wire already, no runbook plays for it.
    causes = {cause for trigger in runbook.spec.triggers for cause in trigger.causes} or set(rbapi.Cause) - {
        rbapi.Cause.UNKNOWN,
        rbapi.Cause.BAD_MODEL,
    }
    for cause in causes:
        plan = machine.start_plan(name, runbook.spec, None, cause, actkit.NOW)
        runnable = [s for s in plan.steps if s.state is incapi.StepState.PENDING]
        assert any(s.action is not rbapi.Action.NOTIFY for s in runnable), f"{name} does nothing for {cause}"


def test_the_dry_run_and_approval_examples_are_in_their_modes() -> None:
    assert load("dry-run-example.yaml")[1].spec.mode is rbapi.Mode.DRY_RUN
    approval = load("approval-example.yaml")[1].spec
    assert approval.mode is rbapi.Mode.APPROVAL
    assert approval.approval_annotation == "vigil.dev/approve"
