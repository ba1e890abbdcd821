"""The simulator's queue on the sandbox: at LLM-like rates, Prometheus sees the M/M/1 queue time.

The simulator used to estimate congestion from a 1-second average of arrivals, which at a few
requests per second per replica gave 4-7 times the queue time a real server has, and so breaches
a real server would not. Here four CPU-only kwok pods (no GPU: the serial lane counts free GPUs)
each get Poisson traffic at 5 req/s with one execution slot of 10 req/s (utilisation 50 %), and
the average queue time that the lane's own Prometheus computes from Triton's counters, the way
vigil's queue-time SLO does, must be the Erlang C (here M/M/1) value within 25 %. About 3 minutes.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from typing import Any

import kubernetes.client
import pytest

from tests.e2e import simpods, waiting
from tests.e2e.own_prometheus import OwnPrometheus
from vigil.dev import sandbox as sandbox_mod
from vigil.sim import client, queueing

pytestmark = [pytest.mark.e2e, pytest.mark.isolated]

MD = "queue"
REPLICAS = 4
PER_REPLICA_RATE = 5.0
CAPACITY = 10.0
WINDOW_SECONDS = 120


def query(prometheus_url: str, expr: str) -> float | None:
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        result: list[Any] = json.loads(response.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_queue_time_at_five_requests_per_second_per_replica_is_the_mm1_value(
    sandbox: sandbox_mod.SandboxInfo,
    kube: kubernetes.client.ApiClient,
    namespace: str,
    own_prometheus: OwnPrometheus,
    record_property: Any,
) -> None:
    control = client.ControlClient(sandbox.simulator_url)
    control.set_fault({"namespace": namespace, "name": MD, "capacity": CAPACITY, "concurrency": 1, "serviceCv": 1})
    simpods.deploy(kube, namespace, MD, REPLICAS, gpus=0)
    waiting.until(lambda: len(simpods.ready_pods(kube, namespace, MD)) == REPLICAS, 180, f"{REPLICAS} Ready pods")
    selector = f'{{namespace="{namespace}", modeldeployment="{MD}"}}'
    waiting.until(
        lambda: query(own_prometheus.url, f"count(nv_inference_request_success{selector})") == REPLICAS,
        120,
        "Prometheus to scrape every pod",
    )
    control.set_load({"namespace": namespace, "name": MD, "rate": REPLICAS * PER_REPLICA_RATE})
    try:
        started = time.monotonic()
        window = f"{WINDOW_SECONDS}s"
        expr = (
            f"sum(increase(nv_inference_queue_duration_us{selector}[{window}])) "
            f"/ sum(increase(nv_inference_request_success{selector}[{window}])) / 1e6"
        )
        # A full window of traffic, plus two scrapes for its last samples to land.
        waiting.until(
            lambda: time.monotonic() - started >= WINDOW_SECONDS + 10, WINDOW_SECONDS + 60, "a window of traffic"
        )
        measured = waiting.until(lambda: query(own_prometheus.url, expr), 60, f"the queue time: {expr}")
    finally:
        control.stop_load(namespace, MD)
        control.clear_faults(namespace, MD)
    expected = queueing.erlang_c_wait(PER_REPLICA_RATE, 1.0 / CAPACITY, 1)  # 0.5 / (10 - 5) = 100 ms
    record_property("sim-queue", f"{measured * 1000:.1f} ms measured, {expected * 1000:.1f} ms M/M/1")
    assert measured == pytest.approx(expected, rel=0.25), f"queue time {measured * 1000:.1f} ms"
