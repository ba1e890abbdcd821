"""Value formats shared by the API models, each checked the same way by the API server and by vigil.

Every format is an ``Annotated[str, ...]``: an OpenAPI ``pattern`` and ``maxLength`` that the API
server enforces, a CEL rule where a pattern cannot say it (a duration longer than 0s, a quantity by
its value), and a Python check that says the same when the operator parses an object. The
``maxLength`` is also what keeps CEL rules cheap: the API server estimates a rule's cost from the
longest string it may see, and refuses a CRD whose rules could exceed its budget.

The API server prefixes a failed rule's message with the path of the value (``spec.bakeTime:
Invalid value: ...``), so the messages here say what is wrong and the path says where.

Durations are Prometheus-style (``90s``, ``1h30m``, ``30d``, ``1w``): CEL's own ``duration()``
knows no days or weeks, so :func:`cel_milliseconds` sums the parts with ``findAll`` and the
Kubernetes list library's ``sum()``, and rules can compare two durations at admission.
"""

from __future__ import annotations

import decimal
import functools
import re
from typing import Annotated, Any

import pydantic
from kubernetes.utils import quantity as kube_quantity
from pydantic.config import JsonDict

from vigil.api._base import cel, validations

# -- durations -------------------------------------------------------------------------------------

DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d|w))+$"
"""What :func:`duration_seconds` reads (also the operator's own flags, such as --min-window)."""
SPEC_DURATION_PATTERN = r"^([0-9]{1,6}(ms|s|m|h|d|w)){1,4}$"
"""Durations in a spec: at most four parts of at most six digits, so CEL sums cannot overflow."""
DURATION_MAX_LENGTH = 32
_DURATION = re.compile(DURATION_PATTERN)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_UNIT_MILLISECONDS_CEL = (
    "(p.endsWith('ms') ? 1 : p.endsWith('s') ? 1000 : p.endsWith('m') ? 60000 : "
    "p.endsWith('h') ? 3600000 : p.endsWith('d') ? 86400000 : 604800000)"
)


