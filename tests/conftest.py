"""Shared test fixtures: generated image folders, tiny models of a few layers, a tiny-model
project, the session-scoped small pipeline (every stage run once on a block classifier), the
../shared data, worker processes for independent pipeline runs of real architectures."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

REPO = Path(__file__).resolve().parents[1]
#: Real ImageNet data and models beside the repository (present on our machines and in CI).
SHARED = REPO.parent / "shared"
SHARED_VAL = SHARED / "imagenet-sample" / "val"
SHARED_WEIGHTS = SHARED / "models" / "mobilenet_v2_1.0_224_imagenet.weights.h5"
SHARED_KERAS = SHARED / "models" / "mobilenet_v2_1.0_224_imagenet.keras"
#: Google's quantization-aware-trained int8 MobileNetV2: the peer model (``peer.path``).
SHARED_PEER = SHARED / "models" / "reference" / "mobilenet_v2_1.0_224_quant.tflite"

#: Real ImageNet synsets used for generated test folders.
TEST_SYNSETS = ("n01440764", "n01443537", "n01484850", "n01491361", "n01494475")

needs_shared = pytest.mark.skipif(not SHARED_VAL.is_dir(),
                                  reason="../shared (real ImageNet sample) is not beside the repo")


def write_image(path: Path, seed: int, size: tuple[int, int] = (80, 64),
                fmt: str = "JPEG", mode: str = "RGB") -> Path:
    """Write a smooth random-colour test image (deterministic in ``seed``)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    height, width = size[1], size[0]
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.uniform(0, 255, 3)
    slope = rng.uniform(-2, 2, (2, 3))
    pixels = base + yy[..., None] * slope[0] + xx[..., None] * slope[1]
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """An ImageNet-style folder: 5 real synsets x 4 generated JPEGs = 20 images."""
    return write_image_folder(tmp_path / "images")


def repo_params() -> dict:
    """The repository's ``params.yaml`` as plain data (a fresh copy each call)."""
    return yaml.safe_load((REPO / "params.yaml").read_text())


def params_section(model, **overrides):
    """Section ``model.name`` of the repo's ``params.yaml`` with ``overrides``, validated.

    Every key of a section is required (defaults live in ``params.yaml`` only), so tests start
    from the repository's values and change what they need, e.g.
    ``params_section(FetchParams, source="folder", folder=str(path))``.
    """
    from litequant.core.params import section

    params = repo_params()
    params[model.name].update(overrides)
    return section(params, model)


def tiny_params(folder: Path | None, **overrides: dict) -> dict:
    """Params for a fast run: MobileNetV2 alpha 0.35 at 96x96 with random weights."""
    params = repo_params()
    params["fetch"].update(source="folder" if folder else "synthetic",
                           folder=str(folder) if folder else None,
                           calibration_size=8, evaluation_size=12)
    params["model"].update(alpha=0.35, input_size=96, weights="random")
    params["calibration"].update(num_images=8)
    params["evaluate"].update(threads=1, batch_size=4)
    params["benchmark"].update(threads=[1], warmup_runs=1, min_runs=3, min_seconds=0.01,
                               runtime_repeats=1)
    for section, values in overrides.items():
        params[section].update(values)
    return params


@pytest.fixture
def tiny_project(tmp_path: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a tiny ``params.yaml``; the test runs inside it."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(tiny_params(image_folder), sort_keys=False))
    monkeypatch.chdir(project)
    return project


def small_classifier(input_shape: tuple = (32, 32, 3), outputs: int = 1000,
                     activation: str = "softmax"):
    """A tiny Keras model (conv, pooling, dense ``activation``): fast to export and convert.

    With the default arguments it is a valid ImageNet classifier for the pipeline; other shapes
    make models the export stage must refuse.
    """
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(input_shape)
    x = inputs
    if len(input_shape) == 3:
        x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
        x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(outputs, activation=activation)(x))


def with_sources(variants: list[str] | tuple[str, ...]) -> list[str]:
    """``variants`` and every variant they are built from, in registry order."""
    from litequant.quantize.registry import VARIANTS, built_from

    wanted, todo = set(), list(variants)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(built_from(name))
    return [name for name in VARIANTS if name in wanted]


