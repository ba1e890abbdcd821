"""Pure rendering of the benchmark results (the JSON written to ``bench/results``) as Markdown."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

DASH = "n/a"
SCENARIO_TITLES = {"steady": "steady-state fault (errorRatio 0.3)", "rollout": "bad rollout (version 2 faulted)"}
MIB = 2**20


def seconds(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{value:.{digits}f} s"


def number(value: float | None, digits: int = 2) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def mebibytes(value: float | None) -> str:
    return DASH if value is None else f"{value / MIB:.1f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table; pipes inside cells are escaped."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


def _spread(summary: Mapping[str, Any] | None) -> str:
    if not summary:
        return DASH
    return f"{seconds(summary['median'])} ({number(summary['min'], 1)}-{number(summary['max'], 1)})"


def detection_section(result: Mapping[str, Any]) -> str:
    target = float(result["targetSeconds"])
    rows = []
    for scenario, data in result["scenarios"].items():
        summary = data.get("summary") or {}
        condition = data.get("conditionSummary") or {}
        count = len(data["runs"])
        ok = count - int(data["failedRuns"])
        rows.append(
            [
                SCENARIO_TITLES.get(scenario, scenario),
                f"{ok}/{count}",
                seconds(summary.get("min")),
                seconds(summary.get("median")),
                seconds(summary.get("p90")),
                seconds(summary.get("max")),
                seconds(condition.get("median")),
                seconds(target),
                "PASS" if data["pass"] else "FAIL",
            ]
        )
    intro = (
        f"Fault onset → `status.slos[0].state == Breached` (polled every {result['pollSeconds']:g} s). "
        f"Scrape interval {seconds(result['scrapeIntervalSeconds'], 0)}, evaluation interval "
        f"{seconds(result['evalIntervalSeconds'], 0)}; target ≤ 2 scrapes + 1 evaluation = {seconds(target, 0)} "
        "(PASS when every run meets it). Rollout onset: `status.currentRevision` switches to the new revision."
    )
    header = ["scenario", "runs ok", "min", "median", "p90", "max", "SLOMet condition (median)", "target", "result"]
    every = [run for data in result["scenarios"].values() for run in data["runs"]]
    return f"## 1. Detection time\n\n{intro}\n\n{table(header, rows)}\n{disturbances(every)}"


def disturbances(runs: Sequence[Mapping[str, Any]]) -> str:
    """A note on runs the shared sandbox disturbed: other operators, Prometheus outages."""
    contended = sum(1 for run in runs if run.get("contended"))
    outages = sum(1 for run in runs if run.get("prometheusErrors"))
    notes = []
    if contended:
        notes.append(
            f"{contended} of {len(runs)} runs were contended: another vigil operator ran on this machine, or the "
            "run's deployment was reconciled by more than one operator (duplicate Events). Such runs measure the "
            "fastest of several operators, whose status writes can also undo each other's (see the warning below)."
        )
    if outages:
        notes.append(
            f"{outages} of {len(runs)} runs saw Prometheus queries fail (the shared Prometheus was stopped by "
            "something else); vigil holds its verdicts while it cannot query, which delays it."
        )
    return "".join(f"\n{note}\n" for note in notes)


def _healing_rows(title: str, data: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for key, label in data["metrics"].items():
        vigil = data["summaries"]["vigil"].get(key)
        base = data["summaries"]["baseline"].get(key)
        ratio = data["ratios"].get(key)
        rows.append([title, label, _spread(vigil), _spread(base), number(ratio)])
    return rows


def healing_section(result: Mapping[str, Any]) -> str:
    policy = result["baselinePolicy"]
    rows = _healing_rows("bad rollout → rollback", result["rollback"]) + _healing_rows(
        "x3 load surge → scale-out", result["scaleOut"]
    )
    failed = []
    for scenario in ("rollback", "scaleOut"):
        for who, count in result[scenario]["failedRuns"].items():
            if count:
                failed.append(f"{scenario} {who}: {count} failed run(s)")
    intro = (
        "vigil's runbooks vs a Flagger-like baseline measured side by side in the same run: "
        f"fixed {policy['intervalSeconds']:g} s analysis interval, {policy['window']} window, action on the "
        f"first failed check (request-success-rate ≥ {policy['successRateThreshold']:g} %; request duration "
        f"= average queue time ≤ {policy['queueTimeThresholdMs']} ms, the queue-time SLO's threshold). "
        "Median (min-max); ratio = vigil / baseline of the medians, lower is better."
    )
    header = ["scenario", "measure", "vigil", "baseline", "vigil / baseline"]
    note = ("\n\nFailed runs: " + "; ".join(failed) + ".") if failed else ""
    runs = [run for s in ("rollback", "scaleOut") for who in result[s]["runs"] for run in result[s]["runs"][who]]
    return f"## 2. Healing vs a Flagger-like baseline\n\n{intro}\n\n{table(header, rows)}{note}\n{disturbances(runs)}"


def cost_section(result: Mapping[str, Any]) -> str:
    rows = [
        [
            str(step["n"]),
            mebibytes(step.get("rssBytes")),
            mebibytes(step.get("rssOverBaselineBytes")),
            number(step["rssPerAddedDeploymentBytes"] / 1024 if step.get("rssPerAddedDeploymentBytes") else None, 1),
            number((step.get("meanLoopSeconds") or 0) * 1000 if step.get("meanLoopSeconds") is not None else None, 1),
            number(step.get("queriesPerCycle"), 1),
            str(step.get("cycles")),
        ]
        for step in result["steps"]
    ]
    verdict = "yes" if result["queriesConstant"] else "NO"
    intro = (
        "One operator, started with no ModelDeployment (N = 0, the baseline), then the fleet grown to each N "
        "(replicas 0, two SLOs each). RSS from /proc; loop duration and queries from the operator's own /metrics."
    )
    header = [
        "N ModelDeployments",
        "RSS (MiB)",
        "RSS over N=0 (MiB)",
        "RSS per added MD (KiB)",
        "fleet loop (ms)",
        "queries / cycle",
        "cycles",
    ]
    return (
        f"## 3. Operator cost\n\n{intro}\n\n{table(header, rows)}\n\n"
        f"Queries per cycle constant as N grows (N > 0): **{verdict}**.\n"
    )


def percent(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{value * 100:.{digits}f}"


FLEET_TARGET_TITLES: dict[str, tuple[str, Callable[[float], str], Callable[[float], str]]] = {
    "rssBytes": ("operator RSS", lambda v: f"{mebibytes(v)} MiB", lambda v: f"≤ {mebibytes(v)} MiB"),
    "cpuCores": ("operator CPU, steady", lambda v: f"{percent(v)} % of a core", lambda v: f"≤ {percent(v, 0)} %"),
    "requestsPerDeploymentPerMinute": (
        "API requests per deployment per minute, steady",
        lambda v: number(v, 3),
        lambda v: f"≤ {number(v, 0)}",
    ),
    "createToAvailableP99Seconds": ("create → Available p99", seconds, lambda v: f"≤ {seconds(v, 0)}"),
    "detectionSeconds": ("detection (first bad request → Breached)", seconds, lambda v: f"≤ {seconds(v, 0)}"),
    "firstActionSeconds": ("first action (→ status.rollback)", seconds, lambda v: f"≤ {seconds(v, 0)}"),
}
SANDBOX_PROCESSES = (
    "kube-apiserver",
    "etcd",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok-controller",
    "prometheus",
    "simulator",
)


def _verdict(value: bool | None) -> str:
    return DASH if value is None else ("PASS" if value else "FAIL")


def fleet_section(result: Mapping[str, Any]) -> str:
    steps = [s for s in result["steps"] if "error" not in s]
    failed = [s for s in result["steps"] if "error" in s]
    rows = []
    for step in steps:
        available = step.get("createToAvailable") or {}
        usage = (step.get("running") or {}).get("usage") or {}
        rows.append(
            [
                str(step["n"]),
                mebibytes(step.get("rssBytes")),
                percent(step.get("cpuCores")),
                number(step.get("requestsPerSecond"), 2),
                number(step.get("requestsPerDeploymentPerMinute"), 3),
                f"{seconds(available.get('median'))} / {'≥ ' if step.get('createToAvailableCensored') else ''}"
                f"{seconds(step.get('createToAvailableP99Seconds'))}"
                if available
                else DASH,
                seconds(step.get("detectionSeconds")),
                seconds(step.get("firstActionSeconds")),
                number(step.get("queriesPerCycle"), 1),
                number(
                    (step.get("meanLoopSeconds") or 0) * 1000 if step.get("meanLoopSeconds") is not None else None, 0
                ),
                f"{percent(usage.get('machineBusy'), 0)} % / {number(usage.get('loadAverage1m'), 1)}",
            ]
        )
    header = [
        "N",
        "RSS (MiB)",
        "CPU (% core)",
        "API req/s",
        "req / md / min",
        "create→Available p50 / p99",
        "detection",
        "first action",
        "queries / cycle",
        "fleet loop (ms)",
        "machine busy / load",
    ]
    window = result["windowSeconds"]
    intro = (
        f"A fresh operator per N (resync {result['resyncSeconds']:g} s, the chart's default), N live ModelDeployments "
        "(1 CPU-only replica on kwok CPU nodes, availability SLO each, 2 req/s on a 10 % sample, 50 req/s on the "
        f"faulty one), created in one burst. Steady state measured over {window:g} s with the operator running, "
        f"then {window:g} s with it paused (SIGSTOP): API requests are the API server's `apiserver_request_total` "
        "rate running minus paused; RSS the median of 1 s samples; CPU utime+stime over wall time. Detection and "
        "first action: the faulty deployment's version 2 (30 % errors) rolled out, from its first bad request "
        "(`currentRevision` switch). Machine: 2 cores shared with other work; busy = all cores over the running "
        "window."
    )
    parts = [f"## 4. Fleet: one operator replica under N live deployments\n\n{intro}\n\n{table(header, rows)}\n"]

    proc_rows = []
    for step in steps:
        usage = (step.get("running") or {}).get("usage") or {}
        cores, rss = usage.get("cores") or {}, usage.get("rssBytes") or {}
        cells = [f"{percent(cores.get(p))} % / {mebibytes(rss.get(p))}" for p in SANDBOX_PROCESSES]
        series = step.get("prometheusHeadSeries")
        proc_rows.append([str(step["n"]), *cells, DASH if series is None else f"{series:.0f}"])
    parts.append(
        "What the sandbox itself costs at each N (CPU % of one core / RSS MiB, over the running window):\n\n"
        + table(["N", *SANDBOX_PROCESSES, "Prometheus head series"], proc_rows)
        + "\n"
    )

    staged = [step for step in steps if step.get("stages")]
    if staged:
        stage_rows = [
            [
                str(step["n"]),
                *(
                    f"{seconds(row['p50'])} / {seconds(row['p99'])} / {seconds(row['makespan'])}"
                    for row in step["stages"]
                ),
            ]
            for step in staged
        ]
        titles = [row["stage"] for row in staged[0]["stages"]]
        parts.append(
            "Where a burst's create → Available time goes, stage by stage (p50 / p99 of each deployment's time in "
            "the stage / when the last one finished it, from the burst's start; watched from the benchmark):\n\n"
            + table(["N", *titles], stage_rows)
            + "\n"
        )

    verdicts = result.get("targetVerdicts")
    target_step = next((s for s in steps if s["n"] == result["targetN"]), None)
    if verdicts and target_step:
        target_rows = []
        for key, limit in result["targets"].items():
            title, show, show_limit = FLEET_TARGET_TITLES[key]
            value = target_step.get(key)
            target_rows.append(
                [title, DASH if value is None else show(value), show_limit(limit), _verdict(verdicts[key])]
            )
        parts.append(
            f"Targets at N = {result['targetN']}:\n\n"
            + table(["measure", "measured", "target", "result"], target_rows)
            + "\n"
        )
    largest = max(steps, key=lambda s: s["n"], default=None)
    if largest and largest.get("requestsByKind"):
        kinds = ", ".join(f"{kind} {rate:.2f}/s" for kind, rate in largest["requestsByKind"].items())
        parts.append(f"The operator's requests at N = {largest['n']} by verb/resource: {kinds}.\n")
    for step in steps:
        if step.get("detectionError"):
            parts.append(f"N = {step['n']}: detection not measured: {step['detectionError']}\n")
    if failed:
        parts.append("Failed steps: " + "; ".join(f"N = {s['n']}: {s['error']}" for s in failed) + "\n")
    return "\n".join(parts)


def gate_section(result: Mapping[str, Any]) -> str:
    summary = result["summary"]
    settings = result["settings"]

    def median(key: str, digits: int = 0) -> str:
        found = summary.get(key)
        return DASH if not found else number(found["median"], digits)

    rows = [
        [
            "wrong answers served in the bad-export window (median)",
            median("wrongAnswersGated"),
            median("wrongAnswersUngated"),
        ],
        [
            "new pods Ready -> Service moved (s, median)",
            median("readyToTrafficGated", 2),
            median("readyToTrafficUngated", 2),
        ],
    ]
    runs = [r for r in result["runs"] if "error" not in r]
    intro = (
        f"Two deployments under the same operator and load ({settings['rate']:g} req/s each), the same small CNN "
        f"(TorchScript, served by the simulator on CPU); one with spec.validation ({settings['goldenRequests']} golden "
        f"requests per pod, {settings['replicas']} pods), one without, moved to a bad export (weights perturbed by "
        f"{settings['badExportNoise']:g} std) at the same moment. {len(runs)} of {len(result['runs'])} runs completed."
    )
    return (
        f"## 5. Golden-request gate\n\n{intro}\n\n{table(['', 'with the gate', 'without (baseline)'], rows)}\n\n"
        f"Time the gate adds to a good rollout: **{_spread(summary.get('gateAddsSeconds'))}** "
        f"(the golden requests themselves, as the operator measured them: {_spread(summary.get('goldenRequestsSeconds'))}; "
        "target <= 5 s).\n"
    )


def _per_slo(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{slo} {count}" for slo, count in counts.items())


def quiet_section(result: Mapping[str, Any]) -> str:
    run = result["run"]
    if "error" in run:
        return f"## 6. False alarms on healthy bursty traffic\n\nFAILED: {run['error']}\n"
    rows = []
    for name, data in run["deployments"].items():
        rows.append(
            [
                name,
                data["trace"],
                f"{data['meanRate']:g} / {data['peak10sRate']:g}",
                f"{data['capacityPerReplica']:g} x {result['sizing']['replicas']}",
                f"{data['perfectServerMaxQueueMs']:g} ms",
                _per_slo(data["quiet"]["warnings"]),
                _per_slo(data["quiet"]["breaches"]),
                str(data["incidentCount"]),
                str(data["actions"]),
                str(data["actionsFromOutage"]),
            ]
        )
    plan, totals = result["plan"], result["totals"]
    threshold = next(s for s in result["slos"] if s["name"] == "queue")["thresholdMs"]
    intro = (
        f"Two deployments, one hour of traffic each replayed at x{plan['speedup']:g} "
        f"({run['quietSeconds'] / 60:.1f} min), then Prometheus stopped for {run['outageSeconds'] / 60:.1f} min "
        f"with the traffic on, then {plan['after_seconds'] / 60:.0f} min watched after it came back. Capacity: "
        f"{result['sizing']['replicas']} replicas at most {result['sizing']['peakUtilisation']:.0%} busy at the "
        f'highest 10 s rate; the "perfect server" column is the highest 30 s average queue time of the same '
        f"traffic played offline through the simulator's queue (SLO threshold {threshold} ms). Warnings and "
        "breaches count entries into the state (vigil's verdicts sampled every evaluation interval) before the "
        "outage; actions are runbook steps that ran."
        + (
            " Both deployments opt in to spec.headroom (`--headroom`): scale-out ahead of a breach when the rising "
            "demand needs more replicas than run at the runbook's 70 % targetUtilization."
            if result.get("headroom")
            else ""
        )
    )
    header = [
        "traffic",
        "trace",
        "req/s mean / peak 10 s",
        "capacity (req/s x replicas)",
        "perfect server",
        "warnings",
        "breaches",
        "incidents",
        "actions",
        "actions from the outage on",
    ]
    verdict = (
        f"Target zero incidents and zero actions: **{'PASS' if result['pass'] else 'FAIL'}** "
        f"({totals['incidents']} incident(s), {totals['actions']} action(s)). Prometheus outage, zero destructive "
        f"actions: **{'PASS' if result['outagePass'] else 'FAIL'}** ({totals['actionsFromOutage']})."
    )
    return f"## 6. False alarms on healthy bursty traffic\n\n{intro}\n\n{table(header, rows)}\n\n{verdict}\n"


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def efficiency_runs(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The runs of a ``bench efficiency`` result (one ``run`` in results written before ``--runs``)."""
    return list(result["runs"]) if "runs" in result else [result["run"]]


