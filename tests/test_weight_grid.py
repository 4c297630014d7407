"""MSE-optimal per-channel int8 weight scales (litequant.quantize.passes.weight_grid): hand cases,
grid recovery, and the flatbuffer rewrite of a tiny converted model."""

from __future__ import annotations

import numpy as np
import pytest

from litequant.quantize.passes import weight_grid as wg


def test_choose_scales_recovers_a_symmetric_grid_exactly() -> None:
    rng = np.random.default_rng(0)
    step = 0.013
    # channel 0 on a grid with max level 90, channel 1 with max level 127 (the converter's)
    q = np.stack([rng.integers(-90, 91, 50), rng.integers(-127, 128, 50)], axis=1)
    q[0, 0], q[0, 1] = 90, -127
    w = q * step
    scales = wg.choose_scales(w, axis=1)
    np.testing.assert_allclose(scales, [step, step], rtol=1e-12)
    np.testing.assert_allclose(wg.fake_quantize(w, 1, "mse"), w, atol=1e-12)
    # the converter's rule (max|w| / 127) cannot represent channel 0's grid
    assert np.abs(wg.fake_quantize(w, 1, "max")[:, 0] - w[:, 0]).max() > step / 10


def test_choose_scales_hand_case_and_never_worse_than_the_converter() -> None:
    # w = [1.0, 0.5, 0.25]: k = 127 gives scale 1/127, 0.5*127 = 63.5 -> rounding error;
    # k = 124 (divisible by 4) represents all three exactly: scale 1/124
    w = np.array([[1.0], [0.5], [0.25]])
    assert wg.choose_scales(w, axis=1)[0] == pytest.approx(1 / 124)
    rng = np.random.default_rng(1)
    for _ in range(5):
        w = rng.normal(size=(3, 3, 8, 16))
        mse = np.sum((wg.fake_quantize(w, 3, "mse") - w) ** 2, axis=(0, 1, 2))
        rtn = np.sum((wg.fake_quantize(w, 3, "max") - w) ** 2, axis=(0, 1, 2))
        assert np.all(mse <= rtn + 1e-15)
    assert np.all(wg.choose_scales(np.zeros((4, 2)), axis=1) == 0)
    with pytest.raises(ValueError):
        wg.choose_scales(w, axis=0, min_levels=200)


@pytest.mark.filterwarnings("ignore")
def test_regrid_rewrites_weights_and_biases_of_a_converted_model(tmp_path) -> None:
    keras = pytest.importorskip("keras")
    from ai_edge_litert.interpreter import Interpreter

    from litequant.quantize.conversion import convert_variant

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4, name="fc")(x))
    # put the conv weights on a coarse grid (as dequantized QAT weights are)
    kernel, bias = model.get_layer("conv").get_weights()
    levels = np.random.default_rng(2).integers(-100, 101, kernel.shape)
    levels[0, 0, 0] = 100  # every channel's largest level is 100, not 127
    model.get_layer("conv").set_weights([(levels * 0.003).astype(np.float32), bias + 0.1])
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    images = np.random.default_rng(0).uniform(-1, 1, (16, 8, 8, 3)).astype(np.float32)
    float_bytes = convert_variant(tmp_path / "sm", "float32")
    int8_bytes = convert_variant(tmp_path / "sm", "int8", images)
    grid_bytes, summary = wg.regrid(int8_bytes, float_bytes)
    assert summary["ops"] == 3 and not summary["skipped"]
    assert summary["weight_rel_error"] < summary["weight_rel_error_max_rule"]
    assert summary["exact_channels"] >= 6  # every conv channel sits on the grid
    assert abs(len(grid_bytes) - len(int8_bytes)) < 0.05 * len(int8_bytes) + 1024

    def run(data: bytes) -> np.ndarray:
        interpreter = Interpreter(model_content=data)
        interpreter.resize_tensor_input(0, [len(images), 8, 8, 3])
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        scale, zero = detail["quantization"]
        interpreter.set_tensor(detail["index"], np.clip(np.round(images / scale + zero), -128,
                                                        127).astype(np.int8) if scale else images)
        interpreter.invoke()
        out = interpreter.get_output_details()[0]
        raw = interpreter.get_tensor(out["index"]).astype(np.float32)
        o_scale, o_zero = out["quantization"]
        return (raw - o_zero) * o_scale if o_scale else raw

    reference, plain, grid = run(float_bytes), run(int8_bytes), run(grid_bytes)
    # the rewritten model still computes the same function (weights and biases consistent)
    assert np.abs(grid - reference).max() < 0.1 * np.abs(reference).max()
    assert np.mean((grid - reference) ** 2) <= 1.5 * np.mean((plain - reference) ** 2) + 1e-6



