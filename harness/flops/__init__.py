r"""FLOP and parameter accounting for static and DRT models (issue 7).

Convention used everywhere in drt-bench
---------------------------------------
* **MACs** (multiply-accumulates) count the dense linear algebra: convolutions, Linear layers, the coefficient
  branch's two fully connected layers, the per-sample kernel aggregation :math:`\sum_k \pi_k \Phi_k` and the
  per-sample convolutions. One fused multiply-add = 1 MAC. fvcore (and most papers' "FLOPs") count MACs.
* **FLOPs = 2 × MACs** (one multiply + one add), which is what ``torch.utils.flop_counter`` and TensorFlow's
  registered ``Conv2D`` / ``MatMul`` statistics report.
* **Elementwise ops** (BatchNorm, ReLU, pooling, global average pooling, softmax, sigmoid, the residual
  additions, the output mixing of ``output_mix`` and the kernel scaling of ``kernel_merge``) are counted
  *separately*, as one FLOP per elementary operation per element (e.g. a ReLU on ``C·H·W`` values = ``C·H·W``;
  a folded inference BatchNorm = 2 per value; softmax/sigmoid = 1 per value, i.e. "one pass"). They are not
  included in MACs or in ``FLOPs = 2 × MACs`` unless asked for (``include_elementwise``); the torch counter
  ignores them, the TF profiler counts some of them (see :mod:`harness.drivers.flops.tf_counter`).

Modules
-------
* :mod:`harness.flops.analytic` — exact counts from :class:`harness.spec.layer.DRTConvSpec` (no framework),
  and :func:`~harness.flops.analytic.tf_visible_macs` (the part TensorFlow's profiler can see).
* :mod:`harness.drivers.flops.torch_counter` — ``FlopCounterMode`` on the torch model (forward,
  forward+backward), with the grouped-convolution kernel-gradient over-count of torch 2.14 corrected.
* :mod:`harness.drivers.flops.tf_counter` — the TensorFlow profiler on the frozen Keras graph, stepping into
  function bodies; einsum counts 0 there.
* ``python -m harness.flops --arch NAME ...`` — the comparison table (:mod:`harness.drivers.flops.cli`; the
  counters build framework models, so they live with the drivers).
"""

from harness.flops.analytic import (
    ARCHS,
    LayerCount,
    ModelCount,
    drt_layer,
    model_counts,
    overhead_pct,
    tf_visible_macs,
)

__all__ = [
    "ARCHS",
    "LayerCount",
    "ModelCount",
    "drt_layer",
    "model_counts",
    "overhead_pct",
    "tf_visible_macs",
]