def _per_run(values: Sequence[str]) -> str:
    return " / ".join(values) if values else DASH


def efficiency_section(result: Mapping[str, Any]) -> str:
    runs = efficiency_runs(result)
    done = [r for r in runs if "error" not in r]
    failed = [f"run {i}: {r['error']}" for i, r in enumerate(runs, 1) if "error" in r]
    if not done:
        return "## 7. SLO attainment per GPU\n\nFAILED: " + "; ".join(failed) + "\n"
    first = done[0]["scenarios"]
    rows = []
    verdicts = []
    for scenario, data in first.items():
        across = [r["scenarios"][scenario] for r in done if scenario in r["scenarios"]]
        for policy in data["policies"]:
            every = [d["policies"][policy] for d in across]
            lows = [n["replicas"][0] for n in every if n["replicas"]]
            highs = [n["replicas"][1] for n in every if n["replicas"]]
            rows.append(
                [
                    scenario,
                    policy,
                    _per_run([DASH if n["attainment"] is None else f"{n['attainment']:.1%}" for n in every]),
                    _per_run([f"{n['gpuMinutes']:.1f}" for n in every]),
                    _per_run([str(n["violatingMinutes"]) for n in every]) + f" of {every[0]['measuredMinutes']}",
                    f"{min(lows)}-{max(highs)}" if lows else DASH,
                    _per_run([str(n["incidents"]) for n in every]),
                ]
            )
        verdicts.append(_efficiency_verdict(result, scenario, across))
        verdicts += _violations(scenario, across, float(result["slo"]["thresholdMs"]))
    count = len(runs)
    intro = (
        f"Three deployments per scenario under the same traffic, same replicas ({result['capacityPerReplica']:g} "
        f"req/s each, {result['baseLatencyMs']:g} ms per request), side by side in one run: vigil (start replicas, "
        f"the ready-made {result.get('runbook', 'scaleOut runbook')} as shipped, maxReplicas = peak, the default "
        "give-back), static peak provisioning, and an HPA-like autoscaler "
        f"(GPU utilisation target {result['hpaTarget']:.0%}, 15 s sync). Both scale-down stabilisations (the "
        "HPA's 300 s, the give-back's 5 min) are five minutes of the trace: divided by the speed-up. "
        f"Peak and start are sized at {result['sizingUtilisation']:.0%} utilisation. Attainment: share of "
        "evaluation intervals whose queue-time verdict is Met; violating minutes: minutes whose average queue "
        f"time exceeds {result['slo']['thresholdMs']} ms (Prometheus). "
        + (
            "vigil's deployments opt in to spec.headroom (`--headroom`): scale-out ahead of a breach when the "
            "rising demand needs more replicas than run at the runbook's targetUtilization. "
            if result.get("headroom")
            else ""
        )
        + (
            f"{count} runs one after the other, each in a namespace of its own: every cell lists the runs in order."
            if count > 1
            else "One run."
        )
    )
    header = ["scenario", "policy", "SLO attainment", "GPU-minutes", "violating minutes", "pods", "incidents"]
    note = ("\n\nFailed runs: " + "; ".join(failed) + ".") if failed else ""
    body = f"## 7. SLO attainment per GPU\n\n{intro}\n\n{table(header, rows)}{note}\n\n" + "\n".join(verdicts)
    return body + "\n" + disturbances(done)


