"""``vigil status`` and ``vigil incidents`` against a fake CustomObjectsApi: reads, scopes, errors."""

from __future__ import annotations

import datetime
import pathlib
from typing import Any

import pytest
import typer.testing
import urllib3.exceptions
import yaml
from kubernetes import client

from tests.unit import factories
from vigil import cli as vigil_cli
from vigil.api import incident as incapi
from vigil.api import runbook as rbapi
from vigil.record import cli

NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
runner = typer.testing.CliRunner()


def md_body(name: str, namespace: str) -> dict[str, Any]:
    md = factories.md(name=name)
    md.metadata["namespace"] = namespace
    md.status.model_version = "1"
    return md.wire()


def incident_body(name: str, namespace: str, deployment: str) -> dict[str, Any]:
    return incapi.Incident(
        metadata={"name": name, "namespace": namespace, "labels": {"vigil.dev/modeldeployment": deployment}},
        spec=incapi.IncidentSpec(model_deployment=deployment, slo="p99", generation=1),
        status=incapi.IncidentStatus(
            opened_at="2026-11-22T11:50:00Z",
            diagnosis=incapi.Diagnosis(cause=rbapi.Cause.LOAD_SURGE, summary="30 req/s is 3x the baseline"),
            timeline=[incapi.TimelineEntry(time="2026-11-22T11:50:00Z", type="Detected", message="SLO p99 Breached")],
        ),
    ).wire()


class FakeObjects:
    """The three CustomObjectsApi calls the CLI makes, over an in-memory store."""

    def __init__(self, store: dict[str, list[dict[str, Any]]], error: Exception | None = None) -> None:
        self.store = store
        self.error = error
        self.calls: list[tuple[Any, ...]] = []
        self.kubeconfigs: list[str | None] = []

    def _items(self, plural: str, namespace: str | None, label_selector: str) -> list[dict[str, Any]]:
        if self.error is not None:
            raise self.error
        key, _, value = label_selector.partition("=")
        return [
            item
            for item in self.store.get(plural, [])
            if (namespace is None or item["metadata"]["namespace"] == namespace)
            and (not key or item["metadata"].get("labels", {}).get(key) == value)
        ]

    def list_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, label_selector: str = ""
    ) -> dict[str, Any]:
        self.calls.append(("list", group, version, namespace, plural, label_selector))
        return {"items": self._items(plural, namespace, label_selector)}

    def list_cluster_custom_object(
        self, group: str, version: str, plural: str, label_selector: str = ""
    ) -> dict[str, Any]:
        self.calls.append(("list-all", group, version, plural, label_selector))
        return {"items": self._items(plural, None, label_selector)}

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> dict[str, Any]:
        self.calls.append(("get", group, version, namespace, plural, name))
        found = [i for i in self._items(plural, namespace, "") if i["metadata"]["name"] == name]
        if not found:
            raise client.exceptions.ApiException(status=404, reason="Not Found")
        return found[0]


@pytest.fixture
def store() -> dict[str, list[dict[str, Any]]]:
    return {
        "modeldeployments": [md_body("resnet", "ml"), md_body("bert", "nlp")],
        "incidents": [
            incident_body("resnet-p99-20261122115000", "ml", "resnet"),
            incident_body("other-p99-20261122115000", "ml", "other"),
        ],
    }


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, store: dict[str, list[dict[str, Any]]]) -> FakeObjects:
    objects = FakeObjects(store)

    def custom_objects(kubeconfig: str | None) -> FakeObjects:
        objects.kubeconfigs.append(kubeconfig)
        return objects

    monkeypatch.setattr(cli, "custom_objects", custom_objects)
    monkeypatch.setattr(cli, "default_namespace", lambda kubeconfig: "ml")
    monkeypatch.setattr(cli, "clock", lambda: NOW)
    return objects


def invoke(*args: str, env: dict[str, str] | None = None) -> typer.testing.Result:
    return runner.invoke(cli.app, list(args), env={"COLUMNS": "140", "KUBECONFIG": "", **(env or {})})


def test_top_level_vigil_app_has_the_read_only_commands() -> None:
    names = {command.name for command in vigil_cli.app.registered_commands}
    assert {"status", "incidents"} <= names


def test_status_reads_the_default_namespace(fake: FakeObjects) -> None:
    result = invoke("status")
    assert result.exit_code == 0, result.output
    assert "ml/resnet" in result.output
    assert "nlp/bert" not in result.output
    assert fake.calls == [("list", "vigil.dev", "v1alpha1", "ml", "modeldeployments", "")]


