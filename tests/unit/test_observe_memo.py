"""The memo of SLO judgements: a reused report is exactly what a full judgement gives, every cycle."""

from __future__ import annotations

import dataclasses
import datetime
import math
import random

import pytest

from vigil.api import conditions
from vigil.api import slo as sloapi
from vigil.observe import memo, promql, slo

F = promql.Family
S = sloapi.SLOState
NS = "ml"
START = datetime.datetime(2026, 12, 3, 1, 0, tzinfo=datetime.UTC)
SETTINGS = slo.Settings(min_window_seconds=60, current_rate_window_seconds=300, baseline_rate_window_seconds=1800)
CYCLE = datetime.timedelta(seconds=5)

SPECS = {
    "availability": {"name": "availability", "kind": "availability", "objective": 99.9, "period": "1h"},
    "availability30d": {"name": "availability", "kind": "availability", "objective": 99.0},
    "histogram": {
        "name": "p95",
        "kind": "latency",
        "method": "histogram",
        "objective": 95,
        "thresholdMs": 100,
        "period": "7d",
    },
    "average": {"name": "latency", "kind": "latency", "method": "average", "thresholdMs": 50, "period": "1d"},
    "queue": {"name": "queue", "kind": "queueTime", "thresholdMs": 20, "period": "6h", "minRequestRate": 0.5},
    "gpu": {"name": "gpu", "kind": "gpuMemory", "maxUtilization": 0.9, "period": "1h", "minRequestRate": 0},
}


def spec(kind: str) -> sloapi.SLOSpec:
    return sloapi.SLOSpec.model_validate(SPECS[kind])


def target(
    name: str,
    *kinds: str,
    ages: tuple[float, ...] = (3600.0,),
    now: datetime.datetime = START,
    previous: tuple[sloapi.SLOStatus, ...] = (),
    origin: str | None = None,
) -> slo.Target:
    revisions = tuple(
        slo.RevisionRef(name=f"r{i}", since=now - datetime.timedelta(seconds=age), origin=origin)
        for i, age in enumerate(ages)
    )
    return slo.Target(
        namespace=NS,
        name=name,
        generation=1,
        slos=tuple(spec(kind) for kind in kinds or ("availability",)),
        revisions=revisions,
        previous=previous,
        created=min(r.since for r in revisions),
    )


def answers(
    targets: list[slo.Target], now: datetime.datetime, values: dict[tuple[str, str], dict[F, float | None]]
) -> dict[promql.Need, promql.Vector]:
    """Prometheus's answers to the cycle's plan: per deployment and revision, a value per family
    (the same for every window; None or absent: no series). Fresh float objects, as parsed."""
    results: dict[promql.Need, promql.Vector] = {}
    for query in slo.query_plan(targets, now, SETTINGS):
        vector: promql.Vector = {}
        for t in targets:
            for rev in t.revisions:
                value = values.get((t.name, rev.name), {}).get(query.need.family)
                if value is None:
                    continue
                for le in (100.0,) if query.need.family is F.BUCKET else (None,):
                    vector[promql.SeriesKey(NS, t.name, rev.name, le)] = float(str(value))
        results[query.need] = vector
    return results


def judge(
    cache: memo.Memo, targets: list[slo.Target], results: promql.Results, now: datetime.datetime
) -> list[slo.DeploymentReport]:
    """The memo's reports, each checked against a full judgement on the whole cycle's answers."""
    by_deployment = promql.by_deployment(results)
    reports = []
    for t in targets:
        report = cache.evaluate(t, by_deployment.get((t.namespace, t.name), {}), now, SETTINGS)
        assert report == slo.evaluate(t, results, now, SETTINGS), f"{t.name} at {now}"
        reports.append(report)
    return reports


def written(t: slo.Target, report: slo.DeploymentReport) -> slo.Target:
    """The target after its status was written from ``report`` (what the next cycle reads)."""
    return dataclasses.replace(t, previous=report.slos)


