"""The sandbox's Prometheus configuration, checked by running its relabelling over sample targets."""

from __future__ import annotations

import pathlib
import re
from typing import Any

import yaml

from vigil.dev import prometheus

KUBECONFIG = pathlib.Path("/state/kubeconfig")


def _config(**overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "kubeconfig": KUBECONFIG,
        "sim_port": 9400,
        "scrape_interval": "5s",
        "rules_dir": pathlib.Path("/state/prometheus/rules"),
    }
    options.update(overrides)
    return prometheus.render_config(**options)


def _relabel(target: dict[str, str], configs: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus's relabelling semantics (keep, drop, replace), enough to run our rules."""
    result = dict(target)
    for rule in configs:
        value = rule.get("separator", ";").join(result.get(name, "") for name in rule.get("source_labels", []))
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if action == "keep" and match is None:
            return None
        if action == "drop" and match is not None:
            return None
        if action == "replace" and match is not None:
            # Prometheus writes group references as $1; Python's expand wants \1.
            replacement = match.expand(re.sub(r"\$(\d+)", r"\\\1", rule.get("replacement", "$1")))
            if replacement:
                result[rule["target_label"]] = replacement
            else:
                result.pop(rule["target_label"], None)
    return result


def _pod_target(**overrides: str) -> dict[str, str]:
    target = {
        "__address__": "10.244.0.7:8002",
        "__metrics_path__": "/metrics",
        "__meta_kubernetes_namespace": "ml",
        "__meta_kubernetes_pod_name": "resnet-abc12-7d9f-x2",
        "__meta_kubernetes_pod_ip": "10.244.0.7",
        "__meta_kubernetes_pod_ready": "true",
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_container_init": "false",
        "__meta_kubernetes_pod_container_port_name": "metrics",
        "__meta_kubernetes_pod_container_port_number": "8002",
        "__meta_kubernetes_pod_label_vigil_dev_modeldeployment": "resnet",
        "__meta_kubernetes_pod_label_vigil_dev_revision": "abc12",
        "__meta_kubernetes_pod_label_vigil_dev_model_version": "3",
    }
    target.update(overrides)
    return target


def _triton_job(config: dict[str, Any]) -> dict[str, Any]:
    return next(job for job in config["scrape_configs"] if job["job_name"] == prometheus.TRITON_JOB)


def test_ready_triton_pod_is_scraped_from_the_simulator_with_pod_labels() -> None:
    job = _triton_job(_config(sim_port=9555))
    scraped = _relabel(_pod_target(), job["relabel_configs"])
    assert scraped is not None
    assert scraped["__address__"] == "127.0.0.1:9555"
    assert scraped["__metrics_path__"] == "/sim/ml/resnet-abc12-7d9f-x2/metrics"
    assert scraped["namespace"] == "ml"
    assert scraped["pod"] == "resnet-abc12-7d9f-x2"
    assert scraped["modeldeployment"] == "resnet"
    assert scraped["revision"] == "abc12"
    assert scraped["model_version"] == "3"
    assert scraped["instance"] == "10.244.0.7:8002"


def test_only_the_metrics_port_of_a_pod_becomes_a_target() -> None:
    rules = _triton_job(_config())["relabel_configs"]
    http = _pod_target(
        __meta_kubernetes_pod_container_port_name="http", __meta_kubernetes_pod_container_port_number="8000"
    )
    assert _relabel(http, rules) is None
    unnamed = _pod_target(
        __meta_kubernetes_pod_container_port_name="", __meta_kubernetes_pod_container_port_number="8002"
    )
    assert _relabel(unnamed, rules) is not None
    portless = _pod_target(__meta_kubernetes_pod_container_port_name="", __meta_kubernetes_pod_container_port_number="")
    assert _relabel(portless, rules) is not None


def test_pods_that_are_not_ready_or_not_vigils_are_dropped() -> None:
    rules = _triton_job(_config())["relabel_configs"]
    assert _relabel(_pod_target(__meta_kubernetes_pod_ready="false"), rules) is None
    assert _relabel(_pod_target(__meta_kubernetes_pod_phase="Pending"), rules) is None
    assert _relabel(_pod_target(__meta_kubernetes_pod_label_vigil_dev_modeldeployment=""), rules) is None
    assert _relabel(_pod_target(__meta_kubernetes_pod_container_init="true"), rules) is None


def test_discovery_uses_the_sandbox_kubeconfig_and_role_pod() -> None:
    job = _triton_job(_config())
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "kubeconfig_file": str(KUBECONFIG)}]


def test_intervals_and_rules() -> None:
    config = _config(scrape_interval="2s")
    assert config["global"] == {"scrape_interval": "2s", "evaluation_interval": "2s"}
    assert "/state/prometheus/rules/*.yml" in config["rule_files"]


def test_operator_job_is_optional() -> None:
    jobs = {job["job_name"]: job for job in _config()["scrape_configs"]}
    assert jobs[prometheus.OPERATOR_JOB]["static_configs"] == [{"targets": [prometheus.OPERATOR_METRICS]}]
    without = _config(operator_metrics=None)
    assert [job["job_name"] for job in without["scrape_configs"]] == [prometheus.TRITON_JOB]


def test_config_dumps_to_plain_yaml() -> None:
    text = yaml.safe_dump(_config(), sort_keys=False)
    assert yaml.safe_load(text) == _config()


def test_command_listens_on_loopback_with_lifecycle() -> None:
    argv = prometheus.command(pathlib.Path("/bin/prometheus"), pathlib.Path("/c.yml"), pathlib.Path("/data"), 9091)
    assert "--web.listen-address=127.0.0.1:9091" in argv
    assert "--web.enable-lifecycle" in argv
    assert "--config.file=/c.yml" in argv
    assert "--storage.tsdb.path=/data" in argv
