"""Watch caches: list once, then watch, and answer the reconcile's reads from memory.

A steady reconcile used to cost about eight API calls (GET the ModelDeployment, LIST its
Deployments and pods, GET its HTTPRoute, apply every child), and a fleet of N deployments paid
that on every resync. Here each kind the reconcile reads is listed once and then watched, with the
label selector on the server (``vigil.dev/modeldeployment``), so the operator streams only its own
children and a reconcile of an unchanged deployment makes no request at all. client-go's informer,
kept small:

* **List, then watch from the list's resourceVersion**, with bookmarks (the server keeps the
  version fresh while nothing changes) and a server-side timeout of 5-10 minutes (jittered, so
  streams do not reconnect in step). A watch the server closes resumes from the last version seen.
* **410 Gone** (the version is too old: compaction, a restarted API server) means a relist, and a
  relist *replaces* the store: an object deleted while the watch was down is dropped and reported
  as deleted, an object changed is reported as changed. Objects the operator wrote after the
  list's snapshot are kept (see below).
* **Read your writes.** vigil's own writes hand the server's answer to :meth:`Store.offer`, so the
  next reconcile sees them without waiting for the watch event, and that event, when it comes,
  changes nothing and queues nothing (it is the echo of vigil's write). Versions are compared as
  the integers etcd makes them; the newer of the write and the event wins.
* **Doubt means a read.** A write that failed may or may not have landed (a timeout after the
  server took it), so the object is marked doubtful and the next read of it GETs it from the server.

Each stream runs its blocking list and watch calls on its own thread (the synchronous client's
calls would otherwise hold the threads every API call shares) and hands events to the event loop,
in order, with ``call_soon_threadsafe``; every store is touched on the event loop only. What it hands
over is already slim (no ``managedFields``; pods as diagnosis reads them), and at most
``HANDOVER_LIMIT`` events per stream wait for the event loop: while a burst keeps the loop busy, the
stream stops reading (the server holds the rest) instead of queueing every parsed object in memory.
A burst of 1,000 creations is some 10,000 events, each a whole object with its managedFields. Objects are
kept as compact JSON without ``managedFields`` (and pods without what diagnosis never reads), parsed
on each read, so a fleet of 1,000 deployments costs about ten MiB of cache, not a hundred.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import random
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client import exceptions
from kubernetes.watch import watch as kwatch

from vigil.reconcile import supervise

log = logging.getLogger("vigil.informer")
T = TypeVar("T")

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)
WATCH_SECONDS = (300, 600)  # the server closes each watch after a random time in this range
CONNECT_TIMEOUT = 10.0
READ_SLACK = 60.0  # a watch silent this long past its timeout (no bookmark either) is a dead connection
LIST_TIMEOUT = 60.0
DELETED = "DELETED"
HANDOVER_LIMIT = 256
"""Events one stream may have handed to the event loop and not yet applied (see the module docstring)."""
HANDOVER_POLL = 1.0  # a stream waiting for room looks for stop() this often


def retry_after(error: exceptions.ApiException) -> float:
    """Seconds the API server asked us to wait (a 429's or 503's ``Retry-After``), else 0."""
    headers = error.headers or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else 0.0
    except ValueError:
        return 0.0  # an HTTP date: rare from the API server; our own backoff applies


class Gone(Exception):
    """The watch's resourceVersion is too old (410): relist."""