def _efficiency_verdict(result: Mapping[str, Any], scenario: str, across: Sequence[Mapping[str, Any]]) -> str:
    data = across[0]
    n = len(across)
    verdicts = [d["verdict"] for d in across]
    ratios = _per_run([DASH if v["gpuRatioToStatic"] is None else f"{v['gpuRatioToStatic']:.3f}" for v in verdicts])
    attainments = _per_run(
        [
            DASH if d["policies"]["vigil"]["attainment"] is None else f"{d['policies']['vigil']['attainment']:.1%}"
            for d in across
        ]
    )
    ours = _per_run([str(d["policies"]["vigil"]["violatingMinutes"]) for d in across])
    theirs = _per_run([str(d["policies"]["hpa"]["violatingMinutes"]) for d in across])
    stabilisation = f", stabilisation {data['stabilisationSeconds']} s" if "stabilisationSeconds" in data else ""
    counted = (lambda key: f"{sum(1 for v in verdicts if v[key])} of {n}") if n > 1 else None

    def met(key: str) -> str:
        return f"**{counted(key)}**" if counted is not None else f"**{_yes(verdicts[0][key])}**"

    return (
        f"- {scenario} ({data['traffic']}; x{data['speedup']:g}, {data['wallMinutes']:g} min{stabilisation}): "
        f"attainment {attainments} >= {result['targets']['attainment']:.0%}: {met('attainmentMet')}; "
        f"GPU-minutes {ratios} x static (target <= {result['targets']['gpuRatioToStatic']:g}): {met('gpuMet')}; "
        f"violating minutes {ours} vs the HPA-like baseline's {theirs}, fewer: {met('fewerViolatingMinutesThanHpa')}"
    )


