"""The sandbox's Prometheus configuration: the chart's PodMonitor, translated the way prometheus-operator
does, checked by running its relabelling over sample pod targets."""

from __future__ import annotations

import hashlib
import pathlib
import re
from typing import Any

import pytest
import yaml

from vigil import labels
from vigil.dev import chart, prometheus
from vigil.observe import promql

KUBECONFIG = pathlib.Path("/state/kubeconfig")


@pytest.fixture(scope="module")
def podmonitor(helm: chart.Helm) -> dict[str, Any]:
    return chart.pod_monitor(helm, {"podMonitor": {"enabled": True, "interval": "5s"}})


def _config(podmonitor: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "podmonitor": podmonitor,
        "kubeconfig": KUBECONFIG,
        "sim_port": 9400,
        "scrape_interval": "5s",
        "rules_dir": pathlib.Path("/state/prometheus/rules"),
    }
    options.update(overrides)
    return prometheus.render_config(**options)


def _relabel(target: dict[str, str], configs: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus's relabelling semantics (keep, drop, replace, hashmod), enough to run our rules."""
    result = dict(target)
    for rule in configs:
        value = rule.get("separator", ";").join(result.get(name, "") for name in rule.get("source_labels", []))
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if action == "keep" and match is None:
            return None
        if action == "drop" and match is not None:
            return None
        if action == "hashmod":
            digest = hashlib.md5(value.encode()).digest()
            result[rule["target_label"]] = str(int.from_bytes(digest[8:], "big") % rule["modulus"])
        if action == "replace" and match is not None:
            # Prometheus writes group references as $1 or ${1}; Python's expand wants \1.
            replacement = match.expand(re.sub(r"\$\{?(\d+)\}?", r"\\\1", rule.get("replacement", "$1")))
            if replacement:
                result[rule["target_label"]] = replacement
            else:
                result.pop(rule["target_label"], None)
    return {name: value for name, value in result.items() if not name.startswith("__tmp")}


def _pod_target(**overrides: str) -> dict[str, str]:
    """What kubernetes_sd (role pod) says about the metrics port of a Ready Triton pod."""
    target = {
        "job": "podMonitor/vigil-system/vigil-triton/0",
        "__address__": "10.244.0.7:8002",
        "__metrics_path__": "/metrics",
        "__meta_kubernetes_namespace": "ml",
        "__meta_kubernetes_pod_name": "resnet-abc12-7d9f-x2",
        "__meta_kubernetes_pod_ip": "10.244.0.7",
        "__meta_kubernetes_pod_ready": "true",
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_container_name": "triton",
        "__meta_kubernetes_pod_container_init": "false",
        "__meta_kubernetes_pod_container_port_name": "metrics",
        "__meta_kubernetes_pod_container_port_number": "8002",
        prometheus.meta_label(labels.MODEL_DEPLOYMENT): "resnet",
        "__meta_kubernetes_pod_labelpresent_vigil_dev_modeldeployment": "true",
        prometheus.meta_label(labels.REVISION): "abc12",
        "__meta_kubernetes_pod_labelpresent_vigil_dev_revision": "true",
        prometheus.meta_label(labels.MODEL_VERSION): "3",
        "__meta_kubernetes_pod_labelpresent_vigil_dev_model_version": "true",
    }
    target.update(overrides)
    return target


def _triton_job(config: dict[str, Any]) -> dict[str, Any]:
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] != prometheus.OPERATOR_JOB]
    return job


def test_the_chart_podmonitor_labels_every_series_with_what_the_operators_promql_groups_by(
    podmonitor: dict[str, Any],
) -> None:
    (job,) = prometheus.podmonitor_scrape_configs(podmonitor)
    scraped = _relabel(_pod_target(), job["relabel_configs"])
    assert scraped is not None
    for name in promql.BY:
        assert scraped[name], f"series would lack {name!r}, which every fleet query groups by"
    assert scraped["namespace"] == "ml"
    assert scraped["modeldeployment"] == "resnet"
    assert scraped["revision"] == "abc12"
    assert scraped["model_version"] == "3"
    assert scraped["pod"] == "resnet-abc12-7d9f-x2"
    assert scraped["job"] == prometheus.TRITON_JOB
    assert scraped["endpoint"] == "metrics"
    assert scraped["__address__"] == "10.244.0.7:8002"  # a user's Prometheus scrapes the pod itself


