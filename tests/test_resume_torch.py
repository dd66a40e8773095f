"""A job interrupted after its first epoch and resumed ends bit-identical to one run straight through (torch),
even when ``steps_per_epoch`` stops mid-way through a loader pass; DRT jobs write ``coefficients.npz``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

from harness import hparams as H  # noqa: E402
from impl_torch.train import run_job  # noqa: E402


class _Stop(Exception):
    pass


def _job(method: str, variant: str) -> dict:
    ov = {"optimizer": "adam", "lr": 1e-3}
    return {
        "suite": "smoke", "root": None, "target": "plain", "method": method, "variant": variant,
        "arch": "digits_cnn", "formulation": "kernel_merge", "seed": 3, "epochs": 2, "steps_per_epoch": 3,
        "batch_size": 8, "device": "cpu", "model": {"width": 0.25},
        "hparams": H.resolve(method, "smoke", ov, ignore_foreign=True),
    }  # fmt: skip


def _nets(d: Path) -> dict:
    return torch.load(d / "checkpoint" / "state.pt", weights_only=False)["algorithm"]["nets"]


@pytest.mark.parametrize(("method", "variant"), [("source_only", "static"), ("adda", "sr")])
def test_resumed_job_equals_straight_run(tmp_path: Path, method: str, variant: str) -> None:
    job = _job(method, variant)
    straight, resumed = tmp_path / "a", tmp_path / "b"
    ra = run_job(job, straight)

    def stop(_: dict) -> None:
        raise _Stop

    with pytest.raises(_Stop):
        run_job(job, resumed, on_epoch=stop)
    assert not (resumed / "coefficients.npz").exists()
    rb = run_job(job, resumed)
    assert ra["target_acc"] == rb["target_acc"]
    sa, sb = _nets(straight), _nets(resumed)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    coef = straight / "coefficients.npz"
    assert coef.exists() == (variant != "static")
    if coef.exists():
        with np.load(coef) as z:
            n = len(z["domain"])
            assert z["pi"].shape == (n, 3 * 4)  # 3 dynamic convs x K=4, rows sum to 1 per layer
            np.testing.assert_allclose(z["pi"].reshape(n, 3, 4).sum(-1), 1.0, rtol=1e-5)
            assert list(z["domain_names"]) == ["plain", "inverse", "colour"]  # the suite's order
            assert set(np.unique(z["domain"])) == set(range(len(z["domain_names"])))
