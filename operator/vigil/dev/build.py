"""Build the sandbox's binaries from their Go modules, once, into a cache keyed by version.

k8s.io/kubernetes requires its staging modules at the fake version v0.0.0 and replaces them with
local paths, so ``go install k8s.io/kubernetes/cmd/...@v1.36.3`` is refused. We build through a
throw-away wrapper module that requires k8s.io/kubernetes and replaces every staging module with
its published twin (the way projects that import k8s.io/kubernetes do it). etcd's server module
has path replaces too and gets the same treatment. kwok and kwokctl install plainly.

The wrapper go.mod is derived from the upstream go.mod text by pure functions, tested without
the network; only :func:`ensure_binaries` and :func:`gateway_api_crds` run the Go toolchain.

The Gateway API CRDs come from the same place as everything else, the Go module proxy: the
``sigs.k8s.io/gateway-api`` module ships its CRDs under ``config/crd``, so ``go mod download``
pins, verifies (go.sum database) and caches them like any other dependency. prometheus-operator's
monitoring CRDs (PodMonitor, ServiceMonitor, PrometheusRule) come the same way, from
``example/prometheus-operator-crd`` of its module, so the chart's monitoring objects pass the
sandbox's server-side validation.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import pathlib
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence

from vigil.dev import versions

_REPLACE_LINE = re.compile(r"^\s*(?:replace\s+)?(\S+)(?:\s+\S+)?\s+=>\s+(\S+)(?:\s+(\S+))?\s*$")


class BuildError(RuntimeError):
    """A sandbox binary could not be built; the message names the step and its log file."""


@dataclasses.dataclass(frozen=True)
class Component:
    """One group of binaries built by a single Go invocation."""

    name: str
    version: str
    binaries: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}-{go_version_tag()}"


KUBE = Component(
    "kubernetes",
    versions.KUBERNETES,
    ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"),
)
ETCD = Component("etcd", versions.ETCD, ("etcd",))
KWOK = Component("kwok", versions.KWOK, ("kwok", "kwokctl"))
PROMETHEUS = Component("prometheus", versions.PROMETHEUS, ("prometheus",))
HELM = Component("helm", versions.HELM, ("helm",))
ALL = (ETCD, KUBE, KWOK, PROMETHEUS, HELM)
# Prometheus's module has exclude directives (refused by `go install pkg@version`), so it goes
# through the wrapper too; build tags drop every service discovery but kubernetes (and the
# always-present file/http ones), which skips compiling the cloud SDKs.
PROMETHEUS_TAGS = "remove_all_sd,enable_kubernetes_sd"


def go_version_tag() -> str:
    """Short tag of the Go toolchain (``go1.26.8``); part of the cache key."""
    out = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "go-unknown"


def local_path_replaces(gomod: str) -> list[str]:
    """Module paths that ``gomod`` replaces with a local directory (``=> ./x`` or ``=> ../x``)."""
    found: list[str] = []
    in_block = False
    for raw in gomod.splitlines():
        line = raw.split("//", 1)[0].rstrip()
        stripped = line.strip()
        if stripped.startswith("replace ("):
            in_block = True
            continue
        if in_block and stripped == ")":
            in_block = False
            continue
        if not (in_block or stripped.startswith("replace ")):
            continue
        match = _REPLACE_LINE.match(stripped)
        if match and match.group(2).startswith((".", "/")) and match.group(3) is None:
            target = match.group(2)
            if "FORBIDDEN" in target:
                continue
            found.append(match.group(1))
    return found


def go_directive(gomod: str) -> str:
    """The ``go`` directive of a go.mod text (e.g. ``1.26.0``)."""
    match = re.search(r"^go\s+(\S+)\s*$", gomod, re.MULTILINE)
    if not match:
        raise BuildError("upstream go.mod has no go directive")
    return match.group(1)


def wrapper_gomod(
    module: str, requires: dict[str, str], replaces: dict[str, str], tools: Sequence[str], go: str
) -> str:
    """A wrapper go.mod that pins ``requires``, swaps local replaces for published ``replaces``."""
    lines = [f"module {module}", "", f"go {go}", "", "require ("]
    lines += [f"\t{path} {version}" for path, version in sorted(requires.items())]
    lines += [")", "", "replace ("]
    lines += [f"\t{path} => {path} {version}" for path, version in sorted(replaces.items())]
    lines += [")", "", "tool ("]
    lines += [f"\t{tool}" for tool in tools]
    lines += [")", ""]
    return "\n".join(lines)


def kube_ldflags(version: str) -> str:
    """Version stamps so that ``/version`` and ``kubectl version`` report the real release."""
    major, minor = version.lstrip("v").split(".")[:2]
    stamps = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "gitCommit": "0000000000000000000000000000000000000000",
        "buildDate": "2026-01-01T00:00:00Z",
    }
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in stamps.items()]
    return " ".join(flags)


Progress = Callable[[str], None]


@dataclasses.dataclass
class Builder:
    """Runs the Go toolchain for one component and installs its binaries into the cache."""

    cache: pathlib.Path = dataclasses.field(default_factory=versions.cache_root)
    progress: Progress = print

    def bin_dir(self, component: Component) -> pathlib.Path:
        return self.cache / "bin" / component.key

    def is_built(self, component: Component) -> bool:
        directory = self.bin_dir(component)
        return all((directory / name).is_file() for name in component.binaries)

    def ensure(self, component: Component) -> pathlib.Path:
        if self.is_built(component):
            return self.bin_dir(component)
        if shutil.which("go") is None:
            raise BuildError("the Go toolchain ('go') is not on PATH; install Go >= 1.26 to build the sandbox")
        # One builder per component at a time across processes (a CLI and a test session may
        # both find it missing); the second waits, then finds it built.
        lock_path = self.cache / "locks" / f"{component.key}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("w") as lock:
            if self.is_built(component):
                return self.bin_dir(component)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.progress(f"waiting for another process that is building {component.name}")
                fcntl.flock(lock, fcntl.LOCK_EX)
            if self.is_built(component):
                return self.bin_dir(component)
            return self._build(component)

    def _build(self, component: Component) -> pathlib.Path:
        started = time.monotonic()
        self.progress(f"building {component.name} {component.version} (once; cached under {self.cache})")
        work = self.cache / "build" / component.key
        work.mkdir(parents=True, exist_ok=True)
        staging = self.bin_dir(component).parent / f"{component.key}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        builders = {
            "kubernetes": self._build_kube,
            "etcd": self._build_etcd,
            "kwok": self._build_kwok,
            "prometheus": self._build_prometheus,
            "helm": self._build_helm,
        }
        builders[component.name](component, work, staging)
        final = self.bin_dir(component)
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        self.progress(f"built {component.name} in {time.monotonic() - started:.0f}s")
        return final

    # -- the Go invocations ---------------------------------------------------------------------

    def module_dir(self, module: str, version: str) -> pathlib.Path:
        """The source directory of ``module@version`` in the Go module cache (downloaded once)."""
        if shutil.which("go") is None:
            raise BuildError("the Go toolchain ('go') is not on PATH; install Go >= 1.26 to build the sandbox")
        work = self.cache / "build" / "modules"
        work.mkdir(parents=True, exist_ok=True)
        step = f"download-{module.replace('/', '_')}-{version}"
        info = json.loads(self._go(["mod", "download", "-json", f"{module}@{version}"], work, step))
        if info.get("Error"):
            raise BuildError(f"{step} failed: {info['Error']}")
        return pathlib.Path(info["Dir"])

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("GOTOOLCHAIN", "local")
        env.setdefault("CGO_ENABLED", "0")
        env.setdefault("GOFLAGS", "-buildvcs=false")
        return env

    def _go(self, args: list[str], cwd: pathlib.Path, step: str) -> str:
        log = self.cache / "logs" / f"{step}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self.progress(f"  {step}: go {' '.join(args[:3])}{' ...' if len(args) > 3 else ''}")
        with log.open("w") as sink:
            proc = subprocess.run(
                ["go", *args], cwd=cwd, env=self._env(), stdout=subprocess.PIPE, stderr=sink, text=True
            )
        if proc.returncode != 0:
            tail = log.read_text()[-2000:]
            raise BuildError(f"{step} failed (exit {proc.returncode}); log: {log}\n{tail}")
        return proc.stdout

    def _upstream_gomod(self, module: str, version: str, cwd: pathlib.Path) -> str:
        out = self._go(["mod", "download", "-json", f"{module}@{version}"], cwd, f"download-{module.replace('/', '_')}")
        info = json.loads(out)
        return pathlib.Path(info["GoMod"]).read_text()

    def _wrapper_build(
        self,
        work: pathlib.Path,
        staging: pathlib.Path,
        module: str,
        version: str,
        replace_version: Callable[[str], str],
        tools: Sequence[str],
        ldflags: str,
        step: str,
        tags: str = "",
    ) -> None:
        upstream = self._upstream_gomod(module, version, work)
        replaces = {path: replace_version(path) for path in local_path_replaces(upstream)}
        gomod = wrapper_gomod(f"vigil.dev/sandbox/{step}", {module: version}, replaces, tools, go_directive(upstream))
        (work / "go.mod").write_text(gomod)
        (work / "go.sum").touch()
        self._go(["mod", "tidy"], work, f"{step}-tidy")
        tag_args = ["-tags", tags] if tags else []
        self._go(
            ["build", "-trimpath", *tag_args, "-ldflags", ldflags, "-o", str(staging) + "/", *tools],
            work,
            f"{step}-build",
        )

    def _build_kube(self, component: Component, work: pathlib.Path, staging: pathlib.Path) -> None:
        tools = [f"k8s.io/kubernetes/cmd/{name}" for name in component.binaries]
        self._wrapper_build(
            work,
            staging,
            "k8s.io/kubernetes",
            component.version,
            lambda _path: versions.KUBERNETES_STAGING,
            tools,
            kube_ldflags(component.version),
            "kubernetes",
        )

    def _build_etcd(self, component: Component, work: pathlib.Path, staging: pathlib.Path) -> None:
        self._wrapper_build(
            work,
            staging,
            "go.etcd.io/etcd/server/v3",
            component.version,
            lambda _path: component.version,
            ["go.etcd.io/etcd/server/v3"],
            "-s -w",
            "etcd",
        )
        # Go names a binary after the last path element that is not a major-version suffix.
        (staging / "server").rename(staging / "etcd")

    def _build_prometheus(self, component: Component, work: pathlib.Path, staging: pathlib.Path) -> None:
        # Module v0.309.1 is Prometheus 3.9.1; stamp the release so /api/v1/status/buildinfo says so.
        _, minor, patch = component.version.lstrip("v").split(".")
        release = f"{int(minor) // 100}.{int(minor) % 100}.{patch}"
        stamp = "github.com/prometheus/common/version"
        ldflags = f"-s -w -X {stamp}.Version={release} -X {stamp}.Branch=vigil-sandbox"
        self._wrapper_build(
            work,
            staging,
            "github.com/prometheus/prometheus",
            component.version,
            lambda _path: component.version,
            ["github.com/prometheus/prometheus/cmd/prometheus"],
            ldflags,
            "prometheus",
            tags=PROMETHEUS_TAGS,
        )

    def _build_kwok(self, component: Component, work: pathlib.Path, staging: pathlib.Path) -> None:
        for name in component.binaries:
            self._go_install(f"sigs.k8s.io/kwok/cmd/{name}", component.version, work, staging, f"kwok-{name}")

    def _build_helm(self, component: Component, work: pathlib.Path, staging: pathlib.Path) -> None:
        # helm's module has no replace directives: a plain `go install` of its command builds it.
        # The version stamp makes `helm version` (and the chart's kubeVersion checks) honest.
        ldflags = f"-s -w -X helm.sh/helm/v4/internal/version.version={component.version}"
        self._go_install("helm.sh/helm/v4/cmd/helm", component.version, work, staging, "helm", ldflags)

    def _go_install(
        self, package: str, version: str, work: pathlib.Path, staging: pathlib.Path, step: str, ldflags: str = "-s -w"
    ) -> None:
        log = self.cache / "logs" / f"{step}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self.progress(f"  {step}: go install {package}@{version}")
        with log.open("w") as sink:
            proc = subprocess.run(
                ["go", "install", "-trimpath", "-ldflags", ldflags, f"{package}@{version}"],
                cwd=work,
                env={**self._env(), "GOBIN": str(staging)},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        if proc.returncode != 0:
            raise BuildError(f"building {step} failed; log: {log}\n{log.read_text()[-2000:]}")


GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api"
GATEWAY_API_CHANNEL = "standard"


PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"
# Only the kinds the chart ships; the module's other CRDs (Prometheus, Alertmanager, ...) describe
# a prometheus-operator installation, which the sandbox does not run.
PROMETHEUS_OPERATOR_CRDS = ("podmonitors", "servicemonitors", "prometheusrules")


def module_crds(
    module: str, version: str, directory: str, pattern: str = "*.yaml", progress: Progress = print
) -> list[pathlib.Path]:
    """CRD files shipped inside a Go module, fetched (and checksum-verified) through the module proxy."""
    found = Builder(progress=progress).module_dir(module, version) / directory
    files = sorted(found.glob(pattern))
    if not files:
        raise BuildError(f"{module}@{version} has no CRDs matching {pattern} under {found}")
    return files


def gateway_api_crds(progress: Progress = print, version: str = versions.GATEWAY_API) -> list[pathlib.Path]:
    """The Gateway API's standard-channel CRD files (GatewayClass, Gateway, HTTPRoute, ...)."""
    return module_crds(GATEWAY_API_MODULE, version, f"config/crd/{GATEWAY_API_CHANNEL}", progress=progress)


