"""SLO maths and verdicts: pure functions from the fleet's query results to ``SLOStatus`` objects.

Nothing here does I/O. :func:`query_plan` says which questions a cycle must ask Prometheus (a set
that does not grow with the number of deployments), :func:`evaluate` turns the answers into a
:class:`DeploymentReport` per deployment. The rules:

SLIs and burn rates (per revision, per window)
  * availability: bad = failure / (success + failure); SLI = good share in percent; burn = bad /
    (1 - objective);
  * latency, ``method: histogram``: good = bucket at ``le = thresholdMs`` / count; SLI and burn as
    above;
  * threshold SLOs (latency ``average``, queueTime, gpuMemory): the SLI is the measured value in
    the unit of its threshold (ms, or used/total for GPU memory) and the "burn rate" is
    ``value / threshold``: 1.0 is at the threshold, and the default factor of every pair is 1.0
    (:mod:`vigil.observe.windows`). They have no error budget, so ``budgetRemaining`` stays unset.
    GPU memory is an instant gauge (the fullest GPU), so all its windows read the same value.

Missing data is never a number. A counter family absent for a revision is missing, with one
exception: Triton's success and failure counters of a revision come from the same processes, so
when one of them has series and the other has none, the absent one is 0 (a revision whose every
request fails may well have no success series). Any NaN or infinite value is missing. 0/0 is
missing. Missing data makes the state ``NoData``, which never counts as met nor as breached.

States (per revision, per SLO), first match wins
  * ``InsufficientTraffic``: ``minRequestRate > 0`` and the request rate over the SLO's shortest
    window is below it (no request counters at all is ``NoData``). Every kind is gated alike, as
    the spec field says; set ``minRequestRate: 0`` to judge GPU memory on an idle deployment;
  * ``NoData``: any window of any pair has no value;
  * ``Breached``: both windows of a ``page`` pair exceed its factor;
  * ``Breached`` again, by hysteresis: the previous state was ``Breached`` and the *short* window
    of some page pair still exceeds its factor. A breach ends only when every page pair's short
    window is back under its factor; the long window may lag (it remembers the bad hour long
    after the fix), so it is not waited for. Without this a long window hovering around the
    factor would flip Breached/Warning every cycle. A ``NoData`` gap keeps the state from before
    it in ``heldState``, and hysteresis resumes from that;
  * ``Warning``: a ``ticket`` pair fires, or a page pair's short window alone exceeds its factor;
  * ``Met`` otherwise.

Young revisions are judged on their own series over windows capped to their age
(:func:`vigil.observe.windows.capped`), because a breach that needs an hour of history to show in
a 1h window would otherwise let a bad release burn for minutes before paging.

The request rates diagnosis compares (:class:`Traffic`: now, and a longer baseline) are capped
the same way, to the younger of the revision and the deployment (:func:`rate_windows`):
``rate()`` over a window longer than the data divides the few requests there are by the whole
window, so an uncapped 30m baseline of a 5-minute-old deployment reads a sixth of the real rate
and any latency breach would look like a load surge. A young deployment's current window is at
most half of its capped baseline, so what came before "now" is never shorter than "now"; data
younger than two minimum windows has no baseline. :class:`Traffic` says which windows were read,
and diagnosis quotes them as evidence.

Roll-up. A deployment's SLO state is the worst state among the revisions currently receiving
traffic, by :data:`SEVERITY`: Breached, then NoData, then InsufficientTraffic, then Warning, then
Met. "Worst" means "least able to vouch for the deployment": a revision without data or without
traffic can't be called healthy, so it outranks a mere warning. Ties go to the youngest revision,
the usual suspect. ``SLOStatus.revision`` names the revision the verdict was judged on.

The ``SLOMet`` verdict follows the worst SLO: Breached -> False; NoData -> the previous status is
held (Unknown if there is none) with reason NoData; InsufficientTraffic -> Unknown; Warning and
Met -> True.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import functools

from vigil.api import conditions
from vigil.api import modeldeployment as mdapi
from vigil.api import slo as sloapi
from vigil.observe import promql, windows

SLO_MET = "SLOMet"

SEVERITY: dict[sloapi.SLOState, int] = {
    sloapi.SLOState.MET: 0,
    sloapi.SLOState.WARNING: 1,
    sloapi.SLOState.INSUFFICIENT_TRAFFIC: 2,
    sloapi.SLOState.NO_DATA: 3,
    sloapi.SLOState.BREACHED: 4,
}

Family = promql.Family
# Read over the current rate window with the request rate: what a demand-sized scale-out needs
# (vigil.act.sizing): how busy the replicas are, and how fast their queue grows.
DEMAND_FAMILIES = (Family.BUSY, Family.QUEUE_GROWTH)


@dataclasses.dataclass(frozen=True)
class Settings:
    """How windows are floored and which windows describe a revision's traffic."""

    min_window_seconds: int = 60
    current_rate_window_seconds: int = 300
    baseline_rate_window_seconds: int = 1800


