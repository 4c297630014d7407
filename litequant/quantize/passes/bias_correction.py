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

Imports numpy, ai-edge-litert and the project's LiteRT, flatbuffer and convolution-patch
helpers only (never TensorFlow).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from litequant.core.litert import intermediate_tensors
from litequant.quantize.convolution import padded_input
from litequant.quantize.flatbuffer import (
    INT8,
    INT32,
    INT64,
    PADDING_SAME,
    buffer_array,
    matched_weight_ops,
    read_model,
    tensor_name,
)

if TYPE_CHECKING:
    from litequant.quantize.context import PassInputs


#: ``calibration.bias_correction`` values: correct the biases, or leave the converter's model.
METHODS = ("analytic", "none")


@dataclass
class CorrectableOp:
    """One weight op of the integer model with its counterpart in the float model."""

    kind: str        # CONV_2D | DEPTHWISE_CONV_2D | FULLY_CONNECTED
    op: Any          # the integer model's operator (flatbuffer object)
    float_op: Any    # the float model's operator
    weights: np.ndarray        # float (BN-folded) weights, TFLite layout, float64
    rounded: np.ndarray        # the integer model's weights, dequantized, float64
    bias: Any                  # the integer model's bias tensor (int32 / int64)
    bias_scale: np.ndarray     # per output channel, float64

    @property
    def output_channels(self) -> int:
        return int(self.weights.shape[-1] if self.kind == "DEPTHWISE_CONV_2D"
                   else self.weights.shape[0])


def correctable_ops(quantized, reference) -> tuple[list[CorrectableOp], list[str]]:
    """The correctable ops (per-channel int8 weights, integer bias) and the names of the rest."""
    q_tensors = quantized.subgraphs[0].tensors
    f_tensors = reference.subgraphs[0].tensors
    found, skipped = [], []
    for kind, q_op, f_op in matched_weight_ops(quantized, reference):
        weight = q_tensors[q_op.inputs[1]]
        params = weight.quantization
        has_bias = len(q_op.inputs) > 2 and q_op.inputs[2] >= 0
        bias = q_tensors[q_op.inputs[2]] if has_bias else None
        if (weight.type != INT8 or params is None or params.scale is None
                or bias is None or bias.type not in (INT32, INT64)
                or bias.quantization is None or bias.quantization.scale is None):
            skipped.append(tensor_name(q_tensors[q_op.outputs[0]]))
            continue
        w = buffer_array(reference, f_tensors[f_op.inputs[1]], np.float32).astype(np.float64)
        q = buffer_array(quantized, weight, np.int8).astype(np.float64)
        if w.shape != q.shape:
            raise ValueError(f"weight shapes differ for {tensor_name(weight)}: {w.shape} "
                             f"against {q.shape}")
        axis = int(params.quantizedDimension)
        scales = np.asarray(params.scale, dtype=np.float64)
        shape = [1] * q.ndim
        if len(scales) > 1:
            shape[axis] = -1
        zero = np.asarray(params.zeroPoint if params.zeroPoint is not None else [0],
                          dtype=np.float64)
        rounded = (q - zero.reshape(shape)) * scales.reshape(shape)
        bias_scale = np.asarray(bias.quantization.scale, dtype=np.float64)
        op = CorrectableOp(kind, q_op, f_op, w, rounded, bias, bias_scale)
        if len(bias_scale) not in (1, op.output_channels):
            skipped.append(tensor_name(q_tensors[q_op.outputs[0]]))
            continue
        found.append(op)
    return found, skipped


# --- the mean of a linear op over its input map --------------------------------------------------

