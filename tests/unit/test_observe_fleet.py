"""FleetObserver against a tiny fake Prometheus on 127.0.0.1: verdicts, outages, query counts, metrics."""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import http.server
import json
import pathlib
import socket
import threading
import time
import urllib.parse

import prometheus_client
import pytest

from vigil.api import conditions
from vigil.api import slo as sloapi
from vigil.observe import fleet, metrics, promql, slo

F = promql.Family
S = sloapi.SLOState
NOW = datetime.datetime(2025, 6, 1, 12, 0, tzinfo=datetime.UTC)
OLD = NOW - datetime.timedelta(days=10)
SETTINGS = slo.Settings(min_window_seconds=60)

# (namespace, modeldeployment, revision) -> family -> sample value as Prometheus writes it.
Rates = dict[tuple[str, str, str], dict[promql.Family, str]]
Reply = tuple[int, str, bytes]


def family_of(expr: str) -> promql.Family:
    if promql.GPU_MEMORY_USED in expr:
        return F.GPU_MEMORY
    return next(f for f, metric in promql.METRIC.items() if f"{metric}{{" in expr)


def vector_reply(rates: Rates) -> collections.abc.Callable[[str], Reply]:
    """Answer every query from ``rates``, whatever its window (as if rates were steady)."""

    def reply(expr: str) -> Reply:
        family = family_of(expr)
        result = []
        for (namespace, md, revision), values in rates.items():
            if family not in values:
                continue
            metric = {"namespace": namespace, "modeldeployment": md, "revision": revision}
            if family is F.BUCKET:
                metric["le"] = "100"
            result.append({"metric": metric, "value": [NOW.timestamp(), values[family]]})
        body = {"status": "success", "data": {"resultType": "vector", "result": result}}
        return 200, "application/json", json.dumps(body).encode()

    return reply


def fixed_reply(
    status: int, body: bytes, content_type: str = "application/json"
) -> collections.abc.Callable[[str], Reply]:
    return lambda expr: (status, content_type, body)


@dataclasses.dataclass(frozen=True)
class Seen:
    """One request as the server saw it: the client's port (one per connection), the host of an
    absolute URL (a request sent through a proxy), and its Authorization header."""

    port: int
    proxied_host: str
    authorization: str | None


@dataclasses.dataclass
class FakePrometheus:
    """Serves ``GET /api/v1/query`` from a reply function and records every request's parameters."""

    reply: collections.abc.Callable[[str], Reply]
    delay: float = 0.0
    keep_alive: bool = False
    """Keep connections open between requests (HTTP/1.1), as Prometheus does."""
    requests: list[dict[str, str]] = dataclasses.field(default_factory=list)
    seen: list[Seen] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if self.keep_alive else "HTTP/1.0"

            def do_GET(self) -> None:
                url = urllib.parse.urlparse(self.path)
                params = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
                fake.requests.append(params)
                fake.seen.append(Seen(self.client_address[1], url.netloc, self.headers.get("Authorization")))
                time.sleep(fake.delay)
                status, content_type, body = fake.reply(params.get("query", ""))
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> collections.abc.Iterator[collections.abc.Callable[..., FakePrometheus]]:
    started: list[FakePrometheus] = []

    def start(
        reply: collections.abc.Callable[[str], Reply], delay: float = 0.0, keep_alive: bool = False
    ) -> FakePrometheus:
        started.append(FakePrometheus(reply, delay, keep_alive))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def target(name: str, *slos: sloapi.SLOSpec, revision: str = "r1") -> slo.Target:
    return slo.Target(
        namespace="ml",
        name=name,
        generation=1,
        slos=slos or (sloapi.SLOSpec(name="avail", kind=sloapi.SLOKind.AVAILABILITY, objective=99.9),),
        revisions=(slo.RevisionRef(revision, OLD),),
    )


def observer(
    url: str,
    *,
    query_timeout: float = 5.0,
    connect_timeout: float = 1.0,
    cycle_timeout: float = 10.0,
    concurrency: int = 4,
) -> fleet.FleetObserver:
    return fleet.FleetObserver(
        url,
        settings=SETTINGS,
        query_timeout=query_timeout,
        connect_timeout=connect_timeout,
        cycle_timeout=cycle_timeout,
        concurrency=concurrency,
    )


