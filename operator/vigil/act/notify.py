"""Notify: POST a JSON message to a webhook, safely, at most once per idempotency key on the receiver's side.

A webhook URL is a credential (Slack, PagerDuty and most incident tools put the token in it), and
the operator runs with cluster credentials next to the cloud's metadata endpoint. So:

* **The URL comes from a Secret** (the step's ``webhook.secretKeyRef``), is read only when
  sending, and is never written anywhere: results, and so the Incident timeline and Events, name
  the Secret and at most the URL's scheme and host (:func:`redact`).
* **https only**, unless the step sets ``allowInsecure``.
* **Public addresses only**, unless the step sets ``allowPrivateNetwork``: the host is resolved and
  *every* address it resolves to must be globally routable (not loopback, link-local such as
  169.254.169.254, private, shared, reserved or multicast). The check sits in the connection's
  resolver, so the addresses checked are the addresses connected to (no second lookup an attacker's
  DNS could answer differently), and redirects are not followed.
* **No response body is read**: a failure reports the status code only, so a hostile or confused
  receiver cannot reflect text into the Incident.
* **Bounded**: one attempt of at most :data:`TIMEOUT_SECONDS`; the step machine retries until the
  step's timeout.

The step machine may re-issue a notification after a crash (it cannot know whether the POST left
the building before the crash), so every request carries the intent's key as its
``Idempotency-Key`` header (the IETF httpapi draft's name, honoured by most incident tools) and
in the body. The body is ``{"text": ..., "message": ..., "idempotencyKey": ...}``: ``text`` makes
it a valid Slack/Mattermost incoming-webhook payload as it is.

Never raises to the caller: a delivery problem is a :class:`~vigil.act.intents.Result` with
``ok=False`` and a line for the timeline. Only task cancellation propagates.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from collections.abc import Awaitable, Callable

import aiohttp
import aiohttp.abc
import yarl
from kubernetes.client import exceptions

from vigil.act import intents

TIMEOUT_SECONDS = 10.0
IDEMPOTENCY_HEADER = "Idempotency-Key"

SecretReader = Callable[[str, str], Awaitable[str | None]]
"""``(secret name, key) -> value``, None when the Secret or the key does not exist."""


class Refused(Exception):
    """The URL may not be sent to under the step's policy. The message never contains the URL."""


@dataclasses.dataclass(frozen=True)
class Policy:
    """What a step allows beyond the safe default (https to public addresses)."""

    allow_insecure: bool = False
    allow_private_network: bool = False


def redact(url: str) -> str:
    """What may be shown of a webhook URL: ``scheme://host[:port]``, without credentials, path or query."""
    try:
        parsed = yarl.URL(url)
    except (TypeError, ValueError):
        return "an unparseable URL"
    if not parsed.scheme or not parsed.host:
        return "an unparseable URL"
    port = f":{parsed.explicit_port}" if parsed.explicit_port is not None else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


