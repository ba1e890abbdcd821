"""metav1.Condition and the pure helpers that keep ``lastTransitionTime`` honest.

A condition's transition time moves only when its status flips, as the Kubernetes API conventions
ask; reason/message updates alone keep the old time. ``set_condition`` returns whether anything
changed in the status, so callers emit an Event exactly on a transition.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum

import pydantic

from vigil.api._base import KubeModel


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(KubeModel):
    """A metav1.Condition."""

    type: str = pydantic.Field(description="Type of condition in CamelCase, e.g. Available.")
    status: ConditionStatus = pydantic.Field(description="True, False or Unknown.")
    reason: str = pydantic.Field(description="Machine-readable CamelCase reason for the last transition.")
    message: str = pydantic.Field(default="", description="Human-readable details about the transition.")
    last_transition_time: str = pydantic.Field(description="When the status last changed (RFC 3339).")
    observed_generation: int = pydantic.Field(
        default=0, description="The .metadata.generation this condition was set for."
    )


@dataclasses.dataclass(frozen=True)
class Event:
    """A Kubernetes Event that a decision posts (the reconcile's and the runbook machine's alike)."""

    type: str  # Normal | Warning
    reason: str
    message: str


def rfc3339(moment: datetime.datetime) -> str:
    """A UTC timestamp as Kubernetes writes it (second precision, ``Z``)."""
    return moment.astimezone(datetime.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime.datetime:
    """Parse an RFC 3339 timestamp written by Kubernetes or by :func:`rfc3339`."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def find(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: list[Condition], type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.status is ConditionStatus.TRUE


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    now: datetime.datetime,
) -> tuple[list[Condition], bool]:
    """Return the new list and whether the *status* of ``type_`` flipped (a transition)."""
    old = find(conditions, type_)
    flipped = old is None or old.status is not status
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=rfc3339(now) if flipped or old is None else old.last_transition_time,
        observed_generation=generation,
    )
    result = [c for c in conditions if c.type != type_] + [new]
    result.sort(key=lambda c: c.type)
    return result, flipped
