"""Classify the likely cause of an SLO breach; every verdict carries the evidence that made it.

A runbook picks its steps by cause (rollback for a bad rollout, scale-out for a load surge, ...),
so a wrong cause makes vigil do the wrong thing. The rules are therefore conservative: a cause
is named only on evidence that was actually measured, and missing data never stands in for a
fact (safety rule 1). What could not be judged is said, as ``missingData`` evidence, so a human
reading the Incident sees what vigil did *not* know.

The causes, each judged on its own:

``BadRollout``
  The serving revision changed at most ``rollout_window`` (default 30m) before the breach
  began, the breach was judged on that new revision, and the breached SLO burns worse on it than
  on the previous revision (``new > previous x worse_factor``), or the previous revision has no
  data to compare with. A switch *after* the breach began is not its cause (it may well be
  vigil's own rollback). The new revision's burn must be known: without it nothing is blamed.
``CrashingPods``
  Scheduled pods of the serving revision fail (:func:`failing`): a container whose current
  state has a failure reason (``CrashLoopBackOff``, ``OOMKilled``, ``Error``, image pull
  errors, ...) or a non-zero exit code, a container not ready after at least one restart, a pod
  the kubelet failed (``Evicted``), or a ready container that restarted ``restart_threshold``
  (default 3) times or more, the last time within ``flap_window`` (default 10m): flapping. A pod
  that is not ready with no restarts and no failure reason is starting up, and is not counted;
  a ready pod whose restarts are old has recovered.
``Capacity``
  Pods of the serving revision are not scheduled because the scheduler cannot place them
  (:func:`unschedulable`): reason ``Unschedulable``, or a scheduler message naming
  ``Insufficient`` resources, ``Unschedulable`` or ``0/N nodes are available``. Pending pods
  without such a message (still being scheduled, pulling images) are not counted.

The pod facts are what the API server reported (:mod:`vigil.diagnose.pods`), and the evidence
quotes them: restart counts, reasons, exit codes and the scheduler's message as observed.
``LoadSurge``
  The offered request rate (served, plus the growth of the queue: an overloaded deployment
  serves no more than its capacity, however much arrives) is at least ``surge_factor``
  (default 1.5) times its baseline, or above the baseline with the serving revision's replicas
  ``saturated`` (mean GPU utilisation over the current window at least 80 %, or their queue
  growing: more arrives than they complete; the mean utilisation lags a rising load by half its
  window, the queue does not): a deployment already running hot breaches on a smaller rise, and
  more replicas are still the remedy), and the
  breached SLO is of a load-driven kind (``surge_kinds``: latency and queueTime by default). A
  surge next to an availability or GPU-memory breach is shown as evidence but not blamed. Both
  rates must be known and the baseline positive. Both are read over windows capped to the age
  of the data (the younger of the revision and the deployment, see
  :func:`vigil.observe.slo.rate_windows`: a young deployment's current window is at most half its
  baseline), and the evidence names the windows. Data younger than two minimum windows has no
  baseline, and no surge is judged.

Pods are considered when their revision is the current or the breached one, or unknown; pods
of a revision still rolling out receive no traffic and cannot cause the breach.

Precedence, when several causes apply: **BadRollout > CrashingPods > Capacity > LoadSurge**,
else ``Unknown``. The rule: prefer the cause closest to the deployment itself, and among those
the one whose remedy also removes the others' symptoms.

* A revision measurably worse than its predecessor also explains its pods crashing and its
  latency under a surge, and rolling back to the warm previous revision is the quickest remedy
  and needs no new capacity.
* Failing pods of the serving revision shrink its capacity and look like a surge from the
  outside; scaling out would only add more failing pods, so the failure is named first.
* Pods the scheduler cannot place mean a scale-out (the remedy for a surge) cannot work: naming
  ``Capacity`` sends the runbook to the steps that can (shift traffic, escalate) instead of
  another futile scale-out.
* A surge is demand from outside: blamed only when nothing inside the deployment explains the
  breach.

Every cause that applies contributes its evidence: the chosen cause's first, then the others'
in precedence order, then facts that were checked and ruled out, then missing data. The summary
names the chosen cause and lists the others that also apply.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Mapping

from vigil.api import incident as incapi
from vigil.api import runbook as rbapi
from vigil.api import slo as sloapi
from vigil.diagnose import pods as podfacts

# Evidence kinds, as written into Incident.status.diagnosis.evidence[].kind.
REVISION_CHANGE = "revisionChange"
REVISION_BURN = "revisionBurn"
REQUEST_RATE = "requestRate"
PENDING_PODS = "pendingPods"
CRASHING_PODS = "crashingPods"
MISSING_DATA = "missingData"

PRECEDENCE: tuple[rbapi.Cause, ...] = (
    rbapi.Cause.BAD_ROLLOUT,
    rbapi.Cause.CRASHING_PODS,
    rbapi.Cause.CAPACITY,
    rbapi.Cause.LOAD_SURGE,
)

# Container waiting/terminated reasons that mean "this pod fails", whatever its restart count.
FAILURE_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "OOMKilled",
        "Error",
        "ContainerCannotRun",
        "CreateContainerError",
        "CreateContainerConfigError",
        "RunContainerError",
        "StartError",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "Evicted",
    }
)

_UNSCHEDULABLE = re.compile(r"insufficient|unschedulable|\b0/\d+ nodes are available", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Symptoms:
    """Everything known about one breach when it is diagnosed.

    ``per_revision_burn`` maps a revision to the breached SLO's burn rate on it (the short window
    of its alerting pair, so both revisions are judged alike; for threshold SLOs the
    value/threshold ratio). Any measure where higher is worse and all revisions share a unit
    works, such as the error ratio for availability. ``None`` (or an absent key) is no data.
    ``request_rate`` and ``baseline_request_rate`` are requests/s now (e.g. over 5m) and over a
    longer baseline (e.g. 30m), read over ``rate_window_seconds`` and ``baseline_window_seconds``
    (None: unknown, or for the baseline: the data is too young for one); the baseline rate is the
    part of its window before the current window (:class:`vigil.observe.slo.Traffic`); ``windows_capped`` says
    they were capped to the age of the data. ``queue_growth``: req/s by which the queued requests
    grew over the current window (arrived, not served: an overloaded deployment's served rate
    cannot rise with the load, its queue can). ``busy``: the serving revision's mean GPU
    utilisation over the current window (0-1; None: not reported, e.g. CPU-only pods).
    ``pods`` are the deployment's live pods as observed.
    """

    now: datetime.datetime
    slo_name: str
    slo_kind: sloapi.SLOKind
    breach_started: datetime.datetime | None
    current_revision: str | None
    breached_revision: str | None = None
    previous_revision: str | None = None
    revision_switched_at: datetime.datetime | None = None
    request_rate: float | None = None
    baseline_request_rate: float | None = None
    rate_window_seconds: int | None = None
    baseline_window_seconds: int | None = None
    windows_capped: bool = False
    queue_growth: float | None = None
    busy: float | None = None
    pods: tuple[podfacts.PodFacts, ...] = ()
    per_revision_burn: Mapping[str, float | None] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Settings:
    """The thresholds of the rules (see the module docstring)."""

    rollout_window: datetime.timedelta = datetime.timedelta(minutes=30)
    worse_factor: float = 1.0
    surge_factor: float = 1.5
    saturated: float = 0.8
    surge_kinds: frozenset[sloapi.SLOKind] = frozenset({sloapi.SLOKind.LATENCY, sloapi.SLOKind.QUEUE_TIME})
    restart_threshold: int = 3
    flap_window: datetime.timedelta = datetime.timedelta(minutes=10)
    listed_pods: int = 3

    def __post_init__(self) -> None:
        if self.rollout_window <= datetime.timedelta(0):
            raise ValueError("rollout_window must be positive")
        if self.worse_factor <= 0:
            raise ValueError("worse_factor must be positive")
        if self.surge_factor <= 1:
            raise ValueError("surge_factor must be above 1")
        if not 0 < self.saturated <= 1:
            raise ValueError("saturated must be in (0, 1]")
        if self.restart_threshold < 1:
            raise ValueError("restart_threshold must be at least 1")
        if self.flap_window <= datetime.timedelta(0):
            raise ValueError("flap_window must be positive")
        if self.listed_pods < 1:
            raise ValueError("listed_pods must be at least 1")


DEFAULT_SETTINGS = Settings()


@dataclasses.dataclass(frozen=True)
class Check:
    """One cause's verdict: what it found, what it checked and ruled out, and what it lacked."""

    cause: rbapi.Cause
    applies: bool
    headline: str
    evidence: tuple[incapi.Evidence, ...] = ()
    ruled_out: tuple[incapi.Evidence, ...] = ()
    missing: tuple[incapi.Evidence, ...] = ()


