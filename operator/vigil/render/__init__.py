"""Rendering: pure functions from a ModelDeployment spec to the Kubernetes objects that serve it.

Nothing here talks to the API server, so every rendering rule is unit-tested without a cluster.
"""
