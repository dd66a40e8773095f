"""FLOP counters that run the framework models, and the ``python -m harness.flops`` command.

* :mod:`harness.drivers.flops.torch_counter` — ``torch.utils.flop_counter.FlopCounterMode`` (forward,
  forward+backward), grouped-convolution kernel-gradient over-count corrected;
* :mod:`harness.drivers.flops.tf_counter` — the TensorFlow profiler on the frozen Keras graph;
* :mod:`harness.drivers.flops.cli` — the comparison table of ``python -m harness.flops`` (analytic counts from
  :mod:`harness.flops.analytic`, counters on models built by ``impl_torch`` / ``impl_keras``).

The FLOP convention (MACs, FLOPs = 2 × MACs, elementwise separate) is documented in :mod:`harness.flops`.
Importing this package imports no framework.
"""
