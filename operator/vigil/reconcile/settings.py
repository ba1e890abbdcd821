"""The operator's settings, and their validation before anything starts.

A bad value must stop ``vigil run`` at once with one line naming the option, not surface minutes
later as a dead loop (an unparseable ``--min-window`` used to kill the fleet task silently, and
``--eval-interval 0`` made it spin). :func:`problems` is pure; :func:`kubeconfig_problem` only
looks at the file system.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import re
import urllib.parse

from vigil.api import slo as sloapi
from vigil.gate import source
from vigil.reconcile import leader

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
NAMESPACE_GLOB = re.compile(r"^!?[-a-z0-9*?]{1,63}$")  # kopf's --namespace: globs, ! excludes
MAX_WORKERS = 256
MIB = 1024 * 1024
MAX_GOLDEN_SET_MIB = 1024
SERVICE_ACCOUNT_NAMESPACE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class ConfigError(ValueError):
    """Settings the operator cannot run with; the message names the option."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Operator settings from the command line."""

    kubeconfig: str | None = None
    namespaces: tuple[str, ...] = ()
    liveness: str | None = None
    resync_seconds: float = 300.0
    status_refresh_seconds: float = 120.0
    status_heartbeat_seconds: float = 600.0
    """Most often a status whose only change is ``lastEvaluationTime`` (an idle deployment's same
    numbers, judged again) is rewritten: once per period, at a phase of its own (spread over the fleet)."""
    workers: int = 16
    """Deployments reconciled at once. A reconcile mostly waits on the API server (a new deployment's
    first pass makes three writes), so the workers, not the CPU, bound how fast a burst of creations
    is taken up; each worker is a coroutine, and the API calls share a thread pool sized to them."""
    prometheus_url: str | None = None
    eval_interval: float = 5.0
    min_window: str = "20s"
    rate_window: str = "5m"
    baseline_window: str = "30m"
    metrics_port: int = 9102
    metrics_address: str = "127.0.0.1"
    standalone: bool = False
    lease_name: str = "vigil"
    lease_namespace: str | None = None
    timing: leader.Timing = dataclasses.field(default_factory=leader.Timing)
    prometheus_bearer_token_file: str | None = None
    prometheus_verify: bool | str = True  # a CA bundle path, or False (insecure)
    inference_url: str = "{ip}:8000"
    """Where the golden-request gate reaches a pod's Triton HTTP endpoint (no scheme): a template of
    ``{ip}``, ``{pod}`` and ``{namespace}``, e.g. a sidecar proxy or the sandbox's simulator."""
    model_repository_roots: tuple[str, ...] = ()
    """Model repositories mounted into the operator: the only local directories the gate reads
    golden sets from (``spec.validation.goldenSet.path`` of a /path or file:// repository)."""
    golden_set_max_mib: int = source.MAX_BYTES // MIB
    """The largest golden set read from a model repository (parsed in memory; twice this is kept)."""

    @property
    def golden_set_max_bytes(self) -> int:
        return self.golden_set_max_mib * MIB

    def seconds(self, option: str) -> float:
        """A duration option (``min_window``, ``rate_window``, ``baseline_window``) in seconds."""
        return sloapi.duration_seconds(str(getattr(self, option)))


