"""A Flagger-like baseline: a fixed-interval metric check that acts on the first failed check.

Flagger's canary analysis runs its metric checks once per ``analysis.interval`` (60 s in its
examples and docs) and rolls back once ``analysis.threshold`` checks have failed; its built-in
``request-success-rate`` check is the percentage of non-5xx requests over the last minute with a
threshold of 99, its ``request-duration`` check a latency over the last minute against a
threshold in milliseconds. This module reproduces that *decision policy* and nothing else:

* every ``interval`` seconds, one PromQL query against the same Prometheus as vigil, over the
  whole deployment's series for the last ``window``. Flagger's per-canary ticker runs from the
  canary's creation, so where a fault lands between two ticks is arbitrary: uniformly random in
  practice. A benchmark with a handful of runs would get that phase from an accident of its
  warm-up timing (nearly the same every run), so the harness sets it explicitly and spreads it
  evenly over the runs (:func:`phase_offset`, stratified sampling of a uniform phase);
* ``PASS`` / ``FAIL`` against the threshold; no data is ``NO_DATA`` and counts as neither;
* on the ``max_failed_checks``-th failed check (1: the first) it acts once and stops.

It acts the way vigil's runbooks do, so only the decision differs: it never edits the user's
spec. It sets ``status.rollback`` (to the last-known-good revision) or ``status.scale`` on a
``paused`` ModelDeployment through the status subresource, by server-side apply with field
manager ``flagger-baseline`` and ``generation`` = the deployment's generation. vigil, which only
observes a paused deployment, then performs the switch or the scale-out in its reconcile core
exactly as it does for its own overrides, and keeps judging the SLOs for both.

The check, the policy and the status bodies are pure and unit-tested; :class:`Controller` is the
thread that runs them against the sandbox.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from bench import cluster

FIELD_MANAGER = "flagger-baseline"
INCIDENT = "flagger-baseline"
INTERVAL_SECONDS = 60.0
WINDOW = "1m"
SUCCESS_RATE_THRESHOLD = 99.0


class Verdict(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NO_DATA = "noData"


@dataclasses.dataclass(frozen=True)
class Check:
    """One metric check: a PromQL expression returning one number, and its threshold.

    ``minimum`` checks fail below the threshold (a success rate), maximum checks above it (a
    duration).
    """

    name: str
    query: str
    threshold: float
    minimum: bool

    def judge(self, value: float | None) -> Verdict:
        if value is None or not math.isfinite(value):
            return Verdict.NO_DATA
        bad = value < self.threshold if self.minimum else value > self.threshold
        return Verdict.FAIL if bad else Verdict.PASS


@dataclasses.dataclass
class Policy:
    """Flagger's analysis bookkeeping: count failed checks, act once on reaching the threshold."""

    interval_seconds: float = INTERVAL_SECONDS
    max_failed_checks: int = 1
    failed_checks: int = 0
    acted: bool = False

    def __post_init__(self) -> None:
        if self.interval_seconds <= 0 or self.max_failed_checks < 1:
            raise ValueError("interval must be > 0 and max_failed_checks >= 1")

    def record(self, verdict: Verdict) -> bool:
        """Count ``verdict``; True exactly once, when the failed checks reach the threshold."""
        if self.acted:
            return False
        if verdict is Verdict.FAIL:
            self.failed_checks += 1
        if self.failed_checks >= self.max_failed_checks:
            self.acted = True
            return True
        return False

    def next_tick(self, started: float, now: float) -> float:
        """The first tick strictly after ``now`` of a ticker started at ``started`` (no tick at start)."""
        if now < started:
            return started + self.interval_seconds
        ticks = math.floor((now - started) / self.interval_seconds) + 1
        return started + ticks * self.interval_seconds


def phase_offset(index: int, runs: int, interval: float = INTERVAL_SECONDS) -> float:
    """Seconds from the fault to the first tick in run ``index`` of ``runs``: the midpoints of
    ``runs`` equal slices of the interval, so the runs sample the phase evenly."""
    if runs < 1 or not 0 <= index < runs:
        raise ValueError(f"run {index} of {runs}")
    return interval * (index + 0.5) / runs


def _selector(namespace: str, name: str) -> str:
    return f'{{namespace="{namespace}", modeldeployment="{name}"}}'


def success_rate_query(namespace: str, name: str, window: str = WINDOW) -> str:
    """Percent of successful requests of the whole deployment over ``window`` (Flagger's metric)."""
    sel = _selector(namespace, name)
    success = f"sum(rate(nv_inference_request_success{sel}[{window}]))"
    failure = f"(sum(rate(nv_inference_request_failure{sel}[{window}])) or vector(0))"
    return f"100 * {success} / ({success} + {failure})"


def queue_time_query(namespace: str, name: str, window: str = WINDOW) -> str:
    """Average queue time in ms of the deployment's successful requests over ``window``.

    The same SLI as vigil's ``queueTime`` SLO (Triton's queue duration counter over its success
    counter), so the two policies judge the same number against the same threshold.
    """
    sel = _selector(namespace, name)
    return (
        f"sum(rate(nv_inference_queue_duration_us{sel}[{window}])) "
        f"/ sum(rate(nv_inference_request_success{sel}[{window}])) / 1000"
    )


def success_rate_check(namespace: str, name: str, threshold: float = SUCCESS_RATE_THRESHOLD) -> Check:
    return Check("request-success-rate", success_rate_query(namespace, name), threshold, minimum=True)


def queue_time_check(namespace: str, name: str, threshold_ms: float) -> Check:
    return Check("request-duration", queue_time_query(namespace, name), threshold_ms, minimum=False)


