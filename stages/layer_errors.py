"""Stage ``layer_errors``: where the int8 variant loses accuracy, layer by layer.

``python -m stages.layer_errors`` reads ``params.yaml`` section ``calibration``,
``data/export/model.json``, ``int8_plain``'s calibrated model
(``data/convert/int8_plain/calibrated.tflite``: the converter's int8 calibration, not repeated
here) and ``data/prepare/calibration/``, and runs
``tf.lite.experimental.QuantizationDebugger`` on the first :data:`DEBUG_IMAGES` real calibration
images (never on evaluation images; with noise calibration the debugger still feeds real images,
which shows the layers noise calibration breaks). A report only: ``int8_selective`` chooses its
float layers by their effect on the output (:mod:`litequant.quantize.passes.selection`), not
from this table. It writes ``reports/layer_errors.csv``, one row per quantized op output in the
model's execution order (columns: :mod:`litequant.measure.layer_errors`); with ``int8_plain``
off or failed, the header only.

The debugger does not support int16x8 models; only the int8 recipe is analysed.
"""

from __future__ import annotations

from typing import Any

from litequant.core import atomic, layout
from litequant.core.cli import run_stage
from litequant.core.errors import PipelineError
from litequant.core.params import CalibrationParams, read_section
from litequant.measure.layer_errors import csv_text, layer_rows
from litequant.quantize.context import calibration_inputs
from litequant.quantize.conversion import debug_int8

#: The variant whose calibrated model is analysed.
ANALYSED_VARIANT = "int8_plain"
#: Calibration images the per-layer errors are averaged over: each row averages thousands of
#: elements per image, so 32 images give the 100 images' figures within a few per cent (the
#: same worst layers) in a quarter of the time.
DEBUG_IMAGES = 32


def layer_errors(params: CalibrationParams) -> list[dict[str, Any]]:
    """Measure the int8 per-layer errors and write ``reports/layer_errors.csv``; returns rows."""
    info = layout.read_model_info(layout.MODEL_INFO)
    record = layout.read_conversion(layout.convert_dir(ANALYSED_VARIANT))
    calibrated = layout.calibrated_file(ANALYSED_VARIANT)
    if record["status"] != "ok" or not calibrated.is_file():
        atomic.write_text(layout.LAYER_ERRORS_CSV, csv_text([]))
        print(f"layer_errors: {ANALYSED_VARIANT} is {record['status']}: no int8 model to analyse")
        return []
    calibration_images, _ = layout.load_split(layout.CALIBRATION_SPLIT)
    real = params.model_copy(update={"source": "images",
                                     "num_images": min(params.num_images, DEBUG_IMAGES)})
    debug_inputs = calibration_inputs(calibration_images, real, info["preprocessing"])
    rows = layer_rows(debug_int8(calibrated.read_bytes(), debug_inputs), info["layers"])
    if not rows:
        raise PipelineError("the QuantizationDebugger reported no quantized layers")
    atomic.write_text(layout.LAYER_ERRORS_CSV, csv_text(rows))
    worst = sorted(rows, key=lambda row: row["rank"])[:3]
    print("layer_errors: worst " + ", ".join(
        f"{row['keras_layer'] or row['tensor_name'][:40]} ({row['rmse_over_scale']:.2f})"
        for row in worst) + f" of {len(rows)} layers on {len(debug_inputs)} calibration images")
    return rows


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__.split("\n\n")[0],
                     lambda args: layer_errors(read_section(CalibrationParams, args.params)),
                     argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
