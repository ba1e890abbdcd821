"""Small real torch models for the simulator's tests, the sandbox demo and the benchmarks; nothing downloaded.

Each factory builds its weights from a seed, so the same seed gives the same model anywhere (a
"good export"), and another seed or :func:`perturbed` a quietly different one (a "bad export").
:func:`export` writes a model the way Triton's pytorch_libtorch backend loads it: TorchScript at
``<repository>/<model>/<version>/model.pt`` and ``config.pbtxt`` beside the versions, with Triton's
``INPUT__<i>`` / ``OUTPUT__<i>`` tensor names. ``vigil golden --factory vigil.sim.torchmodels:small_cnn``
uses the factories directly.

Imports torch: import this module only where torch is installed (``vigil[golden]``).
"""

from __future__ import annotations

import dataclasses
import pathlib
import warnings

import torch
from torch import nn

from vigil.gate import tritonconfig
from vigil.sim import models

Tensor = tritonconfig.TensorConfig


@dataclasses.dataclass(frozen=True)
class Signature:
    """What ``config.pbtxt`` says about a model (the batch dimension comes first in requests)."""

    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    max_batch_size: int = 8


CLASSES = 10
IMAGE = (3, 16, 16)


class SmallCNN(nn.Module):
    """A classifier: an image (3x16x16) to 10 logits."""

    signature = Signature(
        inputs=(Tensor("INPUT__0", "FP32", IMAGE),),
        outputs=(Tensor("OUTPUT__0", "FP32", (CLASSES,)),),
    )

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Linear(16 * 2 * 2, CLASSES)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(image), 1))  # type: ignore[no-any-return]


class TwoInTwoOut(nn.Module):
    """Two inputs (features FP32 [8], a mask INT64 [8]) to two outputs (scores FP32 [4], a count INT64 [1])."""

    signature = Signature(
        inputs=(Tensor("INPUT__0", "FP32", (8,)), Tensor("INPUT__1", "INT64", (8,))),
        outputs=(Tensor("OUTPUT__0", "FP32", (4,)), Tensor("OUTPUT__1", "INT64", (1,))),
    )

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Linear(8, 16)
        self.out = nn.Linear(16, 4)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept = features * (mask > 0).to(features.dtype)
        scores = self.out(torch.tanh(self.mix(kept)))
        count = (scores > 0).sum(dim=1, keepdim=True).to(torch.int64)
        return scores, count


def _seeded(module: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return module.eval()


def small_cnn(seed: int = 0) -> nn.Module:
    return _seeded(SmallCNN(), seed)


def two_in_two_out(seed: int = 0) -> nn.Module:
    return _seeded(TwoInTwoOut(), seed)


def perturbed(module: nn.Module, scale: float, seed: int = 1) -> nn.Module:
    """``module`` with Gaussian noise of ``scale`` standard deviations (per weight tensor) on every weight."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            if not parameter.is_floating_point():
                continue
            spread = parameter.std() if parameter.numel() > 1 else parameter.abs().mean()
            parameter.add_(torch.randn(parameter.shape, generator=generator) * spread * scale)
    return module


def config_text(name: str, signature: Signature) -> str:
    """A Triton ``config.pbtxt`` for the pytorch_libtorch backend."""

    def block(kind: str, tensors: tuple[Tensor, ...]) -> str:
        entries = ",\n".join(
            f'  {{ name: "{t.name}" data_type: TYPE_{t.datatype} dims: [ {", ".join(map(str, t.dims))} ] }}'
            for t in tensors
        )
        return f"{kind} [\n{entries}\n]\n"

    return (
        f'name: "{name}"\nplatform: "pytorch_libtorch"\nmax_batch_size: {signature.max_batch_size}\n'
        + block("input", signature.inputs)
        + block("output", signature.outputs)
    )


def export(module: nn.Module, repository: pathlib.Path, name: str, version: str) -> pathlib.Path:
    """Save ``module`` as TorchScript into a Triton model repository; returns the model file's path."""
    signature: Signature = getattr(module, "signature")  # noqa: B009 - the factories' class attribute
    target = repository / name / version / models.MODEL_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".tmp")
    with warnings.catch_warnings():
        # Deprecated in torch, yet TorchScript is what Triton's pytorch_libtorch backend loads.
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(module), str(partial))
    partial.replace(target)
    (repository / name / "config.pbtxt").write_text(config_text(name, signature), encoding="utf-8")
    return target