def parse_scalar(payload: Any) -> float | None:
    """The single value of an instant-query answer; None for no series, NaN or infinities."""
    if not isinstance(payload, dict) or payload.get("status") != "success":
        raise ValueError(f"not a successful query answer: {payload!r}")
    data = payload.get("data") or {}
    result = data.get("result")
    if data.get("resultType") == "scalar" and isinstance(result, list):
        samples: list[Any] = [result]
    elif isinstance(result, list):
        samples = [item.get("value") for item in result if isinstance(item, dict)]
    else:
        raise ValueError(f"unexpected result {result!r}")
    if not samples:
        return None
    if len(samples) > 1:
        raise ValueError(f"expected one series, got {len(samples)}")
    value = float(samples[0][1])
    return value if math.isfinite(value) else None


def parse_series(payload: Any) -> list[tuple[float, float]]:
    """The points of a range-query answer with at most one series (none: no points)."""
    if not isinstance(payload, dict) or payload.get("status") != "success":
        raise ValueError(f"not a successful query answer: {payload!r}")
    result = (payload.get("data") or {}).get("result")
    if not isinstance(result, list) or len(result) > 1:
        raise ValueError(f"expected at most one series, got {result!r}")
    points = [(float(at), float(value)) for at, value in (result[0].get("values", []) if result else [])]
    return [(at, value) for at, value in points if math.isfinite(value)]


def rfc3339(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rollback_status(md: dict[str, Any], now: float) -> dict[str, Any] | None:
    """The ``status`` fields of a rollback to last-known-good, or None without a target."""
    status = md.get("status", {})
    current = status.get("currentRevision")
    target = cluster.last_known_good(md)
    if current is None or target is None or target == current:
        return None
    return {
        "rollback": {
            "revision": target,
            "fromRevision": current,
            "incident": INCIDENT,
            "generation": int(md["metadata"]["generation"]),
            "since": rfc3339(now),
        }
    }


def scale_status(replicas: int) -> Callable[[dict[str, Any], float], dict[str, Any] | None]:
    """An action setting ``status.scale`` to ``replicas`` (absolute, like vigil's scale-out intents)."""

    def act(md: dict[str, Any], now: float) -> dict[str, Any] | None:
        return {
            "scale": {
                "replicas": replicas,
                "incident": INCIDENT,
                "generation": int(md["metadata"]["generation"]),
                "since": rfc3339(now),
            }
        }

    return act


@dataclasses.dataclass(frozen=True)
class Tick:
    at: float
    value: float | None
    verdict: Verdict
    error: str | None = None


class Prometheus:
    """Instant queries over HTTP (standard library), loopback only."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query(self, expr: str) -> float | None:
        params = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{params}", timeout=self.timeout) as response:
            return parse_scalar(json.loads(response.read()))

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[tuple[float, float]]:
        """The one series of a range query as (time, value) points; NaN points dropped."""
        params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
        with urllib.request.urlopen(f"{self.url}/api/v1/query_range?{params}", timeout=self.timeout) as response:
            return parse_series(json.loads(response.read()))


class Controller(threading.Thread):
    """The baseline policy running against one ModelDeployment until it acts or is stopped."""

    def __init__(
        self,
        kube: cluster.Cluster,
        prometheus_url: str,
        namespace: str,
        name: str,
        check: Check,
        action: Callable[[dict[str, Any], float], dict[str, Any] | None],
        policy: Policy | None = None,
        first_tick_in: float | None = None,
    ) -> None:
        """``first_tick_in``: seconds from :meth:`start` to the first tick (default: one interval)."""
        super().__init__(name=f"baseline-{name}", daemon=True)
        self.kube = kube
        self.prometheus = Prometheus(prometheus_url)
        self.namespace = namespace
        self.md_name = name
        self.check = check
        self.action = action
        self.policy = policy or Policy()
        self.first_tick_in = self.policy.interval_seconds if first_tick_in is None else first_tick_in
        if not 0 <= self.first_tick_in <= self.policy.interval_seconds:
            raise ValueError("the first tick must come within one interval")
        self.ticks: list[Tick] = []
        self.started_at: float | None = None
        self.acted_at: float | None = None
        self.error: str | None = None
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        # The ticker's origin, one interval before the first tick (which is never at the origin).
        started = time.monotonic() + self.first_tick_in - self.policy.interval_seconds
        self.started_at = time.time()
        try:
            while not self.policy.acted:
                # The interval is the policy under test, not a wait for a condition.
                delay = self.policy.next_tick(started, time.monotonic()) - time.monotonic()
                if self._stop_event.wait(timeout=max(0.0, delay)):
                    return
                self.tick()
        except Exception as error:  # reported with the results, never silently
            self.error = repr(error)

    def tick(self) -> None:
        at = time.time()
        try:
            value = self.prometheus.query(self.check.query)
        except (OSError, ValueError, urllib.error.URLError) as error:
            self.ticks.append(Tick(at, None, Verdict.NO_DATA, repr(error)))
            return
        verdict = self.check.judge(value)
        self.ticks.append(Tick(at, value, verdict))
        if not self.policy.record(verdict):
            return
        md = self.kube.get(self.namespace, self.md_name)
        status = self.action(md, time.time())
        if status is None:
            self.error = "no target to act on (no last-known-good revision)"
            return
        self.kube.apply_md_status(self.namespace, self.md_name, status, FIELD_MANAGER)
        self.acted_at = time.time()

    def report(self) -> dict[str, Any]:
        return {
            "check": self.check.name,
            "query": self.check.query,
            "threshold": self.check.threshold,
            "intervalSeconds": self.policy.interval_seconds,
            "firstTickInSeconds": self.first_tick_in,
            "maxFailedChecks": self.policy.max_failed_checks,
            "startedAt": self.started_at,
            "actedAt": self.acted_at,
            "error": self.error,
            "ticks": [dataclasses.asdict(t) for t in self.ticks],
        }
