r"""FLOPs of a torch model measured by ``torch.utils.flop_counter.FlopCounterMode``.

What the counter counts (torch 2.14): ``mm``, ``addmm``, ``bmm``, ``baddbmm`` (and ``einsum``, which torch
lowers to ``bmm``), ``convolution`` (grouped too) and ``convolution_backward``, attention kernels — each as
**2 × MACs** (FLOPs = 2 × MACs). **Not counted (0):** every elementwise op (BatchNorm, ReLU, sigmoid, softmax,
``mul``/``add`` — hence the mixing of ``output_mix`` and the attention scaling), pooling and ``mean`` (GAP),
and anything done by broadcasting ``mul`` + ``sum`` instead of a matmul.

**Correction (documented).** For a grouped convolution (``groups = G``) torch's formula for the *kernel*
gradient of ``convolution_backward`` uses the ungrouped shapes: with input ``(N, G·c, H, W)`` and
``grad_out (N, G·o, H', W')`` it computes the kernel gradient as a convolution with batch ``G·c`` and
``G·o × N`` weights, i.e. :math:`2\,G c\cdot G o\cdot N H' W' k^2` instead of the true
:math:`2\,G o\cdot c\cdot N H' W' k^2` — a factor ``G`` too many. For ``kernel_merge`` (batch folded into the
groups, ``G = B``) this inflates backward counts by the batch size. :func:`count` registers a corrected
formula (the same as torch's but with the kernel-gradient term divided by ``groups``) through
``FlopCounterMode(custom_mapping=...)``; ``corrected=False`` reproduces torch's own number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TorchCount:
    """Counter result: total FLOPs (2 × MACs), by aten op, by module path (hierarchical, as torch reports)."""

    total_flops: int
    by_op: dict[str, int] = field(default_factory=dict)
    by_module: dict[str, dict[str, int]] = field(default_factory=dict)
    backward: bool = False
    corrected: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_flops": self.total_flops,
            "by_op": dict(self.by_op),
            "backward": self.backward,
            "corrected": self.corrected,
        }


def _corrected_conv_backward() -> Any:
    """A ``convolution_backward`` FLOP formula whose kernel-gradient term is divided by ``groups``."""
    from torch.utils.flop_counter import conv_flop_count, get_shape

    def conv_backward_flop(
        grad_out_shape,
        x_shape,
        w_shape,
        _bias,
        _stride,
        _padding,
        _dilation,
        transposed,
        _output_padding,
        groups,
        output_mask,
        out_shape,
        **kwargs,
    ) -> int:  # noqa: ANN001
        def t(shape: list[int]) -> list[int]:
            return [shape[1], shape[0]] + list(shape[2:])

        flops = 0
        if output_mask[0]:
            flops += conv_flop_count(grad_out_shape, w_shape, get_shape(out_shape[0]), not transposed)
        if output_mask[1]:
            gw = get_shape(out_shape[1])
            if transposed:
                wflops = conv_flop_count(t(grad_out_shape), t(x_shape), t(gw), transposed=False)
            else:
                wflops = conv_flop_count(t(x_shape), t(grad_out_shape), t(gw), transposed=False)
            flops += wflops // max(int(groups), 1)
        return flops

    return conv_backward_flop


def count(model: Any, x: Any, *, backward: bool = False, corrected: bool = True) -> TorchCount:
    """Count FLOPs of ``model(x)`` (and of ``model(x).sum().backward()`` when ``backward``).

    The model is run as it is (call ``model.eval()`` first for an inference count; train mode changes no
    counted op). ``corrected`` applies the grouped-convolution kernel-gradient fix described above.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    mapping = {aten.convolution_backward: _corrected_conv_backward()} if corrected else {}
    mode = FlopCounterMode(display=False, custom_mapping=mapping)
    if backward:
        with mode:
            y = model(x)
            (y if isinstance(y, torch.Tensor) else y[0]).float().sum().backward()
    else:
        with torch.no_grad(), mode:
            model(x)
    counts = mode.get_flop_counts()
    glob = counts.get("Global", {})
    by_op = {
        str(k).split(".")[-1] if not hasattr(k, "__name__") else k.__name__: int(v) for k, v in glob.items()
    }
    by_module = {m: {str(k): int(v) for k, v in d.items()} for m, d in counts.items()}
    return TorchCount(int(mode.get_total_flops()), by_op, by_module, backward, corrected)
