"""Recognising the sandbox's background processes by command line."""

from __future__ import annotations

import os
import pathlib
import sys

from vigil.dev import procs


def venv(root: pathlib.Path, *names: str) -> pathlib.Path:
    """A directory like a virtualenv's bin/: each name a symlink to this interpreter."""
    root.mkdir(parents=True)
    for name in names:
        os.symlink(sys.executable, root / name)
    return root


def test_the_same_interpreter_under_two_names_in_one_place_is_the_same_program(tmp_path: pathlib.Path) -> None:
    bin_dir = venv(tmp_path / "a" / "bin", "python", "python3")
    assert procs.same_command([str(bin_dir / "python"), "-m", "vigil"], [str(bin_dir / "python3"), "-m", "vigil"])
    assert not procs.same_command([str(bin_dir / "python"), "-m", "vigil"], [str(bin_dir / "python"), "-m", "other"])
    assert not procs.same_command(None, [str(bin_dir / "python")])


def test_another_checkouts_virtualenv_runs_other_code_so_it_is_another_command(tmp_path: pathlib.Path) -> None:
    mine = venv(tmp_path / "wt-mine" / ".venv" / "bin", "python")
    theirs = venv(tmp_path / "wt-theirs" / ".venv" / "bin", "python")
    argv = ["-m", "vigil", "sim", "serve"]
    assert os.path.realpath(mine / "python") == os.path.realpath(theirs / "python"), "one interpreter behind both"
    assert not procs.same_command([str(mine / "python"), *argv], [str(theirs / "python"), *argv])
