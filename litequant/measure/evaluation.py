"""One ``.tflite`` classifier on the evaluation split: accuracy against the labels and fidelity
against the float Keras model's probabilities on the same images. Imports ``ai_edge_litert`` and
numpy only, never TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from litequant.core.arrays import NpyRows
from litequant.core.errors import PipelineError
from litequant.core.litert import predict_chunks
from litequant.core.metrics import RunningMetrics, class_probabilities
from litequant.core.quiet import progress_counter


def as_probabilities(scores: np.ndarray, output_kind: str) -> np.ndarray:
    """Dequantized outputs ``(N, C)`` → probabilities ``(N, C)`` that sum to 1 per row.

    ``output_kind`` is the float model's (``model.json``): ``probabilities`` outputs are clipped
    at 0 and renormalised (quantized softmax rows do not sum exactly to 1); ``logits`` are
    softmaxed; a single sigmoid output (clipped to 0..1) becomes ``(1 - p, p)``
    (:func:`litequant.core.metrics.class_probabilities`).
    """
    if output_kind == "logits" or scores.shape[-1] == 1:
        return class_probabilities(scores, output_kind)
    clipped = np.clip(scores, 0.0, None)
    sums = clipped.sum(axis=-1, keepdims=True)
    uniform = np.full_like(clipped, 1.0 / clipped.shape[-1])
    return np.where(sums > 0, clipped / np.where(sums > 0, sums, 1.0), uniform)


def evaluate_model(model_path: Path, images: np.ndarray | NpyRows, labels: np.ndarray,
                   float_probabilities: np.ndarray | NpyRows, family: str, output_kind: str,
                   workers: int, batch_size: int, label_offset: int = 0
                   ) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics and top-1 predictions of one ``.tflite`` model, measured chunk by chunk (memory
    independent of ``N`` but for the ``(N,)`` predictions).

    Args:
        model_path: the ``.tflite`` file.
        images: ``uint8`` ``(N, h, w, 3)`` RGB 0..255 (the prepared evaluation split, read by
            row ranges).
        labels: ``int32`` ``(N,)`` class indices.
        float_probabilities: ``float32`` ``(N, C)``, the float Keras model on the same images
            (read by the same row ranges).
        family: preprocessing family of the model's float input range.
        output_kind: ``probabilities`` or ``logits`` (see :func:`as_probabilities`).
        workers: worker processes (one single-threaded interpreter each).
        batch_size: images per invoke (models with a dynamic batch dimension).
        label_offset: leading outputs to drop (e.g. 1 for a ``background`` class at index 0).

    Returns:
        The metrics: ``top1``, ``top<k>``, ``images`` and ``agreement``, ``top<k>_overlap``,
        ``kl_divergence``, ``sqnr_db`` (percentages in 0..100; k = min(5, classes - 1), see
        :func:`litequant.core.metrics.classification_metrics`), and the predicted class of each
        image, ``int32`` ``(N,)``.
    """
    running = RunningMetrics()
    classes = float_probabilities.shape[1]
    predictions = np.empty(len(labels), dtype=np.int32)
    pending: dict[int, np.ndarray] = {}  # chunks that finished before an earlier one
    done = 0
    with progress_counter(f"evaluate {Path(model_path).parent.name}", len(labels)) as update:
        for start, scores in predict_chunks(model_path, images, family, workers, batch_size):
            pending[start] = scores
            update(len(scores))
            while done in pending:  # in row order, so the float sums are reproducible
                scores = pending.pop(done)[:, label_offset:]
                probabilities = as_probabilities(scores, output_kind)
                if probabilities.shape[1] != classes:
                    raise PipelineError(f"{model_path}: {scores.shape[1]} outputs after "
                                        f"label_offset {label_offset}, but the label space "
                                        f"has {classes} classes")
                stop = done + len(scores)
                running.add(probabilities, labels[done:stop])
                running.add_fidelity(float_probabilities[done:stop], probabilities)
                predictions[done:stop] = np.argmax(probabilities, axis=-1)
                done = stop
    return {**running.classification(), **running.fidelity()}, predictions
