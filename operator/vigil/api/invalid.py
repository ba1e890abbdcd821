"""Why a spec is refused, in messages that name the field: for the ``InvalidSpec`` condition.

Two sources. The models reject what the CRD schema rejects too (the same rules, see
:mod:`vigil.api._base`); an object reaches the operator with such a field only when it was stored
before the schema was tightened (the API server's validation ratcheting keeps unchanged fields).
And some rules depend on how the operator runs, which no schema can know: :func:`beyond_schema`.
"""

from __future__ import annotations

import pydantic

from vigil.api import modeldeployment as mdapi
from vigil.api import slo as sloapi


def field_path(loc: tuple[int | str, ...]) -> str:
    """``('spec', 'slos', 0, 'period')`` -> ``spec.slos[0].period`` (as the API server writes paths)."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def describe(error: pydantic.ValidationError) -> list[str]:
    """One ``<field path>: <problem>`` per failed rule of a parsed object."""
    problems = []
    for issue in error.errors(include_url=False):
        message = issue["msg"].removeprefix("Value error, ")
        path = field_path(tuple(issue["loc"]))
        problems.append(f"{path}: {message}" if path else message)
    return problems


def beyond_schema(md: mdapi.ModelDeployment, *, min_window_seconds: float) -> list[str]:
    """Problems only the running operator can see: each names the field.

    ``min_window_seconds`` is the operator's ``--min-window``, the shortest window it measures (a
    few scrape intervals). An SLO period shorter than that has no window that fits in it.
    """
    problems = []
    for index, spec in enumerate(md.spec.slos):
        period = sloapi.duration_seconds(spec.period)
        if period < min_window_seconds:
            problems.append(
                f"spec.slos[{index}].period: {spec.period} is shorter than the shortest window this operator "
                f"measures ({sloapi.format_duration(min_window_seconds)}, its --min-window); "
                "no alerting window fits in the period"
            )
    return problems
