"""Sensitivity-driven mixed precision for ``int8_selective``: which weight ops stay float.

Every weight op (``CONV_2D``, ``DEPTHWISE_CONV_2D``, ``FULLY_CONNECTED``) of the float32
variant's ``.tflite`` is judged by what its int8 weight rounding does to the model's OUTPUT,
never by the op's own error (a layer with a large own error may be harmless downstream, and a
layer with a small one may flip the top-1 class):

* :class:`WeightRounding` holds the float32 model and, per weight op, its weights as the
  converter's int8 rounding leaves them
  (:func:`litequant.quantize.passes.weight_grid.fake_quantize` with the ``max`` rule: symmetric,
  per output channel, ``scale = max|w| / 127``, round to nearest, on the same BN-folded float
  weights the converter quantizes). :meth:`WeightRounding.model_bytes` returns the float32 model
  with any set of weight ops so rounded (their weight bytes rewritten in place), which LiteRT runs
  in float: a simulation of int8 weights without int8 activations.
* :func:`rank_weight_ops`: each weight op alone rounded, on the first :data:`RANKING_IMAGES`
  calibration images, against the unmodified float32 model on the same images: mean KL
  divergence (the rank key: smooth, so it orders ops even when no top-1 class flips on a few
  dozen images), top-1 agreement and SQNR.
* :func:`agreement_curve`: every weight op rounded except the ``k`` highest ranked, for
  ``k = 0 .. max_layers``, on all the calibration images: agreement with the float32 model
  (the curve the report plots).
* :func:`fewest_layers`: the smallest ``k`` whose agreement loses at most ``budget_points``
  (``100 - agreement <= budget_points``); when none does, the best point (fewest ops on ties),
  with the budget marked not met.
* :func:`real_check`: after the real conversion with the chosen ops denylisted, checks that
  exactly those ops kept float weights and measures the real model's agreement on the same
  images (int8 activations included), so the record says whether the budget holds for real.

Cost: one float32 run over :data:`RANKING_IMAGES` images per weight op (the ranking), then one
over all calibration images per curve point (``max_layers + 1``) and one int8 run (the check).

Imports numpy, ai-edge-litert and the project's LiteRT runner, metrics and weight-rounding
helpers only (never TensorFlow).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from litequant.core.litert import LiteRTModel, dequantize, quantize
from litequant.core.metrics import class_probabilities, fidelity_metrics
from litequant.quantize.flatbuffer import (
    FLOAT32,
    buffer_array,
    read_model,
    tensor_name,
    weighted_ops,
)
from litequant.quantize.passes.weight_grid import fake_quantize

if TYPE_CHECKING:
    from litequant.quantize.context import BaseResult, PassInputs

#: The file beside the model that holds the whole selection.
SELECTION_FILE = "selection.json"


#: The most calibration images the ranking runs on (the first ones of the calibration inputs):
#: every weight op costs one float32 pass over them. The curve and the budget use them all.
RANKING_IMAGES = 32
#: The output-channel axis the converter quantizes per channel, per weight op: ``CONV_2D``
#: ``(out, h, w, in)``, ``DEPTHWISE_CONV_2D`` ``(1, h, w, out)``, ``FULLY_CONNECTED``
#: ``(out, in)``.
CHANNEL_AXIS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}
#: Interpreter threads of the simulation runs (float kernels give the same bits at any count).
THREADS = 2
#: TensorFlow op names of convolutions and matrix products in fused TFLite tensor names.
_WEIGHT_OP_NAMES = ("convolution", "Conv2D", "depthwise", "MatMul")
_BATCH = 16


@dataclass(frozen=True)
class WeightOp:
    """One weight op of the float32 model.

    Attributes:
        position: its index among the model's weight ops, in execution order (the same in every
            conversion of the same SavedModel).
        op: ``CONV_2D``, ``DEPTHWISE_CONV_2D`` or ``FULLY_CONNECTED``.
        tensor_name: its output tensor's name: what the converter's denylist takes.
    """

    position: int
    op: str
    tensor_name: str

    @property
    def label(self) -> str:
        """A short name for tables: the TensorFlow scope of the weight op in the fused output
        name (``model/block_1_expand_1/convolution`` -> ``block_1_expand_1``), else of its
        first part."""
        parts = [part.split("/") for part in self.tensor_name.split(";") if part]
        if not parts:
            return self.tensor_name
        chosen = next((p for p in parts if len(p) > 2 and p[-1].startswith(_WEIGHT_OP_NAMES)),
                      parts[0])
        return "/".join(chosen[1:-1]) if len(chosen) > 2 else "/".join(chosen)


def _weight_ops(model: Any) -> list[WeightOp]:
    tensors = model.subgraphs[0].tensors
    return [WeightOp(position, name, tensor_name(tensors[op.outputs[0]]))
            for position, (name, op) in enumerate(weighted_ops(model))]


def weight_ops_of(model_bytes: bytes) -> list[WeightOp]:
    """The weight ops of a ``.tflite`` model, in execution order."""
    return _weight_ops(read_model(model_bytes))


class WeightRounding:
    """The float32 model with any set of its weight ops' weights int8-rounded.

    Args:
        float_model: a float ``.tflite`` (the float32 variant): every weight op's weights are
            constant ``float32`` tensors.

    Raises:
        ValueError: a weight op without constant float weights (not a float model).
    """

    def __init__(self, float_model: bytes) -> None:
        from ai_edge_litert import schema_py_generated as schema

        self.model = bytes(float_model)
        model = read_model(self.model)
        raw = schema.Model.GetRootAs(self.model, 0)
        base = np.frombuffer(self.model, dtype=np.uint8).ctypes.data
        tensors = model.subgraphs[0].tensors
        self.ops = _weight_ops(model)
        self._patches: list[tuple[int, bytes]] = []
        for weight_op, (_, op) in zip(self.ops, weighted_ops(model), strict=True):
            weight = tensors[op.inputs[1]]
            where = f"weight op {weight_op.position} ({weight_op.op})"
            if weight.type != FLOAT32:
                raise ValueError(f"{where} has no float32 weights: not a float model")
            w = buffer_array(model, weight, np.float32)
            # the object model renumbers buffers: find the bytes through the file's own tables
            buffer = raw.Buffers(raw.Subgraphs(0).Tensors(op.inputs[1]).Buffer())
            start = (int(buffer.DataAsNumpy().ctypes.data - base) if buffer.DataLength()
                     else int(buffer.Offset()))  # a model > 2 GB keeps buffers after the tables
            if not np.array_equal(np.frombuffer(self.model, np.float32, w.size, start),
                                  w.reshape(-1)):
                raise ValueError(f"{where}: its weights are not where the flatbuffer says")
            rounded = fake_quantize(w, CHANNEL_AXIS[weight_op.op], "max").astype(np.float32)
            self._patches.append((start, rounded.tobytes()))

    def model_bytes(self, rounded: Collection[int]) -> bytes:
        """The float32 model with the weight ops at positions ``rounded`` int8-rounded (every
        other byte unchanged)."""
        data = bytearray(self.model)
        for position in rounded:
            start, values = self._patches[position]
            data[start:start + len(values)] = values
        return bytes(data)


def run_model(model_bytes: bytes, inputs: np.ndarray, output_kind: str) -> np.ndarray:
    """Class probabilities ``float32`` ``(N, C)`` of a ``.tflite`` classifier on ``inputs``.

    Args:
        model_bytes: the model; an integer input is fed with its own scale/zero point, an
            integer output dequantized.
        inputs: ``float32`` ``(N, h, w, 3)`` in the model family's input range (preprocessed).
        output_kind: ``probabilities`` or ``logits`` (``model.json``'s ``output``).
    """
    model = LiteRTModel("<in memory>", threads=THREADS, batch_size=_BATCH,
                        model_content=model_bytes)
    scores = [dequantize(model.invoke_raw(quantize(inputs[start:start + model.batch_size],
                                                   model.input)), model.output)
              for start in range(0, len(inputs), model.batch_size)]
    probabilities = class_probabilities(np.concatenate(scores).reshape(len(inputs), -1),
                                        output_kind)
    return np.clip(probabilities, 0.0, None)


def output_effect(reference: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """``agreement`` (%), ``kl_divergence`` (mean, nats), ``sqnr_db`` (``None``: identical)
    and ``loss_points`` (``100 - agreement``) of ``probabilities`` against ``reference``."""
    metrics = fidelity_metrics(reference, probabilities)
    return {"agreement": metrics["agreement"], "loss_points": 100.0 - metrics["agreement"],
            "kl_divergence": metrics["kl_divergence"], "sqnr_db": metrics["sqnr_db"]}


def rank_weight_ops(rounding: WeightRounding, inputs: np.ndarray, reference: np.ndarray,
                    output_kind: str) -> list[dict[str, Any]]:
    """Every weight op ranked by the output damage of its int8 weight rounding alone.

    Args:
        rounding: the float32 model (:class:`WeightRounding`).
        inputs: ``float32`` ``(N, h, w, 3)`` calibration inputs (preprocessed).
        reference: the unmodified float32 model's probabilities on ``inputs`` (:func:`run_model`).
        output_kind: ``probabilities`` or ``logits``.

    Returns:
        One row per weight op, most damaging first (largest ``kl_divergence``; ties: execution
        order): ``rank`` (1 = most sensitive), ``position``, ``op``, ``label``, ``tensor_name``
        and the :func:`output_effect` of rounding that op alone.
    """
    rows = []
    for op in rounding.ops:
        effect = output_effect(reference, run_model(rounding.model_bytes([op.position]), inputs,
                                                    output_kind))
        rows.append({"rank": 0, "position": op.position, "op": op.op, "label": op.label,
                     "tensor_name": op.tensor_name, **effect})
    rows.sort(key=lambda row: (-row["kl_divergence"], row["position"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def agreement_curve(rounding: WeightRounding, order: list[int], inputs: np.ndarray,
                    reference: np.ndarray, output_kind: str, max_layers: int
                    ) -> list[dict[str, Any]]:
    """Every weight op rounded but the first ``k`` of ``order`` (positions, most sensitive
    first), for ``k = 0 .. min(max_layers, ops)``: ``[{"layers_kept": k, **output_effect}]``."""
    every = range(len(rounding.ops))
    points = []
    for k in range(min(max_layers, len(order)) + 1):
        kept = set(order[:k])
        probabilities = run_model(rounding.model_bytes([p for p in every if p not in kept]),
                                  inputs, output_kind)
        points.append({"layers_kept": k, **output_effect(reference, probabilities)})
    return points


def meets(loss_points: float, budget_points: float) -> bool:
    """Whether an agreement loss (points) is within the budget (float rounding forgiven)."""
    return loss_points <= budget_points + 1e-9


def fewest_layers(curve: list[dict[str, Any]], budget_points: float) -> tuple[int, bool]:
    """``(k, met)``: the fewest layers kept float whose point meets ``budget_points``; when no
    point does, the point with the best agreement (fewest layers on ties) and ``False``."""
    for point in sorted(curve, key=lambda p: p["layers_kept"]):
        if meets(point["loss_points"], budget_points):
            return point["layers_kept"], True
    best = max(curve, key=lambda p: (p["agreement"], -p["layers_kept"]))
    return best["layers_kept"], False


def select_float_ops(float_model: bytes, inputs: np.ndarray, output_kind: str,
                     budget_points: float, max_layers: int) -> dict[str, Any]:
    """Rank the float32 model's weight ops and choose the fewest to keep float.

    Args:
        float_model: the float32 variant's ``.tflite``.
        inputs: ``float32`` ``(N, h, w, 3)`` calibration inputs, preprocessed: the first
            :data:`RANKING_IMAGES` rank the ops, all of them measure the curve.
        output_kind: ``probabilities`` or ``logits`` (``model.json``'s ``output``).
        budget_points: the most top-1 agreement (points) with the float32 model the simulated
            model may lose on ``inputs``.
        max_layers: the most weight ops kept float.

    Returns:
        The selection (``selection.json``): ``images`` (``ranking`` and ``budget``: how many
            images ranked the ops and measured the curve), ``budget_points``, ``max_layers``,
        ``weight_ops``, ``ranking`` (:func:`rank_weight_ops`), ``curve``
        (:func:`agreement_curve`), ``layers_kept``, ``budget_met_simulated``, the chosen
        ``float_layers`` (tensor names, the denylist) and ``float_ops`` (``position``, ``op``,
        ``label``).
    """
    inputs = np.asarray(inputs, dtype=np.float32)
    rounding = WeightRounding(float_model)
    reference = run_model(rounding.model, inputs, output_kind)
    ranking = rank_weight_ops(rounding, inputs[:RANKING_IMAGES], reference[:RANKING_IMAGES],
                              output_kind)
    curve = agreement_curve(rounding, [row["position"] for row in ranking], inputs, reference,
                            output_kind, max_layers)
    k, met = fewest_layers(curve, budget_points)
    chosen = sorted(ranking[:k], key=lambda row: row["position"])
    return {"images": {"ranking": min(len(inputs), RANKING_IMAGES), "budget": len(inputs)},
            "budget_points": budget_points, "max_layers": max_layers,
            "weight_ops": len(rounding.ops), "layers_kept": k, "budget_met_simulated": met,
            "float_layers": [row["tensor_name"] for row in chosen],
            "float_ops": [{key: row[key] for key in ("position", "op", "label")}
                          for row in chosen],
            "ranking": ranking, "curve": curve}


def float_weight_positions(model_bytes: bytes) -> list[int]:
    """Positions (among weight ops, execution order) of the ops of a converted model whose
    weights are constant ``float32`` tensors: the ops a full-integer conversion kept float."""
    model = read_model(model_bytes)
    tensors = model.subgraphs[0].tensors
    return [position for position, (_, op) in enumerate(weighted_ops(model))
            if tensors[op.inputs[1]].type == FLOAT32
            and model.buffers[tensors[op.inputs[1]].buffer].data is not None]


def real_check(selection: dict[str, Any], converted: bytes, float_model: bytes,
               inputs: np.ndarray, output_kind: str) -> dict[str, Any]:
    """The real converted model against the selection: the ops kept float and its agreement.

    Args:
        selection: :func:`select_float_ops`'s result.
        converted: the ``.tflite`` converted with ``selection["float_layers"]`` denylisted.
        float_model: the float32 variant's ``.tflite`` (the reference).
        inputs: the inputs :func:`select_float_ops` was given.
        output_kind: ``probabilities`` or ``logits``.

    Returns:
        ``{"agreement", "loss_points", "kl_divergence", "sqnr_db", "budget_met"}``
        of the converted model against the float32 model on the same images.

    Raises:
        RuntimeError: the converted model's float weight ops are not the chosen ones (the
            denylist names did not match the converter's).
    """
    kept = float_weight_positions(converted)
    wanted = [op["position"] for op in selection["float_ops"]]
    if kept != wanted:
        raise RuntimeError(f"the converter kept weight ops {kept} float, not the chosen "
                           f"{wanted}: the denylist names do not match the converter's")
    inputs = np.asarray(inputs, dtype=np.float32)
    effect = output_effect(run_model(float_model, inputs, output_kind),
                           run_model(converted, inputs, output_kind))
    return {**effect, "budget_met": meets(effect["loss_points"], selection["budget_points"])}


def record_fields(selection: dict[str, Any], real: dict[str, Any]) -> dict[str, Any]:
    """The ``conversion.json`` fields of a selection and its :func:`real_check` (not metrics):
    ``float_layers`` (tensor names), ``float_ops`` (labels), ``budget_points``, ``max_layers``,
    ``budget_met`` and ``calibration_agreement`` (``simulated`` and ``real``), how many images
    ranked the ops and measured the budget."""
    chosen = next(p for p in selection["curve"] if p["layers_kept"] == selection["layers_kept"])
    return {"float_layers": list(selection["float_layers"]),
            "float_ops": [op["label"] for op in selection["float_ops"]],
            "budget_points": selection["budget_points"], "max_layers": selection["max_layers"],
            "budget_met": {"simulated": selection["budget_met_simulated"],
                           "real": real["budget_met"]},
            "calibration_agreement": {"simulated": chosen["agreement"],
                                      "real": real["agreement"]},
            "ranking_images": selection["images"]["ranking"],
            "budget_images": selection["images"]["budget"]}


def build_base(base: Any, inputs: PassInputs) -> BaseResult:
    """The :class:`~litequant.quantize.registry.KeptFloat` base: choose the float layers on the
    float32 model (judged on the real calibration images, within ``inputs.settings``, the
    ``convert.selection`` budget), convert with them denylisted, and check the real model.

    Returns the model, the selection's ``conversion.json`` fields (:func:`record_fields`) and
    ``selection.json``. Raises ``RuntimeError`` when the converter kept other layers float than
    the chosen ones.
    """
    from litequant.quantize.conversion import convert_selective

    float_model = inputs.float32_model()
    selection = select_float_ops(float_model, inputs.real_calibration, inputs.output_kind,
                                 inputs.settings.budget_points, inputs.settings.max_layers)
    model_bytes = convert_selective(inputs.saved_model, inputs.calibration,
                                    selection["float_layers"])
    selection["real"] = real_check(selection, model_bytes, float_model,
                                   inputs.real_calibration, inputs.output_kind)
    return model_bytes, record_fields(selection, selection["real"]), {SELECTION_FILE: selection}
