"""Stage ``layer_errors``: where the int8 variant loses accuracy, layer by layer.

``python -m stages.layer_errors`` reads ``params.yaml`` section ``calibration``,
``data/export/`` (SavedModel, ``model.keras``, ``model.json``) and ``data/prepare/
calibration.npz``, quantizes the model exactly like the ``int8`` variant and runs
``tf.lite.experimental.QuantizationDebugger`` on the real calibration images (never on
evaluation images, so the layers ``int8_selective`` keeps float are not chosen on the test set;
with noise calibration the debugger still feeds real images, which shows the layers noise
calibration breaks). It writes ``reports/layer_errors.csv``, one row per quantized op output in
the model's execution order:

* ``position`` (0, 1, ...), ``op`` (TFLite op), ``tensor_name`` (the fused TFLite tensor name,
  what the converter's denylist takes), ``keras_layer`` (the Keras layer whose output it is) and
  ``keras_layers`` (every Keras layer fused into the op, ``+``-separated, in model order);
* ``rmse_over_scale``: root-mean-square difference between the quantized op's output and the
  float op on the same (dequantized) inputs, in units of the output's quantization step; about
  0.29 (``1/sqrt(12)``) is pure rounding noise, larger values mean clipping or too coarse a
  scale; ``rank`` (1 = worst) orders the rows by it;
* ``rmse``, ``mean_error``, ``max_abs_error``, ``scale``, ``zero_point``, ``num_elements``.

The debugger does not support int16x8 models; only the int8 recipe is analysed.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from stages import atomic
from stages.cli import run_stage
from stages.errors import PipelineError
from stages.params import CalibrationParams, calibration_params, load

OUTPUT = Path("reports/layer_errors.csv")
COLUMNS = ["position", "rank", "op", "keras_layer", "keras_layers", "tensor_name",
           "rmse_over_scale", "rmse", "mean_error", "max_abs_error", "scale", "zero_point",
           "num_elements"]
_COPY_SUFFIX = re.compile(r"^(.*)_\d+$")


def keras_layers_of(tensor_name: str, layer_names: list[str]) -> list[str]:
    """Keras layers named in a fused TFLite tensor name, in model order.

    A tensor name is ``;``-separated TensorFlow op names such as
    ``model_1/block_1_expand_relu_1/Relu6;model_1/block_1_expand_1/convolution``; the second
    path component is the layer, sometimes with a ``_<n>`` suffix the SavedModel export adds.
    """
    known = set(layer_names)
    found = set()
    for part in tensor_name.split(";"):
        pieces = part.split("/")
        if len(pieces) < 2:
            continue
        candidate = pieces[1]
        if candidate not in known:
            match = _COPY_SUFFIX.match(candidate)
            candidate = match.group(1) if match else candidate
        if candidate in known:
            found.add(candidate)
    return [name for name in layer_names if name in found]


def layer_rows(statistics_csv: str, layer_names: list[str]) -> list[dict[str, Any]]:
    """Rows of ``layer_errors.csv`` from the debugger's ``layer_statistics_dump`` text."""
    rows = []
    for position, stat in enumerate(csv.DictReader(io.StringIO(statistics_csv))):
        scale = float(stat["scale"])
        rmse = math.sqrt(max(float(stat["mean_squared_error"]), 0.0))
        fused = keras_layers_of(stat["tensor_name"], layer_names)
        rows.append({
            "position": position, "op": stat["op_name"],
            "keras_layer": fused[-1] if fused else "",
            "keras_layers": "+".join(fused), "tensor_name": stat["tensor_name"],
            "rmse_over_scale": rmse / scale if scale > 0 else float("nan"), "rmse": rmse,
            "mean_error": float(stat["mean_error"]),
            "max_abs_error": float(stat["max_abs_error"]), "scale": scale,
            "zero_point": int(float(stat["zero_point"])),
            "num_elements": int(float(stat["num_elements"])),
        })
    order = sorted(range(len(rows)), key=lambda i: (-_sortable(rows[i]["rmse_over_scale"]), i))
    for rank, index in enumerate(order, start=1):
        rows[index]["rank"] = rank
    return rows


def _sortable(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def debug_int8(saved_model: Path, representative: np.ndarray, debug_images: np.ndarray) -> str:
    """Run the QuantizationDebugger on the int8 recipe; returns its layer statistics CSV text.

    ``representative`` calibrates (``float32`` ``(N, h, w, 3)``, model input range);
    ``debug_images`` (same layout) are the inputs the per-layer errors are averaged over.
    """
    import tensorflow as tf

    from stages.convert import build_converter, representative_dataset

    converter = build_converter(saved_model, "int8", representative)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=representative_dataset(debug_images))
    debugger.run()
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    return buffer.getvalue()


def layer_errors(params: CalibrationParams, export_dir: Path = Path("data/export"),
                 prepare_dir: Path = Path("data/prepare"), output: Path = OUTPUT
                 ) -> list[dict[str, Any]]:
    """Measure the int8 per-layer errors and write ``reports/layer_errors.csv``; returns rows."""
    import keras

    from stages.convert import calibration_inputs
    from stages.export import read_model_info

    info = read_model_info(export_dir)
    saved_model = Path(export_dir) / "saved_model"
    keras_path = Path(export_dir) / "model.keras"
    if not saved_model.is_dir() or not keras_path.is_file():
        raise PipelineError(f"{export_dir}: SavedModel or model.keras missing: run the export "
                            "stage first")
    representative = calibration_inputs(params, info["preprocessing"], prepare_dir)
    debug_images = (representative if params.source == "images" else calibration_inputs(
        replace(params, source="images"), info["preprocessing"], prepare_dir))
    model = keras.models.load_model(keras_path, compile=False, safe_mode=True)
    names = [layer.name for layer in model.layers]
    rows = layer_rows(debug_int8(saved_model, representative, debug_images), names)
    if not rows:
        raise PipelineError("the QuantizationDebugger reported no quantized layers")
    atomic.write_text(output, csv_text(rows))
    worst = sorted(rows, key=lambda row: row["rank"])[:3]
    print("layer_errors: worst " + ", ".join(
        f"{row['keras_layer'] or row['tensor_name'][:40]} ({row['rmse_over_scale']:.2f})"
        for row in worst) + f" of {len(rows)} layers")
    return rows


def csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: (f"{value:.6g}" if isinstance(value, float) else value)
                         for key, value in row.items()})
    return buffer.getvalue()


def read_layer_errors(path: Path = OUTPUT) -> list[dict[str, str]]:
    """The rows of ``layer_errors.csv`` (strings), in execution order."""
    if not Path(path).is_file():
        raise PipelineError(f"{path} not found: run dvc repro layer_errors first")
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def worst_layers(count: int, path: Path = OUTPUT) -> list[dict[str, str]]:
    """The ``count`` rows with the largest ``rmse_over_scale`` (rank 1 first)."""
    rows = sorted(read_layer_errors(path), key=lambda row: int(row["rank"]))
    if count > len(rows):
        raise PipelineError(f"params.yaml: convert.variants.int8_selective.float_layers={count} "
                            f"is more than the {len(rows)} quantized layers in {path}")
    return rows[:count]


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__.split("\n\n")[0],
                     lambda args: layer_errors(calibration_params(load(args.params))),
                     argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
