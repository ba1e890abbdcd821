"""Prometheus for the sandbox, configured like a production Triton scrape.

Prometheus discovers the real pods from the sandbox's real API server (``kubernetes_sd_configs``,
role pod), keeps the Ready pods of ModelDeployments, and relabels each target to the Triton
simulator on loopback (``/sim/<namespace>/<pod>/metrics``), since pods on kwok nodes run
nothing. Triton's metrics carry no revision, so the pod labels are copied onto every series
(``namespace``, ``pod``, ``modeldeployment``, ``revision``, ``model_version``): exactly the
relabelling a production install does, so the operator's PromQL is the same in both places.

:func:`render_config` is pure and unit-tested.

The binary is upstream Prometheus built from its Go module (see :mod:`vigil.dev.build`), not
Debian's ``prometheus`` package: Debian builds it without Kubernetes service discovery
("Kubernetes support has been completely removed", its NEWS file says), and a sandbox that
discovered pods any other way would not exercise the production relabelling.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

from vigil import labels
from vigil.dev import build

TRITON_JOB = "triton"
OPERATOR_JOB = "vigil-operator"
# The operator serves its own /metrics here (`vigil run --metrics-port`, default 9102).
OPERATOR_METRICS = "127.0.0.1:9102"


def _meta_label(label: str) -> str:
    """The ``__meta_kubernetes_pod_label_*`` name Prometheus derives from a pod label."""
    sanitized = "".join(ch if ch.isalnum() else "_" for ch in label)
    return f"__meta_kubernetes_pod_label_{sanitized}"


def relabel_configs(sim_address: str) -> list[dict[str, Any]]:
    """Keep Ready ModelDeployment pods, point them at the simulator, copy the pod labels onto series."""
    copy = {
        labels.PROM_NAMESPACE: "__meta_kubernetes_namespace",
        labels.PROM_POD: "__meta_kubernetes_pod_name",
        labels.PROM_DEPLOYMENT: _meta_label(labels.MODEL_DEPLOYMENT),
        labels.PROM_REVISION: _meta_label(labels.REVISION),
        "model_version": _meta_label(labels.MODEL_VERSION),
    }
    return [
        {"source_labels": [_meta_label(labels.MODEL_DEPLOYMENT)], "regex": ".+", "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_ready"], "regex": "true", "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running", "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_container_init"], "regex": "true", "action": "drop"},
        # Role pod yields one target per declared container port: keep the Triton metrics port,
        # or the single port-less target of a pod that declares none.
        {
            "source_labels": [
                "__meta_kubernetes_pod_container_port_name",
                "__meta_kubernetes_pod_container_port_number",
            ],
            "separator": ";",
            "regex": f"metrics;.*|;|[^;]*;{labels.METRICS_PORT}",
            "action": "keep",
        },
        # What a production scrape would call the target: the pod's own metrics endpoint.
        {
            "source_labels": ["__meta_kubernetes_pod_ip"],
            "regex": "(.+)",
            "target_label": "instance",
            "replacement": f"$1:{labels.METRICS_PORT}",
        },
        {"target_label": "__address__", "replacement": sim_address},
        {
            "source_labels": ["__meta_kubernetes_namespace", "__meta_kubernetes_pod_name"],
            "separator": "/",
            "regex": "(.+)",
            "target_label": "__metrics_path__",
            "replacement": "/sim/$1/metrics",
        },
        *({"source_labels": [source], "target_label": target} for target, source in copy.items()),
    ]


def render_config(
    *,
    kubeconfig: pathlib.Path,
    sim_port: int,
    scrape_interval: str,
    rules_dir: pathlib.Path,
    operator_metrics: str | None = OPERATOR_METRICS,
) -> dict[str, Any]:
    """The whole prometheus.yml as a mapping (dump it with PyYAML)."""
    scrape_configs: list[dict[str, Any]] = [
        {
            "job_name": TRITON_JOB,
            "honor_labels": False,
            "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": str(kubeconfig)}],
            "relabel_configs": relabel_configs(f"127.0.0.1:{sim_port}"),
        }
    ]
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
