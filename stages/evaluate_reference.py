"""Stage ``evaluate_reference``: an external, already-converted TFLite model on the same images.

``python -m stages.evaluate_reference`` reads ``params.yaml`` sections ``reference`` and
``evaluate``, ``data/prepare/evaluation.npz``, ``data/export/model.json`` and the float baseline
``data/evaluate_keras/probabilities.npy``, and writes ``data/evaluate_reference/metrics.json``:
the same metrics as ``evaluate@<variant>`` plus the model's path, SHA-256, size and tensor
conventions, or ``status: skipped`` when ``reference.path`` is null.

The reference model's conventions come from the model itself and from explicit params, never
from its file name: images get the ``reference.preprocessing`` float range and are then quantized
with the input tensor's own scale/zero point (a ``uint8`` input with scale 1/128 and zero point
128 receives, in effect, raw 0..255 pixels); ``reference.label_offset`` leading outputs (a
``background`` class) are dropped before comparing with the 1000 ImageNet classes.

The path is a param, not a DVC dependency (it may be null): replacing the file in place needs
``dvc repro -f evaluate_reference benchmark_reference``; the recorded SHA-256 shows which file
was measured. ``benchmark_reference`` times the same file (:func:`reference_model`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from stages import atomic
from stages.cli import run_stage
from stages.errors import PipelineError
from stages.evaluate import evaluate_model
from stages.export import read_model_info
from stages.litert import LiteRTModel
from stages.params import ReferenceParams, evaluate_params, load, reference_params
from stages.prepare import load_split

OUTPUT = Path("data/evaluate_reference")


def describe_reference(path: Path) -> dict[str, Any]:
    """File facts and tensor conventions of a ``.tflite`` model (raises a PipelineError)."""
    model = LiteRTModel(path)

    def tensor(spec) -> dict[str, Any]:
        return {"dtype": spec.dtype.name, "scale": spec.scale, "zero_point": spec.zero_point,
                "shape": list(spec.shape)}

    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "size_bytes": path.stat().st_size, "input": tensor(model.input),
            "output": tensor(model.output)}


def reference_model(settings: ReferenceParams, export_dir: Path = Path("data/export")
                    ) -> tuple[Path, str] | None:
    """The reference ``.tflite`` file and the preprocessing family its float input range follows.

    ``None`` when ``reference.path`` is null; a PipelineError when the file does not exist.
    ``reference.preprocessing: auto`` means the exported Keras model's family.
    """
    if settings.path is None:
        return None
    path = Path(settings.path)
    if not path.is_file():
        raise PipelineError(f"params.yaml: reference.path {path} is not a file")
    if settings.preprocessing != "auto":
        return path, settings.preprocessing
    return path, read_model_info(export_dir)["preprocessing"]


def evaluate_reference(settings: ReferenceParams, workers: int = 1, batch_size: int = 32,
                       export_dir: Path = Path("data/export"),
                       prepare_dir: Path = Path("data/prepare"),
                       baseline_dir: Path = Path("data/evaluate_keras"),
                       output: Path = OUTPUT) -> dict[str, Any]:
    """Evaluate the reference model and write ``metrics.json``; returns it."""
    model = reference_model(settings, export_dir)
    if model is None:
        metrics: dict[str, Any] = {"status": "skipped"}
    else:
        path, family = model
        images, labels = load_split("evaluation", prepare_dir)
        reference = np.load(Path(baseline_dir) / "probabilities.npy")
        if len(reference) != len(labels):
            raise PipelineError(f"{baseline_dir} is out of date with {prepare_dir}: "
                                "run dvc repro")
        metrics = {"status": "ok", **describe_reference(path),
                   "label_offset": settings.label_offset, "preprocessing": family,
                   **evaluate_model(path, images, labels, reference, family, settings.output,
                                    workers, batch_size, label_offset=settings.label_offset)}
        print(f"evaluate_reference: {path.name}: top-1 {metrics['top1']:.2f}%, agreement "
              f"{metrics['agreement']:.2f}% on {metrics['images']} images")
    with atomic.output_folder(output) as tmp:
        atomic.write_json(tmp / "metrics.json", metrics)
    return metrics


def _run(params: dict[str, Any]) -> dict[str, Any]:
    settings = evaluate_params(params)
    return evaluate_reference(reference_params(params), settings.threads, settings.batch_size)


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__.split("\n\n")[0], lambda args: _run(load(args.params)), argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
