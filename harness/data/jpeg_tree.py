"""A synthetic DomainNet tree for throughput benchmarks: real JPEGs in the published layout, made offline.

The tree is exactly what :class:`harness.data.domainnet.DomainNetSuite` reads (``datasets/domainnet.md``)::

    <root>/{domain}/{class}/{domain}_{NNN}_{id:06d}.jpg   NNN = label + 1 (1-based, as in the release)
    <root>/{domain}_train.txt                             one `{domain}/{class}/{file}.jpg label` per line,
    <root>/{domain}_test.txt                              sorted by path, labels 0..classes-1
    <root>/manifest.json                                  written last: what was generated (see below)

with the six DomainNet domains and 345 classes by default (class folders are named ``class_000`` ...
``class_344``: the release's class names are not needed by any loader). The pixels are not DomainNet's, but
they cost what DomainNet's cost to decode and augment: every image is a JPEG of a DomainNet-like size
(a few hundred pixels per side; quickdraw 255×255, infograph larger) with varied content per domain —
gradients, low-frequency texture, shapes, strokes, noise and text — never a flat colour, so that the
entropy-coded size, hence the decode time, is realistic (``manifest.json`` records bytes per image per
domain). Class ``c`` has its own motif (shape kinds and palette), so the labels are not pure noise.

Generation is deterministic: image ``i`` of ``(domain, split)`` is a pure function of the
:class:`TreeSpec` and ``(domain, split, i)`` (:func:`render_jpeg`), so the same spec gives the same bytes in
any order and with any number of worker processes (with one Pillow/libjpeg build; the manifest records
Pillow's version). Every file is written atomically (:mod:`harness.atomic`), the manifest last, so a tree
with a manifest is complete; :func:`ensure_tree` reuses a complete tree of the same spec from the cache
``<data root>/domainnet-synth/<key>/`` (``key`` = a hash of the spec and the generator version) and
regenerates anything else.

Imports no framework (numpy + Pillow only).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from harness.atomic import write_bytes, write_json
from harness.data.cache import default_data_root, key_hash
from harness.data.domains import DOMAINNET, SUITE_NUM_CLASSES
from harness.errors import DataError

__all__ = [
    "GENERATOR_VERSION",
    "MANIFEST",
    "STYLES",
    "TreeSpec",
    "cache_root",
    "default_workers",
    "ensure_tree",
    "file_plan",
    "file_plan_entry",
    "read_manifest",
    "render_jpeg",
    "write_tree",
]

#: bumped whenever the pixels of a spec change (it is part of the cache key)
GENERATOR_VERSION = 1
#: the completion marker and description of a tree, written last
MANIFEST = "manifest.json"
#: the cache folder under the data root
CACHE_DIR = "domainnet-synth"
SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class Style:
    """How one domain's images look: side lengths, JPEG quality, noise, and the drawing routine."""

    size: tuple[int, int]  # (min, max) of each side, drawn independently
    quality: tuple[int, int]  # JPEG quality range
    noise: float  # std of the per-pixel noise (0-255 scale)
    kind: str  # drawing routine: photo, painting, clipart, infograph, strokes (quickdraw), sketch


#: per domain; sizes chosen so the mean bytes per image resemble the release (quickdraw tiny, infograph large)
STYLES: dict[str, Style] = {
    "clipart": Style((180, 640), (85, 95), 2.0, "clipart"),
    "infograph": Style((400, 1000), (80, 92), 3.0, "infograph"),
    "painting": Style((250, 720), (80, 92), 9.0, "painting"),
    "quickdraw": Style((255, 255), (90, 95), 0.0, "quickdraw"),
    "real": Style((240, 720), (80, 92), 7.0, "real"),
    "sketch": Style((240, 720), (82, 92), 5.0, "sketch"),
}
_FALLBACK = Style((240, 640), (80, 92), 6.0, "real")  # a domain name not in STYLES (custom subsets)

_WORDS = (
    "data model transfer residual dynamic domain source target kernel basis router layer image class "
    "train test batch loss step result figure table chart value index ratio mean total share growth"
).split()


