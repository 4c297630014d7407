"""Stage ``evaluate@<variant>``: one LiteRT variant on the evaluation split.

``python -m stages.evaluate <variant>`` reads ``params.yaml`` section ``evaluate``,
``data/convert/<variant>/``, ``data/prepare/evaluation.npz``, ``data/export/model.json`` and the
float baseline ``data/evaluate_keras/probabilities.npy``, and writes
``data/evaluate/<variant>/metrics.json``: top-1/top-5 against the labels, and agreement, top-5
overlap, KL divergence and SQNR against the float Keras model on the same images.

Inputs are quantized with the model's own scale/zero point and outputs dequantized
(:mod:`stages.litert`). This stage imports ``ai_edge_litert`` and numpy only, never TensorFlow.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from stages import atomic
from stages.cli import run_stage
from stages.errors import PipelineError
from stages.export import read_model_info
from stages.litert import predict_parallel
from stages.metrics import classification_metrics, fidelity_metrics, softmax
from stages.params import check_variant, evaluate_params, load
from stages.prepare import load_split

OUTPUT = Path("data/evaluate")


def read_conversion(variant: str, convert_root: Path = Path("data/convert")) -> dict[str, Any]:
    """The ``conversion.json`` of a variant."""
    path = Path(convert_root) / variant / "conversion.json"
    if not path.is_file():
        raise PipelineError(f"{path} not found: run dvc repro convert@{variant} first")
    return json.loads(path.read_text("utf-8"))


def as_probabilities(scores: np.ndarray, output_kind: str) -> np.ndarray:
    """Dequantized outputs ``(N, C)`` → probabilities ``(N, C)`` that sum to 1 per row.

    ``output_kind`` is the float model's (``model.json``): ``probabilities`` outputs are clipped
    at 0 and renormalised (quantized softmax rows do not sum exactly to 1); ``logits`` are
    softmaxed.
    """
    if output_kind == "logits":
        return softmax(scores)
    clipped = np.clip(scores, 0.0, None)
    sums = clipped.sum(axis=-1, keepdims=True)
    uniform = np.full_like(clipped, 1.0 / clipped.shape[-1])
    return np.where(sums > 0, clipped / np.where(sums > 0, sums, 1.0), uniform)


def evaluate_model(model_path: Path, images: np.ndarray, labels: np.ndarray,
                   reference: np.ndarray, family: str, output_kind: str, workers: int,
                   batch_size: int, label_offset: int = 0) -> dict[str, Any]:
    """Metrics of one ``.tflite`` model on ``uint8`` images ``(N, h, w, 3)``.

    ``reference`` is the float model's ``(N, 1000)`` probabilities; ``output_kind`` is
    ``probabilities`` or ``logits`` (see :func:`as_probabilities`). ``label_offset`` drops that
    many leading outputs (e.g. 1 for models with a ``background`` class at index 0).
    """
    scores = predict_parallel(model_path, images, family, workers, batch_size)
    scores = scores[:, label_offset:]
    if scores.shape[1] != reference.shape[1]:
        raise PipelineError(f"{model_path}: {scores.shape[1]} outputs after label_offset "
                            f"{label_offset}, but the label space has {reference.shape[1]}")
    probabilities = as_probabilities(scores, output_kind)
    return {**classification_metrics(probabilities, labels),
            **fidelity_metrics(reference, probabilities)}


def evaluate(variant: str, params: dict[str, Any], output_root: Path = OUTPUT
             ) -> dict[str, Any]:
    """Evaluate one variant and write ``data/evaluate/<variant>/metrics.json``."""
    check_variant(params, variant)
    settings = evaluate_params(params)
    conversion = read_conversion(variant)
    if conversion["status"] != "ok":
        metrics = {"status": "failed", "error": conversion.get("error", "conversion failed")}
    else:
        info = read_model_info()
        images, labels = load_split("evaluation")
        reference = np.load(Path("data/evaluate_keras") / "probabilities.npy")
        if len(reference) != len(labels):
            raise PipelineError("data/evaluate_keras is out of date with data/prepare: "
                                "run dvc repro")
        metrics = {"status": "ok", **evaluate_model(
            Path("data/convert") / variant / "model.tflite", images, labels, reference,
            info["preprocessing"], info["output"], settings.threads, settings.batch_size)}
        sqnr = "inf" if metrics["sqnr_db"] is None else f"{metrics['sqnr_db']:.1f}"
        print(f"evaluate: {variant}: top-1 {metrics['top1']:.2f}%, agreement "
              f"{metrics['agreement']:.2f}%, SQNR {sqnr} dB on {metrics['images']} images")
    with atomic.output_folder(output_root / variant) as tmp:
        atomic.write_json(tmp / "metrics.json", metrics)
    return metrics


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("variant", help="variant to evaluate (a key of convert.variants)")


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__,
                     lambda args: evaluate(args.variant, load(args.params)),
                     configure=_arguments, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
