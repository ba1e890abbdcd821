"""Defence in depth: the operator's real handlers and reconcile refuse keys outside ``--namespace``.

kopf already watches only the matching namespaces; these tests drive the real event handlers and
the real ``reconcile`` entry point with keys from elsewhere (as a list after a leadership change or
a stray resync would produce) and prove nothing is queued, remembered or read from the API.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from vigil import labels
from vigil.reconcile import kube, operator


class NoApi(kube.Kube):
    """A Kube whose every use fails the test: out-of-scope keys must never reach the API."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        if name == "calls" or name.startswith("__"):
            return object.__getattribute__(self, name)
        object.__getattribute__(self, "calls").append(name)
        raise AssertionError(f"the API was used ({name}) for an out-of-scope key")


def runtime(*patterns: str) -> operator.Runtime:
    return operator.Runtime(settings=operator.Settings(namespaces=patterns), kube=NoApi())


def body(namespace: str) -> kopf.Body:
    return kopf.Body({"metadata": {"namespace": namespace, "name": "p", "labels": {labels.MODEL_DEPLOYMENT: "md"}}})


def test_modeldeployment_events_outside_the_scope_are_neither_queued_nor_remembered() -> None:
    rt = runtime("t1a2b-*")
    memo = kopf.Memo(runtime=rt)
    asyncio.run(operator.modeldeployment_event(event={"type": "ADDED"}, namespace="demo", name="md", memo=memo))
    assert len(rt.queue) == 0
    assert not rt.known
    asyncio.run(operator.modeldeployment_event(event={"type": "ADDED"}, namespace="t1a2b-x", name="md", memo=memo))
    assert len(rt.queue) == 1
    assert rt.known == {("t1a2b-x", "md")}


def test_child_events_outside_the_scope_are_not_queued() -> None:
    rt = runtime("demo")
    memo = kopf.Memo(runtime=rt)
    asyncio.run(operator.deployment_event(namespace="t1a2b-x", body=body("t1a2b-x"), memo=memo))
    asyncio.run(operator.pod_event(namespace="other", body=body("other"), memo=memo))
    assert len(rt.queue) == 0
    asyncio.run(operator.pod_event(namespace="demo", body=body("demo"), memo=memo))
    assert len(rt.queue) == 1


def test_reconcile_of_an_out_of_scope_key_never_reads_or_writes_the_api() -> None:
    rt = runtime("demo")
    asyncio.run(operator.reconcile(rt, ("elsewhere", "md")))
    assert object.__getattribute__(rt.kube, "calls") == []
    assert not rt.mds


def test_a_clusterwide_operator_admits_every_namespace() -> None:
    rt = runtime()
    assert rt.admits(("anything", "md"))
