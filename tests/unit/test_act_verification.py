"""State-in/state-out tests of verification: fresh data only, and verification across a metrics gap.

A step is judged on data from after its action took effect (``judgedFrom``), never on a window
that still holds the trouble the action answered; and a metrics outage during verification
restarts it on data from after the outage, instead of letting the wall clock that ran through
the outage turn the first inconclusive verdict into a failure.
"""

from __future__ import annotations

from tests.unit import actkit
from tests.unit.actkit import INCIDENT, NOW, at
from vigil.act import intents, machine
from vigil.api import conditions as cond
from vigil.api import incident as incapi
from vigil.api import modeldeployment as mdapi
from vigil.api import runbook as rbapi
from vigil.api import slo as sloapi
from vigil.observe import promql, slo
from vigil.reconcile import healing
from vigil.reconcile import operator as op

S = incapi.StepState
SURGE = rbapi.Cause.LOAD_SURGE
WARNING = sloapi.SLOState.WARNING
LOW_TRAFFIC = sloapi.SLOState.INSUFFICIENT_TRAFFIC
SCALE = actkit.runbook(
    {"name": "scale", "action": "scaleOut", "params": {"stepReplicas": 2}, "verifyAfter": "60s"},
    {"name": "page", "action": "notify"},
)


def ctx(md: mdapi.ModelDeployment, seconds: float, **fields: object) -> machine.Context:
    """What is true ``seconds`` after NOW; by default a Breached verdict on the last 20s of data."""
    fields.setdefault("data_seconds", 20.0)
    return actkit.context(md, now=at(seconds), cause=SURGE, **fields)  # type: ignore[arg-type]


def effective_scale_out() -> tuple[mdapi.ModelDeployment, incapi.IncidentStatus]:
    """A scale-out 2 -> 4 recorded at NOW, executed, and ready (took effect) at at(10)."""
    md = actkit.deployment(replicas=2, maxReplicas=8)
    decision = machine.advance(actkit.opened(actkit.plan(SURGE, SCALE)), ctx(md, 0))
    (scale,) = decision.intents
    assert scale == intents.Scale(4, key=f"{INCIDENT}/0-scale/1")
    md.status = intents.override(md.status, scale, INCIDENT, 1, NOW)
    status = machine.advance(decision.status, ctx(md, 1, done=actkit.ok(scale))).status
    md.status.replicas = md.status.ready_replicas = 4
    status = machine.advance(status, ctx(md, 10)).status
    return md, status


def test_an_action_that_took_effect_is_judged_on_data_from_that_moment() -> None:
    _, status = effective_scale_out()
    scale = actkit.step(status, "scale")
    assert scale.state is S.VERIFYING
    assert scale.judged_from == cond.rfc3339(at(10))
    assert scale.verify_at == cond.rfc3339(at(70))
    assert status.timeline[-1].type == machine.EFFECTIVE
    assert status.timeline[-1].message == (
        f"scale to 4 replicas took effect; judging the SLO on data from {cond.rfc3339(at(10))} on, "
        f"at {cond.rfc3339(at(70))}"
    )


def test_a_lagging_breach_at_verification_orders_no_second_round_and_a_fresh_met_succeeds() -> None:
    """Issue 11: the surge was over 90s after the scale-out, but a 5-minute window still held it."""
    md, status = effective_scale_out()
    lagging = machine.advance(status, ctx(md, 100, data_seconds=300))
    assert lagging.intents == ()
    scale = actkit.step(lagging.status, "scale")
    assert scale.state is S.VERIFYING
    assert scale.target[intents.REPLICAS] == "4"
    assert lagging.status.timeline[-1].message == f"waiting for an SLO verdict on data from {cond.rfc3339(at(10))} on"
    again = machine.advance(lagging.status, ctx(md, 105, data_seconds=300))
    assert again.status == lagging.status  # the wait is recorded once
    assert again.events == ()
    fresh = machine.advance(lagging.status, ctx(md, 110, slo=actkit.MET, data_seconds=100))
    assert fresh.intents == ()
    scale = actkit.step(fresh.status, "scale")
    assert scale.state is S.SUCCEEDED
    assert scale.result == (
        f"SLO Met at verification after scale to 4 replicas "
        f"(judged on data from {cond.rfc3339(at(10))} to {cond.rfc3339(at(110))})"
    )
    assert actkit.step(fresh.status, "page").state is S.SKIPPED


