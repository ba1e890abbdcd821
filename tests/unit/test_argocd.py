"""vigil's Argo CD integration: the health checks on objects captured from the sandbox, and the manifests.

The fixtures in tests/unit/fixtures/argocd/ are real ModelDeployments, Incidents and a Runbook as the
sandbox served them during tests/e2e/test_gitops.py (re-captured with VIGIL_CAPTURE_ARGOCD_FIXTURES=1);
the Lua runs in Lua 5.1 with Argo CD's restricted libraries (tests/unit/argocd_lua.py).
"""

from __future__ import annotations

import copy
import pathlib
import runpy
from typing import Any

import pytest
import yaml

from tests.unit import argocd_lua
from tests.unit.argocd_lua import ROOT, Health, health

ARGOCD = ROOT / "argocd"


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((argocd_lua.FIXTURES / f"{name}.yaml").read_text())
    return loaded


@pytest.mark.parametrize(
    ("name", "status", "says"),
    [
        ("modeldeployment-progressing", "Progressing", "RolloutInProgress"),
        ("modeldeployment-healthy", "Healthy", "MinimumReplicasAvailable"),
        ("modeldeployment-degraded-unschedulable", "Degraded", "Unschedulable"),
        ("modeldeployment-degraded-rolled-back", "Degraded", "IncidentRollback"),
        ("modeldeployment-degraded-rolled-back-scaled", "Degraded", "a new revision supersedes the rollback"),
        ("incident-progressing", "Progressing", "BadRollout"),
        ("incident-suspended-approval", "Suspended", "annotate this Incident vigil.dev/approve=true"),
        ("incident-healthy-resolved", "Healthy", "resolved"),
        ("runbook-healthy", "Healthy", "approval runbook with 1 step(s)"),
    ],
)
def test_health_of_objects_captured_from_the_sandbox(name: str, status: str, says: str) -> None:
    found = health(fixture(name))
    assert found.status == status
    assert says in found.message


def test_a_modeldeployment_whose_generation_is_not_yet_observed_is_progressing() -> None:
    obj = fixture("modeldeployment-healthy")
    obj["metadata"]["generation"] = obj["status"]["observedGeneration"] + 1
    found = health(obj)
    assert found == Health("Progressing", f"waiting for vigil to observe generation {obj['metadata']['generation']}")


def test_a_modeldeployment_without_status_is_progressing() -> None:
    obj = fixture("modeldeployment-healthy")
    del obj["status"]
    assert health(obj).status == "Progressing"


def test_a_breached_slo_degrades_an_otherwise_available_deployment() -> None:
    obj = copy.deepcopy(fixture("modeldeployment-healthy"))
    slo = next(c for c in obj["status"]["conditions"] if c["type"] == "SLOMet")
    slo.update(status="False", reason="Breached", message="availability burns its budget 14x")
    assert health(obj) == Health("Degraded", "Breached: availability burns its budget 14x")


@pytest.mark.parametrize(("phase", "status"), [("Escalated", "Degraded"), ("Open", "Progressing")])
def test_incident_phases_without_a_captured_fixture(phase: str, status: str) -> None:
    obj = fixture("incident-progressing")
    obj["status"]["phase"] = phase
    assert health(obj).status == status


def test_an_incident_without_status_is_progressing() -> None:
    obj = fixture("incident-progressing")
    del obj["status"]
    assert health(obj).status == "Progressing"


def test_argocd_cm_embeds_exactly_the_health_scripts() -> None:
    render = runpy.run_path(str(ARGOCD / "generate.py"))["render"]
    assert (ARGOCD / "argocd-cm.yaml").read_text() == render(), "run: python argocd/generate.py"
    data = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())["data"]
    assert set(data) == {
        f"resource.customizations.health.{kind}"
        for kind in ("vigil.dev_ModelDeployment", "vigil.dev_Incident", "vigil.dev_Runbook", "argoproj.io_Application")
    }


def applications() -> dict[str, dict[str, Any]]:
    apps = [yaml.safe_load(path.read_text()) for path in sorted((ARGOCD / "apps").glob("*.yaml"))]
    return {app["metadata"]["name"]: app for app in apps}


def wave(app: dict[str, Any]) -> int:
    return int(app["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))


def test_sync_waves_apply_crds_then_the_operator_then_the_models() -> None:
    apps = applications()
    assert wave(apps["vigil-crds"]) < wave(apps["vigil"]) < wave(apps["models"])
    assert apps["vigil"]["spec"]["source"]["helm"]["skipCrds"] is True, "the CRDs have one owner: vigil-crds"
    assert "SkipDryRunOnMissingResource=true" in apps["models"]["spec"]["syncPolicy"]["syncOptions"]
    assert "Prune=false" in apps["vigil-crds"]["spec"]["syncPolicy"]["syncOptions"]


def test_applications_point_at_paths_of_this_repository() -> None:
    root = yaml.safe_load((ARGOCD / "root.yaml").read_text())
    assert (ROOT / root["spec"]["source"]["path"]).is_dir()
    for name in ("vigil-crds", "vigil"):
        path = pathlib.Path(applications()[name]["spec"]["source"]["path"])
        assert (ROOT / path).is_dir(), path
    assert (ROOT / "charts/vigil/Chart.yaml").exists()


def test_health_scripts_cover_every_vigil_kind() -> None:
    crds = [yaml.safe_load(p.read_text()) for p in (ROOT / "crds").glob("*.yaml")]
    kinds = {crd["spec"]["names"]["kind"] for crd in crds if crd["spec"]["group"] == "vigil.dev"}
    assert kinds == {"ModelDeployment", "Incident", "Runbook"}
    assert {p.stem for p in argocd_lua.HEALTH_DIR.glob("vigil.dev_*.lua")} == {f"vigil.dev_{k}" for k in kinds}


@pytest.mark.parametrize(
    ("app_status", "expected"),
    [
        ({"health": {"status": "Healthy"}}, Health("Healthy", "")),
        (
            {"health": {"status": "Degraded", "message": "vigil-0 CrashLoopBackOff"}},
            Health("Degraded", "vigil-0 CrashLoopBackOff"),
        ),
        ({}, Health("Progressing", "")),
    ],
)
def test_a_child_application_reports_its_own_health_so_waves_wait_for_it(
    app_status: dict[str, Any], expected: Health
) -> None:
    app = applications()["vigil"] | {"status": app_status}
    assert health(app) == expected
