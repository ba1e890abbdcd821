"""``vigil dev``: bring the local sandbox up, take it down, and see how it is doing.

The commands are thin: everything happens in :mod:`vigil.dev.sandbox`, which the end-to-end
tests drive directly. Here we only turn its progress messages into a rich display and its
results into tables and shell lines.
"""

from __future__ import annotations

import pathlib
import shlex
import time

import rich.console
import rich.status
import rich.table
import typer

from vigil.dev import build, chart, kwok, prometheus, versions
from vigil.dev import sandbox as sandbox_mod

app = typer.Typer(
    no_args_is_help=True,
    help="Local sandbox: real control plane, kwok GPU nodes, Prometheus and the Triton simulator, on 127.0.0.1.",
)

_console = rich.console.Console()
_errors = rich.console.Console(stderr=True)


def _sandbox(name: str, state_dir: pathlib.Path | None) -> sandbox_mod.Sandbox:
    return sandbox_mod.Sandbox(name=name, state_dir=state_dir or versions.state_root())


class _Progress:
    """Prints each finished step with its duration while a spinner shows the current one."""

    def __init__(self, status: rich.status.Status) -> None:
        self._status = status
        self._step: str | None = None
        self._started = time.monotonic()

    def __call__(self, message: str) -> None:
        self.finish()
        self._step = message
        self._started = time.monotonic()
        self._status.update(f"[bold]{message}[/]")

    def finish(self) -> None:
        if self._step is not None:
            _console.print(f"[green]✓[/] {self._step} [dim]({time.monotonic() - self._started:.1f}s)[/]")
            self._step = None


def _fail(error: Exception) -> typer.Exit:
    _errors.print(f"[bold red]error:[/] {error}", markup=True, highlight=False)
    return typer.Exit(1)


@app.command("up")
def up_command(
    nodes: int = typer.Option(4, min=1, help="Number of fake GPU nodes (tainted nvidia.com/gpu)."),
    gpus_per_node: int = typer.Option(8, min=0, help="nvidia.com/gpu per node."),
    cpu_nodes: int = typer.Option(
        sandbox_mod.DEFAULT_CPU_NODES, min=0, help="Number of fake CPU-only nodes (no taint), for large fleets."
    ),
    pods_per_node: int = typer.Option(
        sandbox_mod.DEFAULT_PODS_PER_NODE, min=1, max=10_000, help="Pods each node admits (GPU and CPU nodes)."
    ),
    service_cidr: str = typer.Option(
        kwok.DEFAULT_SERVICE_CIDR,
        help="The API server's Service range (IPv4, /12 to /28); changing it recreates the control plane.",
    ),
    gpu_product: str = typer.Option("NVIDIA-A100-SXM4-80GB", help="Value of the nvidia.com/gpu.product label."),
    ready_delay: str = typer.Option("2s", help="Time from pod start to Ready (model load), e.g. 500ms, 2s, 1m."),
    scrape_interval: str = typer.Option("5s", help="Prometheus scrape and evaluation interval."),
    prometheus_port: int = typer.Option(sandbox_mod.DEFAULT_PROMETHEUS_PORT, help="Prometheus port on 127.0.0.1."),
    sim_port: int = typer.Option(sandbox_mod.DEFAULT_SIM_PORT, help="Triton simulator port on 127.0.0.1."),
    name: str = typer.Option(sandbox_mod.DEFAULT_NAME, help="Sandbox name."),
    state_dir: pathlib.Path | None = typer.Option(
        None, help="State directory (default: $VIGIL_STATE or ~/.cache/vigil/sandbox)."
    ),
) -> None:
    """Bring the sandbox up (idempotent: reuses what runs, repairs what does not)."""
    box = _sandbox(name, state_dir)
    started = time.monotonic()
    with _console.status("starting", spinner="dots") as status:
        progress = _Progress(status)
        try:
            info = box.up(
                nodes=nodes,
                gpus_per_node=gpus_per_node,
                gpu_product=gpu_product,
                ready_delay=ready_delay,
                scrape_interval=scrape_interval,
                prometheus_port=prometheus_port,
                sim_port=sim_port,
                cpu_nodes=cpu_nodes,
                pods_per_node=pods_per_node,
                service_cidr=service_cidr,
                progress=progress,
            )
        except sandbox_mod.SandboxError as error:
            raise _fail(error) from error
        progress.finish()
    _console.print(f"\n[bold green]sandbox {info.name!r} is up[/] in {time.monotonic() - started:.1f}s")
    _console.print(f"  API server  {info.apiserver_url}")
    _console.print(f"  Prometheus  {info.prometheus_url}")
    _console.print(f"  simulator   {info.simulator_url}")
    _console.print(f"  nodes       {info.nodes} x {info.gpus_per_node} nvidia.com/gpu ({info.gpu_product})")
    _console.print(f"              {info.cpu_nodes} CPU-only, {info.pods_per_node} pods per node")
    _console.print(f"  capacity    {info.pod_capacity} pods, {info.service_capacity} Services ({info.service_cidr})")
    _console.print("\nUse it from this shell with:\n")
    _console.print(f'  eval "$(vigil dev env{_name_flag(name)})"', highlight=False)
    _console.print(f"  # or: export KUBECONFIG={info.kubeconfig}", highlight=False)


