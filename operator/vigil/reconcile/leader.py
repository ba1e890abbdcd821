"""Leader election over a ``coordination.k8s.io/v1`` Lease, with a fence checked before every write.

The algorithm is client-go's ``tools/leaderelection``:

* A candidate takes the Lease only when nobody holds it, or when the record has not changed for
  ``leaseDurationSeconds`` *as measured by the candidate's own clock since it saw the record
  change*. No comparison of timestamps written by another machine, so clock skew does not matter.
* Every write carries the Lease's ``resourceVersion``: of two candidates racing for an expired
  lease, the API server accepts one update and answers 409 to the other.
* The leader renews every ``retry_period``. It *leads* only until ``renew_deadline`` after the
  start of its last successful renewal; ``renew_deadline < lease_duration``, so it has stopped
  acting before any other replica can consider the lease expired.

Why not the ``kubernetes`` package's own ``leaderelection`` module: it runs blocking in threads
with ``time.sleep``, builds its API client from the global configuration (not the operator's
``--kubeconfig``), cannot be stopped, calls ``sys.exit`` on bad configuration, and does not expose
*until when* the lease is valid, which is what a fence needs.

Leading is a function of the clock (:meth:`Elector.leading`), not a flag some loop must remember
to clear: if the election loop is stuck or the API server unreachable, leadership lapses by itself
at the renew deadline. :meth:`Elector.fence` raises :class:`NotLeading` once it has lapsed; the
Kubernetes edge calls it immediately before every write and every remediation.

The decisions (:func:`observe`, :func:`claim`, :func:`release`) are pure and unit-tested; the
:class:`Elector` only does the I/O and keeps time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime
import functools
import logging
import random
import time
import typing
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client import exceptions

log = logging.getLogger("vigil.leader")
MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # metav1.MicroTime, the format of acquireTime/renewTime
JITTER = 1.2  # client-go's JitterFactor: followers retry within [retry, retry * (1 + JITTER)]


class NotLeading(RuntimeError):
    """A write was refused: this replica does not hold an unexpired lease."""


@dataclasses.dataclass(frozen=True)
class Timing:
    """client-go's three durations (controller-runtime's defaults), in seconds."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def problems(self) -> list[str]:
        """What makes these durations unsafe (empty when they are fine), naming the options."""
        found = [
            f"--{name.replace('_', '-')} must be positive, got {value:g}"
            for name, value in dataclasses.asdict(self).items()
            if not value > 0
        ]
        if found:
            return found
        if self.lease_duration <= self.renew_deadline:
            found.append(
                f"--lease-duration ({self.lease_duration:g}s) must be longer than --renew-deadline "
                f"({self.renew_deadline:g}s): the leader must stop before others may take over"
            )
        if self.renew_deadline <= JITTER * self.retry_period:
            found.append(
                f"--renew-deadline ({self.renew_deadline:g}s) must be longer than {JITTER:g} x --retry-period "
                f"({self.retry_period:g}s): the leader needs more than one try to renew"
            )
        if self.lease_duration != int(self.lease_duration):
            found.append(f"--lease-duration must be whole seconds, got {self.lease_duration:g}")
        return found


@dataclasses.dataclass(frozen=True)
class Record:
    """The election record a Lease's spec carries."""

    holder: str
    duration_seconds: int
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0

    @classmethod
    def of(cls, spec: Any) -> Record:
        """From a ``V1LeaseSpec`` as the client returns it (times as datetimes)."""
        return cls(
            holder=spec.holder_identity or "",
            duration_seconds=int(spec.lease_duration_seconds or 0),
            acquire_time=_micro_time(spec.acquire_time),
            renew_time=_micro_time(spec.renew_time),
            transitions=int(spec.lease_transitions or 0),
        )

    def spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.duration_seconds,
            "acquireTime": self.acquire_time,
            "renewTime": self.renew_time,
            "leaseTransitions": self.transitions,
        }


@dataclasses.dataclass(frozen=True)
class Seen:
    """A record, and when (our monotonic clock) we first saw it in this exact form."""

    record: Record
    at: float

    def expired(self, now: float) -> bool:
        return self.at + self.record.duration_seconds <= now


