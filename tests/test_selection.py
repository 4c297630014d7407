"""Output-sensitivity ranking and the budgeted choice of int8_selective's float layers
(:mod:`litequant.quantize.passes.selection`), on tiny Keras models converted by the real
converter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from litequant.quantize.flatbuffer import buffer_array, read_model, weighted_ops
from litequant.quantize.passes import selection as sensitivity
from litequant.quantize.passes.weight_grid import fake_quantize

IMAGES = 40  # the ranking reads the first 32 (sensitivity.RANKING_IMAGES), the budget all


def fragile_model(fragile: str):
    """conv_a -> conv_b -> conv_c -> flatten -> dense softmax, random weights.

    Output channel 0 of every conv is dead (a bias of -1000 before the ReLU). The ``fragile``
    layer gets a weight of 1000 on that dead input channel in every output channel: harmless
    in float, but per-channel int8 rounding (scale 1000 / 127) then rounds all its other
    weights to zero.
    """
    import keras

    rng = np.random.default_rng(0)
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for name in ("conv_a", "conv_b", "conv_c"):
        x = keras.layers.Conv2D(8, 3 if name == "conv_a" else 1, padding="same",
                                activation="relu", name=name)(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="head")(x))
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        fan_in = int(np.prod(weights[0].shape[:-1]))
        gain = 3.0 if layer.name == "head" else 2.0  # a confident, input-dependent classifier
        kernel = rng.normal(scale=gain / np.sqrt(fan_in), size=weights[0].shape).astype(
            np.float32)
        bias = np.zeros(weights[1].shape, np.float32)
        if layer.name != "head":
            bias[0] = -1000.0  # output channel 0 of every conv is dead after the ReLU
        if layer.name == fragile:
            kernel[..., 0, :] = 0.0
            kernel[0, 0, 0, :] = 1000.0  # an outlier on the dead input channel
        layer.set_weights([kernel, bias])
    return model


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, bytes]]:
    """``{fragile layer: (SavedModel folder, float32 .tflite bytes)}``."""
    pytest.importorskip("keras")
    from litequant.quantize.conversion import convert_variant

    built = {}
    for fragile in ("conv_b", "conv_c"):
        folder = tmp_path_factory.mktemp(fragile) / "saved_model"
        fragile_model(fragile).export(str(folder), format="tf_saved_model", verbose=False)
        built[fragile] = (folder, convert_variant(folder, "float32"))
    return built


def calibration_images() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(IMAGES, 8, 8, 3)).astype(np.float32)


def test_weight_rounding_rewrites_only_the_chosen_ops_weights(converted) -> None:
    _, float_model = converted["conv_b"]
    rounding = sensitivity.WeightRounding(float_model)
    assert [op.op for op in rounding.ops] == ["CONV_2D"] * 3 + ["FULLY_CONNECTED"]
    assert rounding.model_bytes([]) == float_model
    patched = rounding.model_bytes([1])
    assert len(patched) == len(float_model) and patched != float_model
    original, rewritten = read_model(float_model), read_model(patched)
    for position, ((_, op), (_, new_op)) in enumerate(zip(
            weighted_ops(original), weighted_ops(rewritten), strict=True)):
        w = buffer_array(original, original.subgraphs[0].tensors[op.inputs[1]], np.float32)
        got = buffer_array(rewritten, rewritten.subgraphs[0].tensors[new_op.inputs[1]],
                           np.float32)
        if position == 1:  # conv_b: the converter's per-output-channel rounding, axis 0
            np.testing.assert_array_equal(got, fake_quantize(w, 0, "max").astype(np.float32))
            assert np.count_nonzero(got) == 8  # only the outliers survive
        else:
            np.testing.assert_array_equal(got, w)


@pytest.mark.parametrize("fragile", ["conv_b", "conv_c"])
def test_the_fragile_layer_is_ranked_first(converted, fragile: str) -> None:
    _, float_model = converted[fragile]
    images = calibration_images()
    rounding = sensitivity.WeightRounding(float_model)
    reference = sensitivity.run_model(float_model, images, "probabilities")
    ranking = sensitivity.rank_weight_ops(rounding, images, reference, "probabilities")
    assert [row["rank"] for row in ranking] == [1, 2, 3, 4]
    assert fragile in ranking[0]["label"] and fragile in ranking[0]["tensor_name"]
    assert ranking[0]["kl_divergence"] > 10 * ranking[1]["kl_divergence"]
    assert ranking[0]["agreement"] < ranking[1]["agreement"]
    kl = [row["kl_divergence"] for row in ranking]
    assert kl == sorted(kl, reverse=True)


def test_fewest_layers_meeting_the_budget() -> None:
    def curve(*agreements: float) -> list[dict]:
        return [{"layers_kept": k, "agreement": a, "loss_points": 100.0 - a}
                for k, a in enumerate(agreements)]

    assert sensitivity.fewest_layers(curve(90.0, 99.0, 99.6, 100.0), 0.5) == (2, True)
    assert sensitivity.fewest_layers(curve(99.5, 100.0), 0.5) == (0, True)
    # no point meets it: the best agreement, the fewest layers among equals
    assert sensitivity.fewest_layers(curve(90.0, 97.0, 98.0, 98.0), 0.5) == (2, False)


def test_selection_keeps_the_fragile_layer_float_and_the_real_model_agrees(converted) -> None:
    from litequant.quantize.conversion import convert_selective, convert_variant

    saved_model, float_model = converted["conv_b"]
    images = calibration_images()
    selection = sensitivity.select_float_ops(float_model, images, "probabilities",
                                             budget_points=10.0, max_layers=3)
    curve = selection["curve"]
    assert [p["layers_kept"] for p in curve] == [0, 1, 2, 3]  # every point evaluated
    assert curve[0]["loss_points"] > 10.0  # all int8 weights: the budget is not met
    assert selection["layers_kept"] == 1 and selection["budget_met_simulated"]
    assert [op["label"] for op in selection["float_ops"]] == [selection["ranking"][0]["label"]]
    assert "conv_b" in selection["float_layers"][0]
    # the real conversion with those tensor names denylisted keeps exactly that op float
    # (real_check raises otherwise), and agrees far better than plain int8
    selective = convert_selective(saved_model, images, selection["float_layers"])
    assert sensitivity.float_weight_positions(selective) == [1]
    real = sensitivity.real_check(selection, selective, float_model, images, "probabilities")
    plain = convert_variant(saved_model, "int8", images)
    assert sensitivity.float_weight_positions(plain) == []
    reference = sensitivity.run_model(float_model, images, "probabilities")
    int8 = sensitivity.output_effect(reference, sensitivity.run_model(plain, images,
                                                                      "probabilities"))
    assert real["agreement"] > int8["agreement"] + 20.0
    assert real["budget_met"] == (real["loss_points"] <= 10.0)
    record = sensitivity.record_fields(selection, real)
    assert record["float_layers"] == selection["float_layers"]
    assert record["budget_points"] == 10.0 and record["max_layers"] == 3
    assert record["budget_met"] == {"simulated": True, "real": real["budget_met"]}
    assert record["calibration_agreement"] == {"simulated": curve[1]["agreement"],
                                               "real": real["agreement"]}
    assert (record["ranking_images"], record["budget_images"]) == (32, IMAGES)
    assert "selection_seconds" not in record  # no wall-clock value in an output
    # denylisting another op than the chosen one is caught
    wrong = convert_selective(saved_model, images, [selection["ranking"][1]["tensor_name"]])
    with pytest.raises(RuntimeError, match="denylist names do not match"):
        sensitivity.real_check(selection, wrong, float_model, images, "probabilities")


def test_labels_name_the_weight_op_of_a_fused_tensor_name() -> None:
    fused = ("mnv2_1/expanded_conv_depthwise_relu_1/Relu6;mnv2_1/expanded_conv_depthwise_BN_1/"
             "batchnorm/add_1;mnv2_1/expanded_conv_depthwise_1/depthwise;mnv2_1/"
             "expanded_conv_depthwise_BN_1/Cast_3/ReadVariableOp1")
    assert sensitivity.WeightOp(1, "DEPTHWISE_CONV_2D", fused).label \
        == "expanded_conv_depthwise_1"
    assert sensitivity.WeightOp(0, "FULLY_CONNECTED", "model/head_1/MatMul2").label == "head_1"
    assert sensitivity.WeightOp(0, "CONV_2D", "out:0").label == "out:0"
