"""GPTQ weight rounding (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers"; the Optimal Brain Quantization update of Frantar and
Alistarh 2022) for the convolutions of a full-integer model.

Round-to-nearest rounds every weight on its own. GPTQ rounds the weights of one output channel
one input column at a time and, after each, moves the not-yet-rounded weights of that channel
to cancel the rounding error's effect on the op's output over the calibration inputs: with
``H = E[x xᵀ]`` (``x``: the op's input patch, as the float model sees it), it minimises
``(w - q)ᵀ H (w - q)``, the mean squared change of the op's output, instead of ``|w - q|²``.
Columns are taken in order of decreasing ``diag(H)`` (the inputs that matter most first),
``H`` is damped by 1 % of its mean diagonal, and the grid (per-channel scales, ``[-127, 127]``)
is the model's own, so scales, biases, ops, size and speed are unchanged.

ai-edge-quantizer's GPTQ covers ``FULLY_CONNECTED`` only; this covers ``CONV_2D`` (input
patches of ``kh * kw * in`` values), ``DEPTHWISE_CONV_2D`` (each channel its own
``kh * kw`` patch and ``H``) and ``FULLY_CONNECTED``, on the converter's model, reading the float
(BN-folded) weights from the float32 conversion of the same SavedModel. One float32 pass over
the calibration images gives every op's ``H`` (from at most :data:`MAX_POSITIONS` output
positions per image).

Imports numpy, ai-edge-litert and the project's LiteRT and flatbuffer helpers (never
TensorFlow).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from litequant.core.litert import intermediate_tensors
from litequant.quantize.convolution import input_patches
from litequant.quantize.flatbuffer import (
    INT8,
    PADDING_SAME,
    buffer_array,
    matched_weight_ops,
    read_model,
    tensor_name,
)

if TYPE_CHECKING:
    from litequant.quantize.context import PassInputs


#: Damping added to ``H``'s diagonal, as a fraction of its mean diagonal (GPTQ's default).
DAMPING = 0.01
#: Output positions per image a convolution's ``H`` is estimated from (evenly spaced; only the
#: early, high-resolution layers have more, and their ``H`` is small: ``K`` of 27 to a few
#: hundred).
MAX_POSITIONS = 1024
_BLOCK = 128  # columns rounded between two updates of the rest (GPTQ's lazy batch updates)


def gptq_round(weights: np.ndarray, hessian: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """GPTQ-round the rows of a weight matrix to a symmetric per-row int8 grid.

    Args:
        weights: ``(rows, columns)`` float weights, one row per output channel.
        hessian: ``(columns, columns)`` ``E[x xᵀ]`` of the inputs the rows multiply (shared by
            every row), or ``(rows, columns, columns)``, one per row (depthwise channels).
        scales: ``(rows,)`` grid step of each row (``0``: the row is all zeros).

    Returns:
        ``int8`` ``(rows, columns)`` levels in ``[-127, 127]``; ``levels * scales[:, None]``
        approximates ``weights`` minimising ``(w - q)ᵀ H (w - q)`` greedily, column by column.
    """
    w = np.array(weights, dtype=np.float64)
    rows, columns = w.shape
    shared = hessian.ndim == 2
    h = np.array(hessian, dtype=np.float64).reshape(-1, columns, columns)
    diagonal = np.einsum("rkk->rk", h)
    dead = diagonal <= 0  # inputs that were always zero: any weight does
    h[:, np.arange(columns), np.arange(columns)] += np.where(dead, 1.0, 0.0)
    mean_diagonal = np.einsum("rkk->rk", h).mean(axis=1)
    h[:, np.arange(columns), np.arange(columns)] += (DAMPING * mean_diagonal)[:, None]
    order = np.argsort(-np.diag(h[0]), kind="stable") if shared else np.arange(columns)
    w = w[:, order]
    h = h[:, order][:, :, order]
    # the upper Cholesky factor of H⁻¹ gives each step's error feedback (GPTQ, section 3)
    upper = np.linalg.cholesky(np.linalg.inv(h)).transpose(0, 2, 1)
    step = np.where(scales > 0, scales, 1.0).astype(np.float64)
    levels = np.zeros((rows, columns))
    for start in range(0, columns, _BLOCK):  # GPTQ's lazy batch updates: same result, faster
        end = min(start + _BLOCK, columns)
        errors = np.zeros((rows, end - start))
        for column in range(start, end):
            levels[:, column] = np.clip(np.round(w[:, column] / step), -127, 127)
            error = (w[:, column] - levels[:, column] * step) / upper[:, column, column]
            w[:, column + 1:end] -= error[:, None] * upper[:, column, column + 1:end]
            errors[:, column - start] = error
        if end < columns:
            w[:, end:] -= (errors @ upper[0, start:end, end:] if shared else
                           np.matmul(errors[:, None, :], upper[:, start:end, end:])[:, 0, :])
    levels[scales <= 0] = 0
    return levels[:, np.argsort(order)].astype(np.int8)


def input_gram(kind: str, options: Any, weights: np.ndarray, x: np.ndarray
               ) -> tuple[np.ndarray, int]:
    """``sum(x xᵀ)`` over one input's patches (at most :data:`MAX_POSITIONS` output positions,
    evenly spaced), and their number.

    Args:
        kind: ``CONV_2D`` | ``DEPTHWISE_CONV_2D`` | ``FULLY_CONNECTED``.
        options: the op's builtin options (stride, dilation, padding of a convolution).
        weights: the op's weights in TFLite layout (their shape gives the kernel size).
        x: the op's input for one image (leading batch axis of 1).

    Returns:
        ``(gram, count)``: ``(K, K)`` with ``K = kh * kw * in`` (convolution, in the weights'
        ``(kh, kw, in)`` order) or ``in`` (fully connected); ``(channels, kh * kw, kh * kw)``
        for depthwise, one per output channel. ``float64``.
    """
    if kind == "FULLY_CONNECTED":
        rows = np.asarray(x, dtype=np.float64).reshape(-1, weights.shape[1])
        return rows.T @ rows, len(rows)
    x = np.asarray(x).reshape(np.shape(x)[-3:])
    kernel_hw = (weights.shape[1], weights.shape[2])
    patches = input_patches(x, kernel_hw, (int(options.strideH), int(options.strideW)),
                            (int(options.dilationHFactor), int(options.dilationWFactor)),
                            int(options.padding) == PADDING_SAME, MAX_POSITIONS).astype(np.float64)
    if kind == "CONV_2D":
        rows = patches.reshape(len(patches), -1)
        return rows.T @ rows, len(rows)
    taps = patches.reshape(len(patches), kernel_hw[0] * kernel_hw[1], -1).transpose(2, 0, 1)
    gram = np.matmul(taps.transpose(0, 2, 1), taps)  # (channels, kh * kw, kh * kw)
    multiplier = weights.shape[3] // x.shape[2]
    return (np.repeat(gram, multiplier, axis=0) if multiplier > 1 else gram), len(patches)


def output_power(rows: np.ndarray, hessian: np.ndarray) -> float:
    """``sum_r rows[r]ᵀ H rows[r]``: the mean squared output of weights ``rows`` (or of a
    weight error) over inputs with ``H = E[x xᵀ]`` (shared ``(K, K)`` or per row
    ``(rows, K, K)``), summed over output channels."""
    if hessian.ndim == 2:
        return float(np.sum((rows @ hessian) * rows))
    return float(np.sum(np.matmul(rows[:, None, :], hessian)[:, 0, :] * rows))


def _as_rows(kind: str, weights: np.ndarray) -> np.ndarray:
    """Weights in TFLite layout → ``(output channels, columns)`` in the patch order."""
    if kind == "DEPTHWISE_CONV_2D":  # (1, kh, kw, channels)
        return weights[0].reshape(-1, weights.shape[3]).T
    return weights.reshape(weights.shape[0], -1)


def _from_rows(kind: str, rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return rows.T.reshape(shape) if kind == "DEPTHWISE_CONV_2D" else rows.reshape(shape)


def gptq_model(int8_model: bytes, float_model: bytes, calibration_inputs: np.ndarray,
               on_image: Callable[[], None] | None = None) -> tuple[bytes, dict[str, Any]]:
    """Re-round the int8 weights of a full-integer model with :func:`gptq_round`.

    Args:
        int8_model: a ``.tflite`` the converter made full-integer (per-channel int8 weights).
        float_model: the float32 conversion of the same SavedModel (same weight ops in the same
            order; BN folded into the weights).
        calibration_inputs: ``float32`` ``(N, height, width, 3)`` in the model's input range:
            the calibration images, preprocessed exactly as for evaluation.
        on_image: called after each image the float model runs on (progress).

    Returns:
        ``(model bytes, summary)``; ``summary`` has ``ops`` (re-rounded), ``skipped`` (weight
        ops left alone: kept float or not per-channel int8), ``num_images`` and
        the relative output error ``sqrt(tr(E H Eᵀ) / tr(W H Wᵀ))`` summed over ops, ``E`` the
        weight error, for round-to-nearest (``output_rel_error_nearest``) and for GPTQ
        (``output_rel_error``).

    Raises:
        ValueError: the two models' weight ops do not correspond.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    quantized, reference = read_model(int8_model), read_model(float_model)
    q_tensors, f_tensors = quantized.subgraphs[0].tensors, reference.subgraphs[0].tensors
    ops, skipped = [], []
    for kind, q_op, f_op in matched_weight_ops(quantized, reference):
        weight = q_tensors[q_op.inputs[1]]
        params = weight.quantization
        w = buffer_array(reference, f_tensors[f_op.inputs[1]], np.float32).astype(np.float64)
        if (weight.type != INT8 or params is None or params.scale is None
                or len(params.scale) != _as_rows(kind, w).shape[0]):
            skipped.append(tensor_name(q_tensors[q_op.outputs[0]]))
            continue
        if w.shape != tuple(weight.shape):
            raise ValueError(f"weight shapes differ for {tensor_name(weight)}: {w.shape} "
                             f"against {tuple(weight.shape)}")
        ops.append((kind, f_op, weight, w))
    grams: list[np.ndarray | None] = [None] * len(ops)
    counts = [0] * len(ops)
    inputs = [f_op.inputs[0] for _, f_op, _, _ in ops]
    for values in intermediate_tensors(float_model, calibration_inputs, inputs):
        for position, ((kind, f_op, _, w), x) in enumerate(zip(ops, values, strict=True)):
            gram, count = input_gram(kind, f_op.builtinOptions, w, x)
            grams[position] = gram if grams[position] is None else grams[position] + gram
            counts[position] += count
        if on_image is not None:
            on_image()
    nearest_error = gptq_error = signal = 0.0
    for (kind, _, weight, w), gram, count in zip(ops, grams, counts, strict=True):
        hessian = gram / max(count, 1)
        scales = np.asarray(weight.quantization.scale, dtype=np.float64)
        rows = _as_rows(kind, w)
        levels = gptq_round(rows, hessian, scales)
        nearest = np.clip(np.round(rows / np.where(scales > 0, scales, 1.0)[:, None]), -127, 127)
        nearest_error += output_power(rows - nearest * scales[:, None], hessian)
        gptq_error += output_power(rows - levels * scales[:, None], hessian)
        signal += output_power(rows, hessian)
        packed = _from_rows(kind, levels, w.shape).astype(np.int8)
        quantized.buffers[weight.buffer].data = np.frombuffer(packed.tobytes(), dtype=np.uint8)
    summary = {"ops": len(ops), "skipped": skipped, "num_images": int(len(calibration_inputs)),
               "output_rel_error_nearest": (nearest_error / signal) ** 0.5 if signal else 0.0,
               "output_rel_error": (gptq_error / signal) ** 0.5 if signal else 0.0}
    return bytes(flatbuffer_utils.convert_object_to_bytearray(quantized)), summary


def apply(model_bytes: bytes, inputs: PassInputs) -> tuple[bytes, dict[str, Any]]:
    """The ``gptq`` pass: :func:`gptq_model` with the float32 variant's weights and the
    calibration inputs."""
    return gptq_model(model_bytes, inputs.float32_model(), inputs.calibration)
