"""The sandbox's Gateway API CRDs: found in the pinned Go module, applied with vigil's own CRDs."""

from __future__ import annotations

import json
import os
import pathlib
import re

import pytest
import yaml

from vigil.dev import build, sandbox, versions

HTTPROUTE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "httproutes.gateway.networking.k8s.io"},
}


def fake_module(root: pathlib.Path) -> pathlib.Path:
    standard = root / "config" / "crd" / "standard"
    standard.mkdir(parents=True)
    for plural in ("httproutes", "gateways", "referencegrants"):
        doc = {**HTTPROUTE_CRD, "metadata": {"name": f"{plural}.gateway.networking.k8s.io"}}
        (standard / f"gateway.networking.k8s.io_{plural}.yaml").write_text(yaml.safe_dump(doc))
    (root / "config" / "crd" / "experimental").mkdir()
    return root


def fake_go(directory: pathlib.Path, module_dir: pathlib.Path) -> None:
    """A ``go`` that answers ``go mod download -json`` and records its environment."""
    script = directory / "go"
    answer = json.dumps({"Path": build.GATEWAY_API_MODULE, "Version": versions.GATEWAY_API, "Dir": str(module_dir)})
    script.write_text(f"#!/bin/sh\necho \"$GOTOOLCHAIN $@\" > {directory}/args\ncat <<'EOF'\n{answer}\nEOF\n")
    script.chmod(0o755)


def test_the_pin_is_a_release_of_the_go_module() -> None:
    assert re.fullmatch(r"v1\.\d+\.\d+", versions.GATEWAY_API)


def test_module_dir_asks_go_with_the_local_toolchain(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    module = fake_module(tmp_path / "module")
    fake_go(bin_dir, module)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("GOTOOLCHAIN", raising=False)
    builder = build.Builder(cache=tmp_path / "cache", progress=lambda _m: None)
    assert builder.module_dir(build.GATEWAY_API_MODULE, versions.GATEWAY_API) == module
    recorded = (bin_dir / "args").read_text().split()
    assert recorded == ["local", "mod", "download", "-json", f"{build.GATEWAY_API_MODULE}@{versions.GATEWAY_API}"]


def test_standard_channel_crds_are_listed_sorted(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = fake_module(tmp_path / "module")
    monkeypatch.setattr(build.Builder, "module_dir", lambda _self, _module, _version: module)
    files = build.gateway_api_crds(progress=lambda _m: None)
    assert [f.name for f in files] == [
        "gateway.networking.k8s.io_gateways.yaml",
        "gateway.networking.k8s.io_httproutes.yaml",
        "gateway.networking.k8s.io_referencegrants.yaml",
    ]


def test_a_module_without_crds_is_a_build_error(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build.Builder, "module_dir", lambda _self, _module, _version: tmp_path)
    with pytest.raises(build.BuildError, match="no CRDs"):
        build.gateway_api_crds(progress=lambda _m: None)


def test_sandbox_applies_gateway_crds_with_its_own(tmp_path: pathlib.Path) -> None:
    module = fake_module(tmp_path / "module")
    extra = sorted((module / "config" / "crd" / "standard").glob("*.yaml"))
    not_a_crd = tmp_path / "policy.yaml"
    not_a_crd.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}))
    box = sandbox.Sandbox(state_dir=tmp_path / "state", crds_dir=None)
    names = [doc["metadata"]["name"] for doc in box._crd_documents([*extra, not_a_crd])]
    assert "httproutes.gateway.networking.k8s.io" in names
    assert "x" not in names
    assert any(name.startswith("stages.") for name in names)  # kwok's own CRDs are still there
