"""How a model version behaves: capacity and latency, plus the faults injected at run time.

Behaviour is layered, most specific last, field by field:

1. built-in defaults (a healthy model on an 80 GB GPU),
2. the profile file's ``defaults``, then its entries for (namespace, deployment), then for
   (namespace, deployment, version),
3. run-time faults for (namespace, deployment), then for (namespace, deployment, version).

Faults are keyed by model version because a bad release is a version: after a rollback to the
previous revision the fault must stay with the version that has it, not with the deployment.
Setting a fault merges into the existing one for the same key (a JSON ``null`` removes a field);
clearing removes it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import pydantic
from pydantic.alias_generators import to_camel

GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class Behaviour:
    """Resolved behaviour of one model version on one pod."""

    capacity: float = 100.0
    """Requests per second one replica completes when busy (before the latency multiplier)."""
    base_latency_ms: float = 20.0
    """Compute time of one request on an idle replica; with ``capacity`` it sets the concurrency."""
    concurrency: int | None = None
    """Requests one replica executes at once (model instances, batches in flight); the rest queue.
    Default: ``capacity x base latency`` rounded, at least 1."""
    service_cv: float = 1.0
    """Coefficient of variation of service times: 1 is exponential (M/M/c), 0 deterministic."""
    latency_multiplier: float = 1.0
    """Slows compute: latency times this, capacity divided by it (a slower model is GPU-bound)."""
    error_ratio: float = 0.0
    """Fraction of executed requests that fail with reason BACKEND."""
    gpu_memory_utilization: float = 0.35
    """Used fraction of GPU memory (model weights, workspace); a fault drives it near 1."""
    crash: bool = False
    """The Triton process is down: health, metrics and inference do not answer."""
    max_queue: int = 0
    """Dynamic batcher max_queue_size: beyond it requests are REJECTED; 0 means unbounded."""
    load_seconds: float = 12.0
    """Reported as nv_model_load_duration_secs."""
    gpu_memory_total_bytes: int = 80 * GIB
    gpu_power_limit_watts: float = 400.0
    histogram_buckets_ms: tuple[float, ...] = (100.0, 500.0, 2000.0, 5000.0)
    """Bounds of nv_inference_first_response_histogram_ms (+Inf is implied); fixed per pod at start."""
    # Quiet faults: a model from the repository answers 200 with wrong numbers (see vigil.sim.inference).
    weight_noise: float = 0.0
    """Perturbed weights: Gaussian noise of this many standard deviations (of each weight tensor) added."""
    input_scale: float = 1.0
    input_offset: float = 0.0
    """Wrong input normalisation: the model sees ``input * input_scale + input_offset``."""
    precision: str = "fp32"
    """``fp16``: weights and activations in half precision, answers cast back (FP16 conversion drift)."""

    @property
    def corruption(self) -> Corruption:
        return Corruption(self.weight_noise, self.input_scale, self.input_offset, self.precision)

    @property
    def effective_capacity(self) -> float:
        return self.capacity / self.latency_multiplier

    @property
    def service_seconds(self) -> float:
        return self.base_latency_ms * self.latency_multiplier / 1000.0

    @property
    def slots(self) -> int:
        """Execution slots of one replica (the ``c`` of its M/M/c queue)."""
        if self.concurrency is not None:
            return self.concurrency
        return max(1, round(self.capacity * self.base_latency_ms / 1000.0))

    @property
    def mean_service_seconds(self) -> float:
        """Mean time a request holds a slot: ``slots / effective_capacity``, so a busy replica
        completes ``effective_capacity`` requests per second. Equals the base latency (times the
        multiplier) whenever the concurrency is the default and ``capacity x latency`` is a whole number."""
        return self.slots / self.effective_capacity


@dataclasses.dataclass(frozen=True)
class Corruption:
    """The quiet faults of a model version; the default corrupts nothing."""

    weight_noise: float = 0.0
    input_scale: float = 1.0
    input_offset: float = 0.0
    precision: str = "fp32"

    @property
    def any(self) -> bool:
        return self != Corruption()


class BehaviourPatch(pydantic.BaseModel):
    """Any subset of behaviour fields, camelCase on the wire; unset fields leave lower layers alone."""

    model_config = pydantic.ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    capacity: float | None = pydantic.Field(default=None, gt=0, allow_inf_nan=False)
    base_latency_ms: float | None = pydantic.Field(default=None, ge=0, allow_inf_nan=False)
    concurrency: int | None = pydantic.Field(default=None, ge=1, le=4096)
    service_cv: float | None = pydantic.Field(default=None, ge=0, le=10, allow_inf_nan=False)
    latency_multiplier: float | None = pydantic.Field(default=None, gt=0, allow_inf_nan=False)
    error_ratio: float | None = pydantic.Field(default=None, ge=0, le=1)
    gpu_memory_utilization: float | None = pydantic.Field(default=None, ge=0, le=1)
    crash: bool | None = None
    max_queue: int | None = pydantic.Field(default=None, ge=0)
    load_seconds: float | None = pydantic.Field(default=None, ge=0, allow_inf_nan=False)
    gpu_memory_total_bytes: int | None = pydantic.Field(default=None, gt=0)
    gpu_power_limit_watts: float | None = pydantic.Field(default=None, gt=0, allow_inf_nan=False)
    histogram_buckets_ms: list[float] | None = pydantic.Field(default=None, min_length=1, max_length=32)
    weight_noise: float | None = pydantic.Field(default=None, ge=0, le=100, allow_inf_nan=False)
    input_scale: float | None = pydantic.Field(default=None, allow_inf_nan=False)
    input_offset: float | None = pydantic.Field(default=None, allow_inf_nan=False)
    precision: Literal["fp32", "fp16"] | None = None

    @pydantic.field_validator("histogram_buckets_ms")
    @classmethod
    def _increasing(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return None
        if any(not math.isfinite(v) or v <= 0 for v in value):
            raise ValueError("bucket bounds must be finite and > 0 (+Inf is implied)")
        if any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError("bucket bounds must increase")
        return value

    def values(self) -> dict[str, Any]:
        """The fields this patch sets (explicit nulls included, so a merge can remove them)."""
        return {name: getattr(self, name) for name in self.model_fields_set}

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def apply(base: Behaviour, patches: Iterable[BehaviourPatch]) -> Behaviour:
    """``base`` with each patch's non-null fields laid over it, in order."""
    changes: dict[str, Any] = {}
    for patch in patches:
        for name, value in patch.values().items():
            if value is None:
                continue
            changes[name] = tuple(value) if name == "histogram_buckets_ms" else value
    return dataclasses.replace(base, **changes)