@dataclasses.dataclass(frozen=True)
class Resource:
    """A kind the operator watches: where it lives in the API, and how it is slimmed for memory."""

    group: str  # "" for the core group
    version: str
    plural: str
    selector: str = ""
    slim: Callable[[Obj], Obj] | None = None
    index_label: str | None = None
    """A label whose value indexes the store (the owning ModelDeployment's name)."""

    def path(self, namespace: str | None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        return f"{base}/namespaces/{namespace}/{self.plural}" if namespace else f"{base}/{self.plural}"


def version_of(obj: Obj) -> int | None:
    """The object's resourceVersion as the integer etcd makes it, None when it is not one."""
    text = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return int(text) if text.isdigit() else None


def key_of(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def strip(obj: Obj) -> Obj:
    """``obj`` without ``managedFields``, the bulk of most objects, but for the scale subresource's
    entries: who set the replicas through ``/scale`` (an autoscaler) is all of it vigil reads."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        kept = [e for e in meta["managedFields"] or () if isinstance(e, dict) and e.get("subresource") == "scale"]
        slim = {k: v for k, v in meta.items() if k != "managedFields"}
        obj = {**obj, "metadata": {**slim, "managedFields": kept} if kept else slim}
    return obj


ATOMIC_SELECTOR = ("spec", "selector")


def covers(live: Any, desired: Any, path: tuple[str, ...] = ()) -> bool:
    """Whether the object ``live`` already carries everything in the manifest ``desired``.

    The server adds defaults (and other managers their fields), so ``live`` may hold more: maps are
    compared key by key on what ``desired`` sets. Lists must match element for element, and lists of
    named items (containers, ports, env) by the same set of names, so an item vigil no longer sets
    still counts as a difference. An empty map or list matches an absent one (the server drops them).
    ``spec.selector`` is compared whole: a Service's selector is an atomic map, and a selector that
    lost a key (the stable Service selecting every revision under replica ratios instead of one)
    must be applied, not found "covered" by the live selector that still has it.
    """
    if isinstance(desired, dict):
        if not desired:
            return live is None or live == {}
        if path == ATOMIC_SELECTOR:
            return bool(live == desired)
        return isinstance(live, dict) and all(covers(live.get(k), v, (*path, k)) for k, v in desired.items())
    if isinstance(desired, list):
        if not desired:
            return live is None or live == []
        if not isinstance(live, list) or len(live) != len(desired):
            return False
        if all(isinstance(d, dict) and "name" in d for d in desired):
            by_name = {item.get("name"): item for item in live if isinstance(item, dict)}
            return set(by_name) == {d["name"] for d in desired} and all(covers(by_name[d["name"]], d) for d in desired)
        return all(covers(item, d) for item, d in zip(live, desired, strict=True))
    return bool(live == desired)


Change = Callable[[Obj | None, Obj | None], None]
"""Called with (old, new) for every change the store sees: new None is a deletion."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Held:
    """One stored object: compact JSON (a fifth of the memory of the parsed dict), and what the
    store looks at without parsing it."""

    data: bytes
    version: int | None
    owner: str | None

    def load(self) -> Obj:
        loaded: Obj = json.loads(self.data)
        return loaded


class Store:
    """The objects of one kind in one scope, keyed by (namespace, name); touched on the event loop only.

    Objects are kept as compact JSON and parsed on each read: every read is a fresh copy the caller
    may change, and a fleet's objects cost a fraction of their parsed size.
    """

    def __init__(self, resource: Resource, on_change: Change | None = None) -> None:
        self.resource = resource
        self.on_change = on_change
        self._objects: dict[Key, _Held] = {}
        self._index: dict[Key, set[str]] = {}
        self._doubtful: set[Key] = set()

    def __len__(self) -> int:
        return len(self._objects)

    def get(self, key: Key) -> Obj | None:
        held = self._objects.get(key)
        return held.load() if held is not None else None

    def has(self, key: Key) -> bool:
        return key in self._objects

    def doubtful(self, key: Key) -> bool:
        return key in self._doubtful

    def doubt(self, key: Key) -> None:
        """A write of ``key`` may or may not have landed: the next read asks the server."""
        self._doubtful.add(key)

    def owned_by(self, namespace: str, owner: str) -> Iterator[Obj]:
        """The objects whose index label names ``owner`` (the ModelDeployment's children)."""
        for name in sorted(self._index.get((namespace, owner), ())):
            held = self._objects.get((namespace, name))
            if held is not None:
                yield held.load()

    def listed(self) -> list[Key]:
        return list(self._objects)

    def matching(self, namespace: str, wanted: dict[str, str]) -> list[Obj]:
        """The objects of ``namespace`` whose labels carry every ``wanted`` pair (an equality selector)."""
        label = self.resource.index_label
        if label is not None and label in wanted:
            candidates: list[Obj] = list(self.owned_by(namespace, wanted[label]))
        else:
            candidates = [held.load() for (ns, _), held in sorted(self._objects.items()) if ns == namespace]
        return [
            obj
            for obj in candidates
            if all(((obj.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in wanted.items())
        ]

    def slim(self, obj: Obj) -> Obj:
        """``obj`` as this store keeps it (see :class:`Resource`); any thread may call it."""
        obj = strip(obj)
        return self.resource.slim(obj) if self.resource.slim is not None else obj

    def _owner(self, obj: Obj) -> str | None:
        label = self.resource.index_label
        if label is None:
            return None
        value = ((obj.get("metadata") or {}).get("labels") or {}).get(label)
        return str(value) if value is not None else None

    def _put(self, key: Key, held: _Held) -> None:
        old = self._objects.get(key)
        if old is not None:
            self._unindex(key, old)
        self._objects[key] = held
        if held.owner is not None:
            self._index.setdefault((key[0], held.owner), set()).add(key[1])

    def _unindex(self, key: Key, held: _Held) -> None:
        if held.owner is None:
            return
        names = self._index.get((key[0], held.owner))
        if names is not None:
            names.discard(key[1])
            if not names:
                del self._index[(key[0], held.owner)]

    def _drop(self, key: Key) -> _Held | None:
        old = self._objects.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _notify(self, old: _Held | None, new: Obj | None) -> None:
        if self.on_change is not None:
            self.on_change(old.load() if old is not None else None, new)

    def offer(self, obj: Obj, notify: bool = True) -> bool:
        """Take ``obj`` (a watch event's, or the answer to vigil's own write) unless the store holds a
        newer version; returns whether the store changed. A change is reported unless ``notify`` is
        False (vigil's own write: the operator knows what it wrote)."""
        obj = self.slim(obj)
        key = key_of(obj)
        self._doubtful.discard(key)
        old = self._objects.get(key)
        offered = version_of(obj)
        if old is not None and old.version is not None and offered is not None and offered <= old.version:
            return False  # the echo of what vigil wrote (or older): nothing new
        self._put(key, _Held(json.dumps(obj, separators=(",", ":")).encode(), offered, self._owner(obj)))
        if notify:
            self._notify(old, obj)
        return True

    def delete(self, obj: Obj) -> None:
        key = key_of(obj)
        self._doubtful.discard(key)
        old = self._drop(key)
        if old is not None:
            self._notify(old, None)

    def replace(self, items: list[Obj], list_version: int | None, namespace: str | None = None) -> None:
        """A relist (of ``namespace``, or everything): those objects become ``items``. An object missing
        from the list is gone, unless vigil wrote it after the list's snapshot (its version is newer)."""
        listed: set[Key] = set()
        for item in items:
            listed.add(key_of(item))
            self.offer(item)
        for key in [k for k in self._objects if k not in listed and namespace in (None, k[0])]:
            held = self._objects[key].version
            if list_version is not None and held is not None and held > list_version:
                continue
            old = self._drop(key)
            self._doubtful.discard(key)
            if old is not None:
                self._notify(old, None)

    def apply_event(self, kind: str, obj: Obj) -> None:
        if kind == DELETED:
            self.delete(obj)
        elif kind in ("ADDED", "MODIFIED"):
            self.offer(obj)


class Session:
    """One :meth:`Informer.run`: its stop signal and the watch it has open.

    run() makes it on the event loop before any thread starts and hands it to each thread it starts,
    so :meth:`stop` reaches every stream of that run whatever the thread is doing: not started yet,
    still connecting (it finds the signal set once connected and ends), or reading (its socket is shut).
    A thread that read a shared attribute once started could pick up a newer run's signal (and read on
    for the server's 5-10 minutes), and a late thread of an old run could hide the new run's stream.
    """

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._response: Any = None

    def hold(self, response: Any) -> bool:
        """Keep ``response`` for :meth:`stop` to close; False when stop() already ran (end it now)."""
        with self._lock:
            if self.stopping.is_set():
                return False
            self._response = response
            return True

    def release(self) -> None:
        with self._lock:
            self._response = None

    def stop(self, name: str) -> None:
        """Stop this run: a watch open now is closed, and any later one ends as soon as it connects."""
        with self._lock:
            self.stopping.set()
            response, self._response = self._response, None
        if response is None:
            return
        try:
            # close() alone does not wake a thread blocked reading the socket; a shutdown does
            sock = getattr(getattr(response, "connection", None), "sock", None)
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
            response.close()
        except OSError:  # the connection is already broken: the thread is ending anyway
            log.debug("%s: closing the stream failed", name, exc_info=True)


class Informer:
    """One list+watch stream of one kind, in one namespace or cluster-wide, feeding a :class:`Store`."""

    def __init__(
        self,
        api_client: client.ApiClient,
        store: Store,
        namespace: str | None = None,
        admits: Callable[[str], bool] | None = None,
    ) -> None:
        self.api_client = api_client
        self.store = store
        self.namespace = namespace
        self.admits = admits
        self._session = Session()
        self.synced = asyncio.Event()
        """Set once the first list is in the store: reads before that would miss objects."""
        where = f"in {namespace}" if namespace else "cluster-wide"
        self.name = f"{store.resource.plural} {where}"

    def _in_scope(self, obj: Obj) -> bool:
        return self.admits is None or self.admits(key_of(obj)[0])

    def _query(self, **params: str) -> list[tuple[str, str]]:
        query = [(k, v) for k, v in params.items() if v]
        if self.store.resource.selector:
            query.append(("labelSelector", self.store.resource.selector))
        return query

    def _call(self, query: list[tuple[str, str]], timeout: tuple[float, float]) -> Any:
        return stream(self.api_client, self.store.resource.path(self.namespace), query, timeout)

    def list(self) -> tuple[list[Obj], int | None]:
        """One consistent list (on this stream's thread); returns the items and the list's version."""
        body = raw_get(self.api_client, self.store.resource.path(self.namespace), self._query())
        items = [self.store.slim(item) for item in body.get("items") or [] if self._in_scope(item)]
        return items, version_of(body)

    def watch(self, since: str, deliver: Callable[[str, Obj], None], session: Session) -> str:
        """Stream events from ``since`` until the server ends the watch or ``session`` stops; returns the
        last version seen.

        Runs on this stream's thread; ``deliver`` must hand each event to the event loop.
        """
        seconds = random.randint(*WATCH_SECONDS)
        query = self._query(
            watch="true", allowWatchBookmarks="true", resourceVersion=since, timeoutSeconds=str(seconds)
        )
        response = self._call(query, (CONNECT_TIMEOUT, seconds + READ_SLACK))
        version = since
        try:
            if not session.hold(response):  # stopped while this connected
                return version
            lines: Iterator[str] = kwatch.iter_resp_lines(response)  # type: ignore[no-untyped-call]
            for line in lines:
                if session.stopping.is_set():
                    break
                if not line or line.isspace():
                    continue
                event = json.loads(line)
                if not isinstance(event, dict):
                    log.warning("%s: ignoring a watch line that is not an event: %.200s", self.name, line)
                    continue
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(str(obj.get("message", "")))
                    raise exceptions.ApiException(status=obj.get("code"), reason=str(obj.get("message", "")))
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind == "BOOKMARK" or not self._in_scope(obj):
                    continue
                deliver(str(kind), self.store.slim(obj))
        except Exception:
            if session.stopping.is_set():  # stop() shut the socket while this read it
                return version
            raise
        finally:
            session.release()
            response.close()
            response.release_conn()
        return version

    async def run(self, heartbeat: supervise.Heartbeat) -> None:
        """List, replace the store, watch until 410 Gone, relist, until :meth:`stop`; an error surfaces
        to the supervisor, except a 429/503 that names its Retry-After: that pause is the server's to
        set, so it is waited out here (with a warning, not a traceback and a restart)."""
        session = self._session = Session()  # before any thread starts: stop() cannot miss one
        handover = Handover(asyncio.get_running_loop(), self.store.apply_event)

        def deliver(kind: str, obj: Obj) -> None:
            handover.deliver(kind, obj, session)

        try:
            while not session.stopping.is_set():
                try:
                    await self._list_and_watch(heartbeat, deliver, session)
                except exceptions.ApiException as error:
                    wait = retry_after(error)
                    if not wait:
                        raise  # no pace named: the supervisor's backoff applies
                    log.warning(
                        "%s: the API server answered %s (%s); listing again in %.0fs as its Retry-After asks",
                        self.name,
                        error.status,
                        error.reason,
                        wait,
                    )
                    heartbeat.beat(wait + CONNECT_TIMEOUT)
                    await asyncio.sleep(wait)
        finally:
            session.stop(self.name)

    async def _list_and_watch(
        self, heartbeat: supervise.Heartbeat, deliver: Callable[[str, Obj], None], session: Session
    ) -> None:
        while not session.stopping.is_set():
            heartbeat.beat()
            items, list_version = await in_thread(self.list)
            self.store.replace(items, list_version, self.namespace)
            self.synced.set()
            log.debug("%s: listed %d", self.name, len(items))
            since = str(list_version) if list_version is not None else ""
            while not session.stopping.is_set():
                heartbeat.beat(WATCH_SECONDS[1] + READ_SLACK + CONNECT_TIMEOUT + 30.0)
                try:
                    since = await in_thread(self.watch, since, deliver, session)
                except Gone as gone:
                    log.info("%s: watch expired (%s); relisting", self.name, gone)
                    break

    def stop(self) -> None:
        """End the running :meth:`run`: its stream closes now, and run() returns (a restart starts afresh)."""
        self._session.stop(self.name)


class Handover:
    """Hands a stream's events from its thread to the event loop, in order, at most ``limit`` waiting.

    A thread that finds ``limit`` events not yet applied waits (it stops reading its stream, so the
    API server holds what follows) until the event loop has applied one, or its session stops.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, apply: Callable[[str, Obj], None], limit: int = HANDOVER_LIMIT
    ) -> None:
        self.loop = loop
        self.apply = apply
        self._room = threading.BoundedSemaphore(limit)

    def deliver(self, kind: str, obj: Obj, session: Session) -> bool:
        """On the stream's thread: hand the event over once there is room; False if the session
        stopped first (the event is dropped with the stream)."""
        while not self._room.acquire(timeout=HANDOVER_POLL):
            if session.stopping.is_set():
                return False
        try:
            self.loop.call_soon_threadsafe(self._apply, kind, obj)
        except RuntimeError:  # the event loop is closed: nobody applies it any more
            self._room.release()
            raise
        return True

    def _apply(self, kind: str, obj: Obj) -> None:
        try:
            self.apply(kind, obj)
        finally:
            self._room.release()


async def in_thread(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` on a daemon thread of its own: a watch blocks for minutes, so it must neither
    hold one of the threads every API call shares nor keep the process alive when it exits."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def target() -> None:
        try:
            result = call(*args)
        except BaseException as error:  # handed to the awaiting task, whatever it is
            answer: Callable[[], None] = functools.partial(future.set_exception, error)
        else:
            answer = functools.partial(future.set_result, result)
        with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, answer)

    threading.Thread(target=target, name="vigil-watch", daemon=True).start()
    return await future


def stream(api_client: client.ApiClient, path: str, query: list[tuple[str, str]], timeout: tuple[float, float]) -> Any:
    """A GET whose body is left unread (urllib3's response): JSON is parsed by the caller, never
    deserialised into the client's models (a tenth of the CPU for a large list)."""
    method, url, headers, _, _ = api_client.param_serialize(
        "GET", path, query_params=query, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
    )
    answer = api_client.call_api(method, url, header_params=headers, _request_timeout=timeout)
    if not 200 <= answer.status <= 299:
        answer.read()  # type: ignore[no-untyped-call]
        raise exceptions.ApiException.from_response(http_resp=answer, body=None, data=None)
    return answer.response


def raw_get(api_client: client.ApiClient, path: str, query: list[tuple[str, str]]) -> Obj:
    """GET ``path`` as plain JSON (blocking: call it in a thread)."""
    response = stream(api_client, path, query, (CONNECT_TIMEOUT, LIST_TIMEOUT))
    try:
        body: Obj = json.loads(response.data)
    finally:
        response.release_conn()
    return body