def _evidence(kind: str, message: str, value: float | None = None) -> incapi.Evidence:
    return incapi.Evidence(kind=kind, message=message, value=value)


def _burn(value: float) -> str:
    return f"{value:.3g}x"


def _ago(seconds: float) -> str:
    return sloapi.format_duration(abs(seconds)) if abs(seconds) >= 1 else "0s"


def _rate(value: float) -> str:
    return f"{value:.3g} req/s"


def _window(seconds: int | None) -> str:
    return f" over {sloapi.format_duration(seconds)}" if seconds is not None else ""


def _breach_at(symptoms: Symptoms) -> datetime.datetime:
    return symptoms.breach_started if symptoms.breach_started is not None else symptoms.now


def _serving(symptoms: Symptoms) -> frozenset[str]:
    return frozenset(r for r in (symptoms.current_revision, symptoms.breached_revision) if r is not None)


def _relevant(revision: str | None, symptoms: Symptoms) -> bool:
    return revision is None or revision in _serving(symptoms)


def _listed(items: list[str], limit: int) -> str:
    shown = "; ".join(items[:limit])
    rest = len(items) - limit
    return f"{shown}; and {rest} more" if rest > 0 else shown


def check_bad_rollout(symptoms: Symptoms, settings: Settings = DEFAULT_SETTINGS) -> Check:
    """A recent revision switch whose new revision burns the breached SLO worse than the old one."""
    cause = rbapi.Cause.BAD_ROLLOUT
    new, old, switched = symptoms.current_revision, symptoms.previous_revision, symptoms.revision_switched_at
    if new is None or old is None or switched is None or new == old:
        return Check(cause, False, "no revision change recorded")
    lead = (_breach_at(symptoms) - switched).total_seconds()
    if lead < 0:
        note = _evidence(
            REVISION_CHANGE,
            f"traffic switched from revision {old} to {new} {_ago(lead)} after the breach began: not its cause",
            lead,
        )
        return Check(cause, False, "the last revision change came after the breach began", ruled_out=(note,))
    if lead > settings.rollout_window.total_seconds():
        window = _ago(settings.rollout_window.total_seconds())
        return Check(cause, False, f"the last revision change was {_ago(lead)} before the breach (window {window})")
    change = _evidence(
        REVISION_CHANGE,
        f"traffic switched from revision {old} to {new} {_ago(lead)} before the breach began",
        lead,
    )
    judged = symptoms.breached_revision if symptoms.breached_revision is not None else new
    if judged != new:
        headline = f"the breach was judged on revision {judged}, not on the new revision {new}"
        return Check(cause, False, headline, ruled_out=(change,))
    new_burn = symptoms.per_revision_burn.get(new)
    if new_burn is None:
        lack = _evidence(
            MISSING_DATA, f"no {symptoms.slo_name} data for the new revision {new}: a bad rollout is not judged"
        )
        return Check(cause, False, f"no SLO data for revision {new}", ruled_out=(change,), missing=(lack,))
    old_burn = symptoms.per_revision_burn.get(old)
    if old_burn is None:
        compared = _evidence(
            REVISION_BURN,
            f"{symptoms.slo_name} burns {_burn(new_burn)} on revision {new}; "
            f"the previous revision {old} has no data to compare",
            new_burn,
        )
        headline = f"revision {new} went live {_ago(lead)} before the breach and burns {_burn(new_burn)}"
        return Check(cause, True, headline, evidence=(change, compared))
    compared = _evidence(
        REVISION_BURN,
        f"{symptoms.slo_name} burns {_burn(new_burn)} on revision {new} vs {_burn(old_burn)} on {old}",
        new_burn,
    )
    if new_burn > old_burn * settings.worse_factor:
        headline = (
            f"revision {new} went live {_ago(lead)} before the breach and burns {_burn(new_burn)} "
            f"where {old} burned {_burn(old_burn)}"
        )
        return Check(cause, True, headline, evidence=(change, compared))
    return Check(cause, False, f"revision {new} burns no worse than {old}", ruled_out=(change, compared))


