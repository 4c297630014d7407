"""Where each stage's outputs live (relative to the project root) and how to read them.

Every ``data/...`` and ``reports/...`` path of the pipeline is defined here and nowhere else;
``dvc.yaml`` declares the same paths (``tests/test_structure.py`` checks that each stage's
``deps`` are exactly the code it imports and the paths of this module it reads). Readers raise a
:class:`~litequant.core.errors.PipelineError` naming the stage to run when an output is missing.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from litequant.core.arrays import NpyRows
from litequant.core.errors import PipelineError

# --- stage ``fetch`` ---------------------------------------------------------------------------
FETCH_DIR = Path("data/fetch")
#: ``split, path, class, origin`` per image (``path`` relative to :data:`FETCH_DIR`; ``class``
#: the source's name of its class: a folder name, a tfds ``ClassLabel`` name).
FETCH_MANIFEST = FETCH_DIR / "manifest.csv"
#: The source, its ``classes`` (in source order), split sizes, skipped and ignored files.
FETCH_INFO = FETCH_DIR / "fetch.json"

# --- stage ``export`` --------------------------------------------------------------------------
EXPORT_DIR = Path("data/export")
KERAS_MODEL = EXPORT_DIR / "model.keras"
SAVED_MODEL = EXPORT_DIR / "saved_model"
#: Input size, preprocessing family, number of classes, output kind.
MODEL_INFO = EXPORT_DIR / "model.json"

# --- stage ``prepare`` -------------------------------------------------------------------------
PREPARE_DIR = Path("data/prepare")
#: One folder per split, each with :data:`SPLIT_IMAGES`, :data:`SPLIT_LABELS`, :data:`SPLIT_PATHS`.
CALIBRATION_SPLIT = PREPARE_DIR / "calibration"
EVALUATION_SPLIT = PREPARE_DIR / "evaluation"
SPLITS = {"calibration": CALIBRATION_SPLIT, "evaluation": EVALUATION_SPLIT}
#: ``uint8`` ``(N, h, w, 3)`` RGB 0..255 ``.npy``, read row range by row range
#: (:class:`~litequant.core.arrays.NpyRows`), never whole.
SPLIT_IMAGES = "images.npy"
#: ``int32`` ``(N,)`` ``.npy``: class indices in the model's output order.
SPLIT_LABELS = "labels.npy"
#: The image paths relative to :data:`FETCH_DIR`, one a line, in row order.
SPLIT_PATHS = "paths.txt"
#: The run's label space: ``kind``, class ``names`` in output order, source ``keys``
#: (:class:`litequant.data.labels.LabelSpace`).
CLASSES = PREPARE_DIR / "classes.json"

# --- stage ``evaluate_keras`` ------------------------------------------------------------------
KERAS_EVALUATION_DIR = Path("data/evaluate_keras")
#: ``float32`` ``(N, C)`` softmax outputs of the float Keras model on the evaluation split.
FLOAT_PROBABILITIES = KERAS_EVALUATION_DIR / "probabilities.npy"
KERAS_METRICS = KERAS_EVALUATION_DIR / "metrics.json"
#: ``int32`` ``(N,)`` top-1 class of the float Keras model per evaluation image.
KERAS_PREDICTIONS = KERAS_EVALUATION_DIR / "predictions.npy"

# --- per-variant stages ------------------------------------------------------------------------
CONVERT_DIR = Path("data/convert")
EVALUATE_DIR = Path("data/evaluate")

# --- stage ``benchmark`` (every variant and the peer model, one session) ------------------------
BENCHMARK_DIR = Path("data/benchmark")
BENCHMARK_LATENCY = BENCHMARK_DIR / "latency.json"


def convert_dir(variant: str) -> Path:
    """``data/convert/<variant>``: ``model.tflite`` (when converted) and ``conversion.json``."""
    return CONVERT_DIR / variant


def model_file(variant: str) -> Path:
    return convert_dir(variant) / "model.tflite"


#: The float32 variant's model, which the ai-edge-quantizer variants are built from.
FLOAT32_MODEL = CONVERT_DIR / "float32" / "model.tflite"


def calibrated_file(variant: str) -> Path:
    """``data/convert/<variant>/calibrated.tflite``: the float model with the activation ranges
    ``int8_plain``'s calibration recorded (:func:`litequant.quantize.conversion.calibrate_int8`),
    which ``int8_selective`` and ``layer_errors`` quantize again instead of calibrating again."""
    return convert_dir(variant) / CALIBRATED_MODEL


#: The file name of :func:`calibrated_file`.
CALIBRATED_MODEL = "calibrated.tflite"


def recipe_file(variant: str) -> Path:
    """``data/convert/<variant>/recipe.json``: the ai-edge-quantizer recipe a variant used."""
    return convert_dir(variant) / "recipe.json"


def selection_file(variant: str) -> Path:
    """``data/convert/<variant>/selection.json``: the layers ``int8_selective`` keeps float, the
    output-sensitivity ranking of every weight op and the agreement-vs-layers-kept curve
    (:func:`litequant.quantize.passes.selection.select_float_ops`)."""
    return convert_dir(variant) / "selection.json"


def evaluate_dir(variant: str) -> Path:
    """``data/evaluate/<variant>``: ``metrics.json``."""
    return EVALUATE_DIR / variant


def predictions_file(variant: str) -> Path:
    """``data/evaluate/<variant>/predictions.npy``: ``int32`` ``(N,)`` top-1 class per image."""
    return evaluate_dir(variant) / "predictions.npy"


# --- the peer model (an external, already-converted .tflite) -----------------------------------
PEER_EVALUATION_DIR = Path("data/evaluate_peer")
#: ``int32`` ``(N,)`` the peer's top-1 class per evaluation image (after ``label_offset``).
PEER_PREDICTIONS = PEER_EVALUATION_DIR / "predictions.npy"

# --- reports -----------------------------------------------------------------------------------
REPORTS_DIR = Path("reports")
LAYER_ERRORS_CSV = REPORTS_DIR / "layer_errors.csv"
METRICS = REPORTS_DIR / "metrics.json"
SUMMARY_MD = REPORTS_DIR / "summary.md"
SUMMARY_CSV = REPORTS_DIR / "summary.csv"
PLOTS_DIR = REPORTS_DIR / "plots"
VARIANTS_PLOT_CSV = PLOTS_DIR / "variants.csv"
#: Names and lists of each row (e.g. int8_selective's float layers): not metrics, no numbers.
VARIANTS_JSON = REPORTS_DIR / "variants.json"
#: The report's static figures (PNG), one per :data:`litequant.report.plots.FIGURES` entry.
ACCURACY_VS_SIZE_PNG = PLOTS_DIR / "accuracy_vs_size.png"
ACCURACY_VS_LATENCY_PNG = PLOTS_DIR / "accuracy_vs_latency.png"
ACCURACY_VS_MEMORY_PNG = PLOTS_DIR / "accuracy_vs_memory.png"
#: ``int8_selective``'s calibration agreement vs the number of layers kept float (simulated), for
#: DVC's plot, and the same as a PNG.
SELECTION_CURVE_CSV = PLOTS_DIR / "selection_curve.csv"
SELECTION_CURVE_PNG = PLOTS_DIR / "selection_curve.png"
#: ``actual, predicted`` class name per evaluation image of one variant (DVC confusion plot).
CONFUSION_CSV = PLOTS_DIR / "confusion.csv"
CHECK_MD = REPORTS_DIR / "check.md"


# --- readers -----------------------------------------------------------------------------------

def read_json(path: Path, stage: str) -> dict[str, Any]:
    """A stage's JSON output; a missing file names the stage that writes it."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found: run dvc repro {stage} first")
    return json.loads(path.read_text("utf-8"))


