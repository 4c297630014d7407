"""Atomic output writing: a temporary file (or folder) beside the target, then ``os.replace``.

An interrupted stage therefore never leaves a half-written output for DVC to cache: the target
either has its previous content or its complete new content. A stage killed mid-write (SIGKILL,
power loss) leaves at most a dot-prefixed temporary ``.<name>.<random>.tmp`` beside the target;
the next write of the same target removes it, and ``.dvcignore`` hides such temporaries from DVC
(so one inside a directory dependency such as ``data/convert`` never changes its hash).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stale(target: Path) -> None:
    """Remove the temporaries a killed earlier write of ``target`` left (``.<name>.*.tmp``)."""
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parents are created). Returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented, key-sorted JSON (trailing newline) atomically."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


@contextmanager
def output_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Build a stage's output folder in a temporary sibling and swap it in on success.

    Usage::

        with output_folder("data/convert/int8") as tmp:
            (tmp / "model.tflite").write_bytes(...)

    On an exception (or a kill) the previous folder is left as it was and the temporary one is
    removed (or, after a kill, left as a dot-folder that the next run removes).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old.tmp")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