def _address_class(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``ip`` is not a public unicast address, or None if it is one."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    checks = (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("unspecified", ip.is_unspecified),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("non-public", not ip.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def check_address(host: str, address: str, policy: Policy) -> None:
    """Refuse ``address`` (one that ``host`` resolves to) unless it is public or the policy allows it."""
    if policy.allow_private_network:
        return
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError as error:
        raise Refused(f"{host} resolves to an unreadable address") from error
    kind = _address_class(ip)
    if kind is not None:
        raise Refused(
            f"{host} resolves to {ip}, a {kind} address: refused (set allowPrivateNetwork on the step to allow it)"
        )


def check_url(url: str, policy: Policy) -> yarl.URL:
    """The parsed URL if the policy allows sending to it (an IP-literal host is checked here too)."""
    try:
        parsed = yarl.URL(url)
    except (TypeError, ValueError) as error:
        raise Refused("the webhook URL cannot be parsed") from error
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise Refused("the webhook URL must be an absolute http(s) URL")
    if parsed.scheme == "http" and not policy.allow_insecure:
        raise Refused(f"{redact(url)}: plain http is refused (use https, or set allowInsecure on the step)")
    try:
        ipaddress.ip_address(parsed.host.split("%", 1)[0])
    except ValueError:
        return parsed  # a name: checked by the resolver when connecting
    check_address(parsed.host, parsed.host, policy)
    return parsed


class _CheckingResolver(aiohttp.abc.AbstractResolver):
    """aiohttp's resolver, refusing the whole host if any address it resolves to is not allowed."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        for entry in found:
            check_address(host, entry["host"], self._policy)
        return found

    async def close(self) -> None:
        await self._inner.close()


async def post(
    url: str,
    message: str,
    idempotency_key: str,
    *,
    policy: Policy = Policy(),
    timeout_seconds: float = TIMEOUT_SECONDS,
) -> intents.Result:
    """POST ``message`` to ``url`` if ``policy`` allows it; a 2xx answer is delivery."""
    where = redact(url)
    try:
        parsed = check_url(url, policy)
    except Refused as refusal:
        return intents.Result(ok=False, message=f"refused: {refusal}")
    payload = {"text": message, "message": message, "idempotencyKey": idempotency_key}
    headers = {IDEMPOTENCY_HEADER: idempotency_key}
    connector = aiohttp.TCPConnector(resolver=_CheckingResolver(policy), force_close=True)
    try:
        async with (
            aiohttp.ClientSession(connector=connector, trust_env=False) as session,
            session.post(
                parsed,
                json=payload,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            ) as response,
        ):
            if 200 <= response.status < 300:
                return intents.Result(ok=True, message=f"delivered to {where} (HTTP {response.status})")
            return intents.Result(ok=False, message=f"failed: {where} answered HTTP {response.status}")
    except Refused as refusal:
        return intents.Result(ok=False, message=f"refused: {refusal}")
    except TimeoutError:
        return intents.Result(ok=False, message=f"failed: no answer from {where} within {timeout_seconds:g}s")
    except (aiohttp.ClientError, OSError, ValueError) as error:
        return intents.Result(ok=False, message=f"failed: {where}: {_error_text(error)}")


def _error_text(error: BaseException) -> str:
    """A delivery error without its message: aiohttp's messages may quote the full URL."""
    cause = getattr(error, "os_error", None)
    if isinstance(cause, Refused):
        return f"refused: {cause}"
    if isinstance(cause, OSError) and cause.strerror:
        return f"{type(error).__name__} ({cause.strerror})"
    return type(error).__name__


async def execute(
    intent: intents.Notify, read_secret: SecretReader, *, timeout_seconds: float = TIMEOUT_SECONDS
) -> intents.Result:
    """Carry out a Notify intent: read the URL from its Secret, then :func:`post` under the step's policy.

    Without a webhook the Events the worker posts are the notification.
    """
    hook = intent.webhook
    if hook is None:
        return intents.Result(ok=True, message="no webhook configured: recorded in Events only")
    try:
        url = await read_secret(hook.secret, hook.key)
    except exceptions.ApiException as error:
        return intents.Result(
            ok=False, message=f"failed: reading Secret {hook.secret}: HTTP {error.status} {error.reason}"
        )
    except Exception as error:  # urllib3 and socket errors: the machine retries until the step's timeout
        return intents.Result(ok=False, message=f"failed: reading Secret {hook.secret}: {type(error).__name__}")
    if url is None or not url.strip():
        return intents.Result(ok=False, message=f"failed: Secret {hook.secret} has no key {hook.key}, or it is empty")
    policy = Policy(allow_insecure=hook.allow_insecure, allow_private_network=hook.allow_private_network)
    result = await post(url.strip(), intent.message, intent.key, policy=policy, timeout_seconds=timeout_seconds)
    return intents.Result(ok=result.ok, message=f"{result.message} (URL from Secret {hook.secret}, key {hook.key})")
