"""Latency, memory and start-up time of ``.tflite`` models, all measured in one session on one
device.

The session runs :mod:`litequant.measure.device_runner`, one standalone file, on the device that
``benchmark.device`` names (this machine, or a target over SSH: :mod:`litequant.measure.devices`).
It first measures each model's runtime figures in fresh processes (peak resident-set growth,
init = interpreter creation + tensor allocation, first invoke; 1 thread), then its latency:
every model is loaded once per thread count (one interpreter each, input set once,
``warmup_runs`` untimed invokes), then timed in :data:`ROUNDS` rounds: in each round every
(model, threads) pair runs one block of invokes (one untimed invoke re-warms the caches, then timed
invokes until the block holds ``min_runs / ROUNDS`` runs and ``min_seconds / ROUNDS`` seconds),
the order rotating from round to round. A background hiccup therefore hits every model alike, and
ratios between models of the same session compare like with like. Only ``invoke`` is timed, as
TFLite's own ``benchmark_model`` does.

The session record (:func:`measure_session`) says when (UTC start and end), where (the
``device``: kind, host name, CPU model, cores, runtime and Python versions) and with what settings
it was measured, under a random session id; ratios are taken only between models of the same
session (:func:`litequant.report.summary.same_session`).

Interleaving makes single-threaded ratios fair under load (the scheduler time-slices every model
alike), but not multi-threaded ones: an interpreter with ``t`` threads waits at every op for its
slowest thread, so when other processes occupy the cores its threads need, its time depends on
how the scheduler happens to place them, model by model. The session therefore also measures the
device's load from *other* processes while it timed (``other_load_cores``: CPU seconds of the
whole machine, from ``/proc/stat``, minus the runner's, per wall second, steal time included)
and lists the thread counts that did not have their cores free (``contended_threads``, see
:func:`contended_threads`); the report computes no speed-up for those.

Imports ``ai_edge_litert`` and numpy only, never TensorFlow.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from litequant.core.litert import LiteRTModel, pixels_to_input
from litequant.core.params import BenchmarkParams
from litequant.measure.device_runner import (
    CONTENTION_SLACK_CORES,
    contended_threads,
    cpu_sample,
    other_load,
    summarize,
)
from litequant.measure.devices import run_session

__all__ = ["CONTENTION_SLACK_CORES", "PEER", "ROUNDS", "contended_threads", "cpu_sample",
           "describe", "measure_session", "model_input", "other_load", "summarize"]

#: Timed rounds of a session: each (model, threads) pair gets this many interleaved blocks.
ROUNDS = 10


def model_input(path: Path, family: str) -> np.ndarray:
    """The input tensor every invoke of the session gets: random ``uint8`` pixels (seed 0) of
    the model's image size, preprocessed for ``family`` and quantized with the input's own
    scale/zero point (:func:`~litequant.core.litert.pixels_to_input`); batch of 1."""
    model = LiteRTModel(path, threads=1, batch_size=1)
    height, width = model.image_size
    pixels = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    return pixels_to_input(pixels, model.input, family)


def measure_session(models: dict[str, tuple[Path, str] | None], settings: BenchmarkParams,
                    notes: dict[str, str] | None = None, rounds: int = ROUNDS) -> dict[str, Any]:
    """Measure every model of ``models`` (name → ``(path, preprocessing family)``) in one session
    on ``settings.device``.

    A ``None`` entry is recorded without figures (``status: failed``; ``skipped`` for
    :data:`PEER`, whose ``peer.path`` is null). Returns ``{"session": {...}, "models": {name:
    {status, size_bytes, note, latency: {"<threads>": stats}, runtime: {peak_memory_bytes,
    init_ms, first_invoke_ms, threads: 1}}}}``, stats as :func:`summarize`.
    """
    notes = notes or {}
    measured_models = {name: spec for name, spec in models.items() if spec is not None}
    with tempfile.TemporaryDirectory(prefix="litequant-inputs-") as folder:
        inputs: dict[str, tuple[Path, Path | None]] = {}
        for index, (name, (path, family)) in enumerate(measured_models.items()):
            data = Path(folder) / f"input{index}.npy"
            np.save(data, model_input(path, family))
            inputs[name] = (path, data)
        result = run_session(inputs, settings, rounds)
    found = result["session"]
    session = {"id": uuid.uuid4().hex[:12], "started_utc": found["started_utc"],
               "finished_utc": found["finished_utc"], "device": found["device"],
               "numpy": found["numpy"],
               "threads": list(settings.threads), "warmup_runs": settings.warmup_runs,
               "min_runs": settings.min_runs, "min_seconds": settings.min_seconds,
               "rounds": rounds, "runtime_repeats": settings.runtime_repeats,
               "memory_method": found["memory_method"],
               "other_load_cores": found["other_load_cores"],
               "runtime_other_load_cores": found["runtime_other_load_cores"],
               "contended_threads": found["contended_threads"]}
    measured: dict[str, Any] = {}
    for name, spec in models.items():
        entry: dict[str, Any] = {"note": notes.get(name, "")}
        if spec is None:
            entry["status"] = "skipped" if name == PEER else "failed"
        else:
            figures = result["models"][name]
            entry.update(status="ok", size_bytes=spec[0].stat().st_size,
                         latency=figures["latency"], runtime=figures["runtime"])
        measured[name] = entry
    return {"session": session, "models": measured}


#: The name of the peer model's entry in a session.
PEER = "peer"


def describe(document: dict[str, Any]) -> str:
    """One line per model: its p50 latency per thread count (for the stage's output)."""
    lines = []
    for name, entry in document["models"].items():
        if entry["status"] != "ok":
            lines.append(f"benchmark: {name}: {entry['status']}")
            continue
        shown = ", ".join(f"{t} thread(s) p50 {v['p50_ms']:.2f} ms"
                          for t, v in entry["latency"].items())
        figures = entry["runtime"]
        lines.append(f"benchmark: {name}: {entry['size_bytes']:,} bytes, {shown}; memory "
                     f"+{figures['peak_memory_bytes'] / 2**20:.1f} MiB, init "
                     f"{figures['init_ms']:.1f} ms, first invoke "
                     f"{figures['first_invoke_ms']:.1f} ms")
    session = document["session"]
    device = session["device"]
    lines.append(f"benchmark: measured on {device['hostname']} ({device['kind']}: "
                 f"{device['cpu']}, {device['cores']} cores, {device['runtime']}, Python "
                 f"{device['python']})")
    if session.get("contended_threads"):
        lines.append(f"benchmark: other processes kept {session['other_load_cores']} of "
                     f"{device['cores']} cores busy while timing: no speed-up will be computed "
                     f"at {' and '.join(map(str, session['contended_threads']))} thread(s)")
    return "\n".join(lines)
