"""Stage ``evaluate@<variant>``: one LiteRT variant on the evaluation split.

``python -m stages.evaluate <variant>`` reads ``params.yaml`` section ``evaluate``,
``data/convert/<variant>/``, ``data/prepare/evaluation/``, ``data/export/model.json`` and the
float model's ``data/evaluate_keras/probabilities.npy``, and writes
``data/evaluate/<variant>/metrics.json``: top-1/top-k against the labels, and agreement, top-k
overlap, KL divergence and SQNR against the float Keras model on the same images (k = min(5,
classes - 1)), and ``predictions.npy``: ``int32`` ``(N,)``, the top-1 class of each image (the
report's per-class view).

Inputs are quantized with the model's own scale/zero point and outputs dequantized
(:mod:`litequant.core.litert`). This stage imports ``ai_edge_litert`` and numpy only, never
TensorFlow.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from litequant.core import atomic, layout
from litequant.core.cli import run_stage
from litequant.core.params import EvaluateParams, read_section
from litequant.measure.evaluation import evaluate_model


def evaluate(variant: str, params: EvaluateParams) -> dict[str, Any]:
    """Evaluate one variant and write ``data/evaluate/<variant>/metrics.json``."""
    conversion = layout.read_conversion(layout.convert_dir(variant))
    predictions = None
    if conversion["status"] == "off":  # turned off in convert.variants: nothing to evaluate
        metrics = {"status": "off"}
    elif conversion["status"] != "ok":
        metrics = {"status": "failed", "error": conversion.get("error", "conversion failed")}
    else:
        info = layout.read_model_info(layout.MODEL_INFO)
        images, labels = layout.load_split(layout.EVALUATION_SPLIT)
        float_probabilities = layout.load_float_probabilities(layout.FLOAT_PROBABILITIES,
                                                              len(labels))
        measured, predictions = evaluate_model(
            layout.model_file(variant), images, labels, float_probabilities,
            info["preprocessing"], info["output"], params.threads, params.batch_size)
        metrics = {"status": "ok", **measured}
        sqnr = "inf" if metrics["sqnr_db"] is None else f"{metrics['sqnr_db']:.1f}"
        print(f"evaluate: {variant}: top-1 {metrics['top1']:.2f}%, agreement "
              f"{metrics['agreement']:.2f}%, SQNR {sqnr} dB on {metrics['images']} images")
    with atomic.output_folder(layout.evaluate_dir(variant)) as tmp:
        atomic.write_json(tmp / "metrics.json", metrics)
        if predictions is not None:
            np.save(tmp / layout.predictions_file(variant).name, predictions)
    return metrics


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("variant", help="variant to evaluate (a key of convert.variants)")


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__, lambda args: evaluate(
        args.variant, read_section(EvaluateParams, args.params)), configure=_arguments, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
