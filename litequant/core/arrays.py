"""Arrays too large to hold in memory: ``.npy`` files written chunk by chunk and read row range
by row range, so a stage's memory does not grow with the number of images.

:class:`NpyWriter` streams rows into a standard ``.npy`` file (the same bytes ``np.save``
writes for the whole array, so ``np.load`` reads it and the output hash does not depend on the
chunk size). :class:`NpyRows` reads one with plain file reads into fresh arrays: unlike
``np.load(mmap_mode="r")``, whose pages stay mapped into the process (and count in its resident
memory) once touched, only the rows asked for are ever in memory. Both are fork-safe: a reader
opens the file for each read, so worker processes can share one. Imports nothing of the project
but :mod:`litequant.core.errors`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import TracebackType

import numpy as np

from litequant.core.errors import PipelineError


class NpyWriter:
    """Write a C-ordered ``.npy`` of a known ``shape`` in chunks of rows, in order.

    Usage::

        with NpyWriter(path, (n, 224, 224, 3), np.uint8) as writer:
            for chunk in chunks:
                writer.write(chunk)

    Closing checks that exactly ``shape[0]`` rows were written and syncs the file; an exception
    inside the ``with`` leaves the file incomplete (write into an :func:`atomic.output_folder
    <litequant.core.atomic.output_folder>` temporary, which is then discarded).
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path = Path(path)
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": self.shape}
        np.lib.format.write_array_header_1_0(self._handle, header)

    def write(self, rows: np.ndarray) -> None:
        """Append ``rows`` (``(k, *shape[1:])`` of the file's dtype)."""
        rows = np.ascontiguousarray(rows)
        if rows.dtype != self.dtype or rows.shape[1:] != self.shape[1:]:
            raise PipelineError(f"{self.path}: rows of {rows.dtype} {rows.shape[1:]} do not "
                                f"fit an array of {self.dtype} {self.shape}")
        if self.rows + len(rows) > self.shape[0]:
            raise PipelineError(f"{self.path}: more than {self.shape[0]} rows written")
        self._handle.write(memoryview(rows).cast("B"))  # no copy of the chunk
        self.rows += len(rows)

    def close(self) -> None:
        """Flush and sync; raises when fewer rows than ``shape[0]`` were written."""
        if self._handle.closed:
            return
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        if self.rows != self.shape[0]:
            raise PipelineError(f"{self.path}: {self.rows} of {self.shape[0]} rows written")

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self._handle.close()


class NpyRows:
    """A ``.npy`` file read by rows: ``len``, ``shape``, ``dtype``, ``ndim`` and indexing by an
    integer, a slice or an array of row indices (each returning a fresh in-memory array of
    just those rows). There is deliberately no ``__array__``: nothing converts the whole file
    by accident.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            with open(self.path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran_order, dtype = read_header(handle)
                self._offset = handle.tell()
        except (OSError, ValueError) as error:
            raise PipelineError(f"{self.path}: not a readable .npy file ({error})") from None
        if fortran_order or dtype.hasobject or len(shape) == 0:
            raise PipelineError(f"{self.path}: expected a C-ordered numeric array with rows")
        self.shape = tuple(shape)
        self.dtype = dtype
        self._row_items = math.prod(self.shape[1:])
        expected = self._offset + self.shape[0] * self._row_items * dtype.itemsize
        if self.path.stat().st_size != expected:
            raise PipelineError(f"{self.path}: truncated ({self.path.stat().st_size} bytes, "
                                f"expected {expected}): re-run the stage that writes it")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` (``0 <= start <= stop <= len``) as an array."""
        count = max(0, stop - start)
        out = np.empty((count, *self.shape[1:]), dtype=self.dtype)
        if count:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset + start * self._row_items * self.dtype.itemsize)
                if handle.readinto(memoryview(out).cast("B")) != out.nbytes:
                    raise PipelineError(f"{self.path}: file shorter than its header says")
        return out

    def __getitem__(self, key: int | slice | np.ndarray | list[int]) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            index = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= index < len(self):
                raise IndexError(f"row {key} out of range for {len(self)} rows")
            return self.read(index, index + 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                return self.read(start, max(start, stop))
            key = np.arange(start, stop, step)
        indices = np.asarray(key)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        indices = np.where(indices < 0, indices + len(self), indices).astype(np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        out = np.empty((len(indices), *self.shape[1:]), dtype=self.dtype)
        for position, index in enumerate(indices):
            out[position] = self.read(int(index), int(index) + 1)[0]
        return out
