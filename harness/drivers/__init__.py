"""Drivers: the only part of ``harness`` that imports the framework implementations.

The framework-neutral core (``harness.spec``, ``harness.data``, ``harness.jobs``, ``harness.report``,
``harness.hparams``, ``harness.weights``, ``harness.flops.analytic``, ``harness.autotune``, ...) never imports
``impl_torch`` or ``impl_keras`` (nor this package); the implementations import the core. Code that needs
both sides — builds a torch or Keras model from a spec, compares the two frameworks, measures real layers —
lives here, and the command-line entry points (``python -m harness.equivalence|bench|flops|weights``) are thin
``__main__`` modules that call into it:

* :mod:`harness.drivers.equivalence` — ``python -m harness.equivalence layer|model|step``: PyTorch vs Keras
  on one DRT layer, a whole backbone, one training step (:mod:`~harness.drivers.equivalence.compare` holds
  the difference measures);
* :mod:`harness.drivers.bench` — ``python -m harness.bench``: wall-clock DRT / static ratios;
* :mod:`harness.drivers.flops` — the torch ``FlopCounterMode`` and TensorFlow-profiler counters and
  ``python -m harness.flops`` (the analytic counts stay in the core, :mod:`harness.flops.analytic`);
* :mod:`harness.drivers.convert` — ``python -m harness.weights convert|inspect``: weight files between the
  frameworks through the neutral format (the format itself and the checkpoint matching stay in
  :mod:`harness.weights`).

Importing this package (or any module in it) imports no framework; the frameworks are imported lazily,
when a driver runs. ``tests/test_imports.py`` checks, by reading the source, that no core module imports
``impl_torch``, ``impl_keras`` or ``harness.drivers``.
"""
