"""Empirical bias correction: each op's mean pre-activation in the real integer model set equal
to the float model's, so the mean error the quantized *activations* accumulate is corrected too
(Nagel et al. 2019, section 4.2, "empirical bias correction"; Finkelstein et al. 2019,
"Fighting Quantization Bias With Bias").

:mod:`~litequant.quantize.passes.bias_correction` (analytic) removes the mean shift of each op's
*weight* rounding, ``E[conv(x_f, W_q - W)]``, with ``x_f`` the op's input in the float model. In
the integer model the op's input is not ``x_f`` but ``x_q``, the output of every quantized op
before it: int8 activations, clipped by ReLU6 after noise, are biased, and the bias grows along
the network (a genuinely float-trained model's early layers, whose activations spend few int8
levels on most values, shift every later mean). The empirical correction measures ``E[x_q]`` in
the real quantized model on the calibration images and sets each op's bias so that its mean
pre-activation equals the float model's::

    b_q = b_f + conv(E[x_f], W) - conv(E[x_q], W_q)

(``conv`` of a mean input map, averaged over output positions: the op is linear, so this is the
mean of its linear part exactly, zero padding at the borders included). With ``E[x_q] = E[x_f]``
it is the analytic correction.

Correcting an op changes the inputs of every later op, so the ops are corrected one at a time in
execution order: op ``k``'s ``E[x_q]`` is measured in the integer model whose ops before ``k``
are already corrected (one run of the integer model per op over the first :data:`MAX_IMAGES`
calibration images; the bias is rewritten in place in the serialised model between runs).
Correcting every op from one measurement instead diverges: each op is then also corrected for
an input shift its producers are corrected for in the same pass, and along 80 ops the
over-corrections grow (measured: EfficientNet-Lite1 agreement 97.0 -> 66 % after one such pass).
Cost: one integer-model run per weight op and image; ops, scales, weights and size are
unchanged.

Measured (``benchmarks/activation_error_study.py``, docs/results.md): on EfficientNet-Lite1,
pooled over three splits, it is not better than the analytic correction (agreement 98.17 %
against 98.50 %, 6 images won and 8 lost against it; logits SQNR 19.4-21.1 dB against
21.1-21.3 dB) and costs 61-380 s there on 2 shared cores, so it is an opt-in variant
(``int8_empirical``), not part of the defaults.

What it corrects is the mean only: the noise of the int8 activations around it stays (16-bit
activations or keeping the worst ops float remove that). Ops kept float are left alone, as are
ops without a per-channel int8 weight and an integer bias.

Imports numpy, ai-edge-litert and the project's flatbuffer and bias-correction helpers (never
TensorFlow).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from litequant.quantize.biases import (
    CorrectableOp,
    bias_values,
    correctable_ops,
    mean_output,
    mean_tensors,
    set_bias,
)
from litequant.quantize.flatbuffer import buffer_array, buffer_span, model_bytes, read_model

if TYPE_CHECKING:
    from litequant.quantize.context import PassInputs

#: Calibration images the op-by-op measurement runs on (the first ones): the integer model
#: runs once per op on each, so this sets the cost; the mean of a convolution's input over
#: this many images and all its positions is estimated closely.
MAX_IMAGES = 32


def float_bias(reference, op: CorrectableOp) -> np.ndarray:
    """The float model's bias of ``op`` (zeros when it has none), ``float64`` ``(channels,)``."""
    inputs = op.float_op.inputs
    if len(inputs) < 3 or inputs[2] < 0:
        return np.zeros(op.output_channels)
    tensor = reference.subgraphs[0].tensors[inputs[2]]
    return buffer_array(reference, tensor, np.float32).astype(np.float64).reshape(-1)


def target_biases(ops: list[CorrectableOp], float_means: list[np.ndarray],
                  quantized_means: list[np.ndarray], float_biases: list[np.ndarray]
                  ) -> list[np.ndarray]:
    """Each op's bias that makes its mean pre-activation in the integer model the float model's:
    ``b_f + conv(E[x_f], W) - conv(E[x_q], W_q)``, real units, ``float64`` ``(channels,)``."""
    return [bias + mean_output(op, f_mean, op.weights) - mean_output(op, q_mean, op.rounded)
            for op, f_mean, q_mean, bias in zip(ops, float_means, quantized_means, float_biases,
                                                strict=True)]


def correct_empirically(quantized_model: bytes, float_model: bytes,
                        calibration_inputs: np.ndarray, max_images: int = MAX_IMAGES,
                        on_op: Callable[[], None] | None = None
                        ) -> tuple[bytes, dict[str, Any]]:
    """Set every correctable op's bias, in execution order, so that its mean pre-activation
    over the calibration images in the integer model (corrected so far) equals the float
    model's (module docstring).

    Args:
        quantized_model: a full-integer ``.tflite`` made from a SavedModel by the converter
            (per-channel int8 weights, integer biases; ops kept float are skipped).
        float_model: the float32 conversion of the same SavedModel.
        calibration_inputs: ``float32`` ``(N, height, width, 3)`` in the model's input range;
            the first ``max_images`` are used.
        max_images: at most this many calibration images (at least 1).
        on_op: called after each op is corrected (progress).

    Returns:
        ``(model bytes, summary)``: ``summary`` has ``ops``, ``skipped``, ``num_images``, and
        ``rms_shift_steps`` / ``max_shift_steps``: how far the biases moved from the
        converter's, in each channel's bias step.

    Raises:
        ValueError: ``max_images < 1``, or models whose weight ops do not correspond.
    """
    if max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}")
    images = np.asarray(calibration_inputs)[:max_images]
    quantized, reference = read_model(quantized_model), read_model(float_model)
    ops, skipped = correctable_ops(quantized, reference)
    float_means = mean_tensors(float_model, images, [op.float_op.inputs[0] for op in ops])
    current = bytearray(model_bytes(quantized))  # buffer indices now those of ``quantized``
    steps = []
    for op, float_mean in zip(ops, float_means, strict=True):
        [quantized_mean] = mean_tensors(bytes(current), images, [op.op.inputs[0]])
        [bias] = target_biases([op], [float_mean], [quantized_mean],
                               [float_bias(reference, op)])
        steps.append((bias - bias_values(quantized, op)) / op.bias_scale)
        set_bias(quantized, op, bias)
        start, length = buffer_span(current, op.bias.buffer)
        data = np.asarray(quantized.buffers[op.bias.buffer].data, dtype=np.uint8).tobytes()
        if len(data) != length:
            raise ValueError(f"bias buffer {op.bias.buffer} changed size")
        current[start:start + length] = data
        if on_op is not None:
            on_op()
    moved = np.abs(np.concatenate(steps)) if steps else np.zeros(1)
    summary = {"ops": len(ops), "skipped": skipped, "num_images": int(len(images)),
               "rms_shift_steps": float(np.sqrt(np.mean(moved ** 2))),
               "max_shift_steps": float(np.max(moved))}
    return bytes(current), summary


def apply(model_bytes_: bytes, inputs: PassInputs) -> tuple[bytes, dict[str, Any]]:
    """The ``empirical_bias`` pass: :func:`correct_empirically` against the float32 variant on
    the calibration inputs."""
    return correct_empirically(model_bytes_, inputs.float32_model(), inputs.calibration)
