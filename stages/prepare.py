"""Stage ``prepare``: label every image and decode, crop and resize it once per split and input
size.

Reads ``data/fetch/`` (images, ``manifest.csv``, ``fetch.json``: the source's classes) and
``data/export/model.json`` (input size, class count and ``model.labels``' label space) and writes
``data/prepare/``:

* ``calibration.npz`` and ``evaluation.npz``, each with

  * ``images``: ``uint8`` ``(N, height, width, 3)``, RGB 0..255, central 87.5% crop, bilinear
    resize (:func:`litequant.images.load_resized`);
  * ``labels``: ``int32`` ``(N,)`` class indices in the model's output order;
  * ``paths``: ``(N,)`` strings, the image paths relative to ``data/fetch``;

* ``classes.json``: the label space: ``kind``, class ``names`` in output order and the source's
  ``keys`` for them (:mod:`litequant.labels`).

A source whose classes do not fit the label space (a synset folder unknown to ImageNet, a class
missing from the label file, ``folders`` with more or fewer classes than the model's outputs)
stops here with one line, before anything is written. Every later stage reuses these arrays and
applies the model family's preprocessing on the fly, so no image is decoded twice for the same
size.
"""

from __future__ import annotations

import numpy as np

from litequant import atomic, layout
from litequant.cli import run_stage
from litequant.errors import PipelineError
from litequant.images import BadImageError, decode_split
from litequant.labels import label_indices, resolve


def prepare() -> dict[str, int]:
    """Write one ``.npz`` per split and ``classes.json`` (see module docstring); returns the
    image count per split."""
    info = layout.read_model_info(layout.MODEL_INFO)
    size = tuple(info["input_size"])
    source = layout.read_json(layout.FETCH_INFO, "fetch")
    space = resolve(info["labels"], info["num_classes"], source["source"], source["classes"])
    rows = layout.read_manifest(layout.FETCH_MANIFEST)
    counts = {}
    with atomic.output_folder(layout.PREPARE_DIR) as tmp:
        for split, target in layout.SPLITS.items():
            chosen = [row for row in rows if row["split"] == split]
            if not chosen:
                raise PipelineError(f"{layout.FETCH_MANIFEST} has no {split} images")
            labels = np.array(label_indices(space, [row["class"] for row in chosen]),
                              dtype=np.int32)
            try:
                images = decode_split([layout.FETCH_DIR / row["path"] for row in chosen], size,
                                      f"decode {split}")
            except BadImageError as error:
                raise PipelineError(f"prepare: {error} (it was decodable when fetched; "
                                    "re-run dvc repro fetch)") from None
            paths = np.array([row["path"] for row in chosen])
            atomic.write_npz(tmp / target.name, images=images, labels=labels, paths=paths)
            counts[split] = len(chosen)
        atomic.write_json(tmp / layout.CLASSES.name, space.describe())
    print(f"prepare: {counts['calibration']} calibration + {counts['evaluation']} evaluation "
          f"images at {size[0]}x{size[1]}, {len(space)} classes ({space.kind})")
    return counts


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__, lambda args: prepare(), argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
