"""Per-channel int8 weight scales chosen by reconstruction error ("grid" weight rounding).

TensorFlow's converter quantizes every weight tensor symmetrically per output channel with
``scale = max|w| / 127`` and rounds to nearest. That fixed rule re-rounds weights which already
lie on a coarser uniform grid (the dequantized weights of a quantization-aware-trained model,
``w = s * (q - z)``, typically per-tensor) onto a *misaligned* grid and loses information.

:func:`choose_scales` picks, per output channel, the scale ``max|w| / k`` for the integer
``k`` in ``[min_levels, 127]`` that minimises the squared reconstruction error
``sum((w - s * round(w / s))**2)`` (ties: the largest ``k``, i.e. the converter's own rule).
No value is ever clipped (``|w / s| <= k <= 127``). If a channel's weights lie on a symmetric
grid of step ``s0`` with ``max|w| = k0 * s0`` and ``k0`` in range, the error at ``k0`` is zero
and that grid is recovered exactly; for ordinary float weights the rule can only lower the
weight error against ``k = 127`` (the same candidate is always tried). It is the "MSE-optimal
scale without clipping" rule (cf. ai-edge-quantizer's ``DEQUANTIZED_WEIGHT_RECOVERY``, which
requires an exact grid and does not support depthwise convolutions).

:func:`regrid` applies the chosen scales to a model whose weights are already int8 per channel:
the ``int8`` weights and per-channel scales of every ``CONV_2D``, ``DEPTHWISE_CONV_2D`` and
``FULLY_CONNECTED`` op are rewritten from the float weights of the float32 conversion of the
same model. Three layouts are handled (:func:`int8_weight`):

* full integer (the converter's ``int8``): the op reads the int8 constant, its ``int32`` bias is
  requantized to ``input_scale * weight_scale``;
* weight-only (ai-edge-quantizer's ``weight_only_int8``): the op reads the float output of a
  ``DEQUANTIZE`` op whose input is the int8 constant; the bias is float and stays;
* dynamic range / hybrid: the op reads the int8 constant with float activations; float bias.

Ops, activation ranges and sizes are unchanged, so the model runs at its own speed.

Imports numpy, ai-edge-litert's flatbuffer tools and the standard library only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from litequant.quantize.flatbuffer import (
    INT8,
    buffer_array,
    matched_weight_ops,
    op_name,
    read_model,
    requantize_bias,
    tensor_name,
)

if TYPE_CHECKING:
    from litequant.quantize.context import PassInputs


INT8_MAX = 127
#: The smallest number of positive levels tried (``scale = max|w| / k``).
DEFAULT_MIN_LEVELS = 64
SCALE_RULES = ("max", "mse")


def choose_scales(weights: np.ndarray, axis: int, min_levels: int = DEFAULT_MIN_LEVELS
                  ) -> np.ndarray:
    """Per-channel symmetric int8 scales minimising the rounding error (no clipping).

    Args:
        weights: float weights, any shape; ``axis`` is the channel axis.
        axis: the quantized (output-channel) axis.
        min_levels: the smallest ``k`` tried, in ``[1, 127]``.

    Returns:
        ``float64`` ``(channels,)`` scales ``max|w_c| / k_c`` (``0`` for an all-zero channel).
    """
    if not 1 <= min_levels <= INT8_MAX:
        raise ValueError(f"min_levels must be in [1, {INT8_MAX}], got {min_levels}")
    w = np.moveaxis(np.asarray(weights, dtype=np.float64), axis, 0)
    w = w.reshape(w.shape[0], -1)
    peak = np.max(np.abs(w), axis=1)
    safe = np.where(peak > 0, peak, 1.0)
    best_error = np.full(len(w), np.inf)
    best = safe / INT8_MAX
    for k in range(INT8_MAX, min_levels - 1, -1):
        scale = safe / k
        error = np.sum((w - scale[:, None] * np.round(w / scale[:, None])) ** 2, axis=1)
        better = error < best_error * (1 - 1e-9) - 1e-30  # ties keep the larger k
        best_error = np.where(better, error, best_error)
        best = np.where(better, scale, best)
    return np.where(peak > 0, best, 0.0)


def quantize_with(weights: np.ndarray, scales: np.ndarray, axis: int) -> np.ndarray:
    """``int8`` ``round(w / scale)`` clipped to ``[-127, 127]`` (zero-scale channels: 0)."""
    shape = [1] * np.ndim(weights)
    shape[axis] = -1
    s = np.asarray(scales, dtype=np.float64).reshape(shape)
    safe = np.where(s > 0, s, 1.0)
    q = np.clip(np.round(np.asarray(weights, np.float64) / safe), -INT8_MAX, INT8_MAX)
    return np.where(s > 0, q, 0).astype(np.int8)


def fake_quantize(weights: np.ndarray, axis: int, rule: str = "max",
                  min_levels: int = DEFAULT_MIN_LEVELS) -> np.ndarray:
    """``weights`` as int8 rounding with ``rule`` (``max``: the converter's, ``mse``:
    :func:`choose_scales`) leaves them, dequantized (same shape, ``float64``)."""
    w = np.asarray(weights, dtype=np.float64)
    if rule == "max":
        peak = np.max(np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)), axis=1)
        scales = peak / INT8_MAX
    elif rule == "mse":
        scales = choose_scales(w, axis, min_levels)
    else:
        raise ValueError(f"unknown scale rule {rule!r}; expected one of {SCALE_RULES}")
    shape = [1] * w.ndim
    shape[axis] = -1
    return quantize_with(w, scales, axis).astype(np.float64) * scales.reshape(shape)


# --- rewriting a converted model ----------------------------------------------------------------

def int8_weight(model, op) -> int:
    """The index (subgraph 0) of the constant tensor that holds ``op``'s weights: its weight
    input itself, or, when that input is the output of a ``DEQUANTIZE`` op (ai-edge-quantizer's
    weight-only layout), the ``DEQUANTIZE``'s input."""
    graph = model.subgraphs[0]
    index = op.inputs[1]
    for producer in graph.operators:
        if index in producer.outputs and op_name(model, producer) == "DEQUANTIZE":
            return int(producer.inputs[0])
    return int(index)


