"""Shared by ``test_resume_torch.py`` and ``test_resume_keras.py``: a job interrupted in its second epoch
(after the first epoch's checkpoint) and resumed must end bit-identical to one run straight through and say
it resumed after epoch 1; DRT jobs must write their coefficients, and every job its trained networks
(``model.safetensors``). The checkpoint is read back with safetensors only (no pickle)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness import checkpoint
from harness import hparams as H
from harness.jobs import FINAL_WEIGHTS
from harness.weights import neutral
from harness.weights.checkpoints import spec_from_metadata

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


def checkpoint_arrays(job_dir: Path) -> dict[str, np.ndarray]:
    """Every array of the job's final checkpoint (networks, optimiser slots, RNG states)."""
    return checkpoint.load(checkpoint.path_in(job_dir))[0]


def network_arrays(job_dir: Path) -> dict[str, np.ndarray]:
    """The network tensors of the job's final checkpoint, by neutral name."""
    pre = "algo/nets/"
    return {k[len(pre) :]: v for k, v in checkpoint_arrays(job_dir).items() if k.startswith(pre)}


def check_resume(
    run_job: Callable[..., dict[str, Any]],
    tmp_path: Path,
    method: str,
    variant: str,
) -> None:
    spec = job(method, variant)
    straight, resumed = tmp_path / "a", tmp_path / "b"
    ra = run_job(spec, straight)
    assert ra["resumed_from_epoch"] == 0

    def stop(step: int, total: int) -> None:
        if step == spec["steps_per_epoch"] + 2:  # mid-way through epoch 2, after epoch 1's checkpoint
            raise _Stop

    try:
        run_job(spec, resumed, on_step=stop)
        raise AssertionError("on_step was never called at the stop step")
    except _Stop:
        pass
    assert not (resumed / "coefficients.npz").exists()
    assert checkpoint.path_in(resumed).exists()
    starts: list[int] = []
    rb = run_job(spec, resumed, on_start=starts.append)
    assert starts == [1] and rb["resumed_from_epoch"] == 1
    assert ra["target_acc"] == rb["target_acc"]
    full_a, full_b = checkpoint_arrays(straight), checkpoint_arrays(resumed)
    assert full_a.keys() == full_b.keys()
    for k in full_a:  # optimiser slots and RNG states too
        np.testing.assert_array_equal(full_a[k], full_b[k], err_msg=k)
    wa, wb = network_arrays(straight), network_arrays(resumed)
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
    # the trained networks, as the job leaves them: exactly the final checkpoint's network tensors
    final, final_resumed = neutral.load(straight / FINAL_WEIGHTS), neutral.load(resumed / FINAL_WEIGHTS)
    nets = wa
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
