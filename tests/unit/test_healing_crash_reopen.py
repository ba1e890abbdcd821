"""An operator killed after creating an Incident but before writing the deployment's status opens no second one.

Found by the chaos e2e (tests/e2e/test_chaos.py): the Incident is named after the breach's start,
which lives in the deployment's status; a crash before that status write makes the next operator
compute another start, hence another name. These tests drive the real reconcile against the fake
API of :mod:`tests.unit.test_healing_edges`, replaying exactly that crash.
"""

from __future__ import annotations

import datetime

import pytest

from tests.unit import test_healing_edges as edges
from tests.unit.test_healing_edges import hook  # noqa: F401 - the webhook receiver fixture
from vigil.api import conditions as cond


def crash_before_the_status_write(kube: edges.fakekube.FakeKube) -> None:
    """The deployment's status as if the pass that opened the incident never wrote it."""
    status = kube.objects[("modeldeployments", edges.NS, edges.NAME)]["status"]
    status.pop("activeIncident", None)
    later = edges.T0 + datetime.timedelta(seconds=30)  # what the restarted operator computes instead
    status["slos"][0]["lastTransitionTime"] = cond.rfc3339(later)


async def test_a_crash_between_creating_the_incident_and_recording_it_adopts_that_incident(
    hook: tuple[edges.Receiver, str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube, incident = await edges.opened(hook[1], monkeypatch)
    name = incident["metadata"]["name"]
    crash_before_the_status_write(kube)

    await edges.heal(kube, monkeypatch)

    assert [i["metadata"]["name"] for i in kube.incidents()] == [name]
    seen = edges.outcome(kube, hook[0])
    assert seen["phase"] == "Resolved"
    assert seen["intents"] == ["restart", "restart", "back"]
    assert seen["rollbacks"] == 1


async def test_a_crash_right_after_creating_the_incident_without_its_status_adopts_it_too(
    hook: tuple[edges.Receiver, str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube, incident = await edges.opened(hook[1], monkeypatch)
    name = incident["metadata"]["name"]
    del kube.objects[("incidents", edges.NS, name)]["status"]  # created; its first status write lost
    crash_before_the_status_write(kube)

    await edges.heal(kube, monkeypatch)

    assert [i["metadata"]["name"] for i in kube.incidents()] == [name]
    assert edges.outcome(kube, hook[0])["phase"] == "Resolved"
