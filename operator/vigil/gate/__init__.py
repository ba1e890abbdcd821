"""Keeping a bad model off the wire: golden sets, and the validation gate that uses them.

- :mod:`~vigil.gate.goldenset`: the golden-set document (inputs, torch-made reference outputs,
  tolerances), its tensor (de)serialisation and the comparison of served outputs with the
  references. Pure: no torch, tritonclient or Kubernetes, so the operator image and the core
  contract stay small.
"""
