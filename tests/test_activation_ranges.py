"""Activation ranges by quantization error (litequant.quantize.passes.activation_ranges): the int8
grid, the range choice on hand-made distributions, and the rewrite of a tiny converted model."""

from __future__ import annotations

import numpy as np
import pytest

from litequant.quantize.passes import activation_ranges as ar


def test_int8_grid_keeps_zero_exact() -> None:
    assert ar.int8_grid(0.0, 6.0) == (pytest.approx(6 / 255), -128)
    scale, zero_point = ar.int8_grid(-1.0, 3.0)
    assert scale == pytest.approx(4 / 255)
    assert zero_point == round(-128 + 1.0 / scale)  # -64.25 -> -64
    assert (0 - zero_point) * scale == pytest.approx(64 * 4 / 255)  # level -64 is 0.0


def test_no_tail_keeps_the_min_max_range() -> None:
    # uniform values: clipping 1 % costs (0.01·W/2)²/3 per clipped value, more than the finer
    # step saves (2 % of (W/255)²/12), so no smaller range wins
    counts = np.full(ar.BINS, 50.0)
    assert ar.mse_range(counts, -3.0, 5.0) == (-3.0, 5.0, 1.0)


def test_a_long_tail_is_clipped_where_the_error_is_smallest() -> None:
    # a symmetric Laplace density of scale 1 on [-20, 20] (what lies beyond, e^-20, is
    # negligible). By hand: clipped to [-c, c] the error is the step's (2c/255)²/12 plus the
    # tail's P(|x| > c)·E[(|x| - c)²] = e^-c · 2; its minimum is at c·e^c = 3·255² = 195075,
    # c = 9.89 (the fractions tried are 0.2 apart here)
    edges = np.linspace(-20.0, 20.0, ar.BINS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    counts = 1e6 * np.exp(-np.abs(centres)) / 2 * (edges[1] - edges[0])
    new_low, new_high, fraction = ar.mse_range(counts, -20.0, 20.0)
    assert new_high == pytest.approx(9.89, abs=0.15)
    assert (new_low, fraction) == (pytest.approx(-new_high), pytest.approx(new_high / 20.0))


def test_clipping_a_sampled_tail_lowers_the_error_of_the_samples() -> None:
    values = np.random.default_rng(0).laplace(0.0, 1.0, 200_000)
    low, high = float(values.min()), float(values.max())  # about ±12: rare values
    counts = np.histogram(values, bins=ar.BINS, range=(low, high))[0]
    new_low, new_high, fraction = ar.mse_range(counts, low, high)
    assert fraction < 0.9

    def error(lo: float, hi: float) -> float:  # on the samples themselves, not the histogram
        scale, zero_point = ar.int8_grid(lo, hi)
        levels = np.clip(np.round(values / scale) + zero_point, -128, 127)
        return float(np.mean(((levels - zero_point) * scale - values) ** 2))

    assert error(new_low, new_high) < 0.8 * error(low, high)


def test_a_converted_model_gets_its_inner_ranges_and_keeps_its_biases(tmp_path) -> None:
    keras = pytest.importorskip("keras")
    from litequant.core.litert import intermediate_tensors
    from litequant.quantize.conversion import convert_variant
    from litequant.quantize.flatbuffer import buffer_array, op_name, read_model, tensor_name

    keras.utils.set_random_seed(0)
    inputs = keras.Input((10, 10, 3))
    expanded = keras.layers.Conv2D(8, 3, padding="same", activation="relu6")(inputs)
    projected = keras.layers.Conv2D(4, 1, name="project")(expanded)  # linear: a long tail
    shortcut = keras.layers.Conv2D(4, 1, name="shortcut")(inputs)
    summed = keras.layers.Add(name="add")([projected, shortcut])
    x = keras.layers.Conv2D(8, 1, activation="relu", name="after")(summed)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(5, name="logits")(x))
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    # mostly small values with rare large ones (heavy-tailed pixels)
    images = np.random.default_rng(1).laplace(0.0, 0.2, (32, 10, 10, 3)).astype(np.float32)
    float_bytes = convert_variant(tmp_path / "sm", "float32")
    int8_bytes = convert_variant(tmp_path / "sm", "int8", images)

    ranged, summary = ar.choose_activation_ranges(int8_bytes, float_bytes, images)
    before, after = read_model(int8_bytes), read_model(ranged)
    graph_before, graph_after = before.subgraphs[0], after.subgraphs[0]
    producers = {int(op.outputs[0]): op_name(before, op) for op in graph_before.operators}
    chosen = [tensor for tensor, _ in ar.rangeable_tensors(before, read_model(float_bytes))]
    # the convs' and the add's outputs that convs or adds read; never the logits (the model's
    # output side: dense -> softmax or the output itself) nor the input's QUANTIZE
    assert sorted(producers[t] for t in chosen) == ["ADD", "CONV_2D", "CONV_2D", "CONV_2D"]
    assert summary["tensors"] == 4 and summary["clipped"] >= 1
    assert summary["relative_error"] < 1.0
    clipped = {entry["tensor"] for entry in summary["ranges"]}
    for tensor in chosen:
        old = graph_before.tensors[tensor].quantization
        new = graph_after.tensors[tensor].quantization
        old_range = [(level - old.zeroPoint[0]) * old.scale[0] for level in (-128, 127)]
        new_range = [(level - new.zeroPoint[0]) * new.scale[0] for level in (-128, 127)]
        if tensor_name(graph_before.tensors[tensor]) not in clipped:
            assert new_range == old_range
            continue
        assert old_range[0] - 1e-6 <= new_range[0] <= 0 <= new_range[1] <= old_range[1] + 1e-6
        assert new.scale[0] < old.scale[0]
    # every op reading a re-ranged tensor keeps its bias's real values, on the new step
    # input_scale * weight_scale (what TFLite's integer kernels require)
    checked = 0
    for op_before, op_after in zip(graph_before.operators, graph_after.operators, strict=True):
        if op_name(before, op_before) != "CONV_2D" or int(op_before.inputs[0]) not in chosen:
            continue
        bias_before = graph_before.tensors[op_before.inputs[2]]
        bias_after = graph_after.tensors[op_after.inputs[2]]
        weight_scale = np.asarray(graph_after.tensors[op_after.inputs[1]].quantization.scale)
        input_scale = graph_after.tensors[op_after.inputs[0]].quantization.scale[0]
        np.testing.assert_allclose(bias_after.quantization.scale, input_scale * weight_scale,
                                   rtol=1e-6)
        real_before = buffer_array(before, bias_before, np.int32) * np.asarray(
            bias_before.quantization.scale)
        real_after = buffer_array(after, bias_after, np.int32) * np.asarray(
            bias_after.quantization.scale)
        np.testing.assert_allclose(real_after, real_before,
                                   atol=float(np.max(bias_after.quantization.scale)))
        checked += 1
    assert checked >= 1

    # the re-ranged tensors are closer to the float model's, on the same images
    float_model = read_model(float_bytes)
    pairs = ar.rangeable_tensors(before, float_model)
    float_values = [np.concatenate(v) for v in zip(*intermediate_tensors(
        float_bytes, images, [f for _, f in pairs]), strict=True)]

    def error(model_bytes: bytes) -> float:
        values = [np.concatenate(v) for v in zip(*intermediate_tensors(
            model_bytes, images, [q for q, _ in pairs]), strict=True)]
        return sum(float(np.mean((q - f) ** 2))
                   for q, f in zip(values, float_values, strict=True))

    assert error(ranged) < error(int8_bytes)
