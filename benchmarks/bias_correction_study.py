"""Analytic against empirical bias correction (issue 14: "prefer the empirical form if it
measures better"), on a project that has already run the pipeline (for example the scratch
project of ``benchmarks/fidelity_study.py``).

Both start from the project's ``int8_plain`` model (the converter's, not corrected) and the
``calibration`` params' images:

* **analytic** (the pipeline's ``calibration.bias_correction: analytic``): each weight op's
  shift is its weight rounding error applied to its mean input in the *float* model
  (:func:`litequant.quantize.passes.bias_correction.correct_biases`).
* **empirical** (Nagel et al. 2019, section 4.2, measured form): weight op by weight op, in
  order, the *integer* model (with every earlier op already corrected) runs over the
  calibration images and the op's mean pre-activation, ``conv(E[x_int8], W_int8) + b_int8``
  (linear, so exact from the mean input map even when the activation is fused), is set equal
  to the float model's. This corrects what the op's weight rounding *and* everything upstream
  (activation rounding and clipping) shift, at the price of one integer-model pass per op.

Each model is then evaluated like ``evaluate@<variant>`` on the evaluation split (agreement,
top-1, SQNR, KL against the float Keras model). Run from the repository root::

    python benchmarks/fidelity_study.py /tmp/fidelity-v1 --images ... --model ... --peer ...
    python benchmarks/bias_correction_study.py /tmp/fidelity-v1
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from litequant.core.params import CalibrationParams, load, section  # noqa: E402
from litequant.measure.evaluation import evaluate_model  # noqa: E402
from litequant.quantize.biases import (  # noqa: E402
    bias_values,
    correctable_ops,
    mean_output,
    mean_tensors,
    set_bias,
)
from litequant.quantize.context import calibration_inputs  # noqa: E402
from litequant.quantize.flatbuffer import buffer_array, read_model  # noqa: E402
from litequant.quantize.passes.bias_correction import correct_biases  # noqa: E402


def empirical_correction(quantized_model: bytes, float_model: bytes, inputs: np.ndarray
                         ) -> bytes:
    """Sequential empirical bias correction (module docstring); one integer pass per op."""
    from ai_edge_litert.tools import flatbuffer_utils

    quantized, reference = read_model(quantized_model), read_model(float_model)
    ops, _ = correctable_ops(quantized, reference)
    float_tensors = reference.subgraphs[0].tensors
    float_means = mean_tensors(float_model, inputs, [op.float_op.inputs[0] for op in ops])
    current = quantized_model
    for op, float_mean in zip(ops, float_means, strict=True):
        float_bias = buffer_array(reference, float_tensors[op.float_op.inputs[2]],
                                  np.float32).astype(np.float64)
        target = mean_output(op, float_mean, op.weights) + float_bias
        (integer_mean,) = mean_tensors(current, inputs, [op.op.inputs[0]])
        bias = bias_values(quantized, op)
        set_bias(quantized, op, bias - (mean_output(op, integer_mean, op.rounded) + bias
                                         - target))
        current = bytes(flatbuffer_utils.convert_object_to_bytearray(quantized))
    return current


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path, help="a project that has run dvc repro")
    args = parser.parse_args(argv)
    project = args.project.resolve()
    params = load(str(project / "params.yaml"))
    calibration = section(params, CalibrationParams, str(project / "params.yaml"))
    info = json.loads((project / "data/export/model.json").read_text())
    family = info["preprocessing"]
    inputs = calibration_inputs(np.load(project / "data/prepare/calibration/images.npy",
                                        mmap_mode="r"), calibration, family)
    float_model = (project / "data/convert/float32/model.tflite").read_bytes()
    plain = (project / "data/convert/int8_plain/model.tflite").read_bytes()
    images = np.load(project / "data/prepare/evaluation/images.npy", mmap_mode="r")
    labels = np.load(project / "data/prepare/evaluation/labels.npy")
    float_probabilities = np.load(project / "data/evaluate_keras/probabilities.npy")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, build in (("none (int8_plain)", lambda: plain),
                            ("analytic", lambda: correct_biases(plain, float_model, inputs)[0]),
                            ("empirical", lambda: empirical_correction(plain, float_model,
                                                                       inputs))):
            started = time.perf_counter()
            model = build()
            seconds = time.perf_counter() - started
            path = Path(scratch) / "model.tflite"
            path.write_bytes(model)
            metrics, _ = evaluate_model(path, images, labels, float_probabilities, family,
                                        info["output"], workers=2, batch_size=8)
            rows.append((name, metrics, seconds))
    print(f"{info['name']}: {len(labels)} evaluation images, {len(inputs)} calibration images\n")
    print("| bias correction | agreement | top-1 | SQNR dB | KL | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, metrics, seconds in rows:
        print(f"| {name} | {metrics['agreement']:.1f} | {metrics['top1']:.1f} | "
              f"{metrics['sqnr_db']:.1f} | {metrics['kl_divergence']:.3f} | {seconds:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
