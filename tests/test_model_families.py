"""Every preprocessing family through every stage, and user models (.keras, SavedModel).

Each family is a tiny random-weight instance (small ``alpha`` and input size where the family
allows it) run through export → prepare → evaluate_keras → convert/evaluate/benchmark (float32,
int8_plain and int8_mse) → report, on one shared fetch of generated images: MobileNet (``tf``;
MobileNetV2 runs in the end-to-end test and the small pipelines), MobileNetV3Small (``raw``,
hard-swish and squeeze-excite; V3Large has the same blocks), EfficientNetB0 (``raw``) and
ResNet50 (``caffe``). Their cost is the real architecture's export and conversions (a smaller
input size saves nothing), each on one core: the runs of the tests selected go at once to
tests/conftest.py's worker processes (:func:`family_runs`), about 1 minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml

from litequant.core import layout
from litequant.core.params import FetchParams, ModelParams, load, section
from litequant.data.fetching import fetch
from litequant.model.models import export
from stages import evaluate_keras, prepare
from tests.conftest import (
    block_classifier,
    params_section,
    run_variant_stages,
    select_variants,
    submit,
    tiny_params,
    write_image_folder,
)

#: int8_mse: the converter's int8 (int8_plain) and every default pass on it (weight grid,
#: activation ranges, bias correction) on every architecture (hard-swish, squeeze-excite,
#: residual adds with fused ReLU), not only the MobileNets of ../shared
VARIANTS = ("float32", "int8_plain", "int8_mse")

#: family → (alpha, input size, the preprocessing Keras documents for it)
FAMILIES = {
    "MobileNet": (0.25, 96, "tf"),             # x / 127.5 - 1
    "MobileNetV3Small": (0.75, 64, "raw"),     # Rescaling layer inside the model
    "EfficientNetB0": (1.0, 64, "raw"),        # Rescaling + Normalization inside the model
    "ResNet50": (1.0, 32, "caffe"),            # BGR, ImageNet mean subtracted
}


@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``data/fetch`` output (4 calibration + 6 evaluation images) shared by every run."""
    root = tmp_path_factory.mktemp("families")
    folder = write_image_folder(root / "images", per_class=2)
    params = tiny_params(folder, fetch={"calibration_size": 4, "evaluation_size": 6})
    fetch(section(params, FetchParams), root / "fetch")
    return root / "fetch"


def run_pipeline(project: Path, fetched: Path, variants: tuple[str, ...] = VARIANTS,
                 **model: object) -> dict:
    """Run every stage after fetch in ``project`` with ``model`` params; returns metrics.json."""
    params = tiny_params(None, model=model, calibration={"num_images": 4})
    select_variants(params, variants)
    project.mkdir(parents=True)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(fetched, project / "data" / "fetch")
    previous = Path.cwd()
    os.chdir(project)
    try:
        params = load()
        export(section(params, ModelParams), layout.EXPORT_DIR)
        prepare.prepare()
        evaluate_keras.evaluate_keras()
    finally:
        os.chdir(previous)
    run_variant_stages(project, variants)
    return json.loads((project / "reports" / "variants.json").read_text())


def run_family(project: Path, fetched: Path, name: str) -> dict:
    """(In a worker) ``name``'s pipeline run; returns metrics.json and, under ``reference``,
    the parameter count of Keras' own constructor with the same alpha and size."""
    import keras

    alpha, size, _ = FAMILIES[name]
    metrics = run_pipeline(project, fetched, name=name, alpha=alpha, input_size=size)
    extra = {"alpha": alpha} if name.startswith("MobileNet") else {}
    reference = getattr(keras.applications, name)(input_shape=(size, size, 3), weights=None,
                                                  **extra)
    return {"metrics": metrics, "reference": reference.count_params()}


def run_user_models(root: Path, fetched: Path) -> dict[str, dict]:
    """(In a worker) a user's MobileNetV2 (random weights, seeded) saved as ``root/user.keras``
    and exported as the SavedModel ``root/user_saved_model``, each run through the pipeline
    (float32 only): the .keras file with preprocessing auto and ``model.input_size`` 224 in
    ``root/keras``, the SavedModel with an explicit preprocessing in ``root/saved_model``.
    Returns both runs' metrics.json."""
    import keras

    root.mkdir()
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None)
    model.save(root / "user.keras")
    model.export(str(root / "user_saved_model"), format="tf_saved_model", verbose=False)
    return {"keras": run_pipeline(root / "keras", fetched, ("float32",),
                                  source=str(root / "user.keras"), input_size=224),
            "saved_model": run_pipeline(root / "saved_model", fetched, ("float32",),
                                        source=str(root / "user_saved_model"),
                                        preprocessing="tf")}


#: The user-model test's runs (:func:`run_user_models`), a key of :func:`family_runs`
USER_MODELS = "user_models"
#: The order the runs start in: the longest first (ResNet50 and EfficientNetB0 take 30-40 s of a
#: core, the user models about 30, MobileNetV3Small 15, MobileNet 12)
START_ORDER = ("ResNet50", "EfficientNetB0", USER_MODELS, "MobileNetV3Small", "MobileNet")