def errors(reason: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value("vigil_prometheus_query_errors_total", {"reason": reason}) or 0.0


def sli_gauge(md: str, window: str = "5m") -> float | None:
    labels = {"namespace": "ml", "modeldeployment": md, "slo": "avail", "window": window}
    return prometheus_client.REGISTRY.get_sample_value("vigil_slo_sli", labels)


HEALTHY: Rates = {
    ("ml", "good", "r1"): {F.SUCCESS: "999.5", F.FAILURE: "0.5", F.PENDING: "2", F.GPU_MEMORY: "0.4"},
    ("ml", "bad", "r1"): {F.SUCCESS: "7", F.FAILURE: "3"},
}


async def test_healthy_prometheus_gives_verdicts_for_every_deployment(
    serve: collections.abc.Callable[..., FakePrometheus],
) -> None:
    prometheus = serve(vector_reply(HEALTHY))
    result = await observer(prometheus.url).evaluate([target("good"), target("bad")], NOW)
    assert result.metrics_available
    assert result.error is None
    good, bad = result.deployment("ml", "good"), result.deployment("ml", "bad")
    assert good is not None
    assert bad is not None
    assert good.slos[0].state is S.MET
    assert good.verdict.reason == "Met"
    assert bad.slos[0].state is S.BREACHED
    assert bad.slos[0].burn_rates[0].burn_rate == pytest.approx(300.0)
    assert good.revisions[0].traffic.pending_requests == 2.0


async def test_every_query_of_a_cycle_is_evaluated_at_the_same_instant_with_a_server_timeout(
    serve: collections.abc.Callable[..., FakePrometheus],
) -> None:
    prometheus = serve(vector_reply(HEALTHY))
    result = await observer(prometheus.url, query_timeout=7).evaluate([target("good")], NOW)
    assert result.queries == len(prometheus.requests)
    assert {r["time"] for r in prometheus.requests} == {f"{NOW.timestamp():.3f}"}
    assert {r["timeout"] for r in prometheus.requests} == {"7s"}


async def test_nan_and_empty_answers_are_no_data_not_an_outage(
    serve: collections.abc.Callable[..., FakePrometheus],
) -> None:
    rates: Rates = {("ml", "nan", "r1"): {F.SUCCESS: "NaN", F.FAILURE: "NaN"}}
    prometheus = serve(vector_reply(rates))
    result = await observer(prometheus.url).evaluate([target("nan"), target("empty")], NOW)
    assert result.metrics_available
    assert [d.slos[0].state for d in result.deployments] == [S.NO_DATA, S.NO_DATA]


async def test_query_count_is_the_same_for_one_and_for_fifty_deployments(
    serve: collections.abc.Callable[..., FakePrometheus],
) -> None:
    latency = sloapi.SLOSpec(
        name="p99", kind=sloapi.SLOKind.LATENCY, method=sloapi.LatencyMethod.HISTOGRAM, threshold_ms=100
    )
    availability = sloapi.SLOSpec(name="avail", kind=sloapi.SLOKind.AVAILABILITY)

    async def count(n: int) -> int:
        prometheus = serve(vector_reply(HEALTHY))
        targets = [target(f"md{i}", availability, latency) for i in range(n)]
        result = await observer(prometheus.url).evaluate(targets, NOW)
        assert result.metrics_available
        assert len(result.deployments) == n
        return len(prometheus.requests)

    one, fifty = await count(1), await count(50)
    assert one == fifty
    assert one == len(slo.query_plan([target("x", availability, latency)], NOW, SETTINGS))


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (fixed_reply(503, b"service unavailable", "text/plain"), "http"),
        (fixed_reply(500, b"internal error", "text/plain"), "http"),
        (fixed_reply(422, b'{"status":"error","errorType":"execution","error":"too many samples"}'), "http"),
        (fixed_reply(200, b"<html>not prometheus</html>", "text/html"), "bad_response"),
        (fixed_reply(200, b'{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}'), "bad_response"),
        (fixed_reply(200, b'{"status":"success"}'), "bad_response"),
    ],
    ids=["503", "500", "422", "html", "scalar", "no-data-field"],
)
async def test_prometheus_errors_mean_metrics_unavailable_and_no_verdicts(
    serve: collections.abc.Callable[..., FakePrometheus], reply: collections.abc.Callable[[str], Reply], reason: str
) -> None:
    prometheus = serve(reply)
    before = errors(reason)
    result = await observer(prometheus.url, concurrency=1).evaluate([target("good"), target("bad")], NOW)
    assert not result.metrics_available
    assert result.deployments == ()
    assert result.deployment("ml", "good") is None
    assert result.error is not None
    assert f"({reason})" in result.error
    assert errors(reason) == before + 1


