"""The edge copies pod status into plain facts without judging them (diagnosis judges them)."""

from __future__ import annotations

import datetime
from typing import Any

from kubernetes import client

from vigil import labels
from vigil.diagnose import cause
from vigil.diagnose import pods as podfacts
from vigil.reconcile import kube

FINISHED = datetime.datetime(2026, 11, 22, 11, 59, tzinfo=datetime.UTC)


def pod(status: client.V1PodStatus, name: str = "resnet-abc-1") -> dict[str, Any]:
    """The pod as the API server sends it (JSON, camelCase), which is what the edge reads."""
    built = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={labels.REVISION: "abc"}),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="triton", resources=client.V1ResourceRequirements(limits={labels.GPU_RESOURCE: "2"})
                )
            ]
        ),
        status=status,
    )
    wire: dict[str, Any] = client.ApiClient().sanitize_for_serialization(built)
    return wire


def test_a_crash_looping_container_is_copied_with_its_counts_reasons_and_exit_code() -> None:
    status = client.V1PodStatus(
        phase="Running",
        conditions=[
            client.V1PodCondition(type="PodScheduled", status="True"),
            client.V1PodCondition(type="Ready", status="False", reason="ContainersNotReady"),
        ],
        container_statuses=[
            client.V1ContainerStatus(
                name="triton",
                image="triton",
                image_id="",
                ready=False,
                restart_count=7,
                state=client.V1ContainerState(
                    waiting=client.V1ContainerStateWaiting(reason="CrashLoopBackOff", message="back-off 5m0s")
                ),
                last_state=client.V1ContainerState(
                    terminated=client.V1ContainerStateTerminated(
                        exit_code=137, reason="OOMKilled", finished_at=FINISHED
                    )
                ),
            )
        ],
    )
    facts = kube.pod_facts(pod(status))
    assert facts == podfacts.PodFacts(
        name="resnet-abc-1",
        revision="abc",
        phase="Running",
        ready=False,
        scheduled=True,
        gpus=2,
        containers=(
            podfacts.ContainerFacts(
                name="triton",
                ready=False,
                restarts=7,
                state=podfacts.WAITING,
                reason="CrashLoopBackOff",
                message="back-off 5m0s",
                last_reason="OOMKilled",
                last_exit_code=137,
                last_finished_at=FINISHED,
            ),
        ),
    )
    assert cause.failing(facts, FINISHED)


def test_an_unschedulable_pod_carries_the_schedulers_reason_and_message() -> None:
    message = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."
    status = client.V1PodStatus(
        phase="Pending",
        conditions=[
            client.V1PodCondition(type="PodScheduled", status="False", reason="Unschedulable", message=message)
        ],
    )
    facts = kube.pod_facts(pod(status))
    assert (facts.phase, facts.scheduled, facts.schedule_reason, facts.schedule_message) == (
        "Pending",
        False,
        "Unschedulable",
        message,
    )
    assert facts.containers == ()
    assert cause.unschedulable(facts)
    assert not cause.failing(facts, FINISHED)


def test_a_healthy_pod_is_copied_as_ready_and_judged_healthy() -> None:
    status = client.V1PodStatus(
        phase="Running",
        conditions=[client.V1PodCondition(type="Ready", status="True")],
        container_statuses=[
            client.V1ContainerStatus(
                name="triton",
                image="triton",
                image_id="",
                ready=True,
                restart_count=0,
                state=client.V1ContainerState(running=client.V1ContainerStateRunning()),
            )
        ],
    )
    facts = kube.pod_facts(pod(status))
    assert facts.ready
    assert facts.containers[0].state == podfacts.RUNNING
    assert facts.scheduled is None
    assert not cause.failing(facts, FINISHED)
    assert not cause.unschedulable(facts)


def test_a_deployments_replica_failure_is_copied_with_the_api_servers_message() -> None:
    refused = 'pods "resnet-abc-x" is forbidden: violates PodSecurity "restricted:latest": privileged'
    deployment: dict[str, Any] = {
        "metadata": {"name": "resnet-abc", "labels": {labels.REVISION: "abc"}},
        "spec": {"replicas": 2},
        "status": {
            "conditions": [
                {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
                {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": refused},
            ]
        },
    }
    found = kube.workload_of(deployment)
    assert found is not None
    assert (found.replicas, found.ready, found.refused) == (2, 0, refused)
    deployment["status"]["conditions"][1]["status"] = "False"
    assert kube.replica_failure(deployment["status"]) is None
    assert kube.replica_failure({}) is None
    assert kube.replica_failure(None) is None
