"""An HPA-like baseline: replicas from GPU utilisation, the Kubernetes HorizontalPodAutoscaler's way.

The efficiency benchmark compares vigil with the autoscaler most clusters already run. This
module reproduces the HPA's v2 algorithm and defaults (kube-controller-manager's
``--horizontal-pod-autoscaler-*`` flags and ``behavior``), and nothing else:

* every ``sync_seconds`` (15 s) it reads the deployment's mean GPU utilisation over the last
  minute (``nv_gpu_utilization``, the same series Triton exports) from the same Prometheus vigil
  reads;
* desired = ceil(current x utilisation / target), skipped while the ratio is within the 10 %
  tolerance; clamped to [min, max];
* scale-up: by at most max(4 pods, 100 %) per 15 s (the default ``scaleUp`` policies);
* scale-down: the highest recommendation of the last 300 s (the default stabilisation window),
  so it releases replicas only after load stayed low for five minutes;
* it writes ``spec.replicas`` through the ModelDeployment's scale subresource, as the real HPA
  does, on a ``paused`` deployment (vigil only observes and judges it).

:class:`Policy` is pure and unit-tested; :class:`Controller` is the thread that runs it.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import urllib.error
from typing import Any

from bench import baseline, cluster

SYNC_SECONDS = 15.0
TOLERANCE = 0.1
STABILISATION_SECONDS = 300.0
TARGET_UTILISATION = 0.6


@dataclasses.dataclass
class Policy:
    minimum: int
    maximum: int
    target: float = TARGET_UTILISATION
    tolerance: float = TOLERANCE
    stabilisation_seconds: float = STABILISATION_SECONDS
    history: list[tuple[float, int]] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.maximum or not 0 < self.target <= 1:
            raise ValueError("need 1 <= minimum <= maximum and 0 < target <= 1")

    def desired(self, current: int, utilisation: float | None, now: float) -> int:
        """The replicas to set now, given ``current`` replicas at mean ``utilisation`` (None: no metric)."""
        if utilisation is None or not math.isfinite(utilisation):
            return current  # like the HPA without metrics: change nothing
        ratio = utilisation / self.target
        raw = current if abs(ratio - 1.0) <= self.tolerance else math.ceil(current * ratio - 1e-9)
        raw = min(max(raw, self.minimum), self.maximum)
        self.history = [(at, r) for at, r in self.history if at > now - self.stabilisation_seconds]
        self.history.append((now, raw))
        if raw >= current:
            return min(raw, current + max(4, current))  # scale-up policy: max(4 pods, 100 %) per period
        # Scale-down: to the highest recommendation of the window, never up from here.
        return min(current, max(r for _, r in self.history))


def utilisation_query(namespace: str, name: str) -> str:
    sel = f'{{namespace="{namespace}", modeldeployment="{name}"}}'
    return f"avg(avg_over_time(nv_gpu_utilization{sel}[1m]))"


class Controller(threading.Thread):
    """The HPA-like policy running against one paused ModelDeployment until stopped."""

    def __init__(self, kube: cluster.Cluster, prometheus_url: str, namespace: str, name: str, policy: Policy) -> None:
        super().__init__(name=f"hpa-{name}", daemon=True)
        self.kube = kube
        self.prometheus = baseline.Prometheus(prometheus_url)
        self.namespace = namespace
        self.md_name = name
        self.policy = policy
        self.decisions: list[dict[str, Any]] = []
        self.error: str | None = None
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        try:
            while not self._stop_event.wait(SYNC_SECONDS):  # the HPA's sync period is the policy under test
                self.tick()
        except Exception as error:  # reported with the results, never silently
            self.error = repr(error)

    def tick(self) -> None:
        now = time.time()
        try:
            utilisation = self.prometheus.query(utilisation_query(self.namespace, self.md_name))
        except (OSError, ValueError, urllib.error.URLError):
            utilisation = None
        current = int(self.kube.get(self.namespace, self.md_name)["spec"]["replicas"])
        desired = self.policy.desired(current, utilisation, now)
        if desired != current:
            self.kube.custom.patch_namespaced_custom_object_scale(
                cluster.GROUP,
                cluster.VERSION,
                self.namespace,
                cluster.MDS,
                self.md_name,
                {"spec": {"replicas": desired}},
                _request_timeout=cluster.TIMEOUT,
            )
        self.decisions.append({"at": now, "utilisation": utilisation, "current": current, "desired": desired})

    def report(self) -> dict[str, Any]:
        return {
            "syncSeconds": SYNC_SECONDS,
            "target": self.policy.target,
            "tolerance": self.policy.tolerance,
            "stabilisationSeconds": self.policy.stabilisation_seconds,
            "min": self.policy.minimum,
            "max": self.policy.maximum,
            "changes": sum(1 for d in self.decisions if d["desired"] != d["current"]),
            "error": self.error,
        }
