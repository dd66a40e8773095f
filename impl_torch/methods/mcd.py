r"""MCD (Saito et al. 2018), the classic three-step form, PyTorch loss code (table row ``mcd``):

* ``step_a``: ``CE_ε(F1(G x_s), y_s) + CE_ε(F2(G x_s), y_s)`` on G, F1, F2;
* ``step_b`` (G fixed): ``CE_ε(F1) + CE_ε(F2) − d(σF1(G x_t), σF2(G x_t))`` on F1, F2;
* ``step_c`` (F fixed): ``d(σF1(G x_t), σF2(G x_t))`` on G, ``num_k`` times.

Source and target go through G as separate forwards (Saito's code).
"""

from __future__ import annotations

import torch

from impl_torch.losses import cross_entropy, discrepancy
from impl_torch.methods.base import Algorithm


def pair_discrepancy(algo: Algorithm, ft: torch.Tensor, a: str = "head", b: str = "head2") -> torch.Tensor:
    """``d(σF_a(f_t), σF_b(f_t))``."""
    return discrepancy(torch.softmax(algo.nets[a](ft), -1), torch.softmax(algo.nets[b](ft), -1))


class MCD(Algorithm):
    def _ce(self, fs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        eps = self.spec["label_smoothing"]
        return cross_entropy(self.nets["head"](fs), ys, eps) + cross_entropy(self.nets["head2"](fs), ys, eps)

    def step_a(self, batch: dict[str, torch.Tensor], s: dict[str, float]) -> tuple[torch.Tensor, dict]:
        loss = self._ce(self.nets["features"](batch["xs"]), batch["ys"])
        return loss, {"loss": loss, "ce": loss / 2}

    def step_b(self, batch: dict[str, torch.Tensor], s: dict[str, float]) -> tuple[torch.Tensor, dict]:
        with torch.no_grad():  # G fixed: its forward needs no graph
            fs, ft = self.nets["features"](batch["xs"]), self.nets["features"](batch["xt"])
        loss = self._ce(fs, batch["ys"]) - pair_discrepancy(self, ft)
        return loss, {"step_b": loss}

    def step_c(self, batch: dict[str, torch.Tensor], s: dict[str, float]) -> tuple[torch.Tensor, dict]:
        d = pair_discrepancy(self, self.nets["features"](batch["xt"]))
        return d, {"discrepancy": d}
