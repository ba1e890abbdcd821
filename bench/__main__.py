"""``python -m bench [detection|healing|cost|gate|fleet|quiet|efficiency|plane ...] [--runs N | --quick] [--sizes ...]``: run the benchmarks.

Brings the local sandbox up (reusing a running one; it is never taken down), runs the chosen
benchmarks (detection, healing and cost by default) each against its own operator and namespace,
and writes ``results.json``, ``results.md`` and one PNG per benchmark to ``bench/results/``. The
long benchmarks (fleet: a live fleet of up to 1,000 deployments; quiet and efficiency: long
replays) run only when named, and each writes ``<name>.json``, ``<name>.md`` and ``<name>.png`` of
its own. The Markdown tables are printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import pathlib
import sys
import traceback
import urllib.parse
from collections.abc import Callable
from typing import Any

from bench import cluster, cost, detection, efficiency, fleet, gate, healing, plane, plots, quiet, report, waiting
from bench.common import Context
from bench.operator import OperatorSettings
from vigil.dev import sandbox as sandbox_mod

BENCHMARKS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "detection": detection.run,
    "healing": healing.run,
    "cost": cost.run,
    "gate": gate.run,
    "fleet": fleet.run,
    "quiet": quiet.run,
    "efficiency": efficiency.run,
    "plane": plane.run,
}
DEFAULT = ("detection", "healing", "cost", "gate")
# Written to <name>.json / <name>.md, so a run of one keeps the others' results.
SEPARATE = ("gate", "fleet", "quiet", "efficiency", "plane")
RESULTS = pathlib.Path(__file__).resolve().parent / "results"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "benchmarks", nargs="*", help=f"which to run: {', '.join(BENCHMARKS)} (default: {', '.join(DEFAULT)})"
    )
    parser.add_argument(
        "--runs", type=int, default=None, help="runs per scenario (default 5; 2 with --quick; efficiency: 1)"
    )
    parser.add_argument("--quick", action="store_true", help="2 runs per scenario and shorter cost windows")
    parser.add_argument("--eval-interval", type=float, default=5.0, help="the operator's --eval-interval (s)")
    parser.add_argument("--results", type=pathlib.Path, default=RESULTS, help="output directory")
    parser.add_argument(
        "--exclusive",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each benchmark, wait up to SECONDS for other `vigil run` processes on this machine to exit "
        "(they reconcile the benchmark's objects too); 0: don't wait, only flag the runs",
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=(),
        help=f"fleet: the N values, comma-separated (default {','.join(map(str, fleet.SIZES))}); plane: its N is the largest",
    )
    parser.add_argument(
        "--headroom",
        action="store_true",
        help="efficiency, quiet: vigil's deployments opt in to spec.headroom (scale-out ahead of a breach); quiet's "
        "scaleOut step then sizes from demand at 70%% utilisation (headroom needs a targetUtilization)",
    )
    parser.add_argument(
        "--burst-only",
        action="store_true",
        help="fleet: measure only the burst of creations (create -> Available and its stages) at each N",
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.benchmarks if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    args.runs_given = args.runs is not None
    if args.runs is None:
        args.runs = 2 if args.quick else 5
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes takes comma-separated whole numbers, not {text!r}") from None
    if not sizes or any(size < 0 for size in sizes):
        raise argparse.ArgumentTypeError(f"--sizes takes one or more numbers >= 0, not {text!r}")
    return sizes


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


def check_loopback(info: sandbox_mod.SandboxInfo) -> None:
    """The benchmark only talks to 127.0.0.1: refuse a sandbox that points anywhere else."""
    for url in (info.apiserver_url, info.prometheus_url, info.simulator_url):
        host = urllib.parse.urlsplit(url).hostname
        if host not in LOOPBACK:
            raise SystemExit(f"refusing to benchmark against {url}: not a loopback address")


def wait_alone(ctx: Context, timeout: float) -> None:
    """Wait (bounded) until no other vigil operator runs on this machine; never fails."""
    if timeout <= 0 or not cluster.other_operators(ctx.operator_pids):
        return
    cluster.log(f"waiting up to {timeout:g}s for other vigil operators on this machine to exit")
    try:
        waiting.until(lambda: not cluster.other_operators(ctx.operator_pids), timeout, "no other operator", 2.0)
    except waiting.Timeout:
        cluster.log("other vigil operators still run; their runs are flagged as contended")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    chosen = args.benchmarks or list(DEFAULT)
    results_dir: pathlib.Path = args.results
    results_dir.mkdir(parents=True, exist_ok=True)

    cluster.log("bringing the sandbox up (reusing what runs)")
    sandbox = sandbox_mod.Sandbox()
    info = sandbox.up(progress=lambda message: cluster.log(f"sandbox: {message}"))
    check_loopback(info)
    kube = cluster.Cluster(info.kubeconfig, info.simulator_url)
    ctx = Context(
        info=info,
        kube=kube,
        settings=OperatorSettings(eval_interval=args.eval_interval),
        runs=args.runs,
        quick=args.quick,
        results_dir=results_dir,
        fleet_sizes=args.sizes,
        burst_only=args.burst_only,
        sandbox=sandbox,
        runs_given=args.runs_given,
        headroom=args.headroom,
    )
    started = _now()
    outcomes: dict[str, Any] = {}
    failed = False
    with contextlib.closing(kube):
        for name in chosen:
            cluster.log(f"=== {name} ===")
            wait_alone(ctx, args.exclusive)
            try:
                outcomes[name] = BENCHMARKS[name](ctx)
            except KeyboardInterrupt:
                waiting.STOP.set()  # every thread's waits end; the cleanup runs in finally blocks
                raise
            except Exception as error:
                failed = True
                cluster.log(f"{name} failed: {error!r}\n{traceback.format_exc()}")
                outcomes[name] = {"benchmark": name, "error": repr(error)}
    finished = _now()
    groups = {name: {name: outcomes[name]} for name in SEPARATE if name in outcomes}
    shared = {name: outcome for name, outcome in outcomes.items() if name not in SEPARATE}
    if shared:
        groups["results"] = shared
    for stem, group in groups.items():
        results: dict[str, Any] = {
            "meta": {
                "started": started,
                "finished": finished,
                "runs": next((o["runCount"] for o in group.values() if "runCount" in o), args.runs),
                "quick": args.quick,
                "headroom": args.headroom,
                "benchmarks": list(group),
                "sandbox": json.loads(info.to_json()),
            },
            "benchmarks": group,
        }
        results["meta"]["plots"] = plots.write(group, results_dir)
        (results_dir / f"{stem}.json").write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
        markdown = report.render(results)
        (results_dir / f"{stem}.md").write_text(markdown)
        print(markdown)
    cluster.log(f"results in {results_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