@pytest.fixture(scope="module")
def family_runs(request: pytest.FixtureRequest, fetched: Path, workers: ProcessPoolExecutor,
                tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Future]]:
    """The runs this module's selected tests read, all started at once in the workers: family
    name or :data:`USER_MODELS` → (its folder, the future of its result). Each test waits for
    its own."""
    wanted = set()
    for item in request.session.items:
        if item.module is not request.module:
            continue
        if item.originalname == "test_family_converts_and_evaluates_with_its_preprocessing":
            wanted.add(item.callspec.params["name"])
        elif item.originalname == (
                "test_user_keras_file_and_saved_model_give_the_applications_results"):
            wanted.add(USER_MODELS)
    root = tmp_path_factory.mktemp("family_runs")
    runs = {}
    for name in (name for name in START_ORDER if name in wanted):
        job, args = ((run_user_models, (root / name, fetched)) if name == USER_MODELS
                     else (run_family, (root / name, fetched, name)))
        runs[name] = (root / name, submit(workers, root / "logs" / f"{name}.log", job, *args))
    return runs


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


#: Every family runs in the full run only, as in CI (each takes 10-40 s of a core: a real
#: architecture exported and converted three times). ``pytest -m "not slow"`` runs every stage on
#: tests/conftest.py's small pipeline instead.
@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_converts_and_evaluates_with_its_preprocessing(
        name: str, family_runs: dict[str, tuple[Path, Future]]) -> None:
    _, size, family = FAMILIES[name]
    project, run = family_runs[name]
    result = run.result()
    metrics = result["metrics"]
    info = read_json(project / "data/export/model.json")
    assert info["preprocessing"] == family
    assert info["input_size"] == [size, size] and metrics["data"]["input_size"] == size
    # alpha and size honoured: the same parameter count as Keras' own constructor gives
    assert info["parameters"] == result["reference"]
    assert np.load(project / "data/prepare/evaluation/images.npy",
                   mmap_mode="r").shape == (6, size, size, 3)
    int8 = read_json(project / "data/convert/int8_plain/conversion.json")
    assert int8["status"] == "ok" and int8["input"]["dtype"] == "int8"
    assert metrics["float32"]["failed"] is False and metrics["int8_plain"]["failed"] is False
    # the float32 TFLite model sees the same preprocessed input as the Keras model
    assert metrics["float32"]["agreement"] == 100.0
    assert metrics["float32"]["top1"] == metrics["keras"]["top1"]
    assert metrics["int8_plain"]["compression"] > 2.5
    int8_mse = read_json(project / "data/convert/int8_mse/conversion.json")
    assert int8_mse["status"] == "ok" and metrics["int8_mse"]["failed"] is False, int8_mse
    assert int8_mse["activation_ranges"]["tensors"] >= 1
    assert abs(int8_mse["size_bytes"] - int8["size_bytes"]) < 0.02 * int8["size_bytes"]


@pytest.mark.slow  # exports and converts three times
def test_user_keras_file_and_saved_model_give_the_applications_results(
        family_runs: dict[str, tuple[Path, Future]]) -> None:
    """A .keras file (preprocessing auto) and a SavedModel (explicit) of the same model."""
    root, run = family_runs[USER_MODELS]
    runs = run.result()
    from_keras, from_saved_model = runs["keras"], runs["saved_model"]
    keras_info = read_json(root / "keras/data/export/model.json")
    assert keras_info["preprocessing"] == "tf"  # from Keras' model name mobilenetv2_0.35_96
    assert keras_info["input_size"] == [96, 96]  # read from the model, not model.input_size

    saved = root / "saved_model"
    saved_info = read_json(saved / "data/export/model.json")
    assert saved_info["format"] == "saved_model" and saved_info["input_size"] == [96, 96]
    assert not (saved / "data/export/model.keras").exists()
    np.testing.assert_allclose(np.load(saved / "data/evaluate_keras/probabilities.npy"),
                               np.load(root / "keras/data/evaluate_keras/probabilities.npy"),
                               rtol=1e-4, atol=1e-6)
    for row in ("keras", "float32"):
        for metric in ("top1", "top5", "agreement"):
            assert from_saved_model[row][metric] == from_keras[row][metric]


def test_saved_model_needs_an_explicit_preprocessing(tmp_path: Path) -> None:
    from litequant.core.errors import PipelineError

    model = block_classifier(32, 1000)  # an ImageNet classifier; its folder named as a MobileNet
    model.export(str(tmp_path / "mobilenet_v2_sm"), format="tf_saved_model", verbose=False)
    params = params_section(ModelParams, source=str(tmp_path / "mobilenet_v2_sm"))
    assert params.preprocessing == "auto"
    with pytest.raises(PipelineError, match="model.preprocessing"):
        export(params, tmp_path / "export")
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize("name, family", [("efficientnetb0", "raw"),
                                          ("efficientnetv2-b0", "raw"),
                                          ("efficientnet_lite1", None)])
def test_auto_preprocessing_guesses_only_from_keras_applications_names(
        tmp_path: Path, name: str, family: str | None) -> None:
    """keras.applications' EfficientNets rescale inside the model; an EfficientNet-Lite port
    (same prefix) does not, so auto must ask rather than guess ``raw``."""
    from litequant.core.errors import PipelineError

    model = block_classifier(32, 1000)
    model.name = name
    model.save(tmp_path / "user.keras")
    params = params_section(ModelParams, source=str(tmp_path / "user.keras"))
    if family is None:
        with pytest.raises(PipelineError, match="set model.preprocessing"):
            export(params, tmp_path / "export")
    else:
        assert export(params, tmp_path / "export")["preprocessing"] == family
