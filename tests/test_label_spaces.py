"""Label spaces beyond ImageNet-1k (``model.labels``): class folders, label files, any number of
outputs, a single sigmoid output, top-k with k = min(5, classes - 1), the per-class view.

The fast tests run tiny random-weight heads through every stage; the slow one builds a real
12-way classifier from the ../shared MobileNetV2 by keeping the classifier weights of 12 of its
classes, and runs the real ``dvc repro`` on the ../shared photos of those classes.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml

from litequant.core.errors import PipelineError
from litequant.core.metrics import classification_metrics, fidelity_metrics, top_k_key, top_k_size
from litequant.data.labels import label_indices, model_labels, read_label_file, resolve
from litequant.quantize.registry import VARIANTS as REGISTRY
from tests.conftest import (
    REPO,
    SHARED,
    SHARED_KERAS,
    convert_in_workers,
    needs_shared,
    prepared_split,
    run_front_stages,
    run_variant_stages,
    small_classifier,
    write_image,
    write_user_model_project,
)

FRUIT = ("apple", "banana", "cherry")


def class_folder(root: Path, classes: tuple[str, ...], per_class: int = 8) -> Path:
    """``root/<class>/<i>.jpg`` for each class (generated images)."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            write_image(root / name / f"{i}.jpg", seed=100 * c + i)
    return root


