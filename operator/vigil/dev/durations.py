"""Go-style durations (``500ms``, ``2s``, ``1m30s``) as the sandbox's options take them.

kwok wants milliseconds and Prometheus wants its own duration syntax; the user types one form on
the command line, so we parse it once here and render what each consumer expects.
"""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_MILLIS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def to_millis(text: str) -> int:
    """``"1m30s"`` -> ``90000``; a bare number means seconds. Raises ValueError on anything else."""
    value = text.strip()
    if not value:
        raise ValueError("empty duration")
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return round(float(value) * 1000)
    position = 0
    total = 0.0
    for match in _PART.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * _MILLIS[match.group(2)]
        position = match.end()
    if position != len(value):
        raise ValueError(f"not a duration: {text!r} (use e.g. 500ms, 2s, 1m30s)")
    return round(total)


def prometheus(millis: int) -> str:
    """A Prometheus duration for ``millis``: whole seconds when possible (``5s``), else ``ms``."""
    if millis <= 0:
        raise ValueError("a Prometheus interval must be positive")
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"
