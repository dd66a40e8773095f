"""PNG plots for the report (matplotlib, Agg backend; imported lazily, never at harness import time).

* :func:`bars_static_vs_drt` — per method, average target accuracy of the static model beside DRT, with the
  sample std over seeds as error bars.
* :func:`learning_curves` — per method (one panel each, in a small grid), source(-val) and target accuracy
  against the training step, static beside DRT (the report passes the means over seeds and targets).
* :func:`tsne_coefficients` — the paper's Figure 4: a t-SNE (scikit-learn) of the per-sample dynamic
  coefficients of a trained DRT model, coloured by domain. Input: ``coefficients.npz`` written by the trainer
  at the end of a DRT job (contract in ``docs/architecture.md``, Training): ``pi`` (N, ΣK) routing
  coefficients of every DRT layer concatenated in layer order and/or ``lam`` (N, ΣC_out) channel attentions;
  ``domain`` (N,) int domain ids; optional ``domain_names`` (D,) str and ``label`` (N,) int.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

Stat = tuple[float, float] | None  # (mean, std) or None when not run


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def bars_static_vs_drt(
    data: Sequence[tuple[str, Stat, Stat]], path: Path | str, *, title: str = "", drt_label: str = "sr"
) -> Path:
    """Grouped bars: for each ``(method label, static (mean, std), DRT (mean, std))`` two bars."""
    plt = _plt()
    labels = [d[0] for d in data]
    x = np.arange(len(labels))
    w = 0.38
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(labels) + 1.5), 3.8), dpi=120)
    for off, idx, name, color in (
        (-w / 2, 1, "static", "#8c8c8c"),
        (w / 2, 2, f"DRT ({drt_label})", "#1f77b4"),
    ):
        means = [d[idx][0] if d[idx] else np.nan for d in data]
        errs = [d[idx][1] if d[idx] else 0.0 for d in data]
        bars = ax.bar(x + off, means, w, yerr=errs, capsize=3, label=name, color=color)
        for rect, m in zip(bars, means):
            if np.isfinite(m):
                ax.annotate(
                    f"{m:.1f}",
                    (rect.get_x() + rect.get_width() / 2, m),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
    ax.set_xticks(x, labels, rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("target accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    """Lay out ``fig``, write it to ``path`` (folders made) and close it."""
    plt = _plt()

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


Curve = tuple[Sequence[int], Sequence[float]]  # (steps, accuracy in %)
#: One panel: (method label, "source-val" or "source", static curves, DRT curves); curves are
#: ``{"source": Curve, "target": Curve}`` (either key may be missing).
Panel = tuple[str, str, dict[str, Curve], dict[str, Curve]]


def learning_curves(
    panels: Sequence[Panel], path: Path | str, *, title: str = "", drt_label: str = "sr", ncols: int = 3
) -> Path:
    """A grid with one panel per method: target accuracy (solid) and source(-val) accuracy (dashed) against
    the training step, static (grey) and DRT (blue); writes ``path`` (PNG)."""
    if not panels:
        raise ValueError("no learning curves to plot")
    plt = _plt()
    ncols = max(1, min(ncols, len(panels)))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.6 * ncols + 0.4, 2.9 * nrows + 0.6), dpi=120, squeeze=False
    )
    arms = (("static", 2, "#8c8c8c"), (f"DRT ({drt_label})", 3, "#1f77b4"))
    for ax, panel in zip(axes.flat, panels):
        label, source = panel[0], panel[1]
        src_name = "source-val" if source == "source-val" else "source (train)"
        for arm, idx, color in arms:
            curves = panel[idx]
            for kind, style, name in (("target", "-", "target"), ("source", "--", src_name)):
                if kind in curves and len(curves[kind][0]):
                    xs, ys = curves[kind]
                    ax.plot(
                        xs,
                        ys,
                        style,
                        color=color,
                        marker="." if len(xs) < 30 else None,
                        markersize=3,
                        linewidth=1.2,
                        label=f"{arm}, {name}",
                    )
        ax.set_title(f"{label} (dashed: {src_name})", fontsize=8)
        ax.set_xlabel("training step", fontsize=7)
        ax.set_ylabel("accuracy (%)", fontsize=7)
        ax.set_ylim(0, 100)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


class CoefficientsError(ValueError):
    """A ``coefficients.npz`` that cannot be plotted; the message names the file and the reason."""


def _read_npz(npz: Path | str) -> dict[str, np.ndarray]:
    """Every array of ``npz``, read eagerly; a file that is empty, not an ``.npz`` (zip) archive, truncated or
    otherwise unreadable raises :class:`CoefficientsError` naming the file and the reason."""
    path = Path(npz)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise CoefficientsError(f"{path}: unreadable ({exc.strerror or exc})") from exc
    if not head:
        raise CoefficientsError(f"{path}: empty file (0 bytes), not a coefficients archive")
    if head != b"PK\x03\x04":
        raise CoefficientsError(f"{path}: not an .npz (zip) archive")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    except Exception as exc:  # noqa: BLE001 - zipfile, zlib, numpy format errors: all mean a corrupt file
        raise CoefficientsError(
            f"{path}: truncated or corrupt .npz archive ({type(exc).__name__}: {exc})"
        ) from exc


def _load(npz: Path | str) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    arrays = _read_npz(npz)
    try:
        parts = [
            np.asarray(arrays[k], dtype=np.float64).reshape(len(arrays[k]), -1)
            for k in ("pi", "lam")
            if k in arrays
        ]
        if not parts:
            raise CoefficientsError(
                f"{npz}: neither 'pi' nor 'lam' in the file (keys: {', '.join(sorted(arrays)) or 'none'})"
            )
        if "domain" not in arrays:
            raise CoefficientsError(f"{npz}: no 'domain' array")
        dom = np.asarray(arrays["domain"]).astype(np.int64).reshape(-1)
        names = [str(s) for s in np.asarray(arrays.get("domain_names", [])).reshape(-1)]
        target = str(arrays["target"]) if "target" in arrays else ""
        if len({len(p) for p in parts}) > 1:
            raise CoefficientsError(f"{npz}: 'pi' and 'lam' have different numbers of rows")
        feats = np.concatenate(parts, axis=1)
    except CoefficientsError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise CoefficientsError(f"{npz}: malformed arrays ({type(exc).__name__}: {exc})") from exc
    if len(feats) != len(dom):
        raise CoefficientsError(f"{npz}: {len(feats)} coefficient rows but {len(dom)} domain ids")
    if not np.isfinite(feats).all():
        raise CoefficientsError(f"{npz}: non-finite coefficients (NaN or inf)")
    if len(dom) and dom.min() < 0:
        raise CoefficientsError(f"{npz}: negative domain ids")
    if not names:
        names = [f"domain {i}" for i in range(int(dom.max()) + 1 if len(dom) else 0)]
    return feats, dom, names, target


def load_coefficients(npz: Path | str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(features (N, F), domain ids (N,), domain names)`` from a ``coefficients.npz``.

    The features are ``pi`` and ``lam`` concatenated (whichever the file holds). A file that cannot be
    plotted (empty, not an archive, truncated, missing keys, mismatched or non-finite arrays) raises
    :class:`CoefficientsError` (a ``ValueError``) naming the file and the reason."""
    feats, dom, names, _ = _load(npz)
    return feats, dom, names


