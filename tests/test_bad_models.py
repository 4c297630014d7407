"""Issue 6 items 3 and 6: bad or untrusted models, and a variant the converter cannot build.

Models are generated here (tiny Keras models saved to ``tmp_path``); nothing is committed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from litequant.core.errors import PipelineError
from litequant.core.params import (
    BenchmarkParams,
    EvaluateParams,
    ModelParams,
    PeerParams,
    RecommendParams,
    load,
    section,
)
from litequant.model.models import describe, load_user_model
from litequant.quantize.registry import ConvertParams
from stages import benchmark, convert, evaluate, evaluate_keras, report
from tests.conftest import (
    REPO,
    SHARED_WEIGHTS,
    needs_shared,
    params_section,
    run_front_stages,
    small_classifier,
    write_user_model_project,
)


def user_params(path: Path, preprocessing: str = "tf") -> ModelParams:
    return params_section(ModelParams, source=str(path), name="MobileNetV2", alpha=1.0,
                          input_size=None, weights="random", preprocessing=preprocessing)


def test_missing_model_file_names_the_key_and_path(tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as error:
        load_user_model(str(tmp_path / "nope.keras"))
    assert "model.source" in str(error.value) and str(tmp_path / "nope.keras") in str(error.value)


@pytest.mark.parametrize("name, content, expected", [
    ("model.keras", b"this is not a zip archive", "cannot load"),
    ("empty.keras", b"", "cannot load"),
    ("model.weights.h5", b"\x89HDF\r\n\x1a\n", "holds weights only, not a model"),
    ("model.tflite", b"TFL3", "is not a .keras file"),
])
def test_files_that_are_not_keras_models_are_refused(tmp_path: Path, name: str, content: bytes,
                                                      expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(PipelineError) as error:
        load_user_model(str(path))
    message = str(error.value)
    assert expected in message and "model.source" in message and str(path) in message
    assert "\n" not in message


@pytest.mark.parametrize("input_shape, outputs, expected", [
    ((32, 32, 3), 10, "model.labels is 'imagenet' (1000 ImageNet classes) but"),
    ((32, 32, 3), 1001, "has 1001 classes; set model.labels to folders, dataset or a label"),
    ((32, 32, 1), 1000, "expected one image input of shape (batch, height, width, 3)"),
    ((784,), 1000, "expected one image input of shape (batch, height, width, 3)"),
    ((None, None, 3), 1000, "with a fixed size"),
])
def test_models_that_are_not_imagenet_image_classifiers_are_refused(
        tmp_path: Path, input_shape: tuple, outputs: int, expected: str) -> None:
    path = tmp_path / "model.keras"
    small_classifier(input_shape, outputs).save(path)
    model = load_user_model(str(path))  # a valid Keras file ...
    with pytest.raises(PipelineError) as error:  # ... but not a model this pipeline can use
        describe(model, user_params(path))
    assert expected in str(error.value) and f"model.source: {path}" in str(error.value)


def lambda_model():
    """A model whose Lambda layer (a Python lambda, stored as bytecode in the file) touches the
    file named by ``$LITEQUANT_TEST_MARKER`` whenever its code runs."""
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(lambda x: (__import__("pathlib").Path(
        __import__("os").environ["LITEQUANT_TEST_MARKER"]).touch(), x)[1])(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(1000, activation="softmax")(x))


def test_keras_file_with_embedded_code_is_refused_and_never_executed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    marker = tmp_path / "code-was-executed"
    monkeypatch.setenv("LITEQUANT_TEST_MARKER", str(marker))
    path = tmp_path / "untrusted.keras"
    lambda_model().save(path)
    marker.unlink()  # building the model ran the code once; from now on it must not run
    with pytest.raises(PipelineError) as error:
        load_user_model(str(path))
    assert "safe mode" in str(error.value) and f"model.source: {path}" in str(error.value)
    assert not marker.exists()
    # control: the same file loaded with safe mode off does run the embedded code
    keras.models.load_model(path, compile=False, safe_mode=False)
    assert marker.exists()


# --- a variant the converter cannot build --------------------------------------------------------

def custom_layer_class(name: str, function):
    """A registered custom layer applying ``function`` (safe mode loads registered layers)."""
    import keras

    layer = type(name, (keras.layers.Layer,), {"call": lambda self, x: function(x)})
    return keras.saving.register_keras_serializable(package="litequant_tests")(layer)


def custom_layer_project(root: Path, images: Path, layer, variants: list[str]) -> Path:
    """A project whose user model has ``layer`` after a convolution; fetch, export and prepare
    done. Returns the project folder (the current directory when this returns)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2)(inputs)
    x = layer()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1000, activation="softmax")(x))
    project = write_user_model_project(root, images, model, variants)
    run_front_stages(project, baseline=False)
    os.chdir(project)
    return project


