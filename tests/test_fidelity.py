"""Fidelity metrics, the layer-error report, int8_selective, the peer row, the sweep table.

Expected values are computed by hand in the comments, never copied from the code's output.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks import calibration_sweep
from litequant.core import layout, metrics
from litequant.core.errors import PipelineError
from litequant.core.params import BenchmarkParams, EvaluateParams, PeerParams
from litequant.measure.layer_errors import keras_layers_of, layer_rows
from litequant.report.summary import (
    PEER_ROW,
    beyond_noise,
    calibration_section,
    fidelity_section,
    latency_columns,
    model_records,
    paired_changes,
    peer_row,
)
from tests.conftest import params_section

# --- metric functions against hand-computed values ---------------------------------------------


def test_softmax_by_hand() -> None:
    # exp(0) = 1, exp(ln 3) = 3 -> [1/4, 3/4]
    np.testing.assert_allclose(metrics.softmax(np.array([[0.0, math.log(3.0)]])),
                               [[0.25, 0.75]], rtol=1e-6)


def test_top_k_accuracy_by_hand() -> None:
    scores = np.array([[0.1, 0.6, 0.3, 0.0, 0.0, 0.0],    # order 1, 2, 0, ...
                       [0.5, 0.2, 0.1, 0.1, 0.05, 0.05],  # order 0, 1, 2|3 ...
                       [0.0, 0.0, 0.0, 0.0, 0.1, 0.9]])   # order 5, 4, ...
    labels = np.array([2, 0, 0])
    # top-1: row 0 predicts 1 (label 2) no; row 1 predicts 0 yes; row 2 predicts 5 no -> 1/3
    assert metrics.top_k_accuracy(scores, labels, 1) == pytest.approx(100 / 3)
    # top-2: row 0 {1, 2} yes; row 1 {0, 1} yes; row 2 {5, 4} no -> 2/3
    assert metrics.top_k_accuracy(scores, labels, 2) == pytest.approx(200 / 3)
    # top-5 of 6 classes: row 2 leaves out exactly one class, the lowest-index tie 0..3 kept
    # in index order (stable sort): {5, 4, 0, 1, 2} contains 0 -> 3/3
    assert metrics.top_k_accuracy(scores, labels, 5) == pytest.approx(100.0)


def test_top_k_breaks_ties_by_lower_index() -> None:
    # quantized outputs tie often: a tied maximum must pick the lower class index for k=1
    # exactly as it does inside the top-k order for k>1
    scores = np.array([[0.2, 0.4, 0.4, 0.0], [0.3, 0.3, 0.3, 0.1]])
    assert metrics.top_k(scores, 1).tolist() == [[1], [0]]
    assert metrics.top_k(scores, 3).tolist() == [[1, 2, 0], [0, 1, 2]]
    # label 2 ties with the winner of row 0 but is not the top-1
    assert metrics.top_k_accuracy(scores, np.array([2, 0]), 1) == pytest.approx(50.0)


def test_agreement_and_top5_overlap_by_hand() -> None:
    reference = np.array([[6, 5, 4, 3, 2, 1], [1, 2, 3, 4, 5, 6]], dtype=float)
    # row 0: same top-1 (0) but top-5 is {0,1,2,3,5}: 4 of the reference's {0,1,2,3,4}
    # row 1: top-1 4 instead of 5; top-5 {4,5,3,2,1} identical set -> 5 of 5
    scores = np.array([[6, 5, 4, 3, 0, 1], [1, 2, 3, 4, 7, 6]], dtype=float)
    assert metrics.top1_agreement(reference, scores) == pytest.approx(50.0)
    assert metrics.top_k_overlap(reference, scores, 5) == pytest.approx(100 * (4 / 5 + 5 / 5) / 2)


def test_kl_divergence_by_hand() -> None:
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    q = np.array([[0.25, 0.75], [1.0, 0.0]])
    # row 0: 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln 2 + 0.5 ln(2/3); row 1: 0
    expected = (0.5 * math.log(2) + 0.5 * math.log(2 / 3)) / 2
    assert metrics.mean_kl_divergence(p, q) == pytest.approx(expected, rel=1e-6)
    assert metrics.mean_kl_divergence(p, p) == pytest.approx(0.0, abs=1e-9)


def test_sqnr_by_hand() -> None:
    reference = np.array([[3.0, 4.0]])
    # signal 9 + 16 = 25, noise (4 - 3)^2 = 1 -> 10 log10 25 = 13.979 dB
    assert metrics.sqnr_db(reference, np.array([[3.0, 3.0]])) == pytest.approx(
        10 * math.log10(25.0))
    assert metrics.sqnr_db(reference, reference) == math.inf
    # JSON has no infinity: an exact copy is recorded as None
    assert metrics.fidelity_metrics(reference, reference)["sqnr_db"] is None


# --- layer-error report ------------------------------------------------------------------------

LAYERS = ["input_layer", "Conv1", "bn_Conv1", "Conv1_relu", "block_1_expand",
          "block_1_expand_BN", "block_1_expand_relu", "block_1_project"]


def test_keras_layer_names_from_fused_tensor_names() -> None:
    fused = ("mnv2_1/block_1_expand_relu_1/Relu6;mnv2_1/block_1_expand_BN_1/batchnorm;"
             "mnv2_1/block_1_expand_1/convolution")
    assert keras_layers_of(fused, LAYERS) == ["block_1_expand", "block_1_expand_BN",
                                              "block_1_expand_relu"]
    assert keras_layers_of("mnv2_1/Conv1_1/convolution", LAYERS) == ["Conv1"]
    assert keras_layers_of("StatefulPartitionedCall:0", LAYERS) == []


def test_layer_rows_rank_by_rmse_over_scale() -> None:
    dump = ("op_name,tensor_idx,num_elements,stddev,mean_error,max_abs_error,"
            "mean_squared_error,scale,zero_point,tensor_name\n"
            "CONV_2D,5,100,0.1,0.01,0.5,0.04,0.1,-128,mnv2_1/Conv1_1/convolution\n"
            "CONV_2D,9,50,0.1,0.0,0.2,0.0009,0.01,3,mnv2_1/block_1_project_1/convolution\n")
    rows = layer_rows(dump, LAYERS)
    # row 0: sqrt(0.04) = 0.2, / 0.1 = 2.0; row 1: sqrt(0.0009) = 0.03, / 0.01 = 3.0 (worst)
    assert [r["rmse_over_scale"] for r in rows] == pytest.approx([2.0, 3.0])
    assert [r["rank"] for r in rows] == [2, 1]
    assert [r["keras_layer"] for r in rows] == ["Conv1", "block_1_project"]
    assert rows[1]["zero_point"] == 3 and rows[0]["num_elements"] == 100


# --- report: noise calibration is explained ----------------------------------------------------


def test_noise_calibrated_rows_get_an_explanation() -> None:
    rows = [{"variant": "int8", "top1": 2.0, "delta_top1": -81.3, "agreement": 2.5,
             "calibration_representative": False},
            {"variant": "int16x8", "top1": 80.0, "delta_top1": -3.3, "agreement": 90.0,
             "calibration_representative": True}]
    text = "\n".join(calibration_section(rows))
    assert "NOT REPRESENTATIVE" in text and "int8 (top-1 2.00%" in text
    assert "int16x8" not in text
    assert "minimum and maximum" in text  # the reason, not only the label
    assert calibration_section(rows[1:]) == []


# --- peer row: uint8 input and a background class, on a tiny model -----------------------------


@pytest.fixture(scope="module")
def background_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny uint8-in/uint8-out classifier with 1001 outputs, index 0 = background.

    8x8 RGB input in [-1, 1]; global average pooling; dense: output 1 + c gets 10 x channel c,
    the background output a constant 2. So a pure red image (channels [1, -1, -1]) scores
    10 on output 1 (ImageNet class 0), green on output 2 (class 1), blue on output 3 (class 2).
    """
    import keras
    import tensorflow as tf

    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(1001, activation="softmax")
    model = keras.Model(inputs, dense(pooled))
    kernel = np.zeros((3, 1001), dtype=np.float32)
    for channel in range(3):
        kernel[channel, 1 + channel] = 10.0
    bias = np.zeros(1001, dtype=np.float32)
    bias[0] = 2.0
    dense.set_weights([kernel, bias])
    rng = np.random.default_rng(0)

    def dataset():
        for _ in range(16):
            yield [rng.uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    path = tmp_path_factory.mktemp("peer") / "background.tflite"
    path.write_bytes(converter.convert())
    return path


def _peer_project(root: Path, monkeypatch: pytest.MonkeyPatch, images: np.ndarray,
                  labels: np.ndarray) -> None:
    """The upstream outputs evaluate_peer reads (model.json, the evaluation split, the float model's
    probabilities) at their layout paths in ``root``, which becomes the working directory."""
    monkeypatch.chdir(root)
    layout.EXPORT_DIR.mkdir(parents=True)
    layout.MODEL_INFO.write_text(json.dumps({"preprocessing": "tf"}))
    layout.EVALUATION_SPLIT.mkdir(parents=True)
    np.save(layout.EVALUATION_SPLIT / layout.SPLIT_IMAGES, images)
    np.save(layout.EVALUATION_SPLIT / layout.SPLIT_LABELS, labels)
    layout.KERAS_EVALUATION_DIR.mkdir(parents=True)
    np.save(layout.FLOAT_PROBABILITIES, np.eye(1000, dtype=np.float32)[labels])


def peer_params(**values) -> PeerParams:
    return params_section(PeerParams, **values)


EVALUATE = {"threads": 1, "batch_size": 2}


def test_peer_row_handles_uint8_input_and_background_offset(
        background_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stages.evaluate_peer import evaluate_peer

    images = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    for colour in range(3):
        images[colour, :, :, colour] = 255  # red, green, blue
    labels = np.array([0, 1, 2], dtype=np.int32)
    _peer_project(tmp_path, monkeypatch, images, labels)
    settings = peer_params(path=str(background_model), label_offset=1)
    result = evaluate_peer(settings, params_section(EvaluateParams, **EVALUATE))
    # the model's own conventions are recorded: uint8 in, 1001 uint8 outputs
    assert result["input"]["dtype"] == "uint8" and result["input"]["scale"] > 0
    assert result["output"]["shape"][-1] == 1001 and result["label_offset"] == 1
    # red -> class 0, green -> class 1, blue -> class 2 only if the background output is dropped
    # and the [-1, 1] inputs are quantized with the model's own scale and zero point
    assert result["top1"] == 100.0 and result["agreement"] == 100.0
    # its top-1 per image, in the Keras label space, for the report's images won / lost
    assert np.load(layout.PEER_PREDICTIONS).tolist() == [0, 1, 2]
    written = json.loads((layout.PEER_EVALUATION_DIR / "metrics.json").read_text())
    assert written["top1"] == 100.0 and len(written["sha256"]) == 64
    # the report's peer row
    row = peer_row(written, {"top1": 50.0, "top5": 60.0}, 4 * written["size_bytes"])
    assert row["variant"] == PEER_ROW == "peer" and row["delta_top1"] == 50.0
    assert row["compression"] == 4.0 and "label_offset 1" in row["notes"]

    without_offset = peer_params(path=str(background_model), label_offset=0)
    with pytest.raises(PipelineError, match="1001 outputs after label_offset 0"):
        evaluate_peer(without_offset, params_section(EvaluateParams, **EVALUATE))
    assert json.loads((layout.PEER_EVALUATION_DIR / "metrics.json").read_text()) == written


def test_peer_skipped_or_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stages.evaluate_peer import evaluate_peer

    _peer_project(tmp_path, monkeypatch, np.zeros((1, 8, 8, 3), np.uint8), np.array([0]))
    evaluate = params_section(EvaluateParams, **EVALUATE)
    assert evaluate_peer(peer_params(path=None), evaluate) == {"status": "skipped"}
    assert json.loads((layout.PEER_EVALUATION_DIR / "metrics.json").read_text()) == {
        "status": "skipped"}
    missing = peer_params(path=str(tmp_path / "nope.tflite"))
    with pytest.raises(PipelineError, match="peer.path"):
        evaluate_peer(missing, evaluate)


def test_peer_latency_in_the_peer_row(background_model: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from stages.benchmark import benchmark

    _peer_project(tmp_path, monkeypatch, np.zeros((1, 8, 8, 3), dtype=np.uint8), np.array([0]))
    settings = params_section(BenchmarkParams, threads=[1, 2], warmup_runs=1, min_runs=7,
                              min_seconds=0.001, runtime_repeats=1)
    document = benchmark([], peer_params(path=str(background_model), label_offset=1), settings)
    result = document["models"]["peer"]
    assert result["status"] == "ok"
    assert result["size_bytes"] == background_model.stat().st_size
    assert set(result["latency"]) == {"1", "2"}
    for stats in result["latency"].values():
        assert stats["runs"] >= 7 and 0 < stats["p50_ms"] <= stats["p90_ms"]
    assert json.loads(layout.BENCHMARK_LATENCY.read_text()) == document
    # the row's speed-up is float32's p50 over the peer's p50 of the same thread count
    record = model_records(document)["peer"]
    # (this checks the arithmetic: a session that found the machine busy gives no speed-up at
    # all, tests/test_latency_sessions.py)
    record = {**record, "contended_threads": []}
    p50 = result["latency"]["1"]["p50_ms"]
    float32 = {"session": record["session"], "latency": {"1": {"p50_ms": 3 * p50}}}
    columns = latency_columns(record, float32)
    assert columns["latency_p50_ms_t1"] == pytest.approx(p50, abs=1e-3)
    assert columns["speedup_t1"] == pytest.approx(3.0, abs=0.01)
    assert "speedup_t2" not in columns  # float32 was not measured with 2 threads

    skipped = benchmark([], peer_params(path=None), settings)["models"]["peer"]
    assert skipped["status"] == "skipped" and "latency" not in skipped
    assert latency_columns(skipped, float32) == {}


# --- calibration sweep table from `dvc exp show --json` ----------------------------------------


def _revision(name: str, stamp: str, num_images: int, source: str, int8_top1: float,
              calibration_size: int = 150, folder: str = "../shared/imagenet-sample/val") -> dict:
    return {"rev": name * 3, "name": name, "data": {
        "timestamp": stamp,
        "params": {"params.yaml": {"data": {
            "fetch": {"source": "folder", "folder": folder,
                      "calibration_size": calibration_size},
            "calibration": {"num_images": num_images, "source": source}}}},
        "metrics": {"reports/metrics.json": {"data": {
            "keras": {"top1": 80.0}, "int8": {"top1": int8_top1}}}}}}


def test_sweep_rows_from_exp_show(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # the README's offline setup: the commit says fetch.source tfds, every experiment ran on a
    # folder (so each differs from the commit in more than calibration, but not from each other)
    baseline = _revision("main", "2026-01-01T09:00:00", 100, "images", 78.0, folder=None)
    baseline["data"]["params"]["params.yaml"]["data"]["fetch"]["source"] = "tfds"
    del baseline["data"]["metrics"]  # the commit itself was not run
    exp_show = [{"rev": "workspace", "data": {"params": {}, "metrics": {}}},
                {**baseline, "experiments": [
                    {"revs": [_revision("a", "2026-01-01T10:00:00", 50, "images", 79.0)]},
                    {"revs": [_revision("b", "2026-01-01T11:00:00", 10, "images", 70.0)]},
                    {"revs": [_revision("c", "2026-01-01T12:00:00", 50, "images", 79.6)]},
                    {"revs": [_revision("d", "2026-01-01T13:00:00", 50, "random_normal",
                                        1.0)]},
                    # another split: other evaluation images, not part of this sweep
                    {"revs": [_revision("e", "2026-01-01T14:00:00", 100, "images", 85.0,
                                        calibration_size=100)]},
                    # a queued run still shows its baseline's metrics: not a point yet
                    {"executor": {"state": "running"},
                     "revs": [_revision("f", "2026-01-01T15:00:00", 25, "images", 78.0)]},
                    {"executor": {"state": "failed"},
                     "revs": [_revision("g", "2026-01-01T15:00:00", 150, "images", 78.0)]}]}]
    points, skipped = calibration_sweep.experiment_points(exp_show)
    assert [p["experiment"] for p in points] == ["a", "b", "c", "d", "e"]
    assert skipped == ["skipped workspace: no reports/metrics.json (not run, or failed)",
                       "skipped main: no reports/metrics.json (not run, or failed)",
                       "skipped f: still running (see dvc queue status)",
                       "skipped g: failed (dvc queue logs g)"]
    rows, noise, more = calibration_sweep.sweep_group(points)
    # noise and other split excluded; size 50 run twice -> the newer (c) wins; sorted by size
    assert [(r["num_images"], r["experiment"]) for r in rows] == [(10, "b"), (50, "c")]
    assert [p["experiment"] for p in noise] == ["d"]
    assert more == ["skipped e: its params differ from the sweep's in fetch.calibration_size "
                    "(not only in calibration)",
                    "skipped a: c is a newer run with 50 calibration images"]
    # 79.6 - 80 = -0.4 >= -0.5 at 50 images; 10 images is 10 points below
    assert calibration_sweep.smallest_within(rows, "int8") == 50
    # one-sided: beating float counts as within
    assert calibration_sweep.smallest_within(
        [{"num_images": 5, "int8_delta_top1": 0.7}], "int8") == 5
    source = tmp_path / "exp.json"
    source.write_text(json.dumps(exp_show))
    output = tmp_path / "sweep.csv"
    capsys.readouterr()
    assert calibration_sweep.main(["--exp-json", str(source), "--output", str(output)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line for line in printed if line.startswith("skipped")] == skipped + more
    table = list(csv.DictReader(output.open()))
    assert [row["num_images"] for row in table] == ["10", "50"]
    assert float(table[1]["int8_top1"]) == pytest.approx(79.6)
    assert output.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_fidelity_section_shows_each_methods_gain_against_plain_int8() -> None:
    def row(variant, methods, agreement, delta, sqnr=None):
        return {"variant": variant, "status": "ok", "methods": methods, "agreement": agreement,
                "delta_top1": delta, "images": 200, "sqnr_db": sqnr}

    rows = [{"variant": "keras", "status": "ok", "agreement": 100.0, "images": 200},
            row("float32", [], 100.0, 0.0, 90.0),
            row("int8_plain", ["round to nearest"], 94.0, -4.5, 18.25),
            row("int8", ["round to nearest", "bias correction (analytic)"], 95.5, -1.5, 22.5),
            row("int8_gptq", ["GPTQ rounding", "bias correction (analytic)"], 95.0, -1.0)]
    lines = fidelity_section(rows, {"int8": (9, 0), "int8_gptq": (5, 3)})
    assert lines[0] == "## Fidelity: methods and what each bought"
    # int8 - int8_plain = 95.5 - 94.0 = +1.5 points (one image of 200 = 0.5 points);
    # SQNR 22.5 - 18.25 = +4.25 dB; 9 images won, none lost: 9 > 1.96 * 3 = 5.88, beyond noise
    assert ("| int8 | round to nearest, bias correction (analytic) | 95.50% | +1.50 | 9 / 0 | "
            "22.50 | +4.25 | -1.50 |" in lines)
    assert "| int8_plain | round to nearest | 94.00% | – | – | 18.25 | – | -4.50 |" in lines
    # 5 won, 3 lost: 2 <= 1.96 * sqrt(8) = 5.5, what a coin gives; a missing SQNR stays missing
    assert ("| int8_gptq | GPTQ rounding, bias correction (analytic) | 95.00% | +1.00 | "
            "5 / 3 (noise) | – | – | -1.00 |" in lines)
    assert not any(line.startswith("| float32") for line in lines)  # no methods: not listed
    assert "One image is 0.50 points here" in "\n".join(lines)
    assert "vs peer" not in "\n".join(lines)  # no peer evaluated: no peer column
    # with a peer: int8 won 1 and lost 4 against it (3 <= 1.96·√5 = 4.4, noise); int8_plain
    # lost 6 (6 > 1.96·√6 = 4.8, a real gap); int8_gptq was not compared
    with_peer = fidelity_section(rows, {"int8": (9, 0)}, {"int8": (1, 4), "int8_plain": (0, 6)})
    assert "| images won / lost | images won / lost vs peer | SQNR dB |" in with_peer[2]
    assert ("| int8 | round to nearest, bias correction (analytic) | 95.50% | +1.50 | 9 / 0 | "
            "1 / 4 (noise) | 22.50 | +4.25 | -1.50 |" in with_peer)
    assert ("| int8_plain | round to nearest | 94.00% | – | – | 0 / 6 | 18.25 | – | -4.50 |"
            in with_peer)
    assert with_peer[3].count("|") == with_peer[2].count("|")  # the rule row matches the header
    without = fidelity_section([r for r in rows if r["variant"] != "int8_plain"])
    assert "Set `convert.variants.int8_plain: true`" in "\n".join(without)
    assert fidelity_section(rows[:2]) == []


def test_paired_changes_count_the_images_each_variant_won_and_lost() -> None:
    keras = np.array([0, 1, 2, 3, 4, 5])
    plain = np.array([0, 1, 9, 9, 4, 9])   # agrees on images 0, 1, 4
    int8 = np.array([0, 9, 2, 3, 4, 9])    # agrees on 0, 2, 3, 4: won 2 and 3, lost 1
    assert paired_changes({"keras": keras, "int8_plain": plain, "int8": int8}) == {
        "int8": (2, 1)}
    assert paired_changes({"keras": keras, "int8": int8}) == {}
    assert beyond_noise(9, 0) and not beyond_noise(3, 3) and not beyond_noise(5, 1)
    assert beyond_noise(8, 1)  # 7 > 1.96 * 3


def test_each_variant_names_its_fidelity_methods() -> None:
    from litequant.quantize.registry import fidelity_methods

    assert fidelity_methods("float32", "analytic") == []
    assert fidelity_methods("int8_plain", "analytic") == ["round to nearest"]
    assert fidelity_methods("int8", "analytic") == ["round to nearest",
                                                    "bias correction (analytic)"]
    assert fidelity_methods("int8_mse", "analytic") == [
        "weight grid", "MSE activation ranges", "bias correction (analytic)"]
    # with bias correction off, no variant claims it
    assert fidelity_methods("int8_mse", "none") == ["weight grid", "MSE activation ranges"]
    assert fidelity_methods("int8_selective", "none") == [
        "weight grid", "layers kept float", "MSE activation ranges"]


def test_split_study_pools_splits_by_their_image_counts() -> None:
    from benchmarks import split_study

    def split(keras: list[int], rows: dict[str, list[int]]) -> dict:
        predictions = {"keras": np.array(keras), **{k: np.array(v) for k, v in rows.items()}}
        count = len(keras)
        metrics = {name: {"images": count, "top1": 50.0,
                          "agreement": 100.0 * float(np.mean(np.array(v) == keras))}
                   for name, v in rows.items()}
        metrics["keras"] = {"images": count, "top1": 50.0}
        return {"metrics": metrics, "predictions": predictions}

    first = split([0, 1, 2, 3], {"int8_plain": [0, 1, 9, 9], "int8": [0, 1, 2, 9],
                                 "int8_grid": [0, 1, 2, 3], "int8_mse": [0, 9, 2, 3],
                                 "peer": [0, 1, 2, 3]})
    second = split([5, 6], {"int8_plain": [5, 6], "int8": [5, 9],
                            "int8_grid": [5, 6], "int8_mse": [5, 6], "peer": [5, 9]})
    # int8 agrees on 3 of 4, then 1 of 2: 4 of 6 = 66.67 %, not the mean of 75 and 50 (62.5).
    # Against int8_plain it wins the third image of the first split, loses the second of the
    # second; against the peer it loses the fourth of the first and ties the second split
    assert split_study.pooled([first, second], "int8", "agreement") == pytest.approx(400 / 6)
    table = split_study.render([first, second], Path("m.keras"))
    int8_line = next(line for line in table.splitlines() if line.startswith("| int8 |"))
    assert int8_line == "| int8 | 75.0 | 50.0 | 66.67 | 50.00 | 1 / 1 (noise) | 0 / 1 (noise) |"
    # the best row is int8_grid (6 of 6); the peer pools to (400 + 50·2) / 6 = 83.33; int8_plain
    # to (200 + 200) / 6 = 66.67, the same as int8: not beaten
    assert ("best row `int8_grid`, agreement 100.00 vs peer 83.33 − 0.5 → holds; top-1 50.00 "
            "vs float 50.00 → holds") in table
    assert "bias-corrected int8 agreement 66.67 vs int8_plain 66.67 → FAILS" in table


def test_split_study_without_a_peer_names_the_best_integer_row() -> None:
    from benchmarks import split_study

    keras = [0, 1, 2, 3]
    rows = {"int8_plain": [0, 9, 9, 9], "int8": [0, 1, 9, 9], "int8_mse": [0, 1, 2, 9],
            "int16x8": [0, 1, 2, 3]}
    split = {"predictions": {"keras": np.array(keras), **{k: np.array(v)
                                                          for k, v in rows.items()}},
             "metrics": {**{name: {"images": 4, "top1": 50.0, "agreement":
                                   100.0 * float(np.mean(np.array(v) == keras))}
                            for name, v in rows.items()},
                         "keras": {"images": 4, "top1": 50.0}}}
    table = split_study.render([split], Path("lite.keras"), tuple(rows))
    assert "peer" not in table
    # int16x8 agrees most but is not all-integer: the best integer row is int8_mse, 2 won, 0 lost
    assert table.endswith("best integer row `int8_mse`: agreement 75.00, won / lost vs "
                          "int8_plain 2 / 0 (noise)")
