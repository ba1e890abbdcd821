"""Fixtures that run the real operator (``vigil run``) against the sandbox, as a subprocess.

A subprocess rather than kopf's in-thread runner: tests can SIGKILL it and start it again, the
way a crashing pod would, and its logs land in a file shown on failure.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.e2e import waiting


class OperatorProcess:
    def __init__(self, kubeconfig: str, log_dir: pathlib.Path, prometheus_url: str | None) -> None:
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.prometheus_url = prometheus_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *extra: str) -> None:
        self.starts += 1
        log = (self.log_dir / f"operator-{self.starts}.log").open("wb")
        args = [sys.executable, "-m", "vigil", "run", "-A", "--standalone", "--liveness", "", "--resync", "10"]
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


@pytest.fixture(scope="module")
def operator(sandbox: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    kubeconfig = str(getattr(sandbox, "kubeconfig"))
    prometheus = getattr(sandbox, "prometheus_url", None)
    proc = OperatorProcess(kubeconfig, tmp_path_factory.mktemp("operator"), prometheus)
    proc.start()
    yield proc
    proc.stop()
    print(proc.logs()[-3000:])


@pytest.fixture
def namespace(kube: client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    waiting.until(
        lambda: any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items),
        60,
        "the default service account",
    )
    yield name
    with contextlib.suppress(client.exceptions.ApiException):
        core.delete_namespace(name)
