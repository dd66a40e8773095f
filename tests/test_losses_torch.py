"""Known-answer tests of the PyTorch losses on tiny hand-computed inputs, and agreement with the NumPy
references of :mod:`harness.spec.method`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from harness.spec import method as ref
from impl_torch import losses as L
from impl_torch.optim import make_optimizer

pytestmark = pytest.mark.torch  # collected only where torch is installed (tests/conftest.py)
T = lambda a: torch.tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731


def test_discrepancy_known_answer() -> None:
    p1 = T([[0.5, 0.5], [1.0, 0.0]])
    p2 = T([[0.25, 0.75], [0.5, 0.5]])
    assert float(L.discrepancy(p1, p2)) == pytest.approx(0.375, abs=1e-15)


def test_diversity_entropy_known_answer() -> None:
    assert float(L.diversity_entropy(T(np.eye(2)))) == pytest.approx(-math.log(0.500001), abs=1e-15)
    both_first = T([[1.0, 0.0], [1.0, 0.0]])
    assert float(L.diversity_entropy(both_first)) == pytest.approx(
        -(math.log(1.000001) + math.log(1e-6)) / 2, abs=1e-12
    )


def test_label_smoothing_known_answer() -> None:
    z = T(np.log([[1.0, 2.0, 1.0]]))  # softmax (1/4, 1/2, 1/4)
    y = torch.tensor([0])
    assert float(L.cross_entropy(z, y, 0.1)) == pytest.approx(1.95 * math.log(2), abs=1e-14)
    # eps = 0 is the plain cross-entropy
    assert float(L.cross_entropy(z, y, 0.0)) == pytest.approx(
        float(torch.nn.functional.cross_entropy(z, y)), abs=1e-15
    )
    # the release spreads eps over the C-1 wrong classes (torch's label_smoothing spreads it over all C)
    assert float(L.cross_entropy(z, y, 0.1)) != pytest.approx(
        float(torch.nn.functional.cross_entropy(z, y, label_smoothing=0.1)), abs=1e-6
    )


def test_masked_cross_entropy() -> None:
    z = T(np.log([[1.0, 2.0, 1.0], [1.0, 1.0, 2.0]]))
    y = torch.tensor([1, 0])
    assert float(L.masked_cross_entropy(z, y, torch.tensor([True, False]))) == pytest.approx(math.log(2))
    assert float(L.masked_cross_entropy(z, y, torch.tensor([False, False]))) == 0.0


def test_moment_distance_three_sources_known_answer() -> None:
    fs = T([[0.0], [2.0], [1.0], [3.0], [2.0], [2.0]])
    ds = torch.tensor([0, 0, 1, 1, 2, 2])
    ft = T([[0.0], [0.0]])
    assert float(L.moment_distance(fs, ds, 3, ft)) == pytest.approx(1.25, abs=1e-15)
    # domain ids in any order give the same value
    perm = torch.tensor([5, 0, 3, 1, 4, 2])
    assert float(L.moment_distance(fs[perm], ds[perm], 3, ft)) == pytest.approx(1.25, abs=1e-15)


def test_gradient_reversal_sign_and_scale() -> None:
    x = T([1.0, -2.0, 3.0]).requires_grad_(True)
    y = L.grad_reverse(x, 0.5)
    assert torch.equal(y, x)
    (y * T([1.0, 1.0, 2.0])).sum().backward()
    assert torch.equal(x.grad, T([-0.5, -0.5, -1.0]))


def test_bce_with_logits() -> None:
    z = T([0.0, 2.0, -3.0])
    for t in (0.0, 1.0):
        expected = torch.nn.functional.binary_cross_entropy_with_logits(z, torch.full_like(z, t))
        assert float(L.bce_with_logits(z, t)) == pytest.approx(float(expected), abs=1e-15)


@given(arrays(np.float64, (6, 4), elements=st.floats(-5, 5)), st.floats(0.0, 0.5))
def test_losses_match_numpy_reference(z: np.ndarray, eps: float) -> None:
    y = np.arange(6) % 4
    assert float(L.cross_entropy(T(z), torch.tensor(y), eps)) == pytest.approx(
        ref.cross_entropy(z, y, eps), rel=1e-12, abs=1e-12
    )
    p1, p2 = ref.softmax(z), ref.softmax(z[::-1].copy())
    assert float(L.discrepancy(T(p1), T(p2))) == pytest.approx(ref.discrepancy(p1, p2), abs=1e-14)
    assert float(L.diversity_entropy(T(p1))) == pytest.approx(ref.diversity_entropy(p1), abs=1e-12)
    ds = np.array([0, 1, 2, 0, 1, 2])
    md = ref.moment_distance([z[ds == i] for i in range(3)], z[::-1] * 0.5)
    assert float(L.moment_distance(T(z), torch.tensor(ds), 3, T(z[::-1] * 0.5))) == pytest.approx(
        md, rel=1e-12, abs=1e-12
    )


def test_parameter_groups_pretrained_vs_new() -> None:
    from harness.spec.method import MethodSpec
    from harness.spec.model import ModelSpec
    from impl_torch.backbones import build_features

    feats = build_features(ModelSpec(arch="digits_cnn", num_classes=10, variant="sr"))
    spec = MethodSpec.create("mcd_grl", "domainnet", pretrained=True)
    opt = make_optimizer("features", feats, spec.optimizer("features"), pretrained=True)
    groups = {g["group"]: g for g in opt.param_groups}
    assert groups["pretrained"]["lr"] == 1e-3 and groups["new"]["lr"] == 1e-2
    n_new = sum(p.numel() for p in groups["new"]["params"])
    assert n_new == sum(p.numel() for n, p in feats.named_parameters() if "bases" in n or "router" in n)
    scratch = make_optimizer("features", feats, MethodSpec.create("mcd_grl").optimizer("features"), False)
    assert [g["group"] for g in scratch.param_groups] == ["new"]
