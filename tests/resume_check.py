"""Shared by ``test_resume_torch.py`` and ``test_resume_keras.py``: a job interrupted after its first epoch
and resumed must end bit-identical to one run straight through, DRT jobs must write their coefficients, and
every job its trained networks (``model.safetensors``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness import hparams as H
from harness.jobs import FINAL_WEIGHTS
from harness.weights import neutral
from harness.weights.convert import spec_from_metadata

CASES = [("source_only", "static"), ("adda", "sr")]


class _Stop(Exception):
    pass


def job(method: str, variant: str) -> dict[str, Any]:
    """A 2-epoch smoke job whose 3 steps per epoch stop mid-way through a loader pass."""
    ov = {"optimizer": "adam", "lr": 1e-3}
    return {
        "suite": "smoke", "root": None, "target": "plain", "method": method, "variant": variant,
        "arch": "digits_cnn", "formulation": "kernel_merge", "seed": 3, "epochs": 2, "steps_per_epoch": 3,
        "batch_size": 8, "device": "cpu", "model": {"width": 0.25},
        "hparams": H.resolve(method, "smoke", ov, ignore_foreign=True),
    }  # fmt: skip


def check_resume(
    run_job: Callable[..., dict[str, Any]],
    weights: Callable[[Path], dict[str, np.ndarray]],
    tmp_path: Path,
    method: str,
    variant: str,
) -> None:
    """``weights(job_dir)``: every saved tensor of the final checkpoint as numpy arrays."""
    spec = job(method, variant)
    straight, resumed = tmp_path / "a", tmp_path / "b"
    ra = run_job(spec, straight)

    def stop(_: dict[str, Any]) -> None:
        raise _Stop

    try:
        run_job(spec, resumed, on_epoch=stop)
        raise AssertionError("on_epoch was never called")
    except _Stop:
        pass
    assert not (resumed / "coefficients.npz").exists()
    rb = run_job(spec, resumed)
    assert ra["target_acc"] == rb["target_acc"]
    wa, wb = weights(straight), weights(resumed)
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
    # the trained networks, as the job leaves them: exactly the final checkpoint's network tensors
    final, final_resumed = neutral.load(straight / FINAL_WEIGHTS), neutral.load(resumed / FINAL_WEIGHTS)
    nets = {k: v for k, v in wa.items() if "/ntv" not in k}
    assert final.keys() == nets.keys() == final_resumed.keys()
    for k in final:
        np.testing.assert_array_equal(final[k], nets[k], err_msg=k)
        np.testing.assert_array_equal(final[k], final_resumed[k], err_msg=k)
    meta_spec = spec_from_metadata(straight / FINAL_WEIGHTS)
    assert meta_spec is not None and (meta_spec.variant, meta_spec.width) == (variant, 0.25)
    assert neutral.load_metadata(straight / FINAL_WEIGHTS)["method"] == method
    coef = straight / "coefficients.npz"
    assert coef.exists() == (variant != "static")
    if coef.exists():
        with np.load(coef) as z:
            n = len(z["domain"])
            assert z["pi"].shape == (n, 3 * 4)  # 3 dynamic convs x K=4, each layer's pi sums to 1
            np.testing.assert_allclose(z["pi"].reshape(n, 3, 4).sum(-1), 1.0, rtol=1e-5)
            assert list(z["domain_names"]) == ["plain", "inverse", "colour"]  # the suite's order
            assert set(np.unique(z["domain"])) == {0, 1, 2}
            assert str(z["target"]) == "plain" and len(z["label"]) == n
