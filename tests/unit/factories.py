"""Builders of API objects for state-in/state-out tests."""

from __future__ import annotations

from typing import Any

from vigil.api import conditions as cond
from vigil.api import modeldeployment as mdapi
from vigil.api import slo as sloapi
from vigil.observe import fleet, slo


def md(
    name: str = "resnet",
    version: str = "1",
    replicas: int = 2,
    generation: int = 1,
    status: mdapi.ModelDeploymentStatus | None = None,
    **spec: Any,
) -> mdapi.ModelDeployment:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "ml", "generation": generation, "uid": "uid-1"},
        "spec": {
            "model": {"name": "resnet50", "repository": "s3://models/resnet50", "version": version},
            "replicas": replicas,
            **spec,
        },
    }
    parsed = mdapi.ModelDeployment.model_validate(body)
    if status is not None:
        parsed.status = status
    return parsed


def judged_as_stored(*bodies: dict[str, Any]) -> fleet.FleetResult:
    """A fleet evaluation that judged each ModelDeployment ``bodies`` (as stored) to be what its status
    says: for harnesses that play the fleet loop by editing the stored SLO verdicts (the reconcile acts
    only on deployments the current evaluation judged)."""
    reports = []
    for body in bodies:
        status = mdapi.ModelDeploymentStatus.model_validate(body.get("status") or {})
        states = {s.state for s in status.slos}
        if sloapi.SLOState.BREACHED in states:
            verdict = slo.Verdict(cond.ConditionStatus.FALSE, "Breached", "")
        elif states == {sloapi.SLOState.MET}:
            verdict = slo.Verdict(cond.ConditionStatus.TRUE, "Met", "")
        else:
            verdict = slo.Verdict(cond.ConditionStatus.UNKNOWN, "Unknown", "")
        meta = body["metadata"]
        generation = int(meta.get("generation") or 0)
        reports.append(
            slo.DeploymentReport(meta["namespace"], meta["name"], generation, tuple(status.slos), verdict, ())
        )
    return fleet.FleetResult(True, None, tuple(reports), len(reports), 0.0)
