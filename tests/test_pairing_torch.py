"""Real pairing in PyTorch: every method, every variant (see ``pairing_check.py``)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

from pairing_check import check_method  # noqa: E402

from harness import method_table  # noqa: E402
from impl_torch.train import TorchBackend  # noqa: E402


@pytest.mark.parametrize("method", method_table.METHODS)
def test_variants_of_a_seed_start_from_the_static_model(method: str) -> None:
    check_method(TorchBackend(), method, lambda algo: torch.get_rng_state().numpy())


def test_dropout_masks_are_the_same_for_static_and_drt() -> None:
    from pairing_check import start

    masks = []
    for variant in ("static", "sr"):
        algo, _ = start(TorchBackend(), "source_only", variant, seed=3)
        masks.append(torch.nn.functional.dropout(torch.ones(1000), 0.5, training=True))
    assert torch.equal(masks[0], masks[1])
