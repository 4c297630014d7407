"""Latency of ``.tflite`` models, all measured in one interleaved session.

Every model of a session is loaded once per thread count (one interpreter each, input set once,
``warmup_runs`` untimed invokes), then timed in :data:`ROUNDS` rounds: in each round every
(model, threads) pair runs one block of invokes (one untimed invoke re-warms the caches, then timed
invokes until the block holds ``min_runs / ROUNDS`` runs and ``min_seconds / ROUNDS`` seconds),
the order rotating from round to round. A background hiccup therefore hits every model alike, and
ratios between models of the same session compare like with like. Only ``invoke`` is timed, as
TFLite's own ``benchmark_model`` does.

The session record (:func:`measure_session`) says when (UTC start and end), where (host, CPU
model, cores) and with what (library versions, settings) it was measured, under a random session
id; ratios are taken only between models of the same session
(:func:`litequant.report.summary.same_session`).

Interleaving makes single-threaded ratios fair under load (the scheduler time-slices every model
alike), but not multi-threaded ones: an interpreter with ``t`` threads waits at every op for its
slowest thread, so when other processes occupy the cores its threads need, its time depends on
how the scheduler happens to place them, model by model. The session therefore also measures the
machine's load from *other* processes while it timed (``other_load_cores``: CPU seconds of the
whole machine, from ``/proc/stat``, minus this process's, per wall second, steal time included)
and lists the thread counts that did not have their cores free (``contended_threads``, see
:func:`contended_threads`); the report computes no speed-up for those.

Imports ``ai_edge_litert`` and numpy only, never TensorFlow.
"""

from __future__ import annotations

import math
import os
import platform
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from litequant.core.litert import LiteRTModel, pixels_to_input
from litequant.core.params import BenchmarkParams

#: Timed rounds of a session: each (model, threads) pair gets this many interleaved blocks.
ROUNDS = 10
#: How many cores other processes may keep busy, beyond those left for an interpreter's threads,
#: before that thread count is contended (:func:`contended_threads`).
CONTENTION_SLACK_CORES = 0.5


