"""The ``vigil`` command line: one entry point for the operator, the sandbox and the simulator.

``pip install vigil`` carries only what the operator needs (numpy included, for the golden-request
gate); the simulator's and the sandbox's own needs are optional extras. So ``vigil sim`` and ``vigil dev`` are loaded only when invoked: ``vigil run``
never imports them, and without their extra they fail with the ``pip install`` line that fixes it
instead of a traceback.
"""

from __future__ import annotations

import importlib
import pathlib
import types
import typing

import typer

from vigil.api import crd
from vigil.record import cli as record_cli

CHART_CRDS = pathlib.Path("charts/vigil/crds")


app = typer.Typer(no_args_is_help=True, add_completion=False, help="Keep Triton model deployments inside their SLOs.")
app.registered_commands += record_cli.app.registered_commands


# The sandbox runs the simulator (`vigil sim serve`), so `vigil dev` and `vigil demo` need the simulator's
# packages too, though importing the sandbox's own modules does not show it.
SANDBOX_MODULES = ("vigil.sim.cli", "vigil.dev.cli")


def import_extra(command: str, extra: str, *modules: str) -> types.ModuleType:
    """Import ``modules``, returning the last; if a third-party package is missing, exit naming the extra to install."""
    try:
        return [importlib.import_module(module) for module in modules][-1]
    except ModuleNotFoundError as error:
        if error.name is None or error.name.partition(".")[0] == "vigil":
            raise
        typer.echo(
            f"`vigil {command}` needs the {extra!r} extra ({error.name} is not installed): pip install 'vigil[{extra}]'",
            err=True,
        )
        raise typer.Exit(code=1) from error