def _name_flag(name: str) -> str:
    return "" if name == sandbox_mod.DEFAULT_NAME else f" --name {name}"


@app.command("down")
def down_command(
    name: str = typer.Option(sandbox_mod.DEFAULT_NAME, help="Sandbox name."),
    state_dir: pathlib.Path | None = typer.Option(None, help="State directory."),
) -> None:
    """Stop everything the sandbox started and remove its state."""
    box = _sandbox(name, state_dir)
    with _console.status("stopping", spinner="dots") as status:
        progress = _Progress(status)
        box.down(progress=progress)
        progress.finish()
    _console.print(f"[bold]sandbox {name!r} is down[/]")


@app.command("status")
def status_command(
    name: str = typer.Option(sandbox_mod.DEFAULT_NAME, help="Sandbox name."),
    state_dir: pathlib.Path | None = typer.Option(None, help="State directory."),
) -> None:
    """Show each component's health; exits 1 if anything is down."""
    report = _sandbox(name, state_dir).status()
    table = rich.table.Table(title=f"vigil sandbox {name!r}", show_lines=False)
    table.add_column("component")
    table.add_column("state")
    table.add_column("detail", overflow="fold")
    for component in report.components:
        state = "[green]up[/]" if component.ok else "[red]down[/]"
        table.add_row(component.name, state, component.detail)
    _console.print(table)
    if report.info is not None:
        _console.print(f"KUBECONFIG={report.info.kubeconfig}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@app.command("env")
def env_command(
    name: str = typer.Option(sandbox_mod.DEFAULT_NAME, help="Sandbox name."),
    state_dir: pathlib.Path | None = typer.Option(None, help="State directory."),
) -> None:
    """Print export lines for this shell: eval "$(vigil dev env)"."""
    info = _sandbox(name, state_dir).info()
    if info is None:
        raise _fail(sandbox_mod.SandboxError("the sandbox is not up; run `vigil dev up`"))
    for key, value in info.env().items():
        typer.echo(f"export {key}={shlex.quote(value)}")


@app.command("chart")
def chart_command(
    deploy_dir: pathlib.Path = typer.Option(chart.DEPLOY_DIR, help="Where the plain manifests go."),
) -> None:
    """Regenerate what derives from the chart: its PrometheusRule (from the SLO maths), then deploy/."""
    try:
        helm = chart.Helm.from_toolchain(progress=lambda message: _errors.print(message, highlight=False))
        written = chart.write_generated(helm, prometheus.podmonitor_scrape_configs, deploy_dir)
    except (chart.ChartError, build.BuildError) as error:
        raise _fail(error) from error
    for path in written:
        typer.echo(f"wrote {path}")
