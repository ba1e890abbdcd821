"""End to end: the image's install runs the operator on a read-only root filesystem.

``docker build`` cannot run here (no container runtime), so this builds what the image holds the way
the Dockerfile does (its own ``uv sync`` lines, bytecode compiled, no extras), then runs ``vigil run``
from it with the image's runtime ``ENV`` inside a private mount namespace whose whole filesystem is
remounted read-only, as ``readOnlyRootFilesystem: true`` does, and lets it reconcile a ModelDeployment
on the sandbox to Available.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.e2e import waiting
from tests.e2e.test_modeldeployment import condition, create, get, manifest
from tests.unit.test_runtime_install import install_runtime, stage_env
from vigil.dev import sandbox as sandbox_mod

pytestmark = pytest.mark.e2e

# unshare gives the command a private mount namespace (propagation private: nothing leaks out), in
# which / (the machine's only filesystem) is remounted read-only before the command starts.
READ_ONLY = [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    'mount -o remount,bind,ro / && exec "$@"',
    "sh",
]


@pytest.fixture(scope="module")
def image_env(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    target = tmp_path_factory.mktemp("image") / "opt-vigil"
    return install_runtime(tmp_path_factory.mktemp("context"), target, compile_bytecode=True)


def runtime_environment(env: pathlib.Path, kubeconfig: pathlib.Path) -> dict[str, str]:
    """The image's runtime ENV, with its /opt/vigil replaced by where this test installed it."""
    variables = {name: value.replace("/opt/vigil", str(env)) for name, value in stage_env(1).items()}
    variables["PATH"] = variables["PATH"].replace("$PATH", "/usr/local/bin:/usr/bin:/bin")
    return {**variables, "KUBECONFIG": str(kubeconfig)}


@pytest.fixture
def read_only_operator(
    image_env: pathlib.Path, sandbox: sandbox_mod.SandboxInfo, namespace: str, tmp_path: pathlib.Path
) -> Iterator[tuple[subprocess.Popen[bytes], pathlib.Path]]:
    assert shutil.which("unshare"), "util-linux unshare is needed to mount a read-only root"
    log = tmp_path / "operator.log"
    args = [str(image_env / "bin" / "vigil"), "run", f"--namespace={namespace}", "--standalone"]
    args += ["--liveness", "", "--metrics-port", "0", "--prometheus-url", sandbox.prometheus_url]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*READ_ONLY, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=runtime_environment(image_env, sandbox.kubeconfig),
        )
    yield proc, log
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def test_the_read_only_mount_really_refuses_writes(image_env: pathlib.Path) -> None:
    probe = subprocess.run([*READ_ONLY, "touch", str(image_env / "probe")], capture_output=True, text=True)
    assert probe.returncode != 0
    assert "Read-only file system" in probe.stderr
    assert not (image_env / "probe").exists()


def test_operator_from_the_image_install_reconciles_on_a_read_only_root(
    kube: client.ApiClient,
    namespace: str,
    read_only_operator: tuple[subprocess.Popen[bytes], pathlib.Path],
) -> None:
    proc, log = read_only_operator
    create(kube, namespace, manifest("readonly", replicas=1))
    waiting.until(
        lambda: (condition(get(kube, namespace, "readonly"), "Available") or {}).get("status") == "True",
        120,
        "the read-only operator to make readonly Available",
    )
    assert proc.poll() is None, log.read_text()[-3000:]
    output = log.read_text()
    assert "Read-only file system" not in output
    assert "Traceback" not in output, output[-3000:]
    # The gate needs numpy and tritonclient in the operator; torch (only `vigil golden` needs it) stays out.
    torch = subprocess.run([str(pathlib.Path(proc.args[len(READ_ONLY)]).parent / "python"), "-c", "import torch"])
    assert torch.returncode != 0, "the image carries no torch"