def test_a_fresh_breach_at_verification_scales_another_round() -> None:
    md, status = effective_scale_out()
    decision = machine.advance(status, ctx(md, 70, data_seconds=60))
    assert decision.intents == (intents.Scale(6, key=f"{INCIDENT}/0-scale/2"),)
    scale = actkit.step(decision.status, "scale")
    assert scale.state is S.INTENDED
    assert scale.judged_from is None  # the next round is judged from its own effect
    verified = next(e for e in decision.status.timeline if e.type == machine.VERIFIED)
    assert verified.message == (
        f"SLO Breached at verification (judged on data from {cond.rfc3339(at(10))} to {cond.rfc3339(at(70))})"
        ": next round"
    )


def test_a_verdict_whose_data_is_unknown_is_not_taken() -> None:
    md, status = effective_scale_out()
    unknown = machine.advance(status, ctx(md, 80, slo=actkit.MET, data_seconds=None))
    assert actkit.step(unknown.status, "scale").state is S.VERIFYING
    assert unknown.intents == ()


def test_a_verdict_on_data_starting_exactly_at_the_effect_counts() -> None:
    md, status = effective_scale_out()
    decision = machine.advance(status, ctx(md, 70, slo=actkit.MET, data_seconds=60))
    assert actkit.step(decision.status, "scale").state is S.SUCCEEDED


def test_a_step_recorded_without_judged_from_takes_any_verdict() -> None:
    """Plans recorded by an operator from before judgedFrom existed keep working after an upgrade."""
    md, status = effective_scale_out()
    actkit.step(status, "scale").judged_from = None
    decision = machine.advance(status, ctx(md, 70, slo=actkit.MET, data_seconds=3600))
    assert actkit.step(decision.status, "scale").state is S.SUCCEEDED


def carried_out_half_shift(seconds: float, **step: str) -> tuple[mdapi.ModelDeployment, incapi.IncidentStatus]:
    """Half the traffic shifted to the fallback at NOW, carried out ``seconds`` later."""
    md = actkit.deployment(traffic={"fallback": "resnet-big"})
    params = {"target": "fallback", "weight": 50}
    spec = actkit.runbook({"name": "split", "action": "shiftTraffic", "params": params, "verifyAfter": "30s", **step})
    decision = machine.advance(actkit.opened(actkit.plan(SURGE, spec)), ctx(md, 0))
    return md, machine.advance(decision.status, ctx(md, seconds, done=actkit.ok(*decision.intents))).status


def test_a_restart_or_a_shift_is_judged_from_when_it_was_carried_out() -> None:
    md, status = carried_out_half_shift(4)
    split = actkit.step(status, "split")
    assert (split.judged_from, split.verify_at) == (cond.rfc3339(at(4)), cond.rfc3339(at(34)))
    assert status.timeline[-1].message.endswith(
        f"judging the SLO on data from {cond.rfc3339(at(4))} on, at {cond.rfc3339(at(34))}"
    )
    stale = machine.advance(status, ctx(md, 40, slo=actkit.MET, data_seconds=40))
    assert actkit.step(stale.status, "split").state is S.VERIFYING
    fresh = machine.advance(status, ctx(md, 40, slo=actkit.MET, data_seconds=30))
    assert actkit.step(fresh.status, "split").state is S.SUCCEEDED


def test_the_escalation_message_does_not_depend_on_when_the_verdict_was_evaluated() -> None:
    """Notifications are sent exactly once by key; their text must not vary with cycle timing."""
    md, status = carried_out_half_shift(1, onFailure="escalate")
    messages = set()
    for seconds in (31, 40):
        failed = machine.advance(status, ctx(md, seconds, data_seconds=20))
        (notify,) = failed.intents
        assert isinstance(notify, intents.Notify)
        messages.add(notify.message)
        assert "judged on data from" in (actkit.step(failed.status, "split").result or "")
    assert len(messages) == 1
    assert "step split failed: SLO Breached at verification." in messages.pop()


# --- metrics missing during verification ----------------------------------------------------


def test_missing_metrics_during_verification_are_recorded_once_in_the_step() -> None:
    md, status = effective_scale_out()
    held = machine.advance(status, ctx(md, 30, metrics=False))
    scale = actkit.step(held.status, "scale")
    assert scale.metrics_missing_since == cond.rfc3339(at(30))
    assert held.intents == ()
    assert held.status.timeline[-1].message == machine.HOLD_NO_METRICS
    # Past verifyAt and past the inconclusive window, with a stale Breached verdict: still nothing.
    for seconds in (70, 200, 630):
        later = machine.advance(held.status, ctx(md, seconds, metrics=False))
        assert later.status == held.status
        assert later.intents == ()
        assert later.events == ()
    no_data = machine.advance(held.status, ctx(md, 640, slo=sloapi.SLOState.NO_DATA))
    assert no_data.status == held.status