def prometheus_operator_crds(
    progress: Progress = print, version: str = versions.PROMETHEUS_OPERATOR
) -> list[pathlib.Path]:
    """prometheus-operator's PodMonitor, ServiceMonitor and PrometheusRule CRDs (monitoring.coreos.com)."""
    files = module_crds(
        PROMETHEUS_OPERATOR_MODULE, version, "example/prometheus-operator-crd", "monitoring.coreos.com_*.yaml", progress
    )
    wanted = {f"monitoring.coreos.com_{plural}.yaml" for plural in PROMETHEUS_OPERATOR_CRDS}
    chosen = [path for path in files if path.name in wanted]
    if len(chosen) != len(wanted):
        raise BuildError(f"{PROMETHEUS_OPERATOR_MODULE}@{version} lacks some of {sorted(wanted)}")
    return chosen


def ensure_binaries(progress: Progress = print, components: Sequence[Component] = ALL) -> dict[str, pathlib.Path]:
    """Build what is missing and return a map from binary name to its cached path."""
    builder = Builder(progress=progress)
    paths: dict[str, pathlib.Path] = {}
    for component in components:
        directory = builder.ensure(component)
        paths.update({name: directory / name for name in component.binaries})
    return paths


if __name__ == "__main__":
    for binary, path in ensure_binaries().items():
        print(binary, path)
