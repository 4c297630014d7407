"""Empirical bias correction (litequant.quantize.passes.empirical_bias): in a tiny converted model
the first conv's corrected bias is the hand-computed one, whose input is the *quantized* model
input (its rounding bias included), and the second conv's mean output in the corrected integer
model is the float model's."""

from __future__ import annotations

import numpy as np
import pytest

from litequant.core.litert import intermediate_tensors, tensor_spec
from litequant.quantize import biases
from litequant.quantize.flatbuffer import buffer_array, read_model, weighted_ops
from litequant.quantize.passes import bias_correction as bc
from litequant.quantize.passes import empirical_bias as eb
from tests.test_bias_correction import direct_conv


def conv_bias(data: bytes, position: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``position``-th weight op's bias in real units and its step, ``float64``."""
    tree = read_model(data)
    _, op = weighted_ops(tree)[position]
    tensor = tree.subgraphs[0].tensors[op.inputs[2]]
    step = np.asarray(tensor.quantization.scale, dtype=np.float64)
    return buffer_array(tree, tensor, np.int32).astype(np.float64) * step, step


@pytest.mark.filterwarnings("ignore")
def test_biases_match_the_float_means_of_the_real_int8_model(tmp_path) -> None:
    keras = pytest.importorskip("keras")
    from ai_edge_litert.interpreter import Interpreter

    from litequant.quantize.conversion import convert_variant

    # conv1 (3x3 SAME, 2 -> 2, ReLU, so the converter keeps it apart) -> conv2 (1x1, 2 -> 2), then
    # a small head
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(2, 1, name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="fc")(x))
    kernel = np.zeros((3, 3, 2, 2), np.float32)
    kernel[..., 0] = 0.2
    kernel[1, 1, 0, 0] = 1.0
    kernel[..., 1] = 0.013
    kernel[0, 0, 1, 1] = -0.05
    bias = np.array([0.5, -0.25], np.float32)
    model.get_layer("conv1").set_weights([kernel, bias])
    model.get_layer("conv2").set_weights([np.array([[[[1.0, -0.3], [0.7, 0.9]]]], np.float32),
                                          np.array([0.1, -0.2], np.float32)])
    rng = np.random.default_rng(0)
    model.get_layer("fc").set_weights([rng.normal(size=(2, 3)).astype(np.float32),
                                       np.array([0.1, 0.0, -0.1], np.float32)])
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)

    # inputs constant per image and channel, on values the input's int8 grid rounds one way
    images = np.zeros((8, 4, 4, 2), np.float32)
    images[..., 0] = np.array([0, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 1.0])[:, None, None]
    images[..., 1] = np.array([0, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 1.0])[:, None, None]
    float_bytes = convert_variant(tmp_path / "sm", "float32")
    int8_bytes = convert_variant(tmp_path / "sm", "int8", images)
    corrected, summary = eb.correct_empirically(int8_bytes, float_bytes, images)
    assert summary["ops"] == 3 and summary["skipped"] == [] and summary["num_images"] == 8

    # by hand, conv1: b_f + mean conv(x, W) - mean conv(x_q, W_q), x_q the input as the int8
    # model sees it: round(x / s + z) clipped, back to real units
    spec = tensor_spec(Interpreter(model_content=int8_bytes).get_input_details()[0])
    x_q = (np.clip(np.round(images / spec.scale + spec.zero_point), -128, 127)
           - spec.zero_point) * spec.scale
    scales = np.abs(kernel).max(axis=(0, 1, 2)) / 127
    rounded = np.round(kernel / scales) * scales

    def mean_conv(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return np.mean([direct_conv(image.astype(np.float64), weights, 1, 1, True)
                        .reshape(-1, 2).mean(axis=0) for image in x], axis=0)

    expected = bias + mean_conv(images, kernel) - mean_conv(x_q, rounded)
    analytic = bias - (mean_conv(images, rounded) - mean_conv(images, kernel))
    got, step = conv_bias(corrected, 0)
    assert np.all(np.abs(got - expected) <= step)
    assert np.any(np.abs(expected - analytic) > 5 * step)  # the input's rounding matters
    analytic_bytes, _ = bc.correct_biases(int8_bytes, float_bytes, images)
    assert np.all(np.abs(conv_bias(analytic_bytes, 0)[0] - analytic) <= step)

    # conv2 (measured after conv1 is corrected): its mean output, a pre-activation, is the
    # float model's but for the rounding of the output itself (at most half an output step)
    tree = read_model(corrected)
    _, conv2 = weighted_ops(tree)[1]
    output = tree.subgraphs[0].tensors[conv2.outputs[0]]
    [float_mean] = biases.mean_tensors(float_bytes, images,
                                   [weighted_ops(read_model(float_bytes))[1][1].outputs[0]])
    [int8_mean] = biases.mean_tensors(corrected, images, [conv2.outputs[0]])
    out_step = float(output.quantization.scale[0])
    np.testing.assert_allclose(int8_mean.reshape(-1, 2).mean(axis=0),
                               float_mean.reshape(-1, 2).mean(axis=0), atol=0.5 * out_step)

    # the weights are untouched, and the same inputs give the same bytes
    for (_, before), (_, after) in zip(weighted_ops(read_model(int8_bytes)), weighted_ops(tree),
                                       strict=True):
        old = read_model(int8_bytes)
        np.testing.assert_array_equal(
            buffer_array(old, old.subgraphs[0].tensors[before.inputs[1]], np.int8),
            buffer_array(tree, tree.subgraphs[0].tensors[after.inputs[1]], np.int8))
    assert eb.correct_empirically(int8_bytes, float_bytes, images)[0] == corrected
    assert len(list(intermediate_tensors(corrected, images[:1], [conv2.outputs[0]]))) == 1
    with pytest.raises(ValueError, match="max_images"):
        eb.correct_empirically(int8_bytes, float_bytes, images, max_images=0)
