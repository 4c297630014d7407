"""Stage ``evaluate_keras``: the float Keras model on the evaluation split, the baseline row.

Reads ``data/export/model.keras`` (``saved_model/`` for a user SavedModel) + ``model.json``
and ``data/prepare/evaluation/``; writes ``data/evaluate_keras/``:

* ``probabilities.npy``: ``float32`` ``(N, classes)`` class probabilities (a single sigmoid
  output as two columns ``1 - p, p``), the reference every variant's agreement, KL divergence
  and SQNR are measured against (streamed to disk batch by batch, so memory does not grow with
  the number of images);
* ``metrics.json``: top-1/top-k accuracy (percent; ``top<k>``, k = min(5, classes - 1)) and the
  image count;
* ``predictions.npy``: ``int32`` ``(N,)``, the top-1 class of each image.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np

from litequant.core import atomic, layout
from litequant.core.arrays import NpyWriter
from litequant.core.cli import run_stage
from litequant.core.metrics import RunningMetrics
from litequant.model.models import keras_probabilities, load_exported


def evaluate_keras() -> dict[str, Any]:
    """Evaluate the float Keras model; returns ``metrics.json``."""
    info = layout.read_model_info(layout.MODEL_INFO)
    images, labels = layout.load_split(layout.EVALUATION_SPLIT)
    model = load_exported(info, layout.KERAS_MODEL, layout.SAVED_MODEL)
    running = RunningMetrics()
    predictions = np.empty(len(labels), dtype=np.int32)
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
            rows = slice(writer.rows, writer.rows + len(probabilities))
            running.add(probabilities, labels[rows])
            predictions[rows] = np.argmax(probabilities, axis=-1)
            writer.write(probabilities)
        stack.close()  # checks every row was written before the folder is swapped in
        metrics = running.classification()
        atomic.write_json(tmp / layout.KERAS_METRICS.name, metrics)
        np.save(tmp / layout.KERAS_PREDICTIONS.name, predictions)
    seconds = time.perf_counter() - begin
    top_k = "".join(f", top-{key[3:]} {value:.2f}%" for key, value in metrics.items()
                    if key.startswith("top") and key != "top1")
    print(f"evaluate_keras: top-1 {metrics['top1']:.2f}%{top_k} on {metrics['images']} images "
          f"({metrics['images'] / seconds:.0f} images/s)")
    return metrics


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__, lambda args: evaluate_keras(), argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
