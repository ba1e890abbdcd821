"""State-in/state-out tests of giving back what an incident added: scale-in and shift-home."""

from __future__ import annotations

import dataclasses
import datetime
import itertools
from typing import Any

import pytest

from tests.unit import factories
from vigil.act import giveback, machine, runbooks, sizing
from vigil.act import intents as acts
from vigil.api import conditions as cond
from vigil.api import incident as incapi
from vigil.api import modeldeployment as mdapi
from vigil.api import runbook as rbapi
from vigil.api import slo as sloapi
from vigil.render import route

NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
INCIDENT = "resnet-queue-20261122115000"
HOME = "home000000"
FALLBACK = "md:resnet-big"
S = sloapi.SLOState
P = incapi.GiveBackPhase


def at(seconds: float) -> datetime.datetime:
    return NOW + datetime.timedelta(seconds=seconds)


def slo(
    state: sloapi.SLOState, evaluated: datetime.datetime, window: float = 20, since: float = -3600
) -> sloapi.SLOStatus:
    return sloapi.SLOStatus(
        name="queue",
        state=state,
        burn_rates=[sloapi.WindowBurn(window=sloapi.format_duration(window), burn_rate=0.5)],
        last_transition_time=cond.rfc3339(at(since)),
        last_evaluation_time=cond.rfc3339(evaluated),
    )


@dataclasses.dataclass
class World:
    """The worker and the cluster around the give-back machine: persists the record, executes
    intents as md-status overrides, lets replicas become ready and routes take effect, and
    judges the SLO on windows no longer than the data since the last step (as the fleet does)."""

    md: mdapi.ModelDeployment
    incident: incapi.IncidentStatus
    record: incapi.GiveBack | None = None
    timeline: list[incapi.TimelineEntry] = dataclasses.field(default_factory=list)
    events: list[machine.Event] = dataclasses.field(default_factory=list)
    issued: list[acts.Intent] = dataclasses.field(default_factory=list)
    state: sloapi.SLOState = S.MET
    fresh_since: datetime.datetime | None = None
    metrics: bool = True
    other: str | None = None
    ready_lag: bool = False
    caps: bool = True
    offered: float | None = None
    """Requests per second the deployment is offered (None: no demand measured), each replica 30 req/s."""

    def judge(self, now: datetime.datetime) -> None:
        window = 300.0
        if self.fresh_since is not None and self.caps:
            window = min(window, max(20.0, (now - self.fresh_since).total_seconds()))
        traffic = self.md.status.traffic
        away = traffic is not None and acts.moves_all_traffic_away(tuple((s.backend, s.weight) for s in traffic.splits))
        state = S.INSUFFICIENT_TRAFFIC if away else self.state
        transition = self.md.status.slos[0].last_transition_time if self.md.status.slos else None
        status = slo(state, now, window)
        previous = self.md.status.slos[0].state if self.md.status.slos else None
        status.last_transition_time = cond.rfc3339(now) if previous not in (None, state) else transition
        self.md.status.slos = [status]

    def settle(self) -> None:
        """What the reconcile core makes of the overrides: replicas running and ready, routes in force."""
        status = self.md.status
        wanted = status.scale.replicas if status.scale is not None else self.md.spec.replicas
        status.replicas = wanted
        status.ready_replicas = wanted if not self.ready_lag else min(wanted, status.ready_replicas)
        shifted = status.traffic is not None
        value = cond.ConditionStatus.TRUE if shifted else cond.ConditionStatus.FALSE
        reason = route.REASON_SHIFTED if shifted else route.REASON_SPEC
        status.conditions, _ = cond.set_condition(status.conditions, route.TRAFFIC_SHIFTED, value, reason, "m", 1, NOW)

    def context(self, now: datetime.datetime, done: dict[str, acts.Result] | None = None) -> giveback.Context:
        return giveback.Context(
            now=now,
            incident=INCIDENT,
            incident_status=self.incident,
            md=self.md,
            metrics_available=self.metrics,
            other_incident=self.other,
            done=done or {},
            demand=self.demand(),
        )

    def demand(self) -> sizing.Demand | None:
        """What the fleet measures: the offered rate served, each replica busy for its share of 30 req/s."""
        if self.offered is None:
            return None
        return sizing.Demand(request_rate=self.offered, busy_replicas=self.offered / 30.0, queue_growth=0.0)

    def cycle(self, now: datetime.datetime, *, crash_before_execute: bool = False) -> giveback.Decision:
        """One pass: judge, decide, persist, execute, confirm (as healing.give_back does)."""
        self.settle()
        self.judge(now)
        done: dict[str, acts.Result] = {}
        decision = giveback.Decision(None)
        for _ in range(6):
            decision = giveback.advance(self.record, self.context(now, done))
            self.record = decision.record
            self.timeline += decision.entries
            self.events += decision.events
            mark = giveback.judged_from(decision.record)
            if mark is not None:
                self.fresh_since = cond.parse_time(mark[0])
            if not decision.intents or crash_before_execute:
                break
            for intent in decision.intents:
                assert acts.is_override(intent)
                self.issued.append(intent)
                self.md.status = acts.override(self.md.status, intent, INCIDENT, 1, now)  # type: ignore[arg-type]
                done[intent.key] = acts.Result(True, "recorded in status")
        return decision

    def run(self, start: float, end: float, every: float = 5) -> None:
        t = start
        while t <= end:
            self.cycle(at(t))
            t += every

    @property
    def replicas(self) -> int:
        return self.md.status.scale.replicas if self.md.status.scale is not None else self.md.spec.replicas

    def types(self) -> list[str]:
        return [e.type for e in self.timeline]