@dataclasses.dataclass(frozen=True)
class TreeSpec:
    """What to generate: ``classes`` classes, ``train_per_domain`` + ``test_per_domain`` images per domain.

    ``test_per_domain`` None: ``max(1, 3 * train_per_domain // 7)`` (DomainNet's ~70/30 split). Labels cycle
    through the classes (train image ``i`` has label ``i % classes``, test image ``j`` label
    ``(j + train_per_domain) % classes``), so every class has an image in a split that has at least
    ``classes`` images.
    """

    classes: int = SUITE_NUM_CLASSES["domainnet"]
    train_per_domain: int = 345
    test_per_domain: int | None = None
    domains: tuple[str, ...] = DOMAINNET
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("classes", "train_per_domain"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise DataError(f"jpeg tree: {name} = {v!r}, expected a positive integer")
        t = self.test_per_domain
        if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 1):
            raise DataError(f"jpeg tree: test_per_domain = {t!r}, expected None or a positive integer")
        if not self.domains or len(set(self.domains)) != len(self.domains):
            raise DataError(f"jpeg tree: domains = {self.domains!r}, expected distinct domain names")
        for d in self.domains:
            if not d or "/" in d or d.startswith(".") or not d.isprintable() or " " in d:
                raise DataError(f"jpeg tree: domain {d!r} is not a plain folder name")
        object.__setattr__(self, "domains", tuple(self.domains))

    @property
    def test_count(self) -> int:
        return (
            self.test_per_domain
            if self.test_per_domain is not None
            else max(1, 3 * self.train_per_domain // 7)
        )

    def count(self, split: str) -> int:
        return self.train_per_domain if split == "train" else self.test_count

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "train_per_domain": self.train_per_domain,
            "test_per_domain": self.test_count,
            "domains": list(self.domains),
            "seed": self.seed,
            "generator": GENERATOR_VERSION,
        }

    def key(self) -> str:
        """The cache key: a short hash of :meth:`to_dict` (the generator version included)."""
        return key_hash(self.to_dict(), 12)

    def expected(self) -> dict[str, dict[str, int]]:
        """Counts in the form :class:`~harness.data.domainnet.DomainNetSuite` takes as ``expected=``."""
        return {d: {s: self.count(s) for s in SPLITS} for d in self.domains}

    def label(self, split: str, index: int) -> int:
        return (index + (0 if split == "train" else self.train_per_domain)) % self.classes

    @property
    def num_images(self) -> int:
        return len(self.domains) * (self.train_per_domain + self.test_count)


def cache_root(spec: TreeSpec, data_root: str | Path | None = None) -> Path:
    """``<data root>/domainnet-synth/<key>``; the data root defaults to ``$DRT_DATA_ROOT`` or
    ``datasets/cache``."""
    base = Path(data_root).expanduser() if data_root is not None else default_data_root()
    return base / CACHE_DIR / spec.key()


def file_plan(spec: TreeSpec) -> list[tuple[str, str, int, str, int]]:
    """Every image as ``(domain, split, index, relative path, label)``, in generation order."""
    out = []
    for d in spec.domains:
        for s in SPLITS:
            for i in range(spec.count(s)):
                out.append((d, s, i, file_plan_entry(spec, d, s, i), spec.label(s, i)))
    return out


# ---------------------------------------------------------------------------------------------- rendering
_FONTS: dict[int, Any] = {}


def _font(size: int) -> Any:
    if size not in _FONTS:
        try:
            _FONTS[size] = ImageFont.load_default(size=size)
        except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
            _FONTS[size] = ImageFont.load_default()
    return _FONTS[size]


def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    c = rng.integers(lo, hi, 3)
    return int(c[0]), int(c[1]), int(c[2])


def _gradient(rng: np.random.Generator, h: int, w: int, c0: tuple, c1: tuple) -> np.ndarray:
    """A linear gradient between two colours at a random angle, float32 (h, w, 3)."""
    a = float(rng.uniform(0, 2 * np.pi))
    x = np.linspace(-0.5, 0.5, w, dtype=np.float32) * np.float32(np.cos(a))
    y = np.linspace(-0.5, 0.5, h, dtype=np.float32) * np.float32(np.sin(a))
    t = np.clip(x[None, :] + y[:, None] + 0.5, 0.0, 1.0)[..., None]
    c0a, c1a = np.asarray(c0, np.float32), np.asarray(c1, np.float32)
    return c0a + (c1a - c0a) * t


