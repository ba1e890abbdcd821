"""The pod-restart executor: one deletion, 404 is success, failures are results."""

from __future__ import annotations

import threading
from typing import Any

from kubernetes.client import exceptions

from vigil.act import intents, restart


class FakeCore:
    """Stands in for CoreV1Api.delete_namespaced_pod; raises ``error`` if given."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[tuple[str, str, dict[str, Any], bool]] = []

    def delete_namespaced_pod(self, name: str, namespace: str, **kwargs: Any) -> Any:
        in_worker_thread = threading.current_thread() is not threading.main_thread()
        self.calls.append((name, namespace, kwargs, in_worker_thread))
        if self.error is not None:
            raise self.error
        return {"kind": "Pod"}


async def test_deleting_a_pod_runs_in_a_thread_with_a_timeout() -> None:
    core = FakeCore()
    result = await restart.execute(core, intents.RestartPod("ml", "resnet-abc-1", key="k"))
    assert result == intents.Result(ok=True, message="pod resnet-abc-1 deleted")
    assert core.calls == [("resnet-abc-1", "ml", {"_request_timeout": restart.REQUEST_TIMEOUT}, True)]


async def test_a_pod_already_gone_counts_as_restarted() -> None:
    core = FakeCore(exceptions.ApiException(status=404, reason="Not Found"))
    assert await restart.delete_pod(core, "ml", "p") == intents.Result(ok=True, message="pod p already gone")


async def test_api_and_transport_errors_are_failed_results() -> None:
    forbidden = await restart.delete_pod(FakeCore(exceptions.ApiException(status=403, reason="Forbidden")), "ml", "p")
    assert forbidden == intents.Result(ok=False, message="failed: deleting pod p: HTTP 403 Forbidden")
    broken = await restart.delete_pod(FakeCore(ConnectionResetError("reset")), "ml", "p")
    assert broken == intents.Result(ok=False, message="failed: deleting pod p: ConnectionResetError: reset")