def world(
    *, held: int | None = 5, splits: tuple[tuple[str, int], ...] | None = None, spec: int = 2, **give_back: Any
) -> World:
    status = mdapi.ModelDeploymentStatus(current_revision=HOME)
    if held is not None:
        status.scale = mdapi.ScaleOverride(replicas=held, incident=INCIDENT, generation=1, since=cond.rfc3339(at(-900)))
    if splits is not None:
        status.traffic = mdapi.TrafficOverride(
            splits=[mdapi.TrafficSplit(backend=b, weight=w) for b, w in splits],
            incident=INCIDENT,
            generation=1,
            since=cond.rfc3339(at(-900)),
        )
    status.conditions, _ = cond.set_condition([], "Available", cond.ConditionStatus.TRUE, "Ready", "m", 1, NOW)
    settings = {"stabilizationWindow": "5m", "interval": "60s", **give_back}
    md = factories.md(replicas=spec, status=status, giveBack=settings, traffic={"fallback": "resnet-big"})
    incident = incapi.IncidentStatus(phase=incapi.Phase.RESOLVED, resolved_at=cond.rfc3339(NOW))
    return World(md=md, incident=incident)


def scale_targets(w: World) -> list[int | str]:
    return [
        i.replicas if isinstance(i, acts.Scale) else "spec"
        for i in w.issued
        if isinstance(i, acts.Scale | acts.Release)
    ]


# --- scale-in ---------------------------------------------------------------------------------


def test_scale_in_waits_for_the_stabilization_window_then_returns_one_replica_per_interval_to_the_spec() -> None:
    w = world(held=5)
    w.run(0, 295)
    assert w.issued == [], "nothing before the SLO held for the stabilization window"
    assert w.record is not None
    assert w.record.phase is P.STABILIZING
    w.run(300, 900)
    assert scale_targets(w) == [4, 3, "spec"]
    assert w.md.status.scale is None
    assert w.record.phase is P.RETURNED
    times = [cond.parse_time(e.time) for e in w.timeline if e.type == giveback.STEP]
    assert times[0] == at(300)
    assert all(later - earlier >= datetime.timedelta(seconds=60) for earlier, later in itertools.pairwise(times))
    assert w.types()[-1] == giveback.RETURNED
    assert "returned everything the incident added (5 replicas (spec.replicas 2))" in w.timeline[-1].message


def test_each_step_returns_at_most_step_replicas_and_never_goes_below_the_spec() -> None:
    w = world(held=7, stepReplicas=2)
    w.run(0, 900)
    assert scale_targets(w) == [5, 3, "spec"]
    assert w.replicas == 2


def test_the_stabilization_window_counts_from_the_last_slo_change() -> None:
    w = world(held=3)
    w.state = S.WARNING
    w.run(0, 120)
    w.state = S.MET
    w.run(125, 420)
    assert w.issued == []
    w.run(425, 430)
    assert scale_targets(w) == ["spec"]


