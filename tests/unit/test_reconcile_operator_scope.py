"""Defence in depth: the operator's real change handler and reconcile refuse keys outside ``--namespace``.

The watches already list only the matching namespaces (or filter a cluster-wide stream to them);
these tests drive the real change handler and the real ``reconcile`` entry point with keys from
elsewhere (as a list after a leadership change or a stray resync would produce) and prove nothing
is queued, remembered or read from the API.
"""

from __future__ import annotations

import asyncio
from typing import Any

from vigil import labels
from vigil.reconcile import kube, operator, watched


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


def body(namespace: str, name: str = "p") -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name, "labels": {labels.MODEL_DEPLOYMENT: "md"}}}


def test_modeldeployment_changes_outside_the_scope_are_neither_queued_nor_remembered() -> None:
    rt = runtime("t1a2b-*")
    operator.changed(rt, watched.MODEL_DEPLOYMENTS, None, body("demo", "md"))
    assert len(rt.queue) == 0
    assert not rt.known
    operator.changed(rt, watched.MODEL_DEPLOYMENTS, None, body("t1a2b-x", "md"))
    assert len(rt.queue) == 1
    assert rt.known == {("t1a2b-x", "md")}


def test_child_changes_outside_the_scope_are_not_queued() -> None:
    rt = runtime("demo")
    operator.changed(rt, watched.DEPLOYMENTS, None, body("t1a2b-x"))
    operator.changed(rt, watched.PODS, body("other"), None)
    assert len(rt.queue) == 0
    operator.changed(rt, watched.PODS, body("demo"), None)  # a deleted pod of the deployment md
    assert len(rt.queue) == 1


def test_reconcile_of_an_out_of_scope_key_never_reads_or_writes_the_api() -> None:
    rt = runtime("demo")
    asyncio.run(operator.reconcile(rt, ("elsewhere", "md")))
    assert object.__getattribute__(rt.kube, "calls") == []
    assert not rt.mds


def test_a_clusterwide_operator_admits_every_namespace() -> None:
    rt = runtime()
    assert rt.admits(("anything", "md"))
