"""Stage ``prepare``: label every image and decode, crop and resize it once per split and input
size.

Reads ``data/fetch/`` (images, ``manifest.csv``, ``fetch.json``: the source's classes) and
``data/export/model.json`` (input size, class count and ``model.labels``' label space) and writes
``data/prepare/``:

* one folder per split, ``calibration/`` and ``evaluation/``, each with

  * ``images.npy``: ``uint8`` ``(N, height, width, 3)``, RGB 0..255, central 87.5% crop,
    bilinear resize (:func:`litequant.data.images.load_resized`);
  * ``labels.npy``: ``int32`` ``(N,)`` class indices in the model's output order;
  * ``paths.txt``: the image paths relative to ``data/fetch``, one a line, in row order;

* ``classes.json``: the label space: ``kind``, class ``names`` in output order and the source's
  ``keys`` for them (:mod:`litequant.data.labels`).

A source whose classes do not fit the label space (a synset folder unknown to ImageNet, a class
missing from the label file, ``folders`` with more or fewer classes than the model's outputs)
stops here with one line, before anything is written. Images are decoded a chunk at a time and
streamed into ``images.npy`` (:class:`litequant.core.arrays.NpyWriter`), so memory does not grow
with the number of images. Every later stage (calibration and each variant's evaluation) reads these
files batch by batch and
applies the model family's preprocessing on the fly, so no image is decoded twice for the same
size.
"""

from __future__ import annotations

import time

import numpy as np

from litequant.core import atomic, layout
from litequant.core.arrays import NpyWriter
from litequant.core.cli import run_stage
from litequant.core.errors import PipelineError
from litequant.data.images import BadImageError, decode_chunks
from litequant.data.labels import label_indices, resolve


def prepare() -> dict[str, int]:
    """Write one folder per split and ``classes.json`` (see module docstring); returns the
    image count per split."""
    info = layout.read_model_info(layout.MODEL_INFO)
    size = tuple(info["input_size"])
    source = layout.read_json(layout.FETCH_INFO, "fetch")
    space = resolve(info["labels"], info["num_classes"], source["source"], source["classes"])
    # only the path and class of each image are kept (a few dozen bytes an image)
    splits: dict[str, tuple[list[str], list[str]]] = {split: ([], []) for split in layout.SPLITS}
    for row in layout.iter_manifest(layout.FETCH_MANIFEST):
        if row["split"] in splits:
            splits[row["split"]][0].append(row["path"])
            splits[row["split"]][1].append(row["class"])
    counts = {}
    begin = time.perf_counter()
    with atomic.output_folder(layout.PREPARE_DIR) as tmp:
        for split, target in layout.SPLITS.items():
            paths, classes = splits[split]
            if not paths:
                raise PipelineError(f"{layout.FETCH_MANIFEST} has no {split} images")
            labels = np.array(label_indices(space, classes), dtype=np.int32)
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
            np.save(folder / layout.SPLIT_LABELS, labels)
            (folder / layout.SPLIT_PATHS).write_text("".join(p + "\n" for p in paths), "utf-8")
            counts[split] = len(paths)
        atomic.write_json(tmp / layout.CLASSES.name, space.describe())
    seconds = time.perf_counter() - begin
    print(f"prepare: {counts['calibration']} calibration + {counts['evaluation']} evaluation "
          f"images at {size[0]}x{size[1]}, {len(space)} classes ({space.kind}) in "
          f"{seconds:.1f} s ({sum(counts.values()) / seconds:.0f} images/s)")
    return counts


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__, lambda args: prepare(), argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
