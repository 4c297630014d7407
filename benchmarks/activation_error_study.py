"""Issue 25's activation-error figures: integer variants judged by their logits, not only top-1.

On a genuinely float-trained model the int8 error is in the activations, and the output SQNR of
the probabilities cannot tell the int8 methods apart (it is dominated by the int8 logits ahead of
the softmax, common to all). This study measures, per ``fetch.seed`` split of a scratch copy of
the project (:mod:`benchmarks.scratch`; ``dvc repro`` of ``int8_plain``, ``float32`` and the float
Keras evaluation), the integer rows built in this process by the passes themselves (the same
functions the pipeline's stages call, on the same calibration inputs):

* top-1 agreement with the float Keras model and top-1 (argmax of the model's output, as the
  evaluate stage takes it);
* the SQNR of the logits (the tensor the softmax reads) against the float32 variant's, in dB;
* images won / lost against ``int8_plain``, pooled over the splits, with the report's sign test;
* each row's build seconds (contended when other work runs on the machine).

Run from the repository root, e.g.::

    python benchmarks/activation_error_study.py /tmp/actstudy-lite1 --splits 3 \\
        --images ../shared/imagenet-sample/val \\
        --model ../shared/models/efficientnet_lite1_imagenet.keras --preprocessing tf

About 6 minutes per split of EfficientNet-Lite1 on 2 cores (the empirical correction is most).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.fidelity_study import model_params, study_arguments  # noqa: E402
from benchmarks.scratch import GIT_ENV, scratch_project, set_params  # noqa: E402
from litequant.core import layout  # noqa: E402
from litequant.core.litert import intermediate_tensors  # noqa: E402
from litequant.core.params import CalibrationParams  # noqa: E402
from litequant.core.preprocessing import preprocess  # noqa: E402
from litequant.quantize.context import calibration_inputs  # noqa: E402
from litequant.quantize.flatbuffer import op_name, read_model  # noqa: E402
from litequant.report.summary import beyond_noise  # noqa: E402

Build = Callable[[bytes, bytes, np.ndarray], bytes]


def _int8(plain: bytes, float32: bytes, calibration: np.ndarray) -> bytes:
    from litequant.quantize.passes.bias_correction import correct_biases

    return correct_biases(plain, float32, calibration)[0]


def _grid(plain: bytes, float32: bytes, calibration: np.ndarray) -> bytes:
    from litequant.quantize.passes.weight_grid import regrid

    return _int8(regrid(plain, float32)[0], float32, calibration)


def _mse(plain: bytes, float32: bytes, calibration: np.ndarray) -> bytes:
    from litequant.quantize.passes.activation_ranges import choose_activation_ranges
    from litequant.quantize.passes.weight_grid import regrid

    ranged = choose_activation_ranges(regrid(plain, float32)[0], float32, calibration)[0]
    return _int8(ranged, float32, calibration)


def _empirical(plain: bytes, float32: bytes, calibration: np.ndarray) -> bytes:
    from litequant.quantize.passes.empirical_bias import correct_empirically

    return correct_empirically(plain, float32, calibration)[0]


#: The rows built from ``int8_plain``, as the registry composes them.
ROWS: dict[str, Build] = {"int8": _int8, "int8_grid": _grid, "int8_mse": _mse,
                          "int8_empirical": _empirical}


def logits_tensor(model_bytes: bytes) -> int:
    """The tensor the model's ``SOFTMAX`` reads (its output when it has none)."""
    model = read_model(model_bytes)
    for op in model.subgraphs[0].operators:
        if op_name(model, op) == "SOFTMAX":
            return int(op.inputs[0])
    return int(model.subgraphs[0].outputs[0])


