"""One ``.tflite`` classifier on the evaluation split: accuracy against the labels and fidelity
against the float Keras model's probabilities on the same images. Imports ``ai_edge_litert`` and
numpy only, never TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from litequant.errors import PipelineError
from litequant.litert import predict_parallel
from litequant.metrics import class_probabilities, classification_metrics, fidelity_metrics


def as_probabilities(scores: np.ndarray, output_kind: str) -> np.ndarray:
    """Dequantized outputs ``(N, C)`` → probabilities ``(N, C)`` that sum to 1 per row.

    ``output_kind`` is the float model's (``model.json``): ``probabilities`` outputs are clipped
    at 0 and renormalised (quantized softmax rows do not sum exactly to 1); ``logits`` are
    softmaxed; a single sigmoid output (clipped to 0..1) becomes ``(1 - p, p)``
    (:func:`litequant.metrics.class_probabilities`).
    """
    if output_kind == "logits" or scores.shape[-1] == 1:
        return class_probabilities(scores, output_kind)
    clipped = np.clip(scores, 0.0, None)
    sums = clipped.sum(axis=-1, keepdims=True)
    uniform = np.full_like(clipped, 1.0 / clipped.shape[-1])
    return np.where(sums > 0, clipped / np.where(sums > 0, sums, 1.0), uniform)


def evaluate_model(model_path: Path, images: np.ndarray, labels: np.ndarray,
                   float_probabilities: np.ndarray, family: str, output_kind: str, workers: int,
                   batch_size: int, label_offset: int = 0
                   ) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics and top-1 predictions of one ``.tflite`` model.

    Args:
        model_path: the ``.tflite`` file.
        images: ``uint8`` ``(N, h, w, 3)`` RGB 0..255 (the prepared evaluation split).
        labels: ``int32`` ``(N,)`` class indices.
        float_probabilities: ``float32`` ``(N, C)``, the float Keras model on the same images.
        family: preprocessing family of the model's float input range.
        output_kind: ``probabilities`` or ``logits`` (see :func:`as_probabilities`).
        workers: worker processes (one single-threaded interpreter each).
        batch_size: images per invoke (models with a dynamic batch dimension).
        label_offset: leading outputs to drop (e.g. 1 for a ``background`` class at index 0).

    Returns:
        The metrics: ``top1``, ``top<k>``, ``images`` and ``agreement``, ``top<k>_overlap``,
        ``kl_divergence``, ``sqnr_db`` (percentages in 0..100; k = min(5, classes - 1), see
        :func:`litequant.metrics.classification_metrics`), and the predicted class of each
        image, ``int32`` ``(N,)``.
    """
    scores = predict_parallel(model_path, images, family, workers, batch_size)
    scores = scores[:, label_offset:]
    probabilities = as_probabilities(scores, output_kind)
    if probabilities.shape[1] != float_probabilities.shape[1]:
        raise PipelineError(f"{model_path}: {scores.shape[1]} outputs after label_offset "
                            f"{label_offset}, but the label space has "
                            f"{float_probabilities.shape[1]} classes")
    metrics = {**classification_metrics(probabilities, labels),
               **fidelity_metrics(float_probabilities, probabilities)}
    return metrics, np.argmax(probabilities, axis=-1).astype(np.int32)
