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

A second test follows a rising load with ``sizeAhead``: after its first round holds (the SLO Met
on fresh data), the load rises past the round's target utilisation without breaching the SLO;
the next round starts then, before ``verifyAt`` and before any new breach.

A third scales out ahead of any breach (``spec.headroom``): two deployments of 2 replicas get the
same load, rising first past their runbook's 70 % target (80 % busy, no breach), then to 97.5 %
busy. ``ahead`` opts in: it scales out to 3 in a headroom Incident before ``still`` (not opted in)
breaches under that load and opens an ordinary incident; ``ahead`` never breaches. Its plan acts
once across a SIGKILL of the operator, and its give-back holds the 3 while the demand needs them
(the demand floor), then returns them once it is calm. ``owned`` opts in too, but an HPA owns its
replica count (the scale subresource): headroom holds and adds nothing.

Serial lane: the sizing reads ``nv_gpu_utilization``, which only GPU pods have (as on a real
Triton), so the pods hold one GPU each (at most 10, on any node).
"""

from __future__ import annotations

import datetime
import random
import re
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from tests.e2e import events, fleet, waiting
from tests.e2e.operator_fixtures import OperatorProcess
from tests.e2e.test_giveback import apply_hpa
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


def only(kube: client.ApiClient, ns: str) -> dict[str, Any] | None:
    """The one incident in ``ns``, else None."""
    found = incidents(kube, ns)
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


def available_and_calm(
    kube: client.ApiClient, ns: str, sim: simclient.ControlClient, names: tuple[str, ...], seconds: float
) -> None:
    """Each deployment Available, then ``seconds`` of calm traffic (a baseline for diagnosis and for
    the demand's trend), its SLO judged Met."""
    for name in names:
        waiting.until(
            lambda name=name: (condition(get(kube, ns, name), "Available") or {}).get("status") == "True",  # type: ignore[misc]
            120,
            f"{name} Available",
        )
        sim.set_load({"namespace": ns, "name": name, "rate": CALM})
    waiting.until(
        lambda: all(served(sim, ns, name) >= seconds * CALM for name in names), 60 + seconds, f"{seconds:.0f}s of calm"
    )
    waiting.until(
        lambda: all([s["state"] for s in get(kube, ns, name)["status"].get("slos", [])] == ["Met"] for name in names),
        60,
        "every SLO Met",
    )


def test_a_sized_ahead_round_is_followed_by_the_next_when_the_rising_demand_outgrows_it_before_a_breach(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess, sim: simclient.ControlClient
) -> None:
    create_runbook(kube, namespace, "follow", FOLLOW_RUNBOOK)
    sim.set_fault({"namespace": namespace, "name": "follow", "capacity": CAPACITY, "baseLatencyMs": LATENCY_MS})
    create(
        kube,
        namespace,
        manifest("follow", replicas=1, maxReplicas=10, slos=[FOLLOW_QUEUE], runbookRef={"name": "follow"}),
    )
    available_and_calm(kube, namespace, sim, ("follow",), 60)
    sim.set_load({"namespace": namespace, "name": "follow", "rate": SURGE})

    def held() -> dict[str, Any] | None:
        """The incident once a round took effect and the SLO is Met on data from after it."""
        incident = only(kube, namespace)
        steps = ((incident or {}).get("status") or {}).get("plan", {}).get("steps", [])
        if not steps or steps[0]["state"] != "Verifying" or not steps[0].get("judgedFrom"):
            return None
        slos = get(kube, namespace, "follow")["status"].get("slos", [])
        return incident if [s["state"] for s in slos] == ["Met"] else None

    try:
        incident = waiting.until(held, 240, "a round to hold the SLO")
    except waiting.Timeout as timeout:
        raise AssertionError(f"{timeout}; incidents: {explained(kube, namespace)()}") from timeout
    before = intents(incident)
    running = sized_rounds(before, start=1, ceiling=10)[-1]
    assert running < 10, before

    # The load rises past the round's 70 % target, but not into a breach.
    sim.set_load({"namespace": namespace, "name": "follow", "rate": running * CAPACITY * BUSY_BUT_MET})

    def followed() -> dict[str, Any] | None:
        found = only(kube, namespace)
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


AHEAD_RUNBOOK: dict[str, Any] = {
    "triggers": [{"slo": "queue", "causes": ["LoadSurge"]}],
    "steps": [{"name": "scale-out", "action": "scaleOut", "params": PARAMS, "verifyAfter": "20s"}],
}
# Two replicas, each an M/M/5 at 250 ms (Erlang C mean queue time): RISING (80 % busy, ~140 ms)
# is 114 % of what they carry at the 70 % target, beyond the 10 % tolerance; RISEN (97.5 % busy,
# ~1.9 s) breaches AHEAD_QUEUE within a minute or two, and needs 2.8 replicas at 70 %, which
# 3 carry at 65 % busy (~45 ms). AHEAD_QUEUE's 500 ms is above what the 20 s and 40 s averages
# reach at 80 % busy (the simulator's queue, 20 runs: at most 285 ms over 135 s), so the breach
# comes from RISEN alone (a Monte Carlo of vigil.sim.queueing with 5 s samples, as scraped).
# maxReplicas 3: on the rise to RISEN a second headroom round may follow the first (3 -> 4, as on
# a ramp), which is the follow test's matter, not this one's.
RISING, RISEN = 2 * CAPACITY * 0.8, 2 * CAPACITY * 0.975
RISING_SECONDS, RISEN_SECONDS = 45.0, 300.0
AHEAD_QUEUE = {**QUEUE, "thresholdMs": 500}
HEADROOM = ("ahead", "still")
OWNED = "owned"
"""Opted in too, but an HPA owns its ``spec.replicas`` (through the scale subresource): it gets
RISING, which outgrows its 70 % target as it does ahead's, until ahead scaled out on it; then calm."""


def rising_trace() -> str:
    """The load ``ahead`` and ``still`` both get, as a trace of arrival times (seconds): Poisson at
    RISING for RISING_SECONDS, then at RISEN. A trace, so that both get the same arrivals on the
    same schedule, whatever the operator does."""
    draw = random.Random(11)
    lines, moment = ["timestamp"], 0.0
    while True:
        moment += draw.expovariate(RISING if moment < RISING_SECONDS else RISEN)
        if moment >= RISING_SECONDS + RISEN_SECONDS:
            return "\n".join(lines) + "\n"
        lines.append(f"{moment:.4f}")


def test_headroom_scales_out_on_the_rising_demand_before_the_breach_it_brings_to_a_deployment_not_opted_in(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess, sim: simclient.ControlClient
) -> None:
    """``ahead`` and ``still``, 2 replicas each, get the same rising load. ``ahead`` opted in
    (``spec.headroom``): it scales out to 3 in a headroom Incident once the demand outgrows the
    70 % target, before ``still`` (not opted in) breaches under that load in an ordinary incident;
    ``ahead`` never breaches. Its give-back holds the 3 while the demand needs them (the demand
    floor) and returns them once the load is calm. The operator is SIGKILLed and restarted while
    ahead's headroom plan runs: it resumes, acting once. ``owned`` opted in as well, but an HPA sets its
    replicas through the scale subresource: under the load that ahead scaled out on, headroom
    holds, naming that owner, and adds nothing."""
    create_runbook(kube, namespace, "ahead", AHEAD_RUNBOOK)
    for name in (*HEADROOM, OWNED):
        sim.set_fault({"namespace": namespace, "name": name, "capacity": CAPACITY, "baseLatencyMs": LATENCY_MS})
        body = manifest(
            name,
            replicas=1 if name == OWNED else 2,
            maxReplicas=3,
            slos=[AHEAD_QUEUE],
            runbookRef={"name": "ahead"},
            giveBack={"stabilizationWindow": "30s", "interval": "20s"},
            headroom={"enabled": name != "still"},
        )
        create(kube, namespace, body)
    apply_hpa(kube, namespace, OWNED, min_replicas=2)  # the HPA controller writes spec.replicas 2 via /scale
    with fleet.Recorder(kube, namespace) as recorder:
        available_and_calm(kube, namespace, sim, (*HEADROOM, OWNED), 30)
        waiting.until(
            lambda: get(kube, namespace, OWNED)["status"].get("readyReplicas") == 2, 60, "the HPA's 2 replicas ready"
        )
        trace = rising_trace()
        rose = datetime.datetime.now(datetime.UTC)
        for name in HEADROOM:
            sim.set_load({"namespace": namespace, "name": name, "csv": trace})
        sim.set_load({"namespace": namespace, "name": OWNED, "rate": RISING})
        killed = _killed_mid_plan(kube, namespace, operator)
        _owned_held(kube, namespace, recorder)
        sim.set_load({"namespace": namespace, "name": OWNED, "rate": CALM})
        ahead, breach = _ahead_of_the_breach(kube, namespace, recorder)
        sim.set_load({"namespace": namespace, "name": "ahead", "rate": CALM})
        calmed = datetime.datetime.now(datetime.UTC)
        returned = _ahead_given_back(kube, namespace, recorder, calmed)
    # The measured moments, for the lanes' estimates and the margins above.
    print(
        f"headroom: load rose {rose:%H:%M:%S}; ahead's intent {entries(ahead, 'Intent')[0]['time']} (killed: "
        f"{killed}), held "
        f"{entries(ahead, 'GiveBackHolding')[0]['time']}; still breached {breach['status']['openedAt']}; ahead calm "
        f"{calmed:%H:%M:%S}, given back {returned['time']}"
    )
    assert [i["metadata"]["name"] for i in _incidents_of(kube, namespace, "ahead")] == [ahead["metadata"]["name"]]
    assert all(i["spec"].get("trigger", "Breach") == "Breach" for i in _incidents_of(kube, namespace, "still"))
    assert _incidents_of(kube, namespace, OWNED) == []


def _incidents_of(kube: client.ApiClient, ns: str, name: str) -> list[dict[str, Any]]:
    return fleet.incidents_by_md(kube, ns).get(name, [])


def _killed_mid_plan(kube: client.ApiClient, ns: str, operator: OperatorProcess) -> str:
    """SIGKILL the operator once ahead's headroom Incident is open and said so (its plan acting or
    verifying), and start it again: the plan resumes, exactly once (checked by the callers)."""
    waiting.until(
        lambda: (
            [i["status"].get("phase", "Resolved") != "Resolved" for i in _incidents_of(kube, ns, "ahead")] == [True]
        ),
        120,
        "ahead's headroom Incident open",
    )
    events.posted(kube, ns, "ahead", "HeadroomScaleOut")
    operator.kill()
    operator.start()
    found = _incidents_of(kube, ns, "ahead")[0]["status"]
    return f"{found['phase']}, step {[s['state'] for s in found['plan']['steps']]}"


def _ahead_of_the_breach(
    kube: client.ApiClient, ns: str, recorder: fleet.Recorder
) -> tuple[dict[str, Any], dict[str, Any]]:
    """ahead's headroom Incident once its give-back held the 3 replicas on the measured demand, and
    still's breach Incident; checks that ahead acted first and never breached."""
    seen: dict[str, Any] = {}

    def both() -> dict[str, Any] | None:
        md = get(kube, ns, "ahead")
        found = _incidents_of(kube, ns, "ahead")
        seen.update(
            headroom=condition(md, "Headroom"), slos=md["status"].get("slos"), ready=md["status"].get("readyReplicas")
        )
        timeline = found[0]["status"].get("timeline", []) if len(found) == 1 else []
        kinds = [e["type"] for e in timeline]
        if "GiveBack" in kinds and "GiveBackHolding" not in kinds[: kinds.index("GiveBack")]:
            return {"problem": "ahead's give-back stepped down before the demand floor held it"}
        held = "GiveBackHolding" in kinds and md["status"].get("readyReplicas") == 3
        breaches = _incidents_of(kube, ns, "still")
        return {"ahead": found[0], "breach": breaches[0]} if held and breaches else None

    try:
        outcome = waiting.until(both, 240, "ahead scaled out and held by the demand, and still's breach")
    except waiting.Timeout as timeout:
        raise AssertionError(f"{timeout}: ahead {seen}; incidents: {explained(kube, ns)()}") from timeout
    assert "problem" not in outcome, f"{outcome['problem']}: {explained(kube, ns)()}"
    incident: dict[str, Any] = outcome["ahead"]
    breach: dict[str, Any] = outcome["breach"]
    assert incident["spec"]["trigger"] == "Headroom", incident["spec"]
    rounds = intents(incident)
    assert len(rounds) == 1, rounds  # recorded before it acted, carried out once
    assert sized_rounds(rounds, start=2, ceiling=3) == [3], rounds
    # Opened on the demand now (projected along its rise) needing a third replica: not merely the ceiling.
    # The round itself sizes on the window's average, which lags the rise: at least one more replica.
    needed = re.search(
        r"needs (\d+) replicas at 70% utilisation \(2 running\)", incident["status"]["diagnosis"]["summary"]
    )
    assert needed is not None, incident["status"]["diagnosis"]
    assert int(needed.group(1)) >= 3, incident["status"]["diagnosis"]
    holding = [e["message"] for e in entries(incident, "GiveBackHolding")]
    assert re.match(r"holding 3 replicas: the measured demand needs [34] at 70% utilisation", holding[0]), holding
    scale_out = events.on(kube, ns, "ahead", "HeadroomScaleOut")
    assert sum(e.count or 1 for e in scale_out) == 1, scale_out  # not decided again after the restart
    assert "scaling out ahead of a breach of SLO queue" in (scale_out[0].message or ""), scale_out
    # Before the breach the same load brought to still, which did not opt in: an ordinary incident.
    assert breach["spec"].get("trigger", "Breach") == "Breach", breach["spec"]
    assert breach["spec"]["slo"] == "queue", breach["spec"]
    assert breach["status"]["diagnosis"]["cause"] == "LoadSurge", breach["status"]["diagnosis"]
    intent = entries(incident, "Intent")[0]["time"]
    assert intent < breach["status"]["openedAt"], (intent, breach["status"]["openedAt"])
    assert "Breached" in recorder.history.slo_states["still"], recorder.history.slo_states["still"]
    assert "Breached" not in recorder.history.slo_states["ahead"], recorder.history.slo_states["ahead"]
    still = get(kube, ns, "still")
    assert condition(still, "Headroom") is None, "not opted in: no Headroom condition"
    return incident, breach


def _owned_held(kube: client.ApiClient, ns: str, recorder: fleet.Recorder) -> None:
    """Under the load ahead scaled out on, owned's Headroom holds for the HPA that owns its replica count."""
    md = get(kube, ns, OWNED)
    headroom = condition(md, "Headroom") or {}
    assert headroom.get("reason") == "Holding", headroom
    assert "through the scale subresource" in headroom["message"], headroom
    assert _incidents_of(kube, ns, OWNED) == []
    assert md["spec"]["replicas"] == 2, "the HPA's count"
    assert "scale" not in md["status"], md["status"]
    assert recorder.history.replicas[f"{OWNED}-{md['status']['currentRevision']}"] == [1, 2], recorder.history.replicas


def _ahead_given_back(
    kube: client.ApiClient, ns: str, recorder: fleet.Recorder, calmed: datetime.datetime
) -> dict[str, Any]:
    """ahead's give-back step to 2 (its timeline entry) once it returned, checked: after the load calmed."""

    def returned() -> dict[str, Any] | None:
        found = _incidents_of(kube, ns, "ahead")
        record = (found[0]["status"].get("giveBack") or {}) if len(found) == 1 else {}
        return found[0] if record.get("phase") in ("Returned", "Stopped") else None

    try:
        incident = waiting.until(returned, 180, "ahead's replicas given back")
    except waiting.Timeout as timeout:
        raise AssertionError(f"{timeout}; incidents: {explained(kube, ns)()}") from timeout
    assert incident["status"]["giveBack"]["phase"] == "Returned", incident["status"]["giveBack"]
    # Held while the load was on: the one step came once it was calm.
    steps = entries(incident, "GiveBack")
    assert len(steps) == 1, steps
    assert steps[0]["time"] >= f"{calmed:%Y-%m-%dT%H:%M:%SZ}", (steps[0], calmed)
    md = get(kube, ns, "ahead")
    assert "scale" not in md["status"], md["status"]
    assert md["spec"]["replicas"] == 2, "the user's spec is never written"
    revision = md["status"]["currentRevision"]
    assert recorder.history.replicas[f"ahead-{revision}"] == [2, 3, 2], recorder.history.replicas
    assert "Breached" not in recorder.history.slo_states["ahead"], recorder.history.slo_states["ahead"]
    return steps[0]