@pytest.mark.slow  # a supervised conversion child (imports TensorFlow), 3 variants, benchmark
def test_unconvertible_variant_is_recorded_failed_while_others_complete(
        tmp_path: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """float LiteRT has a SIN kernel; the 16x8 quantizer refuses it ("Quantization to 16x8-bit
    not yet supported for op: 'SIN'")."""
    import keras

    monkeypatch.chdir(tmp_path)
    variants = ["float32", "int8_plain", "int8", "int16x8"]
    custom_layer_project(tmp_path, image_folder, custom_layer_class("Sine", keras.ops.sin),
                         variants)
    params = load()
    evaluate_keras.evaluate_keras()
    for variant in variants:
        # int16x8 through the command DVC runs (a supervised child converts): exit code 0
        assert convert.main([variant] if variant == "int16x8" else [variant, "--in-process"]) \
            == 0
        evaluate.evaluate(variant, section(params, EvaluateParams))
    benchmark.benchmark(section(params, ConvertParams).built,
                        section(params, PeerParams), section(params, BenchmarkParams))
    report.report(section(params, ConvertParams), section(params, RecommendParams))

    failed = json.loads(Path("data/convert/int16x8/conversion.json").read_text())
    assert failed["status"] == "failed"
    assert "the converter failed" in failed["error"] and "'SIN'" in failed["error"]
    assert failed["calibration"]["num_images"] == 8
    assert not Path("data/convert/int16x8/model.tflite").exists()
    assert json.loads(Path("data/evaluate/int16x8/metrics.json").read_text())["status"] \
        == "failed"
    for variant in ("float32", "int8_plain", "int8"):
        assert json.loads(Path(f"data/convert/{variant}/conversion.json").read_text())[
            "status"] == "ok"
    metrics = json.loads(Path("reports/variants.json").read_text())
    assert metrics["int16x8"]["failed"] is True
    assert metrics["float32"]["failed"] is False and metrics["int8"]["failed"] is False
    assert metrics["float32"]["agreement"] == 100.0  # the float variant really ran
    summary = Path("reports/summary.md").read_text()
    assert "FAILED" in summary and "16x8" in summary
    assert not [p for p in Path("data").rglob("*") if p.name.endswith(".tmp")]


def test_a_supervised_child_is_named_by_the_signal_it_crashed_on() -> None:
    """``run_supervised``, with which the convert stage records a converter crash (a real one
    in TensorFlow: the next test, slow), on real children: a crash (SIGSEGV) is named, success
    is None, an error or a stop ends the parent with the child's code."""
    import signal

    from litequant.core.cli import run_supervised

    def child(code: str) -> list[str]:
        return [sys.executable, "-c", f"import os, signal, sys; {code}"]

    assert run_supervised(child("os.kill(os.getpid(), signal.SIGSEGV)")) == "SIGSEGV"
    assert run_supervised(child("pass")) is None
    for code, exit_code in [("sys.exit(3)", 3),
                            ("os.kill(os.getpid(), signal.SIGTERM)", 128 + signal.SIGTERM)]:
        with pytest.raises(SystemExit) as stop:
            run_supervised(child(code))
        assert stop.value.code == exit_code


@pytest.mark.slow  # a conversion child that imports TensorFlow (seconds) and crashes in it
def test_converter_crash_is_recorded_as_a_failed_variant(
        tmp_path: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """log(0) = -inf calibration ranges make TensorFlow's int8 quantizer segfault: the stage
    (``python -m stages.convert int8_plain``, as DVC runs it) records the crash and succeeds."""
    import keras

    monkeypatch.chdir(tmp_path)
    project = custom_layer_project(
        tmp_path, image_folder,
        custom_layer_class("LogOfZero", lambda x: keras.ops.log(x * 0.0)), ["int8_plain"])
    result = subprocess.run([sys.executable, "-m", "stages.convert", "int8_plain"], cwd=project,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    record = json.loads(Path("data/convert/int8_plain/conversion.json").read_text())
    assert record["status"] == "failed" and "the converter crashed" in record["error"]
    assert any(name in record["error"] for name in ("SIGSEGV", "SIGABRT", "SIGBUS"))
    assert "int8_plain FAILED" in result.stderr
    assert not Path("data/convert/int8_plain/model.tflite").exists()


# --- messages that name the fix -----------------------------------------------------------------

@pytest.mark.parametrize(("name", "expected"), [
    ("mobilenet.weights.h5", "holds weights only, not a model: keep model.source: applications"),
    ("legacy_model.h5", "is a legacy HDF5 full model; litequant reads the .keras format only: "
                        "re-save it once with keras.models.load_model("),
])
def test_h5_files_as_model_source_get_a_hint(name: str, expected: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(PipelineError) as error:
        load_user_model(str(path))
    assert expected in str(error.value) and str(path) in str(error.value)


@needs_shared
def test_weights_of_another_alpha_name_the_fix_without_a_dangling_colon() -> None:
    from litequant.model.models import build_application

    params = params_section(ModelParams, alpha=0.5, weights=str(SHARED_WEIGHTS))
    with pytest.raises(PipelineError) as error:
        build_application(params)
    message = str(error.value)
    assert "\n" not in message and not message.rstrip().endswith(":")
    assert "layer Conv1 has shape (3, 3, 3, 16), the file (3, 3, 3, 32)" in message
    assert message.endswith("set model.alpha and model.input_size to the ones the weights were "
                            "saved with, or use weights saved for these")


def test_relative_folder_in_a_queued_experiment_says_where_it_was_resolved(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from litequant.data.fetching import scan_folder

    copy = tmp_path / "project" / ".dvc" / "tmp" / "exps" / "tmpabc123"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    with pytest.raises(PipelineError) as error:
        scan_folder("../shared/imagenet-sample/val")
    message = str(error.value)
    assert message.startswith("fetch.folder: ../shared/imagenet-sample/val is not a folder (a "
                              "relative path, resolved inside the experiment's temporary copy "
                              f"{copy}/../shared/imagenet-sample/val: queued")
    assert "give it as an absolute path" in message
    # from the project root, the same mistake keeps the plain message
    monkeypatch.chdir(tmp_path / "project")
    with pytest.raises(PipelineError) as error:
        scan_folder("../shared/imagenet-sample/val")
    assert "temporary copy" not in str(error.value)
