"""The simulator's aiohttp server: simulated pods, control API and the tick loop in one process.

The tick loop lives in the application's cleanup context, so it starts with the server and is
cancelled when the server stops: no load outlives it. The server binds loopback only: the
sandbox is single-machine and the control API has no authentication.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from vigil.sim import control, discovery, engine, schema, triton

DEFAULT_LISTEN = "127.0.0.1:9400"


class ListenError(ValueError):
    """A --listen address that is malformed or not on loopback."""


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) on a loopback address; port 0 picks a free one."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host:
        raise ListenError(f"expected host:port, got {listen!r}")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise ListenError(f"invalid port in {listen!r}") from None
    if not 0 <= port <= 65535:
        raise ListenError(f"port out of range in {listen!r}")
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            raise ListenError(f"{host!r} is not an IP address") from None
        if not loopback:
            raise ListenError(f"the simulator binds loopback only, not {host}")
    return ("127.0.0.1" if host == "localhost" else host), port


def make_app(simulator: engine.Simulator, tick: bool = True) -> web.Application:
    """The aiohttp application; with ``tick`` the simulation advances while the app runs."""
    # Room for a CSV trace sent inline to POST /control/load.
    app = web.Application(client_max_size=schema.MAX_CSV_CHARS + 1024 * 1024)
    app[triton.SIM_KEY] = simulator
    triton.add_routes(app)
    control.add_routes(app)
    discovery.add_routes(app)
    if tick:
        app.cleanup_ctx.append(_ticker)
    return app


async def _ticker(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[triton.SIM_KEY].run(), name="vigil-sim-ticks")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def running(app: web.Application, host: str, port: int) -> AsyncIterator[str]:
    """Serve ``app`` on host:port until the block exits; yields the base URL (actual port)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        bound_host, bound_port = bound[0], bound[1]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield f"http://{shown}:{bound_port}"
    finally:
        await runner.cleanup()


async def serve(
    simulator: engine.Simulator,
    listen: str = DEFAULT_LISTEN,
    started: Callable[[str], Awaitable[None] | None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the simulator server until ``stop`` is set (or forever, until cancelled)."""
    host, port = parse_listen(listen)
    async with running(make_app(simulator), host, port) as url:
        if started is not None:
            result = started(url)
            if result is not None:
                await result
        await (stop or asyncio.Event()).wait()