def _violations(scenario: str, across: Sequence[Mapping[str, Any]], threshold_ms: float) -> list[str]:
    """Where vigil's violating minutes were: the minute's queue time (the HPA-like baseline's beside
    it), vigil's scale-out intents in or just before it, and when the serving pods grew."""
    lines = []
    for number, data in enumerate(across, 1):
        ours = data["policies"]["vigil"]
        theirs = data["policies"]["hpa"].get("queueMsPerMinute") or []
        intents = [row["t"] for row in ours.get("decisions", []) if row["type"] == "Intent"]
        serving = ours.get("servingPods") or []
        for index, value in enumerate(ours.get("queueMsPerMinute") or []):
            if value <= threshold_ms:
                continue
            begins, ends = 60.0 * index, 60.0 * (index + 1)  # the points are the minutes after the first
            acted = ", ".join(f"{t:g} s" for t in intents if begins - 30.0 <= t <= ends) or "none"
            grew = [
                f"{before:g} -> {after:g} at {t:g} s"
                for (_, before), (t, after) in itertools.pairwise(serving)
                if after > before and begins - 30.0 <= t <= ends + 30.0
            ]
            hpa = f" (HPA-like: {theirs[index]:g} ms)" if index < len(theirs) else ""
            lines.append(
                f"  - {scenario}, run {number}: vigil's violating minute {begins:g}-{ends:g} s averaged "
                f"{value:g} ms{hpa}; scale-out intent at {acted}; pods serving {', '.join(grew) or 'unchanged'}"
            )
    return lines


