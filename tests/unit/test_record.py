"""State-in/state-out tests of the Incident record: names, the first manifest, timeline, resolve, prune."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest

from tests.unit import factories
from vigil.api import conditions as cond
from vigil.api import incident as incapi
from vigil.api import runbook as rbapi
from vigil.api import slo as sloapi
from vigil.record import incidents

NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
BREACH = NOW - datetime.timedelta(minutes=3)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

SLOS = [
    {"name": "p99", "kind": "latency", "thresholdMs": 250},
    {"name": "errors", "kind": "availability", "objective": 99.9},
]


def later(seconds: float) -> datetime.datetime:
    return NOW + datetime.timedelta(seconds=seconds)


def breached(**overrides: Any) -> sloapi.SLOStatus:
    body: dict[str, Any] = {
        "name": "p99",
        "state": sloapi.SLOState.BREACHED,
        "sli": 412.5,
        "request_rate": 20.0,
        "burn_rates": [
            sloapi.WindowBurn(window="1h", burn_rate=1.4, sli=350.0),
            sloapi.WindowBurn(window="5m", burn_rate=1.65, sli=412.5),
        ],
        "revision": "rev-b",
        "message": "page pair burns 1.65x over 5m and 1.4x over 1h (factor 1)",
        "last_transition_time": cond.rfc3339(BREACH),
    }
    body.update(overrides)
    return sloapi.SLOStatus(**body)


DIAGNOSIS = incapi.Diagnosis(
    cause=rbapi.Cause.LOAD_SURGE,
    summary="SLO p99: LoadSurge: 30 req/s is 3x the baseline of 10 req/s",
    evidence=[incapi.Evidence(kind="requestRate", message="30 req/s is 3x the baseline", value=3.0)],
)


def manifest(**slo: Any) -> dict[str, Any]:
    md = factories.md(slos=SLOS, generation=4)
    md.status.current_revision = "rev-current"
    return incidents.new_incident(md, "uid-md", breached(**slo), DIAGNOSIS, NOW)


def status_with(*types: str) -> incapi.IncidentStatus:
    timeline = [
        incapi.TimelineEntry(time=cond.rfc3339(later(i)), type=t, message=f"{t} {i}") for i, t in enumerate(types)
    ]
    return incapi.IncidentStatus(opened_at=cond.rfc3339(NOW), timeline=timeline)


# incident_name.


def test_name_is_deployment_slo_and_breach_start_in_utc() -> None:
    assert incidents.incident_name("resnet", "p99", BREACH) == "resnet-p99-20261122115700"


def test_name_converts_the_opening_time_to_utc() -> None:
    local = BREACH.astimezone(datetime.timezone(datetime.timedelta(hours=5, minutes=30)))
    assert incidents.incident_name("resnet", "p99", local) == "resnet-p99-20261122115700"


def test_name_is_the_same_for_the_same_breach_so_a_restart_opens_no_duplicate() -> None:
    first = incidents.incident_name("resnet", "p99", BREACH)
    assert incidents.incident_name("resnet", "p99", BREACH) == first
    assert incidents.incident_name("resnet", "p99", BREACH + datetime.timedelta(seconds=1)) != first


def test_longest_names_are_cut_to_a_dns_label_with_a_hash() -> None:
    md, slo = "m" * 40, "s" * 40
    name = incidents.incident_name(md, slo, BREACH)
    assert len(name) == 63
    assert DNS_LABEL.match(name)
    assert name.startswith("m" * 19 + "-" + "s" * 19 + "-")
    assert name.endswith("-20261122115700")


def test_a_short_slo_name_leaves_the_deployment_name_more_room() -> None:
    name = incidents.incident_name("m" * 40, "s" * 15, BREACH)
    assert len(name) == 63
    assert name.startswith("m" * 23 + "-" + "s" * 15 + "-")


def test_two_long_names_each_keep_half_the_room() -> None:
    name = incidents.incident_name("m" * 25, "p99-latency-under-load-" + "x" * 10, BREACH)
    assert len(name) == 63
    assert name.startswith("m" * 19 + "-p99-latency-under-l-")


def test_cut_names_sharing_a_prefix_still_differ() -> None:
    one = incidents.incident_name("a" * 40, "latency-" + "x" * 30, BREACH)
    two = incidents.incident_name("a" * 40, "latency-" + "y" * 30, BREACH)
    assert one != two
    assert len(one) <= 63
    assert len(two) <= 63


def test_cut_never_leaves_a_double_dash() -> None:
    # Each name is cut to 19 characters: right after a dash in both.
    name = incidents.incident_name("d" * 18 + "-" + "e" * 21, "s" * 18 + "-" + "t" * 21, BREACH)
    assert "--" not in name
    assert DNS_LABEL.match(name)


def test_names_of_unexpected_characters_become_dns_safe() -> None:
    name = incidents.incident_name("ResNet_50", "P99.latency", BREACH)
    assert name == "resnet-50-p99-latency-20261122115700"


# new_incident.


def test_new_incident_is_owned_by_its_deployment_and_labelled() -> None:
    body = manifest()
    assert body["apiVersion"] == "vigil.dev/v1alpha1"
    assert body["kind"] == "Incident"
    metadata = body["metadata"]
    assert metadata["name"] == "resnet-p99-20261122115700"
    assert metadata["namespace"] == "ml"
    assert metadata["labels"]["vigil.dev/modeldeployment"] == "resnet"
    assert metadata["labels"]["app.kubernetes.io/managed-by"] == "vigil"
    assert metadata["ownerReferences"] == [
        {
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "ModelDeployment",
            "name": "resnet",
            "uid": "uid-md",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_new_incident_spec_names_the_breach() -> None:
    assert manifest()["spec"] == {
        "modelDeployment": "resnet",
        "slo": "p99",
        "revision": "rev-b",
        "generation": 4,
        "trigger": "Breach",
    }


def test_new_incident_revision_falls_back_to_the_serving_revision() -> None:
    assert manifest(revision=None)["spec"]["revision"] == "rev-current"


def test_new_incident_status_is_open_with_sli_shortest_burn_and_diagnosis() -> None:
    status = manifest()["status"]
    assert status["phase"] == "Open"
    assert status["openedAt"] == "2026-11-22T11:57:00Z"
    assert status["sli"] == 412.5
    assert status["burnRate"] == 1.65  # the 5m window, listed after 1h
    assert status["diagnosis"]["cause"] == "LoadSurge"
    assert status["diagnosis"]["evidence"][0] == {
        "kind": "requestRate",
        "message": "30 req/s is 3x the baseline",
        "value": 3.0,
    }


def test_new_incident_timeline_records_detection_with_sli_values_then_diagnosis() -> None:
    detected, diagnosed = manifest()["status"]["timeline"]
    assert detected["type"] == "Detected"
    assert detected["time"] == "2026-11-22T11:57:00Z"
    assert "SLO p99 Breached on revision rev-b: SLI 412.5ms" in detected["message"]
    assert "burn 5m 1.65x, 1h 1.4x" in detected["message"]
    assert "20 req/s" in detected["message"]
    assert diagnosed == {
        "time": "2026-11-22T12:00:00Z",
        "type": "Diagnosed",
        "message": "LoadSurge: SLO p99: LoadSurge: 30 req/s is 3x the baseline of 10 req/s",
    }


def test_new_incident_without_a_transition_time_opens_now() -> None:
    body = manifest(last_transition_time=None)
    assert body["metadata"]["name"] == "resnet-p99-20261122120000"
    assert body["status"]["openedAt"] == "2026-11-22T12:00:00Z"


def test_new_incident_for_a_ratio_slo_shows_the_sli_in_percent() -> None:
    body = manifest(name="errors", sli=98.2, burn_rates=[])
    assert "SLI 98.2%" in body["status"]["timeline"][0]["message"]
    assert "burnRate" not in body["status"]


def test_new_incident_computed_after_a_restart_is_the_same_object_but_for_diagnosis_time() -> None:
    md = factories.md(slos=SLOS, generation=4)
    first = incidents.new_incident(md, "uid-md", breached(), DIAGNOSIS, NOW)
    again = incidents.new_incident(md, "uid-md", breached(), DIAGNOSIS, later(90))
    assert again["metadata"] == first["metadata"]
    assert again["spec"] == first["spec"]
    assert again["status"]["openedAt"] == first["status"]["openedAt"]


def test_new_incident_parses_back_as_an_incident() -> None:
    parsed = incapi.Incident.model_validate(manifest())
    assert parsed.status.phase is incapi.Phase.OPEN
    assert parsed.status.diagnosis == DIAGNOSIS
    assert [e.type for e in parsed.status.timeline] == ["Detected", "Diagnosed"]


# append.


def test_append_adds_an_entry_and_leaves_the_input_alone() -> None:
    before = status_with("Detected", "Diagnosed")
    after = incidents.append(before, "Intent", "scale to 4 replicas", later(60), step="scale-out")
    assert [e.type for e in after.timeline] == ["Detected", "Diagnosed", "Intent"]
    assert after.timeline[-1] == incapi.TimelineEntry(
        time="2026-11-22T12:01:00Z", type="Intent", message="scale to 4 replicas", step="scale-out"
    )
    assert len(before.timeline) == 2


def test_append_drops_the_oldest_entries_but_keeps_the_first_detected() -> None:
    status = status_with("Detected", "Diagnosed", "Intent", "Action")
    after = incidents.append(status, "Verified", "p99 met", later(100), limit=3)
    assert [e.message for e in after.timeline] == ["Detected 0", "Action 3", "p99 met"]


def test_timeline_stays_within_the_crd_limit_over_a_long_incident() -> None:
    status = status_with("Detected")
    for i in range(incapi.TIMELINE_LIMIT + 50):
        status = incidents.append(status, "Action", f"action {i}", later(i))
    assert len(status.timeline) == incapi.TIMELINE_LIMIT
    assert status.timeline[0].message == "Detected 0"
    assert status.timeline[1].message == f"action {50 + 1}"
    assert status.timeline[-1].message == f"action {incapi.TIMELINE_LIMIT + 49}"
    incapi.IncidentStatus.model_validate(status.model_dump())  # the CRD's maxItems holds


def test_only_the_first_detected_entry_is_protected() -> None:
    status = status_with("Detected", "Detected", "Action")
    after = incidents.append(status, "Action", "last", later(9), limit=2)
    assert [e.message for e in after.timeline] == ["Detected 0", "last"]


def test_detected_entry_is_kept_even_when_it_is_not_the_oldest() -> None:
    status = status_with("Note", "Detected", "Action", "Action")
    after = incidents.append(status, "Action", "last", later(9), limit=3)
    assert [e.message for e in after.timeline] == ["Detected 1", "Action 3", "last"]


def test_timeline_without_detected_entry_drops_the_oldest() -> None:
    status = status_with("Intent", "Action")
    after = incidents.append(status, "Verified", "ok", later(9), limit=2)
    assert [e.message for e in after.timeline] == ["Action 1", "ok"]


def test_timeline_limit_below_two_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        incidents.append(status_with("Detected"), "Action", "x", NOW, limit=1)


# resolve.


def test_resolve_closes_the_incident_with_the_sli_that_ended_it() -> None:
    before = status_with("Detected", "Diagnosed")
    after = incidents.resolve(before, later(600), 180.0)
    assert after.phase is incapi.Phase.RESOLVED
    assert after.resolved_at == "2026-11-22T12:10:00Z"
    assert after.sli == 180.0
    last = after.timeline[-1]
    assert last.type == "Resolved"
    assert last.time == "2026-11-22T12:10:00Z"
    assert last.message == "SLO met again after 10m: SLI 180"
    assert before.phase is incapi.Phase.OPEN


def test_resolve_without_an_sli_says_no_data() -> None:
    after = incidents.resolve(status_with("Detected"), later(30), None)
    assert after.sli is None
    assert after.timeline[-1].message == "SLO met again after 30s: SLI no data"


def test_resolving_twice_changes_nothing() -> None:
    once = incidents.resolve(status_with("Detected"), later(600), 180.0)
    twice = incidents.resolve(once, later(900), 100.0)
    assert twice == once


def test_resolve_keeps_the_timeline_bounded() -> None:
    after = incidents.resolve(status_with("Detected", "Action", "Action"), later(60), 1.0, limit=3)
    assert [e.type for e in after.timeline] == ["Detected", "Action", "Resolved"]


# prune.


def stamp(minutes: int) -> str:
    return cond.rfc3339(NOW + datetime.timedelta(minutes=minutes))


def test_prune_keeps_the_newest_resolved_and_names_the_rest_oldest_first() -> None:
    history = [
        ("c", stamp(3), "Resolved"),
        ("a", stamp(1), "Resolved"),
        ("d", stamp(4), "Resolved"),
        ("b", stamp(2), "Resolved"),
    ]
    assert incidents.prune(history, keep=2) == ["a", "b"]


@pytest.mark.parametrize("phase", [p for p in incapi.Phase if p is not incapi.Phase.RESOLVED])
def test_prune_never_names_an_incident_that_is_not_resolved(phase: incapi.Phase) -> None:
    history = [("old-open", stamp(0), phase.value), ("new", stamp(5), "Resolved")]
    assert incidents.prune(history, keep=0) == ["new"]


def test_prune_with_room_to_spare_names_nothing() -> None:
    assert incidents.prune([("a", stamp(1), "Resolved")], keep=5) == []
    assert incidents.prune([], keep=0) == []


def test_prune_sorts_unreadable_or_missing_times_as_oldest_and_ties_by_name() -> None:
    history = [
        ("z", stamp(1), "Resolved"),
        ("y", None, "Resolved"),
        ("x", "yesterday", "Resolved"),
        ("w", stamp(1), "Resolved"),
    ]
    assert incidents.prune(history, keep=1) == ["x", "y", "w"]


def test_prune_refuses_a_negative_keep() -> None:
    with pytest.raises(ValueError, match="keep"):
        incidents.prune([], keep=-1)
