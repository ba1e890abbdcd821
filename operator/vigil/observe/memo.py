"""Judging only what changed: a deployment's last SLO report reused while none of its inputs moved.

Most of a large fleet is idle from one cycle to the next: the same status, the same series values
(an idle deployment's rates stay exactly 0), windows that did not move. Judging it again costs
about a quarter of a millisecond per SLO and revision (at 1,000 deployments most of the
operator's CPU) and gives the same report. :class:`Memo` keeps each deployment's last report with
everything it was computed from and, when all of it is equal, returns that report restamped
instead of judging again.

Exact, by what :func:`vigil.observe.slo.evaluate` reads:

* the target (spec, revisions, previous statuses and ``SLOMet`` condition): compared whole;
* its own deployment's series (``SeriesKey(namespace, name, ...)``) of the questions it reads
  (its :func:`vigil.observe.slo.target_needs` and the fleet's base needs): the memo judges on
  that part of the cycle's answers alone, so a read outside it would change the verdict, which
  the tests would see (and a window that another deployment's young revision brings into the
  cycle leaves this one's report reused); compared whole (a NaN never equals itself, so a
  deployment with a NaN is simply judged again);
* the settings: compared whole;
* the clock, through each revision's age: the capped alerting and rate windows
  (:func:`vigil.observe.slo.clock`; messages say when capped data starts, not the age): compared;
  and the status timestamps (``lastEvaluationTime``, ``lastTransitionTime`` of a new state), which
  :func:`vigil.observe.slo.restamp` writes with the same functions a full judgement uses.

Anything unequal, or a deployment seen for the first time, is judged in full. The unit tests
compare the memo's report with a full judgement on every cycle of randomised fleets over time.

Planning, likewise: a deployment's questions (:func:`vigil.observe.slo.target_needs`) are worked
out from its SLO specs, revisions and creation time, the settings, and the same clock (its rate
windows and capped alerting pairs), so :meth:`Memo.plan` reuses them while all of these are equal,
and the clock it computed for a target serves that target's judgement in the same cycle. Its
plan is compared with :func:`vigil.observe.slo.plan_fleet` on every cycle of the same fleets.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import typing

from vigil.api import slo as sloapi
from vigil.observe import promql, slo

Key = tuple[str, str]
T = typing.TypeVar("T")
SHARED_LIMIT = 4096


@dataclasses.dataclass(frozen=True)
class _Entry:
    target: slo.Target
    series: promql.Results
    settings: slo.Settings
    clock: tuple[object, ...]
    report: slo.DeploymentReport


@dataclasses.dataclass(frozen=True)
class _Planned:
    slos: tuple[sloapi.SLOSpec, ...]
    revisions: tuple[slo.RevisionRef, ...]
    created: datetime.datetime | None
    settings: slo.Settings
    clock: tuple[object, ...]
    needs: slo.Needs
    reads: frozenset[promql.Need]
    """What a judgement of the target may read: its needs and the fleet's base needs."""


@dataclasses.dataclass(frozen=True)
class _Cycle:
    """What :meth:`Memo.plan` worked out for one target this cycle, for its judgement."""

    target: slo.Target
    now: datetime.datetime
    settings: slo.Settings
    clock: tuple[object, ...]
    reads: frozenset[promql.Need]


class Memo:
    """The last report of each deployment, with what it was judged on."""

    def __init__(self) -> None:
        self._entries: dict[Key, _Entry] = {}
        self._planned: dict[Key, _Planned] = {}
        self._cycle: dict[Key, _Cycle] = {}
        # One object per distinct set of needs: a fleet shares a handful (about 5 KiB per deployment otherwise).
        self._shared: dict[frozenset[typing.Any], frozenset[typing.Any]] = {}
        self.reused = 0
        """Reports reused since the last :meth:`retain` (one cycle)."""
        self.judged = 0
        """Reports judged in full since the last :meth:`retain`."""

    def evaluate(
        self, target: slo.Target, series: promql.Results, now: datetime.datetime, settings: slo.Settings
    ) -> slo.DeploymentReport:
        """``slo.evaluate(target, series, now, settings)``, reusing the last report when it is the same.

        ``series`` must hold every answer about this target's deployment (its slice of the cycle's
        results); it may hold no other deployment's. Only the answers a judgement of it reads are
        compared and judged on (its needs and the base needs): a window another deployment brought
        into the cycle (a young revision's) does not make every deployment's slice new.
        """
        key = (target.namespace, target.name)
        clock, reads = self._worked_out(key, target, now, settings)
        series = {need: found for need in reads if (found := series.get(need)) is not None}
        entry = self._entries.get(key)
        if (
            entry is not None
            and entry.clock == clock
            and entry.series == series
            and entry.settings == settings
            and entry.target == target
        ):
            self.reused += 1
            return slo.restamp(entry.report, target, now)
        self._entries.pop(key, None)  # a judgement that raises leaves nothing behind
        report = slo.evaluate(target, series, now, settings)
        self._entries[key] = _Entry(target, series, settings, clock, report)
        self.judged += 1
        return report

    def plan(
        self,
        targets: collections.abc.Iterable[slo.Target],
        now: datetime.datetime,
        settings: slo.Settings,
        scoped: bool = False,
    ) -> slo.FleetPlan:
        """``slo.plan_fleet(targets, now, settings, scoped)``, each target's needs reused while the
        same (see the module docstring)."""
        self._cycle = {}
        return slo.plan_fleet(targets, now, settings, scoped, self._needs)

    def _needs(self, target: slo.Target, now: datetime.datetime, settings: slo.Settings) -> slo.Needs:
        key = (target.namespace, target.name)
        clock = slo.clock(target, now, settings)
        known = self._planned.get(key)
        if not (
            known is not None
            and known.clock == clock
            and known.settings == settings
            and known.revisions == target.revisions
            and known.created == target.created
            and known.slos == target.slos
        ):
            self._planned.pop(key, None)
            needs, thresholds = slo.target_needs(target, now, settings)
            known = _Planned(
                target.slos,
                target.revisions,
                target.created,
                settings,
                clock,
                (self._share(frozenset(needs)), self._share(frozenset(thresholds))),
                self._share(frozenset(needs | slo.base_needs(settings))),
            )
            self._planned[key] = known
        self._cycle[key] = _Cycle(target, now, settings, clock, known.reads)
        return known.needs

    def _share(self, found: frozenset[T]) -> frozenset[T]:
        shared: frozenset[T] = self._shared.setdefault(found, found)
        if len(self._shared) > SHARED_LIMIT:  # never grows without bound (windows move with age)
            self._shared = {found: found}
        return shared

    def _worked_out(
        self, key: Key, target: slo.Target, now: datetime.datetime, settings: slo.Settings
    ) -> tuple[tuple[object, ...], frozenset[promql.Need]]:
        """The clock and read set :meth:`plan` worked out for this very target this cycle, else now."""
        known = self._cycle.get(key)
        if known is not None and known.target is target and known.now == now and known.settings == settings:
            return known.clock, known.reads
        needs, _ = slo.target_needs(target, now, settings)
        return slo.clock(target, now, settings), frozenset(needs | slo.base_needs(settings))

    def retain(self, keys: collections.abc.Iterable[Key]) -> None:
        """Forget every deployment but ``keys`` (the ones still evaluated) and start counting a new cycle."""
        wanted = set(keys)
        self._entries = {key: entry for key, entry in self._entries.items() if key in wanted}
        self._planned = {key: planned for key, planned in self._planned.items() if key in wanted}
        self._cycle = {}
        self.reused = self.judged = 0

    def __len__(self) -> int:
        return len(self._entries)
