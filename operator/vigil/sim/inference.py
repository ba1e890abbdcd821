"""Running a repository's TorchScript model on CPU for a simulated pod, with the quiet faults applied.

Imported only when a pod has a model file to run (torch is the ``vigil[golden]`` extra), so
``vigil sim`` starts without torch. A loaded module is kept per (file, file stamp, corruption):
a re-exported file is reloaded, and each corruption gets its own copy of the weights:

- ``weight_noise``: Gaussian noise of that many standard deviations (per weight tensor), seeded so
  every pod of a version gets the same wrong weights, as a bad export would;
- ``input_scale``/``input_offset``: floating inputs reach the model as ``x * scale + offset``
  (preprocessing that forgot, or doubled, a normalisation);
- ``precision: fp16``: weights and floating inputs in half precision, outputs cast back to the
  declared datatype (the drift of an FP16 conversion).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from vigil.gate import goldenset, tritonconfig
from vigil.sim import behaviour, models, torchmodels

NOISE_SEED = 20240613
torch.set_num_threads(1)


class Runner:
    """Loads and runs repository models; safe to call from worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._modules: dict[tuple[str, tuple[int, int], behaviour.Corruption], torch.jit.ScriptModule] = {}
        self._configs: dict[tuple[str, int], tritonconfig.ModelConfig] = {}

    def config(self, files: models.ModelFiles) -> tritonconfig.ModelConfig | None:
        if files.config_file is None:
            return None
        key = (str(files.config_file), files.config_file.stat().st_mtime_ns)
        with self._lock:
            cached = self._configs.get(key)
        if cached is None:
            cached = tritonconfig.read(files.config_file)
            with self._lock:
                self._configs[key] = cached
        return cached

    def module(self, files: models.ModelFiles, corruption: behaviour.Corruption) -> torch.jit.ScriptModule:
        key = (str(files.model_file), files.stamp(), corruption)
        with self._lock:
            module = self._modules.get(key)
            if module is None:
                # Stale stamps of the same file are dropped: one copy per live corruption.
                for old in [k for k in self._modules if k[0] == key[0] and k[1] != key[1]]:
                    del self._modules[old]
                module = self._modules[key] = _load(files, corruption)
        return module

    def run(
        self,
        files: models.ModelFiles,
        inputs: Sequence[tuple[str, np.ndarray[Any, Any]]],
        corruption: behaviour.Corruption,
        outputs: Sequence[str] = (),
    ) -> list[tuple[str, str, np.ndarray[Any, Any]]]:
        """(name, datatype, array) per output: the requested ones, else all, in the model's order."""
        config = self.config(files)
        ordered = _ordered_inputs(config, inputs)
        module = self.module(files, corruption)
        tensors = [_tensor(array, corruption) for array in ordered]
        with torch.inference_mode():
            try:
                result = module(*tensors)
            except (RuntimeError, TypeError, ValueError) as exc:
                raise models.ModelInputError(f"the model rejected the inputs: {str(exc).splitlines()[0]}") from None
        produced = list(result) if isinstance(result, tuple | list) else [result]
        if config is not None and len(produced) != len(config.outputs):
            raise models.ModelInputError(
                f"the model returned {len(produced)} outputs, its configuration declares {len(config.outputs)}"
            )
        answers: list[tuple[str, str, np.ndarray[Any, Any]]] = []
        for index, tensor in enumerate(produced):
            if not isinstance(tensor, torch.Tensor):
                raise models.ModelInputError(f"output {index} of the model is not a tensor")
            array = tensor.detach().numpy()
            if config is not None:
                name, datatype = config.outputs[index].name, config.outputs[index].datatype
                array = array.astype(goldenset.numpy_dtype(datatype))
            else:
                if corruption.precision == "fp16" and array.dtype == np.float16:
                    array = array.astype(np.float32)  # the model was FP32 before the "conversion"
                name, datatype = f"OUTPUT__{index}", goldenset.datatype_of(array.dtype)
            answers.append((name, datatype, np.ascontiguousarray(array)))
        if not outputs:
            return answers
        by_name = {answer[0]: answer for answer in answers}
        unknown = [name for name in outputs if name not in by_name]
        if unknown:
            raise models.ModelInputError(f"unexpected inference output '{unknown[0]}' for model")
        return [by_name[name] for name in outputs]


def _ordered_inputs(
    config: tritonconfig.ModelConfig | None, inputs: Sequence[tuple[str, np.ndarray[Any, Any]]]
) -> list[np.ndarray[Any, Any]]:
    """The input arrays in the model's argument order: the configuration's, else the request's."""
    if config is None:
        return [array for _, array in inputs]
    given = dict(inputs)
    unknown = sorted(set(given) - {tensor.name for tensor in config.inputs})
    if unknown:
        raise models.ModelInputError(f"unexpected inference input '{unknown[0]}' for model '{config.name}'")
    ordered = []
    for tensor in config.inputs:
        if tensor.name not in given:
            raise models.ModelInputError(f"expected {len(config.inputs)} inputs but got {len(given)} inputs for model")
        array = given[tensor.name]
        if not config.accepts(tensor, list(array.shape)):
            raise models.ModelInputError(
                f"unexpected shape for input '{tensor.name}' for model '{config.name}'. Expected "
                f"{config.shape(tensor, -1)}, got {list(array.shape)}"
            )
        ordered.append(array)
    return ordered


def _tensor(array: np.ndarray[Any, Any], corruption: behaviour.Corruption) -> torch.Tensor:
    tensor = torch.from_numpy(np.array(array, copy=True))
    if tensor.is_floating_point():
        if corruption.input_scale != 1.0 or corruption.input_offset != 0.0:
            tensor = tensor * corruption.input_scale + corruption.input_offset
        if corruption.precision == "fp16":
            tensor = tensor.half()
    return tensor


def _load(files: models.ModelFiles, corruption: behaviour.Corruption) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is what Triton's libtorch backend loads
        module: torch.jit.ScriptModule = torch.jit.load(str(files.model_file), map_location="cpu")  # type: ignore[no-untyped-call]
    module.eval()
    if corruption.weight_noise > 0:
        torchmodels.perturbed(module, corruption.weight_noise, seed=NOISE_SEED)
    if corruption.precision == "fp16":
        module = module.half()
    return module
