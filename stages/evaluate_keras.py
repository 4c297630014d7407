"""Stage ``evaluate_keras``: the float Keras model on the evaluation split, the baseline row.

Reads ``data/export/model.keras`` (``saved_model/`` for a user SavedModel) + ``model.json``
and ``data/prepare/evaluation/``; writes ``data/evaluate_keras/``:

* ``probabilities.npy``: ``float32`` ``(N, 1000)`` softmax outputs, the reference every
  variant's agreement, KL divergence and SQNR are measured against (streamed to disk batch by
  batch, so memory does not grow with the number of images);
* ``metrics.json``: top-1/top-5 accuracy (percent) and the image count.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np

from litequant import atomic, layout
from litequant.arrays import NpyWriter
from litequant.cli import run_stage
from litequant.metrics import RunningMetrics
from litequant.models import keras_probabilities, load_exported


def evaluate_keras() -> dict[str, Any]:
    """Evaluate the float Keras model; returns ``metrics.json``."""
    info = layout.read_model_info(layout.MODEL_INFO)
    images, labels = layout.load_split(layout.EVALUATION_SPLIT)
    model = load_exported(info, layout.KERAS_MODEL, layout.SAVED_MODEL)
    running = RunningMetrics()
    begin = time.perf_counter()
    with atomic.output_folder(layout.KERAS_EVALUATION_DIR) as tmp, \
            contextlib.ExitStack() as stack:
        writer = None
        for probabilities in keras_probabilities(model, images, info["preprocessing"],
                                                 info["output"]):
            if writer is None:  # the number of classes is known from the first batch
                writer = stack.enter_context(NpyWriter(
                    tmp / layout.FLOAT_PROBABILITIES.name,
                    (len(images), probabilities.shape[1]), np.float32))
            running.add(probabilities, labels[writer.rows:writer.rows + len(probabilities)])
            writer.write(probabilities)
        stack.close()  # checks every row was written before the folder is swapped in
        metrics = running.classification()
        atomic.write_json(tmp / layout.KERAS_METRICS.name, metrics)
    seconds = time.perf_counter() - begin
    print(f"evaluate_keras: top-1 {metrics['top1']:.2f}%, top-5 {metrics['top5']:.2f}% "
          f"on {metrics['images']} images ({metrics['images'] / seconds:.0f} images/s)")
    return metrics


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__, lambda args: evaluate_keras(), argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