def _on_grid_model(optimize: bool = False) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A ``.tflite`` whose 3x3 conv 16 -> 16 (2304 weights) has each output channel ``c`` on a
    symmetric grid of step ``0.002 * (c + 1)`` with largest level 100 (so the best scale of
    channel ``c`` is that step, with zero error, where ``max|w| / 127`` misses it), then a
    dense 16 -> 4 (64 weights: under 1024, kept float by weight_only_int8 and dynamic).
    ``optimize``: TensorFlow's dynamic-range conversion instead of float32. Returns ``(model
    bytes, levels (3, 3, 16, 16) int, steps (16,) float)``."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 16))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4, name="fc")(x))
    levels = np.random.default_rng(3).integers(-99, 100, (3, 3, 16, 16))
    levels[1, 1, 0, :] = 100 * np.where(np.arange(16) % 2, 1, -1)  # each channel reaches 100
    steps = 0.002 * (np.arange(16) + 1)
    bias = model.get_layer("conv").get_weights()[1]
    model.get_layer("conv").set_weights([(levels * steps).astype(np.float32), bias + 0.05])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert(), levels, steps


def _outputs(model: bytes, inputs: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    interpreter.resize_tensor_input(0, list(inputs.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], inputs)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.filterwarnings("ignore")
def test_weight_only_int8_uses_the_chosen_grid(tmp_path) -> None:
    """The registry's weight_only_int8 (ai-edge-quantizer base, then its passes) stores the conv
    weights as int8 levels feeding a DEQUANTIZE op: on the grid above the weight_grid pass
    finds each channel's step exactly (levels and scales by hand), its reconstruction error is
    0 where the max rule's is not, and the model computes the float model's outputs (to float32
    rounding) where the max-rule model does not."""
    import importlib

    from litequant.quantize import edge_quantizer as eq
    from litequant.quantize.context import PassInputs
    from litequant.quantize.flatbuffer import INT8, buffer_array, read_model, weighted_ops
    from litequant.quantize.registry import PASSES, VARIANTS

    float_model, levels, steps = _on_grid_model()
    recipe = VARIANTS["weight_only_int8"]
    assert recipe.passes == ("weight_grid",)
    inputs = PassInputs(saved_model=tmp_path, float32_model=lambda: float_model)
    plain, _, _ = eq.build_base(recipe.base, inputs)
    model, summary = plain, {}
    for name in recipe.passes:
        model, summary = importlib.import_module(PASSES[name].module).apply(model, inputs)
    assert summary["ops"] == 1 and summary["exact_channels"] == 16
    assert summary["weight_rel_error"] < 1e-6 < summary["weight_rel_error_max_rule"]

    tree = read_model(model)
    tensors = tree.subgraphs[0].tensors
    (_, conv), (_, fc) = weighted_ops(tree)
    weight = tensors[wg.int8_weight(tree, conv)]
    assert weight.type == INT8 and wg.int8_weight(tree, conv) != conv.inputs[1]  # DEQUANTIZE
    assert tensors[wg.int8_weight(tree, fc)].type != INT8  # 64 weights: kept float
    np.testing.assert_allclose(weight.quantization.scale, steps, rtol=1e-6)
    # TFLite conv weights are (out, h, w, in); the Keras kernel is (h, w, in, out)
    np.testing.assert_array_equal(buffer_array(tree, weight, np.int8),
                                  np.moveaxis(levels, 3, 0))

    images = np.random.default_rng(4).uniform(-1, 1, (8, 6, 6, 16)).astype(np.float32)
    reference = _outputs(float_model, images)
    scale = np.abs(reference).max()
    assert np.abs(_outputs(model, images) - reference).max() < 1e-5 * scale
    assert np.abs(_outputs(plain, images) - reference).max() > 1e-4 * scale
    # deterministic: the same bytes again
    assert wg.apply(eq.build_base(recipe.base, inputs)[0], inputs)[0] == model


@pytest.mark.filterwarnings("ignore")
def test_regrid_rewrites_the_int8_weights_of_a_dynamic_range_model() -> None:
    """A hybrid (dynamic range) model reads its int8 weights directly, with a float bias: the
    weights move to the grid, the bias stays float, the model computes the float outputs."""
    from litequant.quantize.flatbuffer import FLOAT32, INT8, read_model, weighted_ops

    float_model, _, steps = _on_grid_model()
    dynamic, _, _ = _on_grid_model(optimize=True)
    grid, summary = wg.regrid(dynamic, float_model)
    assert summary["ops"] == 1 and summary["exact_channels"] == 16
    tree = read_model(grid)
    tensors = tree.subgraphs[0].tensors
    conv = weighted_ops(tree)[0][1]
    assert wg.int8_weight(tree, conv) == conv.inputs[1] and tensors[conv.inputs[1]].type == INT8
    assert tensors[conv.inputs[2]].type == FLOAT32
    np.testing.assert_allclose(tensors[conv.inputs[1]].quantization.scale, steps, rtol=1e-6)
    images = np.random.default_rng(5).uniform(-1, 1, (4, 6, 6, 16)).astype(np.float32)
    reference = _outputs(float_model, images)
    # only the hybrid kernel's on-the-fly int8 activations remain: far below the weight error
    assert np.abs(_outputs(grid, images) - reference).max() < 0.05 * np.abs(reference).max()
