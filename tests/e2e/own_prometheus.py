"""A Prometheus of a test's own: the sandbox's binary and scrape configuration, on another port.

Tests that take Prometheus away for minutes (the 10-minute outage) must not blind every other
test's operator, and tests in the isolated lane must not be blinded when the serial lane stops
the shared Prometheus. So the isolated lane runs its own: same binary, same scrape configuration
(kubernetes_sd over the sandbox's API server, the simulator as the pods' /metrics), its own data
directory and port, and only this session's namespaces kept (less to scrape on a 2-core machine).
"""

from __future__ import annotations

import pathlib
import socket
import urllib.error
import urllib.request

import yaml

from tests.e2e import waiting
from vigil.dev import procs, prometheus
from vigil.dev import sandbox as sandbox_mod


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnPrometheus:
    """Start, stop and restart one private Prometheus whose files live under ``directory``."""

    def __init__(self, info: sandbox_mod.SandboxInfo, directory: pathlib.Path, namespace_regex: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.directory = directory
        self.process = procs.Background("prometheus", directory)
        # The sandbox's own configuration (the chart's PodMonitor translated), minus the operator job.
        config = sandbox_mod.Sandbox().prometheus_config(info, rules_dir=directory / "rules", operator_metrics=None)
        for job in config["scrape_configs"]:
            job["relabel_configs"] = [
                {"source_labels": ["__meta_kubernetes_namespace"], "regex": namespace_regex, "action": "keep"},
                *job.get("relabel_configs", []),
            ]
        (directory / "rules").mkdir(parents=True, exist_ok=True)
        self.config_path = directory / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.binary = prometheus.ensure_binary(lambda _message: None)

    def start(self) -> None:
        argv = prometheus.command(self.binary, self.config_path, self.directory / "data", self.port)
        if not self.process.runs(argv):
            self.process.start(argv)
        waiting.until(lambda: _ready(self.url), 60, f"the test's own Prometheus on {self.url}")

    def stop(self) -> None:
        self.process.stop()
        waiting.until(lambda: not procs.port_open(self.port), 30, "the test's own Prometheus to stop")

    def alive(self) -> bool:
        return self.process.alive()
