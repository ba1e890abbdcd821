"""Shared base for API models: camelCase on the wire, snake_case in Python, rules stated once.

A cross-field rule is a :class:`Rule`: its CEL expression goes into the CRD schema
(``x-kubernetes-validations``, enforced by the API server at admission) and its Python check runs
when the operator parses an object, so an object that reached the operator another way (stored
before the CRD was tightened, kept by validation ratcheting) is caught by the same rule, with the
same message, and reported as ``InvalidSpec`` instead of being acted on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Self

import pydantic
from pydantic.alias_generators import to_camel


@dataclasses.dataclass(frozen=True)
class Rule:
    """One rule of a model: ``cel`` for the API server, ``check`` (on the parsed model) for vigil."""

    cel: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None

    def entry(self) -> dict[str, str]:
        return cel(self.cel, self.message, self.field_path)


def _schema_rules(schema: dict[str, Any], cls: type[Any]) -> None:
    """``json_schema_extra`` of every model: its class's :class:`Rule` list as CEL."""
    rules: tuple[Rule, ...] = getattr(cls, "rules", ())
    if rules:
        schema.setdefault("x-kubernetes-validations", []).extend(rule.entry() for rule in rules)


class KubeModel(pydantic.BaseModel):
    """Base of every API model: camelCase aliases, tolerant of fields added by newer versions."""

    model_config = pydantic.ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        validate_default=False,
        json_schema_extra=_schema_rules,
    )

    rules: ClassVar[tuple[Rule, ...]] = ()

    @pydantic.model_validator(mode="after")
    def _rules_hold(self) -> Self:
        broken = [rule.message for rule in type(self).rules if not rule.check(self)]
        if broken:
            raise ValueError("; ".join(broken))
        return self

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
