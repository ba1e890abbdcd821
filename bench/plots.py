"""PNG plots of the results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from bench import report

COLORS = {"vigil": "#2b7bba", "baseline": "#d9822b"}


def detection(result: Mapping[str, Any], path: pathlib.Path) -> None:
    scenarios = list(result["scenarios"])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for index, scenario in enumerate(scenarios):
        values = [r["detectionSeconds"] for r in result["scenarios"][scenario]["runs"] if "detectionSeconds" in r]
        if values:
            ax.boxplot([values], positions=[index], widths=0.45, showfliers=False)
            ax.scatter([index] * len(values), values, color=COLORS["vigil"], zorder=3, s=24, label=None)
    target = float(result["targetSeconds"])
    ax.axhline(target, color="#c0392b", linestyle="--", label=f"target {target:g} s (2 scrapes + 1 evaluation)")
    ax.set_xticks(range(len(scenarios)), [report.SCENARIO_TITLES.get(s, s) for s in scenarios])
    ax.set_ylabel("fault onset → Breached (s)")
    values = [
        r["detectionSeconds"] for s in scenarios for r in result["scenarios"][s]["runs"] if "detectionSeconds" in r
    ]
    ax.set_ylim(bottom=0, top=max([*values, target]) * 1.3)
    ax.set_title(
        f"Detection time (scrape {result['scrapeIntervalSeconds']:g} s, evaluation {result['evalIntervalSeconds']:g} s)"
    )
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _bars(ax: Any, data: Mapping[str, Any], title: str) -> None:
    keys = list(data["metrics"])
    width = 0.38
    for offset, policy in ((-width / 2, "vigil"), (width / 2, "baseline")):
        medians, lows, highs = [], [], []
        for key in keys:
            summary = data["summaries"][policy].get(key)
            median = summary["median"] if summary else 0.0
            medians.append(median)
            lows.append(median - summary["min"] if summary else 0.0)
            highs.append(summary["max"] - median if summary else 0.0)
        positions = [i + offset for i in range(len(keys))]
        ax.bar(positions, medians, width, yerr=[lows, highs], capsize=4, color=COLORS[policy], label=policy)
    ax.set_xticks(range(len(keys)), [data["metrics"][k].replace(" -> ", " →\n") for k in keys], fontsize=8)
    ax.set_ylabel("seconds (median, min-max)")
    ax.set_title(title)
    ax.legend()


def healing(result: Mapping[str, Any], path: pathlib.Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.5))
    _bars(axes[0], result["rollback"], "Bad rollout → rollback")
    _bars(axes[1], result["scaleOut"], "x3 surge → scale-out")
    labels, ratios = [], []
    for scenario, short in (("rollback", "rollback"), ("scaleOut", "scale-out")):
        for key, label in result[scenario]["metrics"].items():
            ratio = result[scenario]["ratios"].get(key)
            labels.append(f"{short}:\n{label.split(' -> ')[1]}")
            ratios.append(ratio if ratio is not None else 0.0)
    bars = axes[2].bar(range(len(ratios)), ratios, color=COLORS["vigil"])
    for bar, ratio in zip(bars, ratios, strict=True):
        axes[2].annotate(
            f"{ratio:.2f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom"
        )
    axes[2].axhline(1.0, color="#555555", linestyle="--", linewidth=1)
    axes[2].set_xticks(range(len(labels)), labels, fontsize=8)
    axes[2].set_ylabel("vigil / baseline (median), lower is better")
    axes[2].set_title("Ratios")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cost(result: Mapping[str, Any], path: pathlib.Path) -> None:
    steps = result["steps"]
    sizes = [s["n"] for s in steps]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    series = (
        ("RSS (MiB)", [(s["rssBytes"] or 0) / report.MIB for s in steps]),
        ("queries per cycle", [s["queriesPerCycle"] or 0 for s in steps]),
        ("fleet loop (ms)", [(s["meanLoopSeconds"] or 0) * 1000 for s in steps]),
    )
    for ax, (label, values) in zip(axes, series, strict=True):
        ax.plot(sizes, values, marker="o", color=COLORS["vigil"])
        ax.set_xlabel("ModelDeployments (N)")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0, top=max([*values, 1.0]) * 1.25)
        ax.set_xticks(sizes)
        ax.grid(alpha=0.3)
    fig.suptitle("Operator cost as the fleet grows (N = 0 is the baseline)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fleet_panel(
    ax: Any, sizes: list[int], series: dict[str, list[float | None]], label: str, target: float | None
) -> None:
    for (name, values), color in zip(series.items(), ("#2b7bba", "#d9822b", "#5a9e4b", "#8e5ea2"), strict=False):
        points = [(n, v) for n, v in zip(sizes, values, strict=True) if v is not None]
        if points:
            ax.plot([n for n, _ in points], [v for _, v in points], marker="o", color=color, label=name)
    if target is not None:
        ax.axhline(target, color="#c0392b", linestyle="--", label=f"target at N=1,000 ({target:g})")
    ax.set_xlabel("live ModelDeployments (N)")
    ax.set_ylabel(label)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def fleet(result: Mapping[str, Any], path: pathlib.Path) -> None:
    steps = [s for s in result["steps"] if "error" not in s]
    sizes = [s["n"] for s in steps]
    targets = result["targets"]

    def get(key: str, scale: float = 1.0) -> list[float | None]:
        return [None if s.get(key) is None else float(s[key]) * scale for s in steps]

    def process(name: str) -> list[float | None]:
        found = [((s.get("running") or {}).get("usage") or {}).get("cores", {}).get(name) for s in steps]
        return [None if v is None else v * 100 for v in found]

    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    _fleet_panel(
        axes[0][0], sizes, {"operator RSS": get("rssBytes", 1 / report.MIB)}, "MiB", targets["rssBytes"] / report.MIB
    )
    _fleet_panel(axes[0][1], sizes, {"operator CPU": get("cpuCores", 100)}, "% of one core", targets["cpuCores"] * 100)
    _fleet_panel(
        axes[0][2],
        sizes,
        {"per deployment per minute": get("requestsPerDeploymentPerMinute")},
        "API requests (running - paused)",
        targets["requestsPerDeploymentPerMinute"],
    )
    _fleet_panel(
        axes[1][0],
        sizes,
        {
            "p99": get("createToAvailableP99Seconds"),
            "p50": [(s.get("createToAvailable") or {}).get("median") for s in steps],
        },
        "create → Available (s)",
        targets["createToAvailableP99Seconds"],
    )
    _fleet_panel(
        axes[1][1],
        sizes,
        {"detection": get("detectionSeconds"), "first action": get("firstActionSeconds")},
        "seconds after the first bad request",
        targets["firstActionSeconds"],
    )
    _fleet_panel(
        axes[1][2],
        sizes,
        {
            "kube-apiserver": process("kube-apiserver"),
            "prometheus": process("prometheus"),
            "simulator": process("simulator"),
            "etcd": process("etcd"),
        },
        "sandbox CPU (% of one core)",
        None,
    )
    fig.suptitle("One operator replica as the live fleet grows (N = 0 is the baseline; 2 shared cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def gate(result: Mapping[str, Any], path: pathlib.Path) -> None:
    runs = [r for r in result["runs"] if "error" not in r]
    fig, (wrong, delay) = plt.subplots(1, 2, figsize=(10, 4))
    labels = ["with the gate", "without"]
    for ax, key, title in (
        (wrong, "wrongAnswers", "wrong answers served per bad export"),
        (delay, "readyToTrafficSeconds", "pods Ready -> traffic moved (s)"),
    ):
        series = [[float(r[key][name] or 0) for r in runs] for name in ("gated", "ungated")]
        medians = [sorted(s)[len(s) // 2] if s else 0.0 for s in series]
        ax.bar(labels, medians, color=[COLORS["vigil"], COLORS["baseline"]])
        for x, values in enumerate(series):
            ax.scatter([x] * len(values), values, color="black", s=12, zorder=3)
        ax.set_title(title)
        ax.set_ylim(bottom=0, top=max([*medians, *(v for s in series for v in s), 1.0]) * 1.25)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Golden-request gate: bad export blocked, cost of a good rollout (bars: median; dots: runs)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


STATE_COLORS = {"Met": "#3a9d5d", "Warning": "#e0a526", "Breached": "#c0392b"}
POLICY_COLORS = {"vigil": "#2b7bba", "static": "#7f7f7f", "hpa": "#d9822b"}


def _states(ax: Any, timeline: list[list[Any]], column: int, y: float, minutes: bool = True) -> None:
    """Coloured marks along ``y`` for each sample's verdict (column ``column`` of the timeline)."""
    for state, color in STATE_COLORS.items():
        xs = [row[0] / 60 if minutes else row[0] for row in timeline if row[column] == state]
        ax.scatter(xs, [y] * len(xs), color=color, s=6, marker="|", label=state)


