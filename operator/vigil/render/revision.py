"""Revision identity: the hash of everything that shapes a Triton pod.

Two specs that would produce the same pods share a revision, so changing ``replicas`` or the SLOs
never starts a rollout, while changing the model version, image, args or resources does. The
hash is short (10 hex digits) because it becomes part of Deployment and pod names.
"""

from __future__ import annotations

import hashlib
import json

from vigil.api import modeldeployment

HASH_LENGTH = 10


def revision_of(spec: modeldeployment.PodShape) -> str:
    """The revision hash of a spec: stable across processes, field order and defaults."""
    shaping = {
        "model": spec.model.model_dump(mode="json"),
        "triton": spec.triton.model_dump(mode="json"),
    }
    canonical = json.dumps(shaping, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def workload_name(md_name: str, revision: str) -> str:
    """Name of the Deployment (and per-revision Service) that runs one revision."""
    return f"{md_name}-{revision}"
