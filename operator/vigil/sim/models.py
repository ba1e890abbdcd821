"""Where a simulated pod finds the model it serves: Triton's model repository layout, on this machine.

Triton loads ``<repository>/<model>/<version>/model.pt`` (the pytorch_libtorch backend's TorchScript
file) with ``<repository>/<model>/config.pbtxt`` beside the versions. A simulated pod does the same
with the ``--model-repository`` the operator rendered into its arguments, when that is a local
absolute path or a ``file://`` URL. Remote repositories (s3://, gs://, ...) cannot be read here, and
such pods serve the identity model (each input echoed), as before. Looking files up needs no torch:
the simulator imports torch (:mod:`vigil.sim.inference`) only when a pod really has a model to run.
"""

from __future__ import annotations

import dataclasses
import pathlib
import urllib.parse

from vigil.gate import tritonconfig

MODEL_FILE = "model.pt"


class ModelInputError(ValueError):
    """The request does not fit the model (names, shapes, datatypes): Triton answers 400."""


@dataclasses.dataclass(frozen=True)
class ModelFiles:
    """A model version in a local repository: its TorchScript file and, if present, its configuration."""

    model_file: pathlib.Path
    config_file: pathlib.Path | None

    def stamp(self) -> tuple[int, int]:
        """Changes when the file is replaced (size, mtime): a re-export is reloaded, like Triton's poll mode."""
        stat = self.model_file.stat()
        return (stat.st_size, stat.st_mtime_ns)


def local_repository(uri: str | None) -> pathlib.Path | None:
    """The local directory of a repository URI (absolute path or file://), or None if it is remote."""
    if not uri:
        return None
    if uri.startswith("file://"):
        path = urllib.parse.unquote(urllib.parse.urlparse(uri).path)
    elif uri.startswith("/"):
        path = uri
    else:
        return None
    return pathlib.Path(path)


def find(repository: str | None, model: str, version: str) -> ModelFiles | None:
    """The files of ``model`` ``version`` in a local repository, or None if there are none to run."""
    root = local_repository(repository)
    if root is None:
        return None
    model_file = root / model / version / MODEL_FILE
    if not model_file.is_file():
        return None
    config_file = root / model / tritonconfig.CONFIG_FILE
    return ModelFiles(model_file=model_file, config_file=config_file if config_file.is_file() else None)
