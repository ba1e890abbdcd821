"""What the operator watches, and the reads it answers from those watches.

One :class:`vigil.reconcile.informer.Store` per kind the reconcile reads, fed by one stream per
namespace in namespace mode (plain names, as :mod:`vigil.reconcile.scope` decides), or by one
cluster-wide stream filtered to the scope otherwise (globs, or the whole cluster):

* ModelDeployments and Runbooks (every one in scope: a Runbook carries no vigil label);
* Deployments, Services, pods, Incidents and (where the Gateway API is served) HTTPRoutes, only
  those labelled ``vigil.dev/modeldeployment``, selected by the API server and indexed by that
  label, so a deployment's children are a dict lookup.

Pods are kept slim: the fields diagnosis and the GPU count read, not the whole pod spec.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Callable
from typing import Any

from kubernetes import client

from vigil import api, labels
from vigil.api import incident as incapi
from vigil.api import modeldeployment as mdapi
from vigil.api import runbook as rbapi
from vigil.reconcile import informer, scope, supervise
from vigil.render import route

Obj = informer.Obj


def slim_pod(pod: Obj) -> Obj:
    """The parts of a pod vigil reads (diagnosis facts, GPUs held): a quarter of its size."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    keep = ("name", "namespace", "uid", "labels", "resourceVersion", "deletionTimestamp")
    return {
        "metadata": {k: meta[k] for k in keep if k in meta},
        "spec": {
            "nodeName": spec.get("nodeName"),
            "containers": [
                {"name": c.get("name"), "resources": {"limits": (c.get("resources") or {}).get("limits") or {}}}
                for c in spec.get("containers") or []
            ],
        },
        "status": pod.get("status") or {},
    }


OWNED = labels.MODEL_DEPLOYMENT
MODEL_DEPLOYMENTS = informer.Resource(api.GROUP, api.VERSION, mdapi.PLURAL)
RUNBOOKS = informer.Resource(api.GROUP, api.VERSION, rbapi.PLURAL)
INCIDENTS = informer.Resource(api.GROUP, api.VERSION, incapi.PLURAL, selector=OWNED, index_label=OWNED)
DEPLOYMENTS = informer.Resource("apps", "v1", "deployments", selector=OWNED, index_label=OWNED)
SERVICES = informer.Resource("", "v1", "services", selector=OWNED, index_label=OWNED)
PODS = informer.Resource("", "v1", "pods", selector=OWNED, index_label=OWNED, slim=slim_pod)
HTTPROUTES = informer.Resource(route.GROUP, route.VERSION, route.PLURAL, selector=OWNED, index_label=OWNED)

Changed = Callable[[informer.Resource, Obj | None, Obj | None], None]


@dataclasses.dataclass
class Caches:
    """The stores and the streams that feed them."""

    stores: dict[str, informer.Store]
    informers: list[informer.Informer]

    def store(self, plural: str) -> informer.Store | None:
        return self.stores.get(plural)

    def synced(self, plural: str | None = None) -> bool:
        """Whether every stream (of ``plural``, or of all kinds) has its first list in the store."""
        return all(i.synced.is_set() for i in self.informers if plural in (None, i.store.resource.plural))

    def unsynced(self) -> list[str]:
        return [i.name for i in self.informers if not i.synced.is_set()]

    async def wait_synced(self) -> None:
        await asyncio.gather(*(i.synced.wait() for i in self.informers))

    def spawn(self, supervisor: supervise.Supervisor) -> None:
        """Run every stream under supervision (a failed stream relists after its backoff). Shutdown
        cancels the supervised tasks; each run's ``finally`` closes its open watch."""
        allowance = informer.WATCH_SECONDS[1] + informer.READ_SLACK + 120.0
        for stream in self.informers:
            supervisor.spawn(f"watch {stream.name}", stream.run, allowance=allowance)


def build(
    api_client: client.ApiClient, watch_scope: scope.Scope, on_change: Changed, gateway_api: bool = False
) -> Caches:
    """The caches of an operator watching ``watch_scope``; ``on_change`` hears every change."""
    resources = [MODEL_DEPLOYMENTS, RUNBOOKS, INCIDENTS, DEPLOYMENTS, SERVICES, PODS]
    if gateway_api:
        resources.append(HTTPROUTES)
    stores: dict[str, informer.Store] = {}
    streams: list[informer.Informer] = []
    names = watch_scope.exact_names
    api_client = stream_client(api_client, len(resources) * (len(names) if names is not None else 1))
    for resource in resources:

        def changed(old: Obj | None, new: Obj | None, resource: informer.Resource = resource) -> None:
            on_change(resource, old, new)

        store = informer.Store(resource, changed)
        stores[resource.plural] = store
        if names is not None:
            streams += [informer.Informer(api_client, store, namespace=name) for name in names]
        else:
            admits = None if watch_scope.clusterwide else watch_scope.admits
            streams.append(informer.Informer(api_client, store, admits=admits))
    return Caches(stores, streams)


def stream_client(api_client: client.ApiClient, streams: int) -> client.ApiClient:
    """A client of its own for the long-lived watch connections (the shared pool stays for calls)."""
    configuration: Any = copy.deepcopy(api_client.configuration)
    configuration.connection_pool_maxsize = streams + 2
    return client.ApiClient(configuration)