async def test_first_failure_stops_the_cycle_without_asking_every_query(
    serve: collections.abc.Callable[..., FakePrometheus],
) -> None:
    prometheus = serve(fixed_reply(503, b"down", "text/plain"))
    result = await observer(prometheus.url, concurrency=1).evaluate([target("good")], NOW)
    assert not result.metrics_available
    assert len(prometheus.requests) == 1  # no retries, no further queries


async def test_prometheus_not_listening_means_metrics_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    before = errors("connection")
    result = await observer(f"http://127.0.0.1:{port}", concurrency=1).evaluate([target("good")], NOW)
    assert not result.metrics_available
    assert result.deployments == ()
    assert result.error is not None
    assert "(connection)" in result.error
    assert errors("connection") == before + 1


async def test_slow_prometheus_times_out_into_metrics_unavailable(
    serve: collections.abc.Callable[..., FakePrometheus],
) -> None:
    prometheus = serve(vector_reply(HEALTHY), delay=2.0)
    began = time.perf_counter()
    result = await observer(prometheus.url, query_timeout=0.2, connect_timeout=0.5).evaluate([target("good")], NOW)
    assert time.perf_counter() - began < 1.9
    assert not result.metrics_available
    assert result.error is not None
    assert "(timeout)" in result.error


async def test_cycle_deadline_bounds_the_whole_evaluation(serve: collections.abc.Callable[..., FakePrometheus]) -> None:
    prometheus = serve(vector_reply(HEALTHY), delay=1.0)
    began = time.perf_counter()
    result = await observer(prometheus.url, cycle_timeout=0.2).evaluate([target("good")], NOW)
    assert time.perf_counter() - began < 0.9
    assert not result.metrics_available
    assert result.error is not None
    assert "(deadline)" in result.error


async def test_slo_gauges_follow_the_last_cycle_and_vanish_when_prometheus_is_down(
    serve: collections.abc.Callable[..., FakePrometheus],
) -> None:
    up = serve(vector_reply(HEALTHY))
    watcher = observer(up.url)
    await watcher.evaluate([target("good"), target("bad")], NOW)
    assert sli_gauge("good") == pytest.approx(99.95)
    assert sli_gauge("bad", window="3d") == pytest.approx(70.0)
    assert prometheus_client.REGISTRY.get_sample_value("vigil_observe_metrics_available") == 1.0

    await watcher.evaluate([target("good")], NOW)  # "bad" was deleted
    assert sli_gauge("good") is not None
    assert sli_gauge("bad") is None

    watcher.url = serve(fixed_reply(503, b"down", "text/plain")).url
    await watcher.evaluate([target("good")], NOW)
    assert sli_gauge("good") is None
    assert prometheus_client.REGISTRY.get_sample_value("vigil_observe_metrics_available") == 0.0


async def test_the_next_cycle_asks_on_the_connections_kept_alive_by_the_last(
    serve: collections.abc.Callable[..., FakePrometheus],
) -> None:
    prometheus = serve(vector_reply(HEALTHY), keep_alive=True)
    watcher = observer(prometheus.url, concurrency=2)
    for _ in range(3):
        assert (await watcher.evaluate([target("good"), target("bad")], NOW)).metrics_available
    assert len(prometheus.seen) > 6  # several queries per lane and cycle
    assert len({s.port for s in prometheus.seen}) <= 2  # one connection per lane, for every cycle
    watcher.close()


async def test_a_lane_whose_query_failed_starts_the_next_cycle_on_a_new_connection(
    serve: collections.abc.Callable[..., FakePrometheus],
) -> None:
    healthy = vector_reply(HEALTHY)
    answers = {"reply": healthy}
    prometheus = serve(lambda expr: answers["reply"](expr), keep_alive=True)
    watcher = observer(prometheus.url, concurrency=1)
    assert (await watcher.evaluate([target("good")], NOW)).metrics_available
    answers["reply"] = fixed_reply(500, b"boom", "text/plain")
    assert not (await watcher.evaluate([target("good")], NOW)).metrics_available
    failed_on = prometheus.seen[-1].port
    answers["reply"] = healthy
    assert (await watcher.evaluate([target("good")], NOW)).metrics_available
    assert prometheus.seen[-1].port != failed_on
    watcher.close()


