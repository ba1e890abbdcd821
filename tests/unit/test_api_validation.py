"""The models refuse every malformed manifest of the shared table, naming the field, and accept the edges."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from tests import validation_cases as cases
from vigil.api import invalid
from vigil.api import modeldeployment as mdapi
from vigil.api import runbook as rbapi
from vigil.api import slo as sloapi


def parse(case: cases.Case) -> pydantic.BaseModel:
    model: type[pydantic.BaseModel] = mdapi.ModelDeployment if case.kind == "ModelDeployment" else rbapi.Runbook
    return model.model_validate(cases.manifest(case, "bad"))


SCHEMA_CASES = [c for c in cases.CASES if c.by not in ("strict", "operator")]


@pytest.mark.parametrize("case", SCHEMA_CASES, ids=[c.id for c in SCHEMA_CASES])
def test_models_refuse_what_the_schema_refuses_naming_the_field(case: cases.Case) -> None:
    with pytest.raises(pydantic.ValidationError) as raised:
        parse(case)
    problems = "; ".join(invalid.describe(raised.value))
    assert cases.names_field(problems, case.field), problems


OPERATOR_CASES = [c for c in cases.CASES if c.by == "operator"]


@pytest.mark.parametrize("case", OPERATOR_CASES, ids=[c.id for c in OPERATOR_CASES])
def test_rules_beyond_the_schema_name_the_field(case: cases.Case) -> None:
    md = parse(case)
    assert isinstance(md, mdapi.ModelDeployment)
    problems = invalid.beyond_schema(md, min_window_seconds=cases.MIN_WINDOW_SECONDS)
    assert cases.names_field("; ".join(problems), case.field), problems
    assert invalid.beyond_schema(md, min_window_seconds=1) == []


def test_unknown_fields_are_ignored_by_the_models_as_the_api_server_prunes_them() -> None:
    (case,) = [c for c in cases.CASES if c.by == "strict"]
    md = parse(case)
    assert "replica" not in md.model_dump(by_alias=True)["spec"]


def test_the_table_has_at_least_forty_malformed_manifests_of_every_kind_of_refusal() -> None:
    assert len(cases.CASES) >= 40
    assert {c.by for c in cases.CASES} == {"openapi", "cel", "list", "strict", "operator"}
    assert len({c.id for c in cases.CASES}) == len(cases.CASES)


EDGES: list[tuple[str, dict[str, Any]]] = [
    ("name of 40 characters", {"metadata": {"name": "m" * 40}}),
    ("millicores and an exponent", {"spec": {"triton": {"cpu": "500m", "memory": "1e9"}}}),
    ("binary suffix at the maximum", {"spec": {"triton": {"memory": "64Ti", "cpu": "1024"}}}),
    (
        "image with registry port and digest",
        {"spec": {"triton": {"image": "localhost:5000/triton/server:1@sha256:" + "a" * 64}}},
    ),
    (
        "prefixed node selector key",
        {"spec": {"triton": {"nodeSelector": {"nvidia.com/gpu.product": "A100-SXM4-80GB"}}}},
    ),
    ("toleration of every taint", {"spec": {"triton": {"tolerations": [{"operator": "Exists"}]}}}),
    (
        "toleration seconds with NoExecute",
        {"spec": {"triton": {"tolerations": [{"key": "k", "effect": "NoExecute", "tolerationSeconds": 30}]}}},
    ),
    ("root with explicit consent", {"spec": {"triton": {"securityContext": {"runAsUser": 0, "runAsNonRoot": False}}}}),
    (
        "privileged with escalation",
        {"spec": {"triton": {"securityContext": {"privileged": True, "allowPrivilegeEscalation": True}}}},
    ),
    (
        "localhost seccomp profile",
        {
            "spec": {
                "triton": {
                    "podSecurityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "triton.json"}}
                }
            }
        },
    ),
    ("period at its maximum", {"spec": {"slos": [{"name": "a", "kind": "availability", "period": "366d"}]}}),
    (
        "window as long as the period",
        {
            "spec": {
                "slos": [
                    {
                        "name": "a",
                        "kind": "availability",
                        "period": "1h",
                        "windows": [{"long": "1h", "short": "1h", "factor": 1}],
                    }
                ]
            }
        },
    ),
    (
        "composite durations",
        {"spec": {"bakeTime": "1h30m", "slos": [{"name": "a", "kind": "availability", "period": "1w2d"}]}},
    ),
    (
        "histogram latency",
        {"spec": {"slos": [{"name": "p99", "kind": "latency", "method": "histogram", "thresholdMs": 100}]}},
    ),
    ("gateway in another namespace", {"spec": {"traffic": {"gateway": "infra/public.gw", "fallback": "other"}}}),
    ("replicas between min and max", {"spec": {"replicas": 3, "minReplicas": 1, "maxReplicas": 6}}),
    ("golden set beside a model version", {"spec": {"validation": {"goldenSet": {"path": "3/golden.json"}}}}),
    ("golden set with dots in its name", {"spec": {"validation": {"goldenSet": {"path": "v1..2/.golden.json"}}}}),
]


@pytest.mark.parametrize(("what", "patch"), EDGES, ids=[e[0] for e in EDGES])
def test_models_accept_values_at_the_edges(what: str, patch: dict[str, Any]) -> None:
    md = mdapi.ModelDeployment.model_validate(cases.merge(cases.md_manifest("edge"), patch))
    assert invalid.beyond_schema(md, min_window_seconds=cases.MIN_WINDOW_SECONDS) == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("90s", 90), ("1h30m", 5400), ("30d", 2_592_000), ("1w", 604_800)],
)
def test_durations_read_as_seconds(text: str, seconds: float) -> None:
    assert sloapi.duration_seconds(text) == seconds


def test_cel_duration_sum_names_every_unit() -> None:
    expression = sloapi.cel_milliseconds("self.period")
    for unit in ("'ms'", "'s'", "'m'", "'h'", "'d'"):
        assert unit in expression
    assert expression.endswith(".sum()")


def test_field_paths_are_written_as_the_api_server_writes_them() -> None:
    assert invalid.field_path(("spec", "slos", 0, "period")) == "spec.slos[0].period"
    assert invalid.field_path(()) == ""


def test_describe_names_every_broken_field_without_pydantic_noise() -> None:
    body = cases.merge(cases.md_manifest("x"), {"spec": {"replicas": -1, "triton": {"cpu": "0"}}})
    with pytest.raises(pydantic.ValidationError) as raised:
        mdapi.ModelDeployment.model_validate(body)
    problems = invalid.describe(raised.value)
    assert any(p.startswith("spec.replicas: ") for p in problems)
    assert "spec.triton.cpu: must be a Kubernetes quantity above 0 and at most 1024" in problems
    assert not any("Value error" in p or "pydantic" in p for p in problems)
