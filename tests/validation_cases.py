"""Malformed manifests and the field each must be refused for: one table for two layers.

The unit tests feed every case to the pydantic models (what the operator parses with), the e2e
test feeds the same case to the real API server (the generated CRD schema and its CEL rules) and,
for the few rules only a running operator can check, to the operator. Both must name ``field``.

``by`` says who refuses it on the sandbox:

* ``openapi``: the CRD's OpenAPI schema (type, pattern, bounds, enum, required, list size);
* ``cel``: a CEL rule of the CRD (``x-kubernetes-validations``);
* ``list``: a list-type map or set of the CRD (a repeated key);
* ``strict``: an unknown field, refused by strict field validation (what kubectl asks for by
  default); the models themselves ignore unknown fields, as the API server would prune them;
* ``operator``: accepted by the API server, refused by the running operator (``Degraded=True``,
  reason ``InvalidSpec``): rules that depend on how the operator runs.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any

MIN_WINDOW_SECONDS = 20
"""The e2e operator's --min-window (the default), which the ``operator`` cases are judged against."""


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    patch: dict[str, Any]
    field: str
    by: str
    kind: str = "ModelDeployment"


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``patch`` applied to a copy of ``base``: dicts merge, a None value deletes the key."""
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def md_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "resnet50", "repository": "s3://models/resnet50", "version": "1"},
            "replicas": 1,
            "triton": {"gpus": 1},
        },
    }


def runbook_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "Runbook",
        "metadata": {"name": name},
        "spec": {"steps": [{"name": "back", "action": "rollback"}]},
    }


def manifest(case: Case, name: str) -> dict[str, Any]:
    base = md_manifest(name) if case.kind == "ModelDeployment" else runbook_manifest(name)
    return merge(base, case.patch)


def _triton(**fields: Any) -> dict[str, Any]:
    return {"spec": {"triton": fields}}


def _slo(**fields: Any) -> dict[str, Any]:
    return {"spec": {"slos": [{"name": "availability", "kind": "availability", **fields}]}}


def _validation(**fields: Any) -> dict[str, Any]:
    return {"spec": {"validation": {"goldenSet": {"configMapRef": {"name": "golden"}}, **fields}}}


def _step(**fields: Any) -> dict[str, Any]:
    return {"spec": {"steps": [{"name": "a", "action": "rollback", **fields}]}}


def _rb(case_id: str, patch: dict[str, Any], field: str, by: str) -> Case:
    return Case(case_id, patch, field, by, kind="Runbook")


CASES: list[Case] = [
    # -- names ------------------------------------------------------------------------------------
    Case("name-starts-with-a-digit", {"metadata": {"name": "1resnet"}}, "metadata.name", "cel"),
    Case("name-with-a-dot", {"metadata": {"name": "res.net"}}, "metadata.name", "cel"),
    Case("name-longer-than-40", {"metadata": {"name": "m" * 41}}, "metadata.name", "cel"),
    # -- model ------------------------------------------------------------------------------------
    Case("model-missing", {"spec": {"model": None}}, "spec.model", "openapi"),
    Case("model-version-empty", {"spec": {"model": {"version": ""}}}, "spec.model.version", "openapi"),
    Case("model-name-ends-with-dash", {"spec": {"model": {"name": "resnet-"}}}, "spec.model.name", "openapi"),
    Case(
        "model-repository-with-a-space",
        {"spec": {"model": {"repository": "s3://models/res net"}}},
        "spec.model.repository",
        "openapi",
    ),
    Case("model-repository-ftp", {"spec": {"model": {"repository": "ftp://x/m"}}}, "spec.model.repository", "openapi"),
    # -- triton -----------------------------------------------------------------------------------
    Case("image-with-a-space", _triton(image="nvcr.io/nvidia/triton server:1"), "spec.triton.image", "openapi"),
    Case("image-blank", _triton(image=""), "spec.triton.image", "openapi"),
    Case("image-upper-case-path", _triton(image="Triton:25.01"), "spec.triton.image", "openapi"),
    Case("cpu-negative", _triton(cpu="-2"), "spec.triton.cpu", "openapi"),
    Case("cpu-zero", _triton(cpu="0"), "spec.triton.cpu", "cel"),
    Case("cpu-above-1024", _triton(cpu="2000"), "spec.triton.cpu", "cel"),
    Case("memory-1.2.3", _triton(memory="1.2.3"), "spec.triton.memory", "openapi"),
    Case("memory-with-a-space", _triton(memory="8 Gi"), "spec.triton.memory", "openapi"),
    Case("gpus-17", _triton(gpus=17), "spec.triton.gpus", "openapi"),
    Case("gpus-negative", _triton(gpus=-1), "spec.triton.gpus", "openapi"),
    Case("model-control-mode-unknown", _triton(modelControlMode="auto"), "spec.triton.modelControlMode", "openapi"),
    Case("args-set-a-managed-flag", _triton(args=["--http-port=9000"]), "spec.triton.args", "cel"),
    Case("args-empty-string", _triton(args=[""]), "spec.triton.args[0]", "openapi"),
    Case("env-name-twice", _triton(env=[{"name": "A"}, {"name": "A"}]), "spec.triton.env[1]", "list"),
    Case("env-name-with-a-space", _triton(env=[{"name": "A B"}]), "spec.triton.env[0].name", "openapi"),
    Case("node-selector-bad-key", _triton(nodeSelector={"bad key!": "x"}), "spec.triton.nodeSelector", "cel"),
    Case("node-selector-bad-value", _triton(nodeSelector={"zone": "a b"}), "spec.triton.nodeSelector.zone", "openapi"),
    Case(
        "toleration-exists-with-a-value",
        _triton(tolerations=[{"key": "k", "operator": "Exists", "value": "v"}]),
        "spec.triton.tolerations[0].value",
        "cel",
    ),
    Case(
        "toleration-without-key-not-exists",
        _triton(tolerations=[{"operator": "Equal", "value": "v"}]),
        "spec.triton.tolerations[0].operator",
        "cel",
    ),
    Case(
        "toleration-unknown-effect",
        _triton(tolerations=[{"key": "k", "effect": "Sometimes"}]),
        "spec.triton.tolerations[0].effect",
        "openapi",
    ),
    Case(
        "toleration-seconds-without-noexecute",
        _triton(tolerations=[{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]),
        "spec.triton.tolerations[0].tolerationSeconds",
        "cel",
    ),
    Case("startup-timeout-5s", _triton(startupTimeoutSeconds=5), "spec.triton.startupTimeoutSeconds", "openapi"),
    Case(
        "security-root-without-consent",
        _triton(securityContext={"runAsUser": 0}),
        "spec.triton.securityContext.runAsUser",
        "cel",
    ),
    Case(
        "security-privileged-without-escalation",
        _triton(securityContext={"privileged": True}),
        "spec.triton.securityContext.privileged",
        "cel",
    ),
    Case(
        "security-lower-case-capability",
        _triton(securityContext={"capabilities": {"add": ["net_admin"]}}),
        "spec.triton.securityContext.capabilities.add[0]",
        "openapi",
    ),
    Case(
        "pod-security-localhost-without-profile",
        _triton(podSecurityContext={"seccompProfile": {"type": "Localhost"}}),
        "spec.triton.podSecurityContext.seccompProfile.localhostProfile",
        "cel",
    ),
    Case(
        "pod-security-negative-uid",
        _triton(podSecurityContext={"runAsUser": -1}),
        "spec.triton.podSecurityContext.runAsUser",
        "openapi",
    ),
    # -- scaling, rollout, traffic ----------------------------------------------------------------
    Case("replicas-negative", {"spec": {"replicas": -1}}, "spec.replicas", "openapi"),
    Case("replicas-above-max", {"spec": {"replicas": 5, "maxReplicas": 2}}, "spec.replicas", "cel"),
    Case("min-above-max", {"spec": {"replicas": 2, "minReplicas": 3, "maxReplicas": 2}}, "spec.minReplicas", "cel"),
    Case("max-replicas-zero", {"spec": {"replicas": 0, "maxReplicas": 0}}, "spec.maxReplicas", "openapi"),
    Case("revision-history-zero", {"spec": {"revisionHistoryLimit": 0}}, "spec.revisionHistoryLimit", "openapi"),
    Case("bake-time-0s", {"spec": {"bakeTime": "0s"}}, "spec.bakeTime", "cel"),
    Case("bake-time-in-words", {"spec": {"bakeTime": "5 minutes"}}, "spec.bakeTime", "openapi"),
    Case("runbook-ref-not-a-name", {"spec": {"runbookRef": {"name": "Bad_Name"}}}, "spec.runbookRef.name", "openapi"),
    Case("gateway-blank", {"spec": {"traffic": {"gateway": ""}}}, "spec.traffic.gateway", "openapi"),
    Case("gateway-three-parts", {"spec": {"traffic": {"gateway": "a/b/c"}}}, "spec.traffic.gateway", "openapi"),
    Case("fallback-is-itself", {"spec": {"traffic": {"fallback": "bad"}}}, "spec.traffic.fallback", "cel"),
    Case("fallback-not-a-name", {"spec": {"traffic": {"fallback": "1x"}}}, "spec.traffic.fallback", "openapi"),
    # -- golden-request gate ----------------------------------------------------------------------
    Case("validation-without-golden-set", _validation(goldenSet=None), "spec.validation.goldenSet", "openapi"),
    Case(
        "validation-config-map-not-a-name",
        _validation(goldenSet={"configMapRef": {"name": "Golden_Set"}}),
        "spec.validation.goldenSet.configMapRef.name",
        "openapi",
    ),
    Case(
        "validation-config-map-key-with-a-slash",
        _validation(goldenSet={"configMapRef": {"name": "golden", "key": "a/b.json"}}),
        "spec.validation.goldenSet.configMapRef.key",
        "openapi",
    ),
    Case(
        "validation-golden-set-in-a-config-map-and-a-path",
        _validation(goldenSet={"configMapRef": {"name": "golden"}, "path": "golden.json"}),
        "spec.validation.goldenSet.path",
        "cel",
    ),
    Case(
        "validation-golden-set-nowhere",
        _validation(goldenSet={}),
        "spec.validation.goldenSet.configMapRef",
        "cel",
    ),
    Case(
        "validation-golden-set-path-absolute",
        _validation(goldenSet={"path": "/models/resnet50/golden.json"}),
        "spec.validation.goldenSet.path",
        "openapi",
    ),
    Case(
        "validation-golden-set-path-leaves-the-model-directory",
        _validation(goldenSet={"path": "../other/golden.json"}),
        "spec.validation.goldenSet.path",
        "cel",
    ),
    Case(
        "validation-golden-set-path-with-a-space",
        _validation(goldenSet={"path": "my golden.json"}),
        "spec.validation.goldenSet.path",
        "openapi",
    ),
    Case(
        "validation-atol-negative", _validation(tolerance={"atol": -0.1}), "spec.validation.tolerance.atol", "openapi"
    ),
    Case("validation-top-k-0", _validation(tolerance={"topK": 0}), "spec.validation.tolerance.topK", "openapi"),
    Case(
        "validation-output-tolerance-twice",
        _validation(tolerance={"outputs": [{"name": "OUT", "atol": 1}, {"name": "OUT", "rtol": 1}]}),
        "spec.validation.tolerance.outputs[1]",
        "list",
    ),
    Case("validation-requests-0", _validation(requests=0), "spec.validation.requests", "openapi"),
    Case("validation-timeout-10m", _validation(timeout="10m"), "spec.validation.timeout", "cel"),
    Case("validation-timeout-0s", _validation(timeout="0s"), "spec.validation.timeout", "cel"),
    Case("validation-on-failure-unknown", _validation(onFailure="rollback"), "spec.validation.onFailure", "openapi"),
    # -- SLOs -------------------------------------------------------------------------------------
    Case("slo-unknown-kind", _slo(kind="bogus"), "spec.slos[0].kind", "openapi"),
    Case("slo-latency-without-threshold", _slo(kind="latency"), "spec.slos[0].thresholdMs", "cel"),
    Case("slo-threshold-on-availability", _slo(thresholdMs=5), "spec.slos[0].thresholdMs", "cel"),
    Case("slo-objective-100", _slo(objective=100), "spec.slos[0].objective", "openapi"),
    Case("slo-objective-0", _slo(objective=0), "spec.slos[0].objective", "openapi"),
    Case("slo-threshold-0", _slo(kind="queueTime", thresholdMs=0), "spec.slos[0].thresholdMs", "openapi"),
    Case("slo-gpu-memory-without-limit", _slo(kind="gpuMemory"), "spec.slos[0].maxUtilization", "cel"),
    Case(
        "slo-gpu-memory-above-1", _slo(kind="gpuMemory", maxUtilization=1.5), "spec.slos[0].maxUtilization", "openapi"
    ),
    Case(
        "slo-histogram-on-queue-time",
        _slo(kind="queueTime", thresholdMs=50, method="histogram"),
        "spec.slos[0].method",
        "cel",
    ),
    Case("slo-period-0s", _slo(period="0s"), "spec.slos[0].period", "cel"),
    Case("slo-period-400d", _slo(period="400d"), "spec.slos[0].period", "cel"),
    Case(
        "slo-short-window-longer-than-long",
        _slo(period="1d", windows=[{"long": "5m", "short": "1h", "factor": 2}]),
        "spec.slos[0].windows[0].short",
        "cel",
    ),
    Case(
        "slo-window-longer-than-period",
        _slo(period="1h", windows=[{"long": "2h", "short": "10m", "factor": 2}]),
        "spec.slos[0].windows",
        "cel",
    ),
    Case(
        "slo-window-factor-0",
        _slo(windows=[{"long": "1h", "short": "5m", "factor": 0}]),
        "spec.slos[0].windows[0].factor",
        "openapi",
    ),
    Case(
        "slo-window-unknown-severity",
        _slo(windows=[{"long": "1h", "short": "5m", "factor": 2, "severity": "urgent"}]),
        "spec.slos[0].windows[0].severity",
        "openapi",
    ),
    Case(
        "slo-name-twice",
        {"spec": {"slos": [{"name": "a", "kind": "availability"}, {"name": "a", "kind": "availability"}]}},
        "spec.slos[1]",
        "list",
    ),
    Case(
        "slo-name-upper-case",
        {"spec": {"slos": [{"name": "Avail", "kind": "availability"}]}},
        "spec.slos[0].name",
        "openapi",
    ),
    Case("slo-min-request-rate-negative", _slo(minRequestRate=-1), "spec.slos[0].minRequestRate", "openapi"),
    Case("slo-unknown-no-data-policy", _slo(noDataPolicy="Ignore"), "spec.slos[0].noDataPolicy", "openapi"),
    Case(
        "slos-more-than-16",
        {"spec": {"slos": [{"name": f"s{i}", "kind": "availability"} for i in range(17)]}},
        "spec.slos",
        "openapi",
    ),
    Case("unknown-field-replica", {"spec": {"replica": 3}}, "spec.replica", "strict"),
    # -- what only the running operator can judge -------------------------------------------------
    Case("slo-period-shorter-than-min-window", _slo(period="10s"), "spec.slos[0].period", "operator"),
    Case(
        "slo-windows-inside-a-period-shorter-than-min-window",
        _slo(period="15s", windows=[{"long": "10s", "short": "5s", "factor": 2}]),
        "spec.slos[0].period",
        "operator",
    ),
    Case(
        "second-slo-period-shorter-than-min-window",
        {
            "spec": {
                "slos": [{"name": "a", "kind": "availability"}, {"name": "b", "kind": "availability", "period": "5s"}]
            }
        },
        "spec.slos[1].period",
        "operator",
    ),
    # -- runbooks ---------------------------------------------------------------------------------
    _rb("runbook-no-steps", {"spec": {"steps": []}}, "spec.steps", "openapi"),
    _rb(
        "runbook-step-name-twice",
        {"spec": {"steps": [{"name": "a", "action": "rollback"}, {"name": "a", "action": "notify"}]}},
        "spec.steps[1]",
        "list",
    ),
    _rb("runbook-unknown-action", _step(action="explode"), "spec.steps[0].action", "openapi"),
    _rb("runbook-shift-without-target", _step(action="shiftTraffic"), "spec.steps[0].params", "cel"),
    _rb(
        "runbook-scale-param-on-rollback", _step(params={"stepReplicas": 2}), "spec.steps[0].params.stepReplicas", "cel"
    ),
    _rb("runbook-verify-after-0s", _step(verifyAfter="0s"), "spec.steps[0].verifyAfter", "cel"),
    _rb(
        "runbook-weight-101",
        _step(action="shiftTraffic", params={"target": "fallback", "weight": 101}),
        "spec.steps[0].params.weight",
        "openapi",
    ),
    _rb(
        "runbook-cause-twice",
        {"spec": {"triggers": [{"causes": ["LoadSurge", "LoadSurge"]}]}},
        "spec.triggers[0].causes[1]",
        "list",
    ),
    _rb(
        "runbook-unknown-cause",
        {"spec": {"triggers": [{"causes": ["Aliens"]}]}},
        "spec.triggers[0].causes[0]",
        "openapi",
    ),
    _rb("runbook-unknown-mode", {"spec": {"mode": "yolo"}}, "spec.mode", "openapi"),
    _rb(
        "runbook-approval-annotation-not-a-key",
        {"spec": {"approvalAnnotation": "not a key"}},
        "spec.approvalAnnotation",
        "openapi",
    ),
    _rb("runbook-cooldown-0m", {"spec": {"guards": {"cooldown": "0m"}}}, "spec.guards.cooldown", "cel"),
    _rb(
        "runbook-max-actions-0",
        {"spec": {"guards": {"maxActionsPerHour": 0}}},
        "spec.guards.maxActionsPerHour",
        "openapi",
    ),
]


def names_field(text: str, field: str) -> bool:
    """Whether ``text`` names ``field``: its whole path, or an enclosing object's path followed by
    the rest of the path in the message.

    The API server writes a CEL rule's ``fieldPath`` into the path; the models report a rule of an
    object at the object's path, with the rest of the field's path in the message.
    """
    if field in text:
        return True
    listed = re.fullmatch(r"(.*)(\[[0-9]+\])", field)
    if listed and f"{listed[1]}: {listed[2]}" in text:  # a list's rule about one of its items
        return True
    parts = field.split(".")
    return any(f"{'.'.join(parts[:cut])}: " in text and ".".join(parts[cut:]) in text for cut in range(1, len(parts)))