async def test_the_proxy_comes_from_the_environment_and_credentials_never_from_a_netrc_file(
    serve: collections.abc.Callable[..., FakePrometheus],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: pathlib.Path,
) -> None:
    proxy = serve(vector_reply(HEALTHY))  # answers a proxied request itself: enough to see it proxied
    netrc = tmp_path / "netrc"
    netrc.write_text("machine prometheus.invalid login someone password secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    watcher = observer("http://prometheus.invalid:9090")  # reachable through the proxy only
    assert (await watcher.evaluate([target("good")], NOW)).metrics_available
    assert {s.proxied_host for s in proxy.seen} == {"prometheus.invalid:9090"}
    assert {s.authorization for s in proxy.seen} == {None}
    watcher.close()

    monkeypatch.setenv("NO_PROXY", "prometheus.invalid")  # NO_PROXY as requests reads it: straight there
    assert not (await observer("http://prometheus.invalid:9090").evaluate([target("good")], NOW)).metrics_available


async def test_gauges_are_set_for_judged_reports_and_left_as_they_are_for_reused_ones(
    serve: collections.abc.Callable[..., FakePrometheus],
) -> None:
    answers = {"rates": HEALTHY}
    prometheus = serve(lambda expr: vector_reply(answers["rates"])(expr))
    watcher = observer(prometheus.url)
    await watcher.evaluate([target("good")], NOW)
    assert sli_gauge("good") == pytest.approx(99.95)
    marker = {"namespace": "ml", "modeldeployment": "good", "slo": "avail", "window": "5m"}
    metrics.SLI.labels(**marker).set(-1.0)  # to see whether the next cycle sets it
    await watcher.evaluate([target("good")], NOW + datetime.timedelta(seconds=5))  # reused: the same values
    assert sli_gauge("good") == -1.0
    answers["rates"] = {("ml", "good", "r1"): {F.SUCCESS: "990", F.FAILURE: "10"}}
    await watcher.evaluate([target("good")], NOW + datetime.timedelta(seconds=10))  # judged: new values
    assert sli_gauge("good") == pytest.approx(99.0)
    up = watcher.url
    watcher.url = serve(fixed_reply(503, b"down", "text/plain")).url
    await watcher.evaluate([target("good")], NOW + datetime.timedelta(seconds=15))  # an outage: no gauges
    assert sli_gauge("good") is None
    watcher.url = up
    reused = judgements("reused")
    await watcher.evaluate([target("good")], NOW + datetime.timedelta(seconds=20))
    assert judgements("reused") == reused + 1  # the report from before the outage, reused...
    assert sli_gauge("good") == pytest.approx(99.0)  # ...and its gauges published again


async def test_loop_and_query_durations_are_observed(serve: collections.abc.Callable[..., FakePrometheus]) -> None:
    def total(name: str) -> float:
        return prometheus_client.REGISTRY.get_sample_value(f"{name}_count") or 0.0

    loops, queries = total("vigil_observe_loop_duration_seconds"), total("vigil_prometheus_query_duration_seconds")
    result = await observer(serve(vector_reply(HEALTHY)).url).evaluate([target("good")], NOW)
    assert total("vigil_observe_loop_duration_seconds") == loops + 1
    assert total("vigil_prometheus_query_duration_seconds") == queries + result.queries


def test_observer_refuses_zero_concurrency() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        fleet.FleetObserver("http://127.0.0.1:9090", concurrency=0)


# --- one bad target never blinds the fleet ---------------------------------------------------------

WITH_BROKEN: Rates = {**HEALTHY, ("ml", "broken", "r1"): dict(HEALTHY[("ml", "good", "r1")])}


def broken(**update: object) -> slo.Target:
    """A target whose SLO the models would refuse (it got past them): only its fields are changed."""
    healthy = target("broken")
    return dataclasses.replace(healthy, slos=(healthy.slos[0].model_copy(update=update),))


async def test_a_zero_period_no_longer_divides_by_zero_and_its_neighbour_is_judged(
    serve: collections.abc.Callable[..., FakePrometheus],
) -> None:
    result = await observer(serve(vector_reply(WITH_BROKEN)).url).evaluate([broken(period="0s"), target("good")], NOW)
    assert result.metrics_available
    assert result.failures == ()
    good, zero = result.deployment("ml", "good"), result.deployment("ml", "broken")
    assert good is not None
    assert zero is not None
    assert good.slos[0].state is S.MET
    assert zero.slos[0].budget_remaining is None


@pytest.mark.parametrize(
    ("update", "stage", "error"),
    [
        ({"period": "soon"}, "planning its queries", "ValueError"),
        ({"objective": 100.0}, "judging its SLOs", "ZeroDivisionError"),
    ],
    ids=["unreadable-period", "objective-100"],
)
async def test_a_target_that_breaks_the_maths_fails_alone_and_the_others_are_judged(
    serve: collections.abc.Callable[..., FakePrometheus], update: dict[str, object], stage: str, error: str
) -> None:
    alone = await observer(serve(vector_reply(WITH_BROKEN)).url).evaluate([target("good"), target("bad")], NOW)
    result = await observer(serve(vector_reply(WITH_BROKEN)).url).evaluate(
        [target("good"), broken(**update), target("bad")], NOW
    )
    assert result.metrics_available
    assert result.error is None
    assert result.deployment("ml", "broken") is None
    failure = result.failure("ml", "broken")
    assert failure is not None
    assert failure.startswith(f"{stage} failed: {error}")
    assert result.failure("ml", "good") is None
    assert [d.name for d in result.deployments] == ["good", "bad"]
    assert [d.slos for d in result.deployments] == [d.slos for d in alone.deployments]


async def test_an_unexpected_error_of_the_cycle_is_a_cycle_without_verdicts_not_a_stale_one(
    serve: collections.abc.Callable[..., FakePrometheus], monkeypatch: pytest.MonkeyPatch
) -> None:
    def bug(*args: object, **kwargs: object) -> slo.FleetPlan:
        raise RuntimeError("a bug in planning")

    monkeypatch.setattr(slo, "plan_fleet", bug)
    result = await observer(serve(vector_reply(HEALTHY)).url).evaluate([target("good")], NOW)
    assert not result.metrics_available
    assert result.deployments == ()
    assert result.error == "the evaluation failed: RuntimeError: a bug in planning"
    assert prometheus_client.REGISTRY.get_sample_value("vigil_observe_metrics_available") == 0.0


async def test_a_shard_asks_prometheus_only_for_its_own_namespaces_and_a_cluster_wide_operator_for_all(
    serve: collections.abc.Callable[..., FakePrometheus],
) -> None:
    targets = [dataclasses.replace(target("a"), namespace="team-a"), dataclasses.replace(target("b"), namespace="ml")]
    prometheus = serve(vector_reply(HEALTHY))
    shard = fleet.FleetObserver(prometheus.url, settings=SETTINGS, scoped=True)
    assert (await shard.evaluate(targets, NOW)).metrics_available
    assert prometheus.requests
    assert all('namespace=~"ml|team-a"' in r["query"] for r in prometheus.requests)

    everyone = serve(vector_reply(HEALTHY))
    assert (await observer(everyone.url).evaluate(targets, NOW)).metrics_available
    assert not any("namespace=~" in r["query"] for r in everyone.requests)


def judgements(outcome: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value("vigil_observe_judgements_total", {"outcome": outcome}) or 0.0


async def test_a_deployment_whose_answers_did_not_change_is_reused_the_next_cycle_as_a_full_judgement_would_be(
    serve: collections.abc.Callable[..., FakePrometheus],
) -> None:
    prometheus = serve(vector_reply(HEALTHY))
    watcher = observer(prometheus.url)
    targets = [target("good"), target("bad")]
    await watcher.evaluate(targets, NOW)
    reused, judged = judgements("reused"), judgements("judged")
    later = NOW + datetime.timedelta(seconds=5)
    result = await watcher.evaluate(targets, later)
    assert (judgements("reused") - reused, judgements("judged") - judged) == (2, 0)
    answers, failure = await watcher.query(slo.query_plan(targets, later, SETTINGS), later)
    assert failure is None
    assert list(result.deployments) == [slo.evaluate(t, answers, later, SETTINGS) for t in targets]
    assert result.deployments[0].slos[0].last_evaluation_time == conditions.rfc3339(later)
