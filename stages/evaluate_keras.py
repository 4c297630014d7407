"""Stage ``evaluate_keras``: the float Keras model on the evaluation split, the baseline row.

Reads ``data/export/model.keras`` (``saved_model/`` for a user SavedModel) + ``model.json``
and ``data/prepare/evaluation.npz``; writes ``data/evaluate_keras/``:

* ``probabilities.npy``: ``float32`` ``(N, 1000)`` softmax outputs, the reference every
  variant's agreement, KL divergence and SQNR are measured against;
* ``metrics.json``: top-1/top-5 accuracy (percent) and the image count.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from litequant import atomic, layout
from litequant.cli import run_stage
from litequant.metrics import classification_metrics
from litequant.models import keras_probabilities, load_exported


def evaluate_keras() -> dict[str, Any]:
    """Evaluate the float Keras model; returns ``metrics.json``."""
    info = layout.read_model_info(layout.MODEL_INFO)
    images, labels = layout.load_split(layout.EVALUATION_SPLIT)
    model = load_exported(info, layout.KERAS_MODEL, layout.SAVED_MODEL)
    probabilities = keras_probabilities(model, images, info["preprocessing"], info["output"])
    metrics = classification_metrics(probabilities, labels)
    with atomic.output_folder(layout.KERAS_EVALUATION_DIR) as tmp:
        np.save(tmp / layout.FLOAT_PROBABILITIES.name, probabilities)
        atomic.write_json(tmp / layout.KERAS_METRICS.name, metrics)
    print(f"evaluate_keras: top-1 {metrics['top1']:.2f}%, top-5 {metrics['top5']:.2f}% "
          f"on {metrics['images']} images")
    return metrics


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__, lambda args: evaluate_keras(), argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
