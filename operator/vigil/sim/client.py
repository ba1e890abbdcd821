"""A small synchronous client of the simulator's control API, for the CLI and for tests.

Standard library only (urllib): the CLI runs once per command and needs no event loop.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_URL = "http://127.0.0.1:9400"


class ControlError(RuntimeError):
    """The simulator refused a request or could not be reached; the message says which."""

    def __init__(self, message: str, status: int | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.details = details


def _quote(*parts: str) -> str:
    return "/".join(urllib.parse.quote(part, safe="") for part in parts)


class ControlClient:
    def __init__(self, url: str = DEFAULT_URL, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = {"error": raw.decode("utf-8", errors="replace")}
            raise ControlError(str(payload.get("error")), exc.code, payload.get("details")) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ControlError(f"cannot reach the simulator at {self.url}: {exc}") from None

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/control/state")
        return result

    def set_load(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", "/control/load", body)
        return result

    def stop_load(self, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("DELETE", "/control/load/" + _quote(namespace, name))
        return result

    def set_fault(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", "/control/faults", body)
        return result

    def clear_faults(self, namespace: str, name: str, version: str | None = None) -> dict[str, Any]:
        parts = (namespace, name) if version is None else (namespace, name, version)
        result: dict[str, Any] = self.request("DELETE", "/control/faults/" + _quote(*parts))
        return result