def test_metrics_back_after_a_long_outage_restart_verification_on_fresh_data() -> None:
    """The regression: a 10-minute outage outlived verifyAfter twice over; the first verdict after
    it (InsufficientTraffic: windows reaching into the gap read low rates) failed a step that worked."""
    md, status = effective_scale_out()
    held = machine.advance(status, ctx(md, 30, metrics=False)).status
    back = machine.advance(held, ctx(md, 630, slo=LOW_TRAFFIC, data_seconds=300))
    assert back.intents == ()
    scale = actkit.step(back.status, "scale")
    assert scale.state is S.VERIFYING
    assert scale.metrics_missing_since is None
    assert scale.judged_from == cond.rfc3339(at(630))
    assert scale.verify_at == cond.rfc3339(at(690))
    resumed = back.status.timeline[-1]
    assert (resumed.type, resumed.step) == (machine.RESUMED, "scale")
    assert resumed.message == (
        f"metrics back after 10m without: judging the SLO again on data from {cond.rfc3339(at(630))} on, "
        f"at {cond.rfc3339(at(690))}"
    )
    assert [e.reason for e in back.events] == ["VerificationRestarted"]
    # Before the new verifyAt nothing is judged; data from before the return is not taken after it.
    early = machine.advance(back.status, ctx(md, 660, slo=LOW_TRAFFIC, data_seconds=20))
    assert early.status == back.status
    stale = machine.advance(back.status, ctx(md, 700, slo=actkit.MET, data_seconds=300))
    assert actkit.step(stale.status, "scale").state is S.VERIFYING
    # An inconclusive fresh verdict gets its full extra period again, then a Met succeeds.
    low = machine.advance(back.status, ctx(md, 700, slo=LOW_TRAFFIC, data_seconds=60))
    assert actkit.step(low.status, "scale").state is S.VERIFYING
    assert "verification inconclusive (SLO InsufficientTraffic)" in low.status.timeline[-1].message
    assert cond.rfc3339(at(750)) in low.status.timeline[-1].message
    met = machine.advance(low.status, ctx(md, 720, slo=actkit.MET, data_seconds=60))
    assert actkit.step(met.status, "scale").state is S.SUCCEEDED
    assert met.intents == ()


def test_a_fresh_breach_after_the_outage_still_scales_another_round() -> None:
    md, status = effective_scale_out()
    held = machine.advance(status, ctx(md, 30, metrics=False)).status
    back = machine.advance(held, ctx(md, 630)).status
    breached = machine.advance(back, ctx(md, 690, data_seconds=60))
    assert breached.intents == (intents.Scale(6, key=f"{INCIDENT}/0-scale/2"),)


def test_a_short_gap_early_in_verification_never_brings_verify_at_forward() -> None:
    md, status = effective_scale_out()
    held = machine.advance(status, ctx(md, 12, metrics=False)).status
    back = machine.advance(held, ctx(md, 14)).status
    scale = actkit.step(back, "scale")
    assert scale.verify_at == cond.rfc3339(at(74))  # max(at(70), at(14) + 60s)
    assert scale.judged_from == cond.rfc3339(at(14))


def test_the_gap_survives_an_operator_restart_because_it_is_in_the_incident_status() -> None:
    md, status = effective_scale_out()
    held = machine.advance(status, ctx(md, 30, metrics=False)).status
    reread = incapi.IncidentStatus.model_validate(held.wire())  # what a new operator reads back
    assert actkit.step(reread, "scale").metrics_missing_since == cond.rfc3339(at(30))
    back = machine.advance(reread, ctx(md, 700, slo=LOW_TRAFFIC))
    assert actkit.step(back.status, "scale").state is S.VERIFYING
    assert back.status.timeline[-1].type == machine.RESUMED


def test_metrics_missing_before_the_action_took_effect_leave_no_gap_to_restart() -> None:
    """Until it took effect the verification clock has not started; the effect is seen after the outage."""
    md = actkit.deployment(replicas=2, maxReplicas=8)
    decision = machine.advance(actkit.opened(actkit.plan(SURGE, SCALE)), ctx(md, 0))
    md.status = intents.override(md.status, decision.intents[0], INCIDENT, 1, NOW)  # type: ignore[arg-type]
    status = machine.advance(decision.status, ctx(md, 1, done=actkit.ok(*decision.intents))).status
    held = machine.advance(status, ctx(md, 5, metrics=False)).status
    assert actkit.step(held, "scale").metrics_missing_since is None
    md.status.replicas = md.status.ready_replicas = 4  # ready during the outage
    back = machine.advance(held, ctx(md, 200)).status
    scale = actkit.step(back, "scale")
    assert (scale.judged_from, scale.verify_at) == (cond.rfc3339(at(200)), cond.rfc3339(at(260)))
    assert back.timeline[-1].type == machine.EFFECTIVE