def verified_plan(effect: float, *, ended: float = 0, later: tuple[incapi.StepProgress, ...] = ()) -> incapi.Plan:
    """A plan whose scale-out took effect at ``effect`` (its ``judgedFrom``) and was verified Met at ``ended``."""
    step = incapi.StepProgress(
        name="scale-out",
        action="scaleOut",
        state=incapi.StepState.SUCCEEDED,
        target={acts.REPLICAS: "3", acts.INTENDED_AT: cond.rfc3339(at(effect - 10))},
        judged_from=cond.rfc3339(at(effect)),
        finished_at=cond.rfc3339(at(ended)),
    )
    return incapi.Plan(runbook="r", mode="auto", current=1 + len(later), steps=[step, *later])


def met_since(w: World, seconds: float) -> None:
    """The SLO as the fleet left it: Met since ``seconds`` (its last change)."""
    w.md.status.slos = [slo(S.MET, at(-5), since=seconds)]


def after_plan(effect: float, met: float) -> World:
    """3 replicas held (spec 2, a 60s window), resolved at 0: the scale-out took effect at ``effect``,
    the SLO Met since ``met``."""
    w = world(held=3, stabilizationWindow="60s")
    w.incident.plan = verified_plan(effect)
    met_since(w, met)
    return w


def first_step_at(w: World, until: float = 300) -> float | None:
    t = 0.0
    while t <= until and not w.issued:
        w.cycle(at(t))
        t += 5
    return (t - 5) if w.issued else None


def test_the_stabilization_window_already_runs_while_the_plan_verifies_its_last_action() -> None:
    # Resolved at 0 after verifyAfter 90s; the replicas took effect at -90, the SLO Met since -70.
    w = after_plan(-90, -70)
    assert first_step_at(w) == 0, "Met on fresh data for 70s already: the first step comes at once"
    assert w.record is not None
    assert w.record.stable_since == cond.rfc3339(at(-70))
    assert scale_targets(w) == ["spec"]


def test_the_window_counts_from_the_slo_turning_met_on_data_from_after_the_action() -> None:
    w = after_plan(-90, -30)
    assert first_step_at(w) == 30, "Met since -30: a whole window from then"
    assert w.record is not None
    assert w.record.stable_since == cond.rfc3339(at(-30))


def test_an_slo_met_since_before_the_last_action_counts_from_when_that_action_took_effect() -> None:
    # A follow-up round on a Met verdict (sizeAhead): the SLO never changed, the level did at -40.
    w = after_plan(-40, -600)
    assert first_step_at(w) == 20
    assert w.record is not None
    assert w.record.stable_since == cond.rfc3339(at(-40))


def test_a_notification_after_the_action_does_not_restart_the_window_but_an_action_never_effective_counts_from_its_end() -> (
    None
):
    notified = incapi.StepProgress(
        name="page",
        action="notify",
        state=incapi.StepState.SUCCEEDED,
        target={acts.INTENDED_AT: cond.rfc3339(at(0))},
        finished_at=cond.rfc3339(at(0)),
    )
    w = world(held=3, stabilizationWindow="60s")
    w.incident.plan = verified_plan(-90, later=(notified,))
    met_since(w, -70)
    assert first_step_at(w) == 0
    # Given up on before it took effect: no judgedFrom, so its end (-10) is when the level held now began.
    w = after_plan(-90, -70)
    assert w.incident.plan is not None
    w.incident.plan.steps[0].judged_from = None
    w.incident.plan.steps[0].finished_at = cond.rfc3339(at(-10))
    assert first_step_at(w) == 50


def sized_plan(utilization: int | None = 70) -> incapi.Plan:
    """A finished plan whose scale-out was sized from the demand at ``utilization`` percent (None: fixed steps)."""
    params: dict[str, Any] = {"stepReplicas": 2}
    if utilization is not None:
        params["targetUtilization"] = utilization
    spec = rbapi.RunbookSpec.model_validate({"steps": [{"name": "scale-out", "action": "scaleOut", "params": params}]})
    plan = verified_plan(-400, ended=-300)
    plan.spec = spec
    return plan


