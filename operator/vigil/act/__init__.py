"""Acting on a breach: the runbook step machine, its intents, and the two executors that are not status writes.

Layout, from pure to I/O:

* :mod:`~vigil.act.runbooks`: which runbook answers a breach, and the built-in default;
* :mod:`~vigil.act.intents`: the absolute, idempotent actions a step asks for, and how the
  status overrides among them are written into (and recognised in) a ModelDeployment's status;
* :mod:`~vigil.act.guards`: cooldown and rate limits, computed from the Incidents' records;
* :mod:`~vigil.act.machine`: ``start_plan`` and ``advance``, the pure state machine;
* :mod:`~vigil.act.sizing`: the replicas a measured demand needs at a target utilisation;
* :mod:`~vigil.act.giveback`: returning what an incident added, once its SLOs held;
* :mod:`~vigil.act.headroom`: the opt-in scale-out ahead of a breach (a headroom Incident);
* :mod:`~vigil.act.notify` and :mod:`~vigil.act.restart`: thin executors for a webhook POST and
  a pod deletion, which never raise to the worker and report a :class:`~vigil.act.intents.Result`.

The worker that owns a ModelDeployment (the single writer of its status and Incidents) wires them:
gather a :class:`~vigil.act.machine.Context`, call ``advance``, write the Incident status, execute
the intents, call ``advance`` again with their results, write again.
"""
