"""Each stage's logic, called directly, on a tiny model and a handful of generated images."""

from __future__ import annotations

import csv
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from litequant.core.params import CheckParams, FetchParams, load, section
from litequant.data.fetching import fetch
from tests.conftest import (
    SMALL_PIPELINE_SIZE,
    SMALL_PIPELINE_VARIANTS,
    params_section,
    prepared_split,
    select_variants,
    with_sources,
)

# int8_mse and the opt-in int8_gptq: their stage path (regrid, activation ranges, GPTQ, bias
# correction) on a tiny model too, not only in the real end-to-end run (with the variants they
# are built from: int8_plain)
VARIANTS = with_sources(SMALL_PIPELINE_VARIANTS)
#: The MobileNetV2 run's variants: int16x8 fails there (see the test that reads it)
MOBILENET_VARIANTS = with_sources(["float32", "int8", "int16x8"])


@pytest.fixture(scope="module")
def pipeline_run(small_pipeline: Path) -> Path:
    """Every stage run once on the tiny block classifier (the session's small pipeline, shared
    with other modules); tests inspect the outputs."""
    return small_pipeline


@pytest.fixture(scope="module")
def mobilenet_run(tmp_path_factory: pytest.TempPathFactory, workers: ProcessPoolExecutor) -> Path:
    """fetch .. report and layer_errors once on MobileNetV2 (alpha 0.35, 96x96, random
    weights) with ``MOBILENET_VARIANTS``: a real architecture's many layers, and a variant
    LiteRT cannot run. The conversions run in the workers (float32 and int8_plain at once, then
    int16x8 and int8), the rest in this process."""
    import yaml

    from tests.conftest import (
        convert_in_workers,
        run_front_stages,
        run_variant_stages,
        tiny_params,
        write_image_folder,
    )

    root = tmp_path_factory.mktemp("run")
    folder = write_image_folder(root / "images")
    project = root / "project"
    project.mkdir()
    params = select_variants(tiny_params(folder), MOBILENET_VARIANTS)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_front_stages(project)
    run_variant_stages(project, MOBILENET_VARIANTS, layer_errors=True,
                       converted=convert_in_workers(workers, project, MOBILENET_VARIANTS))
    return project


def test_fetch_splits_are_disjoint_sized_and_labelled(pipeline_run: Path) -> None:
    rows = list(csv.DictReader((pipeline_run / "data/fetch/manifest.csv").open()))
    calibration = [r for r in rows if r["split"] == "calibration"]
    evaluation = [r for r in rows if r["split"] == "evaluation"]
    assert (len(calibration), len(evaluation)) == (8, 12)
    assert not {r["origin"] for r in calibration} & {r["origin"] for r in evaluation}
    for row in rows:
        assert (pipeline_run / "data/fetch" / row["path"]).is_file()
    # prepare labels them: n01440764 is class 0, n01443537 class 1 in the ImageNet order
    _, labels, paths = prepared_split(pipeline_run)
    by_path = dict(zip(paths, labels, strict=True))
    for row in evaluation:
        assert by_path[row["path"]] == {"n01440764": 0, "n01443537": 1, "n01484850": 2,
                                        "n01491361": 3, "n01494475": 4}[row["class"]]


def test_fetch_is_deterministic_and_seeded(image_folder: Path, tmp_path: Path) -> None:
    params = params_section(FetchParams, source="folder", folder=str(image_folder),
                            calibration_size=5, evaluation_size=10, seed=3)
    fetch(params, tmp_path / "a")
    fetch(params, tmp_path / "b")
    assert (tmp_path / "a/manifest.csv").read_text() == (tmp_path / "b/manifest.csv").read_text()
    other = params_section(FetchParams, source="folder", folder=str(image_folder),
                           calibration_size=5, evaluation_size=10, seed=4)
    fetch(other, tmp_path / "c")
    assert (tmp_path / "a/manifest.csv").read_text() != (tmp_path / "c/manifest.csv").read_text()


def test_export_records_model_facts(pipeline_run: Path) -> None:
    info = json.loads((pipeline_run / "data/export/model.json").read_text())
    assert info["input_size"] == [SMALL_PIPELINE_SIZE] * 2
    assert info["preprocessing"] == "tf"
    assert info["output"] == "probabilities"
    assert (pipeline_run / "data/export/saved_model/saved_model.pb").is_file()
    assert (pipeline_run / "data/export/model.keras").is_file()