def stage(name: str, project: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=project,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def fetch_and_export(project: Path) -> None:
    """The fetch and export stages of ``project``, in this process."""
    from litequant.core import layout
    from litequant.core.params import FetchParams, ModelParams, load, section
    from litequant.data.fetching import fetch
    from litequant.model.models import export

    params = load(project / "params.yaml")
    previous = Path.cwd()
    os.chdir(project)
    try:
        fetch(section(params, FetchParams), layout.FETCH_DIR)
        export(section(params, ModelParams), layout.EXPORT_DIR)
    finally:
        os.chdir(previous)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# --- the label space in isolation --------------------------------------------------------------

@pytest.mark.parametrize("classes, k, key", [(1000, 5, "top5"), (10, 5, "top5"), (6, 5, "top5"),
                                             (4, 3, "top3"), (3, 2, "top2"), (2, 1, None)])
def test_top_k_is_min_5_classes_minus_1(classes: int, k: int, key: str | None) -> None:
    assert (top_k_size(classes), top_k_key(classes)) == (k, key)


def test_metrics_name_their_k() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((20, 3)).astype(np.float32)
    labels = rng.integers(0, 3, 20)
    metrics = classification_metrics(scores, labels)
    # top-2 by hand: the label is not the lowest of the three scores
    assert metrics["top2"] == pytest.approx(100 * np.mean(scores.argmin(1) != labels))
    assert set(metrics) == {"top1", "top2", "images"}
    assert set(fidelity_metrics(scores, scores)) == {"agreement", "top2_overlap",
                                                     "kl_divergence", "sqnr_db"}
    two = classification_metrics(scores[:, :2], labels % 2)
    assert set(two) == {"top1", "images"}  # top-1 is not repeated as "top-1 of 1"


def test_label_file_lines_are_the_outputs(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("zebra\n  apple \nmango\n\n")
    assert read_label_file(path) == ("zebra", "apple", "mango")
    space = resolve(model_labels(str(path), 3, "model.source: m.keras"), 3, "folder",
                    ["apple", "mango"])  # the source may hold fewer classes than the model
    assert label_indices(space, ["apple", "zebra", "mango"]) == [1, 0, 2]
    for text, expected in [("a\n\nb\n", "line 2 is empty"), ("a\nb\na\n", "class 'a' twice"),
                           ("", "is empty")]:
        path.write_text(text)
        with pytest.raises(PipelineError, match=expected):
            read_label_file(path)


def test_sources_that_do_not_fit_the_label_space_name_both_sides(tmp_path: Path) -> None:
    cases = [
        ({"kind": "imagenet"}, 1000, "folder", ["cats", "dogs", "n01440764"],
         "2 class(es) of the folder source are not ImageNet-1k synsets: cats, dogs"),
        ({"kind": "folders"}, 4, "folder", ["a", "b", "c"],
         "the source has 3 class folders (a, b, c) but the model has 4 classes"),
        ({"kind": "folders"}, 2, "tfds", ["a", "b"], "(use model.labels: dataset)"),
        ({"kind": "dataset"}, 2, "folder", ["a", "b"], "(use model.labels: folders)"),
        ({"kind": "file", "path": "l.txt", "names": ["a", "b"]}, 2, "folder", ["a", "c"],
         "l.txt has no line for 1 class(es) of the folder source: c"),
    ]
    for labels, classes, source, found, expected in cases:
        with pytest.raises(PipelineError) as error:
            resolve(labels, classes, source, found)
        assert expected in str(error.value) and "\n" not in str(error.value)


# --- bad label spaces stop with one line, nothing written --------------------------------------

def wrong_label_file_project(tmp_path: Path) -> tuple[Path, str]:
    """A project whose 3-class model has a label file of 4 lines, and the refusal expected."""
    labels = tmp_path / "labels.txt"
    labels.write_text("apple\nbanana\ncherry\ndate\n")
    model = small_classifier(outputs=3)
    project = write_user_model_project(tmp_path, class_folder(tmp_path / "images", FRUIT),
                                       model, ["float32"], str(labels))
    return project, (f"model.labels: {labels} has 4 class names (lines) but model.source: "
                     f"{tmp_path}/{model.name}.keras has 3 classes")


def test_label_file_with_the_wrong_number_of_lines_stops_export(tmp_path: Path) -> None:
    from litequant.core.params import ModelParams, load, section
    from litequant.model.models import export

    project, refusal = wrong_label_file_project(tmp_path)
    with pytest.raises(PipelineError) as error:
        export(section(load(project / "params.yaml"), ModelParams), project / "data" / "export")
    assert str(error.value) == refusal
    assert not (project / "data").exists()


@pytest.mark.slow  # the stage's own process imports TensorFlow (seconds)
def test_label_file_with_the_wrong_number_of_lines_stops_the_export_command(
        tmp_path: Path) -> None:
    project, refusal = wrong_label_file_project(tmp_path)
    result = stage("export", project)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {refusal}"]
    assert not (project / "data").exists()


def test_folders_that_do_not_match_the_outputs_stop_prepare(tmp_path: Path) -> None:
    folder = class_folder(tmp_path / "images", (*FRUIT, "date"))
    project = write_user_model_project(tmp_path, folder, small_classifier(outputs=3),
                                       ["float32"], "folders")
    fetch_and_export(project)  # in this process: only prepare's command is under test
    result = stage("prepare", project)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: model.labels is 'folders': the source has 4 class folders (apple, banana, "
        "cherry, date) but the model has 3 classes"]
    assert not (project / "data" / "prepare").exists()


# --- heads of 3 classes and of one sigmoid unit, end to end ------------------------------------

def test_three_class_head_end_to_end(tmp_path: Path) -> None:
    folder = class_folder(tmp_path / "images", FRUIT)
    project = write_user_model_project(tmp_path, folder, small_classifier(outputs=3),
                                       ["float32", "int8", "dynamic"], "folders")
    run_front_stages(project)
    run_variant_stages(project, ["float32", "int8", "dynamic"])
    classes = json.loads((project / "data/prepare/classes.json").read_text())
    assert classes["names"] == list(FRUIT) and classes["kind"] == "folders"
    _, labels, paths = prepared_split(project)
    # sorted class folders, as image_dataset_from_directory numbers them
    assert [FRUIT.index(Path(p).parent.name) for p in paths] == labels.tolist()
    metrics = json.loads((project / "reports/metrics.json").read_text())
    recommendation = metrics.pop("recommendation")
    assert set(recommendation) == {"variant"}
    assert {key for row in metrics.values() for key in row} == {"top1"}  # lean DVC metrics
    details = json.loads((project / "reports/variants.json").read_text())
    assert (details["data"]["classes"], details["data"]["top_k"]) == (3, 2)
    assert details["data"]["labels"] == "folders"
    for row in ("keras", "float32", "int8", "dynamic"):
        assert "top2" in details[row] and "top5" not in details[row], row
    assert {"top2_overlap", "agreement"} <= set(details["int8"])
    float_predictions = np.load(project / "data/evaluate_keras/predictions.npy")
    assert metrics["keras"]["top1"] == pytest.approx(100 * np.mean(float_predictions == labels),
                                                     abs=1e-4)
    summary = (project / "reports/summary.md").read_text()
    assert "top-2 %" in summary and "k = 2" in summary
    assert "## Per-class top-1 accuracy" in summary
    table = [line for line in summary.splitlines()
             if line.startswith("| ") and line.split(" | ")[0][2:] in FRUIT]
    assert sorted(line.split(" | ")[0][2:] for line in table) == sorted(FRUIT)
    drops = [float(line.rstrip(" |").rsplit("| ", 1)[1]) for line in table]
    assert drops == sorted(drops, reverse=True)  # the classes that lose most first
    int8 = np.load(project / "data/evaluate/int8_plain/predictions.npy")
    confusion = read_csv(project / "reports/plots/confusion.csv")
    assert confusion == [{"actual": FRUIT[a], "predicted": FRUIT[p]}
                         for a, p in zip(labels, int8, strict=True)]


def test_single_sigmoid_output_is_two_classes_end_to_end(tmp_path: Path) -> None:
    import keras

    folder = class_folder(tmp_path / "images", ("cat", "dog"), per_class=10)
    model = small_classifier(outputs=1, activation="sigmoid")
    project = write_user_model_project(tmp_path, folder, model, ["float32", "int8"], "folders")
    run_front_stages(project)
    run_variant_stages(project, ["float32", "int8"])
    info = json.loads((project / "data/export/model.json").read_text())
    assert (info["num_classes"], info["outputs"], info["output"]) == (2, 1, "probabilities")
    images, _, _ = prepared_split(project)
    probabilities = np.load(project / "data/evaluate_keras/probabilities.npy")
    # computed independently: Keras' own [-1, 1] preprocessing, p is class 1 ("dog")
    p = np.asarray(keras.models.load_model(tmp_path / f"{model.name}.keras")(
        keras.applications.mobilenet_v2.preprocess_input(images.astype(np.float32))))[:, 0]
    np.testing.assert_allclose(probabilities[:, 1], p, atol=1e-5)
    np.testing.assert_allclose(probabilities[:, 0], 1 - p, atol=1e-5)
    metrics = json.loads((project / "reports/variants.json").read_text())
    assert not [key for key in metrics["int8"] if key.startswith("top") and key != "top1"]
    assert metrics["int8"]["agreement"] >= 0 and metrics["float32"]["agreement"] == 100.0
    assert (metrics["data"]["classes"], metrics["data"]["top_k"]) == (2, 1)
    summary = (project / "reports/summary.md").read_text()
    assert "one sigmoid output p read as (1 - p, p)" in summary
    assert "no top-k columns" in summary and "## Per-class top-1 accuracy" in summary


# --- a real 12-way model from the ../shared MobileNetV2 ----------------------------------------

#: Photos per class: the ../shared photo and deterministic crops and flips of it (the last two
#: small corner crops, hard enough that the float model misclassifies some).
VIEWS = 7
#: The 12-way run's variants: the label space reaches every stage through a float and an
#: integer variant (the report's confusion plot is then int8_plain's); the other ways of
#: building run in tests/test_end_to_end.py's 1000-way repro and the pipeline benchmark
TWELVE_WAY_VARIANTS = ("float32", "int8_plain")


def _views(photo: Path, folder: Path) -> None:
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(Image.open(photo)).convert("RGB")
    w, h = image.size
    crops = [image, ImageOps.mirror(image),
             image.crop((0, 0, int(w * 0.8), int(h * 0.8))),
             image.crop((int(w * 0.2), int(h * 0.2), w, h)),
             ImageOps.mirror(image.crop((int(w * 0.1), 0, int(w * 0.9), h))),
             image.crop((0, 0, int(w * 0.35), int(h * 0.35))),
             image.crop((int(w * 0.65), int(h * 0.65), w, h))]
    folder.mkdir(parents=True)
    for i, view in enumerate(crops[:VIEWS]):
        view.save(folder / f"{photo.stem}_{i}.jpg", quality=95)


@pytest.mark.slow
@needs_shared
def test_real_twelve_way_model_from_mobilenet_v2(tmp_path: Path,
                                                workers: ProcessPoolExecutor) -> None:
    import keras

    from benchmarks.scratch import scratch_project

    table = read_csv_tsv(SHARED / "imagenet-sample" / "classes.tsv")
    val = SHARED / "imagenet-sample" / "val"
    synsets = sorted(p.name for p in val.iterdir() if p.is_dir())[::25][:12]
    index = {row["synset"]: int(row["index"]) for row in table}
    human = {row["synset"]: row["name"].split(",")[0].strip() for row in table}
    names = sorted(human[s] for s in synsets)  # folders sorted by name: the output order
    assert len(set(names)) == len(names)
    by_name = {human[s]: s for s in synsets}
    kept = [index[by_name[name]] for name in names]
    images = tmp_path / "photos"
    for name in names:
        _views(next((val / by_name[name]).iterdir()), images / name)

    full = keras.models.load_model(SHARED_KERAS, compile=False)
    dense = full.get_layer("predictions")
    kernel, bias = dense.get_weights()
    head = keras.layers.Dense(len(kept), activation="softmax", name="predictions_12")
    model = keras.Model(full.inputs, head(dense.input), name="mobilenetv2_12way")
    head.set_weights([kernel[:, kept], bias[kept]])
    model.save(tmp_path / "twelve.keras")

    project = scratch_project(
        tmp_path / "litequant",
        fetch={"source": "folder", "folder": str(images), "calibration_size": 20,
               "evaluation_size": None},
        model={"source": str(tmp_path / "twelve.keras"), "preprocessing": "tf",
               "labels": "folders"},
        calibration={"num_images": 20},
        convert={"variants": {name: name in TWELVE_WAY_VARIANTS for name in REGISTRY}},
        evaluate={"threads": 2, "batch_size": 8},
        benchmark={"threads": [1], "warmup_runs": 1, "min_runs": 3, "min_seconds": 0.01,
                   "runtime_repeats": 1})
    # every stage, in this process but the conversions, which run at once in the workers (the
    # DVC wiring itself is test_end_to_end's): the label space is what is under test here
    run_front_stages(project)
    run_variant_stages(project, TWELVE_WAY_VARIANTS, layer_errors=True,
                       converted=convert_in_workers(workers, project, TWELVE_WAY_VARIANTS))

    pixels, labels, paths = prepared_split(project)
    assert len(labels) == len(names) * VIEWS - 20
    assert [names.index(Path(p).parent.name) for p in paths] == labels.tolist()
    # independently: the 1000-way model's argmax restricted to the kept classes
    full_scores = np.asarray(full.predict(
        keras.applications.mobilenet_v2.preprocess_input(pixels.astype(np.float32)),
        verbose=0))
    expected = np.argmax(full_scores[:, kept], axis=1)
    assert len(set(expected.tolist())) > 3  # not a degenerate model
    # the comparison covers misclassified images too, not only agreement with the labels
    assert (expected != labels).any() and (expected == labels).mean() > 0.5
    for stage_output in ("data/evaluate_keras/predictions.npy",
                         "data/evaluate/float32/predictions.npy"):
        np.testing.assert_array_equal(np.load(project / stage_output), expected)
    metrics = json.loads((project / "reports/variants.json").read_text())
    top1 = 100 * np.mean(expected == labels)
    assert metrics["keras"]["top1"] == pytest.approx(top1, abs=1e-3)
    assert metrics["float32"]["top1"] == pytest.approx(top1, abs=1e-3)
    variants = yaml.safe_load((project / "params.yaml").read_text())["convert"]["variants"]
    assert [name for name, on in variants.items() if on] == list(TWELVE_WAY_VARIANTS)
    for variant in TWELVE_WAY_VARIANTS:
        assert not metrics[variant]["failed"], variant
        assert {"top1", "top5", "agreement", "top5_overlap"} <= set(metrics[variant]), variant
    assert metrics["int8_plain"]["agreement"] >= 80
    summary = (project / "reports/summary.md").read_text()
    assert "## Per-class top-1 accuracy" in summary
    rows = [line for line in summary.splitlines() if line.split(" | ")[0][2:] in names]
    assert len(rows) == len(names)
    confusion = read_csv(project / "reports/plots/confusion.csv")
    int8 = np.load(project / "data/evaluate/int8_plain/predictions.npy")
    assert confusion == [{"actual": names[a], "predicted": names[p]}
                         for a, p in zip(labels, int8, strict=True)]
    shown = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--json"],
                           cwd=project, capture_output=True, text=True, timeout=600)
    assert shown.returncode == 0 and "confusion" in shown.stdout


def read_csv_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))