def test_scale_in_never_goes_below_what_the_measured_demand_needs_at_the_scale_outs_utilisation() -> None:
    # 90 req/s at 70 % of 30 req/s per replica needs 5 replicas: the give-back holds all 5 it has,
    # though every SLO is Met (the plateau of a ramp); as the load falls it returns what it no longer needs.
    w = world(held=5, stabilizationWindow="60s")
    w.incident.plan = sized_plan(70)
    w.offered = 90.0
    w.run(0, 300)
    assert w.issued == []
    assert w.record is not None
    assert w.record.phase is P.STABILIZING
    assert w.record.message == "holding 5 replicas: the measured demand needs 5 at 70% utilisation"
    assert [e.message for e in w.timeline].count(w.record.message) == 1, "one entry while it holds"
    w.offered = 70.0  # needs 4
    w.run(305, 600)
    assert scale_targets(w) == [4], "one step, down to what the demand needs, not to the spec"
    assert w.record.message == "holding 4 replicas: the measured demand needs 4 at 70% utilisation"
    w.offered = 20.0  # needs 1: the spec's 2 bound it
    w.run(605, 900)
    assert scale_targets(w) == [4, 3, "spec"]
    assert w.record.phase is P.RETURNED


def test_after_a_hold_for_demand_the_next_step_again_needs_every_slo_met_for_a_window() -> None:
    w = world(held=5, stabilizationWindow="60s")
    w.incident.plan = sized_plan(70)
    w.offered = 90.0
    w.run(0, 100)
    w.state = S.WARNING
    w.offered = 20.0
    w.run(105, 120)
    w.state = S.MET
    w.run(125, 180)
    assert w.issued == [], "Warning at 105-120: a whole window of Met from 125 first"
    w.run(185, 190)
    assert scale_targets(w) == [4]


def test_without_a_sized_scale_out_or_without_demand_data_the_slo_alone_decides() -> None:
    fixed = world(held=5, stabilizationWindow="60s")
    fixed.incident.plan = sized_plan(None)
    fixed.offered = 90.0
    unmeasured = world(held=5, stabilizationWindow="60s")
    unmeasured.incident.plan = sized_plan(70)
    for w in (fixed, unmeasured):
        w.run(0, 60)
        assert scale_targets(w) == [4]
    assert giveback.needed_now(incapi.IncidentStatus(), None) is None
    builtin = incapi.Plan(runbook=runbooks.BUILTIN, mode="auto")
    needed = giveback.needed_now(incapi.IncidentStatus(plan=builtin), sizing.Demand(90.0, 3.0, 0.0))
    assert needed is not None
    assert (needed.replicas, needed.target_utilization) == (5, 70), "the built-in default sizes at 70 % too"


def test_without_a_recorded_action_the_window_counts_from_the_resolution() -> None:
    w = world(held=3, stabilizationWindow="60s")
    met_since(w, -600)
    assert first_step_at(w) == 60
    assert giveback.took_effect(w.incident) == NOW
    assert giveback.took_effect(incapi.IncidentStatus()) is None


def test_a_step_is_judged_only_on_data_from_after_it() -> None:
    w = world(held=4)
    w.run(0, 300)
    assert scale_targets(w) == [3]
    w.caps = False  # the fleet does not cap the windows: every verdict reads 5m, partly from before
    w.run(305, 600)
    step = w.record.steps[-1] if w.record else None
    assert step is not None
    assert step.state is incapi.StepState.VERIFYING
    assert scale_targets(w) == [3], "a verdict on data from before the step never passes it"
    assert any("waiting for a verdict on data from" in e.message for e in w.timeline)
    w.run(605, 700)  # 5m after the step took effect the windows hold only data from after it
    assert scale_targets(w) == [3, "spec"]


def test_a_degraded_slo_after_a_step_restores_the_last_level_that_held_and_stops() -> None:
    w = world(held=5)
    w.run(0, 300)
    w.run(305, 400)
    assert scale_targets(w) == [4, 3]
    w.state = S.WARNING
    w.run(405, 420)
    assert scale_targets(w) == [4, 3, 4]
    assert w.replicas == 4
    assert w.record is not None
    assert w.record.phase is P.STOPPED
    assert w.record.steps[-1].restore
    [stopped] = [e for e in w.events if e.reason == "ScaleInStopped"]
    assert stopped.type == "Warning"
    assert "SLO queue Warning after step 2 (scale to 3 replicas); back to 4 replicas" in stopped.message
    assert giveback.condition(w.record, INCIDENT) == (
        cond.ConditionStatus.FALSE,
        "Stopped",
        f"incident {INCIDENT}: {w.record.message}",
    )
    stopped_at = cond.parse_time(w.record.steps[-1].finished_at or "")
    assert w.record.retry_at == cond.rfc3339(stopped_at + datetime.timedelta(minutes=10))
    w.state = S.MET
    w.run(425, 1000)
    assert scale_targets(w) == [4, 3, 4], "a stopped give-back waits for its retryAt"


