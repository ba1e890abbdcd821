"""Intents: the absolute, idempotent actions a runbook step asks the worker to carry out.

An intent names a *target*, never a delta: "serve revision abc", "run 4 replicas", "send 100% to
md:big", "delete pod p-1". Carrying one out twice has the effect of carrying it out once, which is
what makes a crash between "intent recorded" and "intent executed" harmless: the restarted
operator reads the recorded intent back and re-issues the very same thing.

The step machine records each intent in ``StepProgress.target`` (a ``dict[str, str]`` on the
wire) *before* the worker executes it, and rebuilds the intent from that record with
:func:`from_target` on every later cycle, so a replay never recomputes a target from a world
that the first execution already changed (a scale-out "current + 2" computed twice would add 4).

Three intents are overrides in the ModelDeployment's status (``status.rollback``, ``.scale``,
``.traffic``) that the reconcile core turns into Deployments and routes, and a fourth,
:class:`Release`, removes an incident's scale or traffic override (the last step of giving back
what it added, :mod:`vigil.act.giveback`); :func:`override` applies
one to a status copy and :func:`applied` tells whether a status already carries it, so the step
machine can see that an intent was executed even when the worker crashed before saying so. The
other two (restart a pod, notify a webhook) are executed by :mod:`vigil.act.restart` and
:mod:`vigil.act.notify`. Every intent carries ``key``, unique per incident, step and round: the
worker reports results by key, and a notification sends it as its ``Idempotency-Key``.
"""

from __future__ import annotations

import dataclasses
import datetime

from vigil.api import conditions as cond
from vigil.api import modeldeployment as mdapi
from vigil.api import runbook as rbapi

# Keys of StepProgress.target. Besides the intent's own fields, the record carries the round
# (scale-out and pod restarts act in rounds) and when the intent was recorded (its deadline).
TO_REVISION = "toRevision"
FROM_REVISION = "fromRevision"
REPLICAS = "replicas"
SPLITS = "splits"
POD = "pod"
PODS = "pods"
WEBHOOK_SECRET = "webhookSecret"
WEBHOOK_KEY = "webhookSecretKey"
ALLOW_INSECURE = "allowInsecure"
ALLOW_PRIVATE_NETWORK = "allowPrivateNetwork"
MESSAGE = "message"
ROUND = "round"
INTENDED_AT = "intendedAt"

FALLBACK_PREFIX = "md:"


@dataclasses.dataclass(frozen=True)
class Result:
    """What executing an intent came to: ``ok`` or not, and a line for the timeline."""

    ok: bool
    message: str

    def __str__(self) -> str:
        return self.message


@dataclasses.dataclass(frozen=True)
class Rollback:
    """Serve ``to_revision`` (a last-known-good) instead of ``from_revision`` (md.status.rollback)."""

    to_revision: str
    from_revision: str
    key: str


@dataclasses.dataclass(frozen=True)
class Scale:
    """Run exactly ``replicas`` replicas of the serving revision (md.status.scale)."""

    replicas: int
    key: str


@dataclasses.dataclass(frozen=True)
class ShiftTraffic:
    """Weighted backends (md.status.traffic): a revision, or ``md:<name>`` for a fallback deployment."""

    splits: tuple[tuple[str, int], ...]
    key: str


SCALE = "scale"
TRAFFIC = "traffic"


@dataclasses.dataclass(frozen=True)
class Release:
    """Remove the incident's ``scale`` or ``traffic`` override: the spec's replicas, or all traffic home."""

    what: str  # SCALE | TRAFFIC
    key: str


@dataclasses.dataclass(frozen=True)
class RestartPod:
    """Delete one pod so its ReplicaSet replaces it (a 404 counts as done)."""

    namespace: str
    pod: str
    key: str


@dataclasses.dataclass(frozen=True)
class WebhookRef:
    """Where a notification goes: the Secret key that holds the URL, and what that URL may be.

    The URL itself never enters an intent: intents are recorded in the Incident's status and
    described in Events, and a webhook URL usually carries its credential.
    """

    secret: str
    key: str
    allow_insecure: bool = False
    allow_private_network: bool = False

    @classmethod
    def of(cls, webhook: rbapi.Webhook | None) -> WebhookRef | None:
        if webhook is None:
            return None
        ref = webhook.secret_key_ref
        return cls(ref.name, ref.key, webhook.allow_insecure, webhook.allow_private_network)

    def __str__(self) -> str:
        return f"the webhook in Secret {self.secret} (key {self.key})"


@dataclasses.dataclass(frozen=True)
class Notify:
    """POST ``message`` to ``webhook`` with ``key`` as Idempotency-Key; ``webhook`` None means Events only."""

    webhook: WebhookRef | None
    message: str
    key: str


Intent = Rollback | Scale | ShiftTraffic | Release | RestartPod | Notify
Override = Rollback | Scale | ShiftTraffic | Release


def is_override(intent: Intent) -> bool:
    """Whether the worker executes ``intent`` by writing the ModelDeployment's status."""
    return isinstance(intent, Rollback | Scale | ShiftTraffic | Release)


def encode_splits(splits: tuple[tuple[str, int], ...]) -> str:
    """``md:big=80,abc123=20``: backend names hold neither ``=`` nor ``,``."""
    return ",".join(f"{backend}={weight}" for backend, weight in splits)


def decode_splits(text: str) -> tuple[tuple[str, int], ...]:
    pairs: list[tuple[str, int]] = []
    for part in text.split(","):
        if part:
            backend, _, weight = part.rpartition("=")
            pairs.append((backend, int(weight)))
    return tuple(pairs)


