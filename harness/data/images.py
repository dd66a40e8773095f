"""Safe image access for file suites: data-root containment, a pixel limit checked from the header, and the
per-image checks of ``python -m harness.data check``.

Rules (documented in ``datasets/README.md``):

* **Containment.** Every image path, joined with the data root and resolved with :func:`os.path.realpath`
  (symlinks of the file and of every folder above it included), must lie inside the resolved root. A path
  that leaves it is refused (:class:`OutsideRootError`, never skipped as "corrupt"), unless allowed
  explicitly: ``DRT_ALLOW_OUTSIDE_ROOT=1`` in the environment, or the suite option
  ``allow_outside_root=True``.
* **Regular files only.** A FIFO, device or directory named like an image is refused (opening a FIFO would
  block a check or a data loader forever).
* **Pixel limit.** ``width × height`` read from the header must not exceed :data:`DEFAULT_MAX_PIXELS`
  (64 megapixels; DomainNet images are at most a few megapixels), checked *before* any decoding;
  ``DRT_MAX_IMAGE_PIXELS=N`` or the suite option ``max_pixels=N`` changes it. PIL's own
  decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, which only *warns* between ~89 and ~179 megapixels
  and then decodes) is never relied on; above ~179 megapixels PIL refuses by itself, whatever the setting.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from PIL import Image

from harness.errors import DataError

ENV_ALLOW_OUTSIDE_ROOT = "DRT_ALLOW_OUTSIDE_ROOT"
ENV_MAX_PIXELS = "DRT_MAX_IMAGE_PIXELS"
#: default limit on width × height of one image (64 megapixels, e.g. 8000 × 8000)
DEFAULT_MAX_PIXELS = 64_000_000
#: image check levels of ``check(images=...)``, cheapest first
IMAGE_CHECKS: tuple[str, ...] = ("none", "exists", "header", "full")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


class UnsafeDataError(DataError):
    """A data error that the loaders never skip as a corrupt image (outside-root path, bad setting)."""


class OutsideRootError(UnsafeDataError):
    """An image path that resolves outside the data root (and that was not allowed explicitly)."""


def allow_outside_root(option: bool | None = None) -> bool:
    """``option`` if given, else ``$DRT_ALLOW_OUTSIDE_ROOT`` (``1``/``true``/``yes``/``on``; default off)."""
    if option is not None:
        if not isinstance(option, bool):
            raise UnsafeDataError(f"allow_outside_root = {option!r}: expected True or False")
        return option
    v = os.environ.get(ENV_ALLOW_OUTSIDE_ROOT, "").strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise UnsafeDataError(f"${ENV_ALLOW_OUTSIDE_ROOT} = {v!r}: expected 1 (allow) or 0 (refuse, the default)")


def max_image_pixels(option: int | None = None) -> int:
    """``option`` if given, else ``$DRT_MAX_IMAGE_PIXELS``, else :data:`DEFAULT_MAX_PIXELS`."""
    src, v = "max_pixels", option
    if v is None:
        src, v = f"${ENV_MAX_PIXELS}", os.environ.get(ENV_MAX_PIXELS, "").strip() or None
        if v is None:
            return DEFAULT_MAX_PIXELS
        if not (v.isascii() and v.isdigit()):
            raise UnsafeDataError(f"{src} = {v!r}: expected a positive integer (pixels, width × height)")
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise UnsafeDataError(f"{src} = {v!r}: expected a positive integer (pixels, width × height)")
    return v


def real_root(root: str | Path) -> str:
    """The data root resolved (symlinks followed), as the prefix every image must stay under."""
    return os.path.realpath(root)


def is_inside(resolved: str, resolved_root: str) -> bool:
    """Whether the resolved path ``resolved`` lies strictly under the resolved root."""
    return resolved != resolved_root and resolved.startswith(resolved_root.rstrip(os.sep) + os.sep)


def outside_root(path: str, resolved_root: str) -> str | None:
    """None if ``path`` resolves inside ``resolved_root``, else the resolved path (which is outside)."""
    rp = os.path.realpath(path)
    return None if is_inside(rp, resolved_root) else rp


def outside_root_message(path: str, resolved: str, resolved_root: str) -> str:
    return (
        f"{path} resolves to {resolved}, outside the data root {resolved_root} (symlinks are followed); "
        f"set {ENV_ALLOW_OUTSIDE_ROOT}=1 (or the suite option allow_outside_root=True) to allow it"
    )


def too_large_message(w: int, h: int, limit: int) -> str:
    return (
        f"image of {w}x{h} = {w * h:,} pixels exceeds the limit of {limit:,} pixels (header only, not "
        f"decoded; raise it with {ENV_MAX_PIXELS}=N or the suite option max_pixels=N)"
    )


class ImageTooLarge(DataError):
    """An image whose header declares more than the pixel limit (refused before decoding)."""


def regular_file_size(path: str) -> int | None:
    """The size of ``path`` if it is a regular file; None if it is absent; :class:`DataError` otherwise."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise DataError(f"cannot stat ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError("not a regular file")
    return st.st_size


def open_rgb(path: str, max_pixels: int) -> Image.Image:
    """Decode ``path`` as an RGB image after checking its header against ``max_pixels``.

    Raises :class:`ImageTooLarge` (before any decoding), ``FileNotFoundError``, or the PIL error of a corrupt
    file (``OSError``, ``ValueError``, ``SyntaxError``, ``Image.DecompressionBombError``).
    """
    if regular_file_size(path) is None:
        raise FileNotFoundError(path)
    with Image.open(path) as im:
        w, h = im.size
        if w * h > max_pixels:
            raise ImageTooLarge(too_large_message(w, h, max_pixels))
        if im.mode == "RGB":
            im.load()
            return im
        return im.convert("RGB")


def check_image(path: str, mode: str = "header", max_pixels: int | None = None) -> str | None:
    """None if the image at ``path`` is fine, else what is wrong: ``"missing"``, ``"too-large: ..."`` or
    ``"corrupt: ..."``.

    ``exists``: a regular file is present; ``header`` (default): not empty, PIL identifies it from its
    header, its size is within ``max_pixels`` (default :func:`max_image_pixels`) and a JPEG ends with its
    end-of-image marker ``FFD9`` (a JPEG without it, e.g. with trailing bytes, is fully decoded to confirm
    it is not truncated); ``full``: additionally decodes every image completely. No image larger than the
    pixel limit is ever decoded.
    """
    limit = max_image_pixels(max_pixels)
    try:
        size = regular_file_size(path)
    except DataError as e:
        return f"corrupt: {e}"
    if size is None:
        return "missing"
    if mode == "exists":
        return None
    if size == 0:
        return "corrupt: empty file (0 bytes)"
    try:
        with Image.open(path) as im:
            fmt = im.format
            w, h = im.size
            if w * h > limit:
                return f"too-large: {too_large_message(w, h, limit)}"
            if mode == "full":
                im.load()
                return None
        if fmt == "JPEG":
            with open(path, "rb") as f:
                f.seek(max(0, size - 2))
                if f.read(2) != b"\xff\xd9":
                    with Image.open(path) as im:
                        im.load()
        return None
    except Image.DecompressionBombError as e:
        return f"too-large: {e}"
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... on corrupt data
        return f"corrupt: {type(e).__name__}: {e}"
