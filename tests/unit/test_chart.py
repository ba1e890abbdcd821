"""The Helm chart, rendered by the real helm: lint, both RBAC modes, pod security, monitoring, generated files."""

from __future__ import annotations

import pathlib
import re
from typing import Any

import pytest
import typer.main
import yaml

from vigil import cli, labels
from vigil.dev import chart, prometheus
from vigil.observe import rules, windows

README = chart.CHART_DIR / "README.md"
NAMESPACES = ["ml", "ml-canary"]
MODEL_REPOSITORIES = [
    {"path": "/models", "volume": {"persistentVolumeClaim": {"claimName": "triton-models", "readOnly": True}}},
    {"path": "/mnt/more", "volume": {"persistentVolumeClaim": {"claimName": "shared"}}, "subPath": "ml"},
]


def render(helm: chart.Helm, values: dict[str, Any] | None = None, **options: Any) -> list[dict[str, Any]]:
    return helm.template(values or {}, **options)


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return [doc["kind"] for doc in docs]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in docs if doc["kind"] == kind]
    return found


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    return dict(found)


@pytest.mark.parametrize(
    "values",
    [{}, {"watchNamespaces": NAMESPACES}, chart.deploy_values()],
    ids=["cluster", "namespace", "monitoring"],
)
def test_helm_lint_passes_strictly(helm: chart.Helm, values: dict[str, Any]) -> None:
    assert "0 chart(s) failed" in helm.lint(values)


def test_cluster_mode_grants_a_cluster_role_with_node_and_crd_reads(helm: chart.Helm) -> None:
    docs = render(helm)
    # The only Role is the leader election's, in the release namespace.
    assert [d["metadata"]["name"] for d in docs if d["kind"] in ("Role", "RoleBinding")] == ["vigil-leader"] * 2
    role = one(docs, "ClusterRole")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert {"nodes", "customresourcedefinitions", "pods", "deployments"} <= resources
    binding = one(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "vigil", "namespace": "vigil-system"}]
    assert "--all-namespaces" in container(docs)["args"]


