"""The "static conv + per-sample matmul" DRT step (``residual_agg`` with 1×1 bases), PyTorch vs Keras.

Weights ported both ways through the neutral format (:func:`harness.drivers.equivalence.layer.compare_layers`,
the helper of ``tests/test_layer_equivalence.py``); float64; output, coefficients and the gradients w.r.t. the
input, the routing input and every parameter agree to 1e-12 relative on the TensorFlow backend (1e-5 on
Keras' torch/JAX backends, which compute 64-bit matmul/einsum in 32-bit), for kernel sizes 1–4, strides 1–2,
every padding the spec accepts, variants ``sr``, ``comb``, ``sr_uniform``, ``ca`` and both routings. The
Keras side reads the centre-tap samples from the unpadded input where it can, the torch side from a view of
``x``: these checks cover both code paths and the padded fallback (``padding > min(c, k − 1 − c)``).
"""

from __future__ import annotations

import pytest

from harness.frameworks import prepare_process

prepare_process()

import keras  # noqa: E402
import torch  # noqa: E402

from harness.drivers.equivalence import layer as eq  # noqa: E402
from harness.spec.layer import DRTConvSpec  # noqa: E402

pytestmark = pytest.mark.cross

torch.set_num_threads(1)

BOUND = 1e-12 if keras.backend.backend() == "tensorflow" else 1e-5
GEOMETRIES = [(k, s, p) for k in (1, 2, 3, 4) for s in (1, 2) for p in [None, *range(k)]]


@pytest.mark.parametrize("route", ["layer", "block"])
@pytest.mark.parametrize("variant", ["sr", "comb", "sr_uniform", "ca"])
def test_torch_and_keras_matmul_path_agree(variant: str, route: str) -> None:
    kw = {"route": "block", "route_channels": 5} if route == "block" else {}
    worst, bad = 0.0, []
    for i, (k, s, p) in enumerate(GEOMETRIES):
        spec = DRTConvSpec(
            3,
            4,
            k,
            stride=s,
            padding=p,
            variant=variant,
            K=3,
            basis_kernel=1,
            formulation="residual_agg",
            **kw,
        )
        for j, direction in enumerate(eq.DIRECTIONS):
            diffs = eq.compare_layers(
                spec,
                "float64",
                direction,
                300 + 2 * i + j,
                batch=2,
                height=7,
                width=6,
                bound=BOUND,
                route_scale=s,
            )
            whats = {d.what for d in diffs}
            assert {"output", "grad input", "grad weight"} <= whats
            assert ("grad bases" in whats) == spec.has_routing
            assert ("grad route_input" in whats) == (route == "block")
            bad += [(k, s, spec.padding, direction, d) for d in diffs if not d.ok]
            worst = max(worst, *(d.max_rel for d in diffs))
    assert not bad, bad
    assert worst <= BOUND
