"""Helpers for tests and demos: build pods and Services by hand, run the server in a thread.

Synchronous clients (``tritonclient.http``, the CLI) block the thread they run in, so the server
they talk to must run elsewhere: ``ThreadedServer`` runs the aiohttp app in its own thread and
event loop on 127.0.0.1 with a free port, and stops it on exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import types
from collections.abc import Callable, Iterator, Mapping, Sequence

from vigil import labels
from vigil.sim import cluster, engine, server

STARTUP_TIMEOUT_SECONDS = 10.0


def pod_labels(md: str, revision: str = "r1", version: str = "1", model: str | None = None) -> dict[str, str]:
    return {
        labels.MODEL_DEPLOYMENT: md,
        labels.REVISION: revision,
        labels.MODEL: model or md,
        labels.MODEL_VERSION: version,
    }


def pod(
    name: str,
    md: str = "md",
    namespace: str = "ns",
    revision: str = "r1",
    version: str = "1",
    model: str | None = None,
    ready: bool = True,
    gpus: int = 1,
    uid: str | None = None,
    restarts: int = 0,
    extra_labels: Mapping[str, str] | None = None,
    model_repository: str | None = None,
) -> cluster.Pod:
    return cluster.Pod(
        namespace=namespace,
        name=name,
        uid=uid or f"uid-{namespace}-{name}",
        labels={**pod_labels(md, revision, version, model), **(extra_labels or {})},
        ready=ready,
        gpus=gpus,
        restarts=restarts,
        model_repository=model_repository,
    )


def service(name: str, selector: Mapping[str, str] | None, namespace: str = "ns") -> cluster.Service:
    return cluster.Service(namespace=namespace, name=name, selector=selector)


def md_service(md: str, namespace: str = "ns", revision: str | None = None) -> cluster.Service:
    """The stable Service ``<md>``, optionally pinned to one revision."""
    selector = {labels.MODEL_DEPLOYMENT: md}
    if revision is not None:
        selector[labels.REVISION] = revision
    return service(md, selector, namespace)


def make_cluster(
    pods: Sequence[cluster.Pod],
    services: Sequence[cluster.Service] = (),
    routes: Sequence[cluster.Route] = (),
    deployments: Sequence[cluster.ModelDeploymentInfo] = (),
) -> cluster.Cluster:
    return cluster.Cluster(
        pods=tuple(pods),
        services={(s.namespace, s.name): s for s in services},
        routes={(r.namespace, r.name): r for r in routes},
        deployments={(d.namespace, d.name): d for d in deployments},
    )


class ThreadedServer:
    """``with ThreadedServer(simulator, tick=False) as url:`` serves on 127.0.0.1 in a thread."""

    def __init__(self, simulator: engine.Simulator, tick: bool = False) -> None:
        self.simulator = simulator
        self.tick = tick
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._started: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, name="vigil-sim-test-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:
            if not self._started.done():
                self._started.set_exception(exc)
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = server.make_app(self.simulator, tick=self.tick)
        async with server.running(app, "127.0.0.1", 0) as url:
            self._started.set_result(url)
            await self._stop.wait()

    def call(self, function: Callable[[], object]) -> None:
        """Run ``function`` on the server's loop (where the simulator lives) and wait for it."""

        async def invoke() -> None:
            function()

        asyncio.run_coroutine_threadsafe(invoke(), self._loop).result(timeout=STARTUP_TIMEOUT_SECONDS)

    def __enter__(self) -> str:
        self._thread.start()
        self.url = self._started.result(timeout=STARTUP_TIMEOUT_SECONDS)
        return self.url

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        if self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=STARTUP_TIMEOUT_SECONDS)


@contextlib.contextmanager
def serving(simulator: engine.Simulator) -> Iterator[tuple[ThreadedServer, str]]:
    """A non-ticking server that already plays the source's pods; yields it and ``host:port`` for tritonclient."""
    threaded = ThreadedServer(simulator, tick=False)
    with threaded as url:
        threaded.call(simulator.sync)
        yield threaded, url.removeprefix("http://")
