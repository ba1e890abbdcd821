"""Chaos: the operator SIGKILLed at random points while it heals 20 deployments, each healed exactly once.

Twenty deployments get a bad release at the same moment, and the default runbook rolls each back
to its last-known-good revision. Meanwhile the operator is SIGKILLed every few seconds at a random
offset (seeded; the seed is printed and can be replayed with ``VIGIL_CHAOS_SEED``) and restarted
at once, the way a crash-looping pod would be. Kills land while it starts, while it lists, while it
evaluates SLOs, between recording an intent and acting on it, during verification.

The verdict, per deployment: exactly one Incident; its timeline runs Detected .. Resolved with
exactly one Intent followed by its result, and no entry written twice; the rollback serves the
last-known-good revision; and, from an independent watch on the API server, ``status.rollback``
was written with one value only and the last-known-good Deployment was scaled up at most once.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import random
import threading
import time
from collections import Counter
from typing import Any

import pytest
from kubernetes import client

from tests.e2e import fleet, waiting
from tests.e2e.operator_fixtures import OperatorProcess
from vigil.sim import client as simclient

pytestmark = [pytest.mark.e2e, pytest.mark.isolated]

HEALS = int(os.environ.get("VIGIL_CHAOS_HEALS", "20"))
# Seconds between a (re)start and the next SIGKILL: some kills land during start-up, most mid-work
# (a fresh operator needs a few seconds of reconciles and one SLO evaluation before it heals).
KILL_AFTER = (2.0, 15.0)
# Seconds between two bad releases, so detections and intents spread over the whole chaos window.
RELEASE_EVERY = (0.0, 6.0)
RATE = 10.0


@dataclasses.dataclass
class Kill:
    at: float
    wall: str
    alive: float
    steps: dict[str, int]


class Chaos:
    """SIGKILLs and restarts an operator at seeded random offsets in a thread, until stopped."""

    def __init__(self, operator: OperatorProcess, seed: int, snapshot: Any) -> None:
        self.operator = operator
        self.random = random.Random(seed)
        self.snapshot = snapshot
        self.kills: list[Kill] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()

    def _run(self) -> None:
        while True:
            alive = self.random.uniform(*KILL_AFTER)
            if self.stopped.wait(alive):
                return
            self.operator.kill()
            try:
                steps = self.snapshot()
            except Exception:  # the API server may be restarting (the other lane); the kill counts
                steps = {}
            wall = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self.kills.append(Kill(round(time.monotonic() - self.started, 1), wall, round(alive, 1), steps))
            self.operator.start()

    def __enter__(self) -> Chaos:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=30)


@pytest.fixture
def chaos_seed() -> int:
    return int(os.environ.get("VIGIL_CHAOS_SEED") or random.SystemRandom().randrange(2**31))


def step_states(kube: client.ApiClient, ns: str) -> dict[str, int]:
    """How many plan steps are in each state right now (what a kill interrupted)."""
    counts: Counter[str] = Counter()
    for incidents in fleet.incidents_by_md(kube, ns).values():
        for incident in incidents:
            for step in (incident.get("status", {}).get("plan") or {}).get("steps", []):
                if step["state"] not in ("Pending", "Skipped"):
                    counts[step["state"]] += 1
    return dict(counts)


def kills_lived_through(incidents: dict[str, list[dict[str, Any]]], kills: list[Kill]) -> dict[str, dict[str, int]]:
    """Per deployment: kills while its incident was open, and while its rollback was intended but not verified."""
    lived: dict[str, dict[str, int]] = {}
    for name, found in incidents.items():
        timeline = found[0]["status"]["timeline"]
        opened, closed = timeline[0]["time"], timeline[-1]["time"]
        intent = next((e["time"] for e in timeline if e["type"] == "Intent"), closed)
        verified = next((e["time"] for e in timeline if e["type"] == "Verified"), closed)
        lived[name] = {
            "open": sum(1 for k in kills if opened <= k.wall <= closed),
            "acting": sum(1 for k in kills if intent <= k.wall <= verified),
        }
    return lived


@pytest.mark.timeout(1800)
def test_operator_sigkilled_at_random_points_heals_every_deployment_exactly_once(
    kube: client.ApiClient,
    namespace: str,
    sim: simclient.ControlClient,
    scoped_operator: OperatorProcess,
    chaos_seed: int,
    record_property: Any,
) -> None:
    names = [f"c{index:02d}" for index in range(HEALS)]
    scoped_operator.start()
    try:
        for name in names:
            fleet.apply_md(kube, namespace, fleet.md_manifest(name))
        good = fleet.warm_up(kube, sim, namespace, names, RATE)

        started = time.monotonic()
        with fleet.Recorder(kube, namespace) as recorder:
            with Chaos(scoped_operator, chaos_seed, lambda: step_states(kube, namespace)) as chaos:
                pace = random.Random(chaos_seed + 1)
                for name in names:
                    fleet.release_bad_version(kube, sim, namespace, name)
                    time.sleep(pace.uniform(*RELEASE_EVERY))  # seeded spacing, part of the chaos schedule

                waiting.until(
                    lambda: fleet.all_resolved(kube, namespace, names),
                    1200,
                    f"{HEALS} incidents resolved under chaos",
                    interval=2.0,
                )
                # Kills after the last resolution count too: a restarted operator must not replay anything.
                waiting.until(lambda: len(chaos.kills) >= HEALS, 600, f"at least {HEALS} kills", interval=1.0)
            healed_in = time.monotonic() - started
            waiting.until(scoped_operator.alive, 30, "the operator restarted after the last kill")
            problems = fleet.problems_by_md(kube, namespace, good, recorder.history)
            lived = kills_lived_through(fleet.incidents_by_md(kube, namespace), chaos.kills)
    finally:
        fleet.quiet(sim, namespace, names)

    interrupted = Counter[str]()
    for kill in chaos.kills:
        interrupted.update(kill.steps)
    summary = {
        "seed": chaos_seed,
        "heals": HEALS,
        "kills": len(chaos.kills),
        "kill_after_seconds": KILL_AFTER,
        "healed_in_seconds": round(healed_in, 1),
        "exactly_once": HEALS - len(problems),
        "problems": problems,
        "step_states_at_kills": dict(interrupted),
        "kills_per_incident_open": sorted(v["open"] for v in lived.values()),
        "kills_per_rollback_in_flight": sorted(v["acting"] for v in lived.values()),
        "watch_restarts": recorder.history.watch_restarts,
        "kill_log": [dataclasses.asdict(kill) for kill in chaos.kills],
    }
    text = json.dumps(summary, sort_keys=True)
    print(f"chaos result: {text}")
    record_property("chaos", text)
    assert not summary["problems"], text
    assert len(chaos.kills) >= HEALS, f"only {len(chaos.kills)} kills: too few to call it chaos"
    assert all(v["open"] >= 1 for v in lived.values()), f"an incident lived through no kill: {lived}"
