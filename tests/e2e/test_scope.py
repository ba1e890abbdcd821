"""An operator acts only inside the namespaces it was told to watch (``--namespace``), never elsewhere.

Two operators on one cluster (``make demo`` left running, then ``make test``; or two test workers)
must never act on the same objects. The ``operator`` fixture watches this session's namespace
glob; a ModelDeployment in a namespace outside it is created first, one inside it second. Once
the one inside is Available (so the operator has seen, reconciled and reported at least that
much), the one outside must still have no children, no status and no Events.
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.e2e import operator_fixtures, waiting
from tests.e2e.operator_fixtures import OperatorProcess
from tests.e2e.test_modeldeployment import condition_is, create, get, manifest
from vigil.reconcile import scope

pytestmark = pytest.mark.e2e


@pytest.fixture
def foreign_namespace(kube: client.ApiClient) -> Iterator[str]:
    """A namespace outside this session's operator scope (as the demo's or another worker's would be)."""
    name = f"x{secrets.token_hex(2)}-{uuid.uuid4().hex[:8]}"
    assert not scope.Scope((operator_fixtures.SCOPE,)).admits(name)
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    with contextlib.suppress(client.exceptions.ApiException):
        core.delete_namespace(name)


def test_an_operator_never_touches_objects_outside_the_namespaces_it_watches(
    kube: client.ApiClient, namespace: str, foreign_namespace: str, operator: OperatorProcess
) -> None:
    assert operator.namespaces == (operator_fixtures.SCOPE,)
    create(kube, foreign_namespace, manifest("outside", replicas=1))
    before = get(kube, foreign_namespace, "outside")
    create(kube, namespace, manifest("inside", replicas=1))

    waiting.until(
        lambda: condition_is(kube, namespace, "inside", "Available", "True"), 120, "the in-scope one Available"
    )

    after = get(kube, foreign_namespace, "outside")
    assert "status" not in after, after.get("status")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], "the object was written"
    selector = "vigil.dev/modeldeployment=outside"
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    assert not apps.list_namespaced_deployment(foreign_namespace, label_selector=selector).items
    assert not core.list_namespaced_service(foreign_namespace, label_selector=selector).items
    assert not core.list_namespaced_pod(foreign_namespace).items
    events = core.list_namespaced_event(foreign_namespace).items
    assert not events, [(e.reason, e.message) for e in events]
    custom = client.CustomObjectsApi(kube)
    listed = custom.list_namespaced_custom_object("vigil.dev", "v1alpha1", foreign_namespace, "incidents")
    assert not listed["items"]
