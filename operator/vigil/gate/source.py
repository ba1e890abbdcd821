"""Where a golden set kept in the model repository is, and whether the operator may read it there.

``spec.validation.goldenSet.path`` is relative to the model's directory in ``spec.model.repository``
(``<repository>/<model>/<path>``, Triton's layout: ``golden.json`` beside ``config.pbtxt``, or
``3/golden.json`` beside version 3's ``model.pt``). The operator reads it only where it reaches the
repository itself:

* a local path (``/models`` or ``file:///models``): the repository mounted into the operator at the
  path Triton's pods see, and only under the directories the operator was told are mounted
  (``vigil run --model-repository-root``, the Helm value ``modelRepositories``), so that a
  ModelDeployment cannot point the operator at any other file of its own file system;
* ``http(s)://``: a GET of ``<repository>/<model>/<path>`` within the validation timeout and
  :data:`MAX_BYTES`;
* ``s3://``, ``gs://``, ``as://`` need cloud credentials the operator does not hold: the revision
  stays NotValidated and the message says which schemes work. Never "passed".

Pure: :func:`locate` and :func:`mounted` decide; :mod:`vigil.reconcile.repository` does the reading.
"""

from __future__ import annotations

import dataclasses
import enum
import posixpath
import urllib.parse
from collections.abc import Sequence
from typing import Final

FIELD: Final = "spec.validation.goldenSet.path"
MAX_BYTES: Final = 32 * 1024 * 1024
"""The largest golden set the operator reads from a repository (it parses it in memory) unless
``vigil run --golden-set-max-mib`` (Helm value ``goldenSetMaxMiB``) says otherwise."""
SUPPORTED: Final = "an absolute path or file:// (the repository mounted into the operator) or http(s)://"
ROOT_FLAG: Final = "vigil run --model-repository-root, Helm value modelRepositories"


class Access(enum.StrEnum):
    LOCAL = "local"
    HTTP = "http"
    UNSUPPORTED = "unsupported"


@dataclasses.dataclass(frozen=True)
class Location:
    """The golden-set file of a revision: a local path, a URL, or why the operator cannot reach it."""

    access: Access
    target: str
    """The absolute local path, the URL, or (UNSUPPORTED) the repository URI."""
    problem: str = ""
    """UNSUPPORTED: why, naming the field."""

    @property
    def where(self) -> str:
        """``spec.validation.goldenSet.path: <file>``: the prefix of every message about it."""
        return f"{FIELD}: {self.target}"


class UnreadableError(Exception):
    """The golden-set file could not be read; the message names the field and the file."""


def locate(repository: str, model: str, path: str) -> Location:
    """The file ``path`` (relative, no ``..``: the API checks it) of ``model`` in ``repository``."""
    relative = posixpath.join(model, path)
    if repository.startswith("/"):
        return Location(Access.LOCAL, posixpath.normpath(posixpath.join(repository, relative)))
    parts = urllib.parse.urlsplit(repository)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            return _unsupported(repository, f"a file:// URI with a host ({parts.netloc}) is not a local path")
        base = urllib.parse.unquote(parts.path) or "/"
        return Location(Access.LOCAL, posixpath.normpath(posixpath.join(base, relative)))
    if scheme in ("http", "https"):
        joined = parts.path.rstrip("/") + "/" + urllib.parse.quote(relative)
        return Location(Access.HTTP, urllib.parse.urlunsplit(parts._replace(path=joined, fragment="")))
    return _unsupported(repository, f"the operator cannot read {scheme or 'these'}:// model repositories")


def _unsupported(repository: str, why: str) -> Location:
    problem = (
        f"{FIELD}: {why} (spec.model.repository {repository}); it reads golden sets from {SUPPORTED}: "
        "keep this one in a ConfigMap (spec.validation.goldenSet.configMapRef) or serve the repository over http(s)"
    )
    return Location(Access.UNSUPPORTED, repository, problem)


def mounted(resolved: str, roots: Sequence[str]) -> str | None:
    """Why the operator must not read ``resolved`` (symlinks resolved) given its mounted ``roots``
    (resolved too), or None when it lies under one of them."""
    if not roots:
        return f"no model repository is mounted into the operator ({ROOT_FLAG})"
    for root in roots:
        base = root.rstrip("/") or "/"
        if resolved == base or resolved.startswith(base if base == "/" else base + "/"):
            return None
    return f"not under a model repository mounted into the operator ({', '.join(roots)}; {ROOT_FLAG})"


def too_large(size: int | None, limit: int = MAX_BYTES) -> str:
    told = f" ({size} bytes)" if size is not None else ""
    return (
        f"the golden set is over the {limit} bytes the operator reads{told}: "
        "use fewer or smaller samples (vigil golden --samples, --requests)"
    )
