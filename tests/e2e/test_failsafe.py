"""End to end: healing fails safe on the real sandbox.

A runbookRef that cannot be used takes no automatic action and says why; an approval runbook is
respected; a webhook is read from a Secret and its URL is shown nowhere; and pods that really
crash-loop (kwok's chaos Stages, :mod:`vigil.dev.kwok`) are diagnosed from their real restart
counts and reasons.

Isolated lane: the module's operator watches only this session's namespaces and is judged by the
lane's own Prometheus; the pods are CPU-only (``triton: {gpus: 0}``).
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.e2e import events, waiting
from tests.e2e.operator_fixtures import OperatorProcess
from tests.e2e.test_heal import (
    AVAILABILITY,
    CPU_ONLY,
    approve,
    create_runbook,
    healthy_v1,
    only_incident,
    release_bad_v2,
    step,
)
from tests.e2e.test_modeldeployment import condition, create, get, manifest
from tests.e2e.test_observe import slo_state
from vigil.dev import kwok
from vigil.sim import client as simclient

pytestmark = [pytest.mark.e2e, pytest.mark.isolated]

TOKEN = "s3cr3t-t0ken-in-the-path"


def events_text(kube: client.ApiClient, ns: str) -> str:
    return "\n".join(f"{e.reason} {e.message}" for e in client.CoreV1Api(kube).list_namespaced_event(ns).items)


def with_step(kube: client.ApiClient, ns: str, name: str, state: str) -> dict[str, Any] | None:
    """The namespace's only Incident, once its plan's step ``name`` is in ``state``."""
    incident = only_incident(kube, ns)
    plan = (incident or {}).get("status", {}).get("plan") or {}
    steps = [s for s in plan.get("steps", []) if s["name"] == name and s["state"] == state]
    return incident if steps else None


def erroring(kube: client.ApiClient, sim: simclient.ControlClient, ns: str, name: str, **spec: Any) -> None:
    """A deployment Met under load, then failing half its requests: its availability SLO breaches."""
    create(kube, ns, manifest(name, replicas=2, slos=[AVAILABILITY], triton=CPU_ONLY, **spec))
    waiting.until(lambda: (condition(get(kube, ns, name), "Available") or {}).get("status") == "True", 120, "Available")
    sim.set_load({"namespace": ns, "name": name, "rate": 40})
    waiting.until(lambda: slo_state(kube, ns, name) == "Met", 120, "SLO Met under clean traffic")
    sim.set_fault({"namespace": ns, "name": name, "errorRatio": 0.5})


def test_a_runbook_ref_to_a_missing_runbook_takes_no_automatic_action(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess, sim: simclient.ControlClient
) -> None:
    _, good = healthy_v1(kube, sim, namespace, "orphan", runbookRef={"name": "absent"}, triton=CPU_ONLY)
    resolved = condition(get(kube, namespace, "orphan"), "RunbookResolved")
    assert resolved is not None
    assert (resolved["status"], resolved["reason"]) == ("False", "NotFound")
    assert resolved["message"].startswith("runbookRef absent: no Runbook absent in this namespace")
    release_bad_v2(kube, sim, namespace, "orphan")

    incident = waiting.until(
        lambda: with_step(kube, namespace, "rollback", "DryRun"), 240, "the default's rollback recorded as a dry run"
    )
    plan = incident["status"]["plan"]
    assert (plan["runbook"], plan["mode"]) == ("builtin-default", "dryRun")
    assert step(incident, "rollback")["target"]["toRevision"] == good
    assert any(e["type"] == "RunbookUnresolved" for e in incident["status"]["timeline"])
    md = get(kube, namespace, "orphan")
    assert "rollback" not in md["status"], "acted although the runbookRef names no Runbook"
    assert md["status"]["modelVersion"] == "2"
    events.posted(kube, namespace, "orphan", "RunbookResolvedFalse", lambda e: e.type == "Warning")


def test_an_approval_runbook_is_respected(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess, sim: simclient.ControlClient
) -> None:
    create_runbook(
        kube,
        namespace,
        "careful",
        {"mode": "approval", "steps": [{"name": "scale", "action": "scaleOut", "params": {"stepReplicas": 1}}]},
    )
    erroring(kube, sim, namespace, "asks", runbookRef={"name": "careful"}, maxReplicas=4)
    incident = waiting.until(
        lambda: (i := only_incident(kube, namespace)) and i["status"]["phase"] == "AwaitingApproval" and i,
        240,
        "the plan to wait for approval",
    )
    md = get(kube, namespace, "asks")
    assert "scale" not in md["status"]
    resolved = condition(md, "RunbookResolved")
    assert resolved is not None
    assert (resolved["status"], resolved["reason"]) == ("True", "Resolved")
    assert incident["status"]["plan"]["runbook"] == "careful"
    assert incident["status"]["plan"]["mode"] == "approval"
    approve(kube, namespace, incident["metadata"]["name"])
    scaled = waiting.until(lambda: get(kube, namespace, "asks")["status"].get("scale"), 120, "the approved scale-out")
    assert scaled["replicas"] == 3


class Hook(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        Hook.received.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def webhook() -> Iterator[str]:
    """A webhook receiver on loopback (the sandbox has no https server), its URL carrying a token."""
    Hook.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook/{TOKEN}"
    server.shutdown()
    server.server_close()


def test_notify_reads_the_webhook_from_a_secret_and_never_shows_it(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess, sim: simclient.ControlClient, webhook: str
) -> None:
    client.CoreV1Api(kube).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="pager"), data={"url": base64.b64encode(webhook.encode()).decode()}
        ),
    )
    hook = {"secretKeyRef": {"name": "pager", "key": "url"}, "allowInsecure": True, "allowPrivateNetwork": True}
    create_runbook(
        kube, namespace, "tell", {"steps": [{"name": "page", "action": "notify", "params": {"webhook": hook}}]}
    )
    erroring(kube, sim, namespace, "loud", runbookRef={"name": "tell"})

    incident = waiting.until(lambda: with_step(kube, namespace, "page", "Succeeded"), 240, "the notify step to succeed")
    path, headers, body = Hook.received[0]
    assert path == f"/hook/{TOKEN}"
    assert headers["Idempotency-Key"] == body["idempotencyKey"]
    assert body["idempotencyKey"].startswith(f"{incident['metadata']['name']}/0-page/")
    origin = webhook.split("/hook/")[0]
    assert step(incident, "page")["result"] == f"delivered to {origin} (HTTP 200) (URL from Secret pager, key url)"
    # Its Events (posted after the status write) must not show the URL either: wait for the last one.
    events.posted(kube, namespace, "loud", "Notified", lambda e: "Secret pager" in str(e.message))
    shown = json.dumps(incident) + json.dumps(get(kube, namespace, "loud")) + events_text(kube, namespace)
    assert TOKEN not in shown
    assert webhook not in shown
    assert "Secret pager" in shown


def restarts(kube: client.ApiClient, ns: str, pod: str) -> int:
    found = client.CoreV1Api(kube).read_namespaced_pod(pod, ns)
    return sum(c.restart_count or 0 for c in found.status.container_statuses or [])


def test_crash_looping_pods_are_diagnosed_from_their_real_restart_counts(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess, sim: simclient.ControlClient
) -> None:
    create(kube, namespace, manifest("crashy", replicas=2, slos=[AVAILABILITY], paused=True, triton=CPU_ONLY))
    waiting.until(
        lambda: (condition(get(kube, namespace, "crashy"), "Available") or {}).get("status") == "True", 120, "Available"
    )
    sim.set_load({"namespace": namespace, "name": "crashy", "rate": 40})
    waiting.until(lambda: slo_state(kube, namespace, "crashy") == "Met", 120, "SLO Met under clean traffic")
    core_v1 = client.CoreV1Api(kube)
    victim = sorted(p.metadata.name for p in core_v1.list_namespaced_pod(namespace).items)[0]
    core_v1.patch_namespaced_pod(victim, namespace, {"metadata": {"labels": {kwok.CHAOS_LABEL: kwok.CRASH_LOOP}}})
    waiting.until(lambda: restarts(kube, namespace, victim) >= 2, 90, f"pod {victim} to crash-loop")
    degraded = waiting.until(
        lambda: (c := condition(get(kube, namespace, "crashy"), "Degraded")) and c["reason"] == "PodsFailing" and c,
        60,
        "Degraded=PodsFailing",
    )
    assert victim in degraded["message"]
    sim.set_fault({"namespace": namespace, "name": "crashy", "errorRatio": 0.5})
    incident = waiting.until(lambda: only_incident(kube, namespace), 180, "an incident")
    diagnosis = incident["status"]["diagnosis"]
    assert diagnosis["cause"] == "CrashingPods"
    evidence = next(e for e in diagnosis["evidence"] if e["kind"] == "crashingPods")
    observed_now = restarts(kube, namespace, victim)
    match = re.search(
        rf"{victim} \(triton: (CrashLoopBackOff|Error exit code 1|running)(, last Error exit code 1)?, (\d+) restarts?; not ready\)",
        evidence["message"],
    )
    assert match is not None, evidence["message"]
    assert 2 <= int(match.group(3)) <= observed_now
    assert evidence["value"] == 1
