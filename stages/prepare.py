"""Stage ``prepare``: decode, crop and resize every image once per split and input size.

Reads ``data/fetch/`` (images + ``manifest.csv``) and ``data/export/model.json`` (input size) and
writes one folder per split, ``data/prepare/calibration/`` and ``data/prepare/evaluation/``, each
with

* ``images.npy``: ``uint8`` ``(N, height, width, 3)``, RGB 0..255, central 87.5% crop, bilinear
  resize (:func:`litequant.images.load_resized`);
* ``labels.npy``: ``int32`` ``(N,)`` ImageNet-1k class indices;
* ``paths.txt``: the image paths relative to ``data/fetch``, one a line, in row order.

Images are decoded a chunk at a time and streamed into ``images.npy``
(:class:`litequant.arrays.NpyWriter`), so memory does not grow with the number of images. Every
later stage (calibration and each variant's evaluation) reads these files batch by batch and
applies the model family's preprocessing on the fly, so no image is decoded twice for the same
size.
"""

from __future__ import annotations

import time

import numpy as np

from litequant import atomic, layout
from litequant.arrays import NpyWriter
from litequant.cli import run_stage
from litequant.errors import PipelineError
from litequant.images import BadImageError, decode_chunks


def prepare() -> dict[str, int]:
    """Write one folder per split (see module docstring); returns the image count per split."""
    size = tuple(layout.read_model_info(layout.MODEL_INFO)["input_size"])
    # only the path and label of each image are kept (a few dozen bytes an image)
    splits: dict[str, tuple[list[str], list[int]]] = {split: ([], []) for split in layout.SPLITS}
    for row in layout.iter_manifest(layout.FETCH_MANIFEST):
        if row["split"] in splits:
            splits[row["split"]][0].append(row["path"])
            splits[row["split"]][1].append(int(row["label"]))
    counts = {}
    begin = time.perf_counter()
    with atomic.output_folder(layout.PREPARE_DIR) as tmp:
        for split, target in layout.SPLITS.items():
            paths, labels = splits[split]
            if not paths:
                raise PipelineError(f"{layout.FETCH_MANIFEST} has no {split} images")
            folder = tmp / target.name
            folder.mkdir()
            try:
                with NpyWriter(folder / layout.SPLIT_IMAGES, (len(paths), *size, 3),
                               np.uint8) as writer:
                    for images in decode_chunks(paths, size, f"decode {split}",
                                                root=layout.FETCH_DIR):
                        writer.write(images)
            except BadImageError as error:
                raise PipelineError(f"prepare: {error} (it was decodable when fetched; "
                                    "re-run dvc repro fetch)") from None
            np.save(folder / layout.SPLIT_LABELS, np.array(labels, dtype=np.int32))
            (folder / layout.SPLIT_PATHS).write_text("".join(p + "\n" for p in paths), "utf-8")
            counts[split] = len(paths)
    seconds = time.perf_counter() - begin
    print(f"prepare: {counts['calibration']} calibration + {counts['evaluation']} evaluation "
          f"images at {size[0]}x{size[1]} in {seconds:.1f} s "
          f"({sum(counts.values()) / seconds:.0f} images/s)")
    return counts


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__, lambda args: prepare(), argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
