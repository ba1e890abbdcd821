"""Keeping a bad model off the wire: golden sets, and the validation gate that uses them.

- :mod:`~vigil.gate.goldenset`: the golden-set document (inputs, torch-made reference outputs,
  tolerances), its tensor (de)serialisation and the comparison of served outputs with the
  references. Pure: no torch, tritonclient or Kubernetes, so the operator image and the core
  contract stay small.
- :mod:`~vigil.gate.verdict`: the gate's decisions: which revision must prove itself before it
  takes traffic (never a rollback to last-known-good), what its pods' answers prove (Passed,
  Failed, or not validated yet), and how the verdict is recorded on the revision. Pure as well;
  the I/O (the ConfigMap, tritonclient) is :mod:`vigil.reconcile.validate`.
- :mod:`~vigil.gate.make` and :mod:`~vigil.gate.cli`: ``vigil golden``, which runs a torch model
  on CPU to make a golden set (the ``vigil[golden]`` extra; torch is imported only there);
  :mod:`~vigil.gate.tritonconfig` reads a Triton ``config.pbtxt`` for it and for the simulator.
"""
