"""End to end: scale-out sized from the measured demand, on a load that keeps rising.

A ``scaleOut`` step with ``targetUtilization`` sizes each round from what Triton reports through
the real Prometheus (request rate, GPU utilisation, the queue's growth), not from a fixed step.
The load then rises in three stages:

1. calm -> surge: rounds sized for the surge's demand;
2. the load rises again while a round is still being verified: Breached on fresh data with the
   fresh demand needing more replicas, the next round starts before ``verifyAt``;
3. after the incident resolved, it rises once more: the new breach's scale-out is not held by
   the 10-minute cooldown; it waives it, says so (timeline and Event), and sizes for the demand
   ahead along its measured rise (the runbook now has ``sizeAhead``).

A second deployment follows a rising load with ``sizeAhead``: after its first round holds (the
SLO Met on fresh data), the load rises past the round's target utilisation without breaching
the SLO; the next round starts then, before ``verifyAt`` and before any new breach.

Beside it, ahead of any breach (``spec.headroom``): two deployments of 2 replicas whose load rises
to 80 % of their capacity (the SLO stays Met) while 70 % is their runbook's target. ``ahead`` opts
in: it scales out to 3 before any breach, in a headroom Incident, and its give-back holds the 3
while the demand needs them (the demand floor), then returns them once the load is calm again.
``still`` does not opt in: nothing happens.

Serial lane: the sizing reads ``nv_gpu_utilization``, which only GPU pods have (as on a real
Triton), so the pods hold one GPU each (at most 10, on any node).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from tests.e2e import events, fleet, waiting
from tests.e2e.operator_fixtures import OperatorProcess
from tests.e2e.test_heal import create_runbook, resolved
from tests.e2e.test_modeldeployment import GROUP, VERSION, condition, create, get, manifest
from tests.e2e.test_observe import incidents
from vigil.sim import client as simclient

pytestmark = pytest.mark.e2e

QUEUE = {
    "name": "queue",
    "kind": "queueTime",
    "thresholdMs": 100,
    "period": "1h",
    "windows": [{"long": "40s", "short": "20s", "factor": 1.0, "severity": "page"}],
}
# One replica: 20 req/s over 5 slots of 250 ms. 5 req/s is 25 % of one replica (an overloaded
# replica completes at most 4x that: the surge shows in its served rate); at 70 % of a
# replica, 30 req/s needs ceil(30 / 14) = 3 replicas (a fixed step of 1 would add one), 70 needs
# 5; 150 req/s overloads even 7 replicas and needs 11, capped at the ceiling of 10.
CAPACITY, LATENCY_MS = 20.0, 250.0
CALM, SURGE, HIGHER, HIGHEST = 5.0, 30.0, 70.0, 150.0
PARAMS = {"stepReplicas": 1, "targetUtilization": 70}
RUNBOOK: dict[str, Any] = {
    "triggers": [{"slo": "queue", "causes": ["LoadSurge"]}],
    "steps": [{"name": "scale-out", "action": "scaleOut", "params": PARAMS, "verifyAfter": "60s"}],
}
SIZED = re.compile(r"needs (\d+) replicas at 70% utilisation")


def served(sim: simclient.ControlClient, ns: str, name: str) -> int:
    return sum(p["success"] for p in sim.state()["pods"] if p.get("namespace") == ns and p["modeldeployment"] == name)


def intents(incident: dict[str, Any]) -> list[str]:
    return [e["message"] for e in incident["status"]["timeline"] if e["type"] == "Intent"]


def scale_to(message: str) -> int:
    found = re.match(r"scale to (\d+) replicas", message)
    assert found is not None, message
    return int(found.group(1))


def sized_rounds(rounds: list[str], start: int, ceiling: int) -> list[int]:
    """The targets of demand-sized rounds, each checked against the rule: at least one more than
    before, as many as the measured demand needs, at most the ceiling."""
    targets: list[int] = []
    current = start
    for message in rounds:
        sized = SIZED.search(message)
        assert sized is not None, f"every round is sized from the demand: {message}"
        target = scale_to(message)
        assert target == min(ceiling, max(current + 1, int(sized.group(1)))), message
        targets.append(target)
        current = target
    return targets


def entries(incident: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in incident["status"]["timeline"] if e["type"] == kind]


def only(kube: client.ApiClient, ns: str, md: str | None = None) -> dict[str, Any] | None:
    """The one incident in ``ns`` (of ModelDeployment ``md``, if given), else None."""
    found = [i for i in incidents(kube, ns) if md is None or i["spec"]["modelDeployment"] == md]
    return found[0] if len(found) == 1 else None


def explained(kube: client.ApiClient, ns: str) -> Callable[[], object]:
    """What the incidents said, for a Timeout's message: diagnosis and the timeline's last entries."""

    def summary() -> object:
        return [
            (
                i["metadata"]["name"],
                (i.get("status") or {}).get("phase"),
                ((i.get("status") or {}).get("diagnosis") or {}).get("summary"),
                [(e["type"], e["message"][:160]) for e in (i.get("status") or {}).get("timeline", [])[-6:]],
            )
            for i in incidents(kube, ns)
        ]

    return summary


def test_a_rising_load_is_scaled_for_its_measured_demand_round_after_round(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess, sim: simclient.ControlClient
) -> None:
    create_runbook(kube, namespace, "demand", RUNBOOK)
    sim.set_fault({"namespace": namespace, "name": "ramp", "capacity": CAPACITY, "baseLatencyMs": LATENCY_MS})
    create(kube, namespace, manifest("ramp", replicas=1, maxReplicas=10, slos=[QUEUE], runbookRef={"name": "demand"}))
    waiting.until(
        lambda: (condition(get(kube, namespace, "ramp"), "Available") or {}).get("status") == "True", 120, "Available"
    )
    sim.set_load({"namespace": namespace, "name": "ramp", "rate": CALM})
    # A baseline for diagnosis: a minute of calm traffic, judged Met.
    waiting.until(lambda: served(sim, namespace, "ramp") >= 60 * CALM, 150, "a minute of calm traffic")
    waiting.until(
        lambda: [s["state"] for s in get(kube, namespace, "ramp")["status"].get("slos", [])] == ["Met"], 60, "SLO Met"
    )

    # 1. The surge: a round sized from the demand Prometheus measured.
    sim.set_load({"namespace": namespace, "name": "ramp", "rate": SURGE})

    def verifying() -> dict[str, Any] | None:
        incident = only(kube, namespace)
        steps = ((incident or {}).get("status") or {}).get("plan", {}).get("steps", [])
        return incident if steps and steps[0]["state"] == "Verifying" and steps[0].get("judgedFrom") else None

    try:
        waiting.until(verifying, 180, "the first round to take effect")
    except waiting.Timeout as timeout:
        raise AssertionError(f"{timeout}; incidents: {explained(kube, namespace)()}") from timeout

    # 2. The load rises again while that round is verified (verifyAfter 60s).
    sim.set_load({"namespace": namespace, "name": "ramp", "rate": HIGHER})
    try:
        first = waiting.until(lambda: resolved(kube, namespace), 300, "the incident to resolve")
    except waiting.Timeout as timeout:
        raise AssertionError(f"{timeout}; incidents: {explained(kube, namespace)()}") from timeout
    assert first["status"]["diagnosis"]["cause"] == "LoadSurge"
    rounds = intents(first)
    targets = sized_rounds(rounds, start=1, ceiling=10)
    assert len(targets) >= 2, rounds
    assert first["status"]["plan"]["steps"][0]["target"]["sizedFor"].startswith("demand "), first
    early = [e for e in entries(first, "Verified") if e["message"].startswith("SLO Breached on data from")]
    assert early, entries(first, "Verified")
    # It came before the round's verifyAt, named in the Effective entry of the round before it.
    effective = [e for e in entries(first, "Effective") if e["time"] <= early[0]["time"]]
    verify_at = re.search(r", at (\S+)$", effective[-1]["message"])
    assert verify_at is not None, effective
    assert early[0]["time"] < verify_at.group(1), (early[0], effective[-1])
    assert "next round" in early[0]["message"]
    target = targets[-1]
    assert target >= 5, f"70 req/s needs 5 replicas at 70 %: {rounds}"

    # 3. It rises once more after the plan ended: a new breach within the 10m cooldown. The runbook
    # now sizes rounds 60s ahead along the measured rise (the ready-made and built-in runbooks' way).
    ahead = {**RUNBOOK, "steps": [{**RUNBOOK["steps"][0], "params": {**PARAMS, "sizeAhead": "60s"}}]}
    client.CustomObjectsApi(kube).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "runbooks", "demand", {"spec": ahead}
    )
    sim.set_load({"namespace": namespace, "name": "ramp", "rate": HIGHEST})

    def second_acted() -> dict[str, Any] | None:
        newer = [i for i in incidents(kube, namespace) if i["metadata"]["name"] != first["metadata"]["name"]]
        return next((i for i in newer if intents(i)), None)

    try:
        second = waiting.until(second_acted, 240, "the new breach's scale-out")
    except waiting.Timeout as timeout:
        raise AssertionError(f"{timeout}; incidents: {explained(kube, namespace)()}") from timeout
    waived = [e["message"] for e in entries(second, "CooldownWaived")]
    assert len(waived) == 1, second["status"]["timeline"]
    assert "waived: the SLO breached again after the last plan ended" in waived[0]
    more = sized_rounds(intents(second), start=target, ceiling=10)[-1]
    assert more > target, (target, intents(second))
    sized_for = second["status"]["plan"]["steps"][0]["target"]["sizedFor"]
    assert re.search(r", rising [\d.]+ req/s per second: [\d.]+ req/s 60s ahead at ", sized_for), sized_for
    md = waiting.until(
        lambda: (m := get(kube, namespace, "ramp"))["status"].get("readyReplicas", 0) >= more and m,
        120,
        "the new replicas ready",
    )
    assert md["spec"]["replicas"] == 1, "the user's spec is never written"
    waiting.until(
        lambda: any(
            e.reason == "CooldownWaived"
            for e in client.CoreV1Api(kube)
            .list_namespaced_event(namespace, field_selector="involvedObject.name=ramp")
            .items
        ),
        30,
        "a CooldownWaived Event on the ModelDeployment",
    )


# Looser than QUEUE: 3 replicas at 77.5 % keep the queue well under 300 ms (M/M/5: ~0.1 s), while
# at 70 % they need a fourth replica. The surge (150 % of one replica) still breaches it.
FOLLOW_QUEUE = {**QUEUE, "thresholdMs": 300}
FOLLOW_PARAMS = {**PARAMS, "sizeAhead": "60s"}
FOLLOW_RUNBOOK: dict[str, Any] = {
    "triggers": [{"slo": "queue", "causes": ["LoadSurge"]}],
    "steps": [{"name": "scale-out", "action": "scaleOut", "params": FOLLOW_PARAMS, "verifyAfter": "120s"}],
}
BUSY_BUT_MET = 0.775
"""Of the running replicas' capacity: above the 70 % target, below what breaches FOLLOW_QUEUE."""


