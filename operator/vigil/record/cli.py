"""``vigil status`` and ``vigil incidents``: read-only views of what vigil sees and did.

Thin by design: read ModelDeployments and Incidents from the API server with the ``kubernetes``
client, parse them with the API models and print the pure renderings of :mod:`vigil.record.views`.
Nothing here writes to the cluster. The commands are registered on the top-level ``vigil`` app
(:mod:`vigil.cli`) from :data:`app`.

The kubeconfig comes from ``--kubeconfig`` or ``$KUBECONFIG`` (several paths joined by ``:``
are merged, as kubectl does), else ``~/.kube/config``, else the in-cluster service account. The
default namespace is the kubeconfig context's, as with kubectl.
"""

from __future__ import annotations

import datetime
import pathlib
from collections.abc import Mapping
from typing import Any

import typer
import urllib3.exceptions
from kubernetes import client, config
from rich import console, text

from vigil import api, labels
from vigil.api import incident as incapi
from vigil.api import modeldeployment as mdapi
from vigil.record import views

app = typer.Typer(add_completion=False)

_SERVICE_ACCOUNT_NAMESPACE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

KUBECONFIG_OPTION = typer.Option(None, "--kubeconfig", envvar="KUBECONFIG", help="Kubeconfig file(s).")
NAMESPACE_OPTION = typer.Option(None, "--namespace", "-n", help="Namespace (default: the kubeconfig context's).")
ALL_NAMESPACES_OPTION = typer.Option(False, "--all-namespaces", "-A", help="Every namespace.")


class ReadError(Exception):
    """Reading from the API server failed; the message says why, for a human."""


def custom_objects(kubeconfig: str | None) -> Any:
    """A ``CustomObjectsApi`` for ``kubeconfig``, the default kubeconfig, or the in-cluster account."""
    # The kubernetes client ships no type hints: its loaders are untyped calls.
    try:
        if kubeconfig:
            return client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))  # type: ignore[no-untyped-call]
        try:
            return client.CustomObjectsApi(config.new_client_from_config())  # type: ignore[no-untyped-call]
        except config.ConfigException:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return client.CustomObjectsApi(client.ApiClient(configuration))
    except config.ConfigException as error:
        raise ReadError(f"no usable kubeconfig: {error}") from error


def default_namespace(kubeconfig: str | None) -> str:
    """The current context's namespace, the service account's in a pod, else ``default``."""
    try:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig or None)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError):
        active = None
    if isinstance(active, Mapping):
        context = active.get("context")
        if isinstance(context, Mapping) and context.get("namespace"):
            return str(context["namespace"])
        return "default"
    if _SERVICE_ACCOUNT_NAMESPACE.exists():
        return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    return "default"


def clock() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _explain(error: Exception, plural: str, name: str | None = None, namespace: str | None = None) -> ReadError:
    if isinstance(error, client.exceptions.ApiException):
        if error.status == 404 and name is not None:
            return ReadError(f"{plural.removesuffix('s')} {name} not found in namespace {namespace}")
        if error.status == 404:
            return ReadError(f"{plural}.{api.GROUP} is not served: are the vigil CRDs installed (vigil crds)?")
        if error.status in (401, 403):
            return ReadError(f"not allowed to read {plural}.{api.GROUP}: {error.reason}")
        return ReadError(f"the API server answered {error.status} {error.reason} when reading {plural}")
    return ReadError(f"cannot reach the API server: {error}")


_READ_ERRORS = (client.exceptions.ApiException, urllib3.exceptions.HTTPError, OSError)


def list_objects(objects: Any, plural: str, namespace: str | None, label_selector: str = "") -> list[Mapping[str, Any]]:
    """Every object of ``plural`` in ``namespace`` (``None``: the whole cluster)."""
    try:
        if namespace is None:
            answer = objects.list_cluster_custom_object(api.GROUP, api.VERSION, plural, label_selector=label_selector)
        else:
            answer = objects.list_namespaced_custom_object(
                api.GROUP, api.VERSION, namespace, plural, label_selector=label_selector
            )
    except _READ_ERRORS as error:
        raise _explain(error, plural) from error
    items = answer.get("items", []) if isinstance(answer, Mapping) else []
    return [item for item in items if isinstance(item, Mapping)]


