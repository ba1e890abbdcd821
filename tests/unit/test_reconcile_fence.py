"""Fencing of remediations: healing re-checks the lease right before every side effect."""

from __future__ import annotations

import datetime

import kubernetes.client
import pytest

from tests.unit import actkit, factories
from vigil.act import intents as acts
from vigil.api import incident as incapi
from vigil.reconcile import core, healing, kube, leader


def lost() -> None:
    raise leader.NotLeading("replica a does not hold lease ns/vigil")


@pytest.mark.parametrize(
    "intent",
    [
        acts.RestartPod("ml", "resnet-abc-1", "k1"),
        acts.Notify(acts.WebhookRef("hooks", "url"), "rolled back", "k2"),
        acts.Rollback("good", "bad", "k3"),
        acts.Scale(4, "k4"),
        acts.ShiftTraffic((("md:resnet-small", 100),), "k5"),
    ],
    ids=lambda intent: type(intent).__name__,
)
async def test_no_remediation_runs_once_the_lease_is_lost(intent: acts.Intent) -> None:
    unreachable = kubernetes.client.Configuration(host="http://127.0.0.1:9")  # any request would fail otherwise
    client = kube.Kube(kubernetes.client.ApiClient(unreachable))
    client.fence = lost
    md = factories.md()
    ctx = healing.Context(
        raw={"metadata": {"name": "resnet", "namespace": "ml", "uid": "uid-1"}},
        md=md,
        observed=core.Observed(workloads={}),
        report=None,
        metrics_available=True,
        now=datetime.datetime(2026, 11, 29, tzinfo=datetime.UTC),
    )
    incident = incapi.Incident.model_validate(
        {"metadata": {"name": "resnet-latency-1", "namespace": "ml"}, "spec": actkit.incident_spec().wire()}
    )
    with pytest.raises(leader.NotLeading):
        await healing._execute(client, ctx, md.status, incident, intent)