def regrid(int8_model: bytes, float_model: bytes, min_levels: int = DEFAULT_MIN_LEVELS
           ) -> tuple[bytes, dict[str, Any]]:
    """Rewrite the int8 per-channel weights of a model with :func:`choose_scales` scales.

    Args:
        int8_model: a ``.tflite`` with int8 per-channel weights: full integer (int32 biases of
            scale ``input_scale * weight_scale``, requantized), weight-only (int8 constants
            feeding ``DEQUANTIZE`` ops) or dynamic range (float biases, left as they are).
        float_model: the float32 conversion of the same model: its weight ops, in the same
            order and with the same weight shapes, hold the float (BN-folded) weights.
        min_levels: the smallest ``k`` tried (:func:`choose_scales`).

    Returns:
        ``(model bytes, summary)``; ``summary`` has ``rule``, ``min_levels``, ``ops`` (rewritten),
        ``skipped`` (weight ops left as they were, e.g. kept float), ``exact_channels`` (channels
        whose chosen grid reproduces the float weights to 1e-3 of the scale),
        ``channels``, ``mean_levels`` (mean chosen ``k``) and the relative weight error before
        and after (``weight_rel_error_max_rule``, ``weight_rel_error``).

    Raises:
        ValueError: the two models' weight ops do not correspond.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    quantized = read_model(int8_model)
    reference = read_model(float_model)
    q_tensors = quantized.subgraphs[0].tensors
    f_tensors = reference.subgraphs[0].tensors
    rewritten, skipped, channels, exact = 0, [], 0, 0
    levels: list[float] = []
    err_before = err_after = power = 0.0
    done: set[int] = set()  # int8 constants already rewritten (shared by several ops)
    for _, q_op, f_op in matched_weight_ops(quantized, reference):
        index = int8_weight(quantized, q_op)
        weight = q_tensors[index]
        params = weight.quantization
        if index in done:
            continue
        if (weight.type != INT8 or params is None or params.scale is None
                or len(params.scale) == 0):
            skipped.append(tensor_name(q_tensors[q_op.outputs[0]]))
            continue
        w = buffer_array(reference, f_tensors[f_op.inputs[1]], np.float32).astype(np.float64)
        if w.shape != tuple(weight.shape):
            raise ValueError(f"weight shapes differ for {tensor_name(weight)}: {w.shape} against "
                             f"{tuple(weight.shape)}")
        axis = int(params.quantizedDimension)
        old_scales = np.asarray(params.scale, dtype=np.float64)
        if len(old_scales) != w.shape[axis]:  # per-tensor weights: leave them
            skipped.append(tensor_name(q_tensors[q_op.outputs[0]]))
            continue
        scales = choose_scales(w, axis, min_levels)
        q = quantize_with(w, scales, axis)
        shape = [1] * w.ndim
        shape[axis] = -1
        approx = q.astype(np.float64) * scales.reshape(shape)
        moved = np.moveaxis(w - approx, axis, 0).reshape(w.shape[axis], -1)
        with np.errstate(divide="ignore", invalid="ignore"):
            exact += int(np.sum(np.max(np.abs(moved), axis=1)
                                <= 1e-3 * np.where(scales > 0, scales, 1.0)))
        channels += len(scales)
        peak = np.max(np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)), axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            levels.extend(np.where(scales > 0, peak / np.where(scales > 0, scales, 1), 0))
        err_before += float(np.sum((w - fake_quantize(w, axis, "max")) ** 2))
        err_after += float(np.sum((w - approx) ** 2))
        power += float(np.sum(w ** 2))
        quantized.buffers[weight.buffer].data = np.frombuffer(q.tobytes(), dtype=np.uint8)
        new_scales = np.where(scales > 0, scales, old_scales)
        params.scale = new_scales.astype(np.float32).tolist()
        params.zeroPoint = [0] * len(new_scales)
        if len(q_op.inputs) > 2 and q_op.inputs[2] >= 0:
            safe_old = np.where(old_scales > 0, old_scales, 1.0)
            requantize_bias(quantized, q_tensors[q_op.inputs[2]], new_scales / safe_old)
        rewritten += 1
        done.add(index)
    summary = {"rule": "mse", "min_levels": min_levels, "ops": rewritten, "skipped": skipped,
               "channels": channels, "exact_channels": exact,
               "mean_levels": float(np.mean(levels)) if levels else None,
               "weight_rel_error_max_rule": (err_before / power) ** 0.5 if power else 0.0,
               "weight_rel_error": (err_after / power) ** 0.5 if power else 0.0}
    return bytes(flatbuffer_utils.convert_object_to_bytearray(quantized)), summary


def apply(model_bytes: bytes, inputs: PassInputs) -> tuple[bytes, dict[str, Any]]:
    """The ``weight_grid`` pass: :func:`regrid` from the float32 variant's weights."""
    return regrid(model_bytes, inputs.float32_model())
