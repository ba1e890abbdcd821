"""The operator's namespace scope reads ``--namespace`` patterns exactly as kopf's watcher does."""

from __future__ import annotations

import itertools

import pytest
from kopf._cogs.structs import references

from vigil.reconcile import scope

NAMESPACES = ["demo", "default", "t1a2b-3f9c", "t1a2b-", "t9999-x", "myapp-live", "myapp-pr-123", "myapp-pr-456", "x"]
PATTERNS = [
    "demo",
    "t1a2b-*",
    "t????-*",
    "myapp-*, !*-pr-*, *pr-123",
    "!*-pr-*, *pr-123",
    "!demo",
    "*",
    "de*,!default",
    " demo , t1a2b-* ",
]


def test_no_patterns_is_the_whole_cluster() -> None:
    assert scope.Scope().clusterwide
    assert scope.Scope().admits("anything")


@pytest.mark.parametrize(
    ("patterns", "namespace", "admitted"),
    [
        (("demo",), "demo", True),
        (("demo",), "demo2", False),
        (("t1a2b-*",), "t1a2b-3f9c", True),
        (("t1a2b-*",), "t9999-3f9c", False),
        (("t1a2b-*",), "demo", False),
        (("demo", "t1a2b-*"), "t1a2b-x", True),
        (("!demo",), "default", True),
        (("!demo",), "demo", False),
        (("myapp-*, !*-pr-*, *pr-123",), "myapp-pr-123", True),
        (("myapp-*, !*-pr-*, *pr-123",), "myapp-pr-456", False),
        (("myapp-*, !*-pr-*, *pr-123",), "otherapp-pr-123", False),
        (("Demo",), "demo", False),
    ],
)
def test_patterns_admit_only_matching_namespaces(patterns: tuple[str, ...], namespace: str, admitted: bool) -> None:
    assert scope.Scope(patterns).admits(namespace) is admitted


@pytest.mark.parametrize(("pattern", "namespace"), list(itertools.product(PATTERNS, NAMESPACES)))
def test_scope_agrees_with_kopfs_own_namespace_matcher(pattern: str, namespace: str) -> None:
    assert scope.Scope((pattern,)).admits(namespace) is references.match_namespace(namespace, pattern)


@pytest.mark.parametrize(
    ("patterns", "names"),
    [
        ((), None),
        (("ml",), ("ml",)),
        (("ml", "ml-canary"), ("ml", "ml-canary")),
        (("t1a2-*",), None),
        (("ml", "team-?"), None),
        (("ml,ml-canary",), None),
        (("!kube-system",), None),
    ],
)
def test_only_plain_namespace_names_make_the_namespace_mode_that_reads_nothing_cluster_wide(
    patterns: tuple[str, ...], names: tuple[str, ...] | None
) -> None:
    assert scope.Scope(patterns).exact_names == names
