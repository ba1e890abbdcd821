"""Reconcile: ModelDeployments into revision Deployments and a stable Service, status from reality.

``core`` decides (pure), ``kube`` reads and writes (edge), ``operator`` wires kopf watch events to
a work queue of deployment keys.
"""
