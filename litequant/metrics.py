"""Accuracy and fidelity metrics on classifier outputs (numpy only).

All functions take ``scores`` as ``float`` arrays ``(N, C)`` (probabilities or logits, one row
per image) and ``labels`` as ``int`` arrays ``(N,)`` of class indices. Accuracies and agreements
are returned in percent (0..100).
"""

from __future__ import annotations

import numpy as np

_EPSILON = 1e-12


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, C)`` logits → probabilities that sum to 1 per row."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted.astype(np.float64))
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices ``(N, k)`` of the ``k`` highest scores per row, best first (ties: lower index)."""
    if k == 1:  # argmax returns the first of tied maxima: the same as the stable sort
        return np.argmax(scores, axis=-1)[:, None]
    order = np.argsort(-scores, axis=-1, kind="stable")
    return order[:, :k]


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Percent of rows whose label is among the ``k`` highest scores."""
    if len(labels) == 0:
        return float("nan")
    hits = (top_k(scores, k) == np.asarray(labels)[:, None]).any(axis=-1)
    return float(100.0 * hits.mean())


def top1_agreement(reference: np.ndarray, scores: np.ndarray) -> float:
    """Percent of rows where ``scores`` and ``reference`` have the same top-1 class."""
    return float(100.0 * (top_k(reference, 1) == top_k(scores, 1)).mean())


def top5_overlap(reference: np.ndarray, scores: np.ndarray) -> float:
    """Mean percent of the reference's top-5 classes that are also in ``scores``' top-5."""
    ref, got = top_k(reference, 5), top_k(scores, 5)
    shared = (ref[:, :, None] == got[:, None, :]).any(axis=-1).sum(axis=-1)
    return float(100.0 * np.mean(shared) / 5.0)


def mean_kl_divergence(reference: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean over rows of KL(reference ‖ probabilities) in nats (both rows are distributions)."""
    p = np.clip(reference.astype(np.float64), _EPSILON, 1.0)
    q = np.clip(probabilities.astype(np.float64), _EPSILON, 1.0)
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1)))


def sqnr_db(reference: np.ndarray, scores: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of ``scores`` against ``reference`` in dB.

    ``10 * log10(sum(reference²) / sum((reference - scores)²))``; ``inf`` when identical.
    """
    reference = reference.astype(np.float64)
    noise = float(np.sum((reference - scores.astype(np.float64)) ** 2))
    signal = float(np.sum(reference ** 2))
    if noise == 0.0:
        return float("inf")
    return float(10.0 * np.log10(signal / noise))


def classification_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``top1``/``top5`` accuracy (percent) and the number of images."""
    return {"top1": top_k_accuracy(scores, labels, 1), "top5": top_k_accuracy(scores, labels, 5),
            "images": int(len(labels))}


def fidelity_metrics(reference: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Agreement of a variant's probabilities with the float reference's, on the same images."""
    return {"agreement": top1_agreement(reference, probabilities),
            "top5_overlap": top5_overlap(reference, probabilities),
            "kl_divergence": mean_kl_divergence(reference, probabilities),
            "sqnr_db": _finite_or_none(sqnr_db(reference, probabilities))}


def _finite_or_none(value: float) -> float | None:
    """JSON has no infinity: an exact match (infinite SQNR) is recorded as ``None``."""
    return value if np.isfinite(value) else None