def problems(settings: Settings) -> list[str]:
    """Everything wrong with ``settings``, each naming its command-line option."""
    found: list[str] = []
    for option in ("min_window", "rate_window", "baseline_window"):
        flag = "--" + option.replace("_", "-")
        try:
            if settings.seconds(option) <= 0:
                found.append(f"{flag} must be longer than zero, got {getattr(settings, option)!r}")
        except ValueError as error:
            found.append(f"{flag}: {error}")
    for flag, value in (
        ("--eval-interval", settings.eval_interval),
        ("--resync", settings.resync_seconds),
        ("--status-refresh", settings.status_refresh_seconds),
        ("--status-heartbeat", settings.status_heartbeat_seconds),
    ):
        if not (math.isfinite(value) and value > 0):
            found.append(f"{flag} must be a positive number of seconds, got {value:g}")
    if not 1 <= settings.workers <= MAX_WORKERS:
        found.append(f"--workers must be 1 to {MAX_WORKERS}, got {settings.workers}")
    if not 0 <= settings.metrics_port <= 65535:
        found.append(f"--metrics-port must be 0 (off) to 65535, got {settings.metrics_port}")
    if settings.metrics_port and not settings.metrics_address.strip():
        found.append("--metrics-address must not be empty")
    if settings.prometheus_url is not None:
        found += _url_problems("--prometheus-url", settings.prometheus_url, ("http", "https"))
    for flag, path in (
        ("--prometheus-bearer-token-file", settings.prometheus_bearer_token_file),
        ("--prometheus-ca-file", settings.prometheus_verify if isinstance(settings.prometheus_verify, str) else None),
    ):
        if path is not None and not pathlib.Path(path).is_file():
            found.append(f"{flag} {path}: no such file")
    found += inference_url_problems(settings.inference_url)
    if not 1 <= settings.golden_set_max_mib <= MAX_GOLDEN_SET_MIB:
        found.append(f"--golden-set-max-mib must be 1 to {MAX_GOLDEN_SET_MIB}, got {settings.golden_set_max_mib}")
    found += [
        f"--model-repository-root {root!r} must be an absolute path"
        for root in settings.model_repository_roots
        if not root.startswith("/")
    ]
    if settings.liveness is not None:
        found += _url_problems("--liveness", settings.liveness, ("http",))
    found += [
        f"--namespace {pattern!r} is not a namespace name or pattern (DNS-1123 labels, globs * ?, ! to exclude)"
        for pattern in settings.namespaces
        if not all(NAMESPACE_GLOB.match(glob.strip()) for glob in pattern.split(","))
    ]
    if not settings.standalone:
        if not DNS_SUBDOMAIN.match(settings.lease_name):
            found.append(f"--lease-name {settings.lease_name!r} is not a valid object name (DNS-1123 subdomain)")
        if settings.lease_namespace is not None and not DNS_LABEL.match(settings.lease_namespace):
            found.append(f"--lease-namespace {settings.lease_namespace!r} is not a valid namespace name")
        found += settings.timing.problems()
    return found


INFERENCE_URL_FIELDS = ("ip", "pod", "namespace")


def inference_url_problems(template: str) -> list[str]:
    """``--inference-url`` must be host:port[/path] without a scheme, with only the known fields."""
    flag = "--inference-url"
    if "://" in template:
        return [f"{flag} {template!r} must not have a scheme (tritonclient adds http://)"]
    try:
        filled = template.format(**dict.fromkeys(INFERENCE_URL_FIELDS, "x"))
    except (KeyError, IndexError, ValueError) as error:
        return [f"{flag} {template!r}: only {{ip}}, {{pod}} and {{namespace}} may be filled in ({error})"]
    if not ("{ip}" in template or "{pod}" in template):
        return [f"{flag} {template!r} names no pod: use {{ip}} or {{pod}}"]
    if not filled.strip() or " " in filled:
        return [f"{flag} {template!r} is not host:port[/path]"]
    return []


def _url_problems(flag: str, url: str, schemes: tuple[str, ...]) -> list[str]:
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - parsing the port raises on a bad one
    except ValueError as error:
        return [f"{flag} {url!r} is not a URL: {error}"]
    if parts.scheme not in schemes or not parts.netloc:
        return [f"{flag} {url!r} must be an {' or '.join(schemes)} URL with a host, e.g. {schemes[0]}://host:port"]
    return []


def kubeconfig_problem(path: str | None) -> str | None:
    """Why ``path`` (``--kubeconfig`` / ``$KUBECONFIG``) cannot be read, or None if it can."""
    if path is None:
        return None
    for item in path.split(os.pathsep):
        if not item:
            continue
        file = pathlib.Path(item).expanduser()
        if not file.is_file():
            return f"--kubeconfig {item}: no such file"
        if not os.access(file, os.R_OK):
            return f"--kubeconfig {item}: not readable"
    return None


def lease_namespace(settings: Settings) -> str:
    """Where the Lease lives: as given; else the pod's own namespace; else the first namespace watched
    by name (not by pattern); else ``default``."""
    if settings.lease_namespace:
        return settings.lease_namespace
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        named = [ns for ns in settings.namespaces if DNS_LABEL.match(ns)]
        return named[0] if named else "default"
