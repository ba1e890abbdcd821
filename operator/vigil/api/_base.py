"""Shared base for API models: camelCase on the wire, snake_case in Python."""

from __future__ import annotations

from typing import Any

import pydantic
from pydantic.alias_generators import to_camel


class KubeModel(pydantic.BaseModel):
    """Base of every API model: camelCase aliases, tolerant of fields added by newer versions."""

    model_config = pydantic.ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        validate_default=False,
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-compatible dict as the API server stores it (camelCase, no unset optionals)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def cel(rule: str, message: str, field_path: str | None = None, reason: str | None = None) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry; messages should name the field they are about."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    if reason:
        entry["reason"] = reason
    return entry


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL rules for a model or field."""
    return {"x-kubernetes-validations": list(rules)}
