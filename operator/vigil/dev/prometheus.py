"""Prometheus for the sandbox, scraping Triton with the chart's own PodMonitor.

Prometheus discovers the real pods from the sandbox's real API server (``kubernetes_sd_configs``,
role pod). Its Triton job is not written here: it is the chart's Triton PodMonitor
(``charts/vigil/templates/podmonitor.yaml``, rendered by helm, see :mod:`vigil.dev.chart`)
translated the way prometheus-operator translates a PodMonitor (:func:`podmonitor_scrape_configs`,
following ``generatePodMonitorConfig`` of prometheus-operator v0.85): its own relabelings first
(running pods, the selector, the port, ``namespace``/``container``/``pod``/``job``/``endpoint``),
then the PodMonitor's, then single-shard hashing. So every end-to-end test scrapes with exactly the
relabelling a user installs, and the operator's PromQL is the same in both places: Triton's metrics
carry no revision, and the PodMonitor copies the pod labels onto every series (``namespace``,
``pod``, ``modeldeployment``, ``revision``, ``model_version``).

Only the sandbox appends anything (:func:`sandbox_relabelings`): pods on kwok nodes run nothing,
so each target is redirected to the Triton simulator on loopback
(``/sim/<namespace>/<pod>/metrics``), which answers for Ready pods only.

The same translation, without the sandbox's part, is the plain ``scrape_configs`` entry shipped in
``deploy/prometheus/`` for a Prometheus without prometheus-operator.

The binary is upstream Prometheus built from its Go module (see :mod:`vigil.dev.build`), not
Debian's ``prometheus`` package: Debian builds it without Kubernetes service discovery
("Kubernetes support has been completely removed", its NEWS file says), and a sandbox that
discovered pods any other way would not exercise the production relabelling.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from vigil.dev import build

TRITON_JOB = "triton"
OPERATOR_JOB = "vigil-operator"
# The operator serves its own /metrics here (`vigil run --metrics-port`, default 9102).
OPERATOR_METRICS = "127.0.0.1:9102"
SHARD = 0
SHARDS = 1

_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


def sanitize(label: str) -> str:
    """A Kubernetes label name as Prometheus meta labels spell it (``vigil.dev/revision`` -> ``vigil_dev_revision``)."""
    return _INVALID_LABEL_CHARS.sub("_", label)


def meta_label(label: str) -> str:
    """The ``__meta_kubernetes_pod_label_*`` name Prometheus derives from a pod label."""
    return f"__meta_kubernetes_pod_label_{sanitize(label)}"


def _present(label: str) -> str:
    return f"__meta_kubernetes_pod_labelpresent_{sanitize(label)}"


_RELABEL_KEYS = (
    ("sourceLabels", "source_labels"),
    ("separator", "separator"),
    ("targetLabel", "target_label"),
    ("regex", "regex"),
    ("modulus", "modulus"),
    ("replacement", "replacement"),
    ("action", "action"),
)


def relabel_config(relabeling: Mapping[str, Any]) -> dict[str, Any]:
    """One PodMonitor ``RelabelConfig`` as Prometheus configuration (prometheus-operator's key order)."""
    out: dict[str, Any] = {}
    for camel, snake in _RELABEL_KEYS:
        value = relabeling.get(camel)
        # An explicit empty replacement means something (prometheus-operator keeps its pointer).
        if value is None or (camel != "replacement" and value in ("", [], 0)):
            continue
        out[snake] = value.lower() if camel == "action" else value
    return out


def _selector_relabelings(selector: Mapping[str, Any]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for key in sorted(selector.get("matchLabels") or {}):
        value = selector["matchLabels"][key]
        rules.append({"action": "keep", "source_labels": [meta_label(key), _present(key)], "regex": f"({value});true"})
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = "|".join(expression.get("values") or [])
        if operator in ("In", "NotIn"):
            action = "keep" if operator == "In" else "drop"
            rules.append(
                {"action": action, "source_labels": [meta_label(key), _present(key)], "regex": f"({values});true"}
            )
        elif operator in ("Exists", "DoesNotExist"):
            action = "keep" if operator == "Exists" else "drop"
            rules.append({"action": action, "source_labels": [_present(key)], "regex": "true"})
        else:
            raise ValueError(f"PodMonitor selector operator {operator!r} is not a label selector operator")
    return rules


def _sharding() -> list[dict[str, Any]]:
    """prometheus-operator's address sharding, for one shard (shard 0 keeps every target)."""
    return [
        {
            "source_labels": ["__address__", "__tmp_hash"],
            "target_label": "__tmp_hash",
            "regex": "(.+);",
            "replacement": "$1",
            "action": "replace",
        },
        {"source_labels": ["__tmp_hash"], "target_label": "__tmp_hash", "modulus": SHARDS, "action": "hashmod"},
        {"source_labels": ["__tmp_hash", "__tmp_disable_sharding"], "regex": f"{SHARD};|.+;.+", "action": "keep"},
    ]


def endpoint_relabelings(podmonitor: Mapping[str, Any], endpoint: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``relabel_configs`` prometheus-operator generates for one ``podMetricsEndpoints`` entry."""
    meta, spec = podmonitor["metadata"], podmonitor["spec"]
    rules: list[dict[str, Any]] = [{"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}]
    if endpoint.get("filterRunning", True):
        rules.append(
            {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"}
        )
    rules += _selector_relabelings(spec.get("selector") or {})
    if endpoint.get("port"):
        rules.append(
            {
                "action": "keep",
                "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                "regex": endpoint["port"],
            }
        )
    elif endpoint.get("portNumber"):
        rules.append(
            {
                "action": "keep",
                "source_labels": ["__meta_kubernetes_pod_container_port_number"],
                "regex": endpoint["portNumber"],
            }
        )
    rules += [
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
    ]
    for label in spec.get("podTargetLabels") or []:
        rules.append(
            {
                "source_labels": [meta_label(label)],
                "target_label": sanitize(label),
                "regex": "(.+)",
                "replacement": "${1}",
            }
        )
    rules.append({"target_label": "job", "replacement": f"{meta['namespace']}/{meta['name']}"})
    if spec.get("jobLabel"):
        rules.append(
            {
                "source_labels": [meta_label(spec["jobLabel"])],
                "target_label": "job",
                "regex": "(.+)",
                "replacement": "${1}",
            }
        )
    if endpoint.get("port"):
        rules.append({"target_label": "endpoint", "replacement": endpoint["port"]})
    rules += [relabel_config(r) for r in endpoint.get("relabelings") or []]
    return rules + _sharding()


def podmonitor_scrape_configs(
    podmonitor: Mapping[str, Any], sd_options: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """A PodMonitor as Prometheus ``scrape_configs`` entries, one per metrics endpoint.

    ``sd_options`` are added to the ``kubernetes_sd_configs`` entry (the sandbox passes its
    ``kubeconfig_file``, where prometheus-operator would pass its ``apiserverConfig``).
    """
    meta, spec = podmonitor["metadata"], podmonitor["spec"]
    namespace_selector = spec.get("namespaceSelector") or {}
    if namespace_selector.get("any"):
        namespaces: list[str] = []
    else:
        namespaces = list(namespace_selector.get("matchNames") or [meta["namespace"]])
    jobs = []
    for index, endpoint in enumerate(spec.get("podMetricsEndpoints") or []):
        sd: dict[str, Any] = {"role": "pod"}
        if namespaces:
            sd["namespaces"] = {"names": namespaces}
        sd.update(sd_options or {})
        job: dict[str, Any] = {"job_name": f"podMonitor/{meta['namespace']}/{meta['name']}/{index}"}
        if "honorLabels" in endpoint:
            job["honor_labels"] = endpoint["honorLabels"]
        job["kubernetes_sd_configs"] = [sd]
        for camel, snake in (
            ("interval", "scrape_interval"),
            ("scrapeTimeout", "scrape_timeout"),
            ("path", "metrics_path"),
            ("scheme", "scheme"),
        ):
            if endpoint.get(camel):
                job[snake] = endpoint[camel]
        job["relabel_configs"] = endpoint_relabelings(podmonitor, endpoint)
        jobs.append(job)
    return jobs


def sandbox_relabelings(sim_address: str) -> list[dict[str, Any]]:
    """What only the sandbox adds: scrape the simulator instead of the (empty) pod, Ready pods only."""
    return [
        # The simulator serves a pod once it is Ready (kwok's stages); earlier scrapes would only fail.
        {"source_labels": ["__meta_kubernetes_pod_ready"], "regex": "true", "action": "keep"},
        # What a production scrape calls the target: the pod's own metrics endpoint.
        {"source_labels": ["__address__"], "target_label": "instance"},
        {"target_label": "__address__", "replacement": sim_address},
        {
            "source_labels": ["__meta_kubernetes_namespace", "__meta_kubernetes_pod_name"],
            "separator": "/",
            "regex": "(.+)",
            "target_label": "__metrics_path__",
            "replacement": "/sim/$1/metrics",
        },
    ]


def render_config(
    *,
    podmonitor: Mapping[str, Any],
    kubeconfig: pathlib.Path,
    sim_port: int,
    scrape_interval: str,
    rules_dir: pathlib.Path,
    operator_metrics: str | None = OPERATOR_METRICS,
) -> dict[str, Any]:
    """The whole prometheus.yml as a mapping (dump it with PyYAML)."""
    scrape_configs = podmonitor_scrape_configs(podmonitor, {"kubeconfig_file": str(kubeconfig)})
    for job in scrape_configs:
        job["relabel_configs"] += sandbox_relabelings(f"127.0.0.1:{sim_port}")
    if operator_metrics:
        scrape_configs.append({"job_name": OPERATOR_JOB, "static_configs": [{"targets": [operator_metrics]}]})
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        # Tests and the demo may drop recording or alerting rules here; an empty glob is fine.
        "rule_files": [str(rules_dir / "*.yml"), str(rules_dir / "*.yaml")],
        "scrape_configs": scrape_configs,
    }


def command(binary: pathlib.Path, config: pathlib.Path, data: pathlib.Path, port: int) -> list[str]:
    """The Prometheus command line: loopback only, reloadable, storage in the sandbox's state."""
    return [
        str(binary),
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        "--storage.tsdb.retention.time=2d",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ]


def ensure_binary(progress: Callable[[str], None]) -> pathlib.Path:
    """The upstream Prometheus binary, built once from its Go module like the control plane."""
    return build.ensure_binaries(progress=progress, components=[build.PROMETHEUS])["prometheus"]