AHEAD_RUNBOOK: dict[str, Any] = {
    "triggers": [{"slo": "queue", "causes": ["LoadSurge"]}],
    "steps": [{"name": "scale-out", "action": "scaleOut", "params": PARAMS, "verifyAfter": "20s"}],
}
RISE = 2 * CAPACITY * 0.8
"""ahead's and still's load: 80 % of 2 replicas (each an M/M/5 at 250 ms: ~140 ms mean queue time),
114 % of what they carry at the 70 % target: 3 wanted."""
AHEAD_QUEUE = {**QUEUE, "thresholdMs": 1000}
"""Far above RISE's queue time (whose 20 s averages swing to 300 ms and more at 80 % busy): a healthy
deployment under a rising load, whose demand alone says it needs another replica."""
HEADROOM = ("ahead", "still")


def test_a_sized_ahead_round_is_followed_by_the_next_when_the_rising_demand_outgrows_it_before_a_breach(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess, sim: simclient.ControlClient
) -> None:
    create_runbook(kube, namespace, "follow", FOLLOW_RUNBOOK)
    create_runbook(kube, namespace, "ahead", AHEAD_RUNBOOK)
    for name in ("follow", *HEADROOM):
        sim.set_fault({"namespace": namespace, "name": name, "capacity": CAPACITY, "baseLatencyMs": LATENCY_MS})
    create(
        kube,
        namespace,
        manifest("follow", replicas=1, maxReplicas=10, slos=[FOLLOW_QUEUE], runbookRef={"name": "follow"}),
    )
    for name in HEADROOM:
        body = manifest(
            name,
            replicas=2,
            maxReplicas=4,
            slos=[AHEAD_QUEUE],
            runbookRef={"name": "ahead"},
            giveBack={"stabilizationWindow": "30s", "interval": "20s"},
            headroom={"enabled": name == "ahead"},
        )
        create(kube, namespace, body)
    with fleet.Recorder(kube, namespace) as recorder:
        _follow_and_ahead(kube, namespace, sim, recorder)