def observe(seen: Seen | None, record: Record, now: float) -> Seen:
    """Restart the expiry clock only when the record changed since we last looked."""
    if seen is not None and seen.record == record:
        return seen
    return Seen(record, now)


def claim(seen: Seen | None, me: str, now: float, stamp: str, duration: int) -> Record | None:
    """The record to write to take or keep the lease, or None while another holder's is valid.

    ``seen`` is None when no Lease exists. ``stamp`` is the wall-clock time written as
    acquire/renew time (informational for humans and other tools; expiry never reads it).
    """
    if seen is None:
        return Record(me, duration, stamp, stamp, 0)
    record = seen.record
    if record.holder == me:
        return Record(me, duration, record.acquire_time or stamp, stamp, record.transitions)
    if record.holder and not seen.expired(now):
        return None
    return Record(me, duration, stamp, stamp, record.transitions + 1)


def release(record: Record, stamp: str) -> Record:
    """What a leader that shuts down writes, so a standby takes over at once (client-go's
    ReleaseOnCancel): no holder, a one-second duration."""
    return Record("", 1, stamp, stamp, record.transitions)


class Leases(typing.Protocol):
    """The three Lease calls the elector makes (blocking; the elector runs them in threads)."""

    def read(self, namespace: str, name: str) -> tuple[Record, str] | None: ...

    def create(self, namespace: str, name: str, record: Record) -> str: ...

    def replace(self, namespace: str, name: str, record: Record, resource_version: str) -> str: ...


@dataclasses.dataclass
class KubeLeases:
    """:class:`Leases` over the API server; every write names the resourceVersion it replaces."""

    api_client: client.ApiClient
    timeout: float

    @property
    def _api(self) -> Any:  # raw dict bodies: MicroTime must be written as the API server parses it
        return client.CoordinationV1Api(self.api_client)

    def read(self, namespace: str, name: str) -> tuple[Record, str] | None:
        try:
            lease = self._api.read_namespaced_lease(name, namespace, _request_timeout=self.timeout)
        except exceptions.ApiException as error:
            if error.status == 404:
                return None
            raise
        return Record.of(lease.spec), str(lease.metadata.resource_version)

    def create(self, namespace: str, name: str, record: Record) -> str:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name}}
        created = self._api.create_namespaced_lease(
            namespace, {**body, "spec": record.spec()}, _request_timeout=self.timeout
        )
        return str(created.metadata.resource_version)

    def replace(self, namespace: str, name: str, record: Record, resource_version: str) -> str:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
            "spec": record.spec(),
        }
        replaced = self._api.replace_namespaced_lease(name, namespace, body, _request_timeout=self.timeout)
        return str(replaced.metadata.resource_version)


Callback = Callable[[], None]


