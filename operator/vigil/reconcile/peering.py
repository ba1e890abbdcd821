"""Which replica works: kopf's peering, extended to vigil's own loops.

kopf pauses its watch streams on a replica that sees a live peer with a higher priority (equal
priorities all freeze). vigil's workers, resync and fleet loop are its own tasks, so they ask
the same question of the same peering object: only the active replica reconciles, evaluates
SLOs and acts. Each replica knows its identity because vigil sets ``POD_ID`` before kopf starts.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from vigil.api import conditions as cond

DEFAULT_LIFETIME = 60


def blocking_peer(
    peers: Mapping[str, Any], me: str, my_priority: int, now: datetime.datetime
) -> tuple[str, int] | None:
    """A live peer that pauses this replica (higher or equal priority), or None if we may work."""
    for identity, info in sorted(peers.items()):
        if identity == me or not isinstance(info, Mapping):
            continue
        lastseen = info.get("lastseen")
        if not isinstance(lastseen, str):
            continue
        lifetime = datetime.timedelta(seconds=int(info.get("lifetime", DEFAULT_LIFETIME)))
        if cond.parse_time(lastseen) + lifetime <= now:
            continue
        priority = int(info.get("priority", 0))
        if priority >= my_priority:
            return identity, priority
    return None
