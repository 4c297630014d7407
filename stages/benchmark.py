"""Stage ``benchmark@<variant>``: file size and single-image latency of one LiteRT variant.

``python -m stages.benchmark <variant>`` reads ``params.yaml`` section ``benchmark`` and
``data/convert/<variant>/``, and writes ``data/benchmark/<variant>/latency.json``: the file size
in bytes and, for each thread count in ``benchmark.threads``, the latency of one invoke on a
batch of one image (input set once; warm-up runs first, then timed invokes until both
``min_runs`` and ``min_seconds`` are reached): mean, p50, p90, std in milliseconds and the
count. The machine (CPU model, cores) and library versions are recorded so two runs can be
compared.

Imports ``ai_edge_litert`` and numpy only, never TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from stages import atomic
from stages.cli import run_stage
from stages.errors import PipelineError
from stages.evaluate import read_conversion
from stages.export import read_model_info
from stages.litert import LiteRTModel, pixels_to_input
from stages.params import BenchmarkParams, benchmark_params, check_variant, load

OUTPUT = Path("data/benchmark")

#: Variants whose kernels are reference (unoptimised) implementations on CPU.
REFERENCE_KERNEL_VARIANTS = {"int16x8": "int16x8 ops run on TFLite reference kernels "
                                        "(no optimised CPU implementation): expect it to be "
                                        "tens of times slower"}


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

    ``model_path`` None records ``status_without_model`` (a failed conversion, a skipped
    reference) with the machine facts and no latency.
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


def benchmark(variant: str, params: dict[str, Any], output_root: Path = OUTPUT
              ) -> dict[str, Any]:
    """Benchmark one variant and write ``data/benchmark/<variant>/latency.json``."""
    check_variant(params, variant)
    settings = benchmark_params(params)
    model_path, family = None, ""
    if read_conversion(variant)["status"] == "ok":
        model_path = Path("data/convert") / variant / "model.tflite"
        if not model_path.is_file():
            raise PipelineError(f"{model_path} not found: run dvc repro convert@{variant}")
        family = read_model_info()["preprocessing"]
    return write_benchmark(variant, model_path, family, settings, output_root / variant,
                           note=REFERENCE_KERNEL_VARIANTS.get(variant, ""))


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("variant", help="variant to benchmark (a key of convert.variants)")


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__,
                     lambda args: benchmark(args.variant, load(args.params)),
                     configure=_arguments, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
