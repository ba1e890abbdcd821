"""A stopped sandbox whose ports another cluster took (after a reboot) is recreated, not waited on."""

from __future__ import annotations

import contextlib
import pathlib
import socket
from collections.abc import Iterator

import pytest
import yaml

from vigil.dev import kwok
from vigil.dev import sandbox as sandbox_mod


@pytest.fixture
def ports() -> Iterator[tuple[int, int]]:
    """A port something listens on and a free one."""
    with contextlib.closing(socket.socket()) as other, contextlib.closing(socket.socket()) as probe:
        other.bind(("127.0.0.1", 0))
        other.listen()
        probe.bind(("127.0.0.1", 0))  # bound, not listening: nothing answers there
        yield other.getsockname()[1], probe.getsockname()[1]


def stopped_cluster(tmp_path: pathlib.Path, options: dict[str, int]) -> tuple[sandbox_mod.Sandbox, kwok.Kwokctl]:
    box = sandbox_mod.Sandbox(state_dir=tmp_path / "state")
    runner = kwok.Kwokctl(tmp_path / "kwokctl", box.name, box.kwok_workdir)
    runner.cluster_dir.mkdir(parents=True)
    (runner.cluster_dir / "kwok.yaml").write_text(yaml.safe_dump({"kind": "KwokctlConfiguration", "options": options}))
    return box, runner


def test_the_ports_of_a_stopped_cluster_that_something_else_answers_on_are_named(
    tmp_path: pathlib.Path, ports: tuple[int, int]
) -> None:
    taken, free = ports
    box, runner = stopped_cluster(tmp_path, {"etcdPort": taken, "kubeApiserverPort": free})
    assert box._ports_taken(runner) == f"etcdPort {taken}"


def test_a_cluster_with_a_component_running_holds_its_own_ports(
    tmp_path: pathlib.Path, ports: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    taken, _ = ports
    box, runner = stopped_cluster(tmp_path, {"etcdPort": taken})
    monkeypatch.setattr(sandbox_mod.Sandbox, "_component_alive", lambda _self, _kwokctl, name: name == "etcd")
    assert box._ports_taken(runner) == ""


def test_a_stopped_cluster_on_free_ports_is_started_as_it_is(tmp_path: pathlib.Path, ports: tuple[int, int]) -> None:
    _, free = ports
    box, runner = stopped_cluster(tmp_path, {"etcdPort": free})
    assert box._ports_taken(runner) == ""