def test_status_all_namespaces_reads_the_cluster(fake: FakeObjects) -> None:
    result = invoke("status", "-A")
    assert result.exit_code == 0, result.output
    assert "ml/resnet" in result.output
    assert "nlp/bert" in result.output
    assert fake.calls[0][0] == "list-all"


def test_status_of_an_empty_namespace_says_so(fake: FakeObjects) -> None:
    result = invoke("status", "-n", "empty")
    assert result.exit_code == 0
    assert "No ModelDeployments in namespace empty." in result.output


def test_namespace_and_all_namespaces_together_are_refused(fake: FakeObjects) -> None:
    result = invoke("status", "-n", "ml", "-A")
    assert result.exit_code == 2
    assert fake.calls == []


def test_kubeconfig_comes_from_the_option_or_the_environment(fake: FakeObjects) -> None:
    invoke("status", "--kubeconfig", "/tmp/a.yaml")
    invoke("status", env={"KUBECONFIG": "/tmp/b.yaml"})
    assert fake.kubeconfigs == ["/tmp/a.yaml", "/tmp/b.yaml"]


def test_unreadable_objects_are_listed_under_the_view(
    fake: FakeObjects, store: dict[str, list[dict[str, Any]]]
) -> None:
    store["modeldeployments"].append({"metadata": {"name": "broken", "namespace": "ml"}, "spec": {}})
    result = invoke("status")
    assert result.exit_code == 0
    assert "Could not read:" in result.output
    assert "ml/broken: cannot read spec.model" in result.output


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (client.exceptions.ApiException(status=404, reason="Not Found"), "are the vigil CRDs installed"),
        (client.exceptions.ApiException(status=403, reason="Forbidden"), "not allowed to read modeldeployments"),
        (client.exceptions.ApiException(status=500, reason="Boom"), "answered 500 Boom"),
        (urllib3.exceptions.ProtocolError("connection aborted"), "cannot reach the API server"),
        (ConnectionRefusedError(111, "Connection refused"), "cannot reach the API server"),
    ],
    ids=["no-crds", "forbidden", "server-error", "protocol-error", "refused"],
)
def test_read_failures_exit_1_with_a_reason(fake: FakeObjects, error: Exception, message: str) -> None:
    fake.error = error
    result = invoke("status")
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())


def test_incidents_lists_the_namespace(fake: FakeObjects) -> None:
    result = invoke("incidents")
    assert result.exit_code == 0, result.output
    assert "resnet-p99-20261122115000" in result.output
    assert "LoadSurge" in result.output
    assert "10m ago" in result.output


def test_incidents_of_one_deployment_use_its_label(fake: FakeObjects) -> None:
    result = invoke("incidents", "-d", "resnet")
    assert result.exit_code == 0
    assert "resnet-p99-20261122115000" in result.output
    assert "other-p99" not in result.output
    assert fake.calls[-1][-1] == "vigil.dev/modeldeployment=resnet"


def test_no_incidents_says_so(fake: FakeObjects) -> None:
    result = invoke("incidents", "-d", "bert", "-n", "nlp")
    assert result.exit_code == 0
    assert "No incidents for bert in namespace nlp." in result.output


def test_incident_by_name_shows_it_in_full(fake: FakeObjects) -> None:
    result = invoke("incidents", "resnet-p99-20261122115000")
    assert result.exit_code == 0, result.output
    assert "Diagnosis: LoadSurge" in result.output
    assert "30 req/s is 3x the baseline" in result.output
    assert "Timeline (1 entry)" in result.output
    assert fake.calls == [("get", "vigil.dev", "v1alpha1", "ml", "incidents", "resnet-p99-20261122115000")]


def test_missing_incident_exits_1(fake: FakeObjects) -> None:
    result = invoke("incidents", "nope")
    assert result.exit_code == 1
    assert "incident nope not found in namespace ml" in result.output


def test_incident_name_across_all_namespaces_is_refused(fake: FakeObjects) -> None:
    assert invoke("incidents", "x", "-A").exit_code == 2


def test_default_namespace_is_the_kubeconfig_contexts(tmp_path: pathlib.Path) -> None:
    def kubeconfig(namespace: str | None) -> str:
        context: dict[str, str] = {"cluster": "c", "user": "u"}
        if namespace:
            context["namespace"] = namespace
        path = tmp_path / f"config-{namespace}"
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                    "contexts": [{"name": "ctx", "context": context}],
                    "current-context": "ctx",
                }
            )
        )
        return str(path)

    assert cli.default_namespace(kubeconfig("team-a")) == "team-a"
    assert cli.default_namespace(kubeconfig(None)) == "default"


def test_a_kubeconfig_that_does_not_exist_is_a_read_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(cli.ReadError, match="no usable kubeconfig"):
        cli.custom_objects(str(tmp_path / "missing"))