def test_prepare_arrays_match_manifest(pipeline_run: Path) -> None:
    split = pipeline_run / "data/prepare/evaluation"
    images, labels = np.load(split / "images.npy"), np.load(split / "labels.npy")
    assert images.shape == (12, SMALL_PIPELINE_SIZE, SMALL_PIPELINE_SIZE, 3)
    assert images.dtype == np.uint8
    assert labels.dtype == np.int32
    assert set(labels) <= {0, 1, 2, 3, 4}
    paths = (split / "paths.txt").read_text().splitlines()
    rows = [row for row in csv.DictReader((pipeline_run / "data/fetch/manifest.csv").open())
            if row["split"] == "evaluation"]
    assert paths == [row["path"] for row in rows]
    synsets = ("n01440764", "n01443537", "n01484850", "n01491361", "n01494475")
    assert labels.tolist() == [synsets.index(row["class"]) for row in rows]


def test_variants_convert_with_expected_io(pipeline_run: Path) -> None:
    expected_input = {"float32": "float32", "float16": "float32", "dynamic": "float32",
                      "int8": "int8"}
    sizes = {}
    for variant in expected_input:
        record = json.loads((pipeline_run / f"data/convert/{variant}/conversion.json").read_text())
        assert record["status"] == "ok", record
        assert record["input"]["dtype"] == expected_input[variant]
        assert (record["calibration"] is not None) == (variant == "int8")
        sizes[variant] = record["size_bytes"]
    assert sizes["float16"] < sizes["float32"] and sizes["int8"] < sizes["float16"]


@pytest.mark.slow  # MobileNetV2: exports and converts a real architecture
def test_a_variant_litert_cannot_run_is_reported_failed_and_others_complete(
        mobilenet_run: Path) -> None:
    pipeline_run = mobilenet_run
    # MobileNetV2 with random (untrained) weights converts to int16x8, but LiteRT refuses to
    # prepare its depthwise convolutions (integer overflow in the requantization multiplier).
    # Real weights convert fine (tests/test_end_to_end.py). The stage must record the failure.
    record = json.loads((pipeline_run / "data/convert/int16x8/conversion.json").read_text())
    assert record["status"] == "failed"
    assert "LiteRT cannot run the converted model" in record["error"]
    assert not (pipeline_run / "data/convert/int16x8/model.tflite").exists()
    evaluation = json.loads((pipeline_run / "data/evaluate/int16x8/metrics.json").read_text())
    assert evaluation["status"] == "failed"
    summary = (pipeline_run / "reports/summary.md").read_text()
    failed_rows = [line for line in summary.splitlines() if line.startswith("| int16x8 |")]
    assert len(failed_rows) == 1 and "| **FAILED** |" in failed_rows[0]
    metrics = json.loads((pipeline_run / "reports/variants.json").read_text())
    assert metrics["int16x8"]["failed"] is True and metrics["int8"]["failed"] is False
    # the benchmark session leaves it out as failed and measures the others
    models = json.loads((pipeline_run / "data/benchmark/latency.json").read_text())["models"]
    assert models["int16x8"]["status"] == "failed"
    assert set(models) == {*MOBILENET_VARIANTS, "peer"}
    assert models["int8"]["status"] == models["float32"]["status"] == "ok"
    plot = list(csv.DictReader((pipeline_run / "reports/plots/variants.csv").open()))
    assert [p["variant"] for p in plot] == ["float32", "int8_plain", "int8"]  # none: failed


def test_the_fidelity_variants_record_their_methods(pipeline_run: Path) -> None:
    records = {variant: json.loads((pipeline_run / f"data/convert/{variant}/conversion.json")
                                   .read_text()) for variant in ("int8", "int8_mse", "int8_gptq")}
    for record in records.values():
        assert record["status"] == "ok", record
        assert record["bias_correction"]["ops"] > 0
    assert records["int8_mse"]["methods"] == ["weight grid", "MSE activation ranges",
                                              "bias correction (analytic)"]
    ranges = records["int8_mse"]["activation_ranges"]
    # the block classifier: stem -> dw -> project (+ stem) -> pooling -> dense; convs
    # and the add read the stem's and dw's outputs
    assert ranges["tensors"] >= 1 and ranges["num_images"] == 8
    assert records["int8_mse"]["built_from"] == records["int8_gptq"]["built_from"]
    assert records["int8_gptq"]["gptq"]["ops"] > 0
    # same ops and weights' size as int8: only levels, scales and ranges differ
    for variant in ("int8_mse", "int8_gptq"):
        assert abs(records[variant]["size_bytes"] - records["int8"]["size_bytes"]) < 2048