def _container_failing(container: podfacts.ContainerFacts, now: datetime.datetime, settings: Settings) -> bool:
    if container.reason in FAILURE_REASONS:
        return True
    if container.state == podfacts.TERMINATED and container.exit_code not in (None, 0):
        return True
    if not container.ready and container.restarts > 0:
        return True
    if container.restarts < settings.restart_threshold:
        return False
    last = container.last_finished_at
    return last is None or now - last <= settings.flap_window


def failing(pod: podfacts.PodFacts, now: datetime.datetime, settings: Settings = DEFAULT_SETTINGS) -> bool:
    """Whether a scheduled pod fails, crashes or flaps (see the module docstring); the one place this is decided."""
    if unschedulable(pod):
        return False
    if pod.reason in FAILURE_REASONS:
        return True
    return any(_container_failing(c, now, settings) for c in pod.containers)


def check_crashing_pods(symptoms: Symptoms, settings: Settings = DEFAULT_SETTINGS) -> Check:
    """Scheduled pods of the serving revision that fail, restart or flap."""
    cause = rbapi.Cause.CRASHING_PODS
    found = [p for p in symptoms.pods if _relevant(p.revision, symptoms) and failing(p, symptoms.now, settings)]
    if not found:
        return Check(cause, False, "no crashing pods")
    listed = _listed([podfacts.describe(p) for p in found], settings.listed_pods)
    evidence = _evidence(CRASHING_PODS, f"{len(found)} pod(s) failing: {listed}", float(len(found)))
    restarts = sum(p.restarts for p in found)
    return Check(cause, True, f"{len(found)} pod(s) failing ({restarts} restarts)", evidence=(evidence,))


