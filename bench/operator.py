"""The real operator (``python -m vigil run``) as a subprocess the benchmark starts and stops.

Each benchmark runs its own operator, scoped with ``--namespace`` to the benchmark's namespace,
so the numbers are not those of an operator also serving someone else's deployments, and its
``/metrics`` on a free loopback port (not 9102, which the sandbox's Prometheus scrapes).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import socket
import subprocess
import sys
import urllib.request

from bench import waiting


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass(frozen=True)
class OperatorSettings:
    """The operator's command-line options the benchmarks depend on (reported with the results)."""

    eval_interval: float = 5.0
    resync: float = 10.0
    min_window: str = "20s"
    rate_window: str = "30s"
    baseline_window: str = "10m"

    def args(self) -> list[str]:
        return [
            "--eval-interval",
            f"{self.eval_interval:g}",
            "--resync",
            f"{self.resync:g}",
            "--min-window",
            self.min_window,
            "--rate-window",
            self.rate_window,
            "--baseline-window",
            self.baseline_window,
        ]


class OperatorProcess:
    """``vigil run --standalone`` watching the given namespaces, logging to a file."""

    def __init__(
        self,
        kubeconfig: pathlib.Path,
        prometheus_url: str,
        namespaces: list[str],
        log_file: pathlib.Path,
        settings: OperatorSettings,
        inference_url: str | None = None,
    ) -> None:
        if not namespaces:
            # Without --namespace the operator would act cluster-wide, on the demo's or a test's objects.
            raise ValueError("a benchmark operator must be scoped to its own namespaces")
        self.kubeconfig = kubeconfig
        self.prometheus_url = prometheus_url
        self.namespaces = namespaces
        self.log_file = log_file
        self.settings = settings
        self.inference_url = inference_url
        """Where the golden-request gate reaches pods (the sandbox's simulator)."""
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def command(self) -> list[str]:
        args = [sys.executable, "-m", "vigil", "run", "--standalone", "--liveness", ""]
        for namespace in self.namespaces:
            args += ["--namespace", namespace]
        args += ["--prometheus-url", self.prometheus_url, "--metrics-port", str(self.metrics_port)]
        if self.inference_url:
            args += ["--inference-url", self.inference_url]
        return args + self.settings.args()

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        with self.log_file.open("wb") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env)
        waiting.until(self._metrics_up, 60, f"the operator's /metrics on port {self.metrics_port}", interval=0.3)

    def _metrics_up(self) -> bool:
        if not self.alive():
            raise RuntimeError(
                f"the operator exited with {self.proc.poll() if self.proc else None}; log: {self.log_file}"
            )
        return self.metrics() is not None

    def metrics(self) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
                return bytes(response.read()).decode()
        except OSError:
            return None

    def rss_bytes(self) -> int | None:
        """Resident set size of the operator process, from /proc (VmRSS)."""
        if self.proc is None:
            return None
        try:
            for line in pathlib.Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""
