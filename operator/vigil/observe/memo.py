"""Judging only what changed: a deployment's last SLO report reused while none of its inputs moved.

Most of a large fleet is idle from one cycle to the next: the same status, the same series values
(an idle deployment's rates stay exactly 0), windows that did not move. Judging it again costs
about a quarter of a millisecond per SLO and revision (at 1,000 deployments most of the
operator's CPU) and gives the same report. :class:`Memo` keeps each deployment's last report with
everything it was computed from and, when all of it is equal, returns that report restamped
instead of judging again.

Exact, by what :func:`vigil.observe.slo.evaluate` reads:

* the target (spec, revisions, previous statuses and ``SLOMet`` condition): compared whole;
* its own deployment's series only (``SeriesKey(namespace, name, ...)``): the memo judges on that
  slice of the cycle's answers (:func:`vigil.observe.promql.by_deployment`), so a read outside it
  would change the verdict, which the tests would see; compared whole (a NaN never equals
  itself, so a deployment with a NaN is simply judged again);
* the settings: compared whole;
* the clock, through each revision's age: the capped alerting and rate windows and the age that
  messages quote (:func:`vigil.observe.slo.clock`): compared; and the age itself and the status
  timestamps (``lastEvaluationTime``, ``lastTransitionTime`` of a new state), which
  :func:`vigil.observe.slo.restamp` writes with the same functions a full judgement uses.

Anything unequal, or a deployment seen for the first time, is judged in full. The unit tests
compare the memo's report with a full judgement on every cycle of randomised fleets over time.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime

from vigil.observe import promql, slo

Key = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class _Entry:
    target: slo.Target
    series: promql.Results
    settings: slo.Settings
    clock: tuple[object, ...]
    report: slo.DeploymentReport


class Memo:
    """The last report of each deployment, with what it was judged on."""

    def __init__(self) -> None:
        self._entries: dict[Key, _Entry] = {}
        self.reused = 0
        """Reports reused since the last :meth:`retain` (one cycle)."""
        self.judged = 0
        """Reports judged in full since the last :meth:`retain`."""

    def evaluate(
        self, target: slo.Target, series: promql.Results, now: datetime.datetime, settings: slo.Settings
    ) -> slo.DeploymentReport:
        """``slo.evaluate(target, series, now, settings)``, reusing the last report when it is the same.

        ``series`` must hold every answer about this target's deployment (its slice of the cycle's
        results); it may hold no other deployment's.
        """
        key = (target.namespace, target.name)
        clock = slo.clock(target, now, settings)
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

    def retain(self, keys: collections.abc.Iterable[Key]) -> None:
        """Forget every deployment but ``keys`` (the ones still evaluated) and start counting a new cycle."""
        wanted = set(keys)
        self._entries = {key: entry for key, entry in self._entries.items() if key in wanted}
        self.reused = self.judged = 0

    def __len__(self) -> int:
        return len(self._entries)