IDLE = {F.SUCCESS: 0.0, F.FAILURE: 0.0}
BUSY = {F.SUCCESS: 10.0, F.FAILURE: 0.0, F.DURATION: 200_000.0, F.QUEUE: 10_000.0}


def test_an_idle_deployment_is_reused_and_stamped_with_each_cycle() -> None:
    cache = memo.Memo()
    t = target("idle", ages=(7200.0,))
    values = {("idle", "r0"): BUSY}
    first = judge(cache, [t], answers([t], START, values), START)[0]
    t = written(t, first)
    for cycle in range(1, 6):
        now = START + cycle * CYCLE
        report = judge(cache, [t], answers([t], now, values), now)[0]
        assert report.slos[0].last_evaluation_time == conditions.rfc3339(now)
        assert report.slos[0].last_transition_time == first.slos[0].last_transition_time
    assert (cache.reused, cache.judged) == (4, 2)  # the status written after the first: judged once more


def test_a_window_another_deployment_brings_into_the_cycle_leaves_an_idle_report_reused() -> None:
    cache = memo.Memo()
    old = target("old", ages=(7200.0,))
    judge(cache, [old], answers([old], START, {("old", "r0"): IDLE}), START)
    cache.retain([(NS, "old")])
    now = START + CYCLE
    young = target("young", ages=(30.0,), now=now)  # a rollout: capped windows no one asked before
    fleet = [old, young]
    values = {("old", "r0"): IDLE, ("young", "r0"): IDLE}
    assert {q.need for q in slo.query_plan(fleet, now, SETTINGS)} > {
        q.need for q in slo.query_plan([old], now, SETTINGS)
    }
    judge(cache, fleet, answers(fleet, now, values), now)
    assert (cache.reused, cache.judged) == (1, 1)  # only the new deployment was judged


def test_a_deployment_is_planned_once_while_its_clock_and_spec_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = memo.Memo()
    worked_out: list[str] = []
    real = slo.target_needs

    def counted(t: slo.Target, now: datetime.datetime, settings: slo.Settings) -> slo.Needs:
        worked_out.append(t.name)
        return real(t, now, settings)

    old, young = target("old", ages=(7200.0,)), target("young", ages=(75.0,))
    instants = [START + cycle * CYCLE for cycle in range(4)] + [START + datetime.timedelta(minutes=10)]
    results = answers([old], instants[-1], {("old", "r0"): IDLE})
    monkeypatch.setattr(slo, "target_needs", counted)
    for now in instants:
        assert cache.plan([old, young], now, SETTINGS) == slo.plan_fleet([old, young], now, SETTINGS)
    # The old one judged on the last cycle's plan: its clock and read set come from it.
    judge(cache, [old], results, instants[-1])
    assert worked_out.count("old") == 1 + 5  # once by the memo, once per plan by plan_fleet
    # The young one's windows grew up the ladder in those ten minutes (a new clock): planned again.
    assert worked_out.count("young") == 2 + 5


def test_deployments_planned_alike_share_one_set_of_needs() -> None:
    cache = memo.Memo()
    fleet = [target(f"d{i}", ages=(7200.0,)) for i in range(3)]
    plan = cache.plan(fleet, START, SETTINGS)
    assert plan == slo.plan_fleet(fleet, START, SETTINGS)
    needs = [cache._needs(t, START, SETTINGS)[0] for t in fleet]
    assert needs[0] is needs[1] is needs[2]


def test_a_changed_series_value_is_judged_again() -> None:
    cache = memo.Memo()
    t = target("d", ages=(7200.0,))
    judge(cache, [t], answers([t], START, {("d", "r0"): BUSY}), START)
    failing = {("d", "r0"): {F.SUCCESS: 5.0, F.FAILURE: 5.0}}
    report = judge(cache, [t], answers([t], START + CYCLE, failing), START + CYCLE)[0]
    assert report.slos[0].state is S.BREACHED
    assert (cache.reused, cache.judged) == (0, 2)


