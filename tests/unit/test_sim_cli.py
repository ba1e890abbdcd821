"""``vigil sim`` commands against a real simulator server on 127.0.0.1."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator

import numpy as np
import pytest
import typer
import typer.testing

from vigil import cli as vigil_cli
from vigil.sim import behaviour, cli, client, cluster, engine, server
from vigil.sim import testing as simtest

runner = typer.testing.CliRunner()


@pytest.fixture
def sim() -> engine.Simulator:
    source = cluster.StaticSource(simtest.make_cluster([simtest.pod("p0")], [simtest.md_service("md")]))
    return engine.Simulator(source, rng=np.random.default_rng(9))


@pytest.fixture
def url(sim: engine.Simulator) -> Iterator[str]:
    threaded = simtest.ThreadedServer(sim, tick=False)
    with threaded as base:
        threaded.call(sim.sync)
        yield base


def invoke(*args: str) -> typer.testing.Result:
    return runner.invoke(vigil_cli.app, ["sim", *args])


def test_load_stop_and_state(url: str, sim: engine.Simulator) -> None:
    started = invoke("load", "ns/md", "--rate", "25", "--duration", "60", "--url", url)
    assert started.exit_code == 0, started.output
    assert json.loads(started.output)["load"]["rate"] == 25
    assert sim.loads[("ns", "md")].request.duration == 60
    shown = invoke("state", "--json", "--url", url)
    assert json.loads(shown.output)["pods"][0]["name"] == "p0"
    table = invoke("state", "--url", url)
    assert table.exit_code == 0
    assert "ns/p0" in table.output
    assert "poisson" in table.output
    stopped = invoke("stop", "ns/md", "--url", url)
    assert stopped.exit_code == 0
    assert sim.loads == {}
    again = invoke("stop", "ns/md", "--url", url)
    assert again.exit_code == 1
    assert "no load for ns/md" in again.output


def test_csv_load_is_sent_inline(url: str, sim: engine.Simulator, tmp_path: pathlib.Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("ts,user\n2024-05-01T00:00:00Z,a\n2024-05-01T00:00:02Z,b\n", encoding="utf-8")
    result = invoke("load", "ns/md", "--csv", str(trace), "--column", "ts", "--speedup", "2", "--loop", "--url", url)
    assert result.exit_code == 0, result.output
    described = json.loads(result.output)["load"]
    assert (described["kind"], described["arrivals"], described["span"], described["loop"]) == ("replay", 2, 1.0, True)


def test_load_reads_the_simulator_url_from_vigil_sim_url(
    url: str, sim: engine.Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cli.URL_ENV, url)
    result = invoke("load", "ns/md", "--rate", "5")
    assert result.exit_code == 0, result.output
    assert sim.loads[("ns", "md")].request.rate == 5
    # --url still wins over the environment.
    monkeypatch.setenv(cli.URL_ENV, "http://127.0.0.1:9")
    assert invoke("stop", "ns/md", "--url", url).exit_code == 0
    unreachable = invoke("state")
    assert unreachable.exit_code == 1
    assert "127.0.0.1:9" in unreachable.output


def test_csv_columns_match_in_any_case_and_carry_sizes(url: str, sim: engine.Simulator, tmp_path: pathlib.Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("TIMESTAMP,Tokens\n0,100\n1,300\n", encoding="utf-8")
    result = invoke("load", "ns/md", "--csv", str(trace), "--size-column", "tokens", "--url", url)
    assert result.exit_code == 0, result.output
    described = json.loads(result.output)["load"]
    assert (described["arrivals"], described["meanSize"]) == (2, 200.0)
    missing = invoke("load", "ns/md", "--csv", str(trace), "--column", "when", "--url", url)
    assert missing.exit_code == 1
    assert "no column 'when'; its columns are ['TIMESTAMP', 'Tokens']" in missing.output
    assert invoke("load", "ns/md", "--rate", "1", "--size-column", "tokens", "--url", url).exit_code == 2


def test_fault_and_clear(url: str, sim: engine.Simulator) -> None:
    result = invoke("fault", "ns/md", "--version", "1", "--error-ratio", "0.3", "--crash", "--url", url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["fault"] == {
        "namespace": "ns",
        "name": "md",
        "version": "1",
        "errorRatio": 0.3,
        "crash": True,
    }
    assert sim.book.behaviour("ns", "md", "1").error_ratio == 0.3
    merged = invoke("fault", "ns/md", "--version", "1", "--latency-multiplier", "2", "--no-crash", "--url", url)
    assert json.loads(merged.output)["fault"]["latencyMultiplier"] == 2
    assert not sim.book.behaviour("ns", "md", "1").crash
    cleared = invoke("clear", "ns/md", "--url", url)
    assert json.loads(cleared.output) == {"cleared": ["ns/md@1"]}


def test_quiet_faults_from_the_command_line(url: str, sim: engine.Simulator) -> None:
    args = ["--weight-noise", "0.1", "--input-scale", "255", "--input-offset", "-1", "--precision", "fp16"]
    result = invoke("fault", "ns/md", "--version", "2", *args, "--url", url)
    assert result.exit_code == 0, result.output
    fault = json.loads(result.output)["fault"]
    assert (fault["weightNoise"], fault["inputScale"], fault["inputOffset"], fault["precision"]) == (
        0.1,
        255,
        -1,
        "fp16",
    )
    corruption = sim.book.behaviour("ns", "md", "2").corruption
    assert corruption == behaviour.Corruption(weight_noise=0.1, input_scale=255, input_offset=-1, precision="fp16")
    assert corruption.any
    assert not sim.book.behaviour("ns", "md", "1").corruption.any
    refused = invoke("fault", "ns/md", "--precision", "int4", "--url", url)
    assert refused.exit_code != 0
    assert "precision" in refused.output


def test_usage_errors() -> None:
    assert invoke("load", "ns/md").exit_code == 2
    assert invoke("load", "ns/md", "--rate", "1", "--csv", __file__).exit_code == 2
    assert invoke("fault", "ns/md").exit_code == 2
    assert invoke("fault", "ns/", "--crash").exit_code == 2
    bad_listen = invoke("serve", "--listen", "0.0.0.0:9400")
    assert bad_listen.exit_code == 2
    assert "loopback" in bad_listen.output


def test_bad_profile_is_a_usage_error(tmp_path: pathlib.Path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text("defaults: {errorRatio: 7}\n", encoding="utf-8")
    result = invoke("serve", "--profile", str(profile), "--listen", "127.0.0.1:0")
    assert result.exit_code == 2


def test_missing_kubeconfig_is_a_usage_error(tmp_path: pathlib.Path) -> None:
    result = invoke("serve", "--kubeconfig", str(tmp_path / "absent"), "--listen", "127.0.0.1:0")
    assert result.exit_code == 2


def test_unreachable_simulator() -> None:
    result = invoke("state", "--url", "http://127.0.0.1:9")
    assert result.exit_code == 1
    assert "cannot reach the simulator" in result.output


@pytest.mark.parametrize(("target", "expected"), [("ns/md", ("ns", "md")), ("md", ("default", "md"))])
def test_parse_target(target: str, expected: tuple[str, str]) -> None:
    assert cli.parse_target(target) == expected


def test_parse_target_rejects_empty_name() -> None:
    with pytest.raises(typer.BadParameter):
        cli.parse_target("ns/")


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9400", ("127.0.0.1", 9400)),
        ("localhost:0", ("127.0.0.1", 0)),
        ("[::1]:9400", ("::1", 9400)),
        ("127.0.0.2:1", ("127.0.0.2", 1)),
    ],
)
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert server.parse_listen(listen) == expected


@pytest.mark.parametrize(
    "listen", ["9400", ":9400", "0.0.0.0:9400", "10.0.0.1:80", "127.0.0.1:x", "127.0.0.1:70000", "host:1"]
)
def test_parse_listen_rejects(listen: str) -> None:
    with pytest.raises(server.ListenError):
        server.parse_listen(listen)


def test_client_error_carries_status_and_details(url: str) -> None:
    with pytest.raises(client.ControlError) as caught:
        client.ControlClient(url).set_fault({"namespace": "ns", "name": "md", "errorRatio": 2})
    assert caught.value.status == 400
    assert caught.value.details
