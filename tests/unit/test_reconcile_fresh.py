"""Healing acts only on verdicts the running fleet loop judged, never on ones merely stored.

After a restart, a watch can hand a deployment to a reconcile before the fleet loop has evaluated
it: its status then holds whatever an earlier process stored, perhaps one killed before it wrote
the next verdict. test_chaos saw a resolved breach of a rolled-back revision reopened that way.
The reconcile under test is the real one against :class:`tests.unit.fakekube.FakeKube`.
"""

from __future__ import annotations

from tests.unit import fakekube
from tests.unit.test_reconcile_cost import KEY, NAME, NS, evaluated, steady
from vigil.observe import fleet
from vigil.reconcile import operator as op


def stored_slo(kube: fakekube.FakeKube, state: str) -> None:
    status = kube.objects[("modeldeployments", NS, NAME)]["status"]
    (slo_status,) = status["slos"]
    slo_status["state"] = state


def incidents(kube: fakekube.FakeKube) -> list[str]:
    return [name for (plural, ns, name) in kube.objects if plural == "incidents" and ns == NS]


def not_evaluated(runtime: op.Runtime) -> None:
    """An evaluation that did not include the deployment (the watch brought it in after the cycle began)."""
    runtime.fleet = fleet.FleetResult(True, None, (), 12, 0.1)


async def test_a_stored_breach_the_fleet_loop_has_not_judged_opens_no_incident_until_it_does() -> None:
    kube, runtime = await steady()
    stored_slo(kube, "Breached")  # left by a process killed before it wrote the next verdict
    not_evaluated(runtime)
    await op.reconcile(runtime, KEY)
    await runtime.poster.flush()
    assert incidents(kube) == []
    assert kube.objects[("modeldeployments", NS, NAME)]["status"].get("activeIncident") is None
    evaluated(runtime, kube, "Breached", 80.0)  # judged now: a breach of its own
    await op.reconcile(runtime, KEY)
    await runtime.poster.flush()
    opened = kube.objects[("modeldeployments", NS, NAME)]["status"]["activeIncident"]
    assert incidents(kube) == [opened]


async def test_an_open_incident_is_neither_resolved_nor_escalated_on_a_stored_verdict() -> None:
    kube, runtime = await steady()
    evaluated(runtime, kube, "Breached", 80.0)
    await op.reconcile(runtime, KEY)
    await op.reconcile(runtime, KEY)  # its plan under way
    await runtime.poster.flush()
    opened = kube.objects[("modeldeployments", NS, NAME)]["status"]["activeIncident"]
    before = kube.objects[("incidents", NS, opened)]["status"]
    stored_slo(kube, "Met")
    not_evaluated(runtime)
    await op.reconcile(runtime, KEY)
    await runtime.poster.flush()
    assert kube.objects[("modeldeployments", NS, NAME)]["status"]["activeIncident"] == opened
    after = kube.objects[("incidents", NS, opened)]["status"]
    assert after["phase"] == before["phase"] != "Resolved"
    assert after.get("timeline") == before.get("timeline")
    evaluated(runtime, kube, "Met", 99.9)  # judged Met now: the incident follows its plan again
    await op.reconcile(runtime, KEY)
    await runtime.poster.flush()
    assert kube.objects[("incidents", NS, opened)]["status"].get("timeline") != before.get("timeline")