def test_a_new_round_forgets_the_previous_rounds_gap_and_data() -> None:
    md, status = effective_scale_out()
    scale = actkit.step(status, "scale")
    scale.metrics_missing_since = cond.rfc3339(at(20))
    back = machine.advance(status, ctx(md, 21)).status
    breached = machine.advance(back, ctx(md, 90, data_seconds=60))
    scale = actkit.step(breached.status, "scale")
    assert (scale.state, scale.judged_from, scale.metrics_missing_since) == (S.INTENDED, None, None)


# --- what the worker and the fleet read -----------------------------------------------------


def test_judged_from_names_the_latest_step_judged_on_fresh_data() -> None:
    md, status = effective_scale_out()
    assert machine.judged_from(status) == (cond.rfc3339(at(10)), "scale")
    assert machine.judged_from(actkit.opened(actkit.plan(SURGE, SCALE))) is None
    assert machine.judged_from(actkit.opened(None)) is None
    back = machine.advance(machine.advance(status, ctx(md, 30, metrics=False)).status, ctx(md, 400)).status
    assert machine.judged_from(back) == (cond.rfc3339(at(400)), "scale")


def test_judged_spans_the_longest_window_of_the_verdict_up_to_its_evaluation() -> None:
    status = sloapi.SLOStatus(
        name="latency",
        state=sloapi.SLOState.MET,
        burn_rates=[sloapi.WindowBurn(window="20s"), sloapi.WindowBurn(window="1m20s")],
        last_evaluation_time=cond.rfc3339(at(100)),
    )
    judged = machine.Judged.of(status)
    assert judged == machine.Judged(since=at(20), until=at(100))
    assert str(judged) == f"judged on data from {cond.rfc3339(at(20))} to {cond.rfc3339(at(100))}"
    no_windows = status.model_copy(update={"burn_rates": []})
    assert machine.Judged.of(no_windows) == machine.Judged(since=at(100), until=at(100))
    assert machine.Judged.of(status.model_copy(update={"last_evaluation_time": None})) is None
    assert machine.Judged.of(None) is None


def test_fresh_data_survives_the_wire_in_both_resources() -> None:
    _, status = effective_scale_out()
    assert "judgedFrom" in status.wire()["plan"]["steps"][0]
    md_status = mdapi.ModelDeploymentStatus(
        fresh_data=mdapi.FreshData(since=cond.rfc3339(at(10)), incident=INCIDENT, step="scale")
    )
    assert mdapi.ModelDeploymentStatus.model_validate(md_status.wire()) == md_status
    assert md_status.wire()["freshData"] == {"since": cond.rfc3339(at(10)), "incident": INCIDENT, "step": "scale"}


def test_the_worker_moves_fresh_data_forward_only() -> None:
    md, status = effective_scale_out()
    incident = incapi.Incident(
        metadata={"name": INCIDENT, "namespace": "ml"}, spec=actkit.incident_spec(), status=status
    )
    moved = healing.fresh_data(md.status, incident)
    assert moved.fresh_data == mdapi.FreshData(since=cond.rfc3339(at(10)), incident=INCIDENT, step="scale")
    assert md.status.fresh_data is None  # a copy: the worker writes the returned status
    later = moved.model_copy(update={"fresh_data": mdapi.FreshData(since=cond.rfc3339(at(20)), incident="x", step="y")})
    assert healing.fresh_data(later, incident) is later
    nothing = incapi.Incident(metadata={"name": INCIDENT}, spec=actkit.incident_spec(), status=actkit.opened(None))
    assert healing.fresh_data(md.status, nothing) is md.status


def test_the_fleet_caps_the_serving_revisions_windows_to_fresh_data() -> None:
    md = actkit.deployment(switched_at=at(-600))
    (plain,) = op.serving_revisions(md)
    assert (plain.since, plain.origin) == (at(-600), None)
    md.status.fresh_data = mdapi.FreshData(since=cond.rfc3339(at(10)), incident=INCIDENT, step="scale")
    (fresh,) = op.serving_revisions(md)
    assert fresh.since == at(10)
    assert fresh.origin == f"the data since {cond.rfc3339(at(10))} (incident {INCIDENT}, step scale)"
    md.status.fresh_data = mdapi.FreshData(since=cond.rfc3339(at(-900)), incident=INCIDENT, step="scale")
    (older,) = op.serving_revisions(md)
    assert (older.since, older.origin) == (at(-600), None)  # a later switch wins


