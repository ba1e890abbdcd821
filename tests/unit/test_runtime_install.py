"""The runtime install, built the way the image builds it: the Dockerfile's own ``uv sync`` commands.

The files the Dockerfile copies go to a temporary directory, its ``uv sync`` lines run there with its
``ENV`` (uv pinned by the Makefile, the environment in a temporary directory instead of /opt/vigil), and
the resulting environment must run the operator's CLI, with the golden-request gate's client
(tritonclient, numpy) and without the benchmark and test tools. ``docker build`` itself cannot run on this machine (no container runtime).
"""

from __future__ import annotations

import os
import pathlib
import shlex
import shutil
import subprocess
import sys

import pytest
import typer

from tests.unit.test_packaging import ROOT, dockerfile_instructions, makefile_uv_version
from vigil import cli


def uv_binary() -> pathlib.Path:
    uv = pathlib.Path.home() / ".cache" / "vigil" / f"uv-{makefile_uv_version()}" / "bin" / "uv"
    assert uv.exists(), f"{uv} is missing: `make install` bootstraps it"
    return uv


def stage_env(stage: int) -> dict[str, str]:
    """The ``ENV`` variables the Dockerfile sets in its ``stage``-th stage (0: build, 1: runtime)."""
    instructions = dockerfile_instructions()
    starts = [i for i, (op, _) in enumerate(instructions) if op == "FROM"] + [len(instructions)]
    found: dict[str, str] = {}
    for op, args in instructions[starts[stage] : starts[stage + 1]]:
        if op == "ENV":
            found.update(item.split("=", 1) for item in shlex.split(args))
    return found


def install_runtime(context: pathlib.Path, target: pathlib.Path, compile_bytecode: bool) -> pathlib.Path:
    """Copy what the Dockerfile copies into ``context`` and run its ``uv sync`` lines there into ``target``."""
    instructions = dockerfile_instructions()
    first, second = [i for i, (op, _) in enumerate(instructions) if op == "FROM"]
    build_stage = instructions[first:second]
    for op, args in build_stage:
        if op == "COPY":
            *sources, _ = shlex.split(args)
            for source in sources:
                copy = shutil.copytree if (ROOT / source).is_dir() else shutil.copy
                copy(ROOT / source, context / source)
    environment = {**os.environ, **stage_env(0), "UV_PROJECT_ENVIRONMENT": str(target)}
    if not compile_bytecode:
        environment["UV_COMPILE_BYTECODE"] = "0"  # only the read-only image needs it: saves ~20 s
    environment.pop("VIRTUAL_ENV", None)
    syncs = [shlex.split(args) for op, args in build_stage if op == "RUN" and args.startswith("uv sync")]
    assert len(syncs) == 2, "dependencies first, then the project"
    for argv in syncs:
        argv = [sys.executable if arg == "/usr/local/bin/python3" else arg for arg in argv]
        subprocess.run([str(uv_binary()), *argv[1:]], cwd=context, env=environment, check=True, capture_output=True)
    return target


@pytest.fixture(scope="module")
def runtime_env(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    target = tmp_path_factory.mktemp("env") / "vigil"
    return install_runtime(tmp_path_factory.mktemp("context"), target, compile_bytecode=False)


def vigil(env: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(env / "bin" / "vigil"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"]},
    )


def test_runtime_install_has_the_gates_client_and_no_benchmark_or_test_dependencies(runtime_env: pathlib.Path) -> None:
    probe = "import importlib.util as u; print(*[m for m in ('matplotlib', 'pytest', 'torch') if u.find_spec(m)])"
    found = subprocess.run([str(runtime_env / "bin" / "python"), "-c", probe], capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == ""
    gate = "import tritonclient.http.aio, numpy, vigil.reconcile.validate"
    imported = subprocess.run([str(runtime_env / "bin" / "python"), "-c", gate], capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr


def test_operator_cli_runs_without_the_extras(runtime_env: pathlib.Path) -> None:
    result = vigil(runtime_env, "run", "--help")
    assert result.returncode == 0, result.stderr
    assert "--prometheus-url" in result.stdout


# numpy, all the simulator needs, now ships with the operator (the golden-request gate compares with it).
@pytest.mark.parametrize("command", ["sim", "dev"])
def test_simulator_and_sandbox_commands_load_from_the_runtime_install(runtime_env: pathlib.Path, command: str) -> None:
    result = vigil(runtime_env, command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_demo_checks_the_sandbox_extra_before_anything_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """`vigil demo` imports the same modules as `vigil dev` first: without numpy it exits naming the extra."""
    for name in [name for name in sys.modules if name.startswith(("vigil.sim", "vigil.dev"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "numpy", None)
    with pytest.raises(typer.Exit) as exited:
        cli.import_extra("demo", "sandbox", *cli.SANDBOX_MODULES, "vigil.dev.demo")
    assert exited.value.exit_code == 1
    assert "vigil.dev.demo" not in sys.modules