def stopped_once() -> World:
    """5 -> 4 -> 3, then 3 degrades the SLO: back to 4 and stopped (at about 410s); the SLO Met again."""
    w = world(held=5)
    w.run(0, 400)
    w.state = S.WARNING
    w.run(405, 420)
    assert w.record is not None
    assert w.record.phase is P.STOPPED
    w.state = S.MET
    return w


def test_a_stopped_give_back_is_tried_again_after_a_stabilization_window_from_the_level_that_held() -> None:
    w = stopped_once()
    assert w.record is not None
    assert w.record.stops == 1
    stopped_at = cond.parse_time(w.record.steps[-1].finished_at or "")
    w.run(425, 1500)
    assert scale_targets(w) == [4, 3, 4, 3, "spec"]
    assert w.record.phase is P.RETURNED
    [retrying] = [e for e in w.timeline if e.type == giveback.RETRYING]
    assert cond.parse_time(retrying.time) >= stopped_at + datetime.timedelta(minutes=10)
    assert retrying.message == (
        "trying again after stop 1: holding 4 replicas (spec.replicas 2), returned step by step once every SLO "
        "has been Met for 5m"
    )
    first_retry_step = next(e for e in w.timeline if e.type == giveback.STEP and "step 4" in e.message)
    settled = cond.parse_time(retrying.time)
    assert cond.parse_time(first_retry_step.time) >= settled, "stabilizing again before the first step"
    assert w.record.retry_at is None


def test_every_stop_doubles_the_wait_before_the_next_try_up_to_an_hour() -> None:
    waits = [giveback.retry_delay("5m", stops) for stops in range(1, 8)]
    assert [w.total_seconds() / 60 for w in waits] == [10, 20, 40, 60, 60, 60, 60]
    assert giveback.retry_delay("2h", 1) == datetime.timedelta(hours=2), "never shorter than the window itself"
    w = stopped_once()  # tried again 10m later
    t = 425.0
    while len(scale_targets(w)) < 4:  # stabilized again, then step 4 (4 -> 3)
        w.cycle(at(t))
        t += 5
    assert scale_targets(w) == [4, 3, 4, 3]
    w.state = S.WARNING
    w.run(t, t + 30)  # stop 2
    assert w.record is not None
    assert w.record.stops == 2
    stopped_at = cond.parse_time(w.record.steps[-1].finished_at or "")
    assert w.record.retry_at == cond.rfc3339(stopped_at + datetime.timedelta(minutes=20))


def test_a_new_spec_generation_while_waiting_to_retry_supersedes_the_give_back() -> None:
    w = stopped_once()
    w.md.metadata["generation"] = 2
    w.md.spec.replicas = 3
    w.md.status.scale = None
    w.run(425, 1500)
    assert w.record is not None
    assert (w.record.phase, w.record.retry_at) == (P.SUPERSEDED, None)
    assert scale_targets(w) == [4, 3, 4]
    assert giveback.waiting_to_retry(w.record) is False


def test_another_open_incident_at_retry_time_holds_the_retry() -> None:
    w = stopped_once()
    w.other = "resnet-queue-20261122121000"
    w.run(425, 1500)
    assert scale_targets(w) == [4, 3, 4]
    assert w.record is not None
    assert w.record.phase is P.STABILIZING
    assert w.record.message == "holding: incident resnet-queue-20261122121000 is open"


def test_a_new_incident_during_verification_restores_and_stops() -> None:
    w = world(held=3)
    w.run(0, 300)
    w.other = "resnet-queue-20261122120510"
    w.run(305, 310)
    assert scale_targets(w) == ["spec", 3]
    assert w.record is not None
    assert w.record.phase is P.STOPPED


def test_an_unverifiable_step_is_restored_after_a_second_interval() -> None:
    w = world(held=3)
    w.run(0, 300)
    w.state = S.INSUFFICIENT_TRAFFIC
    w.run(305, 500)
    assert scale_targets(w) == ["spec", 3]
    assert w.record is not None
    assert "could not be verified: queue InsufficientTraffic" in (w.record.message or "")


