"""Notify: POST a JSON message to a webhook, at most once per idempotency key on the receiver's side.

The step machine may re-issue a notification after a crash (it cannot know whether the POST
left the building before the crash), so every request carries the intent's key as its
``Idempotency-Key`` header (the IETF httpapi draft's name, honoured by most incident tools) and
in the body. The body is ``{"text": ..., "message": ..., "idempotencyKey": ...}``: ``text`` makes
it a valid Slack/Mattermost incoming-webhook payload as it is.

Never raises to the caller: a delivery problem is a :class:`~vigil.act.intents.Result` with
``ok=False`` and a line for the timeline, and the machine retries until the step's timeout.
Only task cancellation propagates.
"""

from __future__ import annotations

import aiohttp

from vigil.act import intents

TIMEOUT_SECONDS = 10.0
IDEMPOTENCY_HEADER = "Idempotency-Key"
_BODY_EXCERPT = 200


async def post(
    url: str,
    message: str,
    idempotency_key: str,
    *,
    timeout_seconds: float = TIMEOUT_SECONDS,
    session: aiohttp.ClientSession | None = None,
) -> intents.Result:
    """POST ``message`` to ``url``; a 2xx answer is delivery. ``session`` lets callers pool connections."""
    payload = {"text": message, "message": message, "idempotencyKey": idempotency_key}
    headers = {IDEMPOTENCY_HEADER: idempotency_key}
    try:
        if session is None:
            async with aiohttp.ClientSession() as own:
                return await _post(own, url, payload, headers, timeout_seconds)
        return await _post(session, url, payload, headers, timeout_seconds)
    except TimeoutError:
        return intents.Result(ok=False, message=f"failed: no answer from {url} within {timeout_seconds:g}s")
    except (aiohttp.ClientError, OSError, ValueError) as error:
        return intents.Result(ok=False, message=f"failed: {type(error).__name__}: {error}")


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    payload: dict[str, str],
    headers: dict[str, str],
    timeout_seconds: float,
) -> intents.Result:
    async with session.post(
        url, json=payload, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_seconds)
    ) as response:
        if 200 <= response.status < 300:
            return intents.Result(ok=True, message=f"delivered (HTTP {response.status})")
        body = (await response.text(errors="replace"))[:_BODY_EXCERPT].strip()
        detail = f": {body}" if body else ""
        return intents.Result(ok=False, message=f"failed: HTTP {response.status}{detail}")


async def execute(intent: intents.Notify, *, session: aiohttp.ClientSession | None = None) -> intents.Result:
    """Carry out a Notify intent; without a URL the Events the worker posts are the notification."""
    if intent.url is None:
        return intents.Result(ok=True, message="no webhook configured: recorded in Events only")
    return await post(intent.url, intent.message, intent.key, session=session)
