"""Pinned versions of the sandbox's components, and where their built binaries are cached.

The cache is keyed by component version *and* Go version so a toolchain upgrade never reuses a
binary built by another compiler; a warm machine starts the sandbox in seconds, a cold one builds
everything from the Go module proxy once.
"""

from __future__ import annotations

import os
import pathlib

KUBERNETES = "v1.36.3"
KUBERNETES_STAGING = "v0.36.3"
ETCD = "v3.6.14"
KWOK = "v0.8.0"
# Prometheus 3.9.1 (its Go module is versioned v0.3xx): Debian's package is built without
# kubernetes_sd_configs, so the sandbox builds upstream with only the discoveries it needs.
PROMETHEUS = "v0.309.1"
# Gateway API CRDs (standard channel), read from the sigs.k8s.io/gateway-api Go module. v1.4.0 is
# missing from the module proxy's version list; its patch release v1.4.1 is listed.
GATEWAY_API = "v1.4.1"
# prometheus-operator's monitoring CRDs (PodMonitor, ServiceMonitor, PrometheusRule), read from its
# Go module; v0.85.0 is the newest the module proxy lists.
PROMETHEUS_OPERATOR = "v0.85.0"
# helm 4 (cmd/helm of helm.sh/helm/v4): renders, lints and installs the chart in the tests.
HELM = "v4.2.4"


def cache_root() -> pathlib.Path:
    """The root of vigil's caches (``$VIGIL_CACHE`` or ``~/.cache/vigil``)."""
    env = os.environ.get("VIGIL_CACHE")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "vigil"


def state_root() -> pathlib.Path:
    """Where a running sandbox keeps its kubeconfig, logs and pids (``$VIGIL_STATE`` or under the cache)."""
    env = os.environ.get("VIGIL_STATE")
    return pathlib.Path(env) if env else cache_root() / "sandbox"