def test_the_recorded_step_is_replayed_after_a_crash_never_recomputed() -> None:
    w = world(held=5)
    w.run(0, 295)
    w.cycle(at(300), crash_before_execute=True)  # recorded, never executed
    assert w.issued == []
    assert w.record is not None
    recorded = dict(w.record.steps[-1].target)
    w.md.spec.give_back.step_replicas = 3  # even a different world replays the record
    decision = w.cycle(at(305))
    assert scale_targets(w) == [4]
    assert w.record.steps[-1].target == recorded
    assert decision.intents == ()
    again = giveback.advance(w.record, w.context(at(306)))
    assert again.intents == (), "an executed step is observed in the status: not issued again"


def test_a_step_that_never_takes_effect_stops_the_give_back() -> None:
    w = world(held=3)
    w.ready_lag = True
    w.md.status.ready_replicas = 1
    w.run(0, 300 + 310)
    assert w.record is not None
    assert w.record.phase is P.STOPPED
    assert "did not take effect within 5m" in (w.record.message or "")


def test_a_new_spec_generation_supersedes_the_give_back() -> None:
    """An HPA (or kubectl scale) writing spec.replicas through the scale subresource takes over."""
    w = world(held=5)
    w.run(0, 300)
    w.md.metadata["generation"] = 2
    w.md.spec.replicas = 3
    w.md.status.scale = None  # the reconcile core drops the superseded override
    w.run(305, 900)
    assert scale_targets(w) == [4]
    assert w.record is not None
    assert w.record.phase is P.SUPERSEDED
    assert "spec generation 2 (spec.replicas 3) owns the replica count" in (w.record.message or "")


def test_an_override_taken_by_a_newer_incident_supersedes_the_give_back() -> None:
    w = world(held=5)
    w.run(0, 60)
    w.md.status.scale = mdapi.ScaleOverride(replicas=7, incident="newer", generation=1, since=cond.rfc3339(at(60)))
    w.run(65, 900)
    assert w.issued == []
    assert w.record is not None
    assert w.record.phase is P.SUPERSEDED


@pytest.mark.parametrize(
    ("hold", "message"),
    [
        ("metrics", "holding: metrics unavailable"),
        ("other", "holding: incident other-incident is open"),
        ("paused", "holding: the deployment is paused (spec.paused)"),
    ],
)
def test_nothing_is_returned_while_it_must_hold(hold: str, message: str) -> None:
    w = world(held=5)
    w.metrics = hold != "metrics"
    w.other = "other-incident" if hold == "other" else None
    w.md.spec.paused = hold == "paused"
    w.run(0, 900)
    assert w.issued == []
    assert w.record is not None
    assert w.record.message == message
    assert sum(1 for e in w.timeline if e.message == message) == 1, "a hold is recorded once"


def test_metrics_lost_during_verification_restart_it_on_data_from_after_the_gap() -> None:
    w = world(held=3)
    w.run(0, 300)
    w.metrics = False
    w.run(305, 340)
    w.metrics = True
    w.run(345, 350)
    assert w.record is not None
    step = w.record.steps[-1]
    assert step.judged_from == cond.rfc3339(at(345))
    assert step.state is incapi.StepState.VERIFYING


def test_disabled_give_back_keeps_what_the_incident_added() -> None:
    w = world(held=5, enabled=False)
    w.run(0, 900)
    assert w.issued == []
    assert w.record is not None
    assert w.record.phase is P.KEPT
    assert w.replicas == 5


def test_no_give_back_while_the_plan_still_runs() -> None:
    w = world(held=5)
    w.incident = incapi.IncidentStatus(
        phase=incapi.Phase.MITIGATING,
        plan=incapi.Plan(runbook="r", mode="auto", steps=[incapi.StepProgress(name="scale", action="scaleOut")]),
    )
    assert giveback.advance(None, w.context(at(900))).record is None


# --- shift home -------------------------------------------------------------------------------


def shift_targets(w: World) -> list[str]:
    return [
        acts.encode_splits(i.splits) if isinstance(i, acts.ShiftTraffic) else "home"
        for i in w.issued
        if isinstance(i, acts.ShiftTraffic) or (isinstance(i, acts.Release) and i.what == acts.TRAFFIC)
    ]


