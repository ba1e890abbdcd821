"""The I/O edge of observation: one fleet-wide evaluation cycle against Prometheus.

:class:`FleetObserver` asks :func:`vigil.observe.slo.query_plan` which queries the fleet needs
(a number that does not grow with the number of deployments), runs them, and hands the answers
to the pure :func:`vigil.observe.slo.evaluate`.

All or nothing. If any query fails (connection refused, timeout, HTTP error, a body that is not an
instant vector) the cycle produces *no* verdicts: ``metrics_available`` is False and ``error``
says why, so the caller sets ``MetricsAvailable=False`` and acts on nothing. Partial answers are
not judged, because a family that failed to load would read as "no series", and a missing
failure counter next to a present success counter would read as "no errors".

One bad object never blinds the fleet. Targets are planned and judged one by one: a target whose
spec breaks the maths (it got past validation somehow) is set aside with its error in
``FleetResult.failures`` and only its own deployment hears of it (``MetricsAvailable=False``,
reason ``EvaluationFailed``); the others are judged as if it did not exist. An unexpected error
of the cycle itself (not of one target) is a cycle without verdicts, like a Prometheus outage,
never a stale result that keeps saying the metrics are fine.

Consistency. Every query of a cycle is evaluated at the same instant (``time=now``), so the
numerator and denominator of a ratio come from the same moment even when queries run in
parallel.

Timeouts, three deep: Prometheus's own ``timeout`` query parameter (it stops evaluating), the HTTP
client's connect and read timeouts, and a deadline for the whole cycle. The HTTP client is
synchronous (``prometheus_api_client``), so queries run in worker threads through
``asyncio.to_thread``, spread over a few lanes. A lane takes an HTTP session (with its kept-alive
connection) from the observer's idle ones, or makes one, and gives it back when all its queries
were asked without an error, so no session is used by two threads at once and a quiet cycle opens
no connection (urllib3 checks a kept connection before reusing it, and makes a new one when the
server closed it). A lane whose query failed closes its session instead: the next cycle starts on a
fresh connection. A lane abandoned at the deadline finishes on its own within the HTTP timeouts.
No retries inside a cycle: the next cycle is the retry, and a failing Prometheus should fail fast.

The HTTP environment (``HTTP(S)_PROXY``/``NO_PROXY``, ``REQUESTS_CA_BUNDLE``) is read once per
session by requests' own rules, not on every request (requests looks it up, and for ``~/.netrc``,
per request by default: a few percent of the operator's CPU at 1,000 deployments); credentials
come from the explicit options only (a bearer token file, headers), never from a netrc file.
"""

from __future__ import annotations

import asyncio
import collections.abc
import dataclasses
import datetime
import functools
import logging
import threading
import time

import prometheus_api_client
import prometheus_api_client.exceptions
import requests
import urllib3

from vigil.observe import memo, metrics, promql, slo

log = logging.getLogger("vigil.observe")


@dataclasses.dataclass(frozen=True)
class TargetFailure:
    """A deployment that could not be evaluated this cycle, and why (the others were)."""

    namespace: str
    name: str
    error: str

    @classmethod
    def of(cls, target: slo.Target, stage: str, error: Exception) -> TargetFailure:
        return cls(target.namespace, target.name, f"{stage} failed: {type(error).__name__}: {error}"[:_DETAIL_LIMIT])


@dataclasses.dataclass(frozen=True)
class FleetResult:
    """One cycle: per-deployment reports, or the reason there are none."""

    metrics_available: bool
    error: str | None
    deployments: tuple[slo.DeploymentReport, ...]
    queries: int
    duration_seconds: float
    failures: tuple[TargetFailure, ...] = ()

    def deployment(self, namespace: str, name: str) -> slo.DeploymentReport | None:
        return self._reports.get((namespace, name))

    def failure(self, namespace: str, name: str) -> str | None:
        """Why this deployment alone was not evaluated, if it was not."""
        return self._failures.get((namespace, name))

    # Looked up once per deployment per cycle: a scan would make every cycle quadratic in N.
    @functools.cached_property
    def _reports(self) -> dict[tuple[str, str], slo.DeploymentReport]:
        found: dict[tuple[str, str], slo.DeploymentReport] = {}
        for d in self.deployments:
            found.setdefault((d.namespace, d.name), d)  # the first, as a scan would find it
        return found

    @functools.cached_property
    def _failures(self) -> dict[tuple[str, str], str]:
        found: dict[tuple[str, str], str] = {}
        for f in self.failures:
            found.setdefault((f.namespace, f.name), f.error)
        return found


@dataclasses.dataclass(frozen=True)
class QueryFailure:
    """Why a query failed: ``reason`` is one of connection, timeout, http, bad_response, deadline, credentials."""

    reason: str
    query: str
    detail: str

    def describe(self) -> str:
        return f"prometheus query failed ({self.reason}): {self.detail} [query: {self.query}]"


