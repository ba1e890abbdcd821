"""``vigil sim``: run the Triton simulator, and drive its loads and faults.

``serve`` is the long-running server; every other command is a thin client of its control API
(``--url``, default http://127.0.0.1:9400), so a test, a demo script or a person at a terminal
change the same running simulation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
import signal
from typing import Any

import kubernetes.config
import numpy as np
import rich.console
import rich.table
import typer

from vigil.sim import client, engine, kube, schema, server

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Simulate Triton pods: metrics, v2 API, traffic, faults."
)

URL_ENV = "VIGIL_SIM_URL"
URL_OPTION = typer.Option(
    client.DEFAULT_URL,
    "--url",
    envvar=URL_ENV,
    help=f"Base URL of a running `vigil sim serve` (default: ${URL_ENV}, which `vigil dev env` exports).",
)


def parse_target(target: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` or ``NAME`` (namespace ``default``)."""
    namespace, _, name = target.rpartition("/")
    if not name:
        raise typer.BadParameter(f"expected NAMESPACE/NAME, got {target!r}")
    return namespace or "default", name


def _call(action: Any, *args: Any) -> Any:
    try:
        return action(*args)
    except client.ControlError as exc:
        message = str(exc)
        if exc.details:
            message += "\n" + json.dumps(exc.details, indent=2)
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1) from None


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True))


