"""Start-up validation: every bad option is named in one line before anything starts."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys

import pytest

from vigil.reconcile import leader
from vigil.reconcile import settings as config


def test_the_defaults_are_valid() -> None:
    assert config.problems(config.Settings()) == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"min_window": "abc"}, "--min-window"),
        ({"min_window": "0s"}, "--min-window"),
        ({"rate_window": ""}, "--rate-window"),
        ({"baseline_window": "5 m"}, "--baseline-window"),
        ({"eval_interval": 0.0}, "--eval-interval"),
        ({"eval_interval": -5.0}, "--eval-interval"),
        ({"eval_interval": float("nan")}, "--eval-interval"),
        ({"resync_seconds": 0.0}, "--resync"),
        ({"status_heartbeat_seconds": 0.0}, "--status-heartbeat"),
        ({"metrics_port": -1}, "--metrics-port"),
        ({"metrics_port": 65536}, "--metrics-port"),
        ({"metrics_address": " "}, "--metrics-address"),
        ({"prometheus_url": "localhost:9090"}, "--prometheus-url"),
        ({"prometheus_url": "ftp://prom:9090"}, "--prometheus-url"),
        ({"prometheus_url": "http://"}, "--prometheus-url"),
        ({"prometheus_url": "http://prom:port"}, "--prometheus-url"),
        ({"liveness": "https://0.0.0.0:8080/healthz"}, "--liveness"),
        ({"namespaces": ("ok", "Not_OK")}, "--namespace"),
        ({"namespaces": ("t1-*,!t1-x", "a b")}, "--namespace"),
        ({"lease_name": "Vigil!"}, "--lease-name"),
        ({"lease_namespace": "-x"}, "--lease-namespace"),
        ({"timing": leader.Timing(10, 10, 2)}, "--lease-duration"),
        ({"timing": leader.Timing(15, 2, 2)}, "--renew-deadline"),
        ({"timing": leader.Timing(15, 10, 0)}, "--retry-period"),
        ({"timing": leader.Timing(15.5, 10, 2)}, "--lease-duration"),
        ({"model_repository_roots": ("/models", "models")}, "--model-repository-root"),
        ({"golden_set_max_mib": 0}, "--golden-set-max-mib"),
    ],
)
def test_each_bad_option_is_reported_by_its_flag(change: dict[str, object], named: str) -> None:
    found = config.problems(dataclasses.replace(config.Settings(), **change))  # type: ignore[arg-type]
    assert len(found) == 1
    assert found[0].startswith(named)


def test_namespace_patterns_as_kopf_reads_them_are_valid() -> None:
    assert config.problems(config.Settings(namespaces=("demo", "t1a2-*", "!kube-*", "ml-?,!ml-x"))) == []


def test_lease_options_do_not_matter_for_a_standalone_replica() -> None:
    bad = config.Settings(standalone=True, lease_name="Bad!", timing=leader.Timing(1, 5, 9))
    assert config.problems(bad) == []


def test_kubeconfig_must_exist_and_be_readable(tmp_path: pathlib.Path) -> None:
    assert config.kubeconfig_problem(None) is None
    assert config.kubeconfig_problem(str(tmp_path / "nope")) == f"--kubeconfig {tmp_path / 'nope'}: no such file"
    present = tmp_path / "kubeconfig"
    present.write_text("apiVersion: v1\n")
    assert config.kubeconfig_problem(str(present)) is None
    if os.geteuid() != 0:  # root reads anything
        present.chmod(0)
        assert config.kubeconfig_problem(str(present)) == f"--kubeconfig {present}: not readable"


def test_lease_namespace_prefers_the_flag_then_the_pod_then_the_watched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.setattr(config, "SERVICE_ACCOUNT_NAMESPACE", pathlib.Path("/nonexistent/namespace"))
    assert config.lease_namespace(config.Settings(lease_namespace="ops")) == "ops"
    assert config.lease_namespace(config.Settings(namespaces=("ml", "ai"))) == "ml"
    assert config.lease_namespace(config.Settings(namespaces=("t1-*", "ai"))) == "ai"
    assert config.lease_namespace(config.Settings(namespaces=("t1-*",))) == "default"
    assert config.lease_namespace(config.Settings()) == "default"
    monkeypatch.setenv("POD_NAMESPACE", "vigil-system")
    assert config.lease_namespace(config.Settings(namespaces=("ml",))) == "vigil-system"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--min-window", "abc"], "vigil run: error: --min-window: 'abc' is not a duration"),
        (["--eval-interval", "0"], "vigil run: error: --eval-interval must be a positive number of seconds, got 0"),
        (
            ["--kubeconfig", "/nonexistent/kubeconfig"],
            "vigil run: error: --kubeconfig /nonexistent/kubeconfig: no such",
        ),
        (["-n", "a", "-A"], "vigil run: error: use either --namespace or --all-namespaces"),
    ],
)
def test_vigil_run_stops_with_one_line_and_no_traceback(args: list[str], message: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "VIGIL_PROMETHEUS_URL")}
    done = subprocess.run(
        [sys.executable, "-m", "vigil", "run", *args], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.startswith(message)
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
