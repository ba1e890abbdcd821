"""The webhook executor against a real local HTTP server: delivery, the URL policy, redaction, never raising."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from kubernetes.client import exceptions

from vigil.act import intents, notify

TOKEN = "T0KEN-s3cr3t"
LOOPBACK = notify.Policy(allow_insecure=True, allow_private_network=True)


class Receiver:
    """A webhook that records requests and answers with a chosen status, optionally slowly."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.status = 200
        self.delay = 0.0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, dict(request.headers), await request.json()))
        await asyncio.sleep(self.delay)
        if self.status in (301, 302, 307, 308):
            raise web.HTTPFound("/elsewhere") if self.status == 302 else web.HTTPPermanentRedirect("/elsewhere")
        return web.Response(status=self.status, text="" if self.status < 300 else f"upstream sad {TOKEN}")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hook/{token}", hook.handle)
    app.router.add_post("/elsewhere", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield hook, f"http://127.0.0.1:{port}/hook/{TOKEN}?k={TOKEN}"
    await runner.cleanup()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def secrets(values: dict[tuple[str, str], str]) -> notify.SecretReader:
    async def read(name: str, key: str) -> str | None:
        return values.get((name, key))

    return read


async def test_a_notification_posts_json_with_the_idempotency_key(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    result = await notify.post(url, "rollback done", "inc/0-page/1", policy=LOOPBACK)
    assert result.ok
    assert result.message == f"delivered to {notify.redact(url)} (HTTP 200)"
    ((path, headers, body),) = hook.requests
    assert path == f"/hook/{TOKEN}"
    assert headers[notify.IDEMPOTENCY_HEADER] == "inc/0-page/1"
    assert body == {"text": "rollback done", "message": "rollback done", "idempotencyKey": "inc/0-page/1"}


def test_redaction_keeps_only_scheme_host_and_port() -> None:
    assert notify.redact(f"https://user:{TOKEN}@hooks.example.com/services/{TOKEN}?t={TOKEN}#x") == (
        "https://hooks.example.com"
    )
    assert notify.redact(f"http://127.0.0.1:8080/hook/{TOKEN}") == "http://127.0.0.1:8080"
    assert notify.redact("not a url") == "an unparseable URL"


async def test_a_non_2xx_answer_reports_the_status_code_and_never_the_body(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    hook.status = 503
    result = await notify.post(url, "m", "k", policy=LOOPBACK)
    assert result == intents.Result(ok=False, message=f"failed: {notify.redact(url)} answered HTTP 503")
    assert "sad" not in result.message


async def test_redirects_are_not_followed(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    hook.status = 302
    result = await notify.post(url, "m", "k", policy=LOOPBACK)
    assert not result.ok
    assert result.message.endswith("answered HTTP 302")
    assert [path for path, _, _ in hook.requests] == [f"/hook/{TOKEN}"]


async def test_a_slow_webhook_times_out_without_raising(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    hook.delay = 1.0
    result = await notify.post(url, "m", "k", policy=LOOPBACK, timeout_seconds=0.1)
    assert result == intents.Result(ok=False, message=f"failed: no answer from {notify.redact(url)} within 0.1s")


async def test_an_unreachable_or_invalid_url_is_a_failed_result_without_the_url() -> None:
    refused = await notify.post(f"http://127.0.0.1:{free_port()}/{TOKEN}", "m", "k", policy=LOOPBACK, timeout_seconds=2)
    assert not refused.ok
    assert refused.message.startswith("failed: http://127.0.0.1:")
    assert "ClientConnectorError" in refused.message
    assert TOKEN not in refused.message
    invalid = await notify.post(f"http://[{TOKEN}/x", "m", "k", policy=LOOPBACK)
    assert not invalid.ok
    assert TOKEN not in invalid.message


async def test_plain_http_is_refused_unless_the_step_allows_it(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    result = await notify.post(url, "m", "k", policy=notify.Policy(allow_private_network=True))
    assert not result.ok
    assert result.message == (
        f"refused: {notify.redact(url)}: plain http is refused (use https, or set allowInsecure on the step)"
    )
    assert hook.requests == []


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("100.64.0.1", "non-public"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fd00::1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
    ],
)
def test_non_public_addresses_are_refused_unless_allowed(address: str, kind: str) -> None:
    with pytest.raises(notify.Refused, match=f"a {kind} address"):
        notify.check_address("hooks.example.com", address, notify.Policy())
    notify.check_address("hooks.example.com", address, notify.Policy(allow_private_network=True))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    notify.check_address("hooks.example.com", address, notify.Policy())


async def test_an_https_url_to_a_link_local_address_is_refused_before_connecting() -> None:
    result = await notify.post(f"https://169.254.169.254/latest/{TOKEN}", "m", "k")
    assert result.message == (
        "refused: 169.254.169.254 resolves to 169.254.169.254, a link-local address: "
        "refused (set allowPrivateNetwork on the step to allow it)"
    )


async def test_a_name_that_resolves_to_loopback_is_refused_by_the_resolver(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    by_name = url.replace("127.0.0.1", "localhost")
    result = await notify.post(by_name, "m", "k", policy=notify.Policy(allow_insecure=True))
    assert not result.ok
    assert "localhost resolves to" in result.message
    assert "loopback address: refused" in result.message
    assert TOKEN not in result.message
    assert hook.requests == []
    allowed = await notify.post(by_name, "m", "k", policy=LOOPBACK)
    assert allowed.ok


async def test_executing_reads_the_url_from_the_secret_and_never_shows_it(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    ref = intents.WebhookRef("pager", "url", allow_insecure=True, allow_private_network=True)
    result = await notify.execute(intents.Notify(ref, "m", "k"), secrets({("pager", "url"): url + "\n"}))
    assert result.ok
    assert result.message == f"delivered to {notify.redact(url)} (HTTP 200) (URL from Secret pager, key url)"
    assert len(hook.requests) == 1
    strict = intents.WebhookRef("pager", "url")
    refused = await notify.execute(intents.Notify(strict, "m", "k"), secrets({("pager", "url"): url}))
    assert not refused.ok
    assert TOKEN not in refused.message
    assert len(hook.requests) == 1


async def test_a_missing_or_unreadable_secret_is_a_failed_result_naming_the_secret() -> None:
    ref = intents.WebhookRef("pager", "url")
    missing = await notify.execute(intents.Notify(ref, "m", "k"), secrets({}))
    assert missing == intents.Result(ok=False, message="failed: Secret pager has no key url, or it is empty")

    async def forbidden(name: str, key: str) -> str | None:
        raise exceptions.ApiException(status=403, reason="Forbidden")

    denied = await notify.execute(intents.Notify(ref, "m", "k"), forbidden)
    assert denied == intents.Result(ok=False, message="failed: reading Secret pager: HTTP 403 Forbidden")

    async def down(name: str, key: str) -> str | None:
        raise ConnectionResetError("peer reset")

    broken = await notify.execute(intents.Notify(ref, "m", "k"), down)
    assert broken == intents.Result(ok=False, message="failed: reading Secret pager: ConnectionResetError")


async def test_executing_a_notify_intent_without_a_webhook_only_records_events() -> None:
    quiet = await notify.execute(intents.Notify(None, "m", "k"), secrets({}))
    assert quiet == intents.Result(ok=True, message="no webhook configured: recorded in Events only")
