"""Stage ``layer_errors``: where the int8 variant loses accuracy, layer by layer.

``python -m stages.layer_errors`` reads ``params.yaml`` section ``calibration``,
``data/export/`` (SavedModel, ``model.keras``, ``model.json``) and
``data/prepare/calibration/``, quantizes the model exactly like the ``int8`` variant and runs
``tf.lite.experimental.QuantizationDebugger`` on the real calibration images (never on
evaluation images; with noise calibration the debugger still feeds real images, which shows the
layers noise calibration breaks). A report only: ``int8_selective`` chooses its float layers by
their effect on the output (:mod:`litequant.quantize.passes.selection`), not from this table. It
writes ``reports/layer_errors.csv``, one row per quantized op output in the model's execution order
(columns: :mod:`litequant.measure.layer_errors`).

The debugger does not support int16x8 models; only the int8 recipe is analysed.
"""

from __future__ import annotations

from typing import Any

from litequant.core import atomic, layout
from litequant.core.cli import run_stage
from litequant.core.errors import PipelineError
from litequant.core.params import CalibrationParams, read_section
from litequant.measure.layer_errors import csv_text, layer_rows
from litequant.model.models import load_exported
from litequant.quantize.context import calibration_inputs
from litequant.quantize.conversion import debug_int8


def layer_errors(params: CalibrationParams) -> list[dict[str, Any]]:
    """Measure the int8 per-layer errors and write ``reports/layer_errors.csv``; returns rows."""
    info = layout.read_model_info(layout.MODEL_INFO)
    if not layout.SAVED_MODEL.is_dir() or not layout.KERAS_MODEL.is_file():
        raise PipelineError(f"{layout.EXPORT_DIR}: SavedModel or model.keras missing: run the "
                            "export stage first")
    calibration_images, _ = layout.load_split(layout.CALIBRATION_SPLIT)
    family = info["preprocessing"]
    representative = calibration_inputs(calibration_images, params, family)
    debug_inputs = (representative if params.source == "images" else calibration_inputs(
        calibration_images, params.model_copy(update={"source": "images"}), family))
    model = load_exported(info, layout.KERAS_MODEL, layout.SAVED_MODEL)
    names = [layer.name for layer in model.layers]
    rows = layer_rows(debug_int8(layout.SAVED_MODEL, representative, debug_inputs), names)
    if not rows:
        raise PipelineError("the QuantizationDebugger reported no quantized layers")
    atomic.write_text(layout.LAYER_ERRORS_CSV, csv_text(rows))
    worst = sorted(rows, key=lambda row: row["rank"])[:3]
    print("layer_errors: worst " + ", ".join(
        f"{row['keras_layer'] or row['tensor_name'][:40]} ({row['rmse_over_scale']:.2f})"
        for row in worst) + f" of {len(rows)} layers")
    return rows


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__.split("\n\n")[0],
                     lambda args: layer_errors(read_section(CalibrationParams, args.params)),
                     argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