def _follow_and_ahead(
    kube: client.ApiClient, namespace: str, sim: simclient.ControlClient, recorder: fleet.Recorder
) -> None:
    for name in ("follow", *HEADROOM):
        waiting.until(
            lambda name=name: (condition(get(kube, namespace, name), "Available") or {}).get("status") == "True",  # type: ignore[misc]
            120,
            f"{name} Available",
        )
        sim.set_load({"namespace": namespace, "name": name, "rate": CALM})
    waiting.until(lambda: served(sim, namespace, "follow") >= 60 * CALM, 150, "a minute of calm traffic")
    waiting.until(
        lambda: all(
            [s["state"] for s in get(kube, namespace, name)["status"].get("slos", [])] == ["Met"] for name in HEADROOM
        ),
        60,
        "ahead and still Met",
    )
    sim.set_load({"namespace": namespace, "name": "follow", "rate": SURGE})
    for name in HEADROOM:
        sim.set_load({"namespace": namespace, "name": name, "rate": RISE})

    def held() -> dict[str, Any] | None:
        """The incident once a round took effect and the SLO is Met on data from after it."""
        incident = only(kube, namespace, "follow")
        steps = ((incident or {}).get("status") or {}).get("plan", {}).get("steps", [])
        if not steps or steps[0]["state"] != "Verifying" or not steps[0].get("judgedFrom"):
            return None
        slos = get(kube, namespace, "follow")["status"].get("slos", [])
        return incident if [s["state"] for s in slos] == ["Met"] else None

    try:
        incident = waiting.until(held, 240, "a round to hold the SLO")
    except waiting.Timeout as timeout:
        raise AssertionError(f"{timeout}; incidents: {explained(kube, namespace)()}") from timeout
    _scaled_ahead(kube, namespace, sim, recorder)
    before = intents(incident)
    running = sized_rounds(before, start=1, ceiling=10)[-1]
    assert running < 10, before

    # The load rises past the round's 70 % target, but not into a breach.
    sim.set_load({"namespace": namespace, "name": "follow", "rate": running * CAPACITY * BUSY_BUT_MET})

    def followed() -> dict[str, Any] | None:
        found = only(kube, namespace, "follow")
        return found if found is not None and len(intents(found)) > len(before) else None

    try:
        incident = waiting.until(followed, 120, "the next round")
    except waiting.Timeout as timeout:
        raise AssertionError(f"{timeout}; incidents: {explained(kube, namespace)()}") from timeout
    verified = entries(incident, "Verified")
    assert verified, incident["status"]["timeline"]
    why = verified[-1]["message"]
    assert re.match(
        r"SLO (Met|Warning) on data from \S+ on, but the demand outgrew the round before it breached: ", why
    )
    assert re.search(r"demand [\d.]+ req/s over \d+s, rising [\d.]+ req/s per second: [\d.]+ req/s now at ", why), why
    assert f"({running} running)" in why, why
    assert why.endswith(": next round"), why
    effective = [e for e in entries(incident, "Effective") if e["time"] <= verified[-1]["time"]][-1]
    verify_at = re.search(r", at (\S+)$", effective["message"])
    assert verify_at is not None, effective
    assert verified[-1]["time"] < verify_at.group(1), (verified[-1], effective)
    assert sized_rounds(intents(incident), start=1, ceiling=10)[-1] > running, intents(incident)
    assert get(kube, namespace, "follow")["spec"]["replicas"] == 1, "the user's spec is never written"
    _ahead_given_back(kube, namespace, recorder)


