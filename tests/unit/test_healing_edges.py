"""The real reconcile and healing edges under API faults: every action exactly once, every timeline complete.

These tests drive ``operator.reconcile`` (hence ``_reconcile``, ``healing.tend`` and
``healing.run_plan``, unchanged) against :class:`tests.unit.fakekube.FakeKube`, which fails one
chosen call of the whole run: before it takes effect (connection refused, 409, 410, 429, 500, a
timeout) or after (the write landed, the client saw a timeout or a reset). That covers every
step of a plan: reading the Incident, recording the intent, the action itself (a pod deletion,
an md-status override, a webhook's Secret), the status writes and the Events. A webhook receiver
on loopback (allowed per step) counts notifications by idempotency key.
"""

from __future__ import annotations

import datetime
import random
import types
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.unit import factories, fakekube
from vigil.api import conditions as cond
from vigil.api import modeldeployment as mdapi
from vigil.diagnose import pods as podfacts
from vigil.reconcile import healing
from vigil.reconcile import operator as op
from vigil.render import revision

NS, NAME = "ml", "resnet"
T0 = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
MODEL = {"name": "resnet50", "repository": "s3://models/resnet50"}
GOOD = revision.revision_of(mdapi.PodShape.model_validate({"model": {**MODEL, "version": "1"}, "triton": {}}))
BAD = revision.revision_of(mdapi.PodShape.model_validate({"model": {**MODEL, "version": "2"}, "triton": {}}))
TOKEN = "hook-t0ken"
STEP_SECONDS = 20
PASSES = 60


class Clock:
    """``datetime`` as the operator module sees it, with a ``now`` the test moves."""

    def __init__(self) -> None:
        self.now = T0
        clock = self

        class _DateTime(datetime.datetime):
            @classmethod
            def now(cls, tz: datetime.tzinfo | None = None) -> _DateTime:  # type: ignore[override]
                return clock.now  # type: ignore[return-value]

        self.module = types.SimpleNamespace(datetime=_DateTime, UTC=datetime.UTC, timedelta=datetime.timedelta)


class Receiver:
    def __init__(self) -> None:
        self.keys: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.keys.append((await request.json())["idempotencyKey"])
        return web.Response(status=204)


