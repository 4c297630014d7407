"""The int8 per-layer error table (``reports/layer_errors.csv``) of stage ``layer_errors``.

:func:`layer_rows` turns the QuantizationDebugger's statistics
(:func:`litequant.quantize.conversion.debug_int8`) into one row per quantized op output, in
execution order:

* ``position`` (0, 1, ...), ``op`` (TFLite op), ``tensor_name`` (the fused TFLite tensor name,
  what the converter's denylist takes), ``keras_layer`` (the Keras layer whose output it is) and
  ``keras_layers`` (every Keras layer fused into the op, ``+``-separated, in model order);
* ``rmse_over_scale``: root-mean-square difference between the quantized op's output and the
  float op on the same (dequantized) inputs, in units of the output's quantization step; about
  0.29 (``1/sqrt(12)``) is pure rounding noise, larger values mean clipping or too coarse a
  scale; ``rank`` (1 = worst) orders the rows by it;
* ``rmse``, ``mean_error``, ``max_abs_error``, ``scale``, ``zero_point``, ``num_elements``.
"""

from __future__ import annotations

import csv
import io
import math
import re
from typing import Any

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


def csv_text(rows: list[dict[str, Any]]) -> str:
    """``layer_errors.csv``: the :data:`COLUMNS` of ``rows``, floats to 6 significant digits."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: (f"{value:.6g}" if isinstance(value, float) else value)
                         for key, value in row.items()})
    return buffer.getvalue()

