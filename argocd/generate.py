"""Write argocd/argocd-cm.yaml from the health scripts in argocd/health/ (a unit test keeps it current).

python argocd/generate.py
"""

from __future__ import annotations

import pathlib

import yaml

HERE = pathlib.Path(__file__).resolve().parent
HEADER = """\
# Argo CD health checks for vigil's resources: merge these keys into the argocd-cm ConfigMap of your
# Argo CD installation (kubectl -n argocd patch configmap argocd-cm --patch-file argocd/argocd-cm.yaml).
# Generated from argocd/health/*.lua by `python argocd/generate.py`; edit the .lua files, not this.
"""


class _Literal(str):
    """A string YAML writes as a literal block, so the Lua stays readable in the ConfigMap."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _Literal, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
)


def render() -> str:
    data = {
        f"resource.customizations.health.{path.stem}": _Literal(path.read_text())
        for path in sorted((HERE / "health").glob("*.lua"))
    }
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "argocd-cm",
            "namespace": "argocd",
            "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"},
        },
        "data": data,
    }
    return HEADER + yaml.dump(body, Dumper=_Dumper, sort_keys=False, width=200)


if __name__ == "__main__":
    (HERE / "argocd-cm.yaml").write_text(render())
