"""litequant.quantize.edge_quantizer on a tiny Keras model converted to a float .tflite in the
test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SIZE = 32


def _smooth_images(count: int, seed: int) -> np.ndarray:
    """``float32`` ``(count, SIZE, SIZE, 3)`` smooth gradients in [-1, 1] (image-like inputs)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    base = rng.uniform(-0.8, 0.8, (count, 1, 1, 3))
    slope = rng.uniform(-0.6, 0.6, (count, 2, 1, 1, 3))
    images = base + yy[None, ..., None] * slope[:, 0] + xx[None, ..., None] * slope[:, 1]
    return np.clip(images, -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def tiny() -> dict:
    """A MobileNet-like block (conv, depthwise, 1x1 conv, residual add, pool, dense softmax)
    with seeded weights (tests/conftest.py's block classifier); its float ``.tflite`` and the
    Keras model."""
    import tensorflow as tf

    from tests.conftest import block_classifier

    model = block_classifier(SIZE, 10)
    return {"keras": model, "tflite": tf.lite.TFLiteConverter.from_keras_model(model).convert()}


def _run(model: bytes, inputs: np.ndarray) -> np.ndarray:
    """Run ``model`` on float inputs (quantized with the model's own input scale/zero point)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for x in inputs:
        scale, zero = inp["quantization"]
        if np.issubdtype(inp["dtype"], np.integer):
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        interpreter.set_tensor(inp["index"], x[None].astype(inp["dtype"]))
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])[0]
        scale, zero = out["quantization"]
        if np.issubdtype(y.dtype, np.integer):
            y = (y.astype(np.float32) - zero) * scale
        results.append(y.astype(np.float32))
    return np.stack(results)


def _io(model: bytes) -> tuple[dict, dict, list[dict]]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    return (interpreter.get_input_details()[0], interpreter.get_output_details()[0],
            interpreter.get_tensor_details())


def test_module_imports_no_tensorflow() -> None:
    code = ("import sys, litequant.quantize.edge_quantizer; "
            "bad = [m for m in sys.modules"
            " if m.split('.')[0] in ('tensorflow', 'keras', 'stages')];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


@pytest.mark.parametrize("variant", ["weight_only_int8", "weight_only_int4", "dynamic_int4",
                                     "static_int8_minmax", "static_int8_gptq"])
def test_variant_quantizes_and_runs_in_litert(tiny: dict, variant: str) -> None:
    from litequant.quantize import edge_quantizer as eq

    spec = eq.EDGE_QUANTIZER_VARIANTS[variant]
    calibration = _smooth_images(16, seed=1) if spec.needs_calibration else None
    # the tiny model's weight tensors all have < 1024 elements: quantize them all
    model, recipe = eq.quantize(tiny["tflite"], variant, calibration, min_weight_elements=0)
    inp, out, _ = _io(model)
    assert np.dtype(inp["dtype"]).name == np.dtype(out["dtype"]).name == spec.io_dtype
    outputs = _run(model, _smooth_images(4, seed=2))
    assert outputs.shape == (4, 10) and np.all(np.isfinite(outputs))
    assert len(model) < len(tiny["tflite"])
    assert recipe == json.loads(eq.recipe_json(recipe))


def test_recipe_round_trips_as_json_and_reproduces_the_model(tiny: dict) -> None:
    from ai_edge_quantizer import Quantizer

    from litequant.quantize import edge_quantizer as eq

    for variant in eq.EDGE_QUANTIZER_VARIANTS:
        recipe = eq.build_recipe(variant, exclude=["classifier"])
        assert json.loads(json.dumps(recipe)) == recipe
    model, recipe = eq.quantize(tiny["tflite"], "weight_only_int4", None)
    reloaded = json.loads(eq.recipe_json(recipe))
    again = Quantizer(bytearray(tiny["tflite"]), reloaded).quantize(
        enable_progress_report=False).quantized_model
    assert bytes(again) == model


def test_int4_is_smaller_than_int8(tiny: dict) -> None:
    from litequant.quantize import edge_quantizer as eq

    int8, _ = eq.quantize(tiny["tflite"], "weight_only_int8", None, min_weight_elements=0)
    for variant in ("weight_only_int4", "dynamic_int4"):
        int4, _ = eq.quantize(tiny["tflite"], variant, None)
        assert len(int4) < len(int8)


def _fake_quantized_keras(model, num_bits: int):
    """A copy of ``model`` whose kernels are per-output-channel symmetric ``num_bits``
    quantized and dequantized in numpy (the weight-only recipe's arithmetic, done by hand)."""
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    top = 2 ** (num_bits - 1) - 1
    for layer in clone.layers:
        if not layer.weights:
            continue
        kernel, *rest = layer.get_weights()
        # Output channels: last axis for Conv2D/Dense; for DepthwiseConv2D (kh, kw, in, mult)
        # TFLite's channel is in*mult, i.e. the last two axes together.
        flat = kernel.reshape(-1, kernel.shape[-2] * kernel.shape[-1]) if isinstance(
            layer, keras.layers.DepthwiseConv2D) else kernel.reshape(-1, kernel.shape[-1])
        scale = np.abs(flat).max(axis=0) / top
        quantized = np.clip(np.round(flat / scale), -top, top) * scale
        layer.set_weights([quantized.reshape(kernel.shape).astype(np.float32), *rest])
    return clone


def test_weight_only_int8_equals_hand_quantized_weights(tiny: dict) -> None:
    """The int8 weight-only model computes exactly the float model with per-channel int8
    fake-quantized weights: the two differ only by float32 rounding, so the tolerance is a few
    float32 ulps of the output (probabilities <= 1)."""
    from litequant.quantize import edge_quantizer as eq

    inputs = _smooth_images(8, seed=3)
    model, _ = eq.quantize(tiny["tflite"], "weight_only_int8", None, min_weight_elements=0)
    expected = _fake_quantized_keras(tiny["keras"], 8).predict(inputs, verbose=0)
    float_outputs = tiny["keras"].predict(inputs, verbose=0)
    got = _run(model, inputs)
    float32_tolerance = 64 * np.finfo(np.float32).eps
    np.testing.assert_allclose(got, expected, atol=float32_tolerance, rtol=0)
    # and int8 weights do change the outputs (the comparison above is not float vs float)
    assert np.abs(got - float_outputs).max() > float32_tolerance


def test_static_int8_is_close_to_float(tiny: dict) -> None:
    """Each int8 activation tensor rounds to 1/255 of its range; to first order those relative
    errors add up along the graph, so |int8 - float| of the probabilities (range <= 1) is within
    (number of int8 activation tensors) / 255, plus half an output step. This holds when no
    activation is clipped, i.e. with ``global`` ranges and inputs like the calibration data (the
    library's ``moving_average`` ranges clip and exceed it on this very model)."""
    from litequant.quantize import edge_quantizer as eq

    calibration, inputs = _smooth_images(32, seed=4), _smooth_images(8, seed=5)
    model, _ = eq.quantize(tiny["tflite"], "static_int8_minmax", calibration)
    _, out, tensors = _io(model)
    activations = [t for t in tensors if t["dtype"] == np.int8 and t["name"]
                   and not t["name"].endswith(("convolution", "depthwise", "MatMul"))
                   and len(t["quantization_parameters"]["scales"]) == 1]
    tolerance = len(activations) / 255 + out["quantization"][0] / 2
    error = np.abs(_run(model, inputs) - _run(tiny["tflite"], inputs)).max()
    assert error <= tolerance, (error, tolerance, len(activations))


def test_global_ranges_cover_every_calibration_value(tiny: dict) -> None:
    """With ``global`` ranges the int8 input grid spans the calibration data (to one step);
    the library's moving average of per-image ranges lies inside it (a convex combination of
    per-image minima/maxima)."""
    from litequant.quantize import edge_quantizer as eq

    def input_range(ranges: str) -> tuple[float, float, float]:
        model, _ = eq.quantize(tiny["tflite"], "static_int8_minmax", calibration, ranges=ranges)
        scale, zero = _io(model)[0]["quantization"]
        return (-128 - zero) * scale, (127 - zero) * scale, scale

    calibration = _smooth_images(32, seed=6)
    low, high, step = input_range("global")
    assert low <= calibration.min() + step and high >= calibration.max() - step
    ma_low, ma_high, ma_step = input_range("moving_average")
    assert ma_low >= low - step and ma_high <= high + step


def test_exclude_keeps_matching_layers_float(tiny: dict) -> None:
    from litequant.quantize import edge_quantizer as eq

    def dtypes(model: bytes) -> dict[str, str]:
        return {t["name"]: np.dtype(t["dtype"]).name for t in _io(model)[2]
                if "classifier" in t["name"] and "MatMul" in t["name"]}

    quantized, _ = eq.quantize(tiny["tflite"], "weight_only_int8", None, min_weight_elements=0)
    kept, recipe = eq.quantize(tiny["tflite"], "weight_only_int8", None, exclude=["classifier"],
                               min_weight_elements=0)
    assert "int8" in dtypes(quantized).values()
    assert set(dtypes(kept).values()) == {"float32"}
    assert recipe[-1]["regex"] == "classifier" and recipe[-1]["algorithm_key"] == "no_quantize"


def test_bad_requests_raise(tiny: dict) -> None:
    from litequant.quantize import edge_quantizer as eq

    with pytest.raises(ValueError, match="unknown"):
        eq.build_recipe("int3")
    with pytest.raises(ValueError, match="calibration"):
        eq.quantize(tiny["tflite"], "static_int8_minmax", None)
    with pytest.raises(ValueError, match="shape"):
        eq.quantize(tiny["tflite"], "static_int8_minmax", np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="regular expression"):
        eq.build_recipe("weight_only_int8", exclude=["("])
    with pytest.raises(ValueError, match="min_weight_elements"):
        eq.build_recipe("weight_only_int8", min_weight_elements=-1)


def _int8_weights(model: bytes) -> dict[str, int]:
    """``{op output name: weight elements}`` of the weight ops whose weights are int8."""
    from litequant.quantize.flatbuffer import INT8, read_model, tensor_name, weighted_ops
    from litequant.quantize.passes.weight_grid import int8_weight

    tree = read_model(model)
    tensors = tree.subgraphs[0].tensors
    return {tensor_name(tensors[op.outputs[0]]): int(np.prod(tensors[index].shape))
            for _, op in weighted_ops(tree)
            if tensors[index := int8_weight(tree, op)].type == INT8}


def test_weight_only_int8_keeps_weight_tensors_under_1024_elements_float() -> None:
    """As TensorFlow's dynamic range keeps them: a 3x3 conv 3 -> 37 (999 weights) stays
    float32; a 3x3 conv 37 -> 4 (1332), a dense 64 -> 32 (2048) and a dense 32 -> 32 (exactly
    1024) become int8."""
    import keras
    import tensorflow as tf

    from litequant.quantize import edge_quantizer as eq

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(37, 3, padding="same", name="small")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", name="large")(x)
    x = keras.layers.Flatten()(keras.layers.AveragePooling2D(2)(x))
    x = keras.layers.Dense(32, name="exact")(keras.layers.Dense(32, name="first")(x))
    model = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, x)).convert()
    default = _int8_weights(eq.quantize(model, "weight_only_int8", None)[0])
    assert sorted(default.values()) == [1024, 1332, 2048]
    assert not any("small" in name for name in default)
    every = _int8_weights(eq.quantize(model, "weight_only_int8", None, min_weight_elements=0)[0])
    assert sorted(every.values()) == [999, 1024, 1332, 2048]
    assert eq.MIN_WEIGHT_ELEMENTS == 1024


def test_registry_edge_quantizer_bases_name_known_recipes_with_their_calibration() -> None:
    from litequant.quantize import edge_quantizer as eq
    from litequant.quantize.registry import VARIANTS, EdgeQuantizer

    bases = [v.base for v in VARIANTS.values() if isinstance(v.base, EdgeQuantizer)]
    assert bases  # the registry builds some variants with ai-edge-quantizer
    for base in bases:
        assert base.recipe in eq.EDGE_QUANTIZER_VARIANTS, base
        assert base.calibrated == eq.EDGE_QUANTIZER_VARIANTS[base.recipe].needs_calibration
