"""Revision identity: the hash of everything that shapes a Triton pod.

Two specs that would produce the same pods share a revision, so changing ``replicas`` or the SLOs
never starts a rollout, while changing the model version, image, args or resources does. The
hash is short (10 hex digits) because it becomes part of Deployment and pod names.

The hash covers the spec, not vigil's rendering of it: defaults that vigil renders (probes, ports,
the restricted securityContext) reach running revisions in place when vigil is upgraded, without
minting new revisions. Fields added to the pod shape after v1alpha1 first shipped
(:data:`ADDED_FIELDS`) enter the hash only when set, so upgrading vigil does not give every
existing deployment a new revision (and a rollout) while its spec stayed the same.
"""

from __future__ import annotations

import hashlib
import json

from vigil.api import modeldeployment

HASH_LENGTH = 10
ADDED_FIELDS = ("security_context", "pod_security_context")


def revision_of(spec: modeldeployment.PodShape) -> str:
    """The revision hash of a spec: stable across processes, field order and defaults."""
    triton = spec.triton.model_dump(mode="json")
    for field in ADDED_FIELDS:
        if triton[field] is None:
            del triton[field]
    shaping = {"model": spec.model.model_dump(mode="json"), "triton": triton}
    canonical = json.dumps(shaping, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def workload_name(md_name: str, revision: str) -> str:
    """Name of the Deployment (and per-revision Service) that runs one revision."""
    return f"{md_name}-{revision}"
