"""The simulator's control API, on the same loopback server as the simulated pods.

- ``GET /control/state``: pods played, loads, faults, profile, totals, lost traffic.
- ``POST /control/load`` (``LoadRequest``): start or replace the load of a deployment.
- ``DELETE /control/load/<namespace>/<name>``: stop it.
- ``GET /control/faults``; ``POST /control/faults`` (``FaultRequest``): merge a fault into the one
  for the same (namespace, name, version); ``DELETE /control/faults/<namespace>/<name>[/<version>]``.
- ``GET /healthz``: the server is up (for whoever starts it and waits).
- ``GET /sd/targets`` (module ``discovery``): Prometheus HTTP service discovery of the pods.

Errors are JSON ``{"error": ..., "details": [...]}`` with status 400 (invalid request) or 404.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic
from aiohttp import web

from vigil.sim import arrivals, schema, triton


def _bad(message: str, details: Any = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if details is not None:
        body["details"] = details
    return web.json_response(body, status=400)


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"invalid JSON: {exc}"}), content_type="application/json"
        ) from None


def _errors(exc: pydantic.ValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(err["loc"]), "msg": err["msg"]} for err in exc.errors(include_url=False, include_input=False)]


async def state(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[triton.SIM_KEY].state())


async def set_load(request: web.Request) -> web.StreamResponse:
    try:
        load_request = schema.LoadRequest.model_validate(await _json(request))
        load = request.app[triton.SIM_KEY].set_load(load_request)
    except pydantic.ValidationError as exc:
        return _bad("invalid load", _errors(exc))
    except arrivals.ArrivalError as exc:
        return _bad(f"invalid load: {exc}")
    return web.json_response({"load": load.describe()})


async def stop_load(request: web.Request) -> web.StreamResponse:
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    if not request.app[triton.SIM_KEY].stop_load(namespace, name):
        return web.json_response({"error": f"no load for {namespace}/{name}"}, status=404)
    return web.json_response({"stopped": f"{namespace}/{name}"})


async def list_faults(request: web.Request) -> web.StreamResponse:
    return web.json_response({"faults": request.app[triton.SIM_KEY].book.fault_list()})


async def set_fault(request: web.Request) -> web.StreamResponse:
    try:
        fault = schema.FaultRequest.model_validate(await _json(request))
    except pydantic.ValidationError as exc:
        return _bad("invalid fault", _errors(exc))
    merged = request.app[triton.SIM_KEY].set_fault(fault)
    entry: dict[str, Any] = {"namespace": fault.namespace, "name": fault.name, "version": fault.version}
    entry.update(merged.wire())
    return web.json_response({"fault": entry})


async def clear_faults(request: web.Request) -> web.StreamResponse:
    info = request.match_info
    cleared = request.app[triton.SIM_KEY].clear_faults(info["namespace"], info["name"], info.get("version"))
    return web.json_response({"cleared": [key.label() for key in cleared]})


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"ok": True})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/control/state", state)
    app.router.add_post("/control/load", set_load)
    app.router.add_delete("/control/load/{namespace}/{name}", stop_load)
    app.router.add_get("/control/faults", list_faults)
    app.router.add_post("/control/faults", set_fault)
    app.router.add_delete("/control/faults/{namespace}/{name}", clear_faults)
    app.router.add_delete("/control/faults/{namespace}/{name}/{version}", clear_faults)