def run(model_bytes: bytes, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(top-1 classes (N,), logits (N, classes) float32)`` of a ``.tflite`` on ``images``."""
    model = read_model(model_bytes)
    tensors = [logits_tensor(model_bytes), int(model.subgraphs[0].outputs[0])]
    classes, logits = [], []
    for logit, output in intermediate_tensors(model_bytes, images, tensors):
        logits.append(logit.reshape(-1))
        classes.append(int(np.argmax(output.reshape(-1))))
    return np.array(classes), np.stack(logits)


def sqnr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """``10 log10(sum ref² / sum (other - ref)²)``."""
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2)
                               / np.sum((other.astype(np.float64) - reference) ** 2)))


def one_split(project: Path, seed: int, rows: list[str]) -> dict[str, dict]:
    """Per row: ``classes``, ``agreement``, ``top1``, ``sqnr_db``, ``seconds`` on one split."""
    set_params(project, fetch={"seed": seed})
    done = subprocess.run([sys.executable, "-m", "dvc", "repro", "convert@int8_plain",
                           "convert@float32", "evaluate_keras"], cwd=project, text=True,
                          capture_output=True, env={**os.environ, **GIT_ENV})
    if done.returncode != 0:
        raise SystemExit(f"dvc repro failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    here = Path.cwd()
    os.chdir(project)
    try:
        family = layout.read_model_info(layout.MODEL_INFO)["preprocessing"]
        calibration_images, _ = layout.load_split(layout.CALIBRATION_SPLIT)
        params = CalibrationParams(num_images=100, source="images", seed=0,
                                   bias_correction="analytic")
        calibration = calibration_inputs(calibration_images, params, family)
        images, labels = layout.load_split(layout.EVALUATION_SPLIT)
        evaluation = preprocess(np.asarray(images[:]), family)
        keras = np.load(layout.KERAS_PREDICTIONS)
        float32 = layout.model_file("float32").read_bytes()
        plain = layout.model_file("int8_plain").read_bytes()
    finally:
        os.chdir(here)
    _, reference = run(float32, evaluation)
    result = {}
    for name in ["int8_plain", *rows]:
        started = time.perf_counter()
        model = plain if name == "int8_plain" else ROWS[name](plain, float32, calibration)
        seconds = time.perf_counter() - started
        classes, logits = run(model, evaluation)
        result[name] = {"classes": classes, "agreement": 100 * float(np.mean(classes == keras)),
                        "top1": 100 * float(np.mean(classes == np.asarray(labels))),
                        "sqnr_db": sqnr_db(reference, logits), "seconds": seconds,
                        "keras": keras}
        print(f"split {seed} {name}: agreement {result[name]['agreement']:.1f}, logits SQNR "
              f"{result[name]['sqnr_db']:.2f} dB, {seconds:.0f} s", file=sys.stderr, flush=True)
    return result


def _pooled(cells: list[dict], key: str) -> float:
    """A percentage over every evaluation of every split (weighted by each split's images)."""
    return (sum(c[key] * len(c["classes"]) for c in cells)
            / sum(len(c["classes"]) for c in cells))


def render(splits: list[dict[str, dict]], model: Path) -> str:
    """One Markdown row per variant: agreement per split and pooled, top-1 pooled, logits
    SQNR per split, won / lost vs ``int8_plain`` pooled (marked *(noise)* per the sign test)."""
    count = len(splits)
    lines = [f"### {model.name}: {count} splits", "",
             "| row | " + " | ".join(f"agreement {s}" for s in range(count)) + " | agreement, "
             "pooled | top-1, pooled | " + " | ".join(f"logits SQNR dB {s}"
                                                     for s in range(count))
             + " | won / lost vs int8_plain | build s |",
             "|---|" + "---:|" * (2 * count + 2) + "---|---:|"]
    for name in splits[0]:
        cells = [split[name] for split in splits]
        won = lost = 0
        for split in splits:
            keras = split[name]["keras"]
            agrees = split[name]["classes"] == keras
            base = split["int8_plain"]["classes"] == keras
            won += int(np.sum(agrees & ~base))
            lost += int(np.sum(~agrees & base))
        change = ("–" if name == "int8_plain" else
                  f"{won} / {lost}" + ("" if beyond_noise(won, lost) else " (noise)"))
        lines.append(f"| {name} | " + " | ".join(f"{c['agreement']:.1f}" for c in cells)
                     + f" | {_pooled(cells, 'agreement'):.2f} | {_pooled(cells, 'top1'):.2f} | "
                     + " | ".join(f"{c['sqnr_db']:.1f}" for c in cells)
                     + f" | {change} | {np.mean([c['seconds'] for c in cells]):.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    study_arguments(parser, peer_required=False)
    parser.add_argument("--rows", default=",".join(ROWS),
                        help=f"comma-separated rows besides int8_plain (default "
                             f"{','.join(ROWS)})")
    parser.add_argument("--splits", type=int, default=3, help="seeds 0 .. K-1 (default 3)")
    args = parser.parse_args(argv)
    rows = [name for name in args.rows.split(",") if name]
    unknown = [name for name in rows if name not in ROWS]
    if unknown or args.splits < 1:
        parser.error(f"unknown row {unknown[0]!r}; known: {', '.join(ROWS)}" if unknown
                     else f"--splits must be at least 1, got {args.splits}")
    model = model_params(args.model)
    if args.preprocessing:
        model["preprocessing"] = args.preprocessing
    project = scratch_project(args.root, model=model, fetch={
        "source": "folder", "folder": str(args.images.resolve())})
    splits = [one_split(project, seed, rows) for seed in range(args.splits)]
    print(render(splits, args.model))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
