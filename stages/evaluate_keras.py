"""Stage ``evaluate_keras``: the float Keras model on the evaluation split, the baseline row.

Reads ``data/export/model.keras`` (``saved_model/`` for a user SavedModel) + ``model.json``
and ``data/prepare/evaluation.npz``; writes ``data/evaluate_keras/``:

* ``probabilities.npy``: ``float32`` ``(N, 1000)`` softmax outputs, the reference every
  variant's agreement, KL divergence and SQNR are measured against;
* ``metrics.json``: top-1/top-5 accuracy (percent) and the image count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stages import atomic
from stages.cli import progress, run_stage
from stages.errors import PipelineError
from stages.export import read_model_info
from stages.metrics import classification_metrics, softmax
from stages.prepare import load_split
from stages.preprocessing import preprocess

OUTPUT = Path("data/evaluate_keras")
BATCH_SIZE = 32


def keras_probabilities(model, images: np.ndarray, family: str, output_kind: str) -> np.ndarray:
    """Run the Keras ``model`` on ``uint8`` images ``(N, h, w, 3)``; returns ``(N, C)`` probs."""
    batches = []
    starts = range(0, len(images), BATCH_SIZE)
    for start in progress(starts, "keras", total=len(starts)):
        x = preprocess(images[start:start + BATCH_SIZE], family)
        scores = model(x, training=False)
        if isinstance(scores, dict):  # a SavedModel signature names its one output
            (scores,) = scores.values()
        batches.append(np.asarray(scores, dtype=np.float32))
    scores = np.concatenate(batches, axis=0)
    return scores if output_kind == "probabilities" else softmax(scores)


def evaluate_keras(export_dir: Path = Path("data/export"),
                   prepare_dir: Path = Path("data/prepare"),
                   output: Path = OUTPUT) -> dict[str, Any]:
    """Evaluate the float Keras model; returns ``metrics.json``."""
    import keras

    info = read_model_info(export_dir)
    images, labels = load_split("evaluation", prepare_dir)
    saved_model = info.get("format") == "saved_model"  # a user SavedModel: run it as it is
    path = Path(export_dir) / ("saved_model" if saved_model else "model.keras")
    if not path.exists():
        raise PipelineError(f"{path} not found: run the export stage first")
    if saved_model:
        model = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
    else:
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    probabilities = keras_probabilities(model, images, info["preprocessing"], info["output"])
    metrics = classification_metrics(probabilities, labels)
    with atomic.output_folder(output) as tmp:
        np.save(tmp / "probabilities.npy", probabilities)
        atomic.write_json(tmp / "metrics.json", metrics)
    print(f"evaluate_keras: top-1 {metrics['top1']:.2f}%, top-5 {metrics['top5']:.2f}% "
          f"on {metrics['images']} images")
    return metrics


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__, lambda args: evaluate_keras(), argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