def _headroom_incidents(kube: client.ApiClient, ns: str, name: str) -> list[dict[str, Any]]:
    return fleet.incidents_by_md(kube, ns).get(name, [])


def _scaled_ahead(kube: client.ApiClient, ns: str, sim: simclient.ControlClient, recorder: fleet.Recorder) -> None:
    """ahead scaled out to 3 before any breach; its give-back holds them while the demand needs them."""
    seen: dict[str, Any] = {}

    def held() -> dict[str, Any] | None:
        md = get(kube, ns, "ahead")
        seen.update(headroom=condition(md, "Headroom"), slos=md["status"].get("slos"))
        found = _headroom_incidents(kube, ns, "ahead")
        timeline = found[0]["status"].get("timeline", []) if len(found) == 1 else []
        holding = any(e["type"] == "GiveBackHolding" and "measured demand needs 3" in e["message"] for e in timeline)
        return found[0] if holding and md["status"].get("readyReplicas") == 3 else None

    try:
        incident = waiting.until(held, 180, "ahead scaled out before a breach and held by the demand")
    except waiting.Timeout as timeout:
        raise AssertionError(f"{timeout}: {seen}; incidents: {explained(kube, ns)()}") from timeout
    assert incident["spec"]["trigger"] == "Headroom", incident["spec"]
    rounds = intents(incident)
    assert len(rounds) == 1, rounds  # recorded before it acted, carried out once
    assert sized_rounds(rounds, start=2, ceiling=4) == [3], rounds
    assert incident["status"]["phase"] == "Resolved", incident["status"]
    scale_out = events.posted(kube, ns, "ahead", "HeadroomScaleOut")
    assert all("scaling out ahead of a breach of SLO queue" in e.message for e in scale_out), scale_out
    assert "Breached" not in recorder.history.slo_states["ahead"], recorder.history.slo_states["ahead"]
    sim.set_load({"namespace": ns, "name": "ahead", "rate": CALM})
    # still: the same load without the opt-in: no incident, no scale-out, and no breach either.
    assert _headroom_incidents(kube, ns, "still") == []
    still = get(kube, ns, "still")
    assert "scale" not in still["status"], still["status"]
    assert condition(still, "Headroom") is None
    assert "Breached" not in recorder.history.slo_states["still"], recorder.history.slo_states["still"]


