"""Accuracy and fidelity metrics on classifier outputs (numpy only).

All functions take ``scores`` as ``float`` arrays ``(N, C)`` (probabilities or logits, one row
per image) and ``labels`` as ``int`` arrays ``(N,)`` of class indices. Accuracies and agreements
are returned in percent (0..100).
"""

from __future__ import annotations

import numpy as np

_EPSILON = 1e-12
#: Top-k metrics use k = min(TOP_K, classes - 1).
TOP_K = 5


def top_k_size(classes: int) -> int:
    """The k of the top-k metrics for ``classes`` classes: ``min(5, classes - 1)``."""
    return max(1, min(TOP_K, classes - 1))


def top_k_key(classes: int) -> str | None:
    """The metric name of top-k accuracy (``top5``, ``top2`` ...); ``None`` when k is 1 (two
    classes), where top-k accuracy is top-1 and is not repeated. Top-k overlap is
    ``<key>_overlap``."""
    k = top_k_size(classes)
    return None if k == 1 else f"top{k}"


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, C)`` logits → probabilities that sum to 1 per row."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted.astype(np.float64))
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function, ``float32`` in 0..1."""
    return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)


def class_probabilities(scores: np.ndarray, output_kind: str) -> np.ndarray:
    """A float model's outputs ``(N, C)`` → class probabilities ``(N, C)``.

    ``probabilities`` are kept as they are and ``logits`` softmaxed; a single output ``(N, 1)``
    (a sigmoid probability ``p``, or its logit) becomes two classes ``(N, 2)``: column 0 is
    ``1 - p``, column 1 is ``p`` (Keras' binary convention: ``p`` is the probability of class 1).
    """
    if scores.shape[-1] == 1:
        p = np.clip(scores if output_kind == "probabilities" else sigmoid(scores), 0.0, 1.0)
        return np.concatenate([1.0 - p, p], axis=-1).astype(np.float32)
    return scores if output_kind == "probabilities" else softmax(scores)


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


def top_k_overlap(reference: np.ndarray, scores: np.ndarray, k: int = 5) -> float:
    """Mean percent of the reference's top-k classes that are also in ``scores``' top-k."""
    ref, got = top_k(reference, k), top_k(scores, k)
    shared = (ref[:, :, None] == got[:, None, :]).any(axis=-1).sum(axis=-1)
    return float(100.0 * np.mean(shared) / k)


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
    """``top1`` and top-k accuracy (percent; k = min(5, classes - 1), key ``top<k>``, none for
    two classes, :func:`litequant.labels.top_k_key`) and the number of images."""
    metrics = {"top1": top_k_accuracy(scores, labels, 1)}
    key = top_k_key(scores.shape[-1])
    if key is not None:
        metrics[key] = top_k_accuracy(scores, labels, top_k_size(scores.shape[-1]))
    return {**metrics, "images": int(len(labels))}


def fidelity_metrics(reference: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Agreement of a variant's probabilities with the float reference's, on the same images
    (top-k overlap as ``top<k>_overlap``, as in :func:`classification_metrics`)."""
    metrics = {"agreement": top1_agreement(reference, probabilities)}
    key = top_k_key(reference.shape[-1])
    if key is not None:
        metrics[f"{key}_overlap"] = top_k_overlap(reference, probabilities,
                                                     top_k_size(reference.shape[-1]))
    return {**metrics, "kl_divergence": mean_kl_divergence(reference, probabilities),
            "sqnr_db": _finite_or_none(sqnr_db(reference, probabilities))}


def _finite_or_none(value: float) -> float | None:
    """JSON has no infinity: an exact match (infinite SQNR) is recorded as ``None``."""
    return value if np.isfinite(value) else None