PLANE_STAGES = (
    "Deployment created",
    "Service created",
    "pod created",
    "pod bound",
    "pod Ready",
    "pod Ready and Service",
)
PLANE_CPU = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok-controller")


def plane_section(result: Mapping[str, Any]) -> str:
    """``bench plane``: each raw burst's stages, CPU per component and the components' own numbers."""
    bursts = result["bursts"]
    lines = [
        f"## Control plane alone (bench plane, N = {result['n']})",
        "",
        f"Raw bursts without vigil: {result['clients']} clients create Deployments, {result['serviceLanes']} "
        "create Services (vigil's Service creator runs as many). Stages are p50 / p99 of each object's time "
        "from its creation / when the last one got there (s, from the burst's start). CPU is seconds of each "
        "process over the burst (2 cores shared with whatever else ran: see the load).",
        "",
    ]
    rows = []
    for burst in bursts:
        cells = [burst["scenario"], number(burst["loadBefore"][0], 1), seconds(burst["wallSeconds"])]
        for name in PLANE_STAGES:
            found = burst["stages"].get(name)
            cells.append(f"{found['p50']} / {found['p99']} / {found['last']}" if found else "-")
        rows.append(cells)
    lines.append(table(["burst", "load", "wall", *PLANE_STAGES], rows))
    lines.append("")
    rows = []
    for burst in bursts:
        api = burst["apiserver"]
        queues = burst.get("controllerQueues") or {}
        deployment = queues.get("deployment") or {}
        cpu = burst["cpuSeconds"]
        rows.append(
            [
                burst["scenario"],
                *[number(cpu.get(name), 1) for name in PLANE_CPU],
                str(api["writeCount"]),
                number(burst.get("servicesPerSecond"), 1),
                number(api.get("clusterIPAllocationMeanMs"), 1),
                f"{number(deployment.get('meanQueueWaitSeconds'))} s / {number(deployment.get('meanSyncMs'), 0)} ms"
                if deployment
                else "-",
                number(burst["etcd"].get("walFsyncMeanMs")),
            ]
        )
    header = [
        "burst",
        *[f"CPU-s {name}" for name in PLANE_CPU],
        "writes",
        "Services/s",
        "ClusterIP allocation (ms)",
        "deployment queue wait / sync",
        "etcd fsync (ms)",
    ]
    lines.append(table(header, rows))
    return "\n".join(lines) + "\n"