def read_model_info(path: Path) -> dict[str, Any]:
    """``model.json`` of the export stage (``input_size``, ``preprocessing``, ``output`` ...)."""
    return read_json(path, "export")


def read_conversion(folder: Path) -> dict[str, Any]:
    """``conversion.json`` in a variant's :func:`convert_dir`."""
    return read_json(Path(folder) / "conversion.json", f"convert@{Path(folder).name}")


def load_split(path: Path) -> tuple[NpyRows, np.ndarray]:
    """A prepared split folder: ``(images, labels)``.

    ``images`` is the ``uint8`` ``(N, h, w, 3)`` RGB 0..255 array on disk, read by row ranges
    (:class:`~litequant.core.arrays.NpyRows`: ``images[a:b]`` reads just those rows), so memory does
    not grow with ``N``; ``labels`` is ``int32`` ``(N,)`` in memory (4 bytes an image).
    """
    path = Path(path)
    files = [path / SPLIT_IMAGES, path / SPLIT_LABELS]
    if not all(file.is_file() for file in files):
        raise PipelineError(f"{path} not found: run the prepare stage first (dvc repro prepare)")
    images, labels = NpyRows(files[0]), np.load(files[1])
    if len(images) != len(labels):
        raise PipelineError(f"{path}: {len(images)} images but {len(labels)} labels: re-run "
                            "dvc repro prepare")
    return images, labels


def load_labels(path: Path) -> np.ndarray:
    """``int32`` ``(N,)`` labels of a prepared split folder (its images are not read)."""
    path = Path(path) / SPLIT_LABELS
    if not path.is_file():
        raise PipelineError(f"{path} not found: run the prepare stage first (dvc repro prepare)")
    return np.load(path)


def load_predictions(path: Path, stage: str) -> np.ndarray:
    """``int32`` ``(N,)`` top-1 predictions a stage wrote; a missing file names the stage."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found: run dvc repro {stage} first")
    return np.load(path)


def load_float_probabilities(path: Path, images: int | None = None) -> NpyRows:
    """The float Keras model's ``float32`` ``(N, C)`` probabilities on the evaluation split,
    read by row ranges (:class:`~litequant.core.arrays.NpyRows`).

    With ``images``, checks that they belong to a split of that many images.
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found: run dvc repro evaluate_keras first")
    probabilities = NpyRows(path)
    if images is not None and len(probabilities) != images:
        raise PipelineError(f"{path.parent} is out of date with {PREPARE_DIR}: run dvc repro")
    return probabilities


def iter_manifest(path: Path) -> Iterator[dict[str, str]]:
    """The rows of the fetch stage's ``manifest.csv``, one at a time (the file is checked
    before the first row)."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found: run the fetch stage first (dvc repro fetch)")
    return _csv_rows(path)


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        yield from csv.DictReader(handle)


def read_manifest(path: Path) -> list[dict[str, str]]:
    """The rows of the fetch stage's ``manifest.csv``."""
    return list(iter_manifest(path))


def read_layer_errors(path: Path) -> list[dict[str, str]]:
    """The rows of ``layer_errors.csv`` (strings), in execution order."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found: run dvc repro layer_errors first")
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