def _blotches(rng: np.random.Generator, h: int, w: int, cell: int, amp: float) -> np.ndarray:
    """Low-frequency colour texture: a coarse random grid upsampled bicubically, float32 (h, w, 3)."""
    gh, gw = max(2, h // cell), max(2, w // cell)
    small = rng.integers(0, 256, (gh, gw, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), np.float32)
    return (big - 128.0) * np.float32(amp / 128.0)


def _motif(seed: int, label: int) -> dict[str, Any]:
    """Class ``label``'s motif: its shape kinds, palette and stroke count (fixed per class and seed)."""
    r = np.random.default_rng([seed, 0xC1A55, label])
    kinds = ("ellipse", "rectangle", "polygon", "line", "arc")
    return {
        "kinds": tuple(kinds[int(k)] for k in r.choice(len(kinds), size=2, replace=False)),
        "palette": [_colour(r) for _ in range(3)],
        "count": int(r.integers(3, 9)),
        "strokes": int(r.integers(3, 12)),
    }


def _shapes(
    dr: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    motif: dict,
    w: int,
    h: int,
    n: int,
    outline: tuple | None = None,
    jitter: int = 40,
) -> None:
    for k in range(n):
        kind = motif["kinds"][k % len(motif["kinds"])]
        base = motif["palette"][k % len(motif["palette"])]
        col = tuple(int(np.clip(c + rng.integers(-jitter, jitter + 1), 0, 255)) for c in base)
        x0, y0 = int(rng.integers(0, max(1, w - 20))), int(rng.integers(0, max(1, h - 20)))
        x1 = min(w - 1, x0 + int(rng.integers(12, max(13, w // 2))))
        y1 = min(h - 1, y0 + int(rng.integers(12, max(13, h // 2))))
        width = int(rng.integers(1, 6))
        if kind == "ellipse":
            dr.ellipse((x0, y0, x1, y1), fill=col, outline=outline, width=width)
        elif kind == "rectangle":
            dr.rectangle((x0, y0, x1, y1), fill=col, outline=outline, width=width)
        elif kind == "polygon":
            pts = [(int(rng.integers(x0, x1 + 1)), int(rng.integers(y0, y1 + 1))) for _ in range(5)]
            dr.polygon(pts, fill=col, outline=outline)
        elif kind == "arc":
            dr.arc(
                (x0, y0, x1, y1),
                int(rng.integers(0, 180)),
                int(rng.integers(180, 360)),
                fill=col,
                width=width + 2,
            )
        else:
            dr.line((x0, y0, x1, y1), fill=col, width=width + 2)


def _strokes(
    dr: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    motif: dict,
    w: int,
    h: int,
    colour: Callable[[], tuple],
    wmin: int,
    wmax: int,
) -> None:
    """Hand-drawing-like polylines (quickdraw, sketch)."""
    for _ in range(motif["strokes"]):
        n = int(rng.integers(3, 10))
        x, y = float(rng.uniform(0.1, 0.9) * w), float(rng.uniform(0.1, 0.9) * h)
        pts = [(x, y)]
        for _ in range(n):
            x = float(np.clip(x + rng.normal(0, w / 8), 0, w - 1))
            y = float(np.clip(y + rng.normal(0, h / 8), 0, h - 1))
            pts.append((x, y))
        dr.line(pts, fill=colour(), width=int(rng.integers(wmin, wmax + 1)), joint="curve")


def _text(
    dr: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    w: int,
    h: int,
    n: int,
    size: tuple[int, int],
    colour: tuple | None = None,
) -> None:
    for _ in range(n):
        words = " ".join(_WORDS[int(i)] for i in rng.integers(0, len(_WORDS), int(rng.integers(1, 5))))
        pos = (int(rng.integers(0, max(1, w - 40))), int(rng.integers(0, max(1, h - 12))))
        dr.text(pos, words, fill=colour or _colour(rng, 0, 200), font=_font(int(rng.integers(*size))))


def _render(style: Style, motif: dict, rng: np.random.Generator, w: int, h: int) -> Image.Image:
    kind = style.kind
    if kind == "quickdraw":
        im = Image.new("RGB", (w, h), (255, 255, 255))
        _strokes(ImageDraw.Draw(im), rng, motif, w, h, lambda: (0, 0, 0), 2, 4)
        return im
    if kind == "sketch":
        paper = _gradient(rng, h, w, _colour(rng, 225, 256), _colour(rng, 205, 245))
        im = Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8))
        dr = ImageDraw.Draw(im)
        _strokes(dr, rng, motif, w, h, lambda: (int(rng.integers(20, 120)),) * 3, 1, 5)
        for _ in range(int(rng.integers(10, 40))):  # hatching
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            d = int(rng.integers(6, 30))
            dr.line((x, y, x + d, y - d), fill=(int(rng.integers(60, 160)),) * 3, width=1)
        return im
    if kind == "clipart":
        bg = (255, 255, 255) if rng.random() < 0.6 else _colour(rng, 150, 256)
        im = Image.new("RGB", (w, h), bg)
        _shapes(ImageDraw.Draw(im), rng, motif, w, h, motif["count"], outline=(0, 0, 0), jitter=10)
        return im
    if kind == "infograph":
        im = Image.fromarray(
            np.clip(_gradient(rng, h, w, _colour(rng, 180, 256), _colour(rng, 150, 256)), 0, 255).astype(
                np.uint8
            )
        )
        dr = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(3, 8))):  # panels / bars
            x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
            dr.rectangle(
                (x0, y0, x0 + int(rng.integers(30, w // 2)), y0 + int(rng.integers(20, h // 3))),
                fill=_colour(rng),
            )
        _shapes(dr, rng, motif, w, h, motif["count"])
        _text(dr, rng, w, h, int(rng.integers(15, 40)), (12, 40))
        return im
    # photo-like (real) and painting: gradient sky/ground + low-frequency texture + objects, softened
    base = _gradient(rng, h, w, _colour(rng), _colour(rng))
    base += _blotches(rng, h, w, int(rng.integers(16, 48)), 40.0 if kind == "painting" else 25.0)
    im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    dr = ImageDraw.Draw(im)
    _shapes(dr, rng, motif, w, h, motif["count"] + 2)
    if kind == "painting":
        _strokes(dr, rng, motif, w, h, lambda: _colour(rng), 3, 12)
        return im.filter(ImageFilter.SMOOTH_MORE)
    if rng.random() < 0.3:
        _text(dr, rng, w, h, int(rng.integers(1, 4)), (12, 28), (255, 255, 255))
    return im.filter(ImageFilter.GaussianBlur(0.8))


def render_jpeg(spec: TreeSpec, domain: str, split: str, index: int) -> bytes:
    """The JPEG bytes of image ``index`` of ``(domain, split)``: a pure function of its arguments."""
    di = spec.domains.index(domain)
    rng = np.random.default_rng([spec.seed, GENERATOR_VERSION, di, SPLITS.index(split), index])
    style = STYLES.get(domain, _FALLBACK)
    w, h = (int(v) for v in rng.integers(style.size[0], style.size[1] + 1, 2))
    im = _render(style, _motif(spec.seed, spec.label(split, index)), rng, w, h)
    if style.noise > 0:
        arr = np.asarray(im, np.float32)
        arr += rng.standard_normal(arr.shape, dtype=np.float32) * np.float32(style.noise)
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=int(rng.integers(style.quality[0], style.quality[1] + 1)))
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- writing
def _write_one(args: tuple[TreeSpec, str, str, str, int]) -> tuple[str, int, str, int, int]:
    spec, root, domain, split, index = args
    data = render_jpeg(spec, domain, split, index)
    rel = file_plan_entry(spec, domain, split, index)
    write_bytes(Path(root) / rel, data)
    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
    return rel, len(data), hashlib.sha256(data).hexdigest(), w, h


def file_plan_entry(spec: TreeSpec, domain: str, split: str, index: int) -> str:
    """The relative path of image ``index`` of ``(domain, split)`` (as in :func:`file_plan`)."""
    uid = index + 1 + (0 if split == "train" else spec.train_per_domain)
    y = spec.label(split, index)
    return f"{domain}/class_{y:03d}/{domain}_{y + 1:03d}_{uid:06d}.jpg"


def write_tree(
    root: str | Path, spec: TreeSpec, *, workers: int = 1, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Generate every image and split file of ``spec`` under ``root`` (atomic writes, the manifest last);
    returns the manifest. ``workers`` > 1 renders in that many processes (same bytes)."""
    root = Path(root)
    t0 = time.perf_counter()
    plan = file_plan(spec)
    tasks = [(spec, str(root), d, s, i) for d, s, i, _, _ in plan]
    if workers > 1 and len(tasks) > 1:
        # spawned, not forked: the caller may already run framework threads (forking those can deadlock)
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
            results = list(ex.map(_write_one, tasks, chunksize=max(1, len(tasks) // (8 * workers))))
    else:
        results = [_write_one(t) for t in tasks]
    by_rel = {r[0]: r for r in results}
    per_domain: dict[str, dict[str, Any]] = {}
    digest = hashlib.sha256()
    for d in spec.domains:
        for s in SPLITS:
            lines = sorted(f"{rel} {y}" for dd, ss, _, rel, y in plan if dd == d and ss == s)
            text = "\n".join(lines) + "\n"
            write_bytes(root / f"{d}_{s}.txt", text.encode())
            digest.update(f"{d}_{s}.txt|{hashlib.sha256(text.encode()).hexdigest()}\n".encode())
        rows = [by_rel[rel] for dd, _, _, rel, _ in plan if dd == d]
        per_domain[d] = {
            "images": len(rows),
            "bytes": int(sum(r[1] for r in rows)),
            "mean_bytes": round(float(np.mean([r[1] for r in rows])), 1),
            "mean_width": round(float(np.mean([r[3] for r in rows])), 1),
            "mean_height": round(float(np.mean([r[4] for r in rows])), 1),
        }
    for rel in sorted(by_rel):
        digest.update(f"{rel}|{by_rel[rel][2]}\n".encode())
    import PIL

    manifest = {
        "format": "domainnet (published layout), synthetic pixels",
        "spec": spec.to_dict(),
        "key": spec.key(),
        "counts": spec.expected(),
        "images": len(results),
        "bytes": int(sum(r[1] for r in results)),
        "per_domain": per_domain,
        "sha256": digest.hexdigest(),
        "pillow": PIL.__version__,
        "seconds": round(time.perf_counter() - t0, 2),
        "workers": workers,
    }
    write_json(root / MANIFEST, manifest)
    if log is not None:
        log(
            f"jpeg tree: wrote {len(results)} images ({manifest['bytes'] / 1e6:.1f} MB) to {root} in "
            f"{manifest['seconds']:.1f} s"
        )
    return manifest


def read_manifest(
    root: str | Path, spec: TreeSpec | None = None, verify: bool = True
) -> dict[str, Any] | None:
    """The manifest of a complete tree at ``root`` (of ``spec`` when given), else None.

    ``verify``: every split file exists and every listed image exists with the recorded total size (one
    ``stat`` per image; the pixels are not re-read).
    """
    import json

    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or (spec is not None and manifest.get("spec") != spec.to_dict()):
        return None
    if verify:
        try:
            total = 0
            for d, sp in manifest["counts"].items():
                for s in sp:
                    for line in (root / f"{d}_{s}.txt").read_text().split("\n"):
                        if line.strip():
                            total += (root / line.rsplit(" ", 1)[0]).stat().st_size
        except (OSError, KeyError, AttributeError, TypeError):
            return None
        if total != manifest.get("bytes"):
            return None
    return manifest


def ensure_tree(
    spec: TreeSpec,
    data_root: str | Path | None = None,
    *,
    root: str | Path | None = None,
    workers: int = 1,
    log: Callable[[str], None] | None = None,
) -> tuple[Path, dict[str, Any], bool]:
    """``(root, manifest, reused)``: the cached tree of ``spec`` (``root`` overrides the cache folder),
    generated when it is absent or incomplete."""
    root = Path(root) if root is not None else cache_root(spec, data_root)
    manifest = read_manifest(root, spec)
    if manifest is not None:
        if log is not None:
            log(f"jpeg tree: reusing {root} ({manifest['images']} images, sha256 {manifest['sha256'][:12]})")
        return root, manifest, True
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{root}: cannot create the jpeg tree folder ({e})") from None
    return root, write_tree(root, spec, workers=max(1, int(workers)), log=log), False


def default_workers() -> int:
    """Processes for generation: the usable cores, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        n = os.cpu_count() or 1
    return max(1, min(8, n))