def select_variants(params: dict, variants: list[str] | tuple[str, ...]) -> dict:
    """Turn on ``variants`` (and those they are built from) in ``params``, every other off."""
    from litequant.quantize.registry import VARIANTS

    built = with_sources(variants)
    params["convert"]["variants"] = {name: name in built for name in VARIANTS}
    return params


def block_classifier(size: int = 32, outputs: int = 10, activation: str = "softmax",
                     channels: int = 16):
    """A MobileNet-like block of a few layers, seeded: conv stem (``channels``), depthwise
    conv, 1x1 conv, residual add, pooling, dense ``activation``. It has every op kind the
    quantization passes touch (CONV_2D, DEPTHWISE_CONV_2D, ADD, FULLY_CONNECTED) and converts
    in about a second, where a MobileNetV2 takes many; tests that need a real architecture use
    one explicitly. With ``outputs=1000`` it is a valid ImageNet classifier for the pipeline."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(channels, 3, strides=2, padding="same", activation="relu6",
                            name="stem")(inputs)
    y = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6", name="dw")(x)
    y = keras.layers.Conv2D(channels, 1, name="project")(y)
    x = keras.layers.Add(name="residual")([x, y])
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(outputs, activation=activation, name="classifier")(x)
    return keras.Model(inputs, outputs, name=f"block_classifier_{size}")


#: The variants the shared small pipeline (:func:`small_pipeline`) converts: every TF-converter
#: variant and their passes but int16x8 (tests/test_pipeline_stages.py runs that one on a
#: MobileNetV2, whose random weights LiteRT cannot run as int16x8)
SMALL_PIPELINE_VARIANTS = ("float32", "float16", "dynamic", "int8", "int8_selective",
                           "int8_mse", "int8_gptq")
SMALL_PIPELINE_SIZE = 48


def run_layer_errors(project: Path) -> None:
    """The layer_errors stage in ``project`` (in this process)."""
    from litequant.core.params import CalibrationParams, load, section
    from stages import layer_errors

    previous = Path.cwd()
    os.chdir(project)
    try:
        layer_errors.layer_errors(section(load(), CalibrationParams))
    finally:
        os.chdir(previous)


def build_small_pipeline(root: Path) -> Path:
    """Every stage run once in ``root/project`` on :func:`block_classifier` (1000 ImageNet
    outputs, ``SMALL_PIPELINE_SIZE`` pixels, a user ``.keras`` file with preprocessing ``tf``)
    and 5 synsets x 4 generated images: 8 calibration and 12 evaluation images, the variants
    ``SMALL_PIPELINE_VARIANTS``, layer_errors too. Returns the project."""
    folder = write_image_folder(root / "images")
    # 64 channels: the classifier's weights outweigh the file's fixed overhead, as in a real
    # model (int8 is then over 2.5x smaller than float32)
    model = block_classifier(SMALL_PIPELINE_SIZE, 1000, channels=64)
    # a confident classifier, as a trained one is: random dense weights give a near-uniform
    # softmax over 1000 classes, whose int8 outputs all round to one level (every top-1 ties)
    classifier = model.get_layer("classifier")
    kernel, bias = classifier.get_weights()
    classifier.set_weights([kernel * 40.0, bias])
    model_path = root / f"{model.name}.keras"
    model.save(model_path)
    project = root / "project"
    project.mkdir()
    params = select_variants(tiny_params(folder, model={"source": str(model_path),
                                                         "preprocessing": "tf"}),
                             SMALL_PIPELINE_VARIANTS)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_front_stages(project)
    run_variant_stages(project, SMALL_PIPELINE_VARIANTS, layer_errors=True)
    return project


@pytest.fixture(scope="session", autouse=True)
def small_pipeline_started(request: pytest.FixtureRequest, workers: ProcessPoolExecutor,
                           tmp_path_factory: pytest.TempPathFactory) -> Future | None:
    """:func:`build_small_pipeline` started in a worker as the session starts, when a selected
    test reads :func:`small_pipeline`: seconds of one core that the tests before its first
    reader leave free (none of them times anything against it, and its tests read no latency
    figure). ``None`` when no selected test reads it."""
    if not any("small_pipeline" in item.fixturenames for item in request.session.items):
        return None
    root = tmp_path_factory.mktemp("small_pipeline")
    return submit(workers, root.parent / f"{root.name}.log", build_small_pipeline, root)


@pytest.fixture(scope="session")
def small_pipeline(small_pipeline_started: Future | None) -> Path:
    """The session's small pipeline (:func:`build_small_pipeline`), built once in a worker
    from the session's start (:func:`small_pipeline_started`). Tests only read its outputs."""
    assert small_pipeline_started is not None, "no selected test was found to read it"
    return small_pipeline_started.result()


