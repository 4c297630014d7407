"""int8_selective's ops kept float, chosen on the real int8 model
(:mod:`litequant.quantize.passes.selection`), on a tiny Keras model converted by the real
converter, with one activation made fragile on purpose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from litequant.quantize.passes import selection as sel

IMAGES = 40
OUTPUT = "probabilities"


def fragile_activation_model():
    """conv_a -> conv_b -> conv_c -> flatten -> dense softmax, random weights.

    ``conv_b`` (linear) adds a bias of 1000 to its output channel 0, which ``conv_c`` ignores
    (zero weights on that input channel): harmless in float, and every weight quantizes
    per channel as well as any other layer's, but the per-tensor int8 range of conv_b's output
    then spans about 1000, a step of about 4, far coarser than the informative channels' spread
    of a few units: quantizing that one activation destroys the model.
    """
    import keras

    rng = np.random.default_rng(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.Conv2D(8, 1, name="conv_b")(x)
    x = keras.layers.Conv2D(8, 1, activation="relu", name="conv_c")(x)
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
        if layer.name == "conv_b":
            bias[0] = 1000.0  # one huge channel sets the tensor's int8 range
        if layer.name == "conv_c":
            kernel[:, :, 0, :] = 0.0  # ... and is ignored downstream
        layer.set_weights([kernel, bias])
    return model


def calibration_images() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(IMAGES, 8, 8, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes | Path]:
    """The SavedModel, its float32 and calibrated conversions."""
    pytest.importorskip("keras")
    from litequant.quantize.conversion import calibrate_int8, convert_variant

    folder = tmp_path_factory.mktemp("fragile") / "saved_model"
    fragile_activation_model().export(str(folder), format="tf_saved_model", verbose=False)
    return {"saved_model": folder, "float32": convert_variant(folder, "float32"),
            "calibrated": calibrate_int8(folder, calibration_images())}


@pytest.fixture(scope="module")
def selected(converted) -> tuple[dict, bytes]:
    """The selection within a 10-point budget, no latency ceiling to speak of."""
    calibrated = converted["calibrated"]
    return sel.select_float_ops(
        calibrated, quantizer(calibrated), converted["float32"], calibration_images(), OUTPUT,
        budget_points=10.0, max_latency_vs_int8=100.0, max_layers=4)


def quantizer(calibrated: bytes):
    from litequant.quantize.conversion import quantize_calibrated

    return lambda denylist: quantize_calibrated(calibrated, denylist)


def float_op_labels(selection: dict) -> list[str]:
    return [op["label"] for op in selection["float_ops"]]


def test_significant_gain_is_a_paired_test() -> None:
    before = np.array([1.0, 1.0, 1.0, 1.0])
    assert sel.significant_gain(before, before - 0.1)  # every image better: no spread
    # mean gain 0.05, spread 0.5 per image: within noise
    assert not sel.significant_gain(before, before - np.array([0.55, -0.45, 0.55, -0.45]))
    assert not sel.significant_gain(before, before + 0.1)
    np.testing.assert_allclose(sel.per_image_kl(np.array([[0.5, 0.5]]),
                                                np.array([[0.25, 0.75]])),
                               [0.5 * np.log(2.0) + 0.5 * np.log(0.5 / 0.75)])


def test_quantize_calibrated_matches_the_converter(converted) -> None:
    from litequant.quantize.conversion import convert_variant

    images = calibration_images()
    plain = convert_variant(converted["saved_model"], "int8", images)
    again = quantizer(converted["calibrated"])([])
    np.testing.assert_array_equal(sel.run_model(plain, images, OUTPUT),
                                  sel.run_model(again, images, OUTPUT))
    assert sel.float_weight_positions(again) == []


def test_units_are_activations_with_their_producer_and_readers(converted) -> None:
    graph = sel.graph_of(converted["calibrated"])
    units = {unit.label: [graph.ops[i].kind for i in unit.ops]
             for unit in sel.candidate_units(graph)}
    # conv_a's output: conv_a and conv_b; conv_b's: conv_b and conv_c; conv_c's: conv_c and
    # the flatten's RESHAPE (its SHAPE reader writes integers: not kept float)
    assert units["conv_a_1"] == ["CONV_2D", "CONV_2D"]
    assert units["conv_b_1"] == ["CONV_2D", "CONV_2D"]
    assert units["conv_c_1"] == ["CONV_2D", "RESHAPE"]


def test_logits_model_drops_the_final_softmax(converted) -> None:
    images = calibration_images()
    logits, found = sel.logits_model(converted["float32"])
    assert found
    np.testing.assert_allclose(sel.run_model(logits, images, "logits"),
                               sel.run_model(converted["float32"], images, OUTPUT), atol=1e-5)
    assert sel.logits_model(logits) == (logits, False)  # no softmax left


def test_the_fragile_activation_is_kept_float(converted, selected) -> None:
    images = calibration_images()
    calibrated = converted["calibrated"]
    selection, model = selected
    # the cheap ranking shortlists conv_b's output, and keeping it float (conv_b and its
    # reader conv_c) is the one step taken, measured best alone: the budget holds for real
    assert selection["candidates"][0]["label"] == "conv_b_1"  # ranked first alone
    assert min(selection["alone"], key=lambda row: row["kl_divergence"])["label"] == "conv_b_1"
    assert selection["int8"]["loss_points"] > 10.0
    assert float_op_labels(selection) == ["conv_b_1", "conv_c_1"]
    assert selection["budget_met"] and selection["agreement"] >= 90.0
    assert selection["layers_kept"] == 2 and sel.float_weight_positions(model) == [1, 2]
    assert [p["step"] for p in selection["curve"]] == [0, 1]
    sel.check_float_ops(selection, model)
    # conv_b kept float alone does not help: its output is quantized again for conv_c
    reference = sel.judge(converted["float32"], images, OUTPUT)
    alone = sel.output_effect(reference, sel.judge(
        quantizer(calibrated)([selection["float_layers"][0]]), images, OUTPUT))
    assert alone["agreement"] < selection["agreement"] - 20.0
    record = sel.record_fields(selection)
    assert record["float_layers"] == selection["float_layers"]
    assert record["budget_met"] and record["budget_images"] == IMAGES
    assert record["calibration_agreement"] == {"selected": selection["agreement"],
                                               "int8": selection["int8"]["agreement"]}
    assert "latency_vs_int8" not in record  # no wall-clock value in conversion.json


def test_latency_ceiling_is_respected_and_a_missed_budget_is_recorded(converted) -> None:
    images = calibration_images()
    calibrated = converted["calibrated"]

    def timer(candidate: bytes, int8: bytes) -> float:  # 10 % per float weight op
        return 1.0 + 0.1 * len(sel.float_weight_positions(candidate))

    selection, model = sel.select_float_ops(
        calibrated, quantizer(calibrated), converted["float32"], images, OUTPUT,
        budget_points=10.0, max_latency_vs_int8=1.15, max_layers=4, timer=timer)
    built = [p for p in selection["curve"] if p.get("agreement") is not None]
    assert all(p["latency_vs_int8"] <= 1.15 for p in built if p["accepted"])
    assert any(p["skipped"] == "max_latency_vs_int8" for p in selection["curve"])
    assert not selection["budget_met"]  # the fragile unit (2 weight ops) costs 1.2x
    assert selection["latency_vs_int8"] <= 1.15
    assert selection["agreement"] == max(p["agreement"] for p in built if p["accepted"])
    assert len(sel.float_weight_positions(model)) == selection["layers_kept"] <= 1
    assert not sel.record_fields(selection)["budget_met"]
    # max_layers binds the same way
    capped, _ = sel.select_float_ops(
        calibrated, quantizer(calibrated), converted["float32"], images, OUTPUT,
        budget_points=10.0, max_latency_vs_int8=100.0, max_layers=1, timer=timer)
    assert capped["layers_kept"] <= 1 and not capped["budget_met"]
    assert any(p["skipped"] == "max_layers" for p in capped["curve"])


def test_latency_ratio_times_real_models(converted) -> None:
    calibrated = converted["calibrated"]
    int8 = quantizer(calibrated)([])
    ratio = sel.latency_ratio(int8, int8)
    assert 0.2 < ratio < 5.0  # the same model against itself, interleaved


def test_int8_mse_passes_apply_after_the_float_ops(converted, selected) -> None:
    """int8_selective's passes (weight grid, activation ranges, bias correction) rewrite the
    int8 rest and leave the float ops float."""
    from litequant.core.params import CalibrationParams
    from litequant.quantize.context import PassInputs
    from litequant.quantize.passes import activation_ranges, bias_correction, weight_grid
    from litequant.quantize.registry import VARIANTS

    assert VARIANTS["int8_selective"].passes == VARIANTS["int8_mse"].passes

    images = calibration_images()
    selection, model = selected
    inputs = PassInputs(saved_model=converted["saved_model"],
                        float32_model=lambda: converted["float32"], calibration=images,
                        calibration_params=CalibrationParams(
                            num_images=IMAGES, source="images", seed=0,
                            bias_correction="analytic"))
    corrected = model
    for step in (weight_grid, activation_ranges, bias_correction):
        rewritten, summary = step.apply(corrected, inputs)
        assert isinstance(summary, dict), step.__name__
        if step is not activation_ranges:  # no int8 activation of this model has outliers
            assert rewritten != corrected and summary["ops"] >= 1, step.__name__
        assert sel.float_weight_positions(rewritten) == sel.float_weight_positions(model)
        corrected = rewritten
    reference = sel.judge(converted["float32"], images, OUTPUT)
    effect = sel.output_effect(reference, sel.judge(corrected, images, OUTPUT))
    assert effect["agreement"] >= selection["agreement"] - 5.0


def test_the_report_shows_the_choice_agreement_verdict_and_latency(selected) -> None:
    from litequant.report.plots import selection_png
    from litequant.report.summary import selection_note

    selection, _ = selected
    note = selection_note(sel.record_fields(selection), selection)
    assert note.startswith("2 weight op(s) kept float, chosen on the real int8 model")
    assert f"{selection['agreement']:.1f}% against all-int8 " \
           f"{selection['int8']['agreement']:.1f}% (expected loss " in note
    assert ", met; p50" in note
    assert f"p50 {selection['latency_vs_int8']:.2f}x the all-int8 model's" in note
    assert note.endswith("CONV_2D conv_b_1, CONV_2D conv_c_1")
    missed = {**sel.record_fields(selection), "budget_met": False}
    assert "NOT met: the closest model within limits" in selection_note(missed)
    assert selection_png(selection, "tiny")[:4] == b"\x89PNG"


def test_expected_loss_points_hand_computed() -> None:
    # two images, float margins log(0.6/0.4) and log(0.9/0.1); the model's margin errors
    # -0.2 and +0.2 (RMS 0.2): Phi(-0.405/0.2) + Phi(-2.197/0.2), halved, in points
    from math import erf, log, sqrt

    reference = np.array([[0.6, 0.4], [0.9, 0.1]])
    m = np.array([log(0.6 / 0.4), log(0.9 / 0.1)])
    shifted = m + np.array([-0.2, 0.2])
    probabilities = np.stack([1 / (1 + np.exp(-shifted)), 1 / (1 + np.exp(shifted))], axis=1)
    want = 50.0 * sum(0.5 * (1 + erf(-x / 0.2 / sqrt(2))) for x in m)
    assert sel.expected_loss_points(reference, probabilities) == pytest.approx(want, rel=1e-6)
    assert sel.expected_loss_points(reference, reference) == 0.0
    effect = sel.output_effect(reference, probabilities)
    assert effect["observed_loss_points"] == 0.0  # no top-1 class flipped ...
    assert effect["loss_points"] == effect["expected_loss_points"] > 1.0  # ... one may