def quiet(result: Mapping[str, Any], path: pathlib.Path) -> None:
    run = result["run"]
    deployments = run.get("deployments", {})
    fig, axes = plt.subplots(len(deployments), 1, figsize=(11, 2.6 * max(len(deployments), 1)), squeeze=False)
    outage_at = run.get("outageStartsAt", 0.0) / 60
    outage_end = outage_at + run.get("outageSeconds", 0.0) / 60
    for ax, (name, data) in zip(axes[:, 0], deployments.items(), strict=True):
        timeline = data["timeline"]
        ax.step([row[0] / 60 for row in timeline], [row[1] for row in timeline], where="post", color="#2b7bba")
        ax.set_ylabel("pods")
        ax.set_ylim(0, max(row[1] for row in timeline) + 2 if timeline else 4)
        for column, slo in ((2, "availability"), (3, "queue")):
            _states(ax, timeline, column, ax.get_ylim()[1] - (0.4 if column == 2 else 0.9))
            ax.annotate(slo, (0, ax.get_ylim()[1] - (0.4 if column == 2 else 0.9)), fontsize=7, va="center")
        ax.axvspan(outage_at, outage_end, color="#bbbbbb", alpha=0.4, label="Prometheus stopped")
        ax.set_title(
            f"{name}: {data['incidentCount']} incident(s), {data['actions']} action(s) "
            f"({data['trace']}, x{result['plan']['speedup']:g})",
            fontsize=9,
        )
    axes[-1, 0].set_xlabel("minutes since the traffic started")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    fig.legend(unique.values(), unique.keys(), loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def efficiency(result: Mapping[str, Any], path: pathlib.Path) -> None:
    """The first run that completed: its replicas over time, GPU-minutes and attainment per policy."""
    runs = report.efficiency_runs(result)
    done = [(number, r) for number, r in enumerate(runs, 1) if "error" not in r]
    number, shown = done[0] if done else (1, {})
    scenarios = shown.get("scenarios", {})
    which = f", run {number} of {len(runs)}" if len(runs) > 1 else ""
    fig, axes = plt.subplots(len(scenarios), 2, figsize=(13, 3.4 * max(len(scenarios), 1)), squeeze=False)
    for row, (scenario, data) in enumerate(scenarios.items()):
        ax = axes[row, 0]
        for policy, numbers in data["policies"].items():
            timeline = numbers["timeline"]
            ax.step(
                [r[0] / 60 for r in timeline],
                [r[1] for r in timeline],
                where="post",
                color=POLICY_COLORS.get(policy),
                label=f"{policy} pods",
            )
        offered = data["offeredPerMinute"]
        twin = ax.twinx()
        twin.plot(
            [i + 0.5 for i in range(len(offered))], offered, color="#555555", linestyle=":", label="offered req/s"
        )
        twin.set_ylabel("offered req/s")
        ax.set_xlabel("minutes")
        ax.set_ylabel("pods (GPUs)")
        ax.set_title(f"{scenario}: replicas over time (x{data['speedup']:g}{which})", fontsize=9)
        ax.legend(loc="upper left", fontsize=7)
        bars = axes[row, 1]
        policies = list(data["policies"])
        gpu = [data["policies"][p]["gpuMinutes"] for p in policies]
        attainment = [(data["policies"][p]["attainment"] or 0.0) * 100 for p in policies]
        positions = range(len(policies))
        bars.bar([i - 0.2 for i in positions], gpu, 0.4, color=[POLICY_COLORS.get(p) for p in policies])
        bars.set_ylabel("GPU-minutes (left bars)")
        right = bars.twinx()
        right.bar([i + 0.2 for i in positions], attainment, 0.4, color="#3a9d5d", alpha=0.6)
        right.set_ylim(0, 105)
        right.set_ylabel("SLO attainment % (right bars)")
        bars.set_xticks(list(positions), policies)
        bars.set_title(f"{scenario}: GPU-minutes and SLO attainment", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plane(result: Mapping[str, Any], path: pathlib.Path) -> None:
    """CPU seconds of each control-plane process per raw burst (stacked), with the burst's wall time."""
    bursts = result["bursts"]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    names = [b["scenario"] for b in bursts]
    bottoms = [0.0] * len(bursts)
    colors = ("#2b7bba", "#d9822b", "#5a9e4b", "#8e5ea2", "#c0392b")
    for component, color in zip(report.PLANE_CPU, colors, strict=True):
        values = [float(b["cpuSeconds"].get(component) or 0.0) for b in bursts]
        ax.bar(names, values, bottom=bottoms, color=color, label=component)
        bottoms = [bottom + value for bottom, value in zip(bottoms, values, strict=True)]
    ax.scatter(names, [b["wallSeconds"] for b in bursts], color="black", marker="D", zorder=3, label="wall time (s)")
    ax.set_ylabel("CPU seconds (2 cores: wall >= CPU / 2)")
    ax.set_title(f"Control plane alone: a burst of {result['n']} (bench plane)")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PLOTS = {
    "detection": detection,
    "healing": healing,
    "cost": cost,
    "gate": gate,
    "fleet": fleet,
    "quiet": quiet,
    "efficiency": efficiency,
    "plane": plane,
}


def write(benchmarks: Mapping[str, Any], directory: pathlib.Path) -> list[str]:
    """One PNG per benchmark that produced results; the file names written."""
    written = []
    for name, result in benchmarks.items():
        if "error" in result or name not in PLOTS:
            continue
        path = directory / f"{name}.png"
        PLOTS[name](result, path)
        written.append(path.name)
    return written