class Elector:
    """Campaigns for one Lease forever; :meth:`leading` and :meth:`fence` answer for this replica."""

    def __init__(
        self,
        leases: Leases,
        namespace: str,
        name: str,
        identity: str,
        timing: Timing,
        on_started: Callback = lambda: None,
        on_stopped: Callback = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self.leases = leases
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.clock = clock
        self.wall = wall
        self.seen: Seen | None = None
        self.resource_version: str | None = None
        self.valid_until = float("-inf")
        self.was_leading = False  # what the callbacks were last told
        # Threads of its own: reconciles stuck in API timeouts must not starve the renewals.
        self.threads = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="vigil-lease")

    @property
    def lease(self) -> str:
        return f"{self.namespace}/{self.name}"

    def leading(self) -> bool:
        """Whether this replica may act now: it renewed within the renew deadline."""
        return self.clock() < self.valid_until

    def fence(self) -> None:
        """Raise :class:`NotLeading` unless this replica holds an unexpired lease right now."""
        if not self.leading():
            raise NotLeading(f"replica {self.identity} does not hold lease {self.lease}")

    def _stamp(self) -> str:
        """Now, as a MicroTime. The client turns it into a datetime and writes ``isoformat()``, which
        drops the fraction at microsecond 0, a form the API server's MicroTime parser rejects."""
        return self.wall().replace(microsecond=self.wall().microsecond or 1).strftime(MICRO_TIME)

    def holder(self) -> str:
        """The holder last seen (empty when unheld or not read yet)."""
        return self.seen.record.holder if self.seen is not None else ""

    async def run(self, beat: Callback = lambda: None) -> None:
        """Try to acquire or renew every retry period; tell the callbacks when leading changes."""
        while True:
            await self.step()
            beat()
            period = self.timing.retry_period
            if not self.leading():
                period *= 1.0 + JITTER * random.random()  # spreading retries, not crypto
            await asyncio.sleep(period)

    async def step(self) -> None:
        """One attempt, bounded by the renew deadline; errors count as a failed attempt."""
        started = self.clock()
        try:
            attempt = asyncio.get_running_loop().run_in_executor(self.threads, self._try)
            renewed = await asyncio.wait_for(attempt, timeout=self.timing.renew_deadline)
        except exceptions.ApiException as error:
            renewed = False
            log.warning("lease %s: API error %s %s", self.lease, error.status, error.reason)
        except Exception as error:  # connection refused, timeouts, DNS: the API server is unreachable
            renewed = False
            log.warning("lease %s: cannot reach the API server: %s", self.lease, _brief(error))
        if renewed:
            self.valid_until = started + self.timing.renew_deadline
        self._tell()

    def _try(self) -> bool:
        """client-go's tryAcquireOrRenew: read, decide, write with the read resourceVersion."""
        stamp = self._stamp()
        duration = int(self.timing.lease_duration)
        found = self.leases.read(self.namespace, self.name)
        if found is None:
            record = claim(None, self.identity, self.clock(), stamp, duration)
            assert record is not None  # an absent lease is always free
            try:
                self.resource_version = self.leases.create(self.namespace, self.name, record)
            except exceptions.ApiException as error:
                if error.status == 409:  # another replica created it first
                    return False
                raise
            self.seen = Seen(record, self.clock())
            return True
        current, self.resource_version = found
        previous = self.seen
        self.seen = observe(previous, current, self.clock())
        if previous is not None and previous.record.holder != current.holder:
            log.info("lease %s: now held by %s", self.lease, current.holder or "nobody")
        if current.holder != self.identity:
            self.valid_until = float("-inf")  # someone else holds it: whatever we believed, we lost it
        wanted = claim(self.seen, self.identity, self.clock(), stamp, duration)
        if wanted is None:
            return False
        try:
            self.resource_version = self.leases.replace(self.namespace, self.name, wanted, self.resource_version)
        except exceptions.ApiException as error:
            if error.status == 409:  # someone wrote in between: they won this round
                return False
            raise
        self.seen = Seen(wanted, self.clock())
        return True

    def _tell(self) -> None:
        leading = self.leading()
        if leading and not self.was_leading:
            self.was_leading = True
            log.info("lease %s: acquired by %s; this replica acts", self.lease, self.identity)
            self.on_started()
        elif not leading and self.was_leading:
            self.was_leading = False
            log.warning(
                "lease %s: not renewed within the renew deadline (%gs); this replica stops acting",
                self.lease,
                self.timing.renew_deadline,
            )
            self.on_stopped()

    async def release(self) -> None:
        """Give the lease up on shutdown so a standby need not wait for it to expire."""
        if not self.leading() or self.seen is None or self.resource_version is None:
            return
        self.valid_until = float("-inf")
        self.was_leading = False
        log.info("lease %s: shutting down; this replica stops acting and releases the lease", self.lease)
        self.on_stopped()
        record = release(self.seen.record, self._stamp())
        give_up = functools.partial(self.leases.replace, self.namespace, self.name, record, self.resource_version)
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self.threads, give_up), timeout=self.timing.renew_deadline
            )
            log.info("lease %s: released", self.lease)
        except Exception as error:  # the standby then waits for expiry, as after a crash
            log.warning("lease %s: not released: %s", self.lease, _brief(error))


def _micro_time(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).strftime(MICRO_TIME)
    return str(value)


def _brief(error: BaseException) -> str:
    """A one-line description of a transport error (urllib3's can be long and nested)."""
    reason = getattr(error, "reason", None)
    text = f"{type(error).__name__}: {reason or error}"
    return text if len(text) <= 300 else text[:297] + "..."