def tsne_coefficients(
    npz: Path | str, path: Path | str, *, title: str = "", max_points: int = 2000, seed: int = 0
) -> Path:
    """t-SNE of the dynamic coefficients in ``npz``, one colour per domain; writes ``path`` (PNG)."""
    from sklearn.manifold import TSNE

    feats, dom, names, target = _load(npz)
    if len(feats) < 5:
        raise CoefficientsError(f"{npz}: only {len(feats)} samples; t-SNE needs at least 5")
    rng = np.random.default_rng(seed)
    if len(feats) > max_points:
        keep = np.sort(rng.choice(len(feats), max_points, replace=False))
        feats, dom = feats[keep], dom[keep]
    perplexity = float(min(30.0, max(2.0, (len(feats) - 1) / 3)))
    method = "exact" if len(feats) <= 600 else "barnes_hut"
    emb = TSNE(
        n_components=2, perplexity=perplexity, init="pca", random_state=seed, method=method, max_iter=500
    ).fit_transform(feats)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 4.6), dpi=120)
    cmap = plt.get_cmap("tab10")
    for d in np.unique(dom):
        m = dom == d
        label = names[d] if 0 <= d < len(names) else f"domain {d}"
        label += " (target)" if label == target else ""
        ax.scatter(emb[m, 0], emb[m, 1], s=6, alpha=0.7, color=cmap(int(d) % 10), label=label)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7, markerscale=2, loc="best")
    return _save(fig, path)
