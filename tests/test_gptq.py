"""GPTQ weight rounding (litequant.quantize.passes.gptq): a hand-computed case, its objective
against round to nearest, the convolution patch layout against LiteRT's own convolution, and the
rewrite of a tiny converted model."""

from __future__ import annotations

import numpy as np
import pytest

from litequant.quantize.convolution import input_patches
from litequant.quantize.passes import gptq


def test_hand_case_compensates_the_first_error_with_the_correlated_weight() -> None:
    # two inputs with correlation 0.9; weights [1.4, 0.3] on a grid of step 1.
    # Round to nearest: [1, 0], error [0.4, 0.3] (both push the output the same way).
    # GPTQ rounds column 0 to 1 (error 0.4) and moves column 1 by 0.4 * H⁻¹₀₁ / H⁻¹₀₀
    # = 0.4 * 0.9 / 1.01 (H damped by 1 % of its mean diagonal): 0.3 + 0.356 = 0.656 -> 1.
    hessian = np.array([[1.0, 0.9], [0.9, 1.0]])
    weights = np.array([[1.4, 0.3]])
    levels = gptq.gptq_round(weights, hessian, np.array([1.0]))
    assert levels.tolist() == [[1, 1]]
    assert levels.dtype == np.int8
    # its output error e·H·e is the smaller one: 0.146 against round to nearest's 0.466
    assert gptq.output_power(weights - levels, hessian) == pytest.approx(0.146)
    assert gptq.output_power(weights - np.array([[1.0, 0.0]]), hessian) == pytest.approx(0.466)
    # uncorrelated inputs: nothing to compensate, GPTQ is round to nearest
    assert gptq.gptq_round(weights, np.eye(2), np.array([1.0])).tolist() == [[1, 0]]


def test_lower_output_error_than_round_to_nearest_on_correlated_inputs() -> None:
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(24, 24))
    inputs = rng.normal(size=(2000, 24)) @ mixing  # correlated, like neighbouring pixels
    hessian = inputs.T @ inputs / len(inputs)
    weights = rng.normal(size=(16, 24))
    scales = np.abs(weights).max(axis=1) / 127 * 8  # a coarse grid: rounding matters
    levels = gptq.gptq_round(weights, hessian, scales)
    assert np.abs(levels.astype(int)).max() <= 127
    nearest = np.clip(np.round(weights / scales[:, None]), -127, 127)
    gptq_error = gptq.output_power(weights - levels * scales[:, None], hessian)
    nearest_error = gptq.output_power(weights - nearest * scales[:, None], hessian)
    assert gptq_error < 0.5 * nearest_error
    # the error on the weights themselves is larger: GPTQ trades it for the output's
    assert np.sum((weights - levels * scales[:, None]) ** 2) > np.sum(
        (weights - nearest * scales[:, None]) ** 2)


def test_per_row_hessians_and_all_zero_rows() -> None:
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(3, 9))
    weights[2] = 0.0
    hessians = np.stack([(x.T @ x) / 50 for x in rng.normal(size=(3, 50, 9)) @ rng.normal(
        size=(9, 9))])
    scales = np.array([0.1, 0.05, 0.0])
    together = gptq.gptq_round(weights, hessians, scales)
    for row in range(2):  # each row rounded with its own H (depthwise channels)
        alone = gptq.gptq_round(weights[row:row + 1], hessians[row], scales[row:row + 1])
        # a shared H is taken in order of decreasing diagonal, a per-row one in column order
        order = np.argsort(-np.diag(hessians[row]), kind="stable")
        if np.array_equal(order, np.arange(9)):
            assert together[row].tolist() == alone[0].tolist()
        assert gptq.output_power((weights[row] - together[row] * scales[row])[None],
                                 hessians[row]) <= gptq.output_power(
            (weights[row] - np.round(weights[row] / scales[row]) * scales[row])[None],
            hessians[row]) + 1e-12
    assert together[2].tolist() == [0] * 9