def cpu_sample() -> tuple[float, float, float] | None:
    """``(wall seconds, CPU seconds busy on the whole machine, CPU seconds of this process)``,
    or ``None`` where ``/proc/stat`` does not exist (not Linux): load is then not measured.

    Busy time is every ``/proc/stat`` field but idle and iowait: user, nice, system, irq,
    softirq and steal (time a hypervisor gave to other machines, also load this session saw).
    """
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    ticks = [int(value) for value in first[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    own = os.times()
    return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def other_load(before: tuple[float, float, float] | None,
               after: tuple[float, float, float] | None) -> float | None:
    """Average number of cores other processes kept busy between two CPU samples
    (:func:`cpu_sample`)."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    others = (after[1] - before[1]) - (after[2] - before[2])
    return max(0.0, others / (after[0] - before[0]))


def contended_threads(load: float | None, cores: int | None, threads: list[int]) -> list[int]:
    """The thread counts whose timings other processes made unreliable: ``t`` threads need ``t``
    free cores, so ``t`` is contended when ``load > cores - t + CONTENTION_SLACK_CORES``.

    >>> contended_threads(1.3, 2, [1, 2])   # two busy processes sharing 2 cores with ours
    [2]
    >>> contended_threads(0.05, 2, [1, 2])  # an idle machine
    []
    """
    if load is None or not cores:
        return []
    return [t for t in threads if load > cores - t + CONTENTION_SLACK_CORES]


def machine_info() -> dict[str, Any]:
    """Host name, CPU model, core count, Python/ai-edge-litert/numpy versions."""
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

    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "ai_edge_litert": version("ai-edge-litert"),
            "numpy": version("numpy")}


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def summarize(times_ms: list[float]) -> dict[str, float]:
    """``mean_ms``, ``p50_ms``, ``p90_ms``, ``std_ms`` and ``runs`` of timed invokes (ms)."""
    values = np.array(times_ms)
    return {"mean_ms": float(values.mean()), "p50_ms": float(np.percentile(values, 50)),
            "p90_ms": float(np.percentile(values, 90)), "std_ms": float(values.std()),
            "runs": int(len(values))}


@dataclass
class _Slot:
    """One (model, threads) pair of a session: its interpreter and its timed invokes (ms)."""

    name: str
    threads: int
    invoke: Any
    model: Any = None  # keeps the interpreter alive
    times: list[float] = field(default_factory=list)


def _load(name: str, path: Path, family: str, threads: int, warmup_runs: int) -> _Slot:
    model = LiteRTModel(path, threads=threads, batch_size=1)
    height, width = model.image_size
    pixels = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    model.invoke_raw(pixels_to_input(pixels, model.input, family))  # allocates, sets the input
    invoke = model.interpreter.invoke
    for _ in range(warmup_runs):
        invoke()
    return _Slot(name, threads, invoke, model)


def _block(slot: _Slot, runs: int, seconds: float) -> None:
    """One untimed invoke (re-warms caches after the other models ran), then timed invokes
    until ``runs`` runs and ``seconds`` seconds."""
    slot.invoke()
    started = time.perf_counter()
    done = 0
    while done < runs or time.perf_counter() - started < seconds:
        begin = time.perf_counter()
        slot.invoke()
        slot.times.append((time.perf_counter() - begin) * 1000.0)
        done += 1


def measure_session(models: dict[str, tuple[Path, str] | None], settings: BenchmarkParams,
                    notes: dict[str, str] | None = None, rounds: int = ROUNDS) -> dict[str, Any]:
    """Measure every model of ``models`` (name → ``(path, preprocessing family)``) in one session.

    A ``None`` entry is recorded without latency (``status: failed``; ``skipped`` for
    :data:`PEER`, whose ``peer.path`` is null). Returns ``{"session": {...}, "models": {name:
    {status, size_bytes, note, latency: {"<threads>": stats}}}}``, stats as :func:`summarize`.
    """
    notes = notes or {}
    session = {"id": uuid.uuid4().hex[:12], "started_utc": _utc_now(), **machine_info(),
               "threads": list(settings.threads), "warmup_runs": settings.warmup_runs,
               "min_runs": settings.min_runs, "min_seconds": settings.min_seconds,
               "rounds": rounds}
    slots = [_load(name, spec[0], spec[1], threads, settings.warmup_runs)
             for name, spec in models.items() if spec is not None
             for threads in settings.threads]
    runs = math.ceil(settings.min_runs / rounds)
    seconds = settings.min_seconds / rounds
    before = cpu_sample()
    for index in range(rounds):
        shift = index % len(slots) if slots else 0
        for slot in slots[shift:] + slots[:shift]:
            _block(slot, runs, seconds)
    load = other_load(before, cpu_sample())
    session["finished_utc"] = _utc_now()
    session["other_load_cores"] = None if load is None else round(load, 2)
    session["contended_threads"] = contended_threads(load, session["cores"],
                                                     list(settings.threads))
    measured: dict[str, Any] = {}
    for name, spec in models.items():
        entry: dict[str, Any] = {"note": notes.get(name, "")}
        if spec is None:
            entry["status"] = "skipped" if name == PEER else "failed"
        else:
            entry.update(status="ok", size_bytes=spec[0].stat().st_size, latency={
                str(slot.threads): summarize(slot.times) for slot in slots if slot.name == name})
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
        lines.append(f"benchmark: {name}: {entry['size_bytes']:,} bytes, {shown}")
    session = document["session"]
    if session.get("contended_threads"):
        lines.append(f"benchmark: other processes kept {session['other_load_cores']} of "
                     f"{session['cores']} cores busy while timing: no speed-up will be computed "
                     f"at {' and '.join(map(str, session['contended_threads']))} thread(s)")
    return "\n".join(lines)