def test_a_full_shift_to_the_fallback_comes_home_in_steps_once_the_primary_is_ready() -> None:
    w = world(held=None, splits=((FALLBACK, 100),))  # all traffic away: the SLO is InsufficientTraffic
    w.run(0, 295)
    assert w.issued == []
    w.run(300, 700)
    assert shift_targets(w) == [
        f"{HOME}=25,{FALLBACK}=75",
        f"{HOME}=50,{FALLBACK}=50",
        f"{HOME}=75,{FALLBACK}=25",
        "home",
    ]
    assert w.md.status.traffic is None
    assert w.record is not None
    assert w.record.phase is P.RETURNED


def test_shift_home_waits_while_the_primary_is_not_available() -> None:
    w = world(held=None, splits=((FALLBACK, 100),))
    w.md.status.conditions, _ = cond.set_condition(
        w.md.status.conditions, "Available", cond.ConditionStatus.FALSE, "Unschedulable", "m", 1, NOW
    )
    w.run(0, 900)
    assert w.issued == []
    assert w.record is not None
    assert "the deployment is not Available" in (w.record.message or "")


def test_shift_home_aborts_back_to_the_fallback_when_the_primary_degrades() -> None:
    w = world(held=None, splits=((FALLBACK, 100),))
    w.run(0, 300)
    w.run(305, 370)
    assert shift_targets(w) == [f"{HOME}=25,{FALLBACK}=75", f"{HOME}=50,{FALLBACK}=50"]
    w.state = S.BREACHED
    w.run(375, 380)
    assert shift_targets(w)[-1] == f"{FALLBACK}=100"
    assert w.md.status.traffic is not None
    assert [(s.backend, s.weight) for s in w.md.status.traffic.splits] == [(FALLBACK, 100)]
    assert w.record is not None
    assert w.record.phase is P.STOPPED
    [aborted] = [e for e in w.events if e.reason == "ShiftHomeAborted"]
    assert aborted.type == "Warning"
    assert f"back to {FALLBACK} 100%" in aborted.message


def test_traffic_comes_home_before_the_replicas_are_returned() -> None:
    w = world(held=3, splits=((FALLBACK, 50), (HOME, 50)), stepWeight=50)
    w.run(0, 900)
    kinds = [
        "traffic" if isinstance(i, acts.ShiftTraffic) or getattr(i, "what", "") == acts.TRAFFIC else "scale"
        for i in w.issued
    ]
    assert kinds == ["traffic", "scale"]
    assert w.md.status.traffic is None
    assert w.md.status.scale is None


@pytest.mark.parametrize(
    ("splits", "step", "expected"),
    [
        (((FALLBACK, 100),), 25, ((HOME, 25), (FALLBACK, 75))),
        (((HOME, 90), (FALLBACK, 10)), 25, None),
        (((FALLBACK, 60), ("md:other", 40)), 50, ((HOME, 50), (FALLBACK, 30), ("md:other", 20))),
        ((("good00000", 30), (HOME, 70)), 25, ((HOME, 95), ("good00000", 5))),
        (((FALLBACK, 2), ("md:other", 1)), 2, ((HOME, 99), (FALLBACK, 1))),
    ],
)
def test_homeward_moves_at_most_the_step_home_in_proportion(
    splits: tuple[tuple[str, int], ...], step: int, expected: tuple[tuple[str, int], ...] | None
) -> None:
    assert giveback.homeward(splits, HOME, step) == expected


def test_holders_names_each_incident_once_traffic_first() -> None:
    status = mdapi.ModelDeploymentStatus(
        scale=mdapi.ScaleOverride(replicas=3, incident="a", generation=1, since="2026-11-22T12:00:00Z"),
        traffic=mdapi.TrafficOverride(splits=[], incident="b", generation=1, since="2026-11-22T12:00:00Z"),
    )
    assert giveback.holders(status) == ["b", "a"]
    status.traffic.incident = "a"  # type: ignore[union-attr]
    assert giveback.holders(status) == ["a"]


def test_an_override_removed_by_someone_else_ends_the_give_back() -> None:
    w = world(held=5)
    w.run(0, 60)
    w.md.status.scale = None
    w.run(65, 900)
    assert w.issued == []
    assert w.record is not None
    assert w.record.phase is P.SUPERSEDED
