"""Is the domain shift real? A cross-domain accuracy matrix with HOG features + logistic regression.

``cross_domain_matrix(suite)`` trains one classifier per domain on ``n_train`` of its train images and tests
it on ``n_test`` test images of every domain. A real shift shows as a diagonal clearly above the
off-diagonal.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.data.protocol import Suite
from harness.data.splits import ArraySplit, FileSplit


def hog_features(images: np.ndarray) -> np.ndarray:
    """HOG (9 orientations, 8×8 cells, 2×2 blocks) of uint8 (N, H, W, C) images converted to grey."""
    from skimage.feature import hog

    grey = images.astype(np.float32).mean(axis=3) if images.ndim == 4 else images.astype(np.float32)
    return np.stack(
        [
            hog(g, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2), feature_vector=True)
            for g in grey
        ]
    ).astype(np.float32)


def _take(split: ArraySplit | FileSplit, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    idx = np.sort(rng.permutation(len(split))[: min(n, len(split))])
    if isinstance(split, ArraySplit):
        return split.images[idx], split.labels[idx]
    from harness.data.transforms import TransformSpec, apply_transform

    spec = TransformSpec(resize=(32, 32), mean=(0, 0, 0), std=(1 / 255, 1 / 255, 1 / 255))
    x = np.stack([apply_transform(split.load(int(i)), spec) for i in idx]).astype(np.uint8)
    return x, split.labels[idx]


def cross_domain_matrix(
    suite: Suite,
    n_train: int = 2000,
    n_test: int = 500,
    seed: int = 0,
    domains: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Accuracy (%) of a HOG + logistic-regression classifier trained on row domain, tested on column domain.

    Returns a dict with keys ``domains`` (list), ``matrix`` (list of rows), ``diagonal_mean``,
    ``off_diagonal_mean``, ``n_train`` and ``n_test``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    doms = tuple(domains or suite.domains)
    rng = np.random.default_rng(seed)
    train, test = {}, {}
    for d in doms:
        x, y = _take(suite.split(d, "train"), n_train, rng)
        train[d] = (hog_features(x), y)
        x, y = _take(suite.split(d, "test"), n_test, rng)
        test[d] = (hog_features(x), y)
    m = np.zeros((len(doms), len(doms)))
    with threadpool_limits(1):  # tiny problems: BLAS threads only oversubscribe (seconds -> milliseconds)
        for i, d in enumerate(doms):
            sc = StandardScaler().fit(train[d][0])
            clf = LogisticRegression(max_iter=300, C=0.5).fit(sc.transform(train[d][0]), train[d][1])
            for j, e in enumerate(doms):
                m[i, j] = 100.0 * float((clf.predict(sc.transform(test[e][0])) == test[e][1]).mean())
    off = m[~np.eye(len(doms), dtype=bool)]
    return {
        "domains": list(doms),
        "matrix": np.round(m, 1).tolist(),
        "diagonal_mean": round(float(np.diag(m).mean()), 1),
        "off_diagonal_mean": round(float(off.mean()), 1) if off.size else None,
        "n_train": n_train,
        "n_test": n_test,
    }


def format_matrix(result: dict[str, Any]) -> str:
    """The matrix as a text table (rows: trained on; columns: tested on)."""
    from tabulate import tabulate

    rows = [[d, *r] for d, r in zip(result["domains"], result["matrix"])]
    return tabulate(rows, headers=["train \\ test", *result["domains"]], floatfmt=".1f") + (
        f"\ndiagonal mean {result['diagonal_mean']}  off-diagonal mean {result['off_diagonal_mean']}"
    )