@functools.lru_cache(maxsize=1024)  # the same few spec durations, parsed for every SLO each cycle
def duration_seconds(text: str) -> float:
    """Seconds in a Prometheus-style duration such as ``1h30m`` or ``250ms``."""
    if not _DURATION.match(text):
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 1h, 30d")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h|d|w)", text))


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for a whole number of seconds (``90`` -> ``1m30s``)."""
    remaining = max(1, round(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if remaining >= size:
            parts.append(f"{remaining // size}{unit}")
            remaining %= size
    return "".join(parts)


def cel_milliseconds(expr: str) -> str:
    """A CEL expression for the milliseconds in the duration string ``expr`` (a spec duration)."""
    return f"{expr}.findAll('[0-9]+(ms|s|m|h|d|w)').map(p, int(p.find('[0-9]+')) * {_UNIT_MILLISECONDS_CEL}).sum()"


def _positive_duration(text: str) -> str:
    if duration_seconds(text) <= 0:
        raise ValueError("must be a duration longer than 0s")
    return text


Duration = Annotated[
    str,
    pydantic.Field(
        pattern=SPEC_DURATION_PATTERN,
        max_length=DURATION_MAX_LENGTH,
        json_schema_extra=validations(cel("self.matches('[1-9]')", "must be a duration longer than 0s")),
    ),
    pydantic.AfterValidator(_positive_duration),
]
"""A duration longer than 0s, e.g. ``30s``, ``5m``, ``1h30m``, ``30d``, ``1w``."""

# -- quantities ------------------------------------------------------------------------------------

QUANTITY_PATTERN = r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][-+]?[0-9]+))?$"
"""An unsigned Kubernetes quantity (resource requests are never negative)."""
QUANTITY_MAX_LENGTH = 32


def _quantity_rule(maximum: str) -> dict[str, str]:
    return cel(
        f"isQuantity(self) && quantity(self).isGreaterThan(quantity('0')) "
        f"&& quantity(self).compareTo(quantity('{maximum}')) <= 0",
        f"must be a Kubernetes quantity above 0 and at most {maximum}",
    )


def _quantity_check(maximum: str) -> pydantic.AfterValidator:
    limit = kube_quantity.parse_quantity(maximum)  # type: ignore[no-untyped-call]

    def check(text: str) -> str:
        try:
            value = kube_quantity.parse_quantity(text)  # type: ignore[no-untyped-call]
        except (ValueError, decimal.InvalidOperation) as error:
            raise ValueError(f"{text!r} is not a Kubernetes quantity") from error
        if not 0 < value <= limit:
            raise ValueError(f"must be a Kubernetes quantity above 0 and at most {maximum}")
        return text

    return pydantic.AfterValidator(check)


CPU_MAX = "1024"
MEMORY_MAX = "64Ti"
Cpu = Annotated[
    str,
    pydantic.Field(
        pattern=QUANTITY_PATTERN, max_length=QUANTITY_MAX_LENGTH, json_schema_extra=validations(_quantity_rule(CPU_MAX))
    ),
    _quantity_check(CPU_MAX),
]
Memory = Annotated[
    str,
    pydantic.Field(
        pattern=QUANTITY_PATTERN,
        max_length=QUANTITY_MAX_LENGTH,
        json_schema_extra=validations(_quantity_rule(MEMORY_MAX)),
    ),
    _quantity_check(MEMORY_MAX),
]

# -- names -----------------------------------------------------------------------------------------

DNS1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
"""Service names: a letter first (so ``<name>-<revision hash>`` is one as well)."""
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ShortName = Annotated[str, pydantic.Field(min_length=1, max_length=40, pattern=DNS1123_LABEL)]
"""A name within an object (an SLO, a runbook step): a DNS label of at most 40 characters."""
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
"""A label key (a qualified name): an optional DNS subdomain prefix and ``/``, then a name of at
most 63 characters; the prefix is at most 253 (see :func:`is_label_key`)."""
LABEL_KEY_MAX_LENGTH = 253 + 1 + 63
_LABEL_KEY = re.compile(LABEL_KEY)
_LABEL_VALUE = re.compile(LABEL_VALUE)


def is_label_key(key: str) -> bool:
    prefix, _, _name = key.rpartition("/")
    return bool(_LABEL_KEY.match(key)) and len(prefix) <= 253


def _label_key(key: str) -> str:
    if not is_label_key(key):
        raise ValueError(f"{key!r} is not a label key ([prefix/]name, name at most 63 characters)")
    return key


def _label_value(value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ValueError(f"{value!r} is not a label value (at most 63 alphanumerics, '-', '_' or '.')")
    return value


LabelKey = Annotated[
    str,
    pydantic.Field(
        max_length=LABEL_KEY_MAX_LENGTH,
        pattern=LABEL_KEY,
        json_schema_extra=validations(
            cel(
                "self.indexOf('/') <= 253",
                "the prefix of a label key must be at most 253 characters",
            )
        ),
    ),
    pydantic.AfterValidator(_label_key),
]
LabelValue = Annotated[str, pydantic.Field(max_length=63, pattern=LABEL_VALUE), pydantic.AfterValidator(_label_value)]
LABEL_KEY_CEL = f"size(k) <= {LABEL_KEY_MAX_LENGTH} && k.indexOf('/') <= 253 && k.matches(r'{LABEL_KEY}')"
"""CEL for "map key ``k`` is a label key"; map keys have no schema of their own to carry a pattern."""

# -- images ----------------------------------------------------------------------------------------

_IMAGE_DOMAIN = r"[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*(:[0-9]+)?/"
_IMAGE_COMPONENT = r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = (
    rf"^({_IMAGE_DOMAIN})?{_IMAGE_COMPONENT}(/{_IMAGE_COMPONENT})*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
"""An OCI image reference: ``[registry[:port]/]path[:tag][@digest]``, no spaces, lower-case path."""
IMAGE_MAX_LENGTH = 512

# -- lists -----------------------------------------------------------------------------------------

LIST_MAP: JsonDict = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
LIST_SET: JsonDict = {"x-kubernetes-list-type": "set"}


def unique_names(items: list[Any]) -> list[Any]:
    """A list keyed by ``name`` (a list-type map on the server) must not repeat a name."""
    names = [item.name for item in items]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ValueError(f"[{index}] repeats the name {name!r} (names must be unique)")
    return items


def unique(items: list[Any]) -> list[Any]:
    """A list-type set must not repeat an item."""
    for index, item in enumerate(items):
        if item in items[:index]:
            raise ValueError(f"[{index}] repeats {item!r} (items must be unique)")
    return items
