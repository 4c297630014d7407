"""``weight_only_int8`` against ``dynamic`` (issue 25): what each of its two changes buys, pooled
over random calibration/evaluation splits.

``weight_only_int8`` (ai-edge-quantizer, int8 weights + ``DEQUANTIZE``, float compute) used to
quantize every weight tensor with the ``max|w| / 127`` per-channel rule; ``dynamic`` (the TF
converter) quantizes the same tensors with the same rule but keeps those of fewer than 1024
elements float. The variant now keeps them float too
(:data:`litequant.quantize.edge_quantizer.MIN_WEIGHT_ELEMENTS`) and puts its int8 weights on
the per-channel scales :mod:`litequant.quantize.passes.weight_grid` chooses by reconstruction
error (no images). Per model this study runs the pipeline (``dvc repro`` of
``evaluate@weight_only_int8``, ``evaluate@dynamic``, ``evaluate@float32`` and
``evaluate_keras`` in a scratch copy, default params otherwise) for ``fetch.seed`` = 0 .. K-1,
and per split also builds and evaluates (in this process, from the split's float32 variant,
like the stage does) the ablations:

* ``before``: every weight tensor int8, max rule (the variant as it was, ``main`` 935547d);
* ``small_float``: tensors under 1024 elements kept float, max rule;
* ``grid_only``: every tensor int8, weight-grid scales.

It prints, pooled over the splits: top-1 agreement with the float Keras model, top-1, output
SQNR (``10 log10(sum signal / sum noise)`` over all evaluation images), images won/lost against
``dynamic`` and against ``before`` (the report's sign test), the model size, and p50 latency at
1 thread relative to float32 (split 0's models, interleaved rounds; contended when other jobs run
on the machine). Run from the repository root, e.g.::

    python benchmarks/weight_only_study.py /tmp/wo-study --splits 3 \\
        --images ../shared/imagenet-sample/val \\
        --model ../shared/models/efficientnet_lite1_imagenet.keras \\
        --model ../shared/models/mobilenet_v2_1.0_224_imagenet.weights.h5

About 3 minutes per split and model on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from benchmarks.fidelity_study import model_params  # noqa: E402
from benchmarks.scratch import GIT_ENV, REPO, scratch_project, set_params  # noqa: E402
from litequant.core import layout  # noqa: E402
from litequant.core.quiet import native_stderr_silenced  # noqa: E402
from litequant.report.summary import beyond_noise  # noqa: E402

#: Variants the pipeline builds (the rest are turned off).
PIPELINE = ("float32", "dynamic", "weight_only_int8")
#: Ablations built in this process from the float32 variant.
ABLATIONS = ("before", "small_float", "grid_only")
ROWS = ("dynamic", "before", "small_float", "grid_only", "weight_only_int8")


def ablation(name: str, float_model: bytes) -> bytes:
    """One ablation's model (see the module docstring) from the float32 ``.tflite``."""
    from litequant.quantize import edge_quantizer as eq
    from litequant.quantize.passes import weight_grid

    small = 0 if name in ("before", "grid_only") else eq.MIN_WEIGHT_ELEMENTS
    with native_stderr_silenced(), contextlib.redirect_stderr(io.StringIO()):
        model, _ = eq.quantize(float_model, "weight_only_int8", None, min_weight_elements=small)
    if name == "grid_only":
        model, _ = weight_grid.regrid(model, float_model)
    return model


def run_split(project: Path, seed: int, workers: int) -> dict[str, Any]:
    """``dvc repro`` the pipeline rows for one ``fetch.seed``, then build and evaluate the
    ablations; returns per row its metrics, predictions and noise power, and the float model's
    signal power and predictions."""
    from litequant.measure.evaluation import evaluate_model

    set_params(project, fetch={"seed": seed})
    targets = [f"evaluate@{name}" for name in PIPELINE] + ["evaluate_keras"]
    done = subprocess.run([sys.executable, "-m", "dvc", "repro", *targets], cwd=project,
                          text=True, capture_output=True, env={**os.environ, **GIT_ENV})
    if done.returncode != 0:
        raise SystemExit(f"dvc repro failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    probabilities = np.load(project / layout.FLOAT_PROBABILITIES).astype(np.float64)
    signal = float(np.sum(probabilities ** 2))
    split: dict[str, Any] = {"signal": signal, "metrics": {}, "predictions": {}, "size": {},
                             "keras": np.load(project / layout.KERAS_PREDICTIONS),
                             "keras_top1": json.loads((project / layout.KERAS_METRICS)
                                                      .read_text())["top1"]}
    for name in PIPELINE:
        split["metrics"][name] = json.loads(
            (project / layout.evaluate_dir(name) / "metrics.json").read_text())
        split["predictions"][name] = np.load(project / layout.predictions_file(name))
        split["size"][name] = (project / layout.model_file(name)).stat().st_size
    info = json.loads((project / layout.MODEL_INFO).read_text())
    float_model = (project / layout.model_file("float32")).read_bytes()
    previous = Path.cwd()
    os.chdir(project)
    try:
        images, labels = layout.load_split(layout.EVALUATION_SPLIT)
        reference = layout.load_float_probabilities(layout.FLOAT_PROBABILITIES, len(labels))
        for name in ABLATIONS:
            path = project / "data" / f"ablation_{name}.tflite"
            path.write_bytes(ablation(name, float_model))
            split["size"][name] = path.stat().st_size
            metrics, predictions = evaluate_model(path, images, labels, reference,
                                                  info["preprocessing"], info["output"],
                                                  workers, 8)
            split["metrics"][name] = metrics
            split["predictions"][name] = predictions
    finally:
        os.chdir(previous)
    return split


def model_paths(project: Path) -> dict[str, Path]:
    """The ``.tflite`` of every row and of float32 in ``project`` (its last split)."""
    paths = {name: project / layout.model_file(name) for name in PIPELINE}
    paths.update({name: project / "data" / f"ablation_{name}.tflite" for name in ABLATIONS})
    return paths


def latency(paths: dict[str, Path], size: int, rounds: int, runs: int) -> dict[str, float]:
    """p50 ms of one invoke at 1 thread per model: ``rounds`` rounds, each running every model
    ``runs`` times after 3 warm-up invokes (interleaved, so all share the machine's state)."""
    from ai_edge_litert.interpreter import Interpreter

    batch = np.random.default_rng(0).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    interpreters = {}
    for name, path in paths.items():
        interpreter = Interpreter(model_path=str(path), num_threads=1)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], batch)
        interpreters[name] = interpreter
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, interpreter in interpreters.items():
            for _ in range(3):
                interpreter.invoke()
            for _ in range(runs):
                start = time.perf_counter()
                interpreter.invoke()
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: float(np.median(values)) for name, values in times.items()}


