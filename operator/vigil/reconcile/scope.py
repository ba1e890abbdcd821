"""Which namespaces this operator may act in: the ``--namespace`` patterns, as kopf reads them.

kopf already watches only the namespaces matching ``--namespace``, so a watch event from outside
them should never arrive. Keys also enter the work queue from other paths (resyncs, a list after
taking the leadership, retries), and an operator that acts outside what it was told to watch is
the worst kind of surprise: two operators on one cluster (a demo and a test run) would fight over
each other's objects. So every path that enqueues or reconciles a key asks :meth:`Scope.admits`
first, with the same pattern semantics as kopf's own matcher:

* a pattern is comma-separated globs (``*`` and ``?``; surrounding spaces ignored);
* a glob starting with ``!`` excludes; a pattern starting with an exclusion implies a leading ``*``;
* the first glob does the initial match; a later inclusive glob re-includes a namespace that an
  exclusion removed, but only if the first glob matched it;
* a namespace is in scope if any pattern matches it; no patterns at all means the whole cluster.
"""

from __future__ import annotations

import dataclasses
import fnmatch


def _matches(namespace: str, pattern: str) -> bool:
    globs = [glob.strip() for glob in pattern.split(",")]
    if globs[0].startswith("!"):
        globs.insert(0, "*")
    initial = fnmatch.fnmatchcase(namespace, globs[0])
    result = initial
    for glob in globs[1:]:
        if glob.startswith("!"):
            result = result and not fnmatch.fnmatchcase(namespace, glob[1:])
        else:
            result = result or (initial and fnmatch.fnmatchcase(namespace, glob))
    return result


@dataclasses.dataclass(frozen=True)
class Scope:
    """The namespace patterns an operator watches; empty means cluster-wide."""

    patterns: tuple[str, ...] = ()

    @property
    def clusterwide(self) -> bool:
        return not self.patterns

    @property
    def exact_names(self) -> tuple[str, ...] | None:
        """The namespaces, if every pattern is one plain name (the chart's namespace mode), else None.

        Only then may the operator read nothing cluster-wide: resolving a glob (or watching the whole
        cluster) already means listing namespaces cluster-wide, so those modes read the cluster.
        """
        if not self.patterns or any(any(ch in p for ch in "*?,![") for p in self.patterns):
            return None
        return tuple(p.strip() for p in self.patterns)

    def admits(self, namespace: str) -> bool:
        """Whether objects in ``namespace`` are this operator's to reconcile and act on."""
        return self.clusterwide or any(_matches(namespace, pattern) for pattern in self.patterns)