def test_float32_matches_keras_and_int8_is_close(pipeline_run: Path) -> None:
    keras_row = json.loads((pipeline_run / "data/evaluate_keras/metrics.json").read_text())
    float32 = json.loads((pipeline_run / "data/evaluate/float32/metrics.json").read_text())
    int8 = json.loads((pipeline_run / "data/evaluate/int8/metrics.json").read_text())
    assert float32["agreement"] == 100.0
    assert float32["top1"] == keras_row["top1"]
    assert float32["sqnr_db"] is None or float32["sqnr_db"] > 60
    assert int8["images"] == 12 and int8["status"] == "ok"
    assert 0 <= int8["kl_divergence"] and 0 <= int8["top5_overlap"] <= 100


def test_benchmark_measures_every_variant_in_one_recorded_session(pipeline_run: Path) -> None:
    document = json.loads((pipeline_run / "data/benchmark/latency.json").read_text())
    session = document["session"]
    assert session["id"] and session["started_utc"] <= session["finished_utc"]
    device = session["device"]
    assert device["cores"] >= 1 and device["runtime"] and device["hostname"]
    assert set(document["models"]) == {*VARIANTS, "peer"}
    assert document["models"]["peer"]["status"] == "skipped"  # peer.path is null
    assert {document["models"][v]["status"] for v in VARIANTS} == {"ok"}
    stats = document["models"]["int8"]["latency"]["1"]
    assert stats["runs"] >= 3 and 0 < stats["p50_ms"] <= stats["p90_ms"]
    runtime = document["models"]["int8"]["runtime"]  # a fresh process per model, 1 thread
    assert runtime["threads"] == 1 and runtime["peak_memory_bytes"] > 0 and runtime["init_ms"] > 0
    assert session["device"]["kind"] == "local" and session["device"]["hostname"]
    summary = (pipeline_run / "reports/summary.md").read_text()
    assert f"Latency session `{session['id']}`" in summary


def test_report_has_a_row_per_variant(pipeline_run: Path) -> None:
    metrics = json.loads((pipeline_run / "reports/variants.json").read_text())
    assert set(VARIANTS) | {"keras", "data", "latency_session", "recommendation"} == set(metrics)
    assert metrics["float32"]["compression"] == 1.0
    assert metrics["int8"]["memory_mib"] > 0 and metrics["int8"]["first_invoke_ms"] > 0
    assert metrics["int8"]["compression"] > 2.5
    rows = list(csv.DictReader((pipeline_run / "reports/summary.csv").open()))
    assert [r["variant"] for r in rows] == ["keras", *VARIANTS]
    assert float(rows[1]["memory_mib"]) > 0 and float(rows[1]["init_ms"]) > 0  # float32
    summary = (pipeline_run / "reports/summary.md").read_text()
    assert "| int8 |" in summary and "calibrated on 8 real images" in summary
    # it opens with the variant to ship within the default budgets (float32 always meets the
    # fidelity ones), then the compact table
    chosen = metrics["recommendation"]["variant"]
    assert chosen in VARIANTS and metrics["recommendation"]["qualifying"][0] == chosen
    assert summary.splitlines()[2] == f"## Recommendation: ship `{chosen}`"
    assert f"| `{chosen}` | **ship** |" in summary
    plot = list(csv.DictReader((pipeline_run / "reports/plots/variants.csv").open()))
    # every variant that converted (int16x8 fails on the tiny model: the gate test below)
    assert [p["variant"] for p in plot] == [v for v in VARIANTS if v != "int16x8"]


def check_layer_errors(pipeline_run: Path) -> list[dict[str, str]]:
    """The layer-error report of ``pipeline_run`` names its Keras layers, is ranked, and its
    worst layer is in the summary; returns its rows."""
    import keras

    rows = list(csv.DictReader((pipeline_run / "reports/layer_errors.csv").open()))
    layers = {layer.name for layer in keras.models.load_model(
        pipeline_run / "data/export/model.keras", compile=False).layers}
    assert all(row["keras_layer"] in layers for row in rows if row["op"] == "CONV_2D")
    assert all(row["keras_layer"] in row["tensor_name"] for row in rows if row["keras_layer"])
    ranks = sorted(rows, key=lambda row: int(row["rank"]))
    errors = [float(row["rmse_over_scale"]) for row in ranks]
    assert errors == sorted(errors, reverse=True)
    summary = (pipeline_run / "reports/summary.md").read_text()
    assert "## int8 layer-wise error" in summary
    assert f"| 1 | {ranks[0]['keras_layer']} |" in summary
    return rows


