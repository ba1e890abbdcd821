"""The CRDs in crds/ are generated from the pydantic models and are structural."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from vigil.api import crd

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("directory", ["crds", "charts/vigil/crds"])
@pytest.mark.parametrize("name", sorted(crd.all_crds()))
def test_crds_directories_are_up_to_date_with_the_models(directory: str, name: str) -> None:
    path = ROOT / directory / name
    assert path.exists(), f"{path} is missing: run `vigil crds`"
    assert path.read_text() == crd.render_yaml(crd.all_crds()[name]), f"{path} is stale: run `vigil crds`"


@pytest.mark.parametrize("directory", ["crds", "charts/vigil/crds"])
def test_crds_directories_hold_only_the_generated_crds(directory: str) -> None:
    assert sorted(p.name for p in (ROOT / directory).glob("*.yaml")) == sorted(crd.all_crds())


def test_only_vigils_crds_are_generated() -> None:
    groups = {c["spec"]["group"] for c in crd.all_crds().values()}
    assert groups == {"vigil.dev"}  # kopf's peering CRDs retired with kopf peering (a Lease elects the leader)


def test_write_all_removes_retired_generated_files_and_keeps_hand_written_ones(tmp_path: pathlib.Path) -> None:
    retired = tmp_path / "kopf-peering.yaml"
    retired.write_text(crd.HEADER + "kind: CustomResourceDefinition\n")
    own = tmp_path / "extra.yaml"
    own.write_text("kind: ConfigMap\n")
    written = crd.write_all(tmp_path)
    assert sorted(p.name for p in written) == sorted(crd.all_crds())
    assert not retired.exists()
    assert own.read_text() == "kind: ConfigMap\n"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.get("properties", {}).items():
            found += _walk(value, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            found += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            found += _walk(node["additionalProperties"], f"{path}{{}}")
    return found


@pytest.mark.parametrize("name", sorted(crd.all_crds()))
def test_every_schema_node_is_structural(name: str) -> None:
    schema = crd.all_crds()[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        for key in ("$ref", "anyOf", "allOf"):
            assert key not in node, path
        assert "title" not in node, path
        assert node.get("type") or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"
        assert "default" not in node or node["default"] is not None, path
        assert not ("properties" in node and node.get("additionalProperties") is False), path


def test_modeldeployment_has_status_and_scale_subresources_and_columns() -> None:
    version = crd.all_crds()["modeldeployments.yaml"]["spec"]["versions"][0]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    assert "status" in version["subresources"]
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names[:5] == ["Model", "Version", "Desired", "Ready", "Available"]


def test_schema_carries_cel_rules_with_messages_naming_fields() -> None:
    spec = crd.all_crds()["modeldeployments.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = spec["properties"]["spec"]["x-kubernetes-validations"]
    assert all(rule["message"].startswith("spec.") for rule in rules)


def test_exclusive_bounds_are_openapi_v3_booleans() -> None:
    slo = crd.all_crds()["modeldeployments.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    objective = slo["properties"]["spec"]["properties"]["slos"]["items"]["properties"]["objective"]
    assert objective["minimum"] == 0
    assert objective["exclusiveMinimum"] is True
    assert objective["maximum"] == 100
    assert objective["exclusiveMaximum"] is True


def test_generated_yaml_parses() -> None:
    for text in (crd.render_yaml(c) for c in crd.all_crds().values()):
        assert yaml.safe_load(text)["kind"] == "CustomResourceDefinition"


def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = crd.all_crds()[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


VIGIL_CRDS = ["modeldeployments.yaml", "runbooks.yaml", "incidents.yaml"]


@pytest.mark.parametrize("name", VIGIL_CRDS)
def test_every_field_has_a_description_for_kubectl_explain(name: str) -> None:
    schema = _schema(name)
    missing = [
        path
        for path, node in _walk(schema["properties"]["spec"], ".spec")
        + _walk(schema["properties"].get("status"), ".status")
        if path and not node.get("description") and not (path.endswith(("[]", "{}")) and node.get("type") != "object")
    ]
    assert missing == []


@pytest.mark.parametrize("name", VIGIL_CRDS)
def test_every_spec_string_list_and_map_is_bounded_so_cel_cost_is_estimable(name: str) -> None:
    unbounded = []
    for path, node in _walk(_schema(name)["properties"]["spec"], ".spec"):
        kind = node.get("type")
        if kind == "string" and "maxLength" not in node and "enum" not in node:
            unbounded.append(path)
        if kind == "array" and "maxItems" not in node:
            unbounded.append(path)
        if kind == "object" and "additionalProperties" in node and "maxProperties" not in node:
            unbounded.append(path)
    assert unbounded == []


@pytest.mark.parametrize("name", VIGIL_CRDS)
def test_status_carries_no_cel_rules(name: str) -> None:
    status = _schema(name)["properties"].get("status")
    assert all("x-kubernetes-validations" not in node for _, node in _walk(status))


@pytest.mark.parametrize("name", ["modeldeployments.yaml", "runbooks.yaml"])
def test_every_cel_rule_has_a_message(name: str) -> None:
    schema = _schema(name)
    rules = [r for _, node in _walk(schema) for r in node.get("x-kubernetes-validations", [])]
    rules += schema.get("x-kubernetes-validations", [])
    assert rules
    assert all(r["message"] and r["rule"] for r in rules)


def test_keyed_lists_are_list_type_maps_on_required_keys() -> None:
    spec = _schema("modeldeployments.yaml")["properties"]["spec"]
    for node in (spec["properties"]["slos"], spec["properties"]["triton"]["properties"]["env"]):
        assert node["x-kubernetes-list-type"] == "map"
        assert node["x-kubernetes-list-map-keys"] == ["name"]
        assert "name" in node["items"]["required"]
    steps = _schema("runbooks.yaml")["properties"]["spec"]["properties"]["steps"]
    assert steps["x-kubernetes-list-type"] == "map"


def test_the_name_rules_live_at_the_root_where_cel_sees_metadata_name() -> None:
    rules = _schema("modeldeployments.yaml")["x-kubernetes-validations"]
    assert sum("self.metadata.name" in r["rule"] for r in rules) == 3
    assert all("metadata.name" in r["message"] or "spec.traffic.fallback" in r["message"] for r in rules)
