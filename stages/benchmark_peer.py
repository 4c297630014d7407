"""Stage ``benchmark_peer``: single-image latency of the peer model (``peer.path``).

``python -m stages.benchmark_peer`` reads ``params.yaml`` sections ``peer`` and ``benchmark`` and
``data/export/model.json``, and writes ``data/benchmark_peer/latency.json``: the same measurement
as ``benchmark@<variant>`` for the ``.tflite`` file at ``peer.path``, or ``status: skipped`` when
it is null. The report puts it in the peer row, beside the variants' latencies.

Imports ``ai_edge_litert`` and numpy only, never TensorFlow.
"""

from __future__ import annotations

from typing import Any

from litequant import layout
from litequant.benchmarking import write_benchmark
from litequant.cli import run_stage
from litequant.params import BenchmarkParams, PeerParams, load, section
from litequant.peer import peer_model


def benchmark_peer(params: PeerParams, benchmark: BenchmarkParams) -> dict[str, Any]:
    """Benchmark the peer model and write ``latency.json``; returns it."""
    info = layout.read_model_info(layout.MODEL_INFO)
    model = peer_model(params, info["preprocessing"])
    path, family = model if model is not None else (None, "")
    return write_benchmark("peer", path, family, benchmark, layout.PEER_BENCHMARK_DIR,
                           status_without_model="skipped")


def _run(params_path: str) -> dict[str, Any]:
    params = load(params_path)
    return benchmark_peer(section(params, PeerParams, params_path),
                          section(params, BenchmarkParams, params_path))


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__.split("\n\n")[0], lambda args: _run(args.params), argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
