"""Dynamic coefficients of a trained DRT model, for the report's t-SNE (the paper's Figure 4).

A DRT job (``variant != "static"``) ends by running its feature extractor in inference mode over a fixed
*probe set*: up to :data:`PER_DOMAIN` test images of every domain of the suite (sources and the target, in the
suite's domain order), and saving what every dynamic layer computed, concatenated in layer order:

* ``pi`` float32 ``(N, Σ_l K)``: the subspace-routing weights ``π(x) = softmax(·)`` (``sr``, ``comb``);
* ``lam`` float32 ``(N, Σ_l C_out,l)``: the channel attentions ``Λ(x) = sigmoid(·)`` (``ca``, ``comb``);
* ``domain`` int64 ``(N,)``: domain ids (indices into ``domain_names``); ``domain_names`` str ``(D,)``;
* ``label`` int64 ``(N,)``: class labels; ``target`` str: the job's target domain.

The file is written atomically (``job_dir/coefficients.npz``, contract in ``docs/architecture.md``). The
frameworks only supply the forward pass (``impl_torch.coefficients`` / ``impl_keras.coefficients``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.atomic import atomic_open
from harness.data.splits import concat

PER_DOMAIN = 200
FILENAME = "coefficients.npz"


def probe_split(suite: Any, per_domain: int = PER_DOMAIN, seed: int = 0) -> Any:
    """Up to ``per_domain`` test images of every domain of ``suite`` (a seeded random subset per domain),
    with domain ids in the suite's domain order."""
    names = tuple(suite.domains)
    parts = []
    rng = np.random.default_rng(seed)
    for i, d in enumerate(names):
        split = suite.split(d, "test")
        n = len(split)
        idx = np.sort(rng.permutation(n)[: min(per_domain, n)])
        parts.append(split.subset(idx).with_domains(i, names))
    return concat(parts, name=f"{suite.name}:coefficient-probe")


def save(
    path: Path | str,
    pi: Sequence[np.ndarray],
    lam: Sequence[np.ndarray],
    domain: np.ndarray,
    domain_names: Sequence[str],
    label: np.ndarray | None = None,
    target: str = "",
) -> Path:
    """Write the coefficient file atomically. ``pi``/``lam``: one ``(N, ·)`` array per dynamic layer (either
    list may be empty, not both)."""
    if not pi and not lam:
        raise ValueError("no dynamic coefficients to save (a static model has none)")
    arrays: dict[str, np.ndarray] = {
        "domain": np.asarray(domain, dtype=np.int64),
        "domain_names": np.asarray(list(domain_names), dtype=str),
        "target": np.asarray(target, dtype=str),
    }
    if pi:
        arrays["pi"] = np.concatenate([np.asarray(a, dtype=np.float32) for a in pi], axis=1)
    if lam:
        arrays["lam"] = np.concatenate([np.asarray(a, dtype=np.float32) for a in lam], axis=1)
    if label is not None:
        arrays["label"] = np.asarray(label, dtype=np.int64)
    n = len(arrays["domain"])
    for k in ("pi", "lam", "label"):
        if k in arrays and len(arrays[k]) != n:
            raise ValueError(f"coefficients: {k} has {len(arrays[k])} rows, domain has {n}")
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


LayerCoefficients = Sequence[dict[str, np.ndarray]]  # per dynamic layer: {"pi": (B, K), "lam": (B, ...)}


def save_batches(
    path: Path | str,
    batches: Iterable[tuple[LayerCoefficients, np.ndarray, np.ndarray]],
    domain_names: Sequence[str],
    target: str = "",
) -> Path:
    """Concatenate per-batch ``(per-layer coefficients, labels, domain ids)`` over the probe set and
    :func:`save` them (``lam`` flattened per sample; each layer's arrays joined over batches, then the layers
    side by side)."""
    pis: dict[int, list[np.ndarray]] = {}
    lams: dict[int, list[np.ndarray]] = {}
    labels: list[np.ndarray] = []
    doms: list[np.ndarray] = []
    for layers, y, d in batches:
        n = len(y)
        for i, coeffs in enumerate(layers):
            if "pi" in coeffs:
                pis.setdefault(i, []).append(np.asarray(coeffs["pi"], dtype=np.float32).reshape(n, -1))
            if "lam" in coeffs:
                lams.setdefault(i, []).append(np.asarray(coeffs["lam"], dtype=np.float32).reshape(n, -1))
        labels.append(np.asarray(y))
        doms.append(np.asarray(d))
    return save(
        path,
        [np.concatenate(pis[i]) for i in sorted(pis)],
        [np.concatenate(lams[i]) for i in sorted(lams)],
        np.concatenate(doms),
        domain_names,
        np.concatenate(labels),
        target,
    )


def features_net_name(method: str, stage: int) -> str:
    """The feature extractor a method predicts with in ``stage`` (its method-table row's
    ``predict_features``, e.g. ADDA's target encoder after its switch)."""
    from harness import method_table

    return method_table.get(method).stages[stage].predict_features
