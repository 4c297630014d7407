"""Stage ``benchmark``: file size, single-image latency, runtime memory and start-up time of every
variant and the peer model, measured in one session on one device.

``python -m stages.benchmark`` reads ``params.yaml`` sections ``benchmark``, ``convert.variants``
(which variants) and ``peer`` (``path``, ``preprocessing``), every ``data/convert/<variant>/`` and
``data/export/model.json``, and writes ``data/benchmark/latency.json``: one session record (id,
UTC start and end, the ``device`` it ran on: kind, host name, CPU model, cores, runtime and
Python versions; settings; the load of other processes) and, per model (each converted variant,
then ``peer`` when ``peer.path`` is set), its ``runtime`` figures (peak resident-set growth,
init and first-invoke time of a fresh process, 1 thread) and, per thread count of
``benchmark.threads``, the latency of one invoke on a batch of one image: mean, p50, p90, std in
milliseconds and the count (:mod:`litequant.measure.benchmarking`: rounds over all models, so a
background hiccup hits them all). ``benchmark.device: ssh`` runs the session on the machine
``benchmark.ssh`` names (:mod:`litequant.measure.devices`). A variant whose conversion failed is
recorded as ``failed``. Because every model is measured together, re-measuring one re-measures
all: speed-ups are only ever taken within one session.

Imports ``ai_edge_litert`` and numpy only, never TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litequant.core import atomic, layout
from litequant.core.cli import run_stage
from litequant.core.errors import PipelineError
from litequant.core.params import BenchmarkParams, PeerParams, load, section
from litequant.measure.benchmarking import PEER, describe, measure_session
from litequant.measure.peer import peer_model
from litequant.quantize.registry import VARIANTS, ConvertParams


def benchmark(variants: list[str], peer: PeerParams, params: BenchmarkParams) -> dict[str, Any]:
    """Measure ``variants`` (and the peer model) in one session; write and return the record."""
    family = layout.read_model_info(layout.MODEL_INFO)["preprocessing"]
    models: dict[str, tuple[Path, str] | None] = {}
    for variant in variants:
        models[variant] = None
        if layout.read_conversion(layout.convert_dir(variant))["status"] == "ok":
            path = layout.model_file(variant)
            if not path.is_file():
                raise PipelineError(f"{path} not found: run dvc repro convert@{variant}")
            models[variant] = (path, family)
    models[PEER] = peer_model(peer, family)
    notes = {v: VARIANTS[v].kernel_note for v in variants if v in VARIANTS}
    document = measure_session(models, params, notes)
    atomic.write_json(layout.BENCHMARK_LATENCY, document)
    print(describe(document))
    return document


def _run(params_path: str) -> dict[str, Any]:
    params = load(params_path)
    return benchmark(section(params, ConvertParams, params_path).built,
                     section(params, PeerParams, params_path),
                     section(params, BenchmarkParams, params_path))


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__.split("\n\n")[0], lambda args: _run(args.params), argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
