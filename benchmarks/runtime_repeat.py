"""Runtime figures measured twice: do two benchmark sessions agree on memory, init and first-invoke
time (issue 26's acceptance: within 10 %), and does float32 take more memory than int8?

Measures the converted variants of this project (``data/convert/<variant>/model.tflite``, or the
models given with ``--model name=path``) in two sessions of
:func:`litequant.measure.benchmarking.measure_session` with ``params.yaml``'s ``benchmark``
section (its ``device`` too, so it checks a target device as well; latency kept short: 1 thread,
``--min-seconds``), and prints per model both runs' ``memory_mib``, ``init_ms`` and
``first_invoke_ms`` with their relative difference, and each session's load from other
processes: timing figures measured while other processes keep the cores busy are not
comparable. Run from the repository root::

    python benchmarks/runtime_repeat.py
    python benchmarks/runtime_repeat.py --model float32=/tmp/f.tflite --model int8=/tmp/i.tflite
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from litequant.core import layout  # noqa: E402
from litequant.core.params import BenchmarkParams, load, section  # noqa: E402
from litequant.measure.benchmarking import measure_session  # noqa: E402

FIGURES = (("peak_memory_bytes", "memory MiB", 2**20), ("init_ms", "init ms", 1.0),
           ("first_invoke_ms", "first invoke ms", 1.0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--min-seconds", type=float, default=0.5)
    parser.add_argument("--runtime-repeats", type=int, default=None,
                        help="fresh processes per model (default: benchmark.runtime_repeats)")
    args = parser.parse_args()
    if args.model:
        models = {name: Path(path) for name, path in (m.split("=", 1) for m in args.model)}
    else:
        models = {p.parent.name: p for p in sorted(layout.CONVERT_DIR.glob("*/model.tflite"))}
    if not models:
        raise SystemExit("no models: run dvc repro convert first, or give --model name=path")
    family = (layout.read_model_info(layout.MODEL_INFO)["preprocessing"]
              if layout.MODEL_INFO.is_file() else "tf")
    params = load()
    repeats = args.runtime_repeats or params["benchmark"]["runtime_repeats"]
    settings = section({**params, "benchmark": {**params["benchmark"], "threads": [1],
                                                "min_seconds": args.min_seconds,
                                                "runtime_repeats": repeats}},
                       BenchmarkParams)
    runs = [measure_session({name: (path, family) for name, path in models.items()}, settings)
            for _ in range(2)]
    for index, run in enumerate(runs, 1):
        session = run["session"]
        device = session["device"]
        print(f"run {index}: session {session['id']} on {device['hostname']} ({device['cpu']}, "
              f"{device['cores']} cores, {device['runtime']}), {session['runtime_repeats']} "
              f"fresh processes per model; other processes kept "
              f"{session['runtime_other_load_cores']} cores busy while they ran, "
              f"{session['other_load_cores']} while the latency was timed")
    print(f"\n| model | {' | '.join(f'{label} (1, 2, Δ)' for _, label, _ in FIGURES)} |")
    print("|---|" + "---:|" * len(FIGURES))
    worst = 0.0
    for name in models:
        cells = []
        for key, _, unit in FIGURES:
            first, second = (run["models"][name]["runtime"][key] / unit for run in runs)
            change = abs(second - first) / first * 100 if first else 0.0
            worst = max(worst, change)
            cells.append(f"{first:.1f}, {second:.1f}, {change:.0f} %")
        print(f"| {name} | {' | '.join(cells)} |")
    print(f"\nlargest difference between the runs: {worst:.0f} % "
          f"({'within' if worst <= 10 else 'NOT within'} 10 %)")
    if "float32" in models and "int8" in models:
        memory = [run["models"][v]["runtime"]["peak_memory_bytes"] for run in runs
                  for v in ("float32", "int8")]
        print(f"float32's memory exceeds int8's in both runs: "
              f"{memory[0] > memory[1] and memory[2] > memory[3]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
