"""Stage ``prepare``: decode, crop and resize every image once per split and input size.

Reads ``data/fetch/`` (images + ``manifest.csv``) and ``data/export/model.json`` (input size) and
writes ``data/prepare/calibration.npz`` and ``data/prepare/evaluation.npz``, each with

* ``images``: ``uint8`` ``(N, height, width, 3)``, RGB 0..255, central 87.5% crop, bilinear
  resize (:func:`litequant.images.load_resized`);
* ``labels``: ``int32`` ``(N,)`` ImageNet-1k class indices;
* ``paths``: ``(N,)`` strings, the image paths relative to ``data/fetch``.

Every later stage (calibration and each variant's evaluation) reuses these arrays and applies the
model family's preprocessing on the fly, so no image is decoded twice for the same size.
"""

from __future__ import annotations

import numpy as np

from litequant import atomic, layout
from litequant.cli import run_stage
from litequant.errors import PipelineError
from litequant.images import BadImageError, decode_split


def prepare() -> dict[str, int]:
    """Write one ``.npz`` per split (see module docstring); returns the image count per split."""
    size = tuple(layout.read_model_info(layout.MODEL_INFO)["input_size"])
    rows = layout.read_manifest(layout.FETCH_MANIFEST)
    counts = {}
    with atomic.output_folder(layout.PREPARE_DIR) as tmp:
        for split, target in layout.SPLITS.items():
            chosen = [row for row in rows if row["split"] == split]
            if not chosen:
                raise PipelineError(f"{layout.FETCH_MANIFEST} has no {split} images")
            try:
                images = decode_split([layout.FETCH_DIR / row["path"] for row in chosen], size,
                                      f"decode {split}")
            except BadImageError as error:
                raise PipelineError(f"prepare: {error} (it was decodable when fetched; "
                                    "re-run dvc repro fetch)") from None
            labels = np.array([int(row["label"]) for row in chosen], dtype=np.int32)
            paths = np.array([row["path"] for row in chosen])
            atomic.write_npz(tmp / target.name, images=images, labels=labels, paths=paths)
            counts[split] = len(chosen)
    print(f"prepare: {counts['calibration']} calibration + {counts['evaluation']} evaluation "
          f"images at {size[0]}x{size[1]}")
    return counts


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__, lambda args: prepare(), argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
