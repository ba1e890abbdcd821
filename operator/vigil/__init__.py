"""vigil: keeps NVIDIA Triton model deployments inside their SLOs and heals them when they drift."""

__version__ = "0.1.0"