@pytest.mark.filterwarnings("ignore")
def test_patches_match_litert_and_the_model_is_rewritten(tmp_path) -> None:
    keras = pytest.importorskip("keras")
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from litequant.quantize.conversion import convert_variant
    from litequant.quantize.flatbuffer import buffer_array, matched_weight_ops, read_model

    keras.utils.set_random_seed(0)
    inputs = keras.Input((9, 9, 3))
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu",
                            name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4, name="fc")(x))
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    rng = np.random.default_rng(0)
    # smooth images (correlated neighbouring pixels), as photos are
    images = np.cumsum(rng.uniform(-0.3, 0.3, (24, 9, 9, 3)), axis=1).astype(np.float32)
    float_bytes = convert_variant(tmp_path / "sm", "float32")
    int8_bytes = convert_variant(tmp_path / "sm", "int8", images)

    # the patch layout: patches @ weights reproduces LiteRT's float convolutions
    reference = read_model(float_bytes)
    interpreter = Interpreter(
        model_content=float_bytes, experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images[:1])
    interpreter.invoke()
    tensors = reference.subgraphs[0].tensors
    convs = [(kind, op) for kind, op, _ in matched_weight_ops(reference, reference)
             if kind != "FULLY_CONNECTED"]
    assert [kind for kind, _ in convs] == ["CONV_2D", "DEPTHWISE_CONV_2D"]
    for kind, op in convs:
        weights = buffer_array(reference, tensors[op.inputs[1]], np.float32).astype(np.float64)
        bias = buffer_array(reference, tensors[op.inputs[2]], np.float32)
        x = interpreter.get_tensor(op.inputs[0]).astype(np.float64)
        options = op.builtinOptions
        patches = input_patches(
            x[0], (weights.shape[1], weights.shape[2]), (options.strideH, options.strideW),
            (options.dilationHFactor, options.dilationWFactor), options.padding == 0)
        if kind == "CONV_2D":
            linear = patches.reshape(len(patches), -1) @ weights.reshape(len(weights), -1).T
        else:
            linear = np.einsum("pijc,ijc->pc", patches, weights[0])
        output = interpreter.get_tensor(op.outputs[0]).reshape(len(patches), -1)
        if options.fusedActivationFunction == 1:  # RELU
            linear = np.maximum(linear + bias, 0) - bias
        np.testing.assert_allclose(linear + bias, output, atol=1e-4)
        gram, count = gptq.input_gram(kind, options, weights, x)
        assert count == len(patches)
        rows = patches.reshape(len(patches), -1) if kind == "CONV_2D" else None
        if rows is not None:
            np.testing.assert_allclose(gram, rows.T @ rows, rtol=1e-10)
        else:
            assert gram.shape == (weights.shape[3], 9, 9)

    rounded, summary = gptq.gptq_model(int8_bytes, float_bytes, images)
    assert summary["ops"] == 3 and not summary["skipped"] and summary["num_images"] == 24
    assert summary["output_rel_error"] < summary["output_rel_error_nearest"]
    before, after = read_model(int8_bytes), read_model(rounded)
    changed = 0
    for (_, op_before, _), (_, op_after, _) in zip(matched_weight_ops(before, reference),
                                                   matched_weight_ops(after, reference),
                                                   strict=True):
        w_before = before.subgraphs[0].tensors[op_before.inputs[1]]
        w_after = after.subgraphs[0].tensors[op_after.inputs[1]]
        # same grid (scales) and biases: only the int8 levels move
        np.testing.assert_array_equal(w_before.quantization.scale, w_after.quantization.scale)
        assert [before.buffers[before.subgraphs[0].tensors[i].buffer].data.tobytes()
                for i in op_before.inputs[2:] if i >= 0] == [
            after.buffers[after.subgraphs[0].tensors[i].buffer].data.tobytes()
            for i in op_after.inputs[2:] if i >= 0]
        changed += int(np.sum(buffer_array(before, w_before, np.int8)
                              != buffer_array(after, w_after, np.int8)))
    assert changed > 0
    assert abs(len(rounded) - len(int8_bytes)) < 1024
