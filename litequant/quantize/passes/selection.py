"""Mixed precision for ``int8_selective``, chosen on the real int8 model: which ops stay float.

Every choice is measured on the model the converter really builds, int8 activations included
(on float-trained models the error is mostly in the activations, which a simulation of weight
rounding cannot see):

1. **Calibrate once**: ``int8_plain``'s calibrated model
   (:func:`litequant.quantize.conversion.calibrate_int8`, kept by that variant's conversion);
   every candidate model below is then
   :func:`~litequant.quantize.conversion.quantize_calibrated` with a denylist, about a second.
2. **Candidates** (:func:`candidate_units`). An op kept float alone still hands its output to
   the next int8 op through a quantize op with the same calibrated range: it removes its weight
   rounding, never the quantization of its output activation. Only two adjacent float ops pass
   a float tensor. So a candidate is an *activation tensor kept float*: the op producing it and
   every op reading it (one "unit"), which also removes the producer's weight rounding.
3. **Ranking by real effect** (:func:`measure_alone` on the first :data:`RANKING_IMAGES`
   judging images): every unit denylisted alone, the real model's mean KL divergence from the
   float32 model (class probabilities from the logits, :func:`judge`: smooth, so it orders
   units even when no top-1 class flips). A unit's own error says little of what it does at the
   output: an early activation with a small error of its own may matter most, amplified by
   every layer after it. The :data:`SHORTLIST` units that lower int8's KL most are kept.
4. **Real effect alone, on all images**: each shortlisted unit measured again on all the
   judging images; units that do not lower int8's KL are dropped, the rest ordered by it.
5. **Greedy, checked for real** (:func:`greedy`): units are added in that order. Each step's
   real model is measured (agreement with the float32 model on the judging images) and timed
   against the all-int8 model (:func:`litequant.core.timing.paired_ratio`, 1 thread, the two
   invoked in turn); a unit that would take the model over ``max_latency_vs_int8`` or over
   ``max_layers`` weight ops kept float, or whose paired per-image KL decrease over the model so
   far is not beyond noise (:func:`significant_gain`), is skipped. It stops at the first model
   that loses at most ``budget_points`` of agreement (budget met): neither the flips seen on the
   judging images nor those expected from their logit margins (:func:`expected_loss_points`,
   smooth where 100 images count in whole points) may exceed it. When none does, the closest
   model built (smallest loss, then lowest KL) is kept and the record says the budget was not
   met.

The judging images are the real calibration images (never the evaluation split). The model
returned is the chosen step's real model (the passes that follow, e.g. bias correction, then
apply to it); its float weight ops are checked against the denylist.

Latency is wall-clock: it is recorded in ``selection.json`` only; ``conversion.json`` holds the
choice and the agreement, which depend on timing only when the latency ceiling binds (a step
near the ceiling may be accepted in one run and skipped in another).

Imports numpy, ai-edge-litert and the project's LiteRT runner, metrics, timing and flatbuffer
helpers (TensorFlow only through :mod:`litequant.quantize.conversion`, when building).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from litequant.core.litert import LiteRTModel, dequantize, quantize
from litequant.core.metrics import class_probabilities, fidelity_metrics
from litequant.core.timing import paired_ratio
from litequant.quantize.flatbuffer import (
    FLOAT32,
    WEIGHT_OPS,
    op_name,
    read_model,
    tensor_name,
    weighted_ops,
)

if TYPE_CHECKING:
    from litequant.quantize.context import BaseResult, PassInputs

#: The file beside the model that holds the whole selection.
SELECTION_FILE = "selection.json"

#: Judging images the ranking runs every unit on (each unit: one quantization, about a
#: second, and a run over these); the shortlist, the steps and the budget use all of them.
RANKING_IMAGES = 16
#: Units measured alone on all the judging images after the ranking.
SHORTLIST = 10
#: Interpreter threads of the accuracy runs (integer kernels give the same bits at any count).
THREADS = 2
#: Threads of the latency check (the ceiling is relative to int8 at 1 thread).
LATENCY_THREADS = 1
#: A step is accepted when its paired per-image KL decrease is this many standard errors
#: above zero (about 97.5 % one-sided): gains a few images happen to show are not kept.
GAIN_STANDARD_ERRORS = 2.0
#: TensorFlow op names of convolutions and matrix products in fused TFLite tensor names.
_WEIGHT_OP_NAMES = ("convolution", "Conv2D", "depthwise", "MatMul")
_BATCH = 16


def label_of(name: str) -> str:
    """A short name for tables: the TensorFlow scope of the op in a fused tensor name
    (``model/block_1_expand_1/convolution`` -> ``block_1_expand_1``), preferring the part that
    names a convolution or matrix product, else the first part."""
    parts = [part.split("/") for part in name.split(";") if part]
    if not parts:
        return name
    chosen = next((p for p in parts if len(p) > 2 and p[-1].startswith(_WEIGHT_OP_NAMES)),
                  parts[0])
    return "/".join(chosen[1:-1]) if len(chosen) > 2 else "/".join(chosen)


# --- the graph of the calibrated model ---------------------------------------------------------
@dataclass(frozen=True)
class Op:
    """One op of the calibrated (float) model.

    Attributes:
        index: its position among subgraph 0's operators (execution order).
        kind: the builtin name (``CONV_2D``, ``ADD``, ...).
        name: its first output tensor's name: what the quantizer's denylist takes.
        inputs: tensor indices it reads (activations and constants).
        outputs: tensor indices it writes.
    """

    index: int
    kind: str
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    @property
    def weighted(self) -> bool:
        return self.kind in WEIGHT_OPS


@dataclass(frozen=True)
class Unit:
    """A candidate: activation tensor ``tensor`` kept float, by keeping float the op that
    produces it and every op that reads it (``ops``, op indices in execution order)."""

    tensor: int
    name: str
    ops: tuple[int, ...]

    @property
    def label(self) -> str:
        return label_of(self.name)


@dataclass(frozen=True)
class Graph:
    """The ops and activation tensors of a calibrated model (:func:`graph_of`)."""

    ops: tuple[Op, ...]
    #: indices of the float activation tensors (not constants, not the model input)
    activations: frozenset[int]
    tensor_names: tuple[str, ...]

    def producer(self, tensor: int) -> Op | None:
        return next((op for op in self.ops if tensor in op.outputs), None)

    def consumers(self, tensor: int) -> list[Op]:
        return [op for op in self.ops if tensor in op.inputs]

    def denylist(self, ops: set[int] | tuple[int, ...]) -> list[str]:
        """The denylist (output tensor names) of a set of op indices, in execution order."""
        return [self.ops[index].name for index in sorted(ops)]

    def weight_ops(self, ops: set[int] | tuple[int, ...]) -> int:
        """How many of ``ops`` are weight ops."""
        return sum(self.ops[index].weighted for index in ops)


def graph_of(calibrated: bytes) -> Graph:
    """The op graph of subgraph 0 of a float ``.tflite`` (the calibrated model)."""
    model = read_model(calibrated)
    graph = model.subgraphs[0]
    tensors = graph.tensors
    ops = tuple(Op(index, op_name(model, op), tensor_name(tensors[op.outputs[0]]),
                   tuple(int(i) for i in op.inputs if i >= 0), tuple(int(i) for i in op.outputs))
                for index, op in enumerate(graph.operators))
    inputs = {int(i) for i in graph.inputs}
    activations = frozenset(
        index for index, tensor in enumerate(tensors)
        if tensor.type == FLOAT32 and index not in inputs
        and (model.buffers[tensor.buffer].data is None
             or len(model.buffers[tensor.buffer].data) == 0)
        and any(index in op.outputs for op in ops))
    return Graph(ops, activations, tuple(tensor_name(t) for t in tensors))


def candidate_units(graph: Graph) -> list[Unit]:
    """One :class:`Unit` per float activation tensor that an op produces and another reads:
    the producer and the readers that write float activations themselves (a reader of its
    shape only, writing integers, needs no float input); the model's output and tensors read by
    nothing are not candidates. Units with the same ops are listed once."""
    units, seen = [], set()
    for tensor in sorted(graph.activations):
        producer = graph.producer(tensor)
        readers = [op.index for op in graph.consumers(tensor)
                   if set(op.outputs) & graph.activations]
        if producer is None or not readers:
            continue
        key = tuple(sorted({producer.index, *readers}))
        if key in seen:
            continue
        seen.add(key)
        units.append(Unit(tensor, graph.tensor_names[tensor], key))
    return units


# --- running models ----------------------------------------------------------------------------
def logits_model(model_bytes: bytes) -> tuple[bytes, bool]:
    """``(model, True)``: the model with its final ``SOFTMAX``'s input as its output (the
    logits), when its only output is a softmax's; else ``(model_bytes, False)``. An int8
    softmax output rounds every small probability to 0 or 1/256, which would dominate any
    smooth comparison; its int8 logits have a fine step."""
    from litequant.quantize.flatbuffer import model_bytes as serialise

    model = read_model(model_bytes)
    graph = model.subgraphs[0]
    last = graph.operators[-1] if len(graph.operators) else None
    if (last is None or len(graph.outputs) != 1 or op_name(model, last) != "SOFTMAX"
            or int(last.outputs[0]) != int(graph.outputs[0])):
        return model_bytes, False
    graph.outputs = [int(last.inputs[0])]
    graph.operators = graph.operators[:-1]
    model.signatureDefs = []
    return serialise(model), True


def judge(model_bytes: bytes, inputs: np.ndarray, output_kind: str) -> np.ndarray:
    """Class probabilities ``float32`` ``(N, C)`` the selection compares: the softmax of the
    model's logits when it ends with a softmax (:func:`logits_model`), else its output
    (:func:`run_model`)."""
    logits, found = logits_model(model_bytes)
    return run_model(logits, inputs, "logits" if found else output_kind)


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


def expected_loss_points(reference: np.ndarray, probabilities: np.ndarray) -> float:
    """Agreement points a model is expected to lose on images like these: a smooth estimate
    that one image (a whole point on 100) does not make jump.

    Per image, the float model's margin ``m`` between its top class ``a`` and runner-up ``b``
    (log-probabilities, i.e. logits) and the error ``d`` the model makes on that margin
    (``(log p_a - log p_b) - m``). With ``s`` the root-mean-square of ``d`` over the images,
    an image flips when its margin error exceeds its margin: ``100 * mean(Phi(-m / s))``
    (``Phi`` the standard normal CDF). ``0.0`` for identical outputs.

    Args:
        reference, probabilities: ``float`` ``(N, C)`` class probabilities, ``C >= 2``.
    """
    from math import erf, sqrt

    tiny = np.finfo(np.float32).tiny
    exact = np.log(np.maximum(np.asarray(reference, np.float64), tiny))
    approximate = np.log(np.maximum(np.asarray(probabilities, np.float64), tiny))
    order = np.argsort(-exact, axis=1)[:, :2]
    rows = np.arange(len(exact))
    margin = exact[rows, order[:, 0]] - exact[rows, order[:, 1]]
    error = (approximate[rows, order[:, 0]] - approximate[rows, order[:, 1]]) - margin
    spread = float(np.sqrt(np.mean(error ** 2)))
    if spread == 0.0:
        return 0.0
    flips = [0.5 * (1.0 + erf(-m / spread / sqrt(2.0))) for m in margin]
    return 100.0 * float(np.mean(flips))


def output_effect(reference: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """``agreement`` (%), ``kl_divergence`` (mean, nats), ``sqnr_db`` (``None``: identical),
    ``observed_loss_points`` (``100 - agreement``), ``expected_loss_points``
    (:func:`expected_loss_points`) and ``loss_points``, the larger of the two (what the budget
    reads: neither the flips seen nor those expected may exceed it), of ``probabilities``
    against ``reference``."""
    metrics = fidelity_metrics(reference, probabilities)
    observed = 100.0 - metrics["agreement"]
    expected = expected_loss_points(reference, probabilities)
    return {"agreement": metrics["agreement"], "observed_loss_points": observed,
            "expected_loss_points": expected, "loss_points": max(observed, expected),
            "kl_divergence": metrics["kl_divergence"], "sqnr_db": metrics["sqnr_db"]}


def per_image_kl(reference: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """``float64`` ``(N,)``: KL divergence (nats) of ``probabilities`` from ``reference`` per
    image (both ``(N, C)`` class probabilities; zeros floored at float32's smallest normal)."""
    tiny = np.finfo(np.float32).tiny
    p = np.maximum(np.asarray(reference, np.float64), tiny)
    q = np.maximum(np.asarray(probabilities, np.float64), tiny)
    return np.sum(p * (np.log(p) - np.log(q)), axis=1)


def significant_gain(before: np.ndarray, after: np.ndarray) -> bool:
    """Whether per-image KL ``after`` is lower than ``before`` beyond noise: the mean paired
    decrease exceeds :data:`GAIN_STANDARD_ERRORS` times its standard error."""
    gain = np.asarray(before, np.float64) - np.asarray(after, np.float64)
    if len(gain) < 2:
        return bool(gain.sum() > 0)
    error = gain.std(ddof=1) / np.sqrt(len(gain))
    return bool(gain.mean() > GAIN_STANDARD_ERRORS * error and gain.mean() > 0)


def meets(loss_points: float, budget_points: float) -> bool:
    """Whether an agreement loss (points) is within the budget (float rounding forgiven)."""
    return loss_points <= budget_points + 1e-9


# --- the selection -----------------------------------------------------------------------------
Quantizer = Callable[[list[str]], bytes]


def measure_alone(units: list[Unit], graph: Graph, quantizer: Quantizer, inputs: np.ndarray,
                  reference: np.ndarray, output_kind: str) -> list[dict[str, Any]]:
    """Each unit denylisted alone: the real model's :func:`output_effect` against
    ``reference`` (the float32 model's probabilities on ``inputs``), with ``tensor``,
    ``label``, ``ops`` (labels) and ``weight_ops`` of the unit."""
    rows = []
    for unit in units:
        model = quantizer(graph.denylist(unit.ops))
        rows.append({"tensor": unit.name, "label": unit.label,
                     "ops": [f"{graph.ops[i].kind} {label_of(graph.ops[i].name)}"
                             for i in unit.ops],
                     "float_ops": len(unit.ops), "weight_ops": graph.weight_ops(unit.ops),
                     **output_effect(reference, judge(model, inputs, output_kind))})
    return rows


def greedy(order: list[Unit], graph: Graph, quantizer: Quantizer, inputs: np.ndarray,
           reference: np.ndarray, output_kind: str, int8: bytes, start: dict[str, Any],
           budget_points: float, max_latency_vs_int8: float, max_layers: int,
           timer: Callable[[bytes, bytes], float] | None = None
           ) -> tuple[list[dict[str, Any]], dict[str, Any], set[int], bytes]:
    """Add ``order``'s units one by one while the budget is not met (module docstring, step 5).

    Args:
        start: the all-int8 model's :func:`output_effect` (the curve's first point).
        timer: ``(candidate, int8) -> p50 ratio``; default :func:`latency_ratio`.

    Returns:
        ``(curve, chosen, ops kept float, model)``: one curve point per step tried (``step``,
        ``added`` (label), ``float_ops``, ``layers_kept`` (weight ops), ``accepted``,
        ``skipped`` (why, or ``None``), ``latency_vs_int8``, and the :func:`output_effect` of
        the model built, absent when a unit was skipped before building); the chosen point
        (the first that meets the budget, else the best), its ops kept float and its model.
    """
    timer = latency_ratio if timer is None else timer
    curve = [{"step": 0, "added": None, "float_ops": 0, "layers_kept": 0, "accepted": True,
              "skipped": None, "latency_vs_int8": 1.0, **start}]
    kept: set[int] = set()
    best: tuple[dict[str, Any], set[int], bytes] = (curve[0], kept, int8)
    current = per_image_kl(reference, judge(int8, inputs, output_kind))
    if meets(start["loss_points"], budget_points):
        return curve, curve[0], kept, int8
    for step, unit in enumerate(order, start=1):
        trial = kept | set(unit.ops)
        point: dict[str, Any] = {"step": step, "added": unit.label, "float_ops": len(trial),
                                 "layers_kept": graph.weight_ops(trial), "accepted": False,
                                 "skipped": None, "latency_vs_int8": None}
        curve.append(point)
        if trial == kept:
            point["skipped"] = "no new op"
            continue
        if point["layers_kept"] > max_layers:
            point["skipped"] = "max_layers"
            continue
        model = quantizer(graph.denylist(trial))
        probabilities = judge(model, inputs, output_kind)
        point.update(output_effect(reference, probabilities))
        divergence = per_image_kl(reference, probabilities)
        if not significant_gain(current, divergence):
            point["skipped"] = "no significant gain"
            continue
        point["latency_vs_int8"] = round(timer(model, int8), 3)
        if point["latency_vs_int8"] > max_latency_vs_int8:
            point["skipped"] = "max_latency_vs_int8"
            continue
        point["accepted"] = True
        kept, current = trial, divergence
        if (point["loss_points"], point["kl_divergence"]) < (best[0]["loss_points"],
                                                            best[0]["kl_divergence"]):
            best = (point, kept, model)
        if meets(point["loss_points"], budget_points):
            return curve, point, kept, model
    return curve, *best


def latency_ratio(candidate: bytes, int8: bytes, sample: np.ndarray | None = None) -> float:
    """``candidate``'s latency over ``int8``'s at :data:`LATENCY_THREADS`, the two invoked in
    turn: the median of the paired ratios (:func:`litequant.core.timing.paired_ratio`, robust
    to a loaded machine), on ``sample`` (default: zeros)."""
    shape = LiteRTModel("<in memory>", model_content=int8).input.shape[1:]
    sample = np.zeros(shape, np.float32) if sample is None else sample
    return paired_ratio((candidate, int8), sample, threads=LATENCY_THREADS)


def select_float_ops(calibrated: bytes, quantizer: Quantizer, float_model: bytes,
                     inputs: np.ndarray, output_kind: str, budget_points: float,
                     max_latency_vs_int8: float, max_layers: int,
                     timer: Callable[[bytes, bytes], float] | None = None
                     ) -> tuple[dict[str, Any], bytes]:
    """Choose the ops kept float on the real int8 model (module docstring) and build it.

    Args:
        calibrated: :func:`litequant.quantize.conversion.calibrate_int8`'s model.
        quantizer: denylist -> int8 model
            (:func:`litequant.quantize.conversion.quantize_calibrated` of ``calibrated``).
        float_model: the float32 variant's ``.tflite`` (the reference).
        inputs: ``float32`` ``(N, h, w, 3)`` real calibration images, preprocessed: the
            judging images (the first :data:`RANKING_IMAGES` rank, all measure).
        output_kind: ``probabilities`` or ``logits`` (``model.json``'s ``output``).
        budget_points: the most top-1 agreement (points) with the float32 model the real model
            may lose on ``inputs``.
        max_latency_vs_int8: the most p50 (1 thread) relative to the all-int8 model.
        max_layers: the most weight ops kept float.
        timer: ``(candidate, int8) -> p50 ratio`` (default :func:`latency_ratio`).

    Returns:
        ``(selection, model)``: the selection (``selection.json``: ``images``, the params,
        ``int8`` (the all-int8 model's effect), ``candidates`` (every unit ranked alone on
        the first :data:`RANKING_IMAGES` images: ``rank``, ``tensor``, ``label``,
        ``float_ops``, ``weight_ops``, ``kl_divergence``, ``agreement``), ``alone``
        (:func:`measure_alone` of the shortlist on all images), ``curve`` (:func:`greedy`),
        and the choice:
        ``layers_kept``, ``float_layers`` (the denylist), ``float_ops``, ``agreement``,
        ``loss_points``, ``kl_divergence``, ``budget_met``, ``latency_vs_int8``) and the
        chosen real model.
    """
    inputs = np.asarray(inputs, dtype=np.float32)
    graph = graph_of(calibrated)
    int8 = quantizer([])
    reference = judge(float_model, inputs, output_kind)
    start = output_effect(reference, judge(int8, inputs, output_kind))
    units = candidate_units(graph)
    few = min(len(inputs), RANKING_IMAGES)
    ranking = measure_alone(units, graph, quantizer, inputs[:few], reference[:few],
                            output_kind)
    baseline = output_effect(reference[:few], judge(int8, inputs[:few], output_kind))
    order = sorted(range(len(units)), key=lambda i: (ranking[i]["kl_divergence"], i))
    candidates = [{"rank": rank, **{key: ranking[i][key] for key in (
        "tensor", "label", "float_ops", "weight_ops", "kl_divergence", "agreement")}}
        for rank, i in enumerate(order, start=1)]
    shortlist = [units[i] for i in order[:SHORTLIST]
                 if ranking[i]["kl_divergence"] < baseline["kl_divergence"]]
    alone = measure_alone(shortlist, graph, quantizer, inputs, reference, output_kind)
    helpful = sorted((pair for pair in zip(shortlist, alone, strict=True)
                      if pair[1]["kl_divergence"] < start["kl_divergence"]),
                     key=lambda pair: (pair[1]["kl_divergence"], pair[0].tensor))
    curve, chosen, kept, model = greedy([unit for unit, _ in helpful], graph, quantizer,
                                        inputs, reference, output_kind, int8, start,
                                        budget_points, max_latency_vs_int8, max_layers, timer)
    selection = {
        "images": {"ranking": min(len(inputs), RANKING_IMAGES), "budget": len(inputs)},
        "budget_points": budget_points, "max_latency_vs_int8": max_latency_vs_int8,
        "max_layers": max_layers, "ops": len(graph.ops), "int8": start,
        "layers_kept": graph.weight_ops(kept), "float_layers": graph.denylist(kept),
        "float_ops": [{"index": i, "op": graph.ops[i].kind, "label": label_of(graph.ops[i].name)}
                      for i in sorted(kept)],
        **{key: chosen[key] for key in ("agreement", "observed_loss_points",
                                        "expected_loss_points", "loss_points", "kl_divergence",
                                        "sqnr_db")},
        "budget_met": meets(chosen["loss_points"], budget_points),
        "latency_vs_int8": chosen["latency_vs_int8"],
        "candidates": candidates, "alone": alone, "curve": curve}
    return selection, model


def float_weight_positions(model_bytes: bytes) -> list[int]:
    """Positions (among weight ops, execution order) of the ops of a converted model whose
    weights are constant ``float32`` tensors: the ops a full-integer conversion kept float."""
    model = read_model(model_bytes)
    tensors = model.subgraphs[0].tensors
    return [position for position, (_, op) in enumerate(weighted_ops(model))
            if tensors[op.inputs[1]].type == FLOAT32
            and model.buffers[tensors[op.inputs[1]].buffer].data is not None]


def check_float_ops(selection: dict[str, Any], model_bytes: bytes) -> None:
    """Raise ``RuntimeError`` when the model does not keep float exactly as many weight ops as
    the selection chose (the denylist names did not match the quantizer's)."""
    kept = float_weight_positions(model_bytes)
    if len(kept) != selection["layers_kept"]:
        raise RuntimeError(f"the quantizer kept {len(kept)} weight op(s) float, not the chosen "
                           f"{selection['layers_kept']}: the denylist names do not match")


def record_fields(selection: dict[str, Any]) -> dict[str, Any]:
    """The ``conversion.json`` fields of a selection (no wall-clock value): ``float_layers``
    (the denylist), ``float_ops`` (labels), ``layers_kept`` (weight ops), ``budget_points``,
    ``max_latency_vs_int8``, ``max_layers``, ``budget_met``, ``calibration_agreement`` and
    ``expected_loss_points`` (the chosen real model's, and the all-int8 model's) and
    ``budget_images``."""
    return {"float_layers": list(selection["float_layers"]),
            "float_ops": [f"{op['op']} {op['label']}" for op in selection["float_ops"]],
            "layers_kept": selection["layers_kept"],
            "budget_points": selection["budget_points"],
            "max_latency_vs_int8": selection["max_latency_vs_int8"],
            "max_layers": selection["max_layers"], "budget_met": selection["budget_met"],
            "calibration_agreement": {"selected": selection["agreement"],
                                      "int8": selection["int8"]["agreement"]},
            "expected_loss_points": {
                "selected": round(selection["expected_loss_points"], 3),
                "int8": round(selection["int8"]["expected_loss_points"], 3)},
            "budget_images": selection["images"]["budget"]}


def build_base(base: Any, inputs: PassInputs) -> BaseResult:
    """The :class:`~litequant.quantize.registry.KeptFloat` base: take ``base.calibrated_by``'s
    calibration (the ``int8`` settings on the calibration inputs), choose the ops
    kept float on the real int8 model (judged on the real calibration images, within
    ``inputs.settings``, the ``convert.selection`` budget), return the chosen real model.

    Returns the model, the selection's ``conversion.json`` fields (:func:`record_fields`) and
    ``selection.json``. Raises ``RuntimeError`` when the model does not keep the chosen ops
    float.
    """
    from litequant.quantize.build import variant_model
    from litequant.quantize.conversion import quantize_calibrated

    calibrated = variant_model(base.calibrated_by, calibrated=True)
    settings = inputs.settings
    selection, model = select_float_ops(
        calibrated, lambda denylist: quantize_calibrated(calibrated, denylist),
        inputs.float32_model(), inputs.real_calibration, inputs.output_kind,
        settings.budget_points, settings.max_latency_vs_int8, settings.max_layers)
    check_float_ops(selection, model)
    return model, record_fields(selection), {SELECTION_FILE: selection}
