"""GitOps edits after a rollback: which spec changes keep the incident's rollback and which supersede it.

The rule (reconcile/core.py): a new generation that still asks for the revision the incident rolled
back *from* (``kubectl scale``, new SLOs) keeps the rollback and applies its replicas to the rolled-back
revision; a new revision supersedes it; a spec vigil cannot honour supersedes nothing.
"""

from __future__ import annotations

import pathlib

import yaml

from tests.unit import factories
from tests.unit.test_reconcile_core import NOW, later, observed, replicas_of, settle, status_of
from vigil.api import conditions as cond
from vigil.api import modeldeployment as mdapi
from vigil.reconcile import core
from vigil.render import revision


def rolled_back(**spec: object) -> tuple[mdapi.ModelDeployment, str, str]:
    """Generation 2 (model version 2, bad) rolled back to generation 1's revision, settled on it."""
    md = factories.md(replicas=2)
    good = revision.revision_of(md.spec)
    md = settle(md, core.decide(md, "uid-1", observed(**{good: (2, 2)}), NOW))
    v2 = factories.md(version="2", generation=2, status=md.status, **spec)
    bad = revision.revision_of(v2.spec)
    v2 = settle(v2, core.decide(v2, "uid-1", observed(**{good: (2, 2), bad: (2, 2)}), later(10)))
    v2.status.rollback = mdapi.RollbackOverride(
        revision=good, from_revision=bad, incident="resnet-abc", generation=2, since=cond.rfc3339(later(20))
    )
    v2 = settle(v2, core.decide(v2, "uid-1", observed(**{good: (2, 2), bad: (2, 2)}), later(30)))
    assert v2.status.current_revision == good
    return v2, good, bad


def edited(md: mdapi.ModelDeployment, generation: int, **spec: object) -> mdapi.ModelDeployment:
    body = md.spec.wire() | spec
    edit = mdapi.ModelDeployment.model_validate({"metadata": {**md.metadata, "generation": generation}, "spec": body})
    edit.status = md.status
    return edit


def test_scaling_the_spec_after_a_rollback_keeps_it_and_runs_the_rolled_back_revision_at_the_new_count() -> None:
    md, good, bad = rolled_back()
    scaled = edited(md, 3, replicas=5)
    outcome = core.decide(scaled, "uid-1", observed(**{good: (2, 2), bad: (0, 0)}), later(40))
    assert outcome.status.rollback is not None
    assert (outcome.status.rollback.revision, outcome.status.rollback.generation) == (good, 3)
    assert outcome.status.current_revision == good
    assert replicas_of(outcome) == {good: 5, bad: 0}
    kept = [e for e in outcome.events if e.reason == "RollbackKept"]
    assert len(kept) == 1
    assert f"keeps revision {bad}" in kept[0].message
    assert f"still serving {good}" in kept[0].message
    rolled = status_of(outcome, "RolledBack")
    assert rolled.status is cond.ConditionStatus.TRUE
    assert rolled.observed_generation == 3
    assert "a new revision supersedes the rollback" in rolled.message
    assert not any(e.reason == "OverrideCleared" for e in outcome.events)


def test_a_kept_rollback_is_announced_once() -> None:
    md, good, _bad = rolled_back()
    scaled = settle(edited(md, 3, replicas=3), core.decide(edited(md, 3, replicas=3), "uid-1", observed(), later(40)))
    again = core.decide(scaled, "uid-1", observed(**{good: (3, 3)}), later(50))
    assert not any(e.reason == "RollbackKept" for e in again.events)
    assert again.status.rollback is not None


def test_changing_only_slos_or_bake_time_keeps_the_rollback() -> None:
    md, good, _bad = rolled_back()
    outcome = core.decide(edited(md, 3, bakeTime="10m"), "uid-1", observed(**{good: (2, 2)}), later(40))
    assert outcome.status.rollback is not None
    assert replicas_of(outcome)[good] == 2


def test_a_new_revision_supersedes_the_rollback() -> None:
    md, good, bad = rolled_back()
    fixed = edited(md, 3, model=md.spec.model.wire() | {"version": "3"})
    fixed_revision = revision.revision_of(fixed.spec)
    outcome = core.decide(fixed, "uid-1", observed(**{good: (2, 2), bad: (0, 0)}), later(40))
    assert outcome.status.rollback is None
    cleared = [e for e in outcome.events if e.reason == "OverrideCleared"]
    assert [e.message for e in cleared] == [
        f"spec generation 3 (revision {fixed_revision}) supersedes the rollback to {good}"
    ]
    assert replicas_of(outcome)[fixed_revision] == 2
    assert status_of(outcome, "RolledBack").status is cond.ConditionStatus.FALSE


def test_going_back_to_the_good_revision_in_git_ends_the_rollback() -> None:
    md, good, _bad = rolled_back()
    reverted = edited(md, 3, model=md.spec.model.wire() | {"version": "1"})
    assert revision.revision_of(reverted.spec) == good
    outcome = core.decide(reverted, "uid-1", observed(**{good: (2, 2)}), later(40))
    assert outcome.status.rollback is None
    assert outcome.status.current_revision == good


def test_an_invalid_spec_after_a_rollback_supersedes_nothing() -> None:
    md, good, bad = rolled_back()
    broken = edited(md, 3)
    broken.spec.traffic.gateway = "a/b/c"  # the models refuse it; a spec that got past them must supersede nothing
    outcome = core.decide(broken, "uid-1", observed(**{good: (2, 2), bad: (0, 0)}), later(40))
    assert status_of(outcome, "Degraded").reason == "InvalidSpec"
    assert outcome.status.rollback is not None
    assert outcome.status.rollback.generation == 2
    assert replicas_of(outcome)[good] == 2
    assert replicas_of(outcome).get(bad, 0) == 0


def test_scaling_the_spec_supersedes_an_incident_scale_out() -> None:
    """``kubectl scale`` is an explicit replica count: it wins over the incident's scale-out."""
    md = factories.md(replicas=2)
    rev = revision.revision_of(md.spec)
    md = settle(md, core.decide(md, "uid-1", observed(**{rev: (2, 2)}), NOW))
    md.status.scale = mdapi.ScaleOverride(replicas=4, incident="i", generation=1, since=cond.rfc3339(NOW))
    outcome = core.decide(edited(md, 2, replicas=3), "uid-1", observed(**{rev: (4, 4)}), later(5))
    assert outcome.status.scale is None
    assert replicas_of(outcome) == {rev: 3}


def test_the_crd_scale_subresource_is_spec_replicas() -> None:
    """`kubectl scale md/<name>` writes spec.replicas (a new generation) through this subresource."""
    crd = yaml.safe_load((pathlib.Path(__file__).resolve().parents[2] / "crds/modeldeployments.yaml").read_text())
    (served,) = [v for v in crd["spec"]["versions"] if v["served"]]
    scale = served["subresources"]["scale"]
    assert (scale["specReplicasPath"], scale["statusReplicasPath"]) == (".spec.replicas", ".status.replicas")
    assert scale["labelSelectorPath"] == ".status.selector"
