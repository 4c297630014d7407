"""Stage ``benchmark@<variant>``: file size and single-image latency of one LiteRT variant.

``python -m stages.benchmark <variant>`` reads ``params.yaml`` section ``benchmark``,
``data/convert/<variant>/`` and ``data/export/model.json``, and writes
``data/benchmark/<variant>/latency.json``: the file size in bytes and, for each thread count in
``benchmark.threads``, the latency of one invoke on a batch of one image (input set once; warm-up
runs first, then timed invokes until both ``min_runs`` and ``min_seconds`` are reached): mean,
p50, p90, std in milliseconds and the count. The machine (CPU model, cores) and library versions
are recorded so two runs can be compared.

Imports ``ai_edge_litert`` and numpy only, never TensorFlow.
"""

from __future__ import annotations

import argparse
from typing import Any

from litequant import layout
from litequant.benchmarking import write_benchmark
from litequant.cli import run_stage
from litequant.errors import PipelineError
from litequant.params import BenchmarkParams, read_section
from litequant.variants import VARIANTS


def benchmark(variant: str, params: BenchmarkParams) -> dict[str, Any]:
    """Benchmark one variant and write ``data/benchmark/<variant>/latency.json``."""
    model_path, family = None, ""
    if layout.read_conversion(layout.convert_dir(variant))["status"] == "ok":
        model_path = layout.model_file(variant)
        if not model_path.is_file():
            raise PipelineError(f"{model_path} not found: run dvc repro convert@{variant}")
        family = layout.read_model_info(layout.MODEL_INFO)["preprocessing"]
    note = VARIANTS[variant].kernel_note if variant in VARIANTS else ""
    return write_benchmark(variant, model_path, family, params, layout.benchmark_dir(variant),
                           note=note)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("variant", help="variant to benchmark (a key of convert.variants)")


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__, lambda args: benchmark(
        args.variant, read_section(BenchmarkParams, args.params)), configure=_arguments,
        argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
