"""Observe: judge every ModelDeployment's SLOs from Prometheus, in one fleet-wide loop.

Layers, lowest first (a module imports only those above it):

* :mod:`~vigil.observe.windows`: which alerting windows an SLO is judged over, and how a young
  revision's windows are capped to its age;
* :mod:`~vigil.observe.promql`: the PromQL text of the fleet's queries and the parsing of their
  results;
* :mod:`~vigil.observe.slo`: the SLO maths and state machine, pure functions from query results
  to ``SLOStatus`` objects and an ``SLOMet`` verdict;
* :mod:`~vigil.observe.metrics` and :mod:`~vigil.observe.fleet`: the I/O edge, which runs the
  queries against Prometheus and exports vigil's own metrics.
"""
