"""The real operator (``vigil run``) against the sandbox, as a subprocess, scoped to this test session.

A subprocess rather than kopf's in-thread runner: tests can SIGKILL it and start it again, the
way a crashing pod would, and its logs land in a file shown on failure.

Every test session (every xdist worker) gets its own namespace prefix, and its operators watch
only ``<prefix>*`` (``--namespace``, a kopf glob). So a demo's operator, a benchmark's, or the
other worker's never act on this session's objects, and this session's never act on theirs.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence

from kubernetes import client

from tests.e2e import waiting

_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
# t<4 hex>-[<xdist worker>-]: short, DNS-1123, distinct per session and per worker.
PREFIX = f"t{secrets.token_hex(2)}-{_WORKER + '-' if _WORKER else ''}"
SCOPE = f"{PREFIX}*"


def namespace_name() -> str:
    """A fresh namespace name inside this session's scope (what the ``namespace`` fixture creates)."""
    return f"{PREFIX}{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def scoped_namespace(kube: client.ApiClient) -> Iterator[str]:
    """Create a namespace inside this session's scope; delete it afterwards and wait until its pods
    are gone, so their GPUs are free for the next test."""
    name = namespace_name()
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        with contextlib.suppress(client.exceptions.ApiException):
            core.delete_namespace(name)
        with contextlib.suppress(waiting.Timeout):
            waiting.until(lambda: not core.list_namespaced_pod(name).items or None, 120, f"namespace {name} emptied")


class OperatorProcess:
    """``vigil run`` watching ``namespaces`` (default: this session's scope; ``()``: the whole cluster).

    Replicas that are not ``standalone`` elect a leader through a Lease (``--lease-*`` in ``extra``).
    """

    def __init__(
        self,
        kubeconfig: str,
        log_dir: pathlib.Path,
        prometheus_url: str | None,
        standalone: bool = True,
        namespaces: Sequence[str] | None = None,
        inference_url: str | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.standalone = standalone
        self.args = tuple(args)
        """More ``vigil run`` flags, on every start."""
        if namespaces is None:
            namespaces = (SCOPE,)
        self.namespaces = tuple(namespaces)
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.prometheus_url = prometheus_url
        self.inference_url = inference_url
        """Where the golden-request gate reaches pods (the sandbox's simulator); its default otherwise."""
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *extra: str) -> None:
        self.starts += 1
        args = [sys.executable, "-m", "vigil", "run", "--liveness", "", "--resync", "10"]
        args += [f"--namespace={pattern}" for pattern in self.namespaces] or ["-A"]
        if self.standalone:
            args.append("--standalone")
        # Diagnosis compares a short current rate with a baseline; test deployments live minutes,
        # and a test's surge breaches its SLO seconds after it began: a current window of the
        # minimum window (20s, four 5s scrapes) shows it instead of averaging it away.
        args += ["--rate-window", "20s", "--baseline-window", "10m", "--metrics-port", "0"]
        if self.prometheus_url:
            args += ["--prometheus-url", self.prometheus_url]
        if self.inference_url:
            args += ["--inference-url", self.inference_url]
        # Unbuffered: a SIGKILLed operator must not take its last lines with it.
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "PYTHONUNBUFFERED": "1"}
        with (self.log_dir / f"operator-{self.starts}.log").open("wb") as log:
            self.proc = subprocess.Popen([*args, *self.args, *extra], stdout=log, stderr=subprocess.STDOUT, env=env)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM, as the kubelet sends on a pod's deletion; returns at once (see :meth:`wait`)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

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
