"""Stage ``evaluate_peer``: an external, already-converted TFLite model on the same images.

``python -m stages.evaluate_peer`` reads ``params.yaml`` sections ``peer`` and ``evaluate``,
``data/prepare/evaluation/``, ``data/export/model.json`` and the float model's
``data/evaluate_keras/probabilities.npy``, and writes ``data/evaluate_peer/metrics.json``: the
same metrics as ``evaluate@<variant>`` plus the model's path, SHA-256, size and tensor
conventions, and ``predictions.npy`` (``int32`` ``(N,)``, the top-1 class of each image in the
Keras model's label space), or ``status: skipped`` when ``peer.path`` is null (conventions:
:mod:`litequant.measure.peer`).

The path is a param, not a DVC dependency (it may be null): replacing the file in place needs
``dvc repro -f evaluate_peer benchmark``; the recorded SHA-256 shows which file was measured.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from litequant.core import atomic, layout
from litequant.core.cli import run_stage
from litequant.core.params import EvaluateParams, PeerParams, load, section
from litequant.measure.evaluation import evaluate_model
from litequant.measure.peer import describe_peer, peer_model


def evaluate_peer(params: PeerParams, evaluate: EvaluateParams) -> dict[str, Any]:
    """Evaluate the peer model and write ``metrics.json``; returns it."""
    info = layout.read_model_info(layout.MODEL_INFO)
    model = peer_model(params, info["preprocessing"])
    predictions = None
    if model is None:
        metrics: dict[str, Any] = {"status": "skipped"}
    else:
        path, family = model
        images, labels = layout.load_split(layout.EVALUATION_SPLIT)
        float_probabilities = layout.load_float_probabilities(layout.FLOAT_PROBABILITIES,
                                                              len(labels))
        measured, predictions = evaluate_model(
            path, images, labels, float_probabilities, family, params.output, evaluate.threads,
            evaluate.batch_size, label_offset=params.label_offset)
        metrics = {"status": "ok", **describe_peer(path), "label_offset": params.label_offset,
                   "preprocessing": family, **measured}
        print(f"evaluate_peer: {path.name}: top-1 {metrics['top1']:.2f}%, agreement "
              f"{metrics['agreement']:.2f}% on {metrics['images']} images")
    with atomic.output_folder(layout.PEER_EVALUATION_DIR) as tmp:
        atomic.write_json(tmp / "metrics.json", metrics)
        if predictions is not None:
            np.save(tmp / layout.PEER_PREDICTIONS.name, predictions)
    return metrics


def _run(params_path: str) -> dict[str, Any]:
    params = load(params_path)
    return evaluate_peer(section(params, PeerParams, params_path),
                         section(params, EvaluateParams, params_path))


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__.split("\n\n")[0], lambda args: _run(args.params), argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
