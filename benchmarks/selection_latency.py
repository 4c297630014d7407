"""``int8_selective``'s latency against ``int8``'s, and a smooth fidelity figure of both and of
``int16x8``, per split of a ``split_study.py --mixed`` run.

For each ``fetch.seed`` of the study's scratch project it restores (``dvc repro``, from DVC's run
cache when the study built them) the models and times ``int8`` and ``int8_selective`` at 1
thread, the two interleaved (:func:`litequant.core.timing.interleaved_times_ms`, one invoke of
each per round, for ``--seconds``), and prints per split: the ops kept float, the selection's own
latency estimate (``selection.json``), both p50s, their ratio and the median of the paired
ratios; then the largest ratio against issue 25's 1.25x ceiling. With ``--fidelity`` it also
measures, on the split's evaluation images, each model's mean KL divergence from ``float32``
computed from the logits (:func:`litequant.quantize.passes.selection.judge`) and its expected
agreement loss (:func:`~litequant.quantize.passes.selection.expected_loss_points`): smooth
figures where agreement on 200 images moves by whole images. Run from the repository root,
e.g.::

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
#: The rows of ``--fidelity`` (against ``float32``).
FIDELITY_ROWS = ("int8_plain", "int8", "int8_selective", "int16x8")


def fidelity(project: Path) -> dict[str, dict[str, float]]:
    """Per :data:`FIDELITY_ROWS` model: logit KL, expected loss and agreement against
    ``float32`` on the project's evaluation images."""
    from litequant.core.preprocessing import preprocess
    from litequant.quantize.passes.selection import judge, output_effect

    cwd = Path.cwd()
    os.chdir(project)
    try:
        from litequant.core import layout

        images, _ = layout.load_split(layout.EVALUATION_SPLIT)
        family = layout.read_model_info(layout.MODEL_INFO)["preprocessing"]
        inputs = preprocess(np.asarray(images[:len(images)]), family)
        reference = judge(Path("data/convert/float32/model.tflite").read_bytes(), inputs,
                          "probabilities")
        result = {}
        for name in FIDELITY_ROWS:
            model = Path(f"data/convert/{name}/model.tflite").read_bytes()
            result[name] = output_effect(reference, judge(model, inputs, "probabilities"))
        return result
    finally:
        os.chdir(cwd)


def measure(project: Path, seed: int, seconds: float, with_fidelity: bool = False) -> dict:
    """Restore the models of split ``seed`` and time two of them interleaved at 1 thread."""
    set_params(project, fetch={"seed": seed})
    targets = [f"convert@{name}" for name in (*FIDELITY_ROWS, "float32")] + ["prepare"]
    done = subprocess.run([sys.executable, "-m", "dvc", "repro", *targets], cwd=project,
                          text=True, capture_output=True, env={**os.environ, **GIT_ENV})
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
            "paired": float(np.median(np.asarray(selective) / np.asarray(int8))),
            "fidelity": fidelity(project) if with_fidelity else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="the scratch project of split_study.py --mixed")
    parser.add_argument("--splits", type=int, default=3, help="seeds 0 .. K-1 (default 3)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="timing per split (default 10)")
    parser.add_argument("--fidelity", action="store_true",
                        help="also the logit KL and expected loss on the evaluation images")
    args = parser.parse_args(argv)
    rows = [measure(args.root, seed, args.seconds, args.fidelity)
            for seed in range(args.splits)]
    print("| split | weight ops kept float (ops) | budget met | selection's estimate | "
          "p50 int8 ms | p50 int8_selective ms | p50 ratio | paired ratio |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['seed']} | {row['layers_kept']} ({row['float_ops']}) | "
              f"{'yes' if row['budget_met'] else 'no'} | {row['estimate']:.2f} | "
              f"{row['int8']:.2f} | {row['selective']:.2f} | "
              f"{row['selective'] / row['int8']:.2f} | {row['paired']:.2f} |")
    if args.fidelity:
        print("\n| split | " + " | ".join(f"{name} KL ×1000 / expected loss / agreement"
                                         for name in FIDELITY_ROWS) + " |")
        print("|---:|" + "---:|" * len(FIDELITY_ROWS))
        for row in rows:
            cells = [f"{e['kl_divergence'] * 1000:.2f} / {e['expected_loss_points']:.2f} / "
                     f"{e['agreement']:.1f}" for e in (row["fidelity"][n] for n in FIDELITY_ROWS)]
            print(f"| {row['seed']} | " + " | ".join(cells) + " |")
        means = {name: np.mean([row["fidelity"][name]["kl_divergence"] for row in rows])
                 for name in FIDELITY_ROWS}
        print("\n- mean logit KL ×1000 over the splits: " + ", ".join(
            f"{name} {value * 1000:.2f}" for name, value in means.items()))
    worst = max(row["selective"] / row["int8"] for row in rows)
    print(f"\n- largest p50 ratio {worst:.2f} vs ceiling {CEILING} → "
          f"{'holds' if worst <= CEILING else 'FAILS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
