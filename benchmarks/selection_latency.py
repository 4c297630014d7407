"""``int8_selective``'s latency against ``int8``'s, per split of a ``split_study.py --mixed`` run.

For each ``fetch.seed`` of the study's scratch project it restores (``dvc repro``, from DVC's run
cache when the study built them) ``int8`` and ``int8_selective`` and times them at 1 thread, the
two interleaved (:func:`litequant.core.timing.interleaved_times_ms`, one invoke of each per
round, for ``--seconds``), and prints per split: the ops kept float, the selection's own latency
estimate (``selection.json``), both p50s, their ratio and the median of the paired ratios; then
the largest ratio against issue 25's 1.25x ceiling. Run from the repository root, e.g.::

    python benchmarks/selection_latency.py /tmp/splits-lite1 --splits 3

Latency measured on a loaded machine is contended: read the ratios, not the times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.scratch import GIT_ENV, set_params  # noqa: E402
from litequant.core.litert import LiteRTModel  # noqa: E402
from litequant.core.timing import interleaved_times_ms  # noqa: E402

#: Issue 25's latency ceiling: p50 at 1 thread relative to int8's.
CEILING = 1.25
ROWS = ("int8", "int8_selective")


def measure(project: Path, seed: int, seconds: float) -> dict:
    """Restore the two models of split ``seed`` and time them interleaved at 1 thread."""
    set_params(project, fetch={"seed": seed})
    done = subprocess.run([sys.executable, "-m", "dvc", "repro",
                           *[f"convert@{name}" for name in ROWS]], cwd=project, text=True,
                          capture_output=True, env={**os.environ, **GIT_ENV})
    if done.returncode != 0:
        raise SystemExit(f"dvc repro failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    models = [(project / f"data/convert/{name}/model.tflite").read_bytes() for name in ROWS]
    shape = LiteRTModel("<in memory>", model_content=models[0]).input.shape[1:]
    int8, selective = interleaved_times_ms(models, np.zeros(shape, np.float32), threads=1,
                                           min_runs=100, min_seconds=seconds)
    selection = json.loads((project / "data/convert/int8_selective/selection.json").read_text())
    return {"seed": seed, "float_ops": len(selection["float_ops"]),
            "layers_kept": selection["layers_kept"], "budget_met": selection["budget_met"],
            "estimate": selection["latency_vs_int8"], "int8": float(np.median(int8)),
            "selective": float(np.median(selective)),
            "paired": float(np.median(np.asarray(selective) / np.asarray(int8)))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="the scratch project of split_study.py --mixed")
    parser.add_argument("--splits", type=int, default=3, help="seeds 0 .. K-1 (default 3)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="timing per split (default 10)")
    args = parser.parse_args(argv)
    rows = [measure(args.root, seed, args.seconds) for seed in range(args.splits)]
    print("| split | weight ops kept float (ops) | budget met | selection's estimate | "
          "p50 int8 ms | p50 int8_selective ms | p50 ratio | paired ratio |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['seed']} | {row['layers_kept']} ({row['float_ops']}) | "
              f"{'yes' if row['budget_met'] else 'no'} | {row['estimate']:.2f} | "
              f"{row['int8']:.2f} | {row['selective']:.2f} | "
              f"{row['selective'] / row['int8']:.2f} | {row['paired']:.2f} |")
    worst = max(row["selective"] / row["int8"] for row in rows)
    print(f"\n- largest p50 ratio {worst:.2f} vs ceiling {CEILING} → "
          f"{'holds' if worst <= CEILING else 'FAILS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
