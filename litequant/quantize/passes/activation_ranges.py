"""Activation ranges chosen by quantization error ("MSE ranges") for a full-integer model.

TensorFlow's converter gives every activation tensor the int8 range ``[min, max]`` of the
values it saw on the calibration images. A tensor with a long tail (a linear bottleneck's
output, a residual sum: values spread around zero with rare large ones) then spends most of
its 256 levels on values that almost never occur, and the common values get a coarse step.
Shrinking the range clips the rare values and refines every other one; the best trade-off is
the range with the smallest mean squared quantization error over the calibration values
(the "MSE" calibration of TensorRT, OpenVINO and AIMET; quantization-aware training arrives at
similar ranges by averaging per-batch extremes).

:func:`mse_range` chooses it: the converter's ``[lo, hi]`` scaled by the fraction ``a`` in
``[MIN_FRACTION, 1]`` (steps of 0.01) whose int8 grid (``scale = (hi - lo) · a / 255``, zero
exactly representable) has the smallest ``E[(x - dequantize(quantize(x)))²]``, estimated from a
histogram of the float model's values; ties keep the larger range, so a tensor without a tail
keeps ``[min, max]``.

:func:`choose_activation_ranges` rewrites an integer model. Which tensors: the outputs of
``CONV_2D``, ``DEPTHWISE_CONV_2D``, ``FULLY_CONNECTED`` and ``ADD`` whose every consumer is one of
those ops (each requantizes its input with the input's own scale). Never the model's outputs,
the logits (consumed by ``SOFTMAX``, where the largest values decide the class) or tensors
feeding ops that must keep their input's scale (``RESHAPE``, pooling, concatenation). The
consumers' ``int32`` biases are requantized to the new ``input_scale · weight_scale``. Ops,
weights and size are unchanged, so the model runs at int8 speed.

Imports numpy, ai-edge-litert and the project's LiteRT and flatbuffer helpers (never
TensorFlow).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from litequant.core.litert import intermediate_tensors
from litequant.quantize.flatbuffer import (
    INT8,
    WEIGHT_OPS,
    op_name,
    read_model,
    requantize_bias,
    tensor_name,
)

if TYPE_CHECKING:
    from litequant.quantize.context import PassInputs


#: The smallest fraction of the converter's range tried.
MIN_FRACTION = 0.4
#: Histogram bins per tensor over the converter's range (about 13 per int8 step at the
#: smallest fraction).
BINS = 8192
#: Ops whose output range is chosen, and the only consumers allowed (they requantize).
REQUANTIZING_OPS = (*WEIGHT_OPS, "ADD")
_FRACTIONS = np.round(np.arange(1.0, MIN_FRACTION - 1e-9, -0.01), 2)


def int8_grid(low: float, high: float) -> tuple[float, int]:
    """``(scale, zero_point)`` of the asymmetric int8 grid spanning ``[low, high]``
    (``low <= 0 <= high``; zero is a level exactly)."""
    scale = (high - low) / 255.0
    zero_point = int(np.clip(np.round(-128 - low / scale), -128, 127))
    return float(scale), zero_point


def bin_centres(low: float, high: float, bins: int) -> np.ndarray:
    """The centres of ``bins`` equal-width bins spanning ``[low, high]``, ``float64``."""
    return low + (np.arange(bins) + 0.5) * ((high - low) / bins)


def quantization_error(counts: np.ndarray, centres: np.ndarray, scale: float,
                       zero_point: int) -> float:
    """Mean squared error of int8 quantization (clipping included) of values given as a
    histogram (``counts`` at ``centres``)."""
    levels = np.clip(np.round(centres / scale) + zero_point, -128, 127)
    return float(np.sum(counts * ((levels - zero_point) * scale - centres) ** 2)
                 / max(np.sum(counts), 1))


def mse_range(counts: np.ndarray, low: float, high: float) -> tuple[float, float, float]:
    """The range with the smallest quantization error for values histogrammed over
    ``[low, high]``.

    Args:
        counts: ``(bins,)`` counts of equal-width bins spanning ``[low, high]``.
        low: the converter's range minimum (``<= 0``).
        high: the converter's range maximum (``>= 0``, ``> low``).

    Returns:
        ``(low', high', fraction)``: ``[low, high] · fraction``, ``fraction`` in
        ``[MIN_FRACTION, 1]``; ``1.0`` (the converter's range) on ties.
    """
    counts = np.asarray(counts, dtype=np.float64)
    centres = bin_centres(low, high, len(counts))
    best_fraction, best_error = 1.0, np.inf
    for fraction in _FRACTIONS:
        error = quantization_error(counts, centres, *int8_grid(low * fraction, high * fraction))
        if error < best_error * (1 - 1e-9):
            best_fraction, best_error = float(fraction), error
    return low * best_fraction, high * best_fraction, best_fraction


def rangeable_tensors(quantized, reference) -> list[tuple[int, int]]:
    """``(tensor of quantized, tensor of reference)`` for every activation whose range may be
    chosen (module docstring), matched by name between two conversions of one SavedModel (the
    converter names an op's output after the layers fused into it, in both). A tensor the
    float model does not have keeps its range."""
    graph = quantized.subgraphs[0]
    float_graph = reference.subgraphs[0]
    float_outputs = {tensor_name(float_graph.tensors[op.outputs[0]]): int(op.outputs[0])
                     for op in float_graph.operators}
    consumers: dict[int, list[str]] = {}
    for op in graph.operators:
        for index in op.inputs:
            consumers.setdefault(int(index), []).append(op_name(quantized, op))
    outputs = {int(index) for index in graph.outputs}
    chosen = []
    for op in graph.operators:
        tensor = int(op.outputs[0])
        users = consumers.get(tensor, [])
        params = graph.tensors[tensor].quantization
        name = tensor_name(graph.tensors[tensor])
        if (op_name(quantized, op) in REQUANTIZING_OPS and tensor not in outputs and users
                and all(user in REQUANTIZING_OPS for user in users)
                and graph.tensors[tensor].type == INT8 and params is not None
                and params.scale is not None and len(params.scale) == 1
                and name in float_outputs):
            chosen.append((tensor, float_outputs[name]))
    return chosen


def choose_activation_ranges(int8_model: bytes, float_model: bytes,
                             calibration_inputs: np.ndarray,
                             on_image: Callable[[], None] | None = None
                             ) -> tuple[bytes, dict[str, Any]]:
    """Give an integer model's inner activations the ranges of :func:`mse_range`.

    Args:
        int8_model: a full-integer ``.tflite`` the converter made (int8 activations).
        float_model: the float32 conversion of the same SavedModel.
        calibration_inputs: ``float32`` ``(N, height, width, 3)`` in the model's input range:
            the calibration images, preprocessed exactly as for evaluation.
        on_image: called after each image the float model runs on (progress).

    Returns:
        ``(model bytes, summary)``; ``summary`` has ``tensors`` (considered), ``clipped`` (their
        range shrunk), ``ranges`` (per clipped tensor: name, the converter's ``[min, max]``, the
        chosen range), the mean squared quantization error over the considered tensors relative
        to min/max's (``relative_error``) and ``num_images``.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    quantized, reference = read_model(int8_model), read_model(float_model)
    graph = quantized.subgraphs[0]
    pairs = rangeable_tensors(quantized, reference)
    bounds = []
    for tensor, _ in pairs:
        params = graph.tensors[tensor].quantization
        scale, zero_point = float(params.scale[0]), int(params.zeroPoint[0])
        bounds.append(((-128 - zero_point) * scale, (127 - zero_point) * scale))
    histograms = np.zeros((len(pairs), BINS))
    for values in intermediate_tensors(float_model, calibration_inputs, [f for _, f in pairs]):
        for histogram, value, (low, high) in zip(histograms, values, bounds, strict=True):
            bins = np.floor((value.ravel() - low) * (BINS / (high - low))).astype(np.int64)
            histogram += np.bincount(np.clip(bins, 0, BINS - 1), minlength=BINS)
        if on_image is not None:
            on_image()
    ranges, before, after = [], 0.0, 0.0
    for (tensor, _), histogram, (low, high) in zip(pairs, histograms, bounds, strict=True):
        new_low, new_high, fraction = mse_range(histogram, low, high)
        centres = bin_centres(low, high, BINS)
        before += quantization_error(histogram, centres, *int8_grid(low, high))
        after += quantization_error(histogram, centres, *int8_grid(new_low, new_high))
        if fraction == 1.0:
            continue
        scale, zero_point = int8_grid(new_low, new_high)
        _set_activation_grid(quantized, tensor, scale, zero_point)
        ranges.append({"tensor": tensor_name(graph.tensors[tensor]),
                       "min_max": [round(low, 4), round(high, 4)],
                       "range": [round(new_low, 4), round(new_high, 4)]})
    summary = {"tensors": len(pairs), "clipped": len(ranges), "ranges": ranges,
               "relative_error": after / before if before else 1.0,
               "num_images": int(len(calibration_inputs))}
    return bytes(flatbuffer_utils.convert_object_to_bytearray(quantized)), summary


def _set_activation_grid(model, tensor: int, scale: float, zero_point: int) -> None:
    """Set one activation's grid and requantize the ``int32`` bias of every op reading it (the
    bias's scale is ``input_scale · weight_scale``: same real values, new steps)."""
    graph = model.subgraphs[0]
    params = graph.tensors[tensor].quantization
    ratio = scale / float(params.scale[0])
    params.scale, params.zeroPoint = [scale], [zero_point]
    for op in graph.operators:
        if (op_name(model, op) in WEIGHT_OPS and int(op.inputs[0]) == tensor
                and len(op.inputs) > 2 and op.inputs[2] >= 0):
            requantize_bias(model, graph.tensors[op.inputs[2]], ratio)


def apply(model_bytes: bytes, inputs: PassInputs) -> tuple[bytes, dict[str, Any]]:
    """The ``activation_ranges`` pass: :func:`choose_activation_ranges` from the float32
    variant's activations on the calibration inputs."""
    return choose_activation_ranges(model_bytes, inputs.float32_model(), inputs.calibration)
