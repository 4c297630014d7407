"""A small interleaved latency comparison of in-memory ``.tflite`` models (what a conversion step
uses to check a latency ceiling; the benchmark stage's sessions are in
:mod:`litequant.measure.benchmarking`, which the quantize layer may not import).

Every model gets one single-threaded interpreter (or ``threads``), its input set once to the
same real-valued sample (quantized with each model's own scale/zero point) and a few untimed
invokes; then the models are invoked in turn, one invoke each per round, so a background hiccup
hits them alike. Only ``invoke`` is timed. Imports ``ai_edge_litert`` and numpy only.
"""

from __future__ import annotations

import time

import numpy as np

from litequant.core.litert import LiteRTModel, quantize

#: Untimed invokes of every model before timing.
WARMUP_RUNS = 3


def interleaved_times_ms(models: list[bytes], sample: np.ndarray, threads: int = 1,
                         min_runs: int = 40, min_seconds: float = 0.5) -> list[list[float]]:
    """Invoke times (ms) of each model, timed in interleaved rounds (round ``i`` of every
    model is at index ``i`` of its list).

    Args:
        models: ``.tflite`` models with the same input shape.
        sample: ``float32`` ``(h, w, 3)`` (or ``(1, h, w, 3)``) input in real units.
        threads: interpreter threads of every model.
        min_runs: timed invokes of each model, at least ...
        min_seconds: ... and rounds until this much wall time has passed.

    Returns:
        one list of times per model, in the order given, all of the same length.
    """
    loaded = []
    for content in models:
        model = LiteRTModel("<in memory>", threads=threads, batch_size=1,
                            model_content=content)
        batch = quantize(np.asarray(sample, np.float32).reshape(1, *sample.shape[-3:]),
                         model.input)
        for _ in range(WARMUP_RUNS):
            model.invoke_raw(batch)
        loaded.append(model)
    times: list[list[float]] = [[] for _ in models]
    started = time.perf_counter()
    while len(times[0]) < min_runs or time.perf_counter() - started < min_seconds:
        for model, spent in zip(loaded, times, strict=True):
            begin = time.perf_counter()
            model.interpreter.invoke()
            spent.append((time.perf_counter() - begin) * 1000.0)
    return times


def paired_ratio(models: tuple[bytes, bytes], sample: np.ndarray, threads: int = 1,
                 min_runs: int = 40, min_seconds: float = 0.5) -> float:
    """The median over rounds of ``time(first) / time(second)`` of two models invoked one
    after the other (:func:`interleaved_times_ms`): a pause of the machine lengthens one
    invoke of a pair, an outlier the median ignores, so the ratio of the two models' typical
    (p50) times is estimated even on a loaded machine."""
    first, second = interleaved_times_ms(list(models), sample, threads, min_runs, min_seconds)
    return float(np.median(np.asarray(first) / np.asarray(second)))