SECTIONS = {
    "detection": detection_section,
    "healing": healing_section,
    "cost": cost_section,
    "gate": gate_section,
    "fleet": fleet_section,
    "quiet": quiet_section,
    "efficiency": efficiency_section,
    "plane": plane_section,
}


def render(results: Mapping[str, Any]) -> str:
    """The whole Markdown report for one invocation (``results`` as written to results.json)."""
    meta = results["meta"]
    parts = [
        "# vigil benchmarks",
        "",
        f"Measured {meta['started']} - {meta['finished']} on the local sandbox, {meta['runs']} run(s) per scenario"
        + (" (--quick)" if meta.get("quick") else "")
        + ". Every number below was measured in this run.",
        "",
    ]
    for name, section in results["benchmarks"].items():
        if "error" in section:
            parts.append(f"## {name}\n\nFAILED: {section['error']}\n")
            continue
        parts.append(SECTIONS[name](section))
    others = sorted(
        {o for s in results["benchmarks"].values() for o in s.get("environment", {}).get("otherOperators", [])}
    )
    if others:
        parts.append(
            "**Warning:** other vigil operators ran on this machine during the benchmark and may have "
            "reconciled the same objects:\n\n" + "\n".join(f"- `{o}`" for o in others) + "\n"
        )
    plots = meta.get("plots") or []
    if plots:
        parts.append("\n".join(f"![{p}]({p})" for p in plots) + "\n")
    return "\n".join(parts)
