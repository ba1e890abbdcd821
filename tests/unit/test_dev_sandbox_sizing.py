"""The sandbox's size options: Service range, CPU nodes, pods per node, and their checks."""

from __future__ import annotations

import json
import pathlib

import pytest

from vigil.dev import sandbox as sandbox_mod


def _info(**extra: object) -> dict[str, object]:
    return {
        "name": "vigil",
        "state_dir": "/state",
        "kubeconfig": "/state/kubeconfig",
        "apiserver_url": "https://127.0.0.1:1",
        "prometheus_url": "http://127.0.0.1:9090",
        "simulator_url": "http://127.0.0.1:9400",
        "nodes": 4,
        "gpus_per_node": 8,
        "gpu_product": "NVIDIA-A100-SXM4-80GB",
        "ready_delay": "2s",
        "scrape_interval": "5s",
        "prometheus_port": 9090,
        "sim_port": 9400,
        **extra,
    }


def test_the_default_sandbox_holds_two_thousand_one_replica_deployments() -> None:
    info = sandbox_mod.SandboxInfo.from_json(
        json.dumps(
            _info(
                cpu_nodes=sandbox_mod.DEFAULT_CPU_NODES,
                pods_per_node=sandbox_mod.DEFAULT_PODS_PER_NODE,
                service_cidr="10.96.0.0/12",
            )
        )
    )
    # Each deployment: one pod, one Service (plus one per revision while it rolls out).
    assert info.cpu_nodes * info.pods_per_node >= 2000
    assert info.service_capacity >= 2 * 2000
    assert info.pod_capacity == (4 + sandbox_mod.DEFAULT_CPU_NODES) * 110


def test_a_sandbox_json_written_before_the_size_options_reads_as_the_old_shape() -> None:
    info = sandbox_mod.SandboxInfo.from_json(json.dumps(_info()))
    assert (info.cpu_nodes, info.pods_per_node, info.service_cidr) == (0, 110, "10.0.0.0/24")
    assert info.service_capacity == 253  # why a fleet of ~250 ran out of ClusterIPs
    assert info.state_dir == pathlib.Path("/state")


@pytest.mark.parametrize(
    ("cidr", "complaint"),
    [
        ("10.0.0.0/8", "from /12 to /28"),
        ("10.96.0.1/12", "host bits"),
        ("fd00::/108", "IPv4"),
        ("banana", "--service-cidr"),
        ("10.244.0.0/16", "overlaps"),
        ("10.240.0.0/16", "overlaps"),
    ],
)
def test_a_service_range_the_api_server_or_the_sandbox_cannot_use_is_refused_naming_the_option(
    cidr: str, complaint: str
) -> None:
    with pytest.raises(sandbox_mod.SandboxError, match=complaint) as raised:
        sandbox_mod.check_service_cidr(cidr)
    assert "--service-cidr" in str(raised.value)


def test_bad_sizes_are_refused_before_anything_starts(tmp_path: pathlib.Path) -> None:
    box = sandbox_mod.Sandbox(state_dir=tmp_path / "state")
    with pytest.raises(sandbox_mod.SandboxError, match="--pods-per-node"):
        box.up(pods_per_node=0)
    with pytest.raises(sandbox_mod.SandboxError, match="CPU node"):
        box.up(cpu_nodes=-1)
    with pytest.raises(sandbox_mod.SandboxError, match="--service-cidr"):
        box.up(service_cidr="10.0.0.0/8")
    assert not (tmp_path / "state").exists()
