"""``vigil golden``: make a golden set from a torch model, as a file, a ConfigMap manifest, or applied.

Registered lazily on the top-level ``vigil`` app (it needs the ``vigil[golden]`` extra: torch).
Examples::

    vigil golden /models/resnet/3/model.pt --requests 64 --top-k 5 --configmap resnet-golden --apply -n models
    vigil golden mypkg.models:build --factory-arg seed=0 --input INPUT__0:FP32:1x3x32x32 --out golden.json
    vigil golden model.pt --triton-config config.pbtxt --samples inputs.npz --manifest golden.yaml
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
from typing import Any

import typer
import yaml

from vigil.gate import goldenset, make, tritonconfig

app = typer.Typer(add_completion=False)


def _value(text: str) -> Any:
    """A factory argument: JSON if it parses (numbers, booleans, lists), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{value!r} is not KEY=VALUE", param_hint=option)
        pairs[key] = rest
    return pairs


def _tolerances(atol: list[str], rtol: list[str], top_k: list[str]) -> make.OutputOptions:
    """``--atol 1e-4`` for every output, ``--atol OUTPUT__0=1e-3`` for one (same for --rtol, --top-k)."""
    defaults: dict[str, float | int | None] = {
        "atol": goldenset.DEFAULT_ATOL,
        "rtol": goldenset.DEFAULT_RTOL,
        "top_k": None,
    }
    per_output: dict[str, dict[str, Any]] = {}
    for field, option, values, cast in (
        ("atol", "--atol", atol, float),
        ("rtol", "--rtol", rtol, float),
        ("top_k", "--top-k", top_k, int),
    ):
        for value in values:
            name, sep, number = value.rpartition("=")
            try:
                parsed = cast(number)
            except ValueError:
                raise typer.BadParameter(f"{value!r}: {number!r} is not a number", param_hint=option) from None
            if parsed < 0 or (field == "top_k" and parsed < 1):
                raise typer.BadParameter(
                    f"{value!r} must be {'>= 1' if field == 'top_k' else '>= 0'}", param_hint=option
                )
            if sep:
                per_output.setdefault(name, {})[field] = parsed
            else:
                defaults[field] = parsed
    atol_default, rtol_default, top_k_default = defaults["atol"], defaults["rtol"], defaults["top_k"]
    return make.OutputOptions(
        atol=float(atol_default or 0.0),
        rtol=float(rtol_default or 0.0),
        top_k=int(top_k_default) if top_k_default is not None else None,
        per_output={name: goldenset.ToleranceOverride(**fields) for name, fields in per_output.items()},
    )