@dataclasses.dataclass(frozen=True)
class RevisionRef:
    """A revision currently receiving traffic, and when it started (its series are no older).

    ``origin`` says why its data starts at ``since`` when that is not when the revision started
    serving: an incident's action took effect then (``status.freshData``), and what came before
    describes the deployment before it. Its windows are capped to ``since`` all the same.
    ``started`` is when the revision started serving, if that is earlier than ``since``: the
    request rates diagnosis compares describe the traffic, which an action does not reset, so
    they are capped to that (:func:`rate_windows`).
    """

    name: str
    since: datetime.datetime
    origin: str | None = None
    started: datetime.datetime | None = None


@dataclasses.dataclass(frozen=True)
class Target:
    """One ModelDeployment to judge, with what its status said last time (for hysteresis and hold)."""

    namespace: str
    name: str
    generation: int
    slos: tuple[sloapi.SLOSpec, ...]
    revisions: tuple[RevisionRef, ...]
    previous: tuple[sloapi.SLOStatus, ...] = ()
    previous_condition: conditions.Condition | None = None
    created: datetime.datetime | None = None
    """The deployment's ``metadata.creationTimestamp``: none of its series is older."""

    @classmethod
    def of(cls, md: mdapi.ModelDeployment, revisions: collections.abc.Iterable[RevisionRef]) -> Target:
        """The target for ``md``, its previous SLO statuses and SLOMet condition taken from its status."""
        return cls(
            namespace=str(md.metadata.get("namespace", "")),
            name=str(md.metadata.get("name", "")),
            generation=int(md.metadata.get("generation") or 0),
            slos=tuple(md.spec.slos),
            revisions=tuple(revisions),
            previous=tuple(md.status.slos),
            previous_condition=conditions.find(md.status.conditions, SLO_MET),
            created=_created(md),
        )


def _created(md: mdapi.ModelDeployment) -> datetime.datetime | None:
    stamp = md.metadata.get("creationTimestamp")
    return conditions.parse_time(str(stamp)) if stamp else None


@dataclasses.dataclass(frozen=True)
class JudgedPair:
    """An alerting pair as specified (``nominal``) and as measured for one revision (``measured``)."""

    nominal: windows.WindowPair
    measured: windows.WindowPair


@dataclasses.dataclass(frozen=True)
class WindowReading:
    nominal_seconds: int
    seconds: int
    sli: float | None
    burn_rate: float | None