def test_a_revision_outgrowing_its_capped_windows_is_judged_over_the_new_windows() -> None:
    # A 1h period: the longest window is 6m (360 s), so at 358 s the windows are capped, at 363 s not.
    cache = memo.Memo()
    t = target("young", ages=(358.0,))
    values = {("young", "r0"): BUSY}
    before = judge(cache, [t], answers([t], START, values), START)[0]
    later = START + CYCLE
    after = judge(cache, [t], answers([t], later, values), later)[0]
    assert "capped" in before.slos[0].message
    assert "capped" not in after.slos[0].message
    assert [b.window for b in before.slos[0].burn_rates] != [b.window for b in after.slos[0].burn_rates]
    assert cache.judged == 2


def test_the_rate_windows_of_a_young_deployment_follow_its_age() -> None:
    # The baseline is capped to the data's age less half a min window: 120 s up to an age of
    # 269 s, 240 s from 270 s on, while the 1h SLO's windows stay.
    cache = memo.Memo()
    t = target("young", ages=(266.0,))
    values = {("young", "r0"): BUSY}
    baselines = []
    for cycle in range(2):
        now = START + cycle * CYCLE
        report = judge(cache, [t], answers([t], now, values), now)[0]
        rates = report.revisions[0].traffic.windows
        assert rates is not None
        baselines.append(rates.baseline_seconds)
    assert baselines == [120, 240]
    assert cache.judged == 2


def test_a_revision_past_its_windows_is_reused_when_its_age_changes_unit() -> None:
    # A 1h period's longest window is 6m: at 59m57s and 1h0m2s no message quotes the age.
    cache = memo.Memo()
    t = target("settled", ages=(3597.0,))
    values = {("settled", "r0"): BUSY}
    for cycle in range(2):
        now = START + cycle * CYCLE
        judge(cache, [t], answers([t], now, values), now)
    assert (cache.reused, cache.judged) == (1, 1)


def test_a_young_revisions_message_names_when_its_data_starts_so_it_stays_as_the_revision_ages() -> None:
    # 30-day windows are capped for three days; crossing 2d of age leaves them on the same rung,
    # and the message, naming the start rather than the age, is the same: reused, nothing to write.
    cache = memo.Memo()
    t = target("week", "availability30d", ages=(2 * 86400 - 6.0,))
    values = {("week", "r0"): BUSY}
    messages = []
    for cycle in range(3):
        now = START + cycle * CYCLE
        messages.append(judge(cache, [t], answers([t], now, values), now)[0].slos[0].message)
    since = conditions.rfc3339(t.revisions[0].since)
    assert (
        messages
        == [f"every window within its factor on revision r0 (windows capped to its age: data since {since})"] * 3
    )
    assert (cache.reused, cache.judged) == (2, 1)


def test_a_young_revision_crossing_a_minute_is_reused_while_its_windows_stay_on_their_rung() -> None:
    # At 4m55s and 5m05s the 1h SLO's windows and the rate windows are the same: only the
    # timestamps differ, so a fleet of young deployments is not rewritten every minute.
    cache = memo.Memo()
    t = target("young", ages=(295.0,))
    values = {("young", "r0"): BUSY}
    reports = [
        judge(cache, [t], answers([t], START + cycle * CYCLE, values), START + cycle * CYCLE)[0] for cycle in range(3)
    ]
    assert (cache.reused, cache.judged) == (2, 1)
    assert len({r.slos[0].message for r in reports}) == 1
    assert "capped" in reports[0].slos[0].message


