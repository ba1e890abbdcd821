"""The go.mod helpers that let us build k8s.io/kubernetes and etcd through a wrapper module."""

from __future__ import annotations

import pytest

from vigil.dev import build

KUBERNETES_GOMOD = """\
// This is a generated file. Do not edit directly.

module k8s.io/kubernetes

go 1.26.0

require (
	github.com/spf13/cobra v1.10.0
	k8s.io/api v0.0.0
	k8s.io/apimachinery v0.0.0
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/apimachinery => ./staging/src/k8s.io/apimachinery // pinned
	k8s.io/kms v0.0.0 => ./staging/src/k8s.io/kms
	github.com/example/fork => github.com/example/fork v1.2.3
	k8s.io/forbidden => ./FORBIDDEN_DEPENDENCY
)

replace k8s.io/client-go => ./staging/src/k8s.io/client-go
replace github.com/other/thing => /abs/path/thing
"""


def test_local_path_replaces_finds_block_and_single_line_forms() -> None:
    found = build.local_path_replaces(KUBERNETES_GOMOD)
    assert found == [
        "k8s.io/api",
        "k8s.io/apimachinery",
        "k8s.io/kms",
        "k8s.io/client-go",
        "github.com/other/thing",
    ]


def test_local_path_replaces_ignores_module_replaces_and_forbidden_markers() -> None:
    found = build.local_path_replaces(KUBERNETES_GOMOD)
    assert "github.com/example/fork" not in found
    assert "k8s.io/forbidden" not in found


def test_local_path_replaces_of_a_gomod_without_replaces_is_empty() -> None:
    assert build.local_path_replaces("module x\n\ngo 1.26.0\n\nrequire y v1.0.0\n") == []


def test_go_directive() -> None:
    assert build.go_directive(KUBERNETES_GOMOD) == "1.26.0"
    with pytest.raises(build.BuildError):
        build.go_directive("module x\n")


def test_wrapper_gomod_pins_requires_replaces_and_tools() -> None:
    text = build.wrapper_gomod(
        "vigil.dev/sandbox/kubernetes",
        {"k8s.io/kubernetes": "v1.36.3"},
        {"k8s.io/api": "v0.36.3", "k8s.io/apimachinery": "v0.36.3"},
        ["k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kubectl"],
        "1.26.0",
    )
    lines = text.splitlines()
    assert lines[0] == "module vigil.dev/sandbox/kubernetes"
    assert "go 1.26.0" in lines
    assert "\tk8s.io/kubernetes v1.36.3" in lines
    assert "\tk8s.io/api => k8s.io/api v0.36.3" in lines
    assert "\tk8s.io/apimachinery => k8s.io/apimachinery v0.36.3" in lines
    assert "\tk8s.io/kubernetes/cmd/kube-apiserver" in lines
    assert "\tk8s.io/kubernetes/cmd/kubectl" in lines
    assert text.endswith("\n")


def test_wrapper_gomod_round_trips_through_the_replace_parser() -> None:
    text = build.wrapper_gomod("m", {"a": "v1"}, {"k8s.io/api": "v0.36.3"}, ["a/cmd"], "1.26.0")
    # Published replaces are module replaces, not local paths: nothing left to swap.
    assert build.local_path_replaces(text) == []


def test_kube_ldflags_stamp_the_release_into_both_version_packages() -> None:
    flags = build.kube_ldflags("v1.36.3")
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {package}.gitVersion=v1.36.3" in flags
        assert f"-X {package}.gitMajor=1" in flags
        assert f"-X {package}.gitMinor=36" in flags
        assert f"-X {package}.gitTreeState=clean" in flags
    assert flags.startswith("-s -w ")