@dataclasses.dataclass(frozen=True)
class PairReading:
    pair: windows.WindowPair
    long: WindowReading
    short: WindowReading

    @property
    def complete(self) -> bool:
        return self.long.burn_rate is not None and self.short.burn_rate is not None

    @property
    def short_hot(self) -> bool:
        return self.short.burn_rate is not None and self.short.burn_rate > self.pair.factor

    @property
    def fires(self) -> bool:
        return self.short_hot and self.long.burn_rate is not None and self.long.burn_rate > self.pair.factor

    @property
    def is_page(self) -> bool:
        return self.pair.severity is windows.Severity.PAGE


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Everything the state machine looks at for one SLO of one revision."""

    request_rate: float | None
    min_request_rate: float
    pairs: tuple[PairReading, ...]
    missing: str | None = None

    def readings(self) -> tuple[WindowReading, ...]:
        """Each measured window once, shortest first."""
        by_seconds: dict[int, WindowReading] = {}
        for pair in self.pairs:
            for reading in (pair.short, pair.long):
                by_seconds.setdefault(reading.seconds, reading)
        return tuple(by_seconds[s] for s in sorted(by_seconds))


def next_state(previous: sloapi.SLOState | None, measurement: Measurement) -> sloapi.SLOState:
    """The state of one SLO of one revision, given its previous state (see the module docstring)."""
    if measurement.min_request_rate > 0:
        if measurement.request_rate is None:
            return sloapi.SLOState.NO_DATA
        if measurement.request_rate < measurement.min_request_rate:
            return sloapi.SLOState.INSUFFICIENT_TRAFFIC
    if measurement.missing is not None or not all(p.complete for p in measurement.pairs):
        return sloapi.SLOState.NO_DATA
    pages = [p for p in measurement.pairs if p.is_page]
    if any(p.fires for p in pages):
        return sloapi.SLOState.BREACHED
    page_short_hot = any(p.short_hot for p in pages)
    if previous is sloapi.SLOState.BREACHED and page_short_hot:
        return sloapi.SLOState.BREACHED
    if page_short_hot or any(p.fires for p in measurement.pairs if not p.is_page):
        return sloapi.SLOState.WARNING
    return sloapi.SLOState.MET


def judged_pairs(spec: sloapi.SLOSpec, age_seconds: float, settings: Settings) -> tuple[JudgedPair, ...]:
    """The pairs of ``spec``, each capped for a revision ``age_seconds`` old."""
    return tuple(
        JudgedPair(nominal=pair, measured=windows.capped(pair, age_seconds, settings.min_window_seconds))
        for pair in windows.pairs_for(spec, min_window=settings.min_window_seconds)
    )


def _is_histogram(spec: sloapi.SLOSpec) -> bool:
    return spec.kind is sloapi.SLOKind.LATENCY and spec.method is sloapi.LatencyMethod.HISTOGRAM


def _kind_families(spec: sloapi.SLOSpec) -> tuple[Family, ...]:
    """The windowed families :func:`_value` reads for ``spec``."""
    if spec.kind is sloapi.SLOKind.AVAILABILITY:
        return (Family.SUCCESS, Family.FAILURE)
    if _is_histogram(spec):
        return (Family.BUCKET, Family.COUNT) if spec.threshold_ms is not None else ()
    if spec.kind is sloapi.SLOKind.LATENCY:
        return (Family.DURATION, Family.SUCCESS)
    if spec.kind is sloapi.SLOKind.QUEUE_TIME:
        return (Family.QUEUE, Family.SUCCESS)
    return ()


def needs_of(spec: sloapi.SLOSpec, age_seconds: float, settings: Settings) -> set[promql.Need]:
    """The questions :func:`measure` will look up for ``spec`` on a revision of that age."""
    pairs = judged_pairs(spec, age_seconds, settings)
    seconds = {s for p in pairs for s in (p.measured.long_seconds, p.measured.short_seconds)}
    needs = {promql.Need(family, window) for family in _kind_families(spec) for window in seconds}
    if spec.kind is sloapi.SLOKind.GPU_MEMORY:
        needs.add(promql.Need(Family.GPU_MEMORY))
    # measure() reads the request rate over the shortest window whatever the kind (the status
    # reports it; minRequestRate compares with it): asked for by every SLO, so a deployment's
    # verdict never depends on whether another deployment's SLO brought that window into the cycle.
    needs.update(promql.Need(family, min(seconds)) for family in (Family.SUCCESS, Family.FAILURE))
    return needs


def base_needs(settings: Settings) -> set[promql.Need]:
    """Questions asked every cycle whatever the fleet: per-revision traffic and gauges for
    diagnosis. They also make every cycle prove that Prometheus answers, even with no targets."""
    nominal = RateWindows(settings.current_rate_window_seconds, settings.baseline_rate_window_seconds, False)
    needs = nominal.needs()
    needs.update((promql.Need(Family.PENDING), promql.Need(Family.GPU_MEMORY)))
    needs.update(promql.Need(family, settings.current_rate_window_seconds) for family in DEMAND_FAMILIES)
    return needs


def age_of(revision: RevisionRef, now: datetime.datetime) -> float:
    return (now - revision.since).total_seconds()


@dataclasses.dataclass(frozen=True)
class RateWindows:
    """The windows a revision's request rates are read over: now, and the baseline (None: too young)."""

    current_seconds: int
    baseline_seconds: int | None
    capped: bool
    """Whether either window was capped to the age of the revision or deployment."""

    def before(self) -> tuple[int, int] | None:
        """(window, offset) of the part of the baseline before the current window (None: no baseline)."""
        if self.baseline_seconds is None or self.baseline_seconds <= self.current_seconds:
            return None
        return (self.baseline_seconds - self.current_seconds, self.current_seconds)

    def needs(self) -> set[promql.Need]:
        """The questions these windows ask: both counter families now, and before (with an offset)."""
        windows = [(self.current_seconds, 0)]
        before = self.before()
        if before is not None:
            windows.append(before)
        return {promql.Need(f, w, o) for f in (Family.SUCCESS, Family.FAILURE) for w, o in windows}


