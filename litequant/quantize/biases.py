"""The weight ops whose biases a bias-correction pass rewrites, and what it measures about
them: shared by :mod:`litequant.quantize.passes.bias_correction` (analytic) and
:mod:`litequant.quantize.passes.empirical_bias` (op by op on the real integer model).

:func:`correctable_ops` pairs each ``CONV_2D``, ``DEPTHWISE_CONV_2D`` and ``FULLY_CONNECTED`` op of
an integer model (per-channel ``int8`` weights, an integer bias) with the same op of the float
model; :func:`mean_output` is an op's mean output for a mean input map (zero padding handled
exactly), :func:`mean_tensors` the mean of chosen tensors over inputs, and :func:`bias_values` /
:func:`set_bias` read and write a bias in real units. numpy, ai-edge-litert and the project's
LiteRT, flatbuffer and convolution-patch helpers only (never TensorFlow).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    tensor_name,
)


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