@pytest.fixture
async def hook() -> AsyncIterator[tuple[Receiver, str]]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post(f"/{TOKEN}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield receiver, f"http://127.0.0.1:{runner.addresses[0][1]}/{TOKEN}"
    await runner.cleanup()


def crashing(name: str) -> podfacts.PodFacts:
    container = podfacts.ContainerFacts(
        "triton",
        ready=False,
        restarts=5,
        state=podfacts.WAITING,
        reason="CrashLoopBackOff",
        last_reason="Error",
        last_exit_code=1,
    )
    return podfacts.PodFacts(name, BAD, phase="Running", ready=False, scheduled=True, containers=(container,))


def healthy(name: str) -> podfacts.PodFacts:
    container = podfacts.ContainerFacts("triton", ready=True, restarts=0, state=podfacts.RUNNING)
    return podfacts.PodFacts(name, BAD, phase="Running", ready=True, scheduled=True, containers=(container,))


RUNBOOK = {
    "triggers": [{"slo": "*"}],
    "steps": [
        {
            "name": "page",
            "action": "notify",
            "params": {
                "webhook": {
                    "secretKeyRef": {"name": "pager", "key": "url"},
                    "allowInsecure": True,
                    "allowPrivateNetwork": True,
                }
            },
        },
        {"name": "restart", "action": "restartPods", "verifyAfter": "30s", "onFailure": "next"},
        {"name": "back", "action": "rollback", "verifyAfter": "30s", "onFailure": "escalate"},
    ],
    "guards": {"maxActionsPerHour": 20},
}


def cluster(url: str, runbook: dict[str, Any] | None = RUNBOOK, runbook_ref: str | None = "heal") -> fakekube.FakeKube:
    """Revision BAD serves (switched 5m ago, 2 of 3 pods crash-looping), GOOD is last-known-good and warm,
    and the availability SLO is Breached on BAD."""
    status = {
        "observedGeneration": 2,
        "desiredRevision": BAD,
        "currentRevision": BAD,
        "previousRevision": GOOD,
        "switchedAt": cond.rfc3339(T0 - datetime.timedelta(minutes=5)),
        "revisions": [
            {
                "name": rev,
                "modelVersion": version,
                "shape": {"model": {**MODEL, "version": version}, "triton": {}},
                "generation": int(version),
                "created": cond.rfc3339(T0 - datetime.timedelta(hours=int(version))),
                "lastKnownGood": rev == GOOD,
            }
            for rev, version in ((GOOD, "1"), (BAD, "2"))
        ],
        "slos": [
            {
                "name": "availability",
                "state": "Breached",
                "revision": BAD,
                "sli": 80.0,
                "lastTransitionTime": cond.rfc3339(T0 - datetime.timedelta(minutes=1)),
            }
        ],
    }
    spec: dict[str, Any] = {
        "model": {**MODEL, "version": "2"},
        "replicas": 2,
        "slos": [{"name": "availability", "kind": "availability", "objective": 99.0, "period": "1h"}],
    }
    if runbook_ref is not None:
        spec["runbookRef"] = {"name": runbook_ref}
    kube = fakekube.FakeKube()
    kube.objects[("modeldeployments", NS, NAME)] = {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": NS, "generation": 2, "uid": "uid-1"},
        "spec": spec,
        "status": status,
    }
    if runbook is not None:
        kube.objects[("runbooks", NS, "heal")] = {"metadata": {"name": "heal", "namespace": NS}, "spec": runbook}
    kube.secrets[(NS, "pager", "url")] = url
    for rev in (GOOD, BAD):
        kube.deployments[rev] = {"spec": {"replicas": 2}}
    kube.pods = [crashing("p-1"), crashing("p-2"), healthy("p-3")]
    return kube


def physics(kube: fakekube.FakeKube, now: datetime.datetime) -> None:
    """What the fleet loop would report: the SLO is Met once the good revision serves (judged
    every pass, over a window of one pass, so on data from after any earlier pass's action)."""
    md = kube.objects[("modeldeployments", NS, NAME)]
    slo = md["status"]["slos"][0]
    slo.update(lastEvaluationTime=cond.rfc3339(now), burnRates=[{"window": f"{STEP_SECONDS}s"}])
    if md["status"].get("currentRevision") == GOOD and slo["state"] != "Met":
        slo.update(state="Met", sli=100.0, revision=GOOD, lastTransitionTime=cond.rfc3339(now))


async def heal(kube: fakekube.FakeKube, monkeypatch: pytest.MonkeyPatch, passes: int = PASSES) -> None:
    """Reconcile as the worker would, a pass every STEP_SECONDS, until the incident is resolved."""
    clock = Clock()
    monkeypatch.setattr(op, "datetime", clock.module)
    runtime = op.Runtime(settings=op.Settings(), kube=kube)  # type: ignore[arg-type]
    for _ in range(passes):
        runtime.fleet = factories.judged_as_stored(kube.objects[("modeldeployments", NS, NAME)])
        await op.reconcile(runtime, (NS, NAME))  # never raises: a failed pass is retried by the next one
        await runtime.poster.flush()  # the Events it decided, posted beside it
        physics(kube, clock.now)
        incidents = kube.incidents()
        if incidents and incidents[0].get("status", {}).get("phase") == "Resolved":
            return
        clock.now += datetime.timedelta(seconds=STEP_SECONDS)
    raise AssertionError(f"not resolved after {passes} passes: {kube.incidents()}")


def outcome(kube: fakekube.FakeKube, receiver: Receiver) -> dict[str, Any]:
    """What happened, in the terms of the exactly-once promise."""
    (incident,) = kube.incidents()
    rollbacks = {w["rollback"]["since"] for w in kube.md_status_writes if w.get("rollback")}
    timeline = [(e["type"], e.get("step")) for e in incident["status"]["timeline"]]
    return {
        "phase": incident["status"]["phase"],
        "steps": [(s["name"], s["state"]) for s in incident["status"]["plan"]["steps"]],
        "deleted": kube.deleted_pods,
        "rollbacks": len(rollbacks),
        "notified": sorted(set(receiver.keys)),
        "intents": [step for type_, step in timeline if type_ == "Intent"],
        "first": timeline[:2],
        "last": timeline[-1],
        "planned": sum(1 for type_, _ in timeline if type_ == "Planned"),
    }


async def test_without_faults_the_plan_acts_once_per_step_and_resolves(
    hook: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver, url = hook
    kube = cluster(url)
    await heal(kube, monkeypatch)
    seen = outcome(kube, receiver)
    assert seen["phase"] == "Resolved"
    assert seen["steps"] == [("page", "Succeeded"), ("restart", "Failed"), ("back", "Succeeded")]
    assert seen["deleted"] == ["p-1", "p-2"]
    assert seen["rollbacks"] == 1
    assert len(seen["notified"]) == 1
    assert seen["intents"] == ["restart", "restart", "back"]
    assert seen["first"] == [("Detected", None), ("Diagnosed", None)]
    assert seen["last"] == ("Resolved", None)
    assert seen["planned"] == 1
    assert receiver.keys == seen["notified"]
    everything = repr(kube.incidents()) + repr(kube.events) + repr(kube.md_status_writes)
    assert TOKEN not in everything, "the webhook URL must never be shown"


BEFORE = ["connection-refused", "conflict-409", "gone-410", "throttled-429", "server-500", "timeout"]
AFTER = ["timeout-after-write", "reset-after-write"]


async def baseline(url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], int]:
    kube = cluster(url)
    await heal(kube, monkeypatch)
    return outcome(kube, receiver), len(kube.calls)


@pytest.mark.parametrize("kinds", [BEFORE, AFTER], ids=["fault-before-the-call", "fault-after-the-call"])
async def test_a_fault_at_any_call_of_the_plan_changes_nothing_but_timing(
    kinds: list[str], hook: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver, url = hook
    expected, calls = await baseline(url, receiver, monkeypatch)
    for number in range(calls):
        receiver.keys.clear()
        kind = kinds[number % len(kinds)]
        kube = cluster(url)
        kube.faults = {number: fakekube.FAULTS[kind]}
        await heal(kube, monkeypatch)
        seen = outcome(kube, receiver)
        context = f"{kind} at call {number} ({kube.calls[number]})"
        assert seen == expected, context
        assert TOKEN not in repr(kube.incidents()) + repr(kube.events), context


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_faults_at_random_calls_throughout_still_act_exactly_once(
    seed: int, hook: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver, url = hook
    expected, calls = await baseline(url, receiver, monkeypatch)
    receiver.keys.clear()
    chance = random.Random(seed)
    kinds = BEFORE + AFTER
    kube = cluster(url)
    kube.faults = {n: fakekube.FAULTS[chance.choice(kinds)] for n in range(20 * calls) if chance.random() < 0.1}
    await heal(kube, monkeypatch, passes=400)
    seen = outcome(kube, receiver)
    # So many failed passes may run a step into its timeout (a different, correct plan); what may
    # never differ is what was done: each pod deleted once, one rollback, each intent recorded once.
    same = ("phase", "deleted", "rollbacks", "intents", "first", "last", "planned")
    assert {k: seen[k] for k in same} == {k: expected[k] for k in same}
    assert set(expected["notified"]) <= set(seen["notified"])
    assert sum(1 for n in kube.faults if n < len(kube.calls)) >= 10, "too few faults hit to prove anything"


async def test_an_unreadable_incident_of_the_deployment_holds_opening_and_acting(
    hook: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = hook
    kube = cluster(url)
    unreadable = {
        "metadata": {"name": "resnet-old", "namespace": NS, "labels": {"vigil.dev/modeldeployment": NAME}},
        "spec": {"modelDeployment": NAME, "slo": "availability", "generation": "two"},
    }
    kube.objects[("incidents", NS, "resnet-old")] = unreadable
    md = await passes(kube, monkeypatch, 3)
    assert [i["metadata"]["name"] for i in kube.incidents()] == ["resnet-old"], "opened an incident beside it"
    assert kube.deleted_pods == []
    assert "activeIncident" not in md["status"]
    readable = condition_of(md, healing.INCIDENT_READABLE)
    assert readable is not None
    assert readable["status"] == "False"
    assert readable["message"].startswith("Incident resnet-old cannot be read: spec.generation: Input should be")
    assert sum(1 for e in kube.events if e[1:3] == ("Warning", "IncidentReadableFalse")) == 1

    del kube.objects[("incidents", NS, "resnet-old")]  # a human deleted it: healing goes on
    md = await passes(kube, monkeypatch, 2)
    assert condition_of(md, healing.INCIDENT_READABLE)["status"] == "True"  # type: ignore[index]
    assert md["status"]["activeIncident"] != "resnet-old"
    assert kube.deleted_pods == ["p-1"]


# --- failing safe on the runbookRef ------------------------------------------------------------


async def passes(kube: fakekube.FakeKube, monkeypatch: pytest.MonkeyPatch, count: int) -> dict[str, Any]:
    """``count`` reconcile passes, STEP_SECONDS apart; the md as stored afterwards."""
    clock = Clock()
    monkeypatch.setattr(op, "datetime", clock.module)
    runtime = op.Runtime(settings=op.Settings(), kube=kube)  # type: ignore[arg-type]
    for _ in range(count):
        runtime.fleet = factories.judged_as_stored(kube.objects[("modeldeployments", NS, NAME)])
        await op.reconcile(runtime, (NS, NAME))
        await runtime.poster.flush()  # the Events it decided, posted beside it
        clock.now += datetime.timedelta(seconds=STEP_SECONDS)
    return kube.objects[("modeldeployments", NS, NAME)]


def condition_of(md: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in md["status"].get("conditions", []) if c["type"] == type_), None)


@pytest.mark.parametrize(
    ("runbook", "reason", "why"),
    [
        (None, "NotFound", "runbookRef heal: no Runbook heal in this namespace"),
        (
            {**RUNBOOK, "mode": "yolo"},
            "Invalid",
            "runbookRef heal: Runbook heal is invalid: spec.mode: Input should be 'auto', 'dryRun' or 'approval'",
        ),
        (
            {**RUNBOOK, "triggers": [{"slo": "latency"}]},
            "NoMatchingTrigger",
            "runbookRef heal: no trigger of Runbook heal (slo latency causes any) matches SLO availability with "
            "cause CrashingPods",
        ),
    ],
    ids=["missing", "invalid", "no-trigger-matches"],
)
async def test_an_unusable_runbook_ref_means_no_automatic_action_and_says_why(
    runbook: dict[str, Any] | None, reason: str, why: str, hook: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver, url = hook
    kube = cluster(url, runbook=runbook)
    md = await passes(kube, monkeypatch, 12)
    assert kube.deleted_pods == []
    assert "rollback" not in md["status"]
    assert receiver.keys == []
    resolved = condition_of(md, healing.RUNBOOK_RESOLVED)
    assert resolved is not None
    assert (resolved["status"], resolved["reason"]) == ("False", reason)
    assert resolved["message"].startswith(why)
    assert resolved["message"].endswith("no automatic action: plans run the built-in default as a dry run")
    warnings = [e for e in kube.events if e[2] == "RunbookResolvedFalse"]
    assert [e[1] for e in warnings] == ["Warning"]
    (incident,) = kube.incidents()
    plan = incident["status"]["plan"]
    assert (plan["runbook"], plan["mode"]) == ("builtin-default", "dryRun")
    assert {s["state"] for s in plan["steps"]} <= {"DryRun", "Skipped"}
    assert any(s["state"] == "DryRun" for s in plan["steps"])
    unresolved = [e for e in incident["status"]["timeline"] if e["type"] == healing.RUNBOOK_UNRESOLVED]
    assert [e["message"] for e in unresolved] == [resolved["message"]]


async def test_a_runbook_that_appears_later_resolves_the_condition(
    hook: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = hook
    kube = cluster(url, runbook=None)
    md = kube.objects[("modeldeployments", NS, NAME)]
    md["status"]["slos"][0]["state"] = "Met"
    await passes(kube, monkeypatch, 1)
    assert condition_of(md, healing.RUNBOOK_RESOLVED)["status"] == "False"  # type: ignore[index]
    kube.objects[("runbooks", NS, "heal")] = {"metadata": {"name": "heal", "namespace": NS}, "spec": RUNBOOK}
    md = await passes(kube, monkeypatch, 1)
    resolved = condition_of(md, healing.RUNBOOK_RESOLVED)
    assert resolved is not None
    assert (resolved["status"], resolved["reason"], resolved["message"]) == (
        "True",
        "Resolved",
        "runbookRef heal: Runbook is valid",
    )
    assert [e[1:3] for e in kube.events if e[2].startswith("RunbookResolved")] == [
        ("Warning", "RunbookResolvedFalse"),
        ("Normal", "RunbookResolvedTrue"),
    ]


async def test_without_a_runbook_ref_the_builtin_default_acts_and_no_condition_is_set(
    hook: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = hook
    kube = cluster(url, runbook=None, runbook_ref=None)
    md = await passes(kube, monkeypatch, 3)
    assert kube.deleted_pods == ["p-1"]  # the default restarts crash-looping pods, one at a time
    assert condition_of(md, healing.RUNBOOK_RESOLVED) is None
    (incident,) = kube.incidents()
    assert (incident["status"]["plan"]["runbook"], incident["status"]["plan"]["mode"]) == ("builtin-default", "auto")


async def opened(url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[fakekube.FakeKube, dict[str, Any]]:
    """The cluster after the pass that opened the incident, and that incident."""
    kube = cluster(url)
    await passes(kube, monkeypatch, 1)
    (incident,) = kube.incidents()
    return kube, incident


async def test_the_evidence_of_an_incident_is_the_observed_pod_facts(
    hook: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, incident = await opened(hook[1], monkeypatch)
    diagnosis = incident["status"]["diagnosis"]
    assert diagnosis["cause"] == "CrashingPods"
    crashing_evidence = next(e for e in diagnosis["evidence"] if e["kind"] == "crashingPods")
    assert crashing_evidence["message"] == (
        "2 pod(s) failing: p-1 (triton: CrashLoopBackOff, last Error exit code 1, 5 restarts; not ready); "
        "p-2 (triton: CrashLoopBackOff, last Error exit code 1, 5 restarts; not ready)"
    )
    assert "(10 restarts)" in diagnosis["summary"]


async def test_an_unreadable_active_incident_holds_and_is_never_recreated(
    hook: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    kube, incident = await opened(hook[1], monkeypatch)
    name = incident["metadata"]["name"]
    stored = kube.objects[("incidents", NS, name)]
    good_status = stored["status"]
    stored["status"] = {**good_status, "phase": "Exploded"}
    deleted = list(kube.deleted_pods)
    md = await passes(kube, monkeypatch, 4)
    assert [i["metadata"]["name"] for i in kube.incidents()] == [name]
    assert kube.objects[("incidents", NS, name)]["status"]["phase"] == "Exploded", "the record was overwritten"
    assert kube.deleted_pods == deleted
    assert md["status"]["activeIncident"] == name
    readable = condition_of(md, healing.INCIDENT_READABLE)
    assert readable is not None
    assert (readable["status"], readable["reason"]) == ("False", "Unreadable")
    assert readable["message"].startswith(f"Incident {name} cannot be read: status.phase: Input should be")
    assert readable["message"].endswith(
        "no new incident and no action for this deployment until it is repaired or deleted"
    )
    assert sum(1 for e in kube.events if e[1:3] == ("Warning", "IncidentReadableFalse")) == 1

    stored["status"] = good_status  # repaired: the plan goes on from its record
    md = await passes(kube, monkeypatch, 2)
    assert condition_of(md, healing.INCIDENT_READABLE)["status"] == "True"  # type: ignore[index]
    assert kube.deleted_pods == ["p-1"]


CRASH_ONLY = {
    "triggers": [{"slo": "availability", "causes": ["CrashingPods"]}],
    "steps": [{"name": "restart", "action": "restartPods", "verifyAfter": "30s"}],
}


async def test_a_breach_first_diagnosed_unknown_is_rediagnosed_while_it_lasts_and_then_acted_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = cluster("http://127.0.0.1:9/unused", runbook=CRASH_ONLY)
    kube.pods = [healthy("p-1"), healthy("p-2"), healthy("p-3")]  # nothing to blame yet
    await passes(kube, monkeypatch, 2)
    (incident,) = kube.incidents()
    assert incident["status"]["diagnosis"]["cause"] == "Unknown"
    assert incident["status"]["plan"]["mode"] == "dryRun"  # no trigger matches Unknown: no action
    kube.pods = [crashing("p-1"), crashing("p-2"), healthy("p-3")]  # the evidence shows up later
    await passes(kube, monkeypatch, 2)
    (incident,) = kube.incidents()
    status = incident["status"]
    assert status["diagnosis"]["cause"] == "CrashingPods"
    assert status["plan"]["runbook"] == "heal"
    assert status["plan"]["mode"] == "auto"
    rediagnosed = [e["message"] for e in status["timeline"] if e["type"] == "Diagnosed"]
    assert len(rediagnosed) == 2, status["timeline"]
    assert rediagnosed[1].startswith("CrashingPods ")
    assert "into the breach (first found no cause)" in rediagnosed[1]
    assert kube.deleted_pods == ["p-1"], "the new plan acts"
    await passes(kube, monkeypatch, 2)
    (incident,) = kube.incidents()
    diagnosed = [e for e in incident["status"]["timeline"] if e["type"] == "Diagnosed"]
    assert len(diagnosed) == 2, "a known cause is not diagnosed again"


async def test_a_plan_that_acted_is_never_replaced_by_a_new_diagnosis(monkeypatch: pytest.MonkeyPatch) -> None:
    anything = {**CRASH_ONLY, "triggers": [{"slo": "availability"}]}
    kube = cluster("http://127.0.0.1:9/unused", runbook={**anything, "steps": [RUNBOOK["steps"][-1]]})
    kube.pods = [healthy("p-1"), healthy("p-2"), healthy("p-3")]
    await passes(kube, monkeypatch, 2)
    (incident,) = kube.incidents()
    assert incident["status"]["diagnosis"]["cause"] == "Unknown"
    assert any(e["type"] == "Intent" for e in incident["status"]["timeline"]), "the rollback acted"
    kube.pods = [crashing("p-1"), crashing("p-2"), healthy("p-3")]
    await passes(kube, monkeypatch, 2)
    (incident,) = kube.incidents()
    assert incident["status"]["diagnosis"]["cause"] == "Unknown"
    assert [e["type"] for e in incident["status"]["timeline"]].count("Diagnosed") == 1