def pooled(splits: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per row: agreement and top-1 (%) over all evaluation images of all splits, pooled SQNR
    (dB), won/lost against ``dynamic`` and ``before``, mean size (bytes)."""
    signal = sum(split["signal"] for split in splits)
    rows: dict[str, dict[str, Any]] = {}
    for name in ROWS:
        images = sum(s["metrics"][name]["images"] for s in splits)
        agree = sum(s["metrics"][name]["agreement"] * s["metrics"][name]["images"] / 100
                    for s in splits)
        top1 = sum(s["metrics"][name]["top1"] * s["metrics"][name]["images"] / 100
                   for s in splits)
        noise = sum(s["signal"] / 10 ** (s["metrics"][name]["sqnr_db"] / 10) for s in splits)
        row = {"images": images, "agreement": 100 * agree / images, "top1": 100 * top1 / images,
               "sqnr_db": 10 * np.log10(signal / noise),
               "split_sqnr_db": [s["metrics"][name]["sqnr_db"] for s in splits],
               "split_agreement": [s["metrics"][name]["agreement"] for s in splits],
               "size": float(np.mean([s["size"][name] for s in splits]))}
        for other in ("dynamic", "before"):
            won = lost = 0
            for s in splits:
                mine = s["predictions"][name] == s["keras"]
                theirs = s["predictions"][other] == s["keras"]
                won += int(np.sum(mine & ~theirs))
                lost += int(np.sum(~mine & theirs))
            row[f"vs_{other}"] = (won, lost)
        rows[name] = row
    return rows


def table(label: str, rows: dict[str, dict[str, Any]], p50: dict[str, float],
          keras_top1: float) -> list[str]:
    """The printed comparison of one model."""
    lines = [f"## {label} (float Keras top-1 {keras_top1:.2f} %)", "",
             "| row | agreement % | SQNR dB | top-1 % | size MB | p50 / float32 (1 thr) | "
             "won/lost vs dynamic | won/lost vs before |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in rows.items():
        cells = []
        for other in ("dynamic", "before"):
            won, lost = row[f"vs_{other}"]
            cells.append("–" if other == name else
                         f"{won} / {lost}" + ("" if beyond_noise(won, lost) else " (noise)"))
        ratio = p50[name] / p50["float32"] if name in p50 else float("nan")
        lines.append(f"| {name} | {row['agreement']:.2f} | {row['sqnr_db']:.2f} | "
                     f"{row['top1']:.2f} | {row['size'] / 1e6:.3f} | {ratio:.2f} | "
                     f"{cells[0]} | {cells[1]} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="an empty folder for the scratch projects")
    parser.add_argument("--images", type=Path, required=True,
                        help="an ImageNet-style folder (<folder>/<synset>/<image>)")
    parser.add_argument("--model", type=Path, action="append", required=True,
                        help="a .keras file or a MobileNetV2 .weights.h5 file (repeatable)")
    parser.add_argument("--splits", type=int, default=3, help="fetch.seed 0 .. splits-1")
    parser.add_argument("--workers", type=int, default=2, help="evaluation processes")
    parser.add_argument("--rounds", type=int, default=5, help="latency rounds")
    parser.add_argument("--runs", type=int, default=10, help="timed invokes a round")
    parser.add_argument("--out", type=Path, help="write the pooled figures as JSON here")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    every = yaml.safe_load((REPO / "params.yaml").read_text())["convert"]["variants"]
    for model in args.model:
        # a .keras model here takes [-1, 1] inputs (tf), a .weights.h5 is MobileNetV2's (auto)
        preprocessing = "auto" if model.name.endswith(".weights.h5") else "tf"
        project = scratch_project(
            args.root / model.name.split(".")[0],
            fetch={"source": "folder", "folder": str(args.images.resolve()),
                   "calibration_size": 100, "evaluation_size": 200},
            model={**model_params(model), "preprocessing": preprocessing},
            convert={"variants": {name: name in PIPELINE for name in every}})
        splits = []
        for seed in range(args.splits):
            start = time.perf_counter()
            splits.append(run_split(project, seed, args.workers))
            print(f"{model.name}: split {seed} in {time.perf_counter() - start:.0f} s",
                  flush=True)
        rows = pooled(splits)
        size = json.loads((project / layout.MODEL_INFO).read_text())["input_size"][0]
        p50 = latency(model_paths(project), size, args.rounds, args.runs)
        keras_top1 = float(np.mean([split["keras_top1"] for split in splits]))
        print("\n".join(table(model.name, rows, p50, keras_top1)), flush=True)
        results[model.name] = {"rows": rows, "p50_ms": p50, "splits": args.splits,
                               "keras_top1": keras_top1}
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
