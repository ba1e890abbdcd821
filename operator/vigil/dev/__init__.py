"""Local sandbox: a real Kubernetes control plane with kwok GPU nodes, Prometheus and the Triton simulator.

Everything here runs on loopback and is started by the project itself (``vigil dev up``), because
CI machines and new developer machines start bare: no container runtime, no preinstalled cluster.
"""
