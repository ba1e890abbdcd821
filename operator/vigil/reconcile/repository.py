"""Reading a golden set from the model repository (``spec.validation.goldenSet.path``): the I/O.

:func:`vigil.gate.source.locate` decides where the file is and whether the operator can reach it;
this module reads it: a local file under a mounted repository root (in a worker thread, so a slow
network file system never stalls the event loop), or an http(s) GET with aiohttp. Both are bounded
by the validation timeout and a size limit (:data:`vigil.gate.source.MAX_BYTES` unless configured),
and every failure is an :class:`~vigil.gate.source.UnreadableError` whose message names the field
and the file, which the gate turns into a NotValidated verdict.

A revision that is not validated yet is tried again every few seconds, and each attempt used to read
and parse its golden set anew (up to the limit, 32 MiB of JSON by default). :class:`Files` keeps what
it read and reads a file again only when it changed: a local file when its inode, size or
modification time differ (one ``stat`` per attempt), an http(s) one when the server does not answer
the conditional GET (``If-None-Match``/``If-Modified-Since``, from the ``ETag``/``Last-Modified`` it
sent) with 304 Not Modified. A server that sends neither is read every time. The parsed set is kept
with the bytes, so an unchanged file is not parsed again either.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import aiohttp

from vigil.gate import source

CHUNK = 64 * 1024
T = TypeVar("T")
Stamp = tuple[Any, ...]
"""What tells whether a file changed: (inode, size, mtime) of a local one, (ETag, Last-Modified) over http."""


@dataclasses.dataclass
class _Held:
    stamp: Stamp
    data: bytes
    parsed: dict[Callable[[bytes], Any], Any] = dataclasses.field(default_factory=dict)


class Files:
    """The golden-set files the gate reads: where it may read them (``roots``, the mounted model
    repositories), how large they may be (``limit`` bytes), and what it read, until they change.

    At most ``budget`` bytes of files are kept (twice the limit unless given), the least recently
    used dropped first; a file larger than the budget is read, parsed and not kept.
    """

    def __init__(self, roots: Sequence[str] = (), limit: int = source.MAX_BYTES, budget: int | None = None) -> None:
        self.roots = tuple(roots)
        self.limit = limit
        self.budget = 2 * limit if budget is None else budget
        self._held: collections.OrderedDict[str, _Held] = collections.OrderedDict()
        self.reads = 0
        """Files read in full (not answered from what is kept): for tests and curiosity."""

    def kept(self) -> list[str]:
        """The files kept, least recently used first."""
        return list(self._held)

    async def read(self, location: source.Location, seconds: float) -> bytes:
        """The file's bytes; raises :class:`~vigil.gate.source.UnreadableError` naming why not."""
        return (await self._fetch(location, seconds)).data

    async def parsed(self, location: source.Location, seconds: float, parse: Callable[[bytes], T]) -> T:
        """``parse`` of the file's bytes, parsed again only when the file changed. ``parse``'s errors
        reach the caller (and nothing is kept of them)."""
        held = await self._fetch(location, seconds)
        if parse not in held.parsed:
            held.parsed[parse] = parse(held.data)
        value: T = held.parsed[parse]
        return value

    async def _fetch(self, location: source.Location, seconds: float) -> _Held:
        if location.access is source.Access.UNSUPPORTED:
            raise source.UnreadableError(location.problem)
        key = location.target
        kept = self._held.get(key)
        try:
            if location.access is source.Access.LOCAL:
                call = asyncio.to_thread(_read_local, key, self.roots, self.limit, kept.stamp if kept else None)
                fresh = await asyncio.wait_for(call, seconds)
            else:
                fresh = await _get(key, seconds, self.limit, kept.stamp if kept else None)
        except TimeoutError:
            raise source.UnreadableError(
                f"{location.where}: not read within {seconds:g}s (spec.validation.timeout)"
            ) from None
        except _Problem as problem:
            self._held.pop(key, None)
            raise source.UnreadableError(f"{location.where}: {problem}") from None
        if fresh is None and kept is not None:  # unchanged
            self._held.move_to_end(key)
            return kept
        assert fresh is not None  # an answer "unchanged" comes only for a stamp that was sent
        self.reads += 1
        held = _Held(*fresh)
        self._held.pop(key, None)
        if held.stamp and len(held.data) <= self.budget:
            self._held[key] = held
            while sum(len(h.data) for h in self._held.values()) > self.budget:
                self._held.popitem(last=False)
        return held


async def read(location: source.Location, roots: Sequence[str], seconds: float, limit: int = source.MAX_BYTES) -> bytes:
    """The file's bytes, read now (nothing kept); raises :class:`~vigil.gate.source.UnreadableError`."""
    return await Files(roots, limit, budget=0).read(location, seconds)


class _Problem(Exception):
    pass


def _read_local(path: str, roots: Sequence[str], limit: int, kept: Stamp | None) -> tuple[Stamp, bytes] | None:
    """The file's stamp and bytes, or None when its stamp is still ``kept`` (stat first: a file
    replaced while it is read gets a new stamp, so the next attempt reads it again)."""
    resolved = os.path.realpath(path)
    refused = source.mounted(resolved, [os.path.realpath(root) for root in roots])
    if refused is not None:
        raise _Problem(refused)
    try:
        with open(resolved, "rb") as file:
            status = os.fstat(file.fileno())
            stamp: Stamp = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
            if stamp == kept:
                return None
            data = file.read(limit + 1)
    except FileNotFoundError:
        raise _Problem("no such file in the model repository") from None
    except IsADirectoryError:
        raise _Problem("a directory, not a golden-set file") from None
    except PermissionError:
        raise _Problem(f"permission denied to the operator (uid {os.getuid()})") from None
    except OSError as error:
        raise _Problem(error.strerror or type(error).__name__) from None
    if len(data) > limit:
        raise _Problem(source.too_large(None, limit))
    return stamp, data


async def _get(url: str, seconds: float, limit: int, kept: Stamp | None) -> tuple[Stamp, bytes] | None:
    """The body and its validators, or None when the server answers 304 to the ``kept`` ones."""
    timeout = aiohttp.ClientTimeout(total=seconds)
    headers: dict[str, str] = {}
    if kept:
        etag, modified = kept
        if etag:
            headers["If-None-Match"] = etag
        if modified:
            headers["If-Modified-Since"] = modified
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers) as response,
        ):
            if response.status == 304 and headers:
                return None
            if response.status != 200:
                raise _Problem(f"HTTP {response.status} {response.reason or ''}".rstrip())
            if response.content_length is not None and response.content_length > limit:
                raise _Problem(source.too_large(response.content_length, limit))
            data = bytearray()
            async for chunk in response.content.iter_chunked(CHUNK):
                data += chunk
                if len(data) > limit:
                    raise _Problem(source.too_large(None, limit))
            validators = (response.headers.get("ETag"), response.headers.get("Last-Modified"))
            return (validators if any(validators) else ()), bytes(data)
    except TimeoutError:
        raise  # aiohttp's timeouts are ClientErrors too: the caller names the timeout
    except aiohttp.ClientError as error:
        raise _Problem(str(error) or type(error).__name__) from None
