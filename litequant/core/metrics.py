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


def _top_k_shared(reference: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """``int`` ``(N,)``: how many of the reference's top-k classes are in ``scores``' top-k."""
    ref, got = top_k(reference, k), top_k(scores, k)
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


def top_k_overlap(reference: np.ndarray, scores: np.ndarray, k: int = TOP_K) -> float:
    """Mean percent of the reference's top-k classes that are also in ``scores``' top-k."""
    return float(100.0 * np.mean(_top_k_shared(reference, scores, k)) / k)


def mean_kl_divergence(reference: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean over rows of KL(reference ‖ probabilities) in nats (both rows are distributions)."""
    return float(np.mean(_kl_rows(reference, probabilities)))


def sqnr_db(reference: np.ndarray, scores: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of ``scores`` against ``reference`` in dB.

    ``10 * log10(sum(reference²) / sum((reference - scores)²))``; ``inf`` when identical.
    """
    return _decibels(*_signal_noise(reference, scores))


def classification_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``top1`` and top-k accuracy (percent; k = min(5, classes - 1), key ``top<k>``, none for
    two classes, :func:`top_k_key`) and the number of images."""
    running = RunningMetrics()
    running.add(scores, labels)
    return running.classification()


def fidelity_metrics(reference: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Agreement of a variant's probabilities with the float reference's, on the same images
    (top-k overlap as ``top<k>_overlap``, as in :func:`classification_metrics`)."""
    running = RunningMetrics()
    running.add_fidelity(reference, probabilities)
    return running.fidelity()


class RunningMetrics:
    """The accuracy and fidelity metrics accumulated batch by batch, so a split of any size is
    measured with the memory of one batch: :meth:`add` (and :meth:`add_fidelity`) each batch,
    then read :meth:`classification` and :meth:`fidelity`. Counts are exact; sums ``float64``.

    The class count C is taken from the first batch (every batch must have the same); top-k
    uses k = min(5, C - 1) (:func:`top_k_size`) and is left out for two classes.
    """

    def __init__(self) -> None:
        self.classes: int | None = None
        self.images = self.top1_hits = self.top_k_hits = 0
        self.compared = self.agreeing = self.top_k_shared = 0
        self.kl_sum = self.signal = self.noise = 0.0

    def _k(self, scores: np.ndarray) -> int:
        """The top-k size, fixing the class count at the first batch."""
        classes = int(scores.shape[-1])
        if self.classes is None:
            self.classes = classes
        elif classes != self.classes:
            raise ValueError(f"a batch of {classes} classes after batches of {self.classes}")
        return top_k_size(classes)

    def add(self, scores: np.ndarray, labels: np.ndarray) -> None:
        """Add rows to the accuracy: ``scores`` ``(n, C)``, ``labels`` ``(n,)``."""
        k = self._k(scores)
        self.images += len(labels)
        self.top1_hits += int(top_k_hits(scores, labels, 1).sum())
        self.top_k_hits += int(top_k_hits(scores, labels, k).sum())

    def add_fidelity(self, reference: np.ndarray, probabilities: np.ndarray) -> None:
        """Add rows to the fidelity: the float ``reference`` probabilities ``(n, C)`` and a
        variant's ``probabilities`` ``(n, C)`` on the same images."""
        k = self._k(reference)
        self.compared += len(reference)
        self.agreeing += int(_agreeing(reference, probabilities).sum())
        self.top_k_shared += int(_top_k_shared(reference, probabilities, k).sum())
        self.kl_sum += float(np.sum(_kl_rows(reference, probabilities)))
        signal, noise = _signal_noise(reference, probabilities)
        self.signal += signal
        self.noise += noise

    def _key(self) -> str | None:
        return None if self.classes is None else top_k_key(self.classes)

    def classification(self) -> dict[str, float]:
        """``top1`` and ``top<k>`` accuracy (percent; no ``top<k>`` for two classes) and the
        number of images."""
        def percent(hits: int) -> float:
            return float(100.0 * (hits / self.images)) if self.images else float("nan")
        metrics = {"top1": percent(self.top1_hits)}
        key = self._key()
        if key is not None:
            metrics[key] = percent(self.top_k_hits)
        return {**metrics, "images": int(self.images)}

    def fidelity(self) -> dict[str, float]:
        """``agreement`` and ``top<k>_overlap`` (percent; none for two classes),
        ``kl_divergence`` (mean, nats), ``sqnr_db`` (``None`` for an exact match)."""
        n = self.compared
        metrics = {"agreement": float(100.0 * (self.agreeing / n))}
        key = self._key()
        if key is not None:
            k = top_k_size(self.classes)
            metrics[f"{key}_overlap"] = float(100.0 * (self.top_k_shared / n) / k)
        return {**metrics, "kl_divergence": float(self.kl_sum / n),
                "sqnr_db": _finite_or_none(_decibels(self.signal, self.noise))}


def _finite_or_none(value: float) -> float | None:
    """JSON has no infinity: an exact match (infinite SQNR) is recorded as ``None``."""
    return value if np.isfinite(value) else None
