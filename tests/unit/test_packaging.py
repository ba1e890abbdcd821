"""Packaging: one version number, a runtime install without the simulator, an image built from the lock.

These read the committed files (pyproject.toml, uv.lock, Dockerfile, Makefile, the chart) the way the
tools do, so a drift between them fails here rather than in a user's ``pip install`` or ``docker build``.
"""

from __future__ import annotations

import importlib.metadata
import pathlib
import re
import shlex
import tomllib
from typing import Any

import yaml

import vigil

ROOT = pathlib.Path(__file__).resolve().parents[2]
# What only the simulator, the sandbox, the benchmarks or the tests use: never in `pip install vigil`.
NOT_RUNTIME = {"matplotlib", "pandas", "pytest", "mypy", "ruff", "kmock", "lupa", "torch"}


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def locked_packages() -> dict[str, dict[str, Any]]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {package["name"]: package for package in lock["package"]}


def runtime_closure(packages: dict[str, dict[str, Any]]) -> set[str]:
    """Every package ``pip install vigil`` pulls in per the lock: vigil's dependencies, transitively, no extras."""
    seen: set[str] = set()
    todo = [dependency["name"] for dependency in packages["vigil"]["dependencies"]]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(dependency["name"] for dependency in packages[name].get("dependencies", []))
    return seen


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def makefile_uv_version() -> str:
    match = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, "Makefile defines UV_VERSION"
    return match.group(1)


def test_chart_version_and_app_version_equal_the_package_version() -> None:
    chart = yaml.safe_load((ROOT / "charts/vigil/Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == (vigil.__version__, vigil.__version__)


def test_package_version_is_read_from_vigil_version() -> None:
    project = pyproject()
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "vigil.__version__"}
    assert importlib.metadata.version("vigil") == vigil.__version__


def test_changelog_has_a_section_for_the_version() -> None:
    assert f"## [{vigil.__version__}]" in (ROOT / "CHANGELOG.md").read_text()


def test_runtime_dependencies_in_the_lock_leave_out_simulator_benchmarks_and_dev_tools() -> None:
    closure = runtime_closure(locked_packages())
    assert {"kopf", "kubernetes", "pydantic", "prometheus-api-client"} <= closure
    assert {"tritonclient", "numpy", "aiohttp"} <= closure, "the golden-request gate runs in the operator"
    assert closure.isdisjoint(NOT_RUNTIME), sorted(closure & NOT_RUNTIME)


def test_every_extra_in_pyproject_is_in_the_lock_and_the_simulator_is_one() -> None:
    extras = pyproject()["project"]["optional-dependencies"]
    locked = locked_packages()["vigil"]["optional-dependencies"]
    assert set(extras) == set(locked) == {"sim", "sandbox", "bench", "golden", "dev"}
    assert "numpy" in {dependency["name"] for dependency in locked["sim"]}


def test_torch_comes_with_the_golden_extra_which_make_installs_but_the_simulator_does_not_need() -> None:
    locked = locked_packages()["vigil"]["optional-dependencies"]
    assert {"torch", "tritonclient"} <= {dependency["name"] for dependency in locked["golden"]}
    (itself,) = [d for d in pyproject()["project"]["optional-dependencies"]["dev"] if d.startswith("vigil[")]
    assert "golden" in itself.removeprefix("vigil[").removesuffix("]").split(","), (
        "make install (the dev set) has torch"
    )
    for light in ("sim", "sandbox"):
        assert "torch" not in {dependency["name"] for dependency in locked[light]}


def test_dockerfile_installs_only_the_runtime_set_from_the_lock_with_the_makefiles_uv() -> None:
    runs = [shlex.split(args) for instruction, args in dockerfile_instructions() if instruction == "RUN"]
    syncs = [argv for argv in runs if argv[:2] == ["uv", "sync"]]
    assert syncs, "the image installs with uv sync"
    for argv in syncs:
        assert "--frozen" in argv, "installs exactly uv.lock, never re-resolves"
        assert not any(arg in ("--extra", "--all-extras") or arg.startswith("--extra=") for arg in argv), argv
    assert ["pip", "install", "--no-cache-dir", f"uv=={makefile_uv_version()}"] in runs


def test_dockerfile_base_is_pinned_by_digest_and_runs_as_a_non_root_uid() -> None:
    instructions = dockerfile_instructions()
    (base,) = [args for instruction, args in instructions if instruction == "ARG" and args.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim@sha256:[0-9a-f]{64}", base)
    assert all(args.split()[0] == "${PYTHON_IMAGE}" for instruction, args in instructions if instruction == "FROM")
    (user,) = [args for instruction, args in instructions if instruction == "USER"]
    assert int(user.split(":")[0]) > 0
    environment = " ".join(args for instruction, args in instructions if instruction == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in environment, "a read-only root filesystem gets no __pycache__"


def test_ci_runs_exactly_make_test() -> None:
    commands = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert commands[-1] == "exec make test"