def unschedulable(pod: podfacts.PodFacts) -> bool:
    """Whether the scheduler said it cannot place ``pod`` (as opposed to not having tried yet)."""
    if pod.scheduled is not False:
        return False
    return pod.schedule_reason == "Unschedulable" or bool(_UNSCHEDULABLE.search(pod.schedule_message))


def check_capacity(symptoms: Symptoms, settings: Settings = DEFAULT_SETTINGS) -> Check:
    """Pods of the serving revision that the scheduler cannot place."""
    cause = rbapi.Cause.CAPACITY
    stuck = [p for p in symptoms.pods if _relevant(p.revision, symptoms) and unschedulable(p)]
    if not stuck:
        return Check(cause, False, "no unschedulable pods")
    listed = _listed([f"{p.name}: {p.schedule_message or p.schedule_reason}" for p in stuck], settings.listed_pods)
    evidence = _evidence(PENDING_PODS, f"{len(stuck)} pod(s) cannot be scheduled: {listed}", float(len(stuck)))
    first = stuck[0].schedule_message or stuck[0].schedule_reason
    return Check(cause, True, f"{len(stuck)} pod(s) cannot be scheduled ({first})", evidence=(evidence,))


def check_load_surge(symptoms: Symptoms, settings: Settings = DEFAULT_SETTINGS) -> Check:
    """A request rate well above its baseline, for an SLO that load drives."""
    cause = rbapi.Cause.LOAD_SURGE
    rate, baseline = symptoms.request_rate, symptoms.baseline_request_rate
    if baseline is None and symptoms.windows_capped and symptoms.baseline_window_seconds is None:
        window = _window(symptoms.rate_window_seconds)
        lack = _evidence(
            MISSING_DATA,
            f"the data is too young for a baseline before the current window{window}: a load surge is not judged",
        )
        return Check(cause, False, "too young for a baseline request rate", missing=(lack,))
    if rate is None or baseline is None:
        which = " and ".join(name for name, value in (("current", rate), ("baseline", baseline)) if value is None)
        lack = _evidence(MISSING_DATA, f"no {which} request rate: a load surge is not judged")
        return Check(cause, False, "the request rate is unknown", missing=(lack,))
    if baseline <= 0:
        lack = _evidence(MISSING_DATA, f"no baseline traffic to compare {_rate(rate)} with: a load surge is not judged")
        return Check(cause, False, "no baseline traffic", missing=(lack,))
    growth = symptoms.queue_growth if symptoms.queue_growth is not None and symptoms.queue_growth > 0 else 0.0
    offered = rate + growth
    ratio = offered / baseline
    what = (
        f"{_rate(offered)} offered ({_rate(rate)} served, the queue growing by {_rate(growth)})"
        if growth
        else _rate(rate)
    )
    described = f"{what}{_window(symptoms.rate_window_seconds)} is {ratio:.3g}x the baseline of {_rate(baseline)}"
    if symptoms.rate_window_seconds is not None and symptoms.baseline_window_seconds is not None:
        before = symptoms.baseline_window_seconds - symptoms.rate_window_seconds
        described += f" over the {sloapi.format_duration(before)} before it"
    if symptoms.windows_capped:
        described += " (windows capped to the age of the data)"
    evidence = _evidence(REQUEST_RATE, f"{described} (surge at {settings.surge_factor:g}x)", ratio)
    busy = symptoms.busy
    hot = busy is not None and busy >= settings.saturated
    if 1 < ratio < settings.surge_factor and (hot or growth > 0):
        # Less than a surge over the baseline, but more than the replicas can take: a deployment
        # already running hot breaches on a smaller rise, and more replicas are still the remedy.
        # A growing queue says so at once; the mean utilisation over the window lags a rising load.
        saturated = (
            f"its replicas {busy:.0%} busy{_window(symptoms.rate_window_seconds)} (saturated at {settings.saturated:.0%})"
            if hot and busy is not None
            else "more arrives than its replicas complete"
        )
        described = f"{described}; {saturated}"
        evidence = _evidence(REQUEST_RATE, f"{described} (surge at {settings.surge_factor:g}x)", ratio)
    elif ratio < settings.surge_factor:
        headline = f"request rate {ratio:.3g}x its baseline (surge at {settings.surge_factor:g}x)"
        return Check(cause, False, headline, ruled_out=(evidence,))
    if symptoms.slo_kind not in settings.surge_kinds:
        note = _evidence(REQUEST_RATE, f"{described}, but a {symptoms.slo_kind} SLO is not attributed to load", ratio)
        return Check(cause, False, f"a {symptoms.slo_kind} SLO is not attributed to load", ruled_out=(note,))
    return Check(cause, True, described, evidence=(evidence,))


