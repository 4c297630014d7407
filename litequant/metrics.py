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


def top_k_hits(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """``bool`` ``(N,)``: whether each row's label is among its ``k`` highest scores."""
    return (top_k(scores, k) == np.asarray(labels)[:, None]).any(axis=-1)


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Percent of rows whose label is among the ``k`` highest scores."""
    if len(labels) == 0:
        return float("nan")
    return float(100.0 * top_k_hits(scores, labels, k).mean())


def _agreeing(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``bool`` ``(N,)``: same top-1 class."""
    return top_k(reference, 1)[:, 0] == top_k(scores, 1)[:, 0]


def _top5_shared(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``int`` ``(N,)``: how many of the reference's top-5 classes are in ``scores``' top-5."""
    ref, got = top_k(reference, 5), top_k(scores, 5)
    return (ref[:, :, None] == got[:, None, :]).any(axis=-1).sum(axis=-1)


def _kl_rows(reference: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """``float64`` ``(N,)``: KL(reference ‖ probabilities) per row, in nats."""
    p = np.clip(reference.astype(np.float64), _EPSILON, 1.0)
    q = np.clip(probabilities.astype(np.float64), _EPSILON, 1.0)
    return np.sum(p * (np.log(p) - np.log(q)), axis=-1)


def _signal_noise(reference: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """``(sum(reference²), sum((reference - scores)²))`` in ``float64``."""
    reference = reference.astype(np.float64)
    return (float(np.sum(reference ** 2)),
            float(np.sum((reference - scores.astype(np.float64)) ** 2)))


def _decibels(signal: float, noise: float) -> float:
    return float("inf") if noise == 0.0 else float(10.0 * np.log10(signal / noise))


def top1_agreement(reference: np.ndarray, scores: np.ndarray) -> float:
    """Percent of rows where ``scores`` and ``reference`` have the same top-1 class."""
    return float(100.0 * _agreeing(reference, scores).mean())


def top5_overlap(reference: np.ndarray, scores: np.ndarray) -> float:
    """Mean percent of the reference's top-5 classes that are also in ``scores``' top-5."""
    return float(100.0 * np.mean(_top5_shared(reference, scores)) / 5.0)


def mean_kl_divergence(reference: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean over rows of KL(reference ‖ probabilities) in nats (both rows are distributions)."""
    return float(np.mean(_kl_rows(reference, probabilities)))


def sqnr_db(reference: np.ndarray, scores: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of ``scores`` against ``reference`` in dB.

    ``10 * log10(sum(reference²) / sum((reference - scores)²))``; ``inf`` when identical.
    """
    return _decibels(*_signal_noise(reference, scores))


def classification_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``top1``/``top5`` accuracy (percent) and the number of images."""
    running = RunningMetrics()
    running.add(scores, labels)
    return running.classification()


def fidelity_metrics(reference: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Agreement of a variant's probabilities with the float reference's, on the same images."""
    running = RunningMetrics()
    running.add_fidelity(reference, probabilities)
    return running.fidelity()


class RunningMetrics:
    """The accuracy and fidelity metrics accumulated batch by batch, so a split of any size is
    measured with the memory of one batch: :meth:`add` (and :meth:`add_fidelity`) each batch,
    then read :meth:`classification` and :meth:`fidelity`. Counts are exact; sums ``float64``.
    """

    def __init__(self) -> None:
        self.images = self.top1_hits = self.top5_hits = 0
        self.compared = self.agreeing = self.top5_shared = 0
        self.kl_sum = self.signal = self.noise = 0.0

    def add(self, scores: np.ndarray, labels: np.ndarray) -> None:
        """Add rows to the accuracy: ``scores`` ``(n, C)``, ``labels`` ``(n,)``."""
        self.images += len(labels)
        self.top1_hits += int(top_k_hits(scores, labels, 1).sum())
        self.top5_hits += int(top_k_hits(scores, labels, 5).sum())

    def add_fidelity(self, reference: np.ndarray, probabilities: np.ndarray) -> None:
        """Add rows to the fidelity: the float ``reference`` probabilities ``(n, C)`` and a
        variant's ``probabilities`` ``(n, C)`` on the same images."""
        self.compared += len(reference)
        self.agreeing += int(_agreeing(reference, probabilities).sum())
        self.top5_shared += int(_top5_shared(reference, probabilities).sum())
        self.kl_sum += float(np.sum(_kl_rows(reference, probabilities)))
        signal, noise = _signal_noise(reference, probabilities)
        self.signal += signal
        self.noise += noise

    def classification(self) -> dict[str, float]:
        """``top1``/``top5`` accuracy (percent) and the number of images."""
        def percent(hits: int) -> float:
            return float(100.0 * (hits / self.images)) if self.images else float("nan")
        return {"top1": percent(self.top1_hits), "top5": percent(self.top5_hits),
                "images": int(self.images)}

    def fidelity(self) -> dict[str, float]:
        """``agreement`` and ``top5_overlap`` (percent), ``kl_divergence`` (mean, nats),
        ``sqnr_db`` (``None`` for an exact match)."""
        n = self.compared
        return {"agreement": float(100.0 * (self.agreeing / n)),
                "top5_overlap": float(100.0 * (self.top5_shared / n) / 5.0),
                "kl_divergence": float(self.kl_sum / n),
                "sqnr_db": _finite_or_none(_decibels(self.signal, self.noise))}


def _finite_or_none(value: float) -> float | None:
    """JSON has no infinity: an exact match (infinite SQNR) is recorded as ``None``."""
    return value if np.isfinite(value) else None
