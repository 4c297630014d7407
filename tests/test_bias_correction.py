"""Bias correction of int8 weight rounding (litequant.quantize.passes.bias_correction): the tap
geometry against a direct convolution, and a hand-computed corrected bias in a tiny converted
model."""

from __future__ import annotations

import numpy as np
import pytest

from litequant.quantize import biases
from litequant.quantize.flatbuffer import buffer_array, read_model, weighted_ops
from litequant.quantize.passes import bias_correction as bc


def direct_conv(x: np.ndarray, kernel: np.ndarray, stride: int, dilation: int, same: bool
                ) -> np.ndarray:
    """Plain-loop 2-D convolution (``kernel`` ``(kh, kw, cin, cout)``), TensorFlow's padding."""
    height, width, _ = x.shape
    kh, kw = kernel.shape[:2]
    extent = ((kh - 1) * dilation + 1, (kw - 1) * dilation + 1)
    if same:
        out = (-(-height // stride), -(-width // stride))
        pads = [max((o - 1) * stride + e - n, 0)
                for o, e, n in zip(out, extent, (height, width), strict=True)]
        x = np.pad(x, ((pads[0] // 2, pads[0] - pads[0] // 2),
                       (pads[1] // 2, pads[1] - pads[1] // 2), (0, 0)))
    else:
        out = ((height - extent[0]) // stride + 1, (width - extent[1]) // stride + 1)
    result = np.zeros((*out, kernel.shape[3]))
    for r in range(out[0]):
        for c in range(out[1]):
            for i in range(kh):
                for j in range(kw):
                    pixel = x[r * stride + i * dilation, c * stride + j * dilation]
                    result[r, c] += pixel @ kernel[i, j]
    return result


@pytest.mark.parametrize(("size", "kernel", "stride", "dilation", "same"), [
    ((7, 6), 3, 1, 1, True), ((7, 6), 3, 2, 1, True), ((8, 8), 3, 2, 1, False),
    ((9, 7), 3, 1, 2, True), ((5, 5), 1, 1, 1, False), ((6, 6), 2, 2, 1, True)])
def test_tap_means_give_the_mean_output_of_any_convolution(size, kernel, stride, dilation, same):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(*size, 3))
    weights = rng.normal(size=(kernel, kernel, 3, 4))
    taps = biases.tap_means(x, (kernel, kernel), (stride, stride), (dilation, dilation), same)
    expected = direct_conv(x, weights, stride, dilation, same).reshape(-1, 4).mean(axis=0)
    np.testing.assert_allclose(np.einsum("ijco,ijc->o", weights, taps), expected, rtol=1e-10)


@pytest.mark.filterwarnings("ignore")
def test_corrected_bias_of_one_conv_matches_the_hand_computed_value(tmp_path) -> None:
    keras = pytest.importorskip("keras")
    from litequant.quantize.conversion import convert_variant

    # one 3x3 SAME conv (2 -> 2 channels) on 4x4 inputs, then a small classifier head
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(2, 3, padding="same", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="fc")(x))
    kernel = np.zeros((3, 3, 2, 2), np.float32)
    kernel[..., 0] = 0.2  # channel 0: max |w| = 1.0, every 0.2 lands between grid points
    kernel[1, 1, 0, 0] = 1.0
    kernel[..., 1] = 0.013  # channel 1: max |w| = 0.05
    kernel[0, 0, 1, 1] = -0.05
    bias = np.array([0.5, -0.25], np.float32)
    model.get_layer("conv").set_weights([kernel, bias])
    head = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    model.get_layer("fc").set_weights([head, np.array([0.1, 0.0, -0.1], np.float32)])
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)

    # calibration images constant per channel: input channel means 0.5 and 2.0 everywhere
    levels = np.linspace(0, 1, 8, dtype=np.float32)
    images = np.zeros((8, 4, 4, 2), np.float32)
    images[..., 0] = levels[:, None, None]
    images[..., 1] = 4 * levels[::-1, None, None]
    means = np.array([0.5, 2.0])
    float_bytes = convert_variant(tmp_path / "sm", "float32")
    int8_bytes = convert_variant(tmp_path / "sm", "int8", images)
    corrected, summary = bc.correct_biases(int8_bytes, float_bytes, images)
    assert summary["ops"] == 2 and summary["skipped"] == [] and summary["num_images"] == 8

    # by hand: per-channel scale max|w| / 127, rounding error e = round(w / s) * s - w; a 3x3
    # SAME tap at offset -1 or +1 reads inside the 4x4 input for 3 of the 4 output rows
    # (columns alike), so the mean output shift is sum over taps of e * f_i * f_j * mean_in
    scales = np.abs(kernel).max(axis=(0, 1, 2)) / 127
    error = np.round(kernel / scales) * scales - kernel
    inside = np.array([0.75, 1.0, 0.75])
    shift = np.einsum("ijco,i,j,c->o", error, inside, inside, means)
    assert np.all(np.abs(shift) > 1e-4)  # the case is not trivial

    def conv_bias(data: bytes) -> np.ndarray:
        tree = read_model(data)
        _, conv = weighted_ops(tree)[0]
        tensor = tree.subgraphs[0].tensors[conv.inputs[2]]
        return (buffer_array(tree, tensor, np.int32).astype(np.float64)
                * np.asarray(tensor.quantization.scale))

    step = np.asarray(read_model(int8_bytes).subgraphs[0].tensors[
        weighted_ops(read_model(int8_bytes))[0][1].inputs[2]].quantization.scale)
    assert np.all(np.abs(conv_bias(int8_bytes) - bias) <= step)  # the converter's bias
    assert np.all(np.abs(conv_bias(corrected) - (bias - shift)) <= step)
    assert np.all(step < np.abs(shift) / 10)  # a bias step resolves the correction
    for (_, before), (_, after) in zip(weighted_ops(read_model(int8_bytes)),
                                       weighted_ops(read_model(corrected)), strict=True):
        old, new = read_model(int8_bytes), read_model(corrected)  # the weights are untouched
        np.testing.assert_array_equal(
            buffer_array(old, old.subgraphs[0].tensors[before.inputs[1]], np.int8),
            buffer_array(new, new.subgraphs[0].tensors[after.inputs[1]], np.int8))

    unchanged, none = bc.correct_biases(int8_bytes, float_bytes, images, method="none")
    assert unchanged == int8_bytes and none == {"method": "none"}
    with pytest.raises(ValueError, match="unknown bias-correction method"):
        bc.correct_biases(int8_bytes, float_bytes, images, method="empirical")