def _ahead_given_back(kube: client.ApiClient, ns: str, recorder: fleet.Recorder) -> None:
    def returned() -> dict[str, Any] | None:
        found = _headroom_incidents(kube, ns, "ahead")
        record = (found[0]["status"].get("giveBack") or {}) if len(found) == 1 else {}
        return record if record.get("phase") in ("Returned", "Stopped") else None

    try:
        record = waiting.until(returned, 180, "ahead's replicas given back")
    except waiting.Timeout as timeout:
        raise AssertionError(f"{timeout}; incidents: {explained(kube, ns)()}") from timeout
    assert record["phase"] == "Returned", record
    md = get(kube, ns, "ahead")
    assert "scale" not in md["status"], md["status"]
    assert md["spec"]["replicas"] == 2, "the user's spec is never written"
    revision = md["status"]["currentRevision"]
    assert recorder.history.replicas[f"ahead-{revision}"] == [2, 3, 2], recorder.history.replicas
    assert "Breached" not in recorder.history.slo_states["ahead"], recorder.history.slo_states["ahead"]
    assert [i["spec"]["trigger"] for i in _headroom_incidents(kube, ns, "ahead")] == ["Headroom"]
    still = get(kube, ns, "still")
    assert recorder.history.replicas[f"still-{still['status']['currentRevision']}"] == [2]
    assert _headroom_incidents(kube, ns, "still") == []
