"""Reading a golden set from the model repository (``spec.validation.goldenSet.path``): the I/O.

:func:`vigil.gate.source.locate` decides where the file is and whether the operator can reach it;
this module reads it: a local file under a mounted repository root (in a worker thread, so a slow
network file system never stalls the event loop), or an http(s) GET with aiohttp. Both are bounded
by the validation timeout and :data:`vigil.gate.source.MAX_BYTES`, and every failure is an
:class:`~vigil.gate.source.UnreadableError` whose message names the field and the file, which the
gate turns into a NotValidated verdict.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

import aiohttp

from vigil.gate import source

CHUNK = 64 * 1024


async def read(location: source.Location, roots: Sequence[str], seconds: float, limit: int = source.MAX_BYTES) -> bytes:
    """The file's bytes; raises :class:`~vigil.gate.source.UnreadableError` naming why not."""
    if location.access is source.Access.UNSUPPORTED:
        raise source.UnreadableError(location.problem)
    try:
        if location.access is source.Access.LOCAL:
            return await asyncio.wait_for(asyncio.to_thread(_read_local, location.target, roots, limit), seconds)
        return await _get(location.target, seconds, limit)
    except TimeoutError:
        raise source.UnreadableError(
            f"{location.where}: not read within {seconds:g}s (spec.validation.timeout)"
        ) from None
    except _Problem as problem:
        raise source.UnreadableError(f"{location.where}: {problem}") from None


class _Problem(Exception):
    pass


def _read_local(path: str, roots: Sequence[str], limit: int) -> bytes:
    resolved = os.path.realpath(path)
    refused = source.mounted(resolved, [os.path.realpath(root) for root in roots])
    if refused is not None:
        raise _Problem(refused)
    try:
        with open(resolved, "rb") as file:
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
    return data


async def _get(url: str, seconds: float, limit: int) -> bytes:
    timeout = aiohttp.ClientTimeout(total=seconds)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            if response.status != 200:
                raise _Problem(f"HTTP {response.status} {response.reason or ''}".rstrip())
            if response.content_length is not None and response.content_length > limit:
                raise _Problem(source.too_large(response.content_length, limit))
            data = bytearray()
            async for chunk in response.content.iter_chunked(CHUNK):
                data += chunk
                if len(data) > limit:
                    raise _Problem(source.too_large(None, limit))
            return bytes(data)
    except TimeoutError:
        raise  # aiohttp's timeouts are ClientErrors too: the caller names the timeout
    except aiohttp.ClientError as error:
        raise _Problem(str(error) or type(error).__name__) from None
