"""Wire formats of the control API and of the profile file (camelCase, validated by pydantic).

The same models serve ``POST /control/load``, ``POST /control/faults`` and the YAML profile given
at start-up, so a profile entry and an API call mean exactly the same thing.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pydantic
import yaml
from pydantic.alias_generators import to_camel

from vigil.sim import behaviour

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
MAX_CSV_CHARS = 64 * 1024 * 1024


class _Wire(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class LoadRequest(_Wire):
    """Traffic for one ModelDeployment: a Poisson ``rate`` or a ``csv`` trace (its text)."""

    namespace: str = pydantic.Field(pattern=NAME_PATTERN, max_length=253)
    name: str = pydantic.Field(pattern=NAME_PATTERN, max_length=253)
    rate: float | None = pydantic.Field(default=None, ge=0, le=1_000_000, allow_inf_nan=False)
    csv: str | None = pydantic.Field(default=None, max_length=MAX_CSV_CHARS)
    column: str = pydantic.Field(default="timestamp", min_length=1, description="Time column (any case).")
    size_column: str | None = pydantic.Field(
        default=None, min_length=1, description="Per-request size column (e.g. tokens) scaling service time."
    )
    speedup: float = pydantic.Field(default=1.0, gt=0, allow_inf_nan=False)
    loop: bool = False
    duration: float | None = pydantic.Field(
        default=None, gt=0, allow_inf_nan=False, description="Stop after this many seconds."
    )
    batch_size: int = pydantic.Field(default=1, ge=1, le=4096, description="Inferences per request.")

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> LoadRequest:
        if (self.rate is None) == (self.csv is None):
            raise ValueError("give exactly one of rate and csv")
        if self.size_column is not None and self.csv is None:
            raise ValueError("sizeColumn needs a csv trace")
        return self


class FaultRequest(behaviour.BehaviourPatch):
    """A behaviour patch for a deployment, or for one model version of it."""

    namespace: str = pydantic.Field(pattern=NAME_PATTERN, max_length=253)
    name: str = pydantic.Field(pattern=NAME_PATTERN, max_length=253)
    version: str | None = pydantic.Field(default=None, min_length=1, max_length=63, coerce_numbers_to_str=True)

    @property
    def key(self) -> behaviour.Key:
        return behaviour.Key(self.namespace, self.name, self.version)

    def patch(self) -> behaviour.BehaviourPatch:
        fields = set(behaviour.BehaviourPatch.model_fields)
        return behaviour.BehaviourPatch(**{k: v for k, v in self.values().items() if k in fields})


class Profile(_Wire):
    """Start-up configuration: default behaviour, behaviour per deployment/version, initial loads."""

    defaults: behaviour.BehaviourPatch | None = None
    behaviours: list[FaultRequest] = pydantic.Field(default_factory=list)
    loads: list[LoadRequest] = pydantic.Field(default_factory=list)

    def book(self) -> behaviour.Book:
        return behaviour.book_from_profile(self.defaults, [(entry.key, entry.patch()) for entry in self.behaviours])


def load_profile(path: pathlib.Path) -> Profile:
    """Read a YAML profile; an empty file is an empty profile."""
    raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    return Profile.model_validate(raw or {})
