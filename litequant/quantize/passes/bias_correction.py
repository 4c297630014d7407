"""Bias correction of an integer model's weight rounding (Nagel et al. 2019, "Data-Free
Quantization through Weight Equalization and Bias Correction", section 4.2).

Rounding a layer's weights to int8 changes its output by ``conv(x, W_q - W)``. The *mean* of
that change over the data is a systematic per-output-channel shift that noise does not average
away; it propagates through ReLUs and residual sums and tilts the logits. Bias correction
subtracts the expected shift from the layer's bias, so the integer layer's output is unbiased.

It works on the converted models themselves, so it corrects exactly the rounding that happened
(the converter's ``max|w| / 127`` grid or :mod:`litequant.quantize.passes.weight_grid`'s): for every
``CONV_2D``, ``DEPTHWISE_CONV_2D`` and ``FULLY_CONNECTED`` op of an integer model whose weights
are per-channel ``int8``, ``W_q`` are its dequantized weights and ``W`` the float (BatchNorm-
folded) weights of the same op in the float32 conversion of the same SavedModel. The
correction goes into the op's ``int32`` (``int64`` for 16-bit activations) bias, in the bias's
own scale (``input_scale * weight_scale``): activation ranges, ops and size are unchanged, so
the model runs at the same speed. Ops kept float (``int8_selective``) are left alone.

The shift is ``E[conv(x, W_q - W)]`` with ``x`` the op's input in the *float* model: since the
op is linear this is the weight error applied to ``E[x]``, the calibration images' mean input
*map* (height x width x channels), with zero padding at the borders handled exactly. One pass of
the float32 model over the calibration images (a few seconds) gives every op's ``E[x]``.

The *empirical* form (each op's mean pre-activation in the partly corrected integer model set
equal to the float model's, op by op, one integer-model pass per op), which also corrects the
mean error of the int8 activations, is the separate, opt-in pass
:mod:`litequant.quantize.passes.empirical_bias`: measured by
``benchmarks/bias_correction_study.py`` on both ../shared MobileNets and by
``benchmarks/activation_error_study.py`` on EfficientNet-Lite1 it is no better and many times
slower. Measuring every op's shift in one pass instead double-counts (an op absorbs a shift its
producers also correct).

The weight ops it corrects and the means it measures are :mod:`litequant.quantize.biases`'s
(shared with the empirical pass). Imports numpy, ai-edge-litert and the project's helpers only
(never TensorFlow).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from litequant.quantize.biases import (
    bias_values,
    correctable_ops,
    mean_output,
    mean_tensors,
    set_bias,
)
from litequant.quantize.flatbuffer import read_model

if TYPE_CHECKING:
    from litequant.quantize.context import PassInputs


#: ``calibration.bias_correction`` values: correct the biases, or leave the converter's model.
METHODS = ("analytic", "none")


def correct_biases(quantized_model: bytes, float_model: bytes, calibration_inputs: np.ndarray,
                   method: str = "analytic", on_image: Callable[[], None] | None = None
                   ) -> tuple[bytes, dict[str, Any]]:
    """Bias-correct an integer model's weight rounding.

    Args:
        quantized_model: a ``.tflite`` made from a SavedModel by the converter (full integer,
            int8 per-channel weights; 16-bit activations are fine; ops kept float are skipped).
        float_model: the float32 conversion of the same SavedModel (same weight ops in the same
            order, BN folded into the weights).
        calibration_inputs: ``float32`` ``(N, height, width, 3)`` in the model's input range: the
            calibration images, preprocessed exactly as for evaluation.
        method: ``analytic`` (module docstring), or ``none`` (the model is returned unchanged).
        on_image: called after each calibration image the float model runs on (progress).

    Returns:
        ``(model bytes, summary)``; ``summary`` has ``method`` and, when corrected,
        ``num_images``, ``ops`` (corrected), ``skipped`` (output tensor names of weight ops left
        alone: kept float, or without an integer bias), ``rms_shift_steps`` /
        ``max_shift_steps`` (the corrections in units of each channel's bias step).

    Raises:
        ValueError: an unknown method, or models whose weight ops do not correspond.
    """
    if method not in METHODS:
        raise ValueError(f"unknown bias-correction method {method!r}; expected one of {METHODS}")
    if method == "none":
        return quantized_model, {"method": "none"}
    from ai_edge_litert.tools import flatbuffer_utils

    quantized = read_model(quantized_model)
    ops, skipped = correctable_ops(quantized, read_model(float_model))
    means = mean_tensors(float_model, calibration_inputs, [op.float_op.inputs[0] for op in ops],
                         on_image)
    steps = []
    for op, mean_input in zip(ops, means, strict=True):
        shift = mean_output(op, mean_input, op.rounded - op.weights)
        set_bias(quantized, op, bias_values(quantized, op) - shift)
        steps.append(shift / op.bias_scale)
    steps_all = np.abs(np.concatenate(steps)) if steps else np.zeros(1)
    summary = {"method": method, "num_images": int(len(calibration_inputs)), "ops": len(ops),
               "skipped": skipped,
               "rms_shift_steps": float(np.sqrt(np.mean(steps_all ** 2))),
               "max_shift_steps": float(np.max(steps_all))}
    return bytes(flatbuffer_utils.convert_object_to_bytearray(quantized)), summary


def apply(model_bytes: bytes, inputs: PassInputs) -> tuple[bytes, dict[str, Any]]:
    """The ``bias_correction`` pass: :func:`correct_biases` against the float32 variant on the
    calibration inputs, by the ``calibration.bias_correction`` method (``none``: unchanged)."""
    return correct_biases(model_bytes, inputs.float32_model(), inputs.calibration,
                          inputs.calibration_params.bias_correction)