def test_the_transition_time_of_a_new_state_follows_the_clock_until_the_status_is_written() -> None:
    cache = memo.Memo()
    met = sloapi.SLOStatus(name="availability", state=S.MET, revision="r0", last_transition_time="2026-12-03T00:00:00Z")
    t = target("flips", ages=(7200.0,), previous=(met,))
    failing = {("flips", "r0"): {F.SUCCESS: 5.0, F.FAILURE: 5.0}}
    for cycle in range(3):  # the status not written yet: each cycle's judgement is a new transition
        now = START + cycle * CYCLE
        report = judge(cache, [t], answers([t], now, failing), now)[0]
        assert report.slos[0].state is S.BREACHED
        assert report.slos[0].last_transition_time == conditions.rfc3339(now)
    t = written(t, report)
    later = START + 3 * CYCLE
    report = judge(cache, [t], answers([t], later, failing), later)[0]
    assert report.slos[0].last_transition_time == conditions.rfc3339(START + 2 * CYCLE)
    assert (cache.reused, cache.judged) == (2, 2)


def test_a_breach_held_through_a_metrics_gap_is_held_alike_when_reused() -> None:
    cache = memo.Memo()
    breached = sloapi.SLOStatus(
        name="availability", state=S.BREACHED, revision="r0", last_transition_time="2026-12-03T00:00:00Z"
    )
    t = target("gap", ages=(7200.0,), previous=(breached,))
    for cycle in range(3):  # no series: NoData, the breach held
        now = START + cycle * CYCLE
        report = judge(cache, [t], answers([t], now, {}), now)[0]
        assert (report.slos[0].state, report.slos[0].held_state) == (S.NO_DATA, S.BREACHED)
        t = written(t, report) if cycle == 0 else t
    # Data back, still hot in the short window only: the held breach holds by hysteresis.
    hot = {("gap", "r0"): {F.SUCCESS: 9.0, F.FAILURE: 1.0}}
    now = START + 3 * CYCLE
    assert judge(cache, [t], answers([t], now, hot), now)[0].slos[0].state is S.BREACHED


def test_a_nan_is_never_taken_for_an_unchanged_value() -> None:
    cache = memo.Memo()
    t = target("nan", ages=(7200.0,))
    values = {("nan", "r0"): {F.SUCCESS: math.nan, F.FAILURE: 0.0}}
    for cycle in range(2):
        now = START + cycle * CYCLE
        judge(cache, [t], answers([t], now, values), now)
    assert cache.judged == 2


def test_a_reused_report_is_a_copy_and_the_cached_one_stays_as_judged() -> None:
    cache = memo.Memo()
    t = target("copy", ages=(7200.0,))
    values = {("copy", "r0"): BUSY}
    first = judge(cache, [t], answers([t], START, values), START)[0]
    stamp = first.slos[0].last_evaluation_time
    second = judge(cache, [t], answers([t], START + CYCLE, values), START + CYCLE)[0]
    assert second.slos[0] is not first.slos[0]
    assert first.slos[0].last_evaluation_time == stamp


def test_retain_forgets_deployments_no_longer_evaluated() -> None:
    cache = memo.Memo()
    a, b = target("a"), target("b")
    judge(cache, [a, b], answers([a, b], START, {}), START)
    cache.retain([(NS, "a")])
    assert len(cache) == 1
    assert (cache.reused, cache.judged) == (0, 0)
    judge(cache, [b], answers([b], START + CYCLE, {}), START + CYCLE)
    assert cache.judged == 1


def test_a_judgement_that_raises_leaves_no_stale_report() -> None:
    cache = memo.Memo()
    t = target("bad", ages=(7200.0,))
    judge(cache, [t], answers([t], START, {("bad", "r0"): BUSY}), START)
    broken = dataclasses.replace(t, revisions=(), slos=t.slos)
    # No revision: judged in full (a different target), never the cached report of another.
    report = judge(cache, [broken], answers([broken], START + CYCLE, {}), START + CYCLE)[0]
    assert report.slos[0].state is S.INSUFFICIENT_TRAFFIC