def test_layer_errors_name_real_layers(pipeline_run: Path) -> None:
    rows = check_layer_errors(pipeline_run)
    # the block classifier: one row per quantized op, each named after its own layer
    named = {row["op"]: row["keras_layer"] for row in rows if row["keras_layer"]}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "FULLY_CONNECTED"} <= set(named)
    assert named["DEPTHWISE_CONV_2D"] == "dw" and named["ADD"] == "residual"


@pytest.mark.slow  # MobileNetV2: exports and converts a real architecture
def test_layer_errors_name_the_layers_of_a_real_architecture(mobilenet_run: Path) -> None:
    rows = check_layer_errors(mobilenet_run)
    assert len(rows) > 50  # MobileNetV2: one row per quantized conv/add/... op


def test_int8_selective_keeps_the_chosen_layers_float_and_records_the_selection(
        pipeline_run: Path) -> None:
    from litequant.quantize.passes.selection import float_weight_positions

    folder = pipeline_run / "data/convert/int8_selective"
    record = json.loads((folder / "conversion.json").read_text())
    entry = load(pipeline_run / "params.yaml")["convert"]["selection"]
    assert record["status"] == "ok" and record["built_from"] == ["int8_plain", "float32"]
    assert (record["budget_points"], record["max_latency_vs_int8"], record["max_layers"]) == (
        entry["budget_points"], entry["max_latency_vs_int8"], entry["max_layers"])
    selection = json.loads((folder / "selection.json").read_text())
    # every step's real model measured; the chosen one within the limits
    assert selection["curve"][0]["layers_kept"] == 0
    assert record["layers_kept"] == selection["layers_kept"] <= entry["max_layers"]
    assert selection["latency_vs_int8"] <= entry["max_latency_vs_int8"]
    assert record["float_layers"] == selection["float_layers"]
    assert record["budget_met"] == (selection["loss_points"] <= entry["budget_points"] + 1e-9)
    assert record["calibration_agreement"] == {"selected": selection["agreement"],
                                               "int8": selection["int8"]["agreement"]}
    assert "latency_vs_int8" not in record  # wall-clock values stay in selection.json
    # the real model keeps that many weight ops float (bias correction keeps them)
    model = (folder / "model.tflite").read_bytes()
    assert len(float_weight_positions(model)) == selection["layers_kept"]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    metrics = json.loads((pipeline_run / "reports/variants.json").read_text())
    assert metrics["int8_selective"]["float_layers"] == record["float_layers"]
    assert metrics["int8_selective"]["budget_met"] == record["budget_met"]
    summary = (pipeline_run / "reports/summary.md").read_text()
    assert f"{selection['layers_kept']} weight op(s) kept float, chosen on the real" in summary
    curve = list(csv.DictReader((pipeline_run / "reports/plots/selection_curve.csv").open()))
    assert [p["agreement"] for p in curve] == [
        "" if p.get("agreement") is None else str(p["agreement"]) for p in selection["curve"]]
    assert (pipeline_run / "reports/plots/selection_curve.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # needs a failed variant: the MobileNetV2 run's int16x8
def test_check_gate_fails_on_the_failed_variant_and_marks_new_ones(
        mobilenet_run: Path, tmp_path: Path) -> None:
    pipeline_run = mobilenet_run
    from litequant.report import gate

    limits = section(load(pipeline_run / "params.yaml"), CheckParams)
    metrics = json.loads((pipeline_run / "reports/metrics.json").read_text())
    with pytest.raises(gate.GateFailed, match="int16x8 status"):
        gate.check(limits, "", "main", pipeline_run / "reports/metrics.json",
                   tmp_path / "check.md")
    table = (tmp_path / "check.md").read_text()
    assert "| int16x8 | status | – | failed | – | must not fail | **FAIL** |" in table
    # against a baseline without the int8 row, int8 is new: same-run checks only
    baseline = {name: row for name, row in metrics.items() if name != "int8"}
    rows = [c for c in gate.run_checks(metrics, baseline, limits)
            if c.variant == "int8"]
    assert [c.metric for c in rows] == ["top1 vs float (keras, same run)", "baseline"]
    assert "new variant" in rows[1].note