CHECKS = {
    rbapi.Cause.BAD_ROLLOUT: check_bad_rollout,
    rbapi.Cause.CRASHING_PODS: check_crashing_pods,
    rbapi.Cause.CAPACITY: check_capacity,
    rbapi.Cause.LOAD_SURGE: check_load_surge,
}


def checks(symptoms: Symptoms, settings: Settings = DEFAULT_SETTINGS) -> tuple[Check, ...]:
    """Every cause's verdict, in :data:`PRECEDENCE` order."""
    return tuple(CHECKS[cause](symptoms, settings) for cause in PRECEDENCE)


def diagnose(symptoms: Symptoms, settings: Settings = DEFAULT_SETTINGS) -> incapi.Diagnosis:
    """The likely cause of the breach, by :data:`PRECEDENCE`, with all the evidence found."""
    verdicts = checks(symptoms, settings)
    applying = [c for c in verdicts if c.applies]
    evidence = [e for c in applying for e in c.evidence]
    evidence += [e for c in verdicts for e in c.ruled_out]
    evidence += [e for c in verdicts for e in c.missing]
    where = f"SLO {symptoms.slo_name}"
    if not applying:
        reasons = "; ".join(c.headline for c in verdicts)
        return incapi.Diagnosis(
            cause=rbapi.Cause.UNKNOWN, summary=f"{where}: no cause found ({reasons})", evidence=evidence
        )
    chosen, others = applying[0], applying[1:]
    summary = f"{where}: {chosen.cause}: {chosen.headline}"
    if others:
        summary += "; also " + "; ".join(f"{c.cause}: {c.headline}" for c in others)
    return incapi.Diagnosis(cause=chosen.cause, summary=summary, evidence=evidence)