def shifted(md: mdapi.ModelDeployment, *splits: tuple[str, int]) -> mdapi.ModelDeployment:
    md.status.traffic = mdapi.TrafficOverride(
        splits=[mdapi.TrafficSplit(backend=b, weight=w) for b, w in splits],
        incident=INCIDENT,
        generation=1,
        since=cond.rfc3339(at(-60)),
    )
    return md


def test_a_shift_to_the_last_known_good_revision_judges_the_revision_that_takes_the_traffic() -> None:
    # Under replica ratios the breached revision runs no pods at all: judging it would read NoData
    # for ever; the deployment's traffic is what the good revision serves.
    md = shifted(actkit.deployment(switched_at=at(-600)), (actkit.GOOD, 100))
    (good,) = op.serving_revisions(md)
    assert (good.name, good.since, good.started) == (actkit.GOOD, at(-60), at(-60))


def test_a_split_over_revisions_judges_every_revision_with_a_share() -> None:
    md = shifted(actkit.deployment(switched_at=at(-600)), (actkit.BAD, 50), (actkit.GOOD, 50))
    refs = {r.name: r.since for r in op.serving_revisions(md)}
    assert refs == {actkit.BAD: at(-600), actkit.GOOD: at(-60)}


def test_a_shift_to_a_fallback_deployment_still_judges_the_current_revision() -> None:
    md = shifted(actkit.deployment(switched_at=at(-600)), ("md:resnet-big", 100))
    assert [r.name for r in op.serving_revisions(md)] == [actkit.BAD]


def test_a_verdict_on_fresh_data_says_so() -> None:
    spec = sloapi.SLOSpec(name="latency", kind=sloapi.SLOKind.QUEUE_TIME, threshold_ms=100, period="1d")
    settings = slo.Settings(min_window_seconds=20)
    origin = f"the data since {cond.rfc3339(at(10))} (incident {INCIDENT}, step scale)"
    pairs = slo.judged_pairs(spec, 50.0, settings)
    assert max(p.measured.long_seconds for p in pairs) == 40  # the ladder rung below 50s
    measurement = slo.Measurement(request_rate=5.0, min_request_rate=0.1, pairs=())
    capped = slo.Measurement(
        request_rate=5.0,
        min_request_rate=0.1,
        pairs=tuple(
            slo.PairReading(
                pair=p.measured,
                long=slo.WindowReading(p.nominal.long_seconds, p.measured.long_seconds, 10.0, 0.1),
                short=slo.WindowReading(p.nominal.short_seconds, p.measured.short_seconds, 10.0, 0.1),
            )
            for p in pairs
        ),
    )
    text = slo.describe(spec, sloapi.SLOState.MET, capped, "abc", at(10), origin)
    assert text == f"every window within its limit on revision abc (windows capped to {origin})"
    assert "capped" not in slo.describe(spec, sloapi.SLOState.MET, measurement, "abc", at(10), origin)


def test_the_fleets_verdict_after_fresh_data_rests_on_it_alone_once_min_window_has_passed() -> None:
    """The chain the e2e relies on: freshData -> capped windows -> SLOStatus -> Judged from judgedFrom on."""
    md = actkit.deployment(switched_at=at(-3600))
    md.spec.slos = [sloapi.SLOSpec(name="queue", kind=sloapi.SLOKind.QUEUE_TIME, threshold_ms=50, period="1h")]
    md.status.fresh_data = mdapi.FreshData(since=cond.rfc3339(at(10)), incident=INCIDENT, step="scale")
    settings = slo.Settings(min_window_seconds=20)
    for seconds, fresh in ((15, False), (29, False), (30, True), (31, True), (75, True), (4000, True)):
        now = at(seconds)
        target = slo.Target.of(md, op.serving_revisions(md))
        series = promql.SeriesKey(target.namespace, target.name, str(md.status.current_revision))
        results = {q.need: {series: 5.0} for q in slo.plan_fleet([target], now, settings).queries}
        (status,) = slo.evaluate(target, results, now, settings).slos
        judged = machine.Judged.of(status)
        assert judged is not None
        assert (judged.since >= at(10)) is fresh, (seconds, judged, status.burn_rates)