def get_object(objects: Any, plural: str, namespace: str, name: str) -> Mapping[str, Any]:
    try:
        answer = objects.get_namespaced_custom_object(api.GROUP, api.VERSION, namespace, plural, name)
    except _READ_ERRORS as error:
        raise _explain(error, plural, name, namespace) from error
    if not isinstance(answer, Mapping):
        raise ReadError(f"{plural} {name}: the API server returned no object")
    return answer


def _scope(namespace: str | None, all_namespaces: bool, kubeconfig: str | None) -> str | None:
    if namespace and all_namespaces:
        raise typer.BadParameter("use either --namespace or --all-namespaces", param_hint="--namespace")
    if all_namespaces:
        return None
    return namespace or default_namespace(kubeconfig)


def _print(out: console.Console, *renderables: console.RenderableType | None) -> None:
    for renderable in renderables:
        if renderable is not None:
            out.print(renderable)


def _fail(error: ReadError) -> typer.Exit:
    message = text.Text("error: ", style="bold red")
    message.append(str(error))
    console.Console(stderr=True).print(message)
    return typer.Exit(code=1)


@app.command("status")
def status_command(
    namespace: str | None = NAMESPACE_OPTION,
    all_namespaces: bool = ALL_NAMESPACES_OPTION,
    kubeconfig: str | None = KUBECONFIG_OPTION,
) -> None:
    """Show each ModelDeployment: what serves, readiness, conditions, SLOs and active incident."""
    out = console.Console()
    scope = _scope(namespace, all_namespaces, kubeconfig)
    try:
        items = list_objects(custom_objects(kubeconfig), mdapi.PLURAL, scope)
    except ReadError as error:
        raise _fail(error) from error
    parsed = views.parse(mdapi.ModelDeployment, items)
    if not items:
        where = "the cluster" if scope is None else f"namespace {scope}"
        out.print(text.Text(f"No ModelDeployments in {where}."))
        return
    _print(out, views.status_view(parsed.objects, clock()), views.problems_view(parsed.problems))


@app.command("incidents")
def incidents_command(
    name: str | None = typer.Argument(None, help="Show this incident in full."),
    namespace: str | None = NAMESPACE_OPTION,
    all_namespaces: bool = ALL_NAMESPACES_OPTION,
    deployment: str | None = typer.Option(None, "--deployment", "-d", help="Only this ModelDeployment's."),
    kubeconfig: str | None = KUBECONFIG_OPTION,
) -> None:
    """List incidents; with NAME, show its diagnosis and evidence, plan steps and full timeline."""
    out = console.Console()
    if name is not None and all_namespaces:
        raise typer.BadParameter("an incident NAME is looked up in one namespace", param_hint="--all-namespaces")
    scope = _scope(namespace, all_namespaces, kubeconfig)
    try:
        objects = custom_objects(kubeconfig)
        if name is not None and scope is not None:
            item = get_object(objects, incapi.PLURAL, scope, name)
            parsed = views.parse(incapi.Incident, [item])
            if not parsed.objects:
                raise ReadError("; ".join(parsed.problems))
            out.print(views.incident_detail(parsed.objects[0], clock()))
            return
        selector = f"{labels.MODEL_DEPLOYMENT}={deployment}" if deployment else ""
        items = list_objects(objects, incapi.PLURAL, scope, selector)
    except ReadError as error:
        raise _fail(error) from error
    if not items:
        where = "the cluster" if scope is None else f"namespace {scope}"
        whose = f" for {deployment}" if deployment else ""
        out.print(text.Text(f"No incidents{whose} in {where}."))
        return
    parsed_list = views.parse(incapi.Incident, items)
    _print(
        out,
        views.incidents_table(parsed_list.objects, clock(), show_namespace=scope is None),
        views.problems_view(parsed_list.problems),
    )
