"""The webhook executor against a real local HTTP server: delivery, failures, never raising."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from vigil.act import intents, notify


class Receiver:
    """A webhook that records requests and answers with a chosen status, optionally slowly."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.status = 200
        self.delay = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.json()))
        await asyncio.sleep(self.delay)
        return web.Response(status=self.status, text="" if self.status < 300 else "upstream sad")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield hook, f"http://127.0.0.1:{port}/hook"
    await runner.cleanup()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_notification_posts_json_with_the_idempotency_key(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    result = await notify.post(url, "rollback done", "inc/0-page/1")
    assert result == intents.Result(ok=True, message="delivered (HTTP 200)")
    ((headers, body),) = hook.requests
    assert headers[notify.IDEMPOTENCY_HEADER] == "inc/0-page/1"
    assert body == {"text": "rollback done", "message": "rollback done", "idempotencyKey": "inc/0-page/1"}


async def test_a_non_2xx_answer_is_a_failed_result_with_the_body(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    hook.status = 503
    assert await notify.post(url, "m", "k") == intents.Result(ok=False, message="failed: HTTP 503: upstream sad")


async def test_a_slow_webhook_times_out_without_raising(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    hook.delay = 1.0
    result = await notify.post(url, "m", "k", timeout_seconds=0.1)
    assert not result.ok
    assert result.message == f"failed: no answer from {url} within 0.1s"


async def test_an_unreachable_or_invalid_url_is_a_failed_result_not_an_exception() -> None:
    refused = await notify.post(f"http://127.0.0.1:{free_port()}/x", "m", "k", timeout_seconds=2)
    assert not refused.ok
    assert refused.message.startswith("failed: ClientConnectorError")
    invalid = await notify.post("http://", "m", "k")
    assert not invalid.ok
    assert invalid.message.startswith("failed: ")


async def test_a_shared_session_is_used_and_left_open(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    async with aiohttp.ClientSession() as session:
        assert (await notify.post(url, "a", "k1", session=session)).ok
        assert (await notify.post(url, "b", "k2", session=session)).ok
        assert not session.closed
    assert [body["idempotencyKey"] for _, body in hook.requests] == ["k1", "k2"]


async def test_executing_a_notify_intent_without_url_only_records_events(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    quiet = await notify.execute(intents.Notify(None, "m", "k"))
    assert quiet == intents.Result(ok=True, message="no webhook configured: recorded in Events only")
    loud = await notify.execute(intents.Notify(url, "m", "k"))
    assert loud.ok
    assert len(hook.requests) == 1