@app.command()
def golden(
    model: str = typer.Argument(
        ..., help="TorchScript file (model.pt, Triton repository layout or not) or module:factory."
    ),
    factory_arg: list[str] = typer.Option([], "--factory-arg", help="KEY=VALUE for module:factory (JSON values)."),
    triton_config: pathlib.Path | None = typer.Option(
        None,
        "--triton-config",
        help="config.pbtxt giving input/output names, datatypes, dims (found beside model.pt in a repository).",
    ),
    input_specs: list[str] = typer.Option(
        [], "--input", help="NAME:DATATYPE:SHAPE, e.g. INPUT__0:FP32:1x3x32x32 (in argument order)."
    ),
    output_names: list[str] = typer.Option(
        [], "--output", help="Output names in the model's order (default: config, else OUTPUT__<i>)."
    ),
    batch: int = typer.Option(1, min=1, help="Batch size of each request when shapes come from a Triton config."),
    samples: pathlib.Path | None = typer.Option(
        None, help=".npz (an array per input name) or .npy; several requests stacked on axis 0."
    ),
    requests: int = typer.Option(16, min=1, help="Requests to generate from --seed when there are no --samples."),
    seed: int = typer.Option(0, help="Seed of the generated inputs."),
    int_range: str = typer.Option("0:10", help="LOW:HIGH (high excluded) of generated integer inputs."),
    atol: list[str] = typer.Option(
        [], help=f"Absolute tolerance (default {goldenset.DEFAULT_ATOL:g}); NAME=VALUE for one output."
    ),
    rtol: list[str] = typer.Option(
        [], help=f"Relative tolerance (default {goldenset.DEFAULT_RTOL:g}); NAME=VALUE for one output."
    ),
    top_k: list[str] = typer.Option(
        [], "--top-k", help="Top-k agreement for classifier outputs; NAME=K for one output."
    ),
    name: str | None = typer.Option(
        None, help="Model name recorded in the set (default: repository directory or factory)."
    ),
    version: str | None = typer.Option(None, help="Model version recorded in the set (default: repository directory)."),
    out: pathlib.Path | None = typer.Option(
        None, help="Write the golden-set JSON here (any size: e.g. into the model repository)."
    ),
    configmap: str | None = typer.Option(None, help="ConfigMap name for --manifest/--apply (default: <model>-golden)."),
    manifest: pathlib.Path | None = typer.Option(None, help="Write the ConfigMap manifest (YAML) here."),
    apply: bool = typer.Option(False, "--apply", help="Server-side apply the ConfigMap (field manager vigil)."),
    namespace: str | None = typer.Option(
        None, "--namespace", "-n", help="Namespace of the ConfigMap (default: the kubeconfig context's)."
    ),
    kubeconfig: str | None = typer.Option(
        None, "--kubeconfig", envvar="KUBECONFIG", help="Kubeconfig file(s), for --apply."
    ),
) -> None:
    """Run a torch model on CPU over sample inputs and record a golden set: inputs, reference outputs, tolerances, digests.

    With neither --out, --manifest nor --apply the JSON goes to standard output.
    """
    options = _tolerances(atol, rtol, top_k)
    low, sep, high = int_range.partition(":")
    try:
        integers = (int(low), int(high))
    except ValueError:
        raise typer.BadParameter(f"{int_range!r} is not LOW:HIGH", param_hint="--int-range") from None
    if not sep or integers[0] >= integers[1]:
        raise typer.BadParameter(f"{int_range!r}: expected LOW:HIGH with LOW < HIGH", param_hint="--int-range")
    try:
        loaded = make.load_model(
            model, {key: _value(value) for key, value in _pairs(factory_arg, "--factory-arg").items()}
        )
        config = tritonconfig.read(triton_config) if triton_config is not None else loaded.config
        if input_specs:
            inputs = [make.parse_input(text) for text in input_specs]
        elif config is not None:
            inputs, _ = tritonconfig.tensor_specs(config, batch)
        else:
            raise make.MakeError("give the inputs: --input NAME:DATATYPE:SHAPE (repeat per input) or --triton-config")
        loaded = dataclasses.replace(loaded, config=config)
        sample_inputs = (
            make.read_samples(samples, inputs)
            if samples is not None
            else make.generated_inputs(inputs, requests, seed, integers)
        )
        options = dataclasses.replace(options, names=list(output_names))
        golden_set = make.run(loaded, inputs, sample_inputs, options, version=version, name=name)
        text = golden_set.dumps()
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text + "\n", encoding="utf-8")
            _repository_hint(out)
        configmap_name = configmap or f"{golden_set.model.name}-golden".lower().replace("_", "-")
        if manifest is not None or apply:
            target_namespace = namespace
            if apply and target_namespace is None:
                from vigil.record import cli as record_cli

                target_namespace = record_cli.default_namespace(kubeconfig)
            body = goldenset.configmap_manifest(golden_set, configmap_name, target_namespace)
            if manifest is not None:
                manifest.parent.mkdir(parents=True, exist_ok=True)
                manifest.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
            if apply:
                _apply(body, kubeconfig)
        if out is None and manifest is None and not apply:
            typer.echo(text)
    except (make.MakeError, tritonconfig.ConfigError, goldenset.GoldenSetError) as exc:
        typer.echo(f"vigil golden: {exc}", err=True)
        raise typer.Exit(code=1) from None
    summary = (
        f"golden set of {golden_set.model.name}"
        + (f" version {golden_set.model.version}" if golden_set.model.version else "")
        + f": {len(golden_set.requests)} requests, {len(text)} bytes, outputs "
        + ", ".join(
            f"{spec.name} {spec.datatype}{spec.shape} (atol={spec.atol:g}, rtol={spec.rtol:g}"
            + (f", topK={spec.top_k})" if spec.top_k else ")")
            for spec in golden_set.outputs
        )
    )
    typer.echo(summary, err=True)


def _repository_hint(out: pathlib.Path) -> None:
    """Written into a model's directory (the nearest one with a config.pbtxt): how the spec names it."""
    resolved = out.resolve()
    for model_dir in resolved.parents:
        if (model_dir / "config.pbtxt").is_file():
            relative = resolved.relative_to(model_dir).as_posix()
            typer.echo(
                f"in model {model_dir.name} of repository {model_dir.parent}: "
                f"spec.validation.goldenSet.path: {relative}",
                err=True,
            )
            return


def _apply(body: dict[str, Any], kubeconfig: str | None) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from vigil import labels
    from vigil.record import cli as record_cli

    try:
        api = client.CoreV1Api(record_cli.custom_objects(kubeconfig).api_client)
        api.patch_namespaced_config_map(
            body["metadata"]["name"],
            body["metadata"]["namespace"],
            body,
            field_manager=labels.FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )
    except record_cli.ReadError as exc:
        raise make.MakeError(str(exc)) from None
    except ApiException as exc:
        reason = exc.reason or ""
        with contextlib.suppress(ValueError, AttributeError):
            reason = json.loads(exc.body or "{}").get("message") or reason
        raise make.MakeError(
            f"applying ConfigMap {body['metadata']['namespace']}/{body['metadata']['name']} failed: {exc.status} {reason}"
        ) from None
    typer.echo(f"configmap/{body['metadata']['name']} applied in namespace {body['metadata']['namespace']}", err=True)