def classify(error: Exception) -> str:
    """The metric label for a failed query."""
    if isinstance(error, requests.Timeout):
        return "timeout"
    if isinstance(error, requests.JSONDecodeError | promql.BadResponse | KeyError | TypeError | ValueError):
        return "bad_response"
    if isinstance(error, requests.RequestException):
        return "connection"
    if isinstance(error, prometheus_api_client.exceptions.PrometheusApiClientException):
        return "http"
    return "unexpected"


_DETAIL_LIMIT = 300


@dataclasses.dataclass(frozen=True)
class _Connection:
    """A Prometheus client and the HTTP session under it (kept alive across cycles)."""

    client: prometheus_api_client.PrometheusConnect
    session: requests.Session


class FleetObserver:
    """Evaluates the SLOs of every target in one batch of PromQL queries per cycle."""

    def __init__(
        self,
        url: str,
        *,
        settings: slo.Settings | None = None,
        query_timeout: float = 10.0,
        connect_timeout: float = 3.0,
        cycle_timeout: float = 30.0,
        concurrency: int = 4,
        headers: collections.abc.Mapping[str, str] | None = None,
        bearer_token_file: str | None = None,
        verify: bool | str = True,
        scoped: bool = False,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.url = url.rstrip("/")
        self.settings = settings or slo.Settings()
        self.query_timeout = query_timeout
        self.connect_timeout = connect_timeout
        self.cycle_timeout = cycle_timeout
        self.concurrency = concurrency
        self.headers = dict(headers or {})
        self.bearer_token_file = bearer_token_file
        self.verify = verify
        self.scoped = scoped
        """The operator watches some namespaces only: query only its targets' namespaces."""
        self._gauges = metrics.SLOGauges()
        self._failing: set[tuple[str, str]] = set()
        # An idle deployment's report is reused, not judged again (exactly the same, see memo).
        self._memo = memo.Memo()
        self._idle: list[_Connection] = []
        """Sessions whose lane answered all its queries: the next lanes take them (see the docstring)."""
        self._idle_lock = threading.Lock()

    async def evaluate(self, targets: collections.abc.Sequence[slo.Target], now: datetime.datetime) -> FleetResult:
        """Judge every target at ``now``; never raises (see the module docstring)."""
        started = time.perf_counter()
        try:
            return self._finish(await self._evaluate(targets, now), started)
        except Exception as error:  # a bug of the cycle itself: no verdicts at all, said so
            metrics.METRICS_AVAILABLE.set(0)
            self._gauges.clear()
            detail = f"the evaluation failed: {type(error).__name__}: {error}"[:_DETAIL_LIMIT]
            return self._finish(FleetResult(False, detail, (), 0, 0.0), started)

    async def _evaluate(self, targets: collections.abc.Sequence[slo.Target], now: datetime.datetime) -> FleetResult:
        plan = self._memo.plan(targets, now, self.settings, scoped=self.scoped)
        failures = [TargetFailure.of(target, "planning its queries", error) for target, error in plan.failed]
        results, failure = await self.query(plan.queries, now)
        if failure is not None:
            metrics.METRICS_AVAILABLE.set(0)
            self._gauges.clear()
            return FleetResult(False, failure.describe(), (), len(plan.queries), 0.0)
        # Pure but not free (about a quarter of a millisecond per SLO and revision, unless nothing
        # changed for the deployment): in a thread, so kopf's handlers keep running on the event
        # loop while a large fleet is judged.
        reports, judge_failures = await asyncio.to_thread(self._judge, plan.planned, results, now)
        metrics.METRICS_AVAILABLE.set(1)
        self._gauges.publish(reports)
        self._log_failures((*failures, *judge_failures))
        return FleetResult(True, None, reports, len(plan.queries), 0.0, (*failures, *judge_failures))

    def _log_failures(self, failures: collections.abc.Sequence[TargetFailure]) -> None:
        """Log a deployment's evaluation failure when it starts and when it ends, not every cycle."""
        failing = {(f.namespace, f.name) for f in failures}
        for failure in failures:
            if (failure.namespace, failure.name) not in self._failing:
                log.warning("SLOs of %s/%s not evaluated: %s", failure.namespace, failure.name, failure.error)
        for namespace, name in sorted(self._failing - failing):
            log.info("SLOs of %s/%s evaluated again", namespace, name)
        self._failing = failing

    @staticmethod
    def _finish(result: FleetResult, started: float) -> FleetResult:
        elapsed = time.perf_counter() - started
        metrics.LOOP_DURATION.observe(elapsed)
        return dataclasses.replace(result, duration_seconds=elapsed)

    def _judge(
        self, targets: collections.abc.Sequence[slo.Target], results: promql.Results, now: datetime.datetime
    ) -> tuple[tuple[slo.DeploymentReport, ...], tuple[TargetFailure, ...]]:
        """Each target judged on its own: one that raises is a failure of that target only."""
        reports: list[slo.DeploymentReport] = []
        failures: list[TargetFailure] = []
        by_deployment = promql.by_deployment(results)
        for target in targets:
            try:
                series = by_deployment.get((target.namespace, target.name), {})
                reports.append(self._memo.evaluate(target, series, now, self.settings))
            except Exception as error:  # isolation: whatever it is, it stays with this target
                failures.append(TargetFailure.of(target, "judging its SLOs", error))
        metrics.JUDGEMENTS.labels("reused").inc(self._memo.reused)
        metrics.JUDGEMENTS.labels("judged").inc(self._memo.judged)
        self._memo.retain((target.namespace, target.name) for target in targets)
        return tuple(reports), tuple(failures)

    async def query(
        self, queries: collections.abc.Sequence[promql.Query], now: datetime.datetime
    ) -> tuple[dict[promql.Need, promql.Vector], QueryFailure | None]:
        """Run ``queries`` at instant ``now``: every answer, or the first failure."""
        abort = threading.Event()
        lanes = [list(queries[i :: self.concurrency]) for i in range(min(self.concurrency, len(queries)))]
        runs = [asyncio.to_thread(self._run_lane, lane, now.timestamp(), abort) for lane in lanes]
        try:
            outcomes = await asyncio.wait_for(asyncio.gather(*runs), timeout=self.cycle_timeout)
        except TimeoutError:
            abort.set()
            metrics.QUERY_ERRORS.labels("deadline").inc()
            detail = f"the cycle took longer than {self.cycle_timeout:g}s"
            return {}, QueryFailure("deadline", f"{len(queries)} queries", detail)
        results: dict[promql.Need, promql.Vector] = {}
        for answered, failure in outcomes:
            if failure is not None:
                return {}, failure
            results.update(answered)
        return results, None

    def _headers(self) -> dict[str, str]:
        """The configured headers, plus the bearer token read afresh (mounted tokens rotate)."""
        headers = dict(self.headers)
        if self.bearer_token_file:
            with open(self.bearer_token_file, encoding="utf-8") as handle:
                headers["Authorization"] = f"Bearer {handle.read().strip()}"
        return headers

    def _connection(self) -> _Connection:
        """An idle session (for the current URL), or a new one."""
        with self._idle_lock:
            while self._idle:
                idle = self._idle.pop()
                if idle.client.url == self.url:
                    return idle
                idle.session.close()
        session = requests.Session()
        # The environment once, by requests' rules (proxies unless NO_PROXY says otherwise, a CA
        # bundle from REQUESTS_CA_BUNDLE when verifying with the default store); then never again.
        # A CA bundle path, or False to skip verification (--prometheus-ca-file / --prometheus-insecure-skip-verify).
        environment = session.merge_environment_settings(self.url, {}, None, self.verify, None)
        session.trust_env = False
        session.proxies = environment["proxies"]
        session.verify = environment["verify"]
        client = prometheus_api_client.PrometheusConnect(
            url=self.url,
            # read=False lets a read timeout surface as requests.ReadTimeout, not a ConnectionError.
            retry=urllib3.util.Retry(total=0, read=False),
            session=session,
            timeout=(self.connect_timeout, self.query_timeout + 1.0),
        )
        return _Connection(client, session)

    def close(self) -> None:
        """Close the idle sessions (a lane under way closes its own when it ends)."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.session.close()

    def _run_lane(
        self, queries: list[promql.Query], at: float, abort: threading.Event
    ) -> tuple[dict[promql.Need, promql.Vector], QueryFailure | None]:
        """Run queries one after another in a worker thread, on a session no other lane is using."""
        try:
            headers = self._headers()
        except OSError as error:
            metrics.QUERY_ERRORS.labels("credentials").inc()
            return {}, QueryFailure("credentials", f"{len(queries)} queries", f"bearer token unreadable: {error}")
        connection = self._connection()
        client = connection.client
        client.headers = headers or None  # the token as read for this cycle
        params = {"time": f"{at:.3f}", "timeout": f"{self.query_timeout:g}s"}
        answered: dict[promql.Need, promql.Vector] = {}
        failed = True
        try:
            for query in queries:
                if abort.is_set():
                    break
                began = time.perf_counter()
                try:
                    answered[query.need] = promql.parse_vector(client.custom_query(query.expr, params=params))
                except Exception as error:
                    abort.set()
                    reason = classify(error)
                    metrics.QUERY_ERRORS.labels(reason).inc()
                    return answered, QueryFailure(reason, query.expr, str(error)[:_DETAIL_LIMIT])
                finally:
                    metrics.QUERY_DURATION.observe(time.perf_counter() - began)
            failed = False
            return answered, None
        finally:
            if not failed:
                with self._idle_lock:
                    self._idle.append(connection)
            else:
                connection.session.close()
