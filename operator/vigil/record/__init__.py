"""Record: the Incident as a durable record, and read-only views of deployments and incidents.

* :mod:`~vigil.record.incidents`: pure functions that build an Incident manifest, append to its
  bounded timeline, resolve it, and bound the history kept per deployment;
* :mod:`~vigil.record.views`: pure rendering of ModelDeployments and Incidents to rich tables;
* :mod:`~vigil.record.cli`: the ``vigil status`` and ``vigil incidents`` commands, the only
  module here that talks to the API server (reads only).
"""
