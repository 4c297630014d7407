"""Stage ``prepare``: decode, crop and resize every image once per split and input size.

Reads ``data/fetch/`` (images + ``manifest.csv``) and ``data/export/model.json`` (input size) and
writes ``data/prepare/calibration.npz`` and ``data/prepare/evaluation.npz``, each with

* ``images``: ``uint8`` ``(N, height, width, 3)``, RGB 0..255, central 87.5% crop, bilinear
  resize (:func:`stages.images.load_resized`);
* ``labels``: ``int32`` ``(N,)`` ImageNet-1k class indices;
* ``paths``: ``(N,)`` strings, the image paths relative to ``data/fetch``.

Every later stage (calibration and each variant's evaluation) reuses these arrays and applies the
model family's preprocessing on the fly, so no image is decoded twice for the same size.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from stages import atomic
from stages.cli import progress, run_stage
from stages.errors import PipelineError
from stages.export import read_model_info
from stages.fetch import OUTPUT as FETCH_OUTPUT
from stages.fetch import SPLITS, read_manifest
from stages.images import BadImageError, load_resized

OUTPUT = Path("data/prepare")


def decode_split(paths: list[Path], size: tuple[int, int], description: str) -> np.ndarray:
    """Decode ``paths`` into one ``uint8`` ``(N, h, w, 3)`` array, in order, on all cores."""
    images = np.zeros((len(paths), size[0], size[1], 3), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = pool.map(lambda p: load_resized(p, size), paths)
        for index, pixels in enumerate(progress(results, description, total=len(paths))):
            images[index] = pixels
    return images


def prepare(fetch_dir: Path = FETCH_OUTPUT, export_dir: Path = Path("data/export"),
            output: Path = OUTPUT) -> dict[str, int]:
    """Write one ``.npz`` per split (see module docstring); returns the image count per split."""
    size = tuple(read_model_info(export_dir)["input_size"])
    rows = read_manifest(fetch_dir)
    counts = {}
    with atomic.output_folder(output) as tmp:
        for split in SPLITS:
            chosen = [row for row in rows if row["split"] == split]
            if not chosen:
                raise PipelineError(f"{fetch_dir}/manifest.csv has no {split} images")
            try:
                images = decode_split([Path(fetch_dir) / row["path"] for row in chosen], size,
                                      f"decode {split}")
            except BadImageError as error:
                raise PipelineError(f"prepare: {error} (it was decodable when fetched; "
                                    "re-run dvc repro fetch)") from None
            labels = np.array([int(row["label"]) for row in chosen], dtype=np.int32)
            paths = np.array([row["path"] for row in chosen])
            atomic.write_npz(tmp / f"{split}.npz", images=images, labels=labels, paths=paths)
            counts[split] = len(chosen)
    print(f"prepare: {counts['calibration']} calibration + {counts['evaluation']} evaluation "
          f"images at {size[0]}x{size[1]}")
    return counts


def load_split(split: str, prepare_dir: Path = OUTPUT) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, h, w, 3), labels int32 (N,))`` of a prepared split."""
    path = Path(prepare_dir) / f"{split}.npz"
    if not path.is_file():
        raise PipelineError(f"{path} not found: run the prepare stage first (dvc repro prepare)")
    with np.load(path) as data:
        return data["images"], data["labels"]


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__, lambda args: prepare(), argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
