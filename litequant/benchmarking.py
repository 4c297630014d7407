"""Latency of a ``.tflite`` model: one image per invoke, per thread count, after warm-up.

The input is set once and only ``invoke`` is timed, as TFLite's own ``benchmark_model`` does;
timed invokes run until both ``min_runs`` and ``min_seconds`` are reached. The record holds mean,
p50, p90, std (ms) and the count, plus the CPU model, the core count and the library versions,
so two runs can be compared. Imports ``ai_edge_litert`` and numpy only, never TensorFlow.
"""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from litequant import atomic
from litequant.litert import LiteRTModel, pixels_to_input
from litequant.params import BenchmarkParams


def machine_info() -> dict[str, Any]:
    """CPU model, core count, Python/ai-edge-litert/numpy versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "ai_edge_litert": version("ai-edge-litert"), "numpy": version("numpy")}


def time_invokes(model: LiteRTModel, batch: np.ndarray, warmup_runs: int, min_runs: int,
                 min_seconds: float) -> dict[str, float]:
    """Latency statistics (ms) of the interpreter's ``invoke`` on ``batch``, after warm-up runs.

    The input is set once and only ``invoke`` is timed, as TFLite's own ``benchmark_model`` does.
    Timed runs continue until at least ``min_runs`` runs and ``min_seconds`` seconds.
    """
    model.invoke_raw(batch)  # allocates for the batch's shape and sets the input
    invoke = model.interpreter.invoke
    for _ in range(warmup_runs):
        invoke()
    times = []
    started = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - started < min_seconds:
        begin = time.perf_counter()
        invoke()
        times.append((time.perf_counter() - begin) * 1000.0)
    values = np.array(times)
    return {"mean_ms": float(values.mean()), "p50_ms": float(np.percentile(values, 50)),
            "p90_ms": float(np.percentile(values, 90)), "std_ms": float(values.std()),
            "runs": int(len(values))}


def benchmark_model(model_path: Path, family: str, settings: BenchmarkParams
                    ) -> dict[str, Any]:
    """Latency of ``model_path`` per thread count on one fixed pseudo-random image."""
    latency = {}
    for threads in settings.threads:
        model = LiteRTModel(model_path, threads=threads, batch_size=1)
        height, width = model.image_size
        pixels = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
        batch = pixels_to_input(pixels, model.input, family)
        latency[str(threads)] = time_invokes(model, batch, settings.warmup_runs,
                                             settings.min_runs, settings.min_seconds)
    return latency


def write_benchmark(name: str, model_path: Path | None, family: str,
                    settings: BenchmarkParams, folder: Path, status_without_model: str = "failed",
                    note: str = "") -> dict[str, Any]:
    """Measure ``model_path`` and write ``<folder>/latency.json``; returns what was written.

    ``model_path`` None records ``status_without_model`` (a failed conversion, no peer model)
    with the machine facts and no latency.
    """
    result: dict[str, Any] = {"variant": name, "machine": machine_info(), "note": note}
    if model_path is None:
        result.update(status=status_without_model)
    else:
        result.update(status="ok", size_bytes=model_path.stat().st_size,
                      latency=benchmark_model(model_path, family, settings))
        shown = ", ".join(f"{t} thread(s) p50 {v['p50_ms']:.2f} ms"
                          for t, v in result["latency"].items())
        print(f"benchmark: {name}: {result['size_bytes']:,} bytes, {shown}")
    with atomic.output_folder(folder) as tmp:
        atomic.write_json(tmp / "latency.json", result)
    return result
