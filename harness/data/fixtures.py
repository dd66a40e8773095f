"""Writers of small data roots in the exact published formats (for tests, benchmarks and demos; no download).

* :func:`write_digit_five` — the six Digit-Five ``.mat`` files with the documented keys, shapes and dtypes.
* :func:`write_domainnet_tree` — a DomainNet-shaped tree of real JPEGs plus ``{domain}_{train,test}.txt``.

Both return the expected counts in the form the suites' ``expected=`` option takes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from harness.data.domains import DIGIT_FIVE


def _digit_images(
    n: int, size: int, channels: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Simple synthetic digit-like images (a bar pattern per class) with labels cycling 0..9."""
    y = np.arange(n) % 10
    x = rng.integers(0, 60, size=(n, size, size, channels), dtype=np.uint8)
    for i, c in enumerate(y):
        x[i, 2 + c : 4 + c, 2 : size - 2] = 255
    return x, y


def write_digit_five(
    root: str | Path, n_train: int = 40, n_test: int = 20, seed: int = 0
) -> dict[str, dict[str, int]]:
    """Write the Digit-Five ``.mat`` files (published keys/shapes, tiny N) under ``root``; returns counts."""
    import scipy.io

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def onehot(y: np.ndarray) -> np.ndarray:
        o = np.zeros((len(y), 10), np.uint8)
        o[np.arange(len(y)), y] = 1
        return o

    xtr, ytr = _digit_images(n_train, 32, 1, rng)
    xte, yte = _digit_images(n_test, 32, 1, rng)
    x28tr, _ = _digit_images(n_train, 28, 1, rng)
    x28te, _ = _digit_images(n_test, 28, 1, rng)
    scipy.io.savemat(
        root / "mnist_data.mat",
        {
            "train_32": xtr[..., 0],
            "test_32": xte[..., 0],
            "train_28": x28tr,
            "test_28": x28te,
            "label_train": onehot(ytr),
            "label_test": onehot(yte),
        },
    )
    mtr, ytr = _digit_images(n_train, 28, 3, rng)
    mte, yte = _digit_images(n_test, 28, 3, rng)
    scipy.io.savemat(
        root / "mnistm_with_label.mat",
        {"train": mtr, "test": mte, "label_train": onehot(ytr), "label_test": onehot(yte)},
    )
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = _digit_images(n, 32, 3, rng)
        scipy.io.savemat(
            root / f"svhn_{split}_32x32.mat",
            {
                "X": np.ascontiguousarray(np.transpose(x, (1, 2, 3, 0))),
                "y": np.where(y == 0, 10, y).astype(np.uint8).reshape(-1, 1),
            },
        )
    str_, ytr = _digit_images(n_train, 32, 3, rng)
    ste, yte = _digit_images(n_test, 32, 3, rng)
    scipy.io.savemat(
        root / "syn_number.mat",
        {
            "train_data": str_,
            "train_label": ytr.reshape(-1, 1).astype(np.uint8),
            "test_data": ste,
            "test_label": yte.reshape(-1, 1).astype(np.uint8),
        },
    )
    cell = np.empty((2, 2), dtype=object)
    for row, n in enumerate((n_train, n_test)):
        x, y = _digit_images(n, 28, 1, rng)
        cell[row, 0] = (np.transpose(x, (0, 3, 1, 2)) / 255.0).astype(np.float64)
        cell[row, 1] = y.reshape(-1, 1).astype(np.float64)
    scipy.io.savemat(root / "usps_28x28.mat", {"dataset": cell})
    return {d: {"train": n_train, "test": n_test} for d in DIGIT_FIVE}


def write_domainnet_tree(
    root: str | Path,
    domains: tuple[str, ...] = ("clipart", "real", "sketch"),
    num_classes: int = 5,
    per_class: tuple[int, int] = (4, 2),
    size_range: tuple[int, int] = (96, 160),
    seed: int = 0,
    quality: int = 90,
) -> dict[str, dict[str, int]]:
    """Write ``{domain}/{class}/{domain}_{NNN}_{id:06d}.jpg`` JPEGs and the split files; returns counts.

    ``per_class`` = (train, test) images per class and domain; image sides are drawn from ``size_range``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    counts: dict[str, dict[str, int]] = {}
    uid = 0
    for di, d in enumerate(domains):
        counts[d] = {}
        for split, k in zip(("train", "test"), per_class):
            lines = []
            for c in range(num_classes):
                cdir = root / d / f"class_{c:03d}"
                cdir.mkdir(parents=True, exist_ok=True)
                for _ in range(k):
                    uid += 1
                    w, h = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, size=2))
                    bg = tuple(int(v) for v in rng.integers(0, 256, 3))
                    im = Image.new("RGB", (w, h), bg)
                    dr = ImageDraw.Draw(im)
                    fg = tuple(255 - v for v in bg)
                    for _ in range(c + 1 + di):
                        x0, y0 = int(rng.integers(0, w - 10)), int(rng.integers(0, h - 10))
                        dr.ellipse(
                            (x0, y0, x0 + int(rng.integers(8, 40)), y0 + int(rng.integers(8, 40))), fill=fg
                        )
                    arr = np.asarray(im).astype(np.int16) + rng.integers(-20, 21, (h, w, 3))
                    rel = f"{d}/class_{c:03d}/{d}_{c:03d}_{uid:06d}.jpg"
                    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(root / rel, quality=quality)
                    lines.append(f"{rel} {c}")
            (root / f"{d}_{split}.txt").write_text("\n".join(lines) + "\n")
            counts[d][split] = len(lines)
    return counts