@app.command("serve")
def serve_command(
    kubeconfig: pathlib.Path | None = typer.Option(None, help="Kubeconfig of the cluster whose pods to play."),
    context: str | None = typer.Option(None, help="Kubeconfig context."),
    listen: str = typer.Option(server.DEFAULT_LISTEN, help="host:port on loopback."),
    profile: pathlib.Path | None = typer.Option(None, help="YAML profile: defaults, behaviours, loads."),
    tick: float = typer.Option(engine.DEFAULT_TICK_SECONDS, min=0.01, max=1.0, help="Simulation tick, seconds."),
    resync: float = typer.Option(kube.DEFAULT_RESYNC_SECONDS, min=1.0, help="Re-list period, seconds."),
    seed: int | None = typer.Option(None, help="Random seed, for reproducible runs."),
) -> None:
    """Serve metrics and the KServe v2 API of every Ready vigil pod, with traffic and faults."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server.parse_listen(listen)
    except server.ListenError as exc:
        raise typer.BadParameter(str(exc), param_hint="--listen") from None
    try:
        loaded = schema.load_profile(profile) if profile else schema.Profile()
    except (OSError, ValueError) as exc:  # pydantic.ValidationError and YAML errors are ValueErrors
        raise typer.BadParameter(str(exc), param_hint="--profile") from None
    try:
        api = kube.api_client(str(kubeconfig) if kubeconfig else None, context)
    except (OSError, kubernetes.config.ConfigException) as exc:
        raise typer.BadParameter(str(exc), param_hint="--kubeconfig") from None
    source = kube.KubeSource(api, resync)
    simulator = engine.Simulator(source, loaded.book(), rng=np.random.default_rng(seed), tick_seconds=tick)
    try:
        for load in loaded.loads:
            simulator.set_load(load)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--profile") from None
    source.start()
    try:
        asyncio.run(_serve(simulator, listen))
    finally:
        source.stop()


async def _serve(simulator: engine.Simulator, listen: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def started(url: str) -> None:
        typer.echo(f"vigil sim serving on {url} (pods under {url}/sim/<namespace>/<pod>/)", err=True)

    await server.serve(simulator, listen, started=started, stop=stop)


@app.command("load")
def load_command(
    target: str = typer.Argument(..., help="NAMESPACE/NAME of the ModelDeployment."),
    rate: float | None = typer.Option(None, min=0, help="Poisson arrivals, requests per second."),
    csv: pathlib.Path | None = typer.Option(None, exists=True, dir_okay=False, help="Replay arrival times."),
    column: str = typer.Option("timestamp", help="CSV column with the arrival times (any case)."),
    size_column: str | None = typer.Option(
        None, help="CSV column with each request's size (e.g. tokens): service time scales with it."
    ),
    speedup: float = typer.Option(1.0, min=0.001, help="Replay this many times faster."),
    loop: bool = typer.Option(False, help="Replay the CSV again and again."),
    duration: float | None = typer.Option(None, min=0.001, help="Stop after this many seconds."),
    batch_size: int = typer.Option(1, min=1, help="Inferences per request."),
    url: str = URL_OPTION,
) -> None:
    """Start (or replace) traffic to a ModelDeployment."""
    if (rate is None) == (csv is None):
        raise typer.BadParameter("give exactly one of --rate and --csv")
    namespace, name = parse_target(target)
    body: dict[str, Any] = {"namespace": namespace, "name": name, "batchSize": batch_size}
    if rate is not None:
        body["rate"] = rate
    if csv is not None:
        body.update({"csv": csv.read_text(encoding="utf-8"), "column": column, "speedup": speedup, "loop": loop})
        if size_column is not None:
            body["sizeColumn"] = size_column
    elif size_column is not None:
        raise typer.BadParameter("--size-column needs --csv")
    if duration is not None:
        body["duration"] = duration
    _echo_json(_call(client.ControlClient(url).set_load, body))


@app.command("stop")
def stop_command(target: str = typer.Argument(..., help="NAMESPACE/NAME."), url: str = URL_OPTION) -> None:
    """Stop the traffic to a ModelDeployment."""
    _echo_json(_call(client.ControlClient(url).stop_load, *parse_target(target)))


@app.command("fault")
def fault_command(
    target: str = typer.Argument(..., help="NAMESPACE/NAME of the ModelDeployment."),
    version: str | None = typer.Option(None, help="Only this model version."),
    error_ratio: float | None = typer.Option(None, min=0, max=1, help="Share of requests failing (BACKEND)."),
    latency_multiplier: float | None = typer.Option(None, min=0.001, help="Compute slower by this factor."),
    gpu_memory_utilization: float | None = typer.Option(None, min=0, max=1, help="Used GPU memory fraction."),
    crash: bool | None = typer.Option(None, "--crash/--no-crash", help="Take Triton down (or bring it back)."),
    capacity: float | None = typer.Option(None, min=0.001, help="Requests/s one replica completes."),
    base_latency_ms: float | None = typer.Option(None, min=0, help="Compute time of one request, ms."),
    max_queue: int | None = typer.Option(None, min=0, help="Queue bound; beyond it requests are REJECTED."),
    weight_noise: float | None = typer.Option(
        None, min=0, max=100, help="Repository models: perturb the weights (noise in std devs per weight tensor)."
    ),
    input_scale: float | None = typer.Option(None, help="Repository models: inputs reach the model times this."),
    input_offset: float | None = typer.Option(None, help="Repository models: ... plus this (wrong normalisation)."),
    precision: str | None = typer.Option(None, help="Repository models: fp16 runs in half precision (drift)."),
    concurrency: int | None = typer.Option(None, min=1, help="Requests one replica executes at once."),
    service_cv: float | None = typer.Option(None, min=0, help="Service-time variation: 1 exponential, 0 fixed."),
    url: str = URL_OPTION,
) -> None:
    """Inject (merge) a fault for a ModelDeployment or one of its versions.

    The last four corrupt the answers of models served from a local model repository without any
    error: HTTP 200, normal latency, wrong numbers.
    """
    namespace, name = parse_target(target)
    fields = {
        "errorRatio": error_ratio,
        "latencyMultiplier": latency_multiplier,
        "gpuMemoryUtilization": gpu_memory_utilization,
        "crash": crash,
        "capacity": capacity,
        "baseLatencyMs": base_latency_ms,
        "maxQueue": max_queue,
        "weightNoise": weight_noise,
        "inputScale": input_scale,
        "inputOffset": input_offset,
        "precision": precision,
        "concurrency": concurrency,
        "serviceCv": service_cv,
    }
    body: dict[str, Any] = {"namespace": namespace, "name": name}
    if version is not None:
        body["version"] = version
    body.update({key: value for key, value in fields.items() if value is not None})
    if len(body) == (3 if version is not None else 2):
        raise typer.BadParameter("name at least one fault, e.g. --error-ratio 0.3")
    _echo_json(_call(client.ControlClient(url).set_fault, body))


@app.command("clear")
def clear_command(
    target: str = typer.Argument(..., help="NAMESPACE/NAME."),
    version: str | None = typer.Option(None, help="Only this version's fault (default: all of them)."),
    url: str = URL_OPTION,
) -> None:
    """Remove the faults of a ModelDeployment."""
    namespace, name = parse_target(target)
    _echo_json(_call(client.ControlClient(url).clear_faults, namespace, name, version))


@app.command("state")
def state_command(
    as_json: bool = typer.Option(False, "--json", help="Print the raw JSON."),
    url: str = URL_OPTION,
) -> None:
    """Show pods, loads, faults and totals of the running simulator."""
    state: dict[str, Any] = _call(client.ControlClient(url).state)
    if as_json:
        _echo_json(state)
        return
    console = rich.console.Console()
    pods = rich.table.Table("pod", "deployment", "version", "pending", "success", "failed", "latency ms", "util")
    for pod in state["pods"]:
        flag = " (crashed)" if pod["crashed"] else "" if pod["served"] else " (not ready)"
        pods.add_row(
            f"{pod['namespace']}/{pod['name']}{flag}",
            pod["modeldeployment"],
            pod["version"],
            str(pod["pending"]),
            str(pod["success"]),
            str(sum(pod["failure"].values())),
            f"{pod['latencySeconds'] * 1000:.1f}",
            f"{pod['utilization']:.2f}",
        )
    console.print(pods)
    loads = rich.table.Table("load", "kind", "sent", "delivered", "lost", "finished")
    for load in state["loads"]:
        loads.add_row(
            f"{load['namespace']}/{load['name']}",
            f"{load['kind']} {load.get('rate', '')}".strip(),
            str(load["sent"]),
            str(load["delivered"]),
            json.dumps(load["lost"]),
            str(load["finished"]),
        )
    console.print(loads)
    for fault in state["faults"]:
        console.print(f"fault {json.dumps(fault, sort_keys=True)}")
    for revision in state.get("revisions", []):
        console.print(
            f"revision {revision['namespace']}/{revision['name']} {revision['revision']} (version "
            f"{revision['version']}): {revision['userRequests']} user requests, {revision['directRequests']} direct"
        )
    console.print(f"totals {json.dumps(state['totals'], sort_keys=True)}")