def rate_windows(target: Target, revision: RevisionRef, now: datetime.datetime, settings: Settings) -> RateWindows:
    """The current and baseline rate windows for ``revision``, capped to the age of its data.

    The data is no older than the revision's start (``started``, else ``since``) and the
    deployment's creation, less half a ``min_window`` (about two scrape intervals: Prometheus
    first scrapes a new pod a scrape or two after it is ready, and a window reaching back before
    that first sample reads low). Data at least as old as the nominal baseline is read over the
    nominal windows. Younger data is read over a baseline capped like SLO windows
    (:func:`vigil.observe.windows.capped_window`) and a current window of at most half of it, so
    the part of the baseline before the current window is never shorter than the current window:
    a few minutes of honest history compare "now" with what came just before. Data younger than
    two ``min_window`` has no baseline (None), and a surge is not judged.
    """
    age = (now - (revision.started or revision.since)).total_seconds()
    if target.created is not None:
        age = min(age, (now - target.created).total_seconds())
    nominal_current, nominal_baseline = settings.current_rate_window_seconds, settings.baseline_rate_window_seconds
    floor = settings.min_window_seconds
    settled = age - floor / 2
    if nominal_baseline <= settled:
        return RateWindows(nominal_current, nominal_baseline, False)
    baseline = windows.capped_window(nominal_baseline, settled, floor)
    current = min(nominal_current, baseline // 2)
    if current < floor:
        return RateWindows(windows.capped_window(nominal_current, age, floor), None, True)
    return RateWindows(current, baseline, True)


def target_needs(target: Target, now: datetime.datetime, settings: Settings) -> tuple[set[promql.Need], set[float]]:
    """The questions and histogram thresholds one target adds to a cycle."""
    needs: set[promql.Need] = set()
    thresholds: set[float] = set()
    for revision in target.revisions:
        rates = rate_windows(target, revision, now, settings)
        needs.update(rates.needs())
        needs.update(promql.Need(family, rates.current_seconds) for family in DEMAND_FAMILIES)
    for spec in target.slos:
        if _is_histogram(spec) and spec.threshold_ms is not None:
            thresholds.add(spec.threshold_ms)
        for revision in target.revisions:
            needs.update(needs_of(spec, age_of(revision, now), settings))
    return needs, thresholds


@dataclasses.dataclass(frozen=True)
class FleetPlan:
    """One cycle's queries, the targets they cover, and the targets that could not be planned."""

    queries: tuple[promql.Query, ...]
    planned: tuple[Target, ...]
    failed: tuple[tuple[Target, Exception], ...]


Needs = tuple[collections.abc.Set[promql.Need], collections.abc.Set[float]]
"""What one target adds to a cycle: its questions and its histogram thresholds (:func:`target_needs`)."""


def plan_fleet(
    targets: collections.abc.Iterable[Target],
    now: datetime.datetime,
    settings: Settings,
    scoped: bool = False,
    needs_of_target: collections.abc.Callable[[Target, datetime.datetime, Settings], Needs] | None = None,
) -> FleetPlan:
    """Every query one cycle needs for all ``targets`` together, planned target by target.

    ``scoped``: the operator watches some namespaces only (a shard), so the queries select only
    the namespaces of the planned targets (see :mod:`vigil.observe.promql`).

    The count depends on the distinct windows in use (SLO periods, explicit windows, the bounded
    ladder of capped windows for young revisions) and on the SLO kinds, never on how many
    deployments share them. A target whose questions cannot be worked out (a spec that got past
    validation and breaks the maths) is set aside with its error; the others are planned as if it
    did not exist, so one bad object cannot blind the fleet.

    ``needs_of_target`` stands in for :func:`target_needs` (the memo's, which reuses a target's
    needs while nothing they are worked out from changed).
    """
    needs_of_target = needs_of_target or target_needs
    needs = base_needs(settings)
    thresholds: set[float] = set()
    planned: list[Target] = []
    failed: list[tuple[Target, Exception]] = []
    for target in targets:
        try:
            its_needs, its_thresholds = needs_of_target(target, now, settings)
        except Exception as error:  # isolation: whatever it is, it stays with this target
            failed.append((target, error))
            continue
        needs |= its_needs
        thresholds |= its_thresholds
        planned.append(target)
    namespaces = {target.namespace for target in planned} if scoped else None
    return FleetPlan(promql.plan(needs, thresholds, namespaces), tuple(planned), tuple(failed))


def query_plan(
    targets: collections.abc.Iterable[Target], now: datetime.datetime, settings: Settings
) -> tuple[promql.Query, ...]:
    """Every query one cycle needs for all ``targets`` together (see :func:`plan_fleet`)."""
    return plan_fleet(targets, now, settings).queries


@dataclasses.dataclass(frozen=True)
class _Lookup:
    """Reads one revision's values out of the fleet's results."""

    results: promql.Results
    namespace: str
    modeldeployment: str
    revision: str

    def get(self, family: Family, window: int | None = None, le: float | None = None, offset: int = 0) -> float | None:
        vector = self.results.get(promql.Need(family, window, offset), {})
        return vector.get(promql.SeriesKey(self.namespace, self.modeldeployment, self.revision, le))

    def counters(self, window: int, offset: int = 0) -> tuple[float, float] | None:
        """(success, failure) rates; an absent one is 0 only when its sibling has series."""
        success = self.get(Family.SUCCESS, window, offset=offset)
        failure = self.get(Family.FAILURE, window, offset=offset)
        if success is None and failure is None:
            return None
        pair = (0.0 if success is None else success, 0.0 if failure is None else failure)
        if promql.finite(pair[0]) is None or promql.finite(pair[1]) is None:
            return None
        return pair

    def request_rate(self, window: int, offset: int = 0) -> float | None:
        counters = self.counters(window, offset)
        return None if counters is None else counters[0] + counters[1]


@dataclasses.dataclass(frozen=True)
class _Value:
    sli: float | None
    burn_rate: float | None
    problem: str | None = None


def _missing(problem: str) -> _Value:
    return _Value(None, None, problem)


def _ratio_value(good: float, total: float, objective: float) -> _Value:
    if total <= 0:
        return _missing("no requests (0/0)")
    good_share = min(1.0, max(0.0, good / total))
    budget = 1.0 - objective / 100.0
    return _Value(sli=good_share * 100.0, burn_rate=(1.0 - good_share) / budget)


def _threshold_value(value: float | None, threshold: float | None, what: str) -> _Value:
    if threshold is None:
        return _missing(f"the SLO sets no threshold for {what}")
    if value is None:
        return _missing(f"no {what} data")
    return _Value(sli=value, burn_rate=value / threshold)


def _average_ms(total_us: float | None, success: float | None, what: str) -> tuple[float | None, str | None]:
    total_us, success = promql.finite(total_us), promql.finite(success)
    if total_us is None or success is None:
        return None, f"no {what} or success series"
    if success <= 0:
        return None, "no successful requests (0/0)"
    return total_us / success / 1000.0, None


def _value(spec: sloapi.SLOSpec, lookup: _Lookup, window: int) -> _Value:
    """SLI and burn rate of ``spec`` over ``window`` for one revision."""
    if spec.kind is sloapi.SLOKind.AVAILABILITY:
        counters = lookup.counters(window)
        if counters is None:
            return _missing("no request counters")
        success, failure = counters
        return _ratio_value(success, success + failure, spec.objective)
    if _is_histogram(spec):
        if spec.threshold_ms is None:
            return _missing("the SLO sets no thresholdMs")
        count = promql.finite(lookup.get(Family.COUNT, window))
        if count is None:
            return _missing("no first-response histogram")
        good = promql.finite(lookup.get(Family.BUCKET, window, le=spec.threshold_ms))
        if good is None:
            return _missing(f"no histogram bucket le={spec.threshold_ms:g} (thresholdMs must be a bucket boundary)")
        return _ratio_value(good, count, spec.objective)
    if spec.kind is sloapi.SLOKind.GPU_MEMORY:
        used = promql.finite(lookup.get(Family.GPU_MEMORY))
        return _threshold_value(used, spec.max_utilization, "GPU memory")
    family = Family.QUEUE if spec.kind is sloapi.SLOKind.QUEUE_TIME else Family.DURATION
    what = "queue-time" if family is Family.QUEUE else "request-duration"
    average, problem = _average_ms(lookup.get(family, window), lookup.get(Family.SUCCESS, window), what)
    if problem is not None:
        return _missing(problem)
    return _threshold_value(average, spec.threshold_ms, what)


def measure(
    spec: sloapi.SLOSpec, pairs: tuple[JudgedPair, ...], results: promql.Results, lookup_key: promql.SeriesKey
) -> Measurement:
    """Read ``spec``'s windows for the revision named by ``lookup_key`` out of ``results``."""
    lookup = _Lookup(results, lookup_key.namespace, lookup_key.modeldeployment, lookup_key.revision)
    values: dict[int, _Value] = {}
    readings = []
    for judged in pairs:
        window_readings = []
        for nominal, seconds in (
            (judged.nominal.long_seconds, judged.measured.long_seconds),
            (judged.nominal.short_seconds, judged.measured.short_seconds),
        ):
            if seconds not in values:
                values[seconds] = _value(spec, lookup, seconds)
            value = values[seconds]
            window_readings.append(WindowReading(nominal, seconds, value.sli, value.burn_rate))
        readings.append(PairReading(pair=judged.measured, long=window_readings[0], short=window_readings[1]))
    missing = next(
        (f"{v.problem} over {sloapi.format_duration(s)}" for s, v in sorted(values.items()) if v.problem),
        None,
    )
    return Measurement(
        request_rate=lookup.request_rate(min(values)),
        min_request_rate=spec.min_request_rate,
        pairs=tuple(readings),
        missing=missing,
    )


def budget_remaining(spec: sloapi.SLOSpec, measurement: Measurement) -> float | None:
    """Share of the period's error budget left if only the longest window's burn counted.

    ``1 - burn x window / period``: negative when that window alone overspent the budget.
    Threshold SLOs have no budget.
    """
    if windows.is_threshold(spec) or not measurement.pairs:
        return None
    longest = max((p.long for p in measurement.pairs), key=lambda r: r.seconds)
    period = sloapi.duration_seconds(spec.period)
    if longest.burn_rate is None or period <= 0:  # a period of 0s is refused by the schema; never divide by it
        return None
    return 1.0 - longest.burn_rate * longest.seconds / period


@dataclasses.dataclass(frozen=True)
class Judgement:
    """One SLO of one revision: its state and the numbers behind it."""

    slo: str
    revision: str
    since: datetime.datetime
    """When the data it was judged on starts (the revision's ``since``): no clock in a judgement."""
    state: sloapi.SLOState
    measurement: Measurement
    budget_remaining: float | None
    message: str

    @property
    def sli(self) -> float | None:
        readings = self.measurement.readings()
        return readings[0].sli if readings else None

    def window_burns(self) -> list[sloapi.WindowBurn]:
        return [
            sloapi.WindowBurn(
                window=sloapi.format_duration(r.seconds), burn_rate=_rounded(r.burn_rate), sli=_rounded(r.sli)
            )
            for r in self.measurement.readings()
        ]


def _rounded(value: float | None) -> float | None:
    """Six significant digits: enough to read, and no status churn from float noise."""
    return None if value is None else float(f"{value:.6g}")


def _amount(spec: sloapi.SLOSpec, reading: WindowReading) -> str:
    """A window's reading in words: the burn rate of a ratio SLO, the value of a threshold SLO."""
    if windows.is_threshold(spec):
        return _in_unit(spec, reading.sli or 0.0)
    return f"{reading.burn_rate or 0.0:.3g}x"


def _limit(spec: sloapi.SLOSpec, factor: float) -> str:
    if not windows.is_threshold(spec):
        return f"factor {factor:g}"
    threshold = spec.max_utilization if spec.kind is sloapi.SLOKind.GPU_MEMORY else spec.threshold_ms
    return f"limit {_in_unit(spec, factor * (threshold or 0.0))}"


def _in_unit(spec: sloapi.SLOSpec, value: float) -> str:
    return f"{value:.1%}" if spec.kind is sloapi.SLOKind.GPU_MEMORY else f"{value:.3g}ms"


def _pair_text(spec: sloapi.SLOSpec, pair: PairReading) -> str:
    verb = "reads" if windows.is_threshold(spec) else "burns"
    return (
        f"{pair.pair.severity} pair {verb} {_amount(spec, pair.short)} over {pair.pair.short} and "
        f"{_amount(spec, pair.long)} over {pair.pair.long} ({_limit(spec, pair.pair.factor)})"
    )


def _short_text(spec: sloapi.SLOSpec, pair: PairReading, how: str) -> str:
    verb = "reads" if windows.is_threshold(spec) else "burns"
    return (
        f"short window {pair.pair.short} {how} {verb} {_amount(spec, pair.short)} "
        f"(page {_limit(spec, pair.pair.factor)})"
    )


def where_judged(revision: str, capped: bool, since: datetime.datetime, origin: str | None = None) -> str:
    """Which data a verdict was judged on, as its message says it: the revision, and for windows
    capped to the age of the data, when that data starts (``origin``, or the revision's ``since``).

    The start, not the age: an age changes every cycle, so a message quoting it would change as
    the revision ages, and each such change is a status write (numbers moved, see
    :func:`vigil.observe.merge.drift`) and a judgement the memo cannot reuse: at 1,000 young
    deployments, eight writes a second for the first hour. The start says the same and is fixed.
    """
    where = f"on revision {revision}"
    if capped:
        where += f" (windows capped to {origin or f'its age: data since {conditions.rfc3339(since)}'})"
    return where


def describe(
    spec: sloapi.SLOSpec,
    state: sloapi.SLOState,
    measurement: Measurement,
    revision: str,
    since: datetime.datetime,
    origin: str | None = None,
) -> str:
    """The human reason for ``state``, naming the windows that decided it."""
    capped = any(
        (p.pair.long_seconds, p.pair.short_seconds) != (p.long.nominal_seconds, p.short.nominal_seconds)
        for p in measurement.pairs
    )
    where = where_judged(revision, capped, since, origin)
    pages = [p for p in measurement.pairs if p.is_page]
    hot = next((p for p in pages if p.short_hot), None)
    if state is sloapi.SLOState.INSUFFICIENT_TRAFFIC:
        rate = measurement.request_rate or 0.0
        return f"{rate:.3g} req/s is below minRequestRate {measurement.min_request_rate:g} {where}"
    if state is sloapi.SLOState.NO_DATA:
        return f"{measurement.missing or 'no request counters'} {where}"
    if state is sloapi.SLOState.BREACHED:
        firing = next((p for p in pages if p.fires), None)
        if firing is not None:
            return f"{_pair_text(spec, firing)} {where}"
        if hot is not None:
            return f"{_short_text(spec, hot, 'still')}, the breach holds {where}"
    if state is sloapi.SLOState.WARNING:
        ticket = next((p for p in measurement.pairs if p.fires and not p.is_page), None)
        if ticket is not None:
            return f"{_pair_text(spec, ticket)} {where}"
        if hot is not None:
            return f"{_short_text(spec, hot, 'alone')} {where}"
    bound = "limit" if windows.is_threshold(spec) else "factor"
    return f"every window within its {bound} {where}"


def judge(
    spec: sloapi.SLOSpec,
    revision: RevisionRef,
    results: promql.Results,
    target: Target,
    now: datetime.datetime,
    settings: Settings,
) -> Judgement:
    """Judge one SLO of one revision."""
    age = age_of(revision, now)
    measurement = measure(
        spec,
        judged_pairs(spec, age, settings),
        results,
        promql.SeriesKey(target.namespace, target.name, revision.name),
    )
    state = next_state(previous_state(target.previous, spec.name, revision.name), measurement)
    return Judgement(
        slo=spec.name,
        revision=revision.name,
        since=revision.since,
        state=state,
        measurement=measurement,
        budget_remaining=budget_remaining(spec, measurement),
        message=describe(spec, state, measurement, revision.name, revision.since, revision.origin),
    )


def previous_state(
    previous: collections.abc.Iterable[sloapi.SLOStatus], slo: str, revision: str
) -> sloapi.SLOState | None:
    """The last state of ``slo`` if it was judged on ``revision`` (the only memory hysteresis has).

    Through a metrics gap it is the state held from before the gap, so a breach that is still hot
    when the data comes back stays a breach instead of starting over as a warning.
    """
    found = next((s for s in previous if s.name == slo), None)
    if found is None or found.revision != revision:
        return None
    if found.state is sloapi.SLOState.NO_DATA and found.held_state is not None:
        return found.held_state
    return found.state


def worst(judgements: collections.abc.Iterable[Judgement]) -> Judgement | None:
    """The judgement that decides a deployment: highest :data:`SEVERITY`, then youngest revision."""
    # The youngest is the one whose data starts last (the same order as by age at any instant).
    return max(judgements, key=lambda j: (SEVERITY[j.state], j.since), default=None)


def roll_up(
    spec: sloapi.SLOSpec,
    judgements: collections.abc.Sequence[Judgement],
    previous: sloapi.SLOStatus | None,
    now: datetime.datetime,
) -> sloapi.SLOStatus:
    """The deployment's ``SLOStatus`` for ``spec`` from its revisions' judgements."""
    decisive = worst(judgements)
    if decisive is None:
        state, message = sloapi.SLOState.INSUFFICIENT_TRAFFIC, "no revision receives traffic"
    else:
        state, message = decisive.state, decisive.message
        others = [f"{j.revision} {j.state}" for j in judgements if j is not decisive]
        if others:
            message += f"; other revisions: {', '.join(others)}"
    revision = None if decisive is None else decisive.revision
    held = None
    # Held only for the revision it was judged on, as hysteresis only remembers that one.
    if state is sloapi.SLOState.NO_DATA and previous is not None and previous.revision == revision:
        held = previous.held_state if previous.state is sloapi.SLOState.NO_DATA else previous.state
    transition = transition_time(previous, state, now)
    return sloapi.SLOStatus(
        name=spec.name,
        state=state,
        sli=None if decisive is None else _rounded(decisive.sli),
        request_rate=None if decisive is None else _rounded(decisive.measurement.request_rate),
        burn_rates=[] if decisive is None else decisive.window_burns(),
        budget_remaining=None if decisive is None else _rounded(decisive.budget_remaining),
        revision=revision,
        held_state=held,
        message=message,
        last_transition_time=transition,
        last_evaluation_time=_stamp(now),
    )


def transition_time(previous: sloapi.SLOStatus | None, state: sloapi.SLOState, now: datetime.datetime) -> str:
    """``lastTransitionTime`` of an SLO judged ``state`` at ``now``: kept while the state holds."""
    if previous is not None and previous.state is state and previous.last_transition_time:
        return previous.last_transition_time
    return _stamp(now)


@functools.lru_cache(maxsize=4)  # one instant per cycle, stamped on every SLO of the fleet
def _stamp(now: datetime.datetime) -> str:
    return conditions.rfc3339(now)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the ``SLOMet`` condition should say."""

    status: conditions.ConditionStatus
    reason: str
    message: str


def slo_met_verdict(
    statuses: collections.abc.Sequence[sloapi.SLOStatus], previous: conditions.Condition | None
) -> Verdict:
    """The ``SLOMet`` condition from a deployment's SLO states (see the module docstring)."""
    if not statuses:
        return Verdict(conditions.ConditionStatus.TRUE, "NoSLOs", "no SLOs declared")
    state = max((s.state for s in statuses), key=SEVERITY.__getitem__)
    named = [s for s in statuses if s.state is state]
    detail = "; ".join(f"{s.name}: {s.message}" for s in named)
    if state is sloapi.SLOState.NO_DATA:
        held = previous.status if previous is not None else conditions.ConditionStatus.UNKNOWN
        names = ", ".join(s.name for s in named)
        return Verdict(held, state.value, f"no data for {names}; holding the previous verdict ({held}): {detail}")
    status = {
        sloapi.SLOState.BREACHED: conditions.ConditionStatus.FALSE,
        sloapi.SLOState.INSUFFICIENT_TRAFFIC: conditions.ConditionStatus.UNKNOWN,
    }.get(state, conditions.ConditionStatus.TRUE)
    return Verdict(status, state.value, detail)


@dataclasses.dataclass(frozen=True)
class Traffic:
    """A revision's traffic for diagnosis: now, and the baseline before it to compare with.

    ``baseline_request_rate`` is the rate over the part of the baseline window *before* the
    current window, read as its own ``rate()`` with an ``offset`` (:meth:`RateWindows.before`), so
    the requests of a surge do not dilute the baseline they are compared with; for a young
    deployment that part is capped by :func:`rate_windows` to be no shorter than the current
    window. (Subtracting the current average from the baseline's would not do: each ``rate()``
    extrapolates its own window's slope to its edges, so right after a step up the difference read
    12 req/s for a steady 20.)
    ``windows`` says which windows the rates were read over (None: the defaults, uncapped).
    ``busy_replicas`` (the pods' mean GPU utilisation over the current window, summed) and
    ``queue_growth`` (req/s by which the queued requests grew over it) size a scale-out from the
    measured demand (:mod:`vigil.act.sizing`).
    """

    request_rate: float | None
    baseline_request_rate: float | None
    error_ratio: float | None
    pending_requests: float | None
    gpu_memory_utilization: float | None
    windows: RateWindows | None = None
    busy_replicas: float | None = None
    queue_growth: float | None = None


def traffic_of(
    lookup_key: promql.SeriesKey, results: promql.Results, settings: Settings, rates: RateWindows | None = None
) -> Traffic:
    """The revision's traffic over ``rates`` (by default the settings' windows, uncapped)."""
    if rates is None:
        rates = RateWindows(settings.current_rate_window_seconds, settings.baseline_rate_window_seconds, False)
    lookup = _Lookup(results, lookup_key.namespace, lookup_key.modeldeployment, lookup_key.revision)
    current = lookup.counters(rates.current_seconds)
    total = None if current is None else current[0] + current[1]
    before = rates.before()
    baseline = None if before is None else lookup.request_rate(*before)
    return Traffic(
        request_rate=total,
        baseline_request_rate=baseline,
        error_ratio=None if current is None or not total else current[1] / total,
        pending_requests=promql.finite(lookup.get(Family.PENDING)),
        gpu_memory_utilization=promql.finite(lookup.get(Family.GPU_MEMORY)),
        windows=rates,
        busy_replicas=promql.finite(lookup.get(Family.BUSY, rates.current_seconds)),
        queue_growth=promql.finite(lookup.get(Family.QUEUE_GROWTH, rates.current_seconds)),
    )


@dataclasses.dataclass(frozen=True)
class RevisionReport:
    revision: str
    since: datetime.datetime
    traffic: Traffic
    judgements: tuple[Judgement, ...]

    @property
    def slo_met(self) -> bool | None:
        """False if any SLO is breached, None if any can't be judged, True otherwise."""
        states = {j.state for j in self.judgements}
        if sloapi.SLOState.BREACHED in states:
            return False
        if states & {sloapi.SLOState.NO_DATA, sloapi.SLOState.INSUFFICIENT_TRAFFIC}:
            return None
        return True


@dataclasses.dataclass(frozen=True)
class DeploymentReport:
    """One deployment's evaluation: the status to write, the verdict, and per-revision detail."""

    namespace: str
    name: str
    generation: int
    slos: tuple[sloapi.SLOStatus, ...]
    verdict: Verdict
    revisions: tuple[RevisionReport, ...]
    no_data_warnings: tuple[str, ...] = ()

    def slo_met_by_revision(self) -> dict[str, bool | None]:
        return {r.revision: r.slo_met for r in self.revisions}

    def decisive(self, status: sloapi.SLOStatus) -> Judgement | None:
        """The judgement ``status`` was rolled up from (None without serving revisions)."""
        report = next((r for r in self.revisions if r.revision == status.revision), None)
        if report is None:
            return None
        return next((j for j in report.judgements if j.slo == status.name), None)


def evaluate(target: Target, results: promql.Results, now: datetime.datetime, settings: Settings) -> DeploymentReport:
    """Judge every SLO of ``target`` on each revision receiving traffic, and roll them up."""
    reports = tuple(
        RevisionReport(
            revision=revision.name,
            since=revision.since,
            traffic=traffic_of(
                promql.SeriesKey(target.namespace, target.name, revision.name),
                results,
                settings,
                rate_windows(target, revision, now, settings),
            ),
            judgements=tuple(judge(spec, revision, results, target, now, settings) for spec in target.slos),
        )
        for revision in target.revisions
    )
    statuses = tuple(
        roll_up(
            spec,
            [r.judgements[i] for r in reports],
            next((p for p in target.previous if p.name == spec.name), None),
            now,
        )
        for i, spec in enumerate(target.slos)
    )
    warnings = tuple(
        f"SLO {status.name}: {status.message}"
        for spec, status in zip(target.slos, statuses, strict=True)
        if status.state is sloapi.SLOState.NO_DATA and spec.no_data_policy is sloapi.NoDataPolicy.WARN
    )
    return DeploymentReport(
        namespace=target.namespace,
        name=target.name,
        generation=target.generation,
        slos=statuses,
        verdict=slo_met_verdict(statuses, target.previous_condition),
        revisions=reports,
        no_data_warnings=warnings,
    )


# -- what a judgement reads from the clock (for vigil.observe.memo) --------------------------------


def clock(target: Target, now: datetime.datetime, settings: Settings) -> tuple[object, ...]:
    """Everything :func:`evaluate` derives from ``now`` besides what :func:`restamp` writes.

    Per revision: its rate windows and each SLO's alerting pairs as capped for its age (a message
    says when capped data starts, never the age: :func:`where_judged`). Two instants with equal
    clocks judge the same target on the same series alike, but for the status timestamps. Keep
    this in step with :func:`evaluate`: the memo's tests compare both on every cycle.
    """
    parts: list[object] = [rate_windows(target, revision, now, settings) for revision in target.revisions]
    for revision in target.revisions:
        age = age_of(revision, now)
        parts.extend(judged_pairs(spec, age, settings) for spec in target.slos)
    return tuple(parts)


def restamp(report: DeploymentReport, target: Target, now: datetime.datetime) -> DeploymentReport:
    """``report``, judged on ``target`` at an instant with the same :func:`clock`, as judged at ``now``:
    each SLO's ``lastEvaluationTime`` and ``lastTransitionTime``, written by the same functions
    :func:`evaluate` uses. Copies: the cached report is never changed."""
    stamp = _stamp(now)
    slos = tuple(
        status.model_copy(
            update={
                "last_evaluation_time": stamp,
                "last_transition_time": transition_time(
                    next((p for p in target.previous if p.name == status.name), None), status.state, now
                ),
            }
        )
        for status in report.slos
    )
    return dataclasses.replace(report, slos=slos)