def moves_all_traffic_away(splits: tuple[tuple[str, int], ...]) -> bool:
    """Every request goes to fallback deployments: this deployment's SLO can no longer be judged."""
    away = sum(weight for backend, weight in splits if backend.startswith(FALLBACK_PREFIX))
    return away >= 100


def to_target(intent: Intent) -> dict[str, str]:
    """The intent's fields as recorded in ``StepProgress.target``."""
    if isinstance(intent, Rollback):
        return {TO_REVISION: intent.to_revision, FROM_REVISION: intent.from_revision}
    if isinstance(intent, Scale):
        return {REPLICAS: str(intent.replicas)}
    if isinstance(intent, ShiftTraffic):
        return {SPLITS: encode_splits(intent.splits)}
    if isinstance(intent, RestartPod):
        return {POD: intent.pod}
    if isinstance(intent, Release):
        return {REPLICAS: "spec"} if intent.what == SCALE else {SPLITS: ""}
    target = {MESSAGE: intent.message}
    hook = intent.webhook
    if hook is not None:
        target |= {WEBHOOK_SECRET: hook.secret, WEBHOOK_KEY: hook.key}
        target |= {ALLOW_INSECURE: "true"} if hook.allow_insecure else {}
        target |= {ALLOW_PRIVATE_NETWORK: "true"} if hook.allow_private_network else {}
    return target


def from_target(action: rbapi.Action, target: dict[str, str], key: str, namespace: str) -> Intent:
    """Rebuild the intent recorded in ``target``: the only source of a replayed intent."""
    if action is rbapi.Action.ROLLBACK:
        return Rollback(to_revision=target[TO_REVISION], from_revision=target[FROM_REVISION], key=key)
    if action is rbapi.Action.SCALE_OUT:
        return Scale(replicas=int(target[REPLICAS]), key=key)
    if action is rbapi.Action.SHIFT_TRAFFIC:
        return ShiftTraffic(splits=decode_splits(target[SPLITS]), key=key)
    if action is rbapi.Action.RESTART_PODS:
        return RestartPod(namespace=namespace, pod=target[POD], key=key)
    hook = None
    if target.get(WEBHOOK_SECRET) and target.get(WEBHOOK_KEY):
        hook = WebhookRef(
            secret=target[WEBHOOK_SECRET],
            key=target[WEBHOOK_KEY],
            allow_insecure=target.get(ALLOW_INSECURE) == "true",
            allow_private_network=target.get(ALLOW_PRIVATE_NETWORK) == "true",
        )
    return Notify(webhook=hook, message=target.get(MESSAGE, ""), key=key)


def describe(intent: Intent) -> str:
    """A short, active phrase for timelines and Events: ``scale to 4 replicas``."""
    if isinstance(intent, Rollback):
        return f"roll back to revision {intent.to_revision} (from {intent.from_revision})"
    if isinstance(intent, Scale):
        return f"scale to {intent.replicas} replicas"
    if isinstance(intent, ShiftTraffic):
        return "shift traffic to " + ", ".join(f"{backend} {weight}%" for backend, weight in intent.splits)
    if isinstance(intent, RestartPod):
        return f"restart pod {intent.pod}"
    if isinstance(intent, Release):
        return "return to spec.replicas" if intent.what == SCALE else "shift all traffic home"
    return f"notify {intent.webhook}" if intent.webhook else "notify (Events only: no webhook configured)"


def applied(status: mdapi.ModelDeploymentStatus, intent: Override, incident: str) -> bool:
    """Whether ``status`` already carries ``intent`` on behalf of ``incident``."""
    if isinstance(intent, Rollback):
        rb = status.rollback
        return rb is not None and rb.incident == incident and rb.revision == intent.to_revision
    if isinstance(intent, Scale):
        sc = status.scale
        return sc is not None and sc.incident == incident and sc.replicas == intent.replicas
    if isinstance(intent, Release):
        held = status.scale if intent.what == SCALE else status.traffic
        return held is None or held.incident != incident
    tr = status.traffic
    return (
        tr is not None and tr.incident == incident and tuple((s.backend, s.weight) for s in tr.splits) == intent.splits
    )


def override(
    status: mdapi.ModelDeploymentStatus,
    intent: Override,
    incident: str,
    generation: int,
    now: datetime.datetime,
) -> mdapi.ModelDeploymentStatus:
    """A copy of ``status`` carrying ``intent``; unchanged (``since`` included) if it already does.

    ``generation`` is the ModelDeployment's ``metadata.generation``: a later spec supersedes the
    override (the reconcile core drops it), which is how GitOps wins over an incident. A rollback
    is superseded only by a spec with a new revision: one that keeps the revision rolled back from
    (``kubectl scale``) carries it to the new generation (see :mod:`vigil.reconcile.core`).
    """
    result = status.model_copy(deep=True)
    if applied(status, intent, incident):
        return result
    since = cond.rfc3339(now)
    if isinstance(intent, Rollback):
        result.rollback = mdapi.RollbackOverride(
            revision=intent.to_revision,
            from_revision=intent.from_revision,
            incident=incident,
            generation=generation,
            since=since,
        )
    elif isinstance(intent, Release):
        if intent.what == SCALE:
            result.scale = None
        else:
            result.traffic = None
    elif isinstance(intent, Scale):
        result.scale = mdapi.ScaleOverride(
            replicas=intent.replicas, incident=incident, generation=generation, since=since
        )
    else:
        result.traffic = mdapi.TrafficOverride(
            splits=[mdapi.TrafficSplit(backend=backend, weight=weight) for backend, weight in intent.splits],
            incident=incident,
            generation=generation,
            since=since,
        )
    return result