def test_the_podmonitor_translation_follows_prometheus_operator(podmonitor: dict[str, Any]) -> None:
    (job,) = prometheus.podmonitor_scrape_configs(podmonitor, {"kubeconfig_file": "/k"})
    meta = podmonitor["metadata"]
    assert job["job_name"] == f"podMonitor/{meta['namespace']}/{meta['name']}/0"
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "kubeconfig_file": "/k"}]  # namespaceSelector any
    assert job["scrape_interval"] == "5s"
    rules = job["relabel_configs"]
    assert rules[0] == {"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}
    assert rules[1] == {
        "action": "drop",
        "source_labels": ["__meta_kubernetes_pod_phase"],
        "regex": "(Failed|Succeeded)",
    }
    assert rules[2] == {
        "action": "keep",
        "source_labels": ["__meta_kubernetes_pod_labelpresent_vigil_dev_modeldeployment"],
        "regex": "true",
    }
    # The PodMonitor's own relabelings come after the generated ones, then single-shard hashing.
    user = [prometheus.relabel_config(r) for r in podmonitor["spec"]["podMetricsEndpoints"][0]["relabelings"]]
    assert rules[-3 - len(user) : -3] == user
    assert rules[-2]["action"] == "hashmod"


def test_namespace_mode_podmonitor_discovers_only_the_watched_namespaces(helm: chart.Helm) -> None:
    scoped = chart.pod_monitor(helm, {"watchNamespaces": ["ml", "ml-canary"]})
    (job,) = prometheus.podmonitor_scrape_configs(scoped)
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["ml", "ml-canary"]}}]


def test_sandbox_scrapes_ready_triton_pods_from_the_simulator_with_pod_labels(podmonitor: dict[str, Any]) -> None:
    job = _triton_job(_config(podmonitor, sim_port=9555))
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


def test_only_the_metrics_port_of_a_pod_becomes_a_target(podmonitor: dict[str, Any]) -> None:
    rules = _triton_job(_config(podmonitor))["relabel_configs"]
    http = _pod_target(
        __meta_kubernetes_pod_container_port_name="http", __meta_kubernetes_pod_container_port_number="8000"
    )
    assert _relabel(http, rules) is None
    assert _relabel(_pod_target(), rules) is not None


def test_pods_that_are_not_ready_running_or_vigils_are_dropped(podmonitor: dict[str, Any]) -> None:
    rules = _triton_job(_config(podmonitor))["relabel_configs"]
    assert _relabel(_pod_target(__meta_kubernetes_pod_ready="false"), rules) is None
    assert _relabel(_pod_target(__meta_kubernetes_pod_phase="Succeeded"), rules) is None
    foreign = _pod_target(
        __meta_kubernetes_pod_label_vigil_dev_modeldeployment="",
        __meta_kubernetes_pod_labelpresent_vigil_dev_modeldeployment="false",
    )
    assert _relabel(foreign, rules) is None


def test_discovery_uses_the_sandbox_kubeconfig_and_role_pod(podmonitor: dict[str, Any]) -> None:
    job = _triton_job(_config(podmonitor))
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "kubeconfig_file": str(KUBECONFIG)}]


def test_intervals_and_rules(podmonitor: dict[str, Any]) -> None:
    config = _config(podmonitor, scrape_interval="2s")
    assert config["global"] == {"scrape_interval": "2s", "evaluation_interval": "2s"}
    assert "/state/prometheus/rules/*.yml" in config["rule_files"]


def test_operator_job_is_optional(podmonitor: dict[str, Any]) -> None:
    jobs = {job["job_name"]: job for job in _config(podmonitor)["scrape_configs"]}
    assert jobs[prometheus.OPERATOR_JOB]["static_configs"] == [{"targets": [prometheus.OPERATOR_METRICS]}]
    without = _config(podmonitor, operator_metrics=None)
    assert [job["job_name"] for job in without["scrape_configs"]] == [_triton_job(without)["job_name"]]


def test_config_dumps_to_plain_yaml(podmonitor: dict[str, Any]) -> None:
    text = yaml.safe_dump(_config(podmonitor), sort_keys=False)
    assert yaml.safe_load(text) == _config(podmonitor)


def test_selector_operators_translate_like_prometheus_operator() -> None:
    monitor = {
        "metadata": {"name": "m", "namespace": "mon"},
        "spec": {
            "selector": {
                "matchLabels": {"app.kubernetes.io/name": "triton"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["a", "b"]},
                    {"key": "skip", "operator": "DoesNotExist"},
                ],
            },
            "podMetricsEndpoints": [{"portNumber": 8002, "filterRunning": False}],
        },
    }
    (job,) = prometheus.podmonitor_scrape_configs(monitor)
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["mon"]}}]
    rules = job["relabel_configs"]
    assert {
        "action": "drop",
        "source_labels": ["__meta_kubernetes_pod_phase"],
        "regex": "(Failed|Succeeded)",
    } not in rules
    assert rules[1] == {
        "action": "keep",
        "source_labels": [
            "__meta_kubernetes_pod_label_app_kubernetes_io_name",
            "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name",
        ],
        "regex": "(triton);true",
    }
    assert rules[2]["regex"] == "(a|b);true"
    assert rules[3] == {"action": "drop", "source_labels": ["__meta_kubernetes_pod_labelpresent_skip"], "regex": "true"}
    assert rules[4] == {
        "action": "keep",
        "source_labels": ["__meta_kubernetes_pod_container_port_number"],
        "regex": 8002,
    }


def test_command_listens_on_loopback_with_lifecycle() -> None:
    argv = prometheus.command(pathlib.Path("/bin/prometheus"), pathlib.Path("/c.yml"), pathlib.Path("/data"), 9091)
    assert "--web.listen-address=127.0.0.1:9091" in argv
    assert "--web.enable-lifecycle" in argv
    assert "--config.file=/c.yml" in argv
    assert "--storage.tsdb.path=/data" in argv
