"""What every benchmark shares: the sandbox it runs on, its operator, its namespace, one run's guard."""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from bench import cluster, stats, waiting
from bench.operator import OperatorProcess, OperatorSettings
from vigil.api import slo as sloapi
from vigil.dev import sandbox as sandbox_mod

# The SLO of the detection and rollback benchmarks: 99.9 % over a 1 h period. Its default windows
# are the SRE workbook's scaled to 1 h and floored at the operator's --min-window.
AVAILABILITY: dict[str, Any] = {"name": "availability", "kind": "availability", "objective": 99.9, "period": "1h"}


@dataclasses.dataclass
class Context:
    """One benchmark invocation: the sandbox, a client, the operator options, how many runs."""

    info: sandbox_mod.SandboxInfo
    kube: cluster.Cluster
    settings: OperatorSettings
    runs: int
    quick: bool
    results_dir: pathlib.Path
    operator_pids: set[int] = dataclasses.field(default_factory=set)
    current: OperatorProcess | None = None
    fleet_sizes: tuple[int, ...] = ()
    """``bench fleet``'s N values (empty: its defaults)."""
    burst_only: bool = False
    """``bench fleet``: measure only each burst (create -> Available and its stages), not the steady state."""
    sandbox: sandbox_mod.Sandbox | None = None
    """The sandbox itself, for benchmarks that stop and start its parts (Prometheus)."""
    runs_given: bool = False
    """``--runs`` was given: the long benchmarks (efficiency) run that often instead of once."""
    headroom: bool = False
    """``--headroom``: vigil's deployments in ``bench efficiency`` and ``bench quiet`` opt in to
    ``spec.headroom`` (scale-out ahead of a breach on the rising demand)."""

    @property
    def scrape_seconds(self) -> float:
        return sloapi.duration_seconds(self.info.scrape_interval)

    @contextlib.contextmanager
    def namespace(self, kind: str, delete_timeout: float = 120.0) -> Iterator[str]:
        """A fresh ``bench-<kind>-<id>`` namespace, deleted (and waited for, up to ``delete_timeout``) afterwards."""
        name = cluster.new_namespace_name(kind)
        self.kube.create_namespace(name)
        cluster.log(f"namespace {name}")
        try:
            yield name
        finally:
            if not self.kube.delete_namespace(name, delete_timeout):
                cluster.log(f"namespace {name} is still terminating; it will go by itself")

    @contextlib.contextmanager
    def operator(
        self, namespaces: list[str], label: str, settings: OperatorSettings | None = None
    ) -> Iterator[OperatorProcess]:
        """vigil's operator, scoped to ``namespaces``, for the duration of the block."""
        proc = OperatorProcess(
            self.info.kubeconfig,
            self.info.prometheus_url,
            namespaces,
            self.results_dir / "logs" / f"operator-{label}.log",
            settings or self.settings,
            inference_url=self.info.inference_url,
        )
        proc.start()
        if proc.pid is not None:
            self.operator_pids.add(proc.pid)
        self.current = proc
        cluster.log(f"operator pid {proc.pid} watching {', '.join(namespaces)} (/metrics :{proc.metrics_port})")
        try:
            yield proc
        finally:
            self.current = None
            alive = proc.alive()
            proc.stop()
            if not alive:
                cluster.log(f"the operator had exited early; log tail:\n{proc.log_tail()}")

    def query_errors(self) -> float | None:
        """The running operator's failed Prometheus queries so far (None without one)."""
        text = self.current.metrics() if self.current is not None else None
        return None if text is None else stats.parse_operator_metrics(text).query_errors

    def environment(self) -> dict[str, Any]:
        others = cluster.other_operators(self.operator_pids)
        if others:
            cluster.log(f"warning: {len(others)} other vigil operator(s) run on this machine and may skew results")
        return {
            "scrapeInterval": self.info.scrape_interval,
            "scrapeIntervalSeconds": self.scrape_seconds,
            "evalIntervalSeconds": self.settings.eval_interval,
            "operator": dataclasses.asdict(self.settings),
            "prometheusUrl": self.info.prometheus_url,
            "simulatorUrl": self.info.simulator_url,
            "otherOperators": others,
        }


def attempt(ctx: Context, label: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One run; a timeout or error becomes a recorded failure instead of ending the benchmark.

    A run is marked ``contended`` when another vigil operator (not started by the benchmark) ran
    on the machine at its start or end, or when the run saw its deployment reconciled by more
    than one operator (``reconcilers`` > 1, from duplicate Events): such an operator judges and
    acts on the same objects, so the run measures the fastest of several operators, and their
    status writes (same field manager) can undo each other's.
    """
    others = set(cluster.other_operators(ctx.operator_pids))
    errors_before = ctx.query_errors()
    try:
        result = run()
    except waiting.Interrupted:
        raise
    except waiting.Timeout as error:
        cluster.log(f"{label}: {error}")
        result = {"error": str(error), "seen": error.seen}
    except Exception as error:
        cluster.log(f"{label}: {error!r}\n{traceback.format_exc()}")
        result = {"error": repr(error)}
    others |= set(cluster.other_operators(ctx.operator_pids))
    errors_after = ctx.query_errors()
    if errors_before is not None and errors_after is not None:
        # Prometheus unreachable during the run (other tests stop it): vigil held its verdicts.
        result["prometheusErrors"] = round(errors_after - errors_before)
    result["otherOperators"] = len(others)
    result["contended"] = bool(others) or int(result.get("reconcilers") or 0) > 1
    return result


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def relative(seen: dict[str, float], origin: float) -> dict[str, float]:
    """Milestone times as seconds after ``origin``, rounded to milliseconds."""
    return {name: round(at - origin, 3) for name, at in sorted(seen.items(), key=lambda item: item[1])}