def lazy_group(name: str, extra: str, modules: tuple[str, ...], summary: str) -> None:
    """Register ``vigil <name>``: the Typer ``app`` of the last of ``modules``, imported only when it runs.

    The stand-in command takes every argument (``--help`` included) unparsed and hands them to the
    real group, which parses, reports and exits on its own as if it were registered here.
    """

    @app.command(
        name,
        help=f"{summary} (needs the {extra!r} extra)",
        add_help_option=False,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def run_group(ctx: typer.Context) -> None:
        group = typer.main.get_command(import_extra(name, extra, *modules).app)
        group.main(args=ctx.args, prog_name=ctx.command_path, standalone_mode=True)


lazy_group(
    "dev",
    "sandbox",
    SANDBOX_MODULES,
    "Local sandbox: real control plane, kwok GPU nodes, Prometheus and the Triton simulator, on 127.0.0.1.",
)
lazy_group("sim", "sim", ("vigil.sim.cli",), "Simulate Triton pods: metrics, v2 API, traffic, faults.")
lazy_group(
    "golden",
    "golden",
    ("vigil.gate.cli",),
    "Make a golden set (inputs, torch reference outputs, tolerances) for the validation gate.",
)


@app.command("crds")
def crds_command(
    out: pathlib.Path = typer.Option(pathlib.Path("crds"), help="Directory to write the CRD YAML files to."),
) -> None:
    """Write the CustomResourceDefinitions generated from the pydantic models (and the chart's copy)."""
    for directory in (out, CHART_CRDS):
        for path in crd.write_all(directory):
            typer.echo(f"wrote {path}")


@app.command("run")
def run_command(
    namespace: list[str] = typer.Option([], "--namespace", "-n", help="Watch only these namespaces (repeatable)."),
    all_namespaces: bool = typer.Option(False, "--all-namespaces", "-A", help="Watch the whole cluster."),
    kubeconfig: str | None = typer.Option(None, envvar="KUBECONFIG", help="Kubeconfig (default: in-cluster)."),
    liveness: str | None = typer.Option(
        "http://127.0.0.1:8080/healthz", help="Liveness endpoint URL to serve (empty to disable)."
    ),
    metrics_port: int = typer.Option(9102, help="Port of the operator's own /metrics (0 to disable)."),
    metrics_address: str = typer.Option("127.0.0.1", help="Address the /metrics server binds."),
    standalone: bool = typer.Option(False, help="A single replica: no leader election, always acts."),
    lease_name: str = typer.Option("vigil", help="Name of the coordination.k8s.io Lease the replicas share."),
    lease_namespace: str | None = typer.Option(
        None, help="Namespace of the Lease (default: $POD_NAMESPACE, the pod's own, else the first watched)."
    ),
    lease_duration: float = typer.Option(15.0, help="Seconds a standby waits for an unrenewed lease to expire."),
    renew_deadline: float = typer.Option(10.0, help="Seconds the leader keeps acting without a successful renewal."),
    retry_period: float = typer.Option(2.0, help="Seconds between attempts to acquire or renew the lease."),
    prometheus_url: str | None = typer.Option(None, envvar="VIGIL_PROMETHEUS_URL", help="Prometheus base URL."),
    prometheus_bearer_token_file: str | None = typer.Option(
        None, help="File with a bearer token sent to Prometheus (re-read every cycle)."
    ),
    prometheus_ca_file: str | None = typer.Option(None, help="CA bundle that verifies Prometheus's certificate."),
    prometheus_insecure_skip_verify: bool = typer.Option(False, help="Do not verify Prometheus's certificate."),
    eval_interval: float = typer.Option(5.0, help="Seconds between fleet-wide SLO evaluations."),
    resync: float = typer.Option(
        300.0, help="Seconds over which every deployment is re-reconciled once (spread, from the watch caches)."
    ),
    status_refresh: float = typer.Option(
        120.0,
        help="Most often a status is rewritten only because its SLI numbers changed (state changes are written at once).",
    ),
    status_heartbeat: float = typer.Option(
        600.0,
        help="Most often a status is rewritten only because its SLOs were evaluated again (lastEvaluationTime; "
        "the same numbers): once per period, at a phase of each deployment's own.",
    ),
    workers: int = typer.Option(
        16, help="Deployments reconciled at once (a burst of creations is taken up this many at a time)."
    ),
    min_window: str = typer.Option("20s", help="Shortest SLO window (at least 4 scrape intervals)."),
    rate_window: str = typer.Option("5m", help="Window of the current request rate used by diagnosis."),
    baseline_window: str = typer.Option("30m", help="Window of the baseline request rate used by diagnosis."),
    inference_url: str = typer.Option(
        "{ip}:8000",
        envvar="VIGIL_INFERENCE_URL",
        help="Where the golden-request gate reaches a pod's Triton HTTP API, without a scheme; "
        "{ip}, {pod} and {namespace} are filled in.",
    ),
    model_repository_root: list[str] = typer.Option(
        [],
        "--model-repository-root",
        help="A model repository mounted into the operator (repeatable): the gate reads golden sets "
        "(spec.validation.goldenSet.path) of /path and file:// repositories under these directories only.",
    ),
    golden_set_max_mib: int = typer.Option(
        32,
        help="The largest golden set (MiB) the gate reads from a model repository; it is parsed in memory, "
        "and the operator keeps up to twice this of unchanged golden sets between validation attempts.",
    ),
) -> None:
    """Run the operator (several replicas elect one leader through a Lease unless --standalone)."""
    from vigil.reconcile import leader, operator
    from vigil.reconcile import settings as config

    if namespace and all_namespaces:
        _fail("use either --namespace or --all-namespaces")
    if prometheus_ca_file and prometheus_insecure_skip_verify:
        _fail("use either --prometheus-ca-file or --prometheus-insecure-skip-verify")
    settings = config.Settings(
        kubeconfig=kubeconfig or None,
        namespaces=tuple(namespace),
        liveness=liveness or None,
        resync_seconds=resync,
        status_refresh_seconds=status_refresh,
        status_heartbeat_seconds=status_heartbeat,
        workers=workers,
        prometheus_url=prometheus_url or None,
        eval_interval=eval_interval,
        min_window=min_window,
        rate_window=rate_window,
        baseline_window=baseline_window,
        metrics_port=metrics_port,
        metrics_address=metrics_address,
        standalone=standalone,
        lease_name=lease_name,
        lease_namespace=lease_namespace or None,
        timing=leader.Timing(lease_duration, renew_deadline, retry_period),
        prometheus_bearer_token_file=prometheus_bearer_token_file or None,
        prometheus_verify=False if prometheus_insecure_skip_verify else (prometheus_ca_file or True),
        inference_url=inference_url,
        model_repository_roots=tuple(model_repository_root),
        golden_set_max_mib=golden_set_max_mib,
    )
    try:
        operator.run(settings)
    except config.ConfigError as error:
        _fail(str(error))


def _fail(message: str) -> typing.NoReturn:
    """One line on stderr and exit status 2, like a usage error: no traceback for bad input."""
    typer.echo(f"vigil run: error: {message}", err=True)
    raise typer.Exit(2)


@app.command("demo")
def demo_command(down: bool = typer.Option(False, "--down", help="Stop the demo and remove the sandbox.")) -> None:
    """Run the main job end to end on the local sandbox: a bad release healed by rollback."""
    demo = import_extra("demo", "sandbox", *SANDBOX_MODULES, "vigil.dev.demo")

    demo.down() if down else demo.up()


def main() -> None:
    app()
