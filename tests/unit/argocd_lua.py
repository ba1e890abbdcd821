"""Run vigil's Argo CD health checks (argocd/health/*.lua) the way Argo CD does, for the tests.

Argo CD evaluates ``resource.customizations.health.<group>_<kind>`` with gopher-lua, a Lua 5.1: the live
object is the global ``obj`` and the script returns a table with ``status`` and ``message``. Here the
same script runs in lupa's Lua 5.1 with only the libraries Argo CD gives such scripts (no io, os,
package or loaders), so a script that would fail in Argo CD fails here too.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from lupa import lua51

ROOT = pathlib.Path(__file__).resolve().parents[2]
HEALTH_DIR = ROOT / "argocd" / "health"
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "argocd"
STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
_UNSAFE = ("io", "os", "package", "require", "dofile", "loadfile", "load", "loadstring", "debug", "module")


@dataclasses.dataclass(frozen=True)
class Health:
    status: str
    message: str


def script_for(obj: dict[str, Any]) -> pathlib.Path:
    group = obj["apiVersion"].rpartition("/")[0]
    return HEALTH_DIR / f"{group}_{obj['kind']}.lua"


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({key: _to_lua(runtime, item) for key, item in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, item) for item in value])
    return value


def health(obj: dict[str, Any]) -> Health:
    """The Argo CD health of ``obj`` (a Kubernetes object as the API returns it) per its vigil health script."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True, register_eval=False, register_builtins=False)
    lua_globals = runtime.globals()
    for name in _UNSAFE:
        lua_globals[name] = None
    lua_globals.obj = _to_lua(runtime, obj)
    result = runtime.execute(script_for(obj).read_text())
    status, message = result["status"], result["message"]
    assert status in STATUSES, f"{script_for(obj).name} returned status {status!r}"
    return Health(str(status), "" if message is None else str(message))


def trimmed(obj: dict[str, Any]) -> dict[str, Any]:
    """What a fixture keeps of a live object: kind, name, generation, spec and status (no uid, times, fields)."""
    metadata = obj["metadata"]
    kept: dict[str, Any] = {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": metadata["name"], "generation": metadata.get("generation")},
        "spec": obj.get("spec", {}),
    }
    if "status" in obj:
        kept["status"] = obj["status"]
    return kept
