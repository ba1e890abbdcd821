"""A cuttable HTTP proxy in front of the sandbox's API server: one replica's network, in a test.

The replica gets a kubeconfig that points at ``http://127.0.0.1:<port>``; the proxy forwards
every request (watches stream through) to the real API server over TLS with the sandbox's own
credentials, and writes down each one it forwarded: time, method, path. No root, no iptables.

:meth:`ApiProxy.cut` behaves like a network partition, not a refusal: connections are accepted
and requests go silent (nothing is forwarded, nothing answers), open watch streams stall.
:meth:`ApiProxy.restore` drops everything held during the cut (it never reaches the API server)
and forwards new requests again. So "writes after the cut" are exactly what the replica sent
once it could reach the API server again.

:meth:`ApiProxy.slow` holds the requests a predicate picks for some seconds before forwarding
them: an API server that is slow for some objects, so their reconciles pile up in the queue.

:meth:`ApiProxy.hide` answers 404 for an API group, as an API server that does not serve it
would: a cluster without the Gateway API, as far as the replica behind the proxy can tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import pathlib
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import aiohttp.web
import yaml
from kubernetes import client, config

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade", "te", "trailer"}
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


@dataclasses.dataclass(frozen=True)
class Forwarded:
    at: float  # time.monotonic() when forwarded
    method: str
    path: str


class ApiProxy:
    """Run with ``with ApiProxy(kubeconfig) as proxy:``; point a client at :meth:`kubeconfig`."""

    def __init__(self, kubeconfig: pathlib.Path) -> None:
        upstream = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=upstream)  # type: ignore[no-untyped-call]
        self.upstream = upstream.host.rstrip("/")
        self.ssl = ssl.create_default_context(cafile=upstream.ssl_ca_cert) if upstream.ssl_ca_cert else None
        if self.ssl is not None and upstream.cert_file:
            self.ssl.load_cert_chain(upstream.cert_file, upstream.key_file)
        token = (upstream.api_key or {}).get("authorization") or (upstream.api_key or {}).get("BearerToken")
        self.auth = {"Authorization": token} if token else {}
        self.forwarded: list[Forwarded] = []
        self.cut_at: float | None = None
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="apiproxy", daemon=True)
        self._open = asyncio.Event()
        self._held: set[asyncio.Task[Any]] = set()
        self._slow: list[tuple[Callable[[str, str], bool], float]] = []
        self._hidden: list[str] = []
        self._runner: aiohttp.web.ServerRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def __enter__(self) -> ApiProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *_: object) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def kubeconfig(self, path: pathlib.Path) -> pathlib.Path:
        """A kubeconfig whose only way to the API server is this proxy."""
        server = f"http://127.0.0.1:{self.port}"
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "proxied", "cluster": {"server": server}}],
                    "users": [{"name": "proxied", "user": {}}],
                    "contexts": [{"name": "proxied", "context": {"cluster": "proxied", "user": "proxied"}}],
                    "current-context": "proxied",
                }
            )
        )
        return path

    def cut(self) -> float:
        """Partition the replica from the API server; returns the monotonic time of the cut."""
        self.cut_at = time.monotonic()
        self._loop.call_soon_threadsafe(self._open.clear)
        return self.cut_at

    def restore(self) -> None:
        """Heal the partition: whatever was held is dropped, new requests flow again."""
        self._call(self._restore())

    def slow(self, picks: Callable[[str, str], bool], seconds: float) -> None:
        """From now on, requests for which ``picks(method, path)`` holds wait ``seconds`` first."""
        self._slow.append((picks, seconds))

    def hide(self, prefix: str) -> None:
        """From now on, requests under ``prefix`` (``/apis/<group>``) get the API server's 404."""
        self._hidden.append(prefix.rstrip("/"))

    def writes_since(self, moment: float) -> list[Forwarded]:
        return [f for f in list(self.forwarded) if f.at >= moment and f.method in WRITES]

    async def _start(self) -> None:
        self._open.set()
        self._session = aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None))
        self._runner = aiohttp.web.ServerRunner(
            aiohttp.web.Server(self._handle), handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        sockets = self._runner.addresses
        self.port = int(sockets[0][1])

    async def _stop(self) -> None:
        for task in list(self._held):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        rest = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in rest:  # connections still open (watches): end them before the loop stops
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    async def _restore(self) -> None:
        for task in list(self._held):
            task.cancel()  # requests sent during the partition never arrive
        self._held.clear()
        self._open.set()

    async def _handle(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        body = await request.read()
        if not self._open.is_set():
            self._held.add(task)
            await asyncio.Event().wait()  # silent until restore() cancels it (the client sees a reset)
        if any(request.path == p or request.path.startswith(p + "/") for p in self._hidden):
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
            return aiohttp.web.json_response(
                {**status, "message": "the server could not find the requested resource"}, status=404
            )
        delay = max((seconds for picks, seconds in self._slow if picks(request.method, request.path)), default=0.0)
        if delay:
            await asyncio.sleep(delay)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP} | self.auth
        if body and "Content-Type" not in request.headers:
            # The kubernetes client sends some JSON bodies without a type; the API server reads them as
            # JSON, while aiohttp would label them application/octet-stream (415).
            headers["Content-Type"] = "application/json"
        self.forwarded.append(Forwarded(time.monotonic(), request.method, request.path_qs))
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body or None, ssl=self.ssl
        ) as upstream:
            response = aiohttp.web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    response.headers[key] = value
            await response.prepare(request)
            with contextlib.suppress(ConnectionResetError):  # the client hung up (a watch it ended)
                async for chunk in upstream.content.iter_any():
                    if not self._open.is_set():  # a stream open at the cut stalls, then dies on restore
                        self._held.add(task)
                        await asyncio.Event().wait()
                    await response.write(chunk)
                await response.write_eof()
            return response
