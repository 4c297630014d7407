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
