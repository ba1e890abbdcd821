"""The real operator (``vigil run``) against the sandbox, as a subprocess (``vigil run``) against the sandbox, as a subprocess.

A subprocess rather than kopf's in-thread runner: tests can SIGKILL it and start it again, the
way a crashing pod would, and its logs land in a file shown on failure.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys


class OperatorProcess:
    def __init__(
        self, kubeconfig: str, log_dir: pathlib.Path, prometheus_url: str | None, standalone: bool = True
    ) -> None:
        self.standalone = standalone
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.prometheus_url = prometheus_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *extra: str) -> None:
        self.starts += 1
        log = (self.log_dir / f"operator-{self.starts}.log").open("wb")
        args = [sys.executable, "-m", "vigil", "run", "-A", "--liveness", "", "--resync", "10"]
        if self.standalone:
            args.append("--standalone")
        # Diagnosis compares a short current rate with a baseline; test deployments live minutes.
        args += ["--rate-window", "30s", "--baseline-window", "10m", "--metrics-port", "0"]
        if self.prometheus_url:
            args += ["--prometheus-url", self.prometheus_url]
        env = {**os.environ, "KUBECONFIG": self.kubeconfig}
        self.proc = subprocess.Popen([*args, *extra], stdout=log, stderr=subprocess.STDOUT, env=env)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in sorted(self.log_dir.glob("operator-*.log")))
