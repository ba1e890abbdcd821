"""Diagnose: name the likely cause of an SLO breach from evidence, and show that evidence.

Pure: :func:`~vigil.diagnose.cause.diagnose` turns a frozen :class:`~vigil.diagnose.cause.Symptoms`
(what the fleet loop measured and what the API server says about pods and revisions) into a
:class:`vigil.api.incident.Diagnosis`. The caller gathers the symptoms; nothing here does I/O, so
every rule is unit-tested without a cluster or Prometheus.
"""