def tap_means(mean_input: np.ndarray, kernel_hw: tuple[int, int], stride: tuple[int, int],
              dilation: tuple[int, int], same_padding: bool) -> np.ndarray:
    """For each kernel tap, the mean over output positions of the input it reads.

    Args:
        mean_input: ``(height, width, channels)`` mean input map (any real values).
        kernel_hw, stride, dilation: the convolution's geometry ``(rows, columns)``.
        same_padding: TFLite ``SAME`` padding (zeros, the extra row/column after), else ``VALID``.

    Returns:
        ``float64`` ``(kernel_h, kernel_w, channels)``: ``conv(mean_input, K)`` averaged over
        output positions equals ``sum(K * tap_means)`` for any kernel ``K`` of one output channel.
    """
    (kh, kw), (sh, sw), (dh, dw) = kernel_hw, stride, dilation
    x, out_h, out_w = padded_input(np.asarray(mean_input, dtype=np.float64), kernel_hw, stride,
                                   dilation, same_padding)
    taps = np.empty((kh, kw, x.shape[2]))
    for i in range(kh):  # strided windows: no copy of every patch
        for j in range(kw):
            window = x[i * dh: i * dh + (out_h - 1) * sh + 1: sh,
                       j * dw: j * dw + (out_w - 1) * sw + 1: sw]
            taps[i, j] = window.mean(axis=(0, 1))
    return taps


def mean_output(op: CorrectableOp, mean_input: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Per-output-channel mean of the op's linear part (no bias) with ``kernel`` over the
    positions of an input whose mean map is ``mean_input``.

    Args:
        op: the op (its geometry is read from the float model's operator).
        mean_input: ``(height, width, channels)`` for convolutions; ``(..., features)`` for
            ``FULLY_CONNECTED`` (leading axes are averaged).
        kernel: weights in the op's TFLite layout (``(out, kh, kw, in)`` for ``CONV_2D``,
            ``(1, kh, kw, in * multiplier)`` for depthwise, ``(out, in)`` for fully connected).

    Returns:
        ``float64`` ``(output_channels,)``.
    """
    if op.kind == "FULLY_CONNECTED":
        features = np.asarray(mean_input, np.float64).reshape(-1, kernel.shape[1]).mean(axis=0)
        return kernel @ features
    options = op.float_op.builtinOptions
    stride = (int(options.strideH), int(options.strideW))
    dilation = (int(options.dilationHFactor), int(options.dilationWFactor))
    taps = tap_means(mean_input, (kernel.shape[1], kernel.shape[2]), stride, dilation,
                     int(options.padding) == PADDING_SAME)
    if op.kind == "CONV_2D":
        return np.einsum("oijc,ijc->o", kernel, taps)
    multiplier = kernel.shape[3] // taps.shape[2]
    return np.einsum("ijc,ijc->c", kernel[0], np.repeat(taps, multiplier, axis=2))


# --- measuring mean tensors with LiteRT -----------------------------------------------------------

def mean_tensors(model_bytes: bytes, inputs: np.ndarray, tensors: list[int],
                 on_image: Callable[[], None] | None = None) -> list[np.ndarray]:
    """Mean over ``inputs`` of the given tensors of a ``.tflite`` model (dequantized).

    Args:
        model_bytes: the model.
        inputs: ``float32`` ``(N, ...)`` model inputs in real units (quantized with the input's
            own scale and zero point for an integer input).
        tensors: tensor indices of subgraph 0.

    Returns:
        one ``float64`` array per tensor, the batch axis dropped.
    """
    sums: list[np.ndarray | None] = [None] * len(tensors)
    for values in intermediate_tensors(model_bytes, inputs, tensors):
        for position, value in enumerate(values):
            value = value[0].astype(np.float64)
            sums[position] = value if sums[position] is None else sums[position] + value
        if on_image is not None:
            on_image()
    return [s / len(inputs) for s in sums]


def bias_values(model, op: CorrectableOp) -> np.ndarray:
    """The op's bias in real units, ``float64`` ``(output_channels,)``."""
    dtype = np.int32 if op.bias.type == INT32 else np.int64
    return buffer_array(model, op.bias, dtype).astype(np.float64) * op.bias_scale


def set_bias(model, op: CorrectableOp, values: np.ndarray) -> None:
    """Write ``values`` (real units) into the op's integer bias, in the bias's own scale."""
    dtype = np.int32 if op.bias.type == INT32 else np.int64
    info = np.iinfo(dtype)
    ints = np.clip(np.round(values / op.bias_scale), info.min, info.max).astype(dtype)
    model.buffers[op.bias.buffer].data = np.frombuffer(ints.tobytes(), dtype=np.uint8)


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
