"""Kubernetes Events as the tests read them: waited for, never read once.

vigil posts its Events in the background, after the status write of the reconcile that decided
them (:mod:`vigil.reconcile.events`: the status is the record, an Event narrates it). So a test
that has just seen a condition, a phase or an incident's verdict can list the Events before the
one it looks for is posted; on a loaded machine that gap is seconds. :func:`posted` waits for it.
"""

from __future__ import annotations

from collections.abc import Callable

from kubernetes import client

from tests.e2e import waiting

POSTED_SECONDS = 30
"""How long an Event may trail the status write that decided it (the poster's backlog on a loaded machine)."""


def on(kube: client.ApiClient, ns: str, name: str, reason: str | None = None) -> list[client.CoreV1Event]:
    """The Events on object ``name`` (of ``reason``, when given), in no particular order."""
    listed = client.CoreV1Api(kube).list_namespaced_event(ns, field_selector=f"involvedObject.name={name}")
    return [e for e in listed.items if reason is None or e.reason == reason]


def posted(
    kube: client.ApiClient,
    ns: str,
    name: str,
    reason: str,
    where: Callable[[client.CoreV1Event], bool] = lambda _: True,
    timeout: float = POSTED_SECONDS,
) -> list[client.CoreV1Event]:
    """The Events ``reason`` on object ``name`` that satisfy ``where``, once there is at least one."""
    return waiting.until(
        lambda: [e for e in on(kube, ns, name, reason) if where(e)], timeout, f"a {reason} Event on {name}"
    )