def merge(old: BehaviourPatch | None, new: BehaviourPatch) -> BehaviourPatch:
    """``new`` over ``old``: fields set in ``new`` win; an explicit null removes the field."""
    values = dict(old.values()) if old else {}
    values.update(new.values())
    return BehaviourPatch(**{name: value for name, value in values.items() if value is not None})


@dataclasses.dataclass(frozen=True)
class Key:
    """(namespace, deployment, version); version None covers every version of the deployment."""

    namespace: str
    name: str
    version: str | None = None

    def sort_key(self) -> tuple[str, str, str]:
        """Deployment-wide entries sort before version entries."""
        return (self.namespace, self.name, "" if self.version is None else "@" + self.version)

    def label(self) -> str:
        base = f"{self.namespace}/{self.name}"
        return base if self.version is None else f"{base}@{self.version}"


@dataclasses.dataclass
class Book:
    """Profile and fault layers; answers "how does this version behave now?"."""

    base: Behaviour = dataclasses.field(default_factory=Behaviour)
    profile_defaults: BehaviourPatch = dataclasses.field(default_factory=BehaviourPatch)
    profile: dict[Key, BehaviourPatch] = dataclasses.field(default_factory=dict)
    faults: dict[Key, BehaviourPatch] = dataclasses.field(default_factory=dict)
    # Resolved behaviours, asked for by every pod on every tick; emptied whenever a layer changes.
    _resolved: dict[tuple[str, str, str], Behaviour] = dataclasses.field(default_factory=dict, repr=False)
    generation: int = dataclasses.field(default=0, compare=False)
    """Counts the changes of the fault layer: the simulator re-reads its pods' behaviour only then."""

    def layers(self, namespace: str, name: str, version: str) -> Iterator[BehaviourPatch]:
        yield self.profile_defaults
        for table in (self.profile, self.faults):
            for key in (Key(namespace, name), Key(namespace, name, version)):
                patch = table.get(key)
                if patch is not None:
                    yield patch

    def behaviour(self, namespace: str, name: str, version: str) -> Behaviour:
        key = (namespace, name, version)
        resolved = self._resolved.get(key)
        if resolved is None:
            resolved = self._resolved[key] = apply(self.base, self.layers(namespace, name, version))
        return resolved

    def set_fault(self, key: Key, patch: BehaviourPatch) -> BehaviourPatch:
        self._resolved.clear()
        self.generation += 1
        merged = merge(self.faults.get(key), patch)
        if merged.values():
            self.faults[key] = merged
        else:
            self.faults.pop(key, None)
        return merged

    def clear_faults(self, namespace: str, name: str, version: str | None = None) -> list[Key]:
        """Remove the faults of a deployment: one version's, or (version None) all of them."""
        doomed = [
            key
            for key in self.faults
            if key.namespace == namespace and key.name == name and (version is None or key.version == version)
        ]
        for key in doomed:
            del self.faults[key]
        self._resolved.clear()
        self.generation += 1
        return doomed

    def fault_list(self) -> list[dict[str, Any]]:
        return [_keyed(key, patch) for key, patch in sorted(self.faults.items(), key=lambda item: item[0].sort_key())]

    def profile_list(self) -> list[dict[str, Any]]:
        return [_keyed(key, patch) for key, patch in sorted(self.profile.items(), key=lambda item: item[0].sort_key())]


def _keyed(key: Key, patch: BehaviourPatch) -> dict[str, Any]:
    entry: dict[str, Any] = {"namespace": key.namespace, "name": key.name}
    if key.version is not None:
        entry["version"] = key.version
    entry.update(patch.wire())
    return entry


def book_from_profile(
    defaults: BehaviourPatch | None, entries: Sequence[tuple[Key, BehaviourPatch]], base: Behaviour | None = None
) -> Book:
    book = Book(base=base or Behaviour(), profile_defaults=defaults or BehaviourPatch())
    for key, patch in entries:
        book.profile[key] = merge(book.profile.get(key), patch)
    return book
