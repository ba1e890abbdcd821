"""The API: pydantic v2 models of vigil's custom resources, the single source of truth for the CRDs.

``crds/*.yaml`` is generated from these models by :mod:`vigil.api.crd`; the operator parses what it
reads from the API server with the same models, so the schema the server enforces and the types
the code relies on cannot drift apart.
"""

GROUP = "vigil.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