@pytest.mark.parametrize("kind", list(SPECS))
@pytest.mark.parametrize("ages", [(30.0,), (262.0, 3590.0), (86390.0,), (3 * 86400.0,)])
def test_a_judgement_reads_only_its_own_needs_and_the_base_needs(kind: str, ages: tuple[float, ...]) -> None:
    """The memo compares and judges on that read set alone, so a window another deployment brings
    into the cycle leaves this one's report reused; a read outside it would judge without data."""
    t = target("d", kind, ages=ages)
    full = {F.SUCCESS: 9.0, F.FAILURE: 1.0, F.DURATION: 1e5, F.QUEUE: 1e4, F.BUCKET: 8.0, F.COUNT: 10.0}
    full |= {F.GPU_MEMORY: 0.5, F.PENDING: 1.0, F.BUSY: 0.5, F.QUEUE_GROWTH: 0.1}
    results = answers([t], START, {("d", r.name): full for r in t.revisions})
    read: set[promql.Need] = set()

    class Watched(dict[promql.Need, promql.Vector]):
        def get(self, need: promql.Need, default: object = None) -> object:  # type: ignore[override]
            read.add(need)
            return super().get(need, default)

    slo.evaluate(t, Watched(results), START, SETTINGS)
    needs, _ = slo.target_needs(t, START, SETTINGS)
    assert read
    assert read <= needs | slo.base_needs(SETTINGS)


@pytest.mark.parametrize("seed", range(8))
def test_randomised_fleets_over_time_get_exactly_the_full_judgement_every_cycle(seed: int) -> None:
    """Deployments of every SLO kind, young and old revisions (one or two, with or without an
    origin), idle, busy, failing, NaN and missing series; series that change now and then,
    statuses written now and then, a clock that mostly ticks and sometimes jumps: every report is
    compared with a full judgement in ``judge``."""
    rng = random.Random(seed)
    kinds = list(SPECS)
    profiles: list[dict[F, float | None]] = [
        IDLE,
        BUSY,
        {F.SUCCESS: 5.0, F.FAILURE: 5.0},
        {F.SUCCESS: math.nan, F.FAILURE: 1.0},
        {F.SUCCESS: 3.0},
        {F.SUCCESS: 10.0, F.COUNT: 10.0, F.BUCKET: 9.0, F.GPU_MEMORY: 0.95, F.PENDING: 2.0},
        {},
    ]
    targets = []
    for i in range(30):
        ages = tuple(
            rng.choice([30.0, 200.0, 262.0, 355.0, 3590.0, 7200.0, 86390.0, 3 * 86400.0])
            for _ in range(rng.randint(1, 2))
        )
        chosen = rng.sample(kinds, rng.randint(1, 3))
        if len({SPECS[k]["name"] for k in chosen}) < len(chosen):
            chosen = chosen[:1]
        targets.append(target(f"d{i}", *chosen, ages=ages, origin=rng.choice([None, "the data since x"])))
    values = {(t.name, r.name): rng.choice(profiles) for t in targets for r in t.revisions}
    cache = memo.Memo()
    now = START
    reused = 0
    for cycle in range(40):
        # Planned by the memo (its needs reused, its clocks kept for the judgements) as in full.
        assert cache.plan(targets, now, SETTINGS) == slo.plan_fleet(targets, now, SETTINGS), f"cycle {cycle}"
        reports = judge(cache, targets, answers(targets, now, values), now)
        reused += cache.reused
        cache.retain((t.namespace, t.name) for t in targets)
        for index, (t, report) in enumerate(zip(targets, reports, strict=True)):
            if rng.random() < 0.05:
                targets[index] = written(t, report)
            if rng.random() < 0.05:
                rev = rng.choice(t.revisions)
                values[(t.name, rev.name)] = rng.choice(profiles)
            if rng.random() < 0.02:  # a rollout: a new revision beside the last one (new windows for the fleet)
                fresh = slo.RevisionRef(name=f"r{cycle}x", since=now)
                targets[index] = dataclasses.replace(targets[index], revisions=(t.revisions[-1], fresh))
                values[(t.name, fresh.name)] = rng.choice(profiles)
        now += CYCLE if rng.random() < 0.9 else datetime.timedelta(seconds=rng.choice([61, 600, 3600, 86400]))
    assert reused > 0
