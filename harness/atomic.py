"""Atomic file writes: a reader sees either the old file or the whole new one, never half of it.

Every writer goes through :func:`atomic_open`: write to a temporary file in the destination's folder (same
file system, so the rename is atomic), flush, ``fsync``, then ``os.replace`` it over the destination. On any
error the temporary file is removed and the destination is left untouched. Missing parent folders are
created.

* :func:`write_bytes`, :func:`write_text`, :func:`write_json` for data already in memory;
* :func:`atomic_open` for writers that need a file handle (``torch.save``, ``pickle.dump``, ``np.savez``,
  safetensors' ``save``)::

      with atomic_open(path) as fh:
          np.savez(fh, **arrays)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "write_bytes", "write_json", "write_text"]

# The process umask, read once (os.umask can only be read by setting it): temporary files are created 0600 by
# ``mkstemp``; the final file gets the permissions a plain ``open(path, "w")`` would have given it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "wb", encoding: str | None = None
) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` for writing; on a clean exit fsync it and rename it to ``path``.

    ``mode`` is ``"wb"`` (default) or ``"w"`` (text, ``encoding`` defaults to UTF-8). The temporary file is
    named ``.<name>.<random>.tmp`` in the same folder and is removed if the block raises. The final file has
    the permissions of a plain ``open(path, mode)`` (``0o666`` less the umask).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open: mode must be 'wb' or 'w', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        text_encoding = (encoding or "utf-8") if mode == "w" else None
        with os.fdopen(fd, mode, encoding=text_encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (UTF-8 by default)."""
    write_bytes(path, text.encode(encoding))


def write_json(
    path: str | os.PathLike[str],
    obj: Any,
    *,
    indent: int | None = 2,
    sort_keys: bool = True,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """Write ``obj`` as JSON (indented, sorted keys, trailing newline) to ``path`` atomically.

    The object is serialised before anything touches the disk, so an unserialisable object leaves no file.
    """
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default) + "\n"
    write_text(path, text)