def write_image_folder(root: Path, per_class: int = 4) -> Path:
    """Write an ImageNet-style folder (5 real synsets x ``per_class`` generated JPEGs)."""
    for s, synset in enumerate(TEST_SYNSETS):
        for i in range(per_class):
            write_image(root / synset / f"{synset}_{i}.JPEG", seed=10 * s + i)
    return root


def write_user_model_project(root: Path, folder: Path, model, variants: list[str],
                             labels: str = "imagenet") -> Path:
    """``root/project/params.yaml`` for a tiny run of the user Keras ``model`` (saved as
    ``root/<model name>.keras``, preprocessing ``tf``, ``model.labels`` ``labels``) on
    ``folder`` with only ``variants``."""
    model_path = root / f"{model.name}.keras"
    model.save(model_path)
    project = root / "project"
    project.mkdir()
    params = tiny_params(folder, model={"source": str(model_path), "preprocessing": "tf",
                                        "labels": labels})
    select_variants(params, variants)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def prepared_split(project: Path, split: str = "evaluation"
                   ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A prepared split of ``project`` read whole (tests only): ``images`` ``uint8``
    ``(N, h, w, 3)``, ``labels`` ``int32`` ``(N,)`` and the image ``paths`` (relative to
    ``data/fetch``)."""
    folder = project / "data" / "prepare" / split
    return (np.load(folder / "images.npy"), np.load(folder / "labels.npy"),
            (folder / "paths.txt").read_text("utf-8").splitlines())


def run_front_stages(project: Path, baseline: bool = True) -> None:
    """Run fetch, export, prepare (and, with ``baseline``, evaluate_keras) in ``project``,
    in this process; the working directory is restored afterwards."""
    from litequant.core import layout
    from litequant.core.params import FetchParams, ModelParams, load, section
    from litequant.data.fetching import fetch
    from litequant.model.models import export
    from stages import evaluate_keras, prepare

    previous = Path.cwd()
    os.chdir(project)
    try:
        params = load()
        fetch(section(params, FetchParams), layout.FETCH_DIR)
        export(section(params, ModelParams), layout.EXPORT_DIR)
        prepare.prepare()
        if baseline:
            evaluate_keras.evaluate_keras()
    finally:
        os.chdir(previous)


def run_variant_stages(project: Path, variants: list[str] | tuple[str, ...],
                       layer_errors: bool = False, converted: Collection[str] = ()) -> None:
    """In ``project``: convert and evaluate each variant (and those they are built from, first;
    those in ``converted`` are evaluated only, e.g. after :func:`convert_in_workers`), (with
    ``layer_errors``, that stage on ``int8_plain``), benchmark the variants ``params.yaml``
    turns on (one session), then the report."""
    from litequant.core.params import (
        BenchmarkParams,
        EvaluateParams,
        PeerParams,
        RecommendParams,
        load,
        section,
    )
    from litequant.quantize.registry import ConvertParams
    from stages import benchmark, convert, evaluate, report

    previous = Path.cwd()
    os.chdir(project)
    try:
        params = load()
        for variant in with_sources(variants):
            if variant not in converted:
                convert.convert(variant, "params.yaml")
            evaluate.evaluate(variant, section(params, EvaluateParams))
        if layer_errors:
            run_layer_errors(project)
        benchmark.benchmark(section(params, ConvertParams).built,
                            section(params, PeerParams), section(params, BenchmarkParams))
        report.report(section(params, ConvertParams), section(params, RecommendParams))
    finally:
        os.chdir(previous)


# --- worker processes: independent pipeline runs of real architectures at once ----------------

def _warm_worker() -> None:
    """Import TensorFlow and Keras once per worker (seconds), not once per job."""
    import keras  # noqa: F401
    import tensorflow  # noqa: F401


@pytest.fixture(scope="session")
def workers() -> Iterator[ProcessPoolExecutor]:
    """Worker processes (spawned when needed, one per core up to 4, TensorFlow imported once
    each) for pipeline work that other work may run beside.

    Exporting or converting a real architecture, or a DVC pipeline's stages, keep one core busy
    for seconds to minutes; on CI's 2 cores two such jobs at once take about half the wall
    time. Only for work whose tests read no latency figure measured while other work ran (a
    job's benchmark shares the cores). Jobs go through :func:`submit`; those still queued when
    the session ends are dropped."""
    import multiprocessing

    count = max(1, min(4, os.cpu_count() or 1))
    pool = ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_warm_worker)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def submit(workers: ProcessPoolExecutor, log: Path, function: Callable[..., Any],
           *args: Any) -> Future:
    """Run ``function(*args)`` (a module-level function, picklable arguments) in a worker, its
    output going to ``log``; the future's ``result()`` returns its value or raises with its
    traceback and the end of the log."""
    return workers.submit(_logged, str(log), function, *args)


def _logged(log: str, function: Callable[..., Any], *args: Any) -> Any:
    """In a worker: ``function(*args)`` with stdout and stderr (file descriptors 1 and 2, so
    TensorFlow's too) in ``log`` and the working directory restored afterwards."""
    import traceback

    Path(log).parent.mkdir(parents=True, exist_ok=True)
    previous = Path.cwd()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "w") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        try:
            return function(*args)
        except BaseException:  # any failure, pickled as text: the test shows it
            failure = traceback.format_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for descriptor in saved:
                os.close(descriptor)
            os.chdir(previous)
    raise RuntimeError(f"{function.__name__}{args} failed in a worker process:\n{failure}\n"
                       f"--- end of its output ({log}):\n{Path(log).read_text()[-3000:]}")


def convert_variant(project: Path, variant: str) -> None:
    """The convert stage of ``variant`` in ``project`` (in this process)."""
    from stages import convert

    os.chdir(project)
    convert.convert(variant, "params.yaml")


def convert_in_workers(workers: ProcessPoolExecutor, project: Path,
                       variants: list[str] | tuple[str, ...]) -> list[str]:
    """Convert ``variants`` of ``project`` (and those they are built from) in the workers, each
    as soon as the variants it is built from are converted; returns the variants converted (in
    registry order). Logs go to ``<project>/../logs/``."""
    from litequant.quantize.registry import built_from

    todo, done, running = with_sources(variants), set(), {}
    while todo or running:
        for variant in [v for v in todo if set(built_from(v)) <= done]:
            todo.remove(variant)
            running[submit(workers, project.parent / "logs" / f"convert_{variant}.log",
                           convert_variant, project, variant)] = variant
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            future.result()
            done.add(running.pop(future))
    return with_sources(variants)


@pytest.fixture(scope="session")
def sharing_sweep(request: pytest.FixtureRequest, workers: ProcessPoolExecutor,
                  tmp_path_factory: pytest.TempPathFactory) -> Future | None:
    """tests/test_experiment_sharing.py's sweep (``build_sweep``: two ``dvc exp run``s and
    pushes, about two minutes of one core), started in a worker on the first request; ``None``
    when no test of that module is selected.

    Requested by that module, and first by tests/test_end_to_end.py, whose ``dvc repro`` also
    keeps one core busy for minutes: the two overlap on CI's 2 cores. Neither reads a latency
    figure across the two (the end-to-end run's speed-ups skip the thread counts its session
    found contended; the sweep's gate checks no latency)."""
    if not any(item.path.name == "test_experiment_sharing.py" for item in request.session.items):
        return None
    from tests.test_experiment_sharing import build_sweep

    root = tmp_path_factory.mktemp("sharing")
    return submit(workers, root.parent / f"{root.name}.log", build_sweep, root)