def test_namespace_mode_grants_nothing_cluster_wide(helm: chart.Helm) -> None:
    docs = render(helm, {"watchNamespaces": NAMESPACES})
    assert "ClusterRole" not in kinds(docs)
    assert "ClusterRoleBinding" not in kinds(docs)
    roles = [doc for doc in docs if doc["kind"] == "Role" and doc["metadata"]["name"] == "vigil"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == NAMESPACES
    bindings = [doc for doc in docs if doc["kind"] == "RoleBinding" and doc["metadata"]["name"] == "vigil"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == NAMESPACES
    for role in roles:
        resources = {r for rule in role["rules"] for r in rule["resources"]}
        assert "nodes" not in resources
        assert "customresourcedefinitions" not in resources
    args = container(docs)["args"]
    assert [a for a in args if a.startswith("--namespace=")] == [f"--namespace={n}" for n in NAMESPACES]
    assert "--all-namespaces" not in args


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": NAMESPACES}], ids=["cluster", "namespace"])
def test_replicas_elect_a_leader_through_a_lease_in_the_release_namespace(
    helm: chart.Helm, values: dict[str, Any]
) -> None:
    docs = render(helm, values)
    role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "vigil-leader")
    assert role["metadata"]["namespace"] == "vigil-system"
    assert verbs(role) == {"coordination.k8s.io/leases": {"get", "create", "update"}}
    binding = next(d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"] == "vigil-leader")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "vigil", "namespace": "vigil-system"}]
    args = container(docs)["args"]
    assert "--lease-name=vigil" in args
    assert "--lease-namespace=vigil-system" in args


def verbs(role: dict[str, Any]) -> dict[str, set[str]]:
    granted: dict[str, set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault(f"{group or 'core'}/{resource}", set()).update(rule["verbs"])
    return granted


def test_verbs_are_exactly_what_the_operator_calls(helm: chart.Helm) -> None:
    docs = render(helm, {"watchNamespaces": ["ml"]})
    namespaced = verbs(next(d for d in docs if d["kind"] == "Role" and d["metadata"]["namespace"] == "ml"))
    assert namespaced == {
        "vigil.dev/modeldeployments": {"get", "list", "watch"},
        "vigil.dev/modeldeployments/status": {"patch"},
        "vigil.dev/incidents": {"get", "list", "watch", "create", "delete"},
        "vigil.dev/incidents/status": {"patch"},
        "vigil.dev/runbooks": {"get", "list", "watch"},
        "apps/deployments": {"list", "watch", "create", "patch", "delete"},
        "core/pods": {"list", "watch", "delete"},
        "core/services": {"list", "watch", "create", "patch"},
        "gateway.networking.k8s.io/httproutes": {"get", "list", "watch", "create", "patch"},
        "core/events": {"create"},
        "core/secrets": {"get"},
        "core/configmaps": {"get"},
    }
    cluster = verbs(one(render(helm), "ClusterRole"))
    assert cluster == {
        **namespaced,
        "core/nodes": {"list"},
        "apiextensions.k8s.io/customresourcedefinitions": {"list", "watch"},
    }
    assert not any({"*", "update", "deletecollection", "escalate", "bind"} & v for v in cluster.values())


# -- pod security -----------------------------------------------------------------------------

ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The Pod Security Standard ``restricted`` (v1.36) checks, for the fields this chart can set."""
    found: list[str] = []
    pod_context = pod.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            found.append(flag)
    for volume in pod.get("volumes") or []:
        if not set(volume) - {"name"} <= ALLOWED_VOLUMES:
            found.append(f"volume {volume['name']}")
    for c in [*pod.get("initContainers", []), *pod["containers"]]:
        context = c.get("securityContext") or {}
        if context.get("privileged"):
            found.append(f"{c['name']}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{c['name']}: allowPrivilegeEscalation must be false")
        if context.get("capabilities", {}).get("drop") != ["ALL"]:
            found.append(f"{c['name']}: capabilities must drop ALL")
        if set(context.get("capabilities", {}).get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"{c['name']}: capabilities added")
        if not context.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
            found.append(f"{c['name']}: runAsNonRoot")
        if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
            found.append(f"{c['name']}: runAsUser 0")
        seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{c['name']}: seccompProfile")
        if c.get("ports") and any("hostPort" in p for p in c["ports"]):
            found.append(f"{c['name']}: hostPort")
    return found


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"prometheus": {"bearerTokenSecret": {"name": "t"}, "ca": {"configMap": "c"}}},
        {"modelRepositories": MODEL_REPOSITORIES},
    ],
)
def test_operator_pod_passes_the_restricted_pod_security_standard(helm: chart.Helm, values: dict[str, Any]) -> None:
    pod = one(render(helm, values), "StatefulSet")["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    assert container(render(helm, values))["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_restricted_check_catches_a_pod_without_security_contexts(helm: chart.Helm) -> None:
    pod = one(render(helm), "StatefulSet")["spec"]["template"]["spec"]
    pod.pop("securityContext")
    pod["containers"][0].pop("securityContext")
    assert restricted_violations(pod) == [
        "vigil: allowPrivilegeEscalation must be false",
        "vigil: capabilities must drop ALL",
        "vigil: runAsNonRoot",
        "vigil: seccompProfile",
    ]


# -- workload shape ---------------------------------------------------------------------------


def test_statefulset_names_a_headless_service_the_chart_creates(helm: chart.Helm) -> None:
    docs = render(helm)
    statefulset = one(docs, "StatefulSet")
    services = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "Service"}
    governing = services[statefulset["spec"]["serviceName"]]
    assert governing["spec"]["clusterIP"] == "None"
    selector = statefulset["spec"]["selector"]["matchLabels"]
    assert governing["spec"]["selector"] == selector
    metrics = services["vigil-metrics"]
    assert metrics["spec"]["ports"][0]["targetPort"] == "metrics"


def test_two_replicas_spread_over_nodes_with_probes_and_a_disruption_budget(helm: chart.Helm) -> None:
    docs = render(helm)
    statefulset = one(docs, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 2
    anti = statefulset["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == statefulset["spec"]["selector"]["matchLabels"]
    main = container(docs)
    assert main["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "--liveness=http://0.0.0.0:8080/healthz" in main["args"]
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert "PodDisruptionBudget" not in kinds(render(helm, {"replicas": 1}))


def test_scheduling_and_image_values_reach_the_pod(helm: chart.Helm) -> None:
    values = {
        "nodeSelector": {"pool": "system"},
        "tolerations": [{"key": "dedicated", "operator": "Exists"}],
        "affinity": {"nodeAffinity": {}},
        "imagePullSecrets": [{"name": "regcred"}],
        "image": {"tag": "1.2.3"},
        "extraArgs": ["--resync=60"],
    }
    docs = render(helm, values)
    pod = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "system"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert pod["affinity"] == {"nodeAffinity": {}}
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert container(docs)["image"] == "ghcr.io/vigil-dev/vigil:1.2.3"
    assert container(docs)["args"][-1] == "--resync=60"


def test_prometheus_auth_and_tls_become_operator_flags_with_mounted_files(helm: chart.Helm) -> None:
    values = {
        "prometheus": {
            "url": "https://prom:9091",
            "bearerTokenSecret": {"name": "prom-token"},
            "ca": {"secret": "prom-ca"},
        }
    }
    docs = render(helm, values)
    args = container(docs)["args"]
    assert "--prometheus-url=https://prom:9091" in args
    assert "--prometheus-bearer-token-file=/var/run/secrets/vigil/prometheus-token/token" in args
    assert "--prometheus-ca-file=/var/run/secrets/vigil/prometheus-ca/ca.crt" in args
    volumes = {v["name"]: v for v in one(docs, "StatefulSet")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["prometheus-token"]["secret"] == {"secretName": "prom-token"}
    assert volumes["prometheus-ca"]["secret"] == {"secretName": "prom-ca"}
    insecure = container(render(helm, {"prometheus": {"insecureSkipVerify": True}}))["args"]
    assert "--prometheus-insecure-skip-verify" in insecure


def test_model_repositories_are_mounted_read_only_at_their_path_and_passed_as_roots(helm: chart.Helm) -> None:
    docs = render(helm, {"modelRepositories": MODEL_REPOSITORIES})
    main = container(docs)
    assert [a for a in main["args"] if a.startswith("--model-repository-root")] == [
        "--model-repository-root=/models",
        "--model-repository-root=/mnt/more",
    ]
    mounts = {m["name"]: m for m in main["volumeMounts"]}
    assert mounts["model-repository-0"] == {"name": "model-repository-0", "mountPath": "/models", "readOnly": True}
    assert mounts["model-repository-1"]["subPath"] == "ml"
    assert mounts["model-repository-1"]["readOnly"] is True
    volumes = {v["name"]: v for v in one(docs, "StatefulSet")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model-repository-0"]["persistentVolumeClaim"] == {"claimName": "triton-models", "readOnly": True}
    assert not [a for a in container(render(helm))["args"] if a.startswith("--model-repository-root")]


def test_the_golden_set_size_limit_is_a_value_passed_to_vigil_run(helm: chart.Helm) -> None:
    assert "--golden-set-max-mib=32" in container(render(helm))["args"]
    assert "--golden-set-max-mib=200" in container(render(helm, {"goldenSetMaxMiB": 200}))["args"]
    with pytest.raises(chart.ChartError, match="goldenSetMaxMiB"):
        render(helm, {"goldenSetMaxMiB": 0})


@pytest.mark.parametrize(
    ("entry", "field"),
    [({"path": "models", "volume": {"emptyDir": {}}}, "path"), ({"path": "/models"}, "volume")],
)
def test_a_model_repository_needs_an_absolute_path_and_a_volume(
    helm: chart.Helm, entry: dict[str, Any], field: str
) -> None:
    with pytest.raises(chart.ChartError, match=field):
        render(helm, {"modelRepositories": [entry]})


def test_every_flag_the_chart_passes_is_one_vigil_run_accepts(helm: chart.Helm) -> None:
    values = {
        "prometheus": {"bearerTokenSecret": {"name": "t"}, "ca": {"secret": "c"}, "insecureSkipVerify": True},
        "modelRepositories": MODEL_REPOSITORIES,
    }
    flags = {arg.split("=", 1)[0] for arg in container(render(helm, values))["args"]}
    flags |= {arg.split("=", 1)[0] for arg in container(render(helm, {"watchNamespaces": ["ml"]}))["args"]}
    group: Any = typer.main.get_command(cli.app)
    run = group.commands["run"]
    accepted = {opt for param in run.params for opt in param.opts}
    assert flags <= accepted, flags - accepted


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"replicas": "two"}, "replicas"),
        ({"watchNamespace": ["ml"]}, "watchNamespace"),
        ({"podMonitor": {"enabled": "yes"}}, "enabled"),
        ({"intervals": {"minWindow": "a minute"}}, "minWindow"),
        ({"prometheus": {"url": "prometheus:9090"}}, "url"),
    ],
)
def test_the_values_schema_rejects_bad_values_naming_the_field(
    helm: chart.Helm, values: dict[str, Any], field: str
) -> None:
    with pytest.raises(chart.ChartError, match=field):
        render(helm, values)


# -- monitoring -------------------------------------------------------------------------------


def test_monitoring_objects_render_only_where_prometheus_operator_is_served_unless_forced(helm: chart.Helm) -> None:
    assert not chart.MONITORING_KINDS & set(kinds(render(helm)))
    assert set(kinds(render(helm, api_versions=chart.MONITORING_APIS))) >= chart.MONITORING_KINDS
    forced_off = {
        "podMonitor": {"enabled": False},
        "serviceMonitor": {"enabled": False},
        "prometheusRule": {"enabled": False},
    }
    assert not chart.MONITORING_KINDS & set(kinds(render(helm, forced_off, api_versions=chart.MONITORING_APIS)))
    assert set(kinds(render(helm, chart.deploy_values()))) >= chart.MONITORING_KINDS


def test_podmonitor_copies_the_pod_labels_the_operators_promql_needs(helm: chart.Helm) -> None:
    monitor = chart.pod_monitor(helm)
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    copied = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"] if "sourceLabels" in r}
    assert copied == {
        labels.PROM_DEPLOYMENT: [prometheus.meta_label(labels.MODEL_DEPLOYMENT)],
        labels.PROM_REVISION: [prometheus.meta_label(labels.REVISION)],
        "model_version": [prometheus.meta_label(labels.MODEL_VERSION)],
    }
    assert monitor["spec"]["selector"] == {"matchExpressions": [{"key": labels.MODEL_DEPLOYMENT, "operator": "Exists"}]}
    assert monitor["spec"]["namespaceSelector"] == {"any": True}


def test_servicemonitor_scrapes_the_metrics_service(helm: chart.Helm) -> None:
    docs = render(helm, chart.deploy_values())
    monitor = one(docs, "ServiceMonitor")
    service = next(doc for doc in docs if doc["kind"] == "Service" and doc["metadata"]["name"] == "vigil-metrics")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]


def test_prometheus_rule_template_is_generated_from_the_slo_maths() -> None:
    template = (chart.CHART_DIR / chart.RULE_TEMPLATE).read_text()
    assert template == chart.prometheus_rule_template(), "stale: run `vigil dev chart`"


def test_prometheus_rule_alerts_on_the_workbook_pairs_with_the_objective_from_values(helm: chart.Helm) -> None:
    docs = render(helm, {"prometheusRule": {"enabled": True, "objective": 99.5}})
    groups = {g["name"]: g["rules"] for g in one(docs, "PrometheusRule")["spec"]["groups"]}
    alerts = groups["vigil-triton-availability.alerts"]
    expected = windows.default_pairs(30 * 86400, threshold=False, min_window=60)
    assert [(a["labels"]["long_window"], a["labels"]["short_window"]) for a in alerts] == [
        (p.long, p.short) for p in expected
    ]
    assert [a["labels"]["severity"] for a in alerts] == [str(p.severity) for p in expected]
    for alert, pair in zip(alerts, expected, strict=True):
        assert f"{pair.factor:g} * (1 - 99.5 / 100)" in alert["expr"]
        assert rules.record_name(pair.long_seconds) in alert["expr"]
    assert "{{ $labels.modeldeployment }}" in alerts[0]["annotations"]["summary"]  # left for Prometheus
    records = {r["record"] for r in groups["vigil-triton-availability.records"]}
    assert records == {rules.record_name(s) for p in expected for s in (p.long_seconds, p.short_seconds)}


# -- generated files and docs -----------------------------------------------------------------


def test_deploy_manifests_are_current(helm: chart.Helm) -> None:
    for relative, text in chart.deploy_files(helm, prometheus.podmonitor_scrape_configs).items():
        path = chart.DEPLOY_DIR / relative
        assert path.is_file(), f"{path} is missing: run `vigil dev chart`"
        assert path.read_text() == text, f"{path} is stale: run `vigil dev chart`"


def test_deploy_namespace_enforces_restricted_and_comes_first() -> None:
    docs = [d for d in yaml.safe_load_all((chart.DEPLOY_DIR / "vigil.yaml").read_text()) if d]
    assert docs[0]["kind"] == "Namespace"
    assert docs[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] in ("StatefulSet", "Service")} == {"vigil-system"}


def _values_paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in ("resources", "podSecurityContext", "securityContext"):
            paths += _values_paths(value, f"{path}.")
        else:
            paths.append(path)
    return paths


def test_the_chart_readme_lists_every_value() -> None:
    values = yaml.safe_load((chart.CHART_DIR / "values.yaml").read_text())
    table = README.read_text().split("## Values", 1)[1]
    documented = set(re.findall(r"^\| `([^`]+)` \|", table, re.MULTILINE))
    assert set(_values_paths(values)) == documented


def test_the_chart_readme_shows_the_plain_scrape_config_that_ships_in_deploy() -> None:
    text = README.read_text()
    snippet = re.search(r"```yaml\n(scrape_configs:.*?)```", text, re.DOTALL)
    assert snippet is not None
    shipped = yaml.safe_load((chart.DEPLOY_DIR / chart.SCRAPE_CONFIG).read_text())
    assert yaml.safe_load(snippet.group(1)) == shipped


def test_chart_crds_are_the_generated_ones() -> None:
    chart_crds = sorted(p.name for p in (chart.CHART_DIR / "crds").glob("*.yaml"))
    assert chart_crds == sorted(p.name for p in pathlib.Path(chart.CHECKOUT / "crds").glob("*.yaml"))


def test_two_shard_releases_share_no_object_and_each_has_its_own_lease_namespaces_and_scrape(
    helm: chart.Helm,
) -> None:
    # The README's sharding recipe: one release per shard, disjoint watchNamespaces, the fleet-wide
    # PrometheusRule in the first release only.
    shards = {
        "vigil-shard-a": {"watchNamespaces": ["team-a", "team-b"]},
        "vigil-shard-b": {"watchNamespaces": ["team-c"], "prometheusRule": {"enabled": False}},
    }
    rendered = {
        release: render(helm, values, release=release, api_versions=chart.MONITORING_APIS)
        for release, values in shards.items()
    }
    names = {
        release: {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs}
        for release, docs in rendered.items()
    }
    assert not names["vigil-shard-a"] & names["vigil-shard-b"]
    for release, docs in rendered.items():
        watched = shards[release]["watchNamespaces"]
        args = container(docs)["args"]
        assert f"--lease-name={release}" in args
        assert [a for a in args if a.startswith("--namespace=")] == [f"--namespace={n}" for n in watched]
        assert "ClusterRole" not in kinds(docs)
        monitor = one(docs, "PodMonitor")  # each shard scrapes only its own namespaces: no pod twice
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": watched}
    assert kinds(rendered["vigil-shard-a"]).count("PrometheusRule") == 1
    assert "PrometheusRule" not in kinds(rendered["vigil-shard-b"])
