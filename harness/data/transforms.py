"""Preprocessing, defined once: a neutral :class:`TransformSpec` and its numpy/PIL implementation.

Both framework adapters call this code (through :func:`harness.data.pipeline.load_batch`), so the
deterministic (eval) transform gives *identical* float32 arrays in PyTorch and Keras; only the layout differs
(``"CHW"`` for torch, ``"HWC"`` for Keras). Random operations draw from a per-sample generator seeded by
``(seed, epoch, index)``, so they are reproducible and independent of worker count and framework.

Order of operations (each optional):

1. ``resize``: an int resizes the *shorter* side to that many pixels (aspect kept, like torchvision
   ``Resize(int)``); a pair ``(h, w)`` resizes to exactly that size. PIL bilinear (antialiased).
2. ``crop``: ``(h, w)`` crop, random position when ``random_crop`` else centred (torchvision rounding).
3. ``hflip``: horizontal flip with probability 0.5 (train only).
4. grey → 3 channels when ``channels == 3`` (an ``(H, W)`` or ``(H, W, 1)`` image is copied to RGB).
5. normalise: ``x * (1 / (255 * std)) - mean / std`` in float32, per channel.

``fused_crop`` (default True): a shorter-side resize followed by a crop is computed as *one* PIL resize of the
crop's source box straight to the crop size (``Image.resize(size, box=...)``): the same filter and the same
scale, so the result equals resize-then-crop up to ±1 in the uint8 rounding of a few pixels, at about 60 % of
the cost. ``fused_crop=False`` does the two steps literally.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
from PIL import Image

from harness.errors import SpecError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

Layout = Literal["HWC", "CHW"]


@dataclass(frozen=True)
class TransformSpec:
    """Neutral description of one preprocessing pipeline (see the module docstring for the order)."""

    resize: int | tuple[int, int] | None = None
    crop: tuple[int, int] | None = None
    random_crop: bool = False
    hflip: bool = False
    channels: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    fused_crop: bool = True
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.resize, list):
            object.__setattr__(self, "resize", tuple(self.resize))
        if isinstance(self.crop, list):
            object.__setattr__(self, "crop", tuple(self.crop))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.channels not in (1, 3):
            raise SpecError("TransformSpec", "channels", self.channels, "1 or 3")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise SpecError(
                "TransformSpec", "mean/std", (self.mean, self.std), f"{self.channels} values each"
            )
        if any(s <= 0 for s in self.std):
            raise SpecError("TransformSpec", "std", self.std, "positive values")
        if self.resize is not None and not (
            (isinstance(self.resize, int) and self.resize > 0)
            or (isinstance(self.resize, tuple) and len(self.resize) == 2 and min(self.resize) > 0)
        ):
            raise SpecError("TransformSpec", "resize", self.resize, "None, a positive int or (h, w)")
        if self.crop is not None and not (len(self.crop) == 2 and min(self.crop) > 0):
            raise SpecError("TransformSpec", "crop", self.crop, "None or (h, w) with positive sizes")

    @property
    def deterministic(self) -> bool:
        """True when the transform uses no randomness (the eval transform)."""
        return not (self.hflip or (self.random_crop and self.crop is not None))

    def eval(self) -> TransformSpec:
        """The deterministic counterpart: centre crop, no flip."""
        return replace(self, random_crop=False, hflip=False, name=self.name.replace("train", "test"))

    def output_size(self, in_hw: tuple[int, int] | None = None) -> tuple[int, int] | None:
        """(H, W) of the output, or None when it depends on the input (no crop and shorter-side resize)."""
        if self.crop is not None:
            return self.crop
        if isinstance(self.resize, tuple):
            return self.resize
        if in_hw is None:
            return None
        return _resized_hw(in_hw, self.resize) if self.resize else in_hw

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransformSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(**d)

    # -- presets ---------------------------------------------------------------------------------------
    @classmethod
    def digits(cls, train: bool = True) -> TransformSpec:
        """Digit suites: 32×32, grey copied to 3 channels, mean 0.5 / std 0.5, no augmentation."""
        return cls(resize=(32, 32), name="digits-train" if train else "digits-test")

    @classmethod
    def domainnet(cls, train: bool = True) -> TransformSpec:
        """DomainNet: shorter side 256, crop 224 (random + flip: train; centre: test), ImageNet stats."""
        return cls(
            resize=256,
            crop=(224, 224),
            random_crop=train,
            hflip=train,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            name="domainnet-train" if train else "domainnet-test",
        )


def _resized_hw(hw: tuple[int, int], short: int) -> tuple[int, int]:
    """Shorter side → ``short`` keeping the aspect ratio (torchvision's rounding: int() of the long side)."""
    h, w = hw
    if h <= w:
        return short, max(1, int(short * w / h))
    return max(1, int(short * h / w)), short


def _crop_origin(hw: tuple[int, int], spec: TransformSpec, rng: Any) -> tuple[int, int]:
    """(top, left) of the crop in an image of size ``hw``: uniform random, or centred as torchvision."""
    ch, cw = spec.crop
    if hw[0] < ch or hw[1] < cw:
        raise ValueError(f"image of size {tuple(hw)} is smaller than the crop {spec.crop}")
    if spec.random_crop:
        return int(rng.integers(0, hw[0] - ch + 1)), int(rng.integers(0, hw[1] - cw + 1))
    return int(round((hw[0] - ch) / 2.0)), int(round((hw[1] - cw) / 2.0))


def _to_pil(img: np.ndarray | Image.Image) -> Image.Image:
    if isinstance(img, Image.Image):
        return img
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    return Image.fromarray(a)


def geometric(img: np.ndarray | Image.Image, spec: TransformSpec, rng: Any = None) -> np.ndarray:
    """Steps 1-4 (resize, crop, flip, channels) on one image -> uint8 ``(H, W, C)`` (maybe a view)."""
    if not spec.deterministic and rng is None:
        raise ValueError(
            "a random transform needs rng (harness.data.pipeline.sample_rng(seed, epoch, index))"
        )
    pil: Image.Image | None = img if isinstance(img, Image.Image) else None
    arr: np.ndarray | None = None if pil is not None else np.asarray(img)
    # 1+2 fused: resample only the crop's source box of the resized image
    if spec.fused_crop and isinstance(spec.resize, int) and spec.crop is not None:
        hw = pil.size[::-1] if pil is not None else arr.shape[:2]
        th, tw = _resized_hw(hw, spec.resize)
        if (th, tw) != tuple(hw):
            top, left = _crop_origin((th, tw), spec, rng)
            ch, cw = spec.crop
            sy, sx = hw[0] / th, hw[1] / tw
            pil = pil if pil is not None else _to_pil(arr)
            pil = pil.resize(
                (cw, ch), Image.BILINEAR, box=(left * sx, top * sy, (left + cw) * sx, (top + ch) * sy)
            )
            arr = None
            spec_crop_done = True
        else:
            spec_crop_done = False
    else:
        spec_crop_done = False
    # 1. resize
    if spec.resize is not None and not spec_crop_done:
        hw = pil.size[::-1] if pil is not None else arr.shape[:2]
        target = spec.resize if isinstance(spec.resize, tuple) else _resized_hw(hw, spec.resize)
        if tuple(hw) != tuple(target):
            pil = pil if pil is not None else _to_pil(arr)
            pil = pil.resize((target[1], target[0]), Image.BILINEAR)
            arr = None
    # 2. crop
    if spec.crop is not None and not spec_crop_done:
        hw = pil.size[::-1] if pil is not None else arr.shape[:2]
        ch, cw = spec.crop
        top, left = _crop_origin(hw, spec, rng)
        if pil is not None:
            pil = pil.crop((left, top, left + cw, top + ch))
        else:
            arr = arr[top : top + ch, left : left + cw]
    # 3. flip
    flip = bool(spec.hflip and rng.random() < 0.5)
    if pil is not None:
        if pil.mode not in ("L", "RGB"):
            pil = pil.convert("RGB" if spec.channels == 3 else "L")
        if flip:  # same pixels as arr[:, ::-1], but contiguous (a negative-stride copy is slow later)
            pil, flip = pil.transpose(Image.Transpose.FLIP_LEFT_RIGHT), False
        arr = np.asarray(pil)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if flip:
        arr = arr[:, ::-1]
    # 4. channels
    if spec.channels == 3 and arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif spec.channels == 1 and arr.ndim == 3:
        arr = np.asarray(Image.fromarray(np.ascontiguousarray(arr)).convert("L"))
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr


def apply_transform(
    img: np.ndarray | Image.Image,
    spec: TransformSpec,
    rng: Any = None,
    layout: Layout = "HWC",
) -> np.ndarray:
    """Apply ``spec`` to one uint8 image (``HxW``, ``HxWx1``, ``HxWx3`` array or PIL image) → float32.

    ``rng`` (a ``numpy.random.Generator`` or :class:`harness.data.pipeline.SampleRNG`: anything with
    ``integers(low, high)`` and ``random()``) is required when the spec is random. Returns a C-contiguous
    float32 array in ``layout`` (``"HWC"`` or ``"CHW"``) with ``spec.channels`` channels.
    """
    arr = geometric(img, spec, rng)
    return normalise_batch(arr[None], spec, layout)[0]


def normalise_batch(
    batch: np.ndarray, spec: TransformSpec, layout: Layout = "HWC", out: np.ndarray | None = None
) -> np.ndarray:
    """Step 5 on a uint8 ``(N, H, W, C)`` batch (C == 1 is copied to 3 channels when the spec wants 3):
    ``float32(x) * (1 / (255 std)) - mean / std`` → float32 ``(N, H, W, C)`` or ``(N, C, H, W)``.

    ``out``: a float32 array of the output shape to write into. Same values as :func:`apply_transform`.
    """
    if batch.shape[-1] == 1 and spec.channels == 3:
        batch = np.repeat(batch, 3, axis=-1)
    if layout not in ("HWC", "CHW"):
        raise ValueError(f"layout {layout!r}: expected 'HWC' or 'CHW'")
    src = batch.transpose(0, 3, 1, 2) if layout == "CHW" else batch
    if out is None:
        out = np.empty(src.shape, np.float32)
    out[...] = src
    return _normalise_inplace(out, spec, layout)


def _normalise_inplace(x: np.ndarray, spec: TransformSpec, layout: Layout) -> np.ndarray:
    """``x *= scale; x -= shift`` per channel on a float32 array already holding the uint8 values.

    The per-channel constants are tiled along the contiguous last axis so numpy's inner loop runs over whole
    rows (a length-3 inner loop is several times slower); the values are the same.
    """
    scale, shift = _norm_consts(spec)
    if x.size == 0:
        return x
    if layout == "CHW":
        scale, shift = scale[:, None, None], shift[:, None, None]
        x *= scale
        x -= shift
        return x
    if x.flags.c_contiguous and x.ndim == 4:
        n, h, w, c = x.shape
        v = x.reshape(n, h, w * c)
        v *= np.tile(scale, w)
        v -= np.tile(shift, w)
        return x
    x *= scale
    x -= shift
    return x


_NORM_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _norm_consts(spec: TransformSpec) -> tuple[np.ndarray, np.ndarray]:
    key = (spec.mean, spec.std)
    if key not in _NORM_CACHE:
        std = np.asarray(spec.std, dtype=np.float64)
        mean = np.asarray(spec.mean, dtype=np.float64)
        _NORM_CACHE[key] = ((1.0 / (255.0 * std)).astype(np.float32), (mean / std).astype(np.float32))
    return _NORM_CACHE[key]
