"""CustomResourceDefinitions generated from the pydantic models.

pydantic emits JSON Schema 2020-12; the API server wants a *structural* OpenAPI v3 schema. The
rewrite (after kube-rs's StructuralSchemaRewriter) inlines ``$ref``, turns ``Optional[X]`` into
``X``, gives every node exactly one ``type``, maps 2020-12 numeric exclusives to OpenAPI 3.0 and
keeps the Kubernetes extensions (CEL rules, list types) that models declare through
``json_schema_extra``. Under ``status`` the CEL rules are left out: status is written by vigil
alone, from specs that already passed them, and rules there (a revision history embeds whole pod
shapes) would cost the API server's CEL budget for nothing. ``vigil crds`` writes the result to ``crds/``; a test fails when it is stale.
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import pydantic
import yaml

from vigil import api
from vigil.api import incident, modeldeployment, runbook

Schema = dict[str, Any]

_DROP = {"title", "$schema", "examples", "discriminator"}


def _resolve(node: Schema, defs: dict[str, Schema]) -> Schema:
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        target.update(siblings)
        return _resolve(target, defs)
    if "allOf" in node and len(node["allOf"]) == 1:
        merged = {**_resolve(node["allOf"][0], defs), **{k: v for k, v in node.items() if k != "allOf"}}
        return _resolve(merged, defs)
    any_of = node.get("anyOf")
    if any_of is not None:
        non_null = [branch for branch in any_of if branch.get("type") != "null"]
        if len(non_null) == 1:
            merged = {**_resolve(non_null[0], defs), **{k: v for k, v in node.items() if k != "anyOf"}}
            if merged.get("default", 0) is None:
                del merged["default"]
            return _resolve(merged, defs)
    return node


def structural(node: Schema, defs: dict[str, Schema], *, in_status: bool = False) -> Schema:
    """Rewrite one pydantic JSON-schema node (and its children) into a structural schema node."""
    node = _resolve(node, defs)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROP or key == "$defs":
            continue
        if key == "default" and (value is None or in_status):
            continue
        if key == "x-kubernetes-validations" and in_status:
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
            continue
        if key == "properties":
            out["properties"] = {name: structural(child, defs, in_status=in_status) for name, child in value.items()}
            continue
        if key == "items":
            out["items"] = structural(value, defs, in_status=in_status)
            continue
        if key == "additionalProperties":
            if isinstance(value, dict):
                out["additionalProperties"] = structural(value, defs, in_status=in_status)
            continue  # ``false`` is pruning's job on the server
        out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "properties" in out or ("additionalProperties" in out and "type" not in out):
        out["type"] = "object"
    if "type" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["type"] = "object"
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def resource_schema(model: type[pydantic.BaseModel]) -> Schema:
    """The openAPIV3Schema of a resource model with ``spec`` and optional ``status``."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    props = raw["properties"]
    schema: Schema = {
        "type": "object",
        "description": raw.get("description", ""),
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": structural(props["spec"], defs),
        },
        "required": ["spec"],
    }
    if "status" in props:
        schema["properties"]["status"] = structural(props["status"], defs, in_status=True)
    rules = raw.get("x-kubernetes-validations")
    if rules:
        schema["x-kubernetes-validations"] = rules
    return schema


def _column(name: str, path: str, type_: str = "string", priority: int = 0, description: str = "") -> Schema:
    column: Schema = {"name": name, "type": type_, "jsonPath": path}
    if priority:
        column["priority"] = priority
    if description:
        column["description"] = description
    return column


def _crd(
    kind: str,
    plural: str,
    singular: str,
    short_names: list[str],
    model: type[pydantic.BaseModel],
    columns: list[Schema],
    subresources: Schema,
) -> Schema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{api.GROUP}"},
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": singular,
                "shortNames": short_names,
                "categories": ["vigil"],
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": resource_schema(model)},
                    "subresources": subresources,
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


def all_crds() -> dict[str, Schema]:
    """Every CRD, keyed by the file name it is written to."""
    age = _column("Age", ".metadata.creationTimestamp", "date")
    return {
        "modeldeployments.yaml": _crd(
            modeldeployment.KIND,
            modeldeployment.PLURAL,
            modeldeployment.SINGULAR,
            modeldeployment.SHORT_NAMES,
            modeldeployment.ModelDeployment,
            [
                _column("Model", ".spec.model.name"),
                _column("Version", ".status.modelVersion", description="Model version serving traffic"),
                _column("Desired", ".spec.replicas", "integer"),
                _column("Ready", ".status.readyReplicas", "integer"),
                _column("Available", '.status.conditions[?(@.type=="Available")].status'),
                _column("SLO", '.status.conditions[?(@.type=="SLOMet")].status'),
                _column(
                    "Validated",
                    '.status.conditions[?(@.type=="Validated")].status',
                    description="Whether the spec's revision answered its golden requests within tolerance",
                ),
                _column("Revision", ".status.currentRevision", priority=1),
                age,
            ],
            {
                "status": {},
                "scale": {
                    "specReplicasPath": ".spec.replicas",
                    "statusReplicasPath": ".status.replicas",
                    "labelSelectorPath": ".status.selector",
                },
            },
        ),
        "runbooks.yaml": _crd(
            runbook.KIND,
            runbook.PLURAL,
            runbook.SINGULAR,
            runbook.SHORT_NAMES,
            runbook.Runbook,
            [_column("Mode", ".spec.mode"), _column("Steps", ".spec.steps[*].name"), age],
            {},
        ),
        "incidents.yaml": _crd(
            incident.KIND,
            incident.PLURAL,
            incident.SINGULAR,
            incident.SHORT_NAMES,
            incident.Incident,
            [
                _column("Deployment", ".spec.modelDeployment"),
                _column("SLO", ".spec.slo"),
                _column("Phase", ".status.phase"),
                _column("Cause", ".status.diagnosis.cause"),
                _column("Trigger", ".spec.trigger", priority=1, description="Breach, or Headroom: ahead of one"),
                _column("Opened", ".status.openedAt", "date"),
                age,
            ],
            {"status": {}},
        ),
    }


HEADER = "# Generated by `vigil crds` from the pydantic models in operator/vigil/api. Do not edit.\n"


def render_yaml(crd: Schema) -> str:
    return HEADER + yaml.safe_dump(crd, sort_keys=False, width=120)


def write_all(directory: pathlib.Path) -> list[pathlib.Path]:
    """Write every CRD to ``directory``; a file this command generated earlier that is no longer
    generated (a retired CRD) is removed, files written by hand are left alone."""
    directory.mkdir(parents=True, exist_ok=True)
    crds = all_crds()
    for stale in sorted(directory.glob("*.yaml")):
        if stale.name not in crds and stale.read_text().startswith(HEADER):
            stale.unlink()
    written = []
    for name, crd in crds.items():
        path = directory / name
        path.write_text(render_yaml(crd))
        written.append(path)
    return written
