"""Restart one pod by deleting it: its ReplicaSet starts a replacement.

The step machine restarts failing pods one at a time, and only while the other pods of the
revision are ready (a restart must never cost serving capacity), so this executor deletes
exactly one named pod. Deleting is idempotent by name: a pod that is already gone (404) has been
restarted, which is what makes a replayed intent harmless.

The official ``kubernetes`` client is synchronous; the call runs in a thread
(``asyncio.to_thread``) so the operator's event loop never stalls. Never raises to the caller:
failures are a :class:`~vigil.act.intents.Result` with ``ok=False`` and the machine retries.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from kubernetes.client import exceptions

from vigil.act import intents

REQUEST_TIMEOUT = 20


class PodDeleter(Protocol):
    """Deletes a pod (blocking), like ``kubernetes.client.CoreV1Api.delete_namespaced_pod``."""

    def delete_namespaced_pod(self, name: str, namespace: str, **kwargs: Any) -> Any: ...


async def delete_pod(pods: PodDeleter, namespace: str, pod: str) -> intents.Result:
    """Delete ``namespace/pod`` with its default grace period; 404 counts as done."""
    try:
        await asyncio.to_thread(pods.delete_namespaced_pod, pod, namespace, _request_timeout=REQUEST_TIMEOUT)
    except exceptions.ApiException as error:
        if error.status == 404:
            return intents.Result(ok=True, message=f"pod {pod} already gone")
        return intents.Result(ok=False, message=f"failed: deleting pod {pod}: HTTP {error.status} {error.reason}")
    except Exception as error:  # urllib3 and socket errors: the machine retries until the step's timeout
        return intents.Result(ok=False, message=f"failed: deleting pod {pod}: {type(error).__name__}: {error}")
    return intents.Result(ok=True, message=f"pod {pod} deleted")


async def execute(pods: PodDeleter, intent: intents.RestartPod) -> intents.Result:
    """Carry out a RestartPod intent."""
    return await delete_pod(pods, intent.namespace, intent.pod)
