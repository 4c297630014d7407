"""Stage ``benchmark_reference``: single-image latency of the external reference model.

``python -m stages.benchmark_reference`` reads ``params.yaml`` sections ``reference`` and
``benchmark`` (and ``data/export/model.json`` when ``reference.preprocessing`` is ``auto``), and
writes ``data/benchmark_reference/latency.json``: the same measurement as
``benchmark@<variant>`` (:func:`stages.benchmark.write_benchmark`) for the ``.tflite`` file at
``reference.path``, or ``status: skipped`` when it is null. The report puts it in the reference
row, beside the variants' latencies.

Imports ``ai_edge_litert`` and numpy only, never TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stages.benchmark import write_benchmark
from stages.cli import run_stage
from stages.evaluate_reference import reference_model
from stages.params import benchmark_params, load, reference_params

OUTPUT = Path("data/benchmark_reference")


def benchmark_reference(params: dict[str, Any], export_dir: Path = Path("data/export"),
                        output: Path = OUTPUT) -> dict[str, Any]:
    """Benchmark the reference model and write ``latency.json``; returns it."""
    model = reference_model(reference_params(params), export_dir)
    path, family = model if model is not None else (None, "")
    return write_benchmark("reference", path, family, benchmark_params(params), output,
                           status_without_model="skipped")


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__.split("\n\n")[0],
                     lambda args: benchmark_reference(load(args.params)), argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
