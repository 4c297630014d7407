"""Mixed precision for ``int8_selective``, chosen on the real int8 model: which ops stay float.

Every choice is measured on the model the converter really builds, int8 activations included
(on float-trained models the error is mostly in the activations, which a simulation of weight
rounding cannot see):

1. **Calibrate once** (:func:`litequant.quantize.conversion.calibrate_int8`: the ``int8``
   settings and representative inputs of ``int8_plain``); every candidate model below is then
   :func:`~litequant.quantize.conversion.quantize_calibrated` with a denylist, about a second.
2. **Candidates** (:func:`candidate_units`). An op kept float alone still hands its output to
   the next int8 op through a quantize op with the same calibrated range: it removes its weight
   rounding, never the quantization of its output activation. Only two adjacent float ops pass
   a float tensor. So a candidate is an *activation tensor kept float*: the op producing it and
   every op reading it (one "unit"), which also removes the producer's weight rounding.
3. **Cheap ranking** (:func:`local_errors`): the calibrated float model and the all-int8 model
   run side by side on the first :data:`RANKING_IMAGES` judging images, every inner tensor
   read. A tensor's error is its mean per-channel noise-to-signal ratio (squared difference
   over the float channel's variance, constant channels left out, so a few wide channels that
   set a coarse per-tensor step cannot hide the small informative ones they destroy); its
   *local* error is that minus the largest error among its producer's inputs (what the tensor
   adds itself, not what it inherits; 0 after an op that only rearranges values). The
   :data:`SHORTLIST` highest are kept.
4. **Real effect alone** (:func:`measure_alone`): each shortlisted unit denylisted alone, the
   real model's mean KL divergence from the float32 model on all the judging images (smooth, so
   it orders units even when few top-1 classes flip). Units that do not lower int8's KL are
   dropped; the rest are ordered by it.
5. **Greedy, checked for real** (:func:`greedy`): units are added in that order. Each step's
   real model is measured (agreement with the float32 model on the judging images) and timed
   against the all-int8 model (:func:`litequant.core.timing.paired_ratio`, 1 thread, the two
   invoked in turn); a unit that would take the model over ``max_latency_vs_int8`` or over
   ``max_layers`` weight ops kept float, or that does not lower the KL divergence of the model
   so far, is skipped. It stops at the first model that loses at most ``budget_points`` of
   agreement (budget met): neither the flips seen on the judging images nor those expected
   from their logit margins (:func:`expected_loss_points`, smooth where 100 images count in
   whole points) may exceed it. When none does, the closest model built (smallest loss, then
   lowest KL) is kept and the record says the budget was not met.

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

from litequant.core.litert import LiteRTModel, dequantize, intermediate_tensors, quantize
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

#: Judging images the cheap ranking reads (every inner tensor of two models, one image at a
#: time); the real effects and the budget use all of them.
RANKING_IMAGES = 16
#: Units measured alone on the real model after the cheap ranking (each: one quantization and
#: one run over the judging images, about a second or two).
SHORTLIST = 12
#: Interpreter threads of the accuracy runs (integer kernels give the same bits at any count).
THREADS = 2
#: Threads of the latency check (the ceiling is relative to int8 at 1 thread).
LATENCY_THREADS = 1
#: Channels whose float variance is below this fraction of the tensor's largest are constant
#: (left out of the noise-to-signal ratio).
CONSTANT_CHANNEL = 1e-6
#: Ops that only rearrange their input's values (their output adds no error of its own; its
#: channels are not the input's, so its error is not compared with the input's).
RESHAPING = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE"})
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


def meets(loss_points: float, budget_points: float) -> bool:
    """Whether an agreement loss (points) is within the budget (float rounding forgiven)."""
    return loss_points <= budget_points + 1e-9


# --- cheap ranking -----------------------------------------------------------------------------
def noise_to_signal(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean per-channel noise-to-signal ratio of ``(float, quantized)`` values of one tensor
    over several inputs: per channel (last axis), the mean squared difference over the float
    values' variance, averaged over the channels that are not constant
    (variance above :data:`CONSTANT_CHANNEL` times the largest). ``0.0`` when all are."""
    channels = pairs[0][0].shape[-1] if pairs[0][0].ndim else 1
    count, total, squares, noise = 0, np.zeros(channels), np.zeros(channels), np.zeros(channels)
    for exact, approximate in pairs:
        f = np.asarray(exact, np.float64).reshape(-1, channels)
        q = np.asarray(approximate, np.float64).reshape(-1, channels)
        count += len(f)
        total += f.sum(0)
        squares += (f * f).sum(0)
        noise += ((q - f) ** 2).sum(0)
    variance = np.maximum(squares / count - (total / count) ** 2, 0.0)
    live = variance > CONSTANT_CHANNEL * variance.max() if variance.max() > 0 else None
    if live is None or not live.any():
        return 0.0
    return float(np.mean(noise[live] / count / variance[live]))


def local_errors(graph: Graph, calibrated: bytes, int8: bytes, inputs: np.ndarray
                 ) -> dict[int, dict[str, float]]:
    """Per float activation tensor found in both models: ``error`` (its noise-to-signal ratio
    in the int8 model against the calibrated float model, :func:`noise_to_signal`) and
    ``local`` (``error`` minus the largest error among its producer's activation inputs, at
    least 0), measured on ``inputs`` (``float32`` ``(n, h, w, 3)``), keyed by tensor index of
    the calibrated model."""
    int8_names = {tensor_name(t): index
                  for index, t in enumerate(read_model(int8).subgraphs[0].tensors)}
    shared = [t for t in sorted(graph.activations) if graph.tensor_names[t] in int8_names]
    pairs: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {t: [] for t in shared}
    exact = intermediate_tensors(calibrated, inputs, shared)
    approximate = intermediate_tensors(int8, inputs,
                                       [int8_names[graph.tensor_names[t]] for t in shared])
    for f_values, q_values in zip(exact, approximate, strict=True):
        for tensor, f, q in zip(shared, f_values, q_values, strict=True):
            pairs[tensor].append((f, q))
    errors = {t: noise_to_signal(pairs[t]) for t in shared}
    result = {}
    for tensor, error in errors.items():
        producer = graph.producer(tensor)
        if producer is not None and producer.kind in RESHAPING:
            inherited = error  # the same values, rearranged: nothing added
        else:
            inherited = max((errors.get(i, 0.0) for i in producer.inputs
                             if i in graph.activations), default=0.0) if producer else 0.0
        result[tensor] = {"error": error, "local": max(error - inherited, 0.0)}
    return result


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
                     "weight_ops": graph.weight_ops(unit.ops),
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
    current = curve[0]
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
        point.update(output_effect(reference, judge(model, inputs, output_kind)))
        if point["kl_divergence"] >= current["kl_divergence"]:
            point["skipped"] = "no gain"
            continue
        point["latency_vs_int8"] = round(timer(model, int8), 3)
        if point["latency_vs_int8"] > max_latency_vs_int8:
            point["skipped"] = "max_latency_vs_int8"
            continue
        point["accepted"] = True
        kept, current = trial, point
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
        ``int8`` (the all-int8 model's effect), ``candidates`` (every unit's cheap ranking:
        ``rank``, ``tensor``, ``label``, ``error``, ``local``, ``float_ops``), ``alone``
        (:func:`measure_alone` of the shortlist), ``curve`` (:func:`greedy`), and the choice:
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
    errors = local_errors(graph, calibrated, int8, inputs[:RANKING_IMAGES])
    ranked = sorted((u for u in units if u.tensor in errors),
                    key=lambda u: (-errors[u.tensor]["local"], u.tensor))
    candidates = [{"rank": rank, "tensor": u.name, "label": u.label,
                   "error": errors[u.tensor]["error"], "local": errors[u.tensor]["local"],
                   "float_ops": len(u.ops)} for rank, u in enumerate(ranked, start=1)]
    shortlist = ranked[:SHORTLIST]
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
    """The :class:`~litequant.quantize.registry.KeptFloat` base: calibrate once, choose the ops
    kept float on the real int8 model (judged on the real calibration images, within
    ``inputs.settings``, the ``convert.selection`` budget), return the chosen real model.

    Returns the model, the selection's ``conversion.json`` fields (:func:`record_fields`) and
    ``selection.json``. Raises ``RuntimeError`` when the model does not keep the chosen ops
    float.
    """
    from litequant.quantize.conversion import calibrate_int8, quantize_calibrated

    calibrated = calibrate_int8(inputs.saved_model, inputs.calibration)
    settings = inputs.settings
    selection, model = select_float_ops(
        calibrated, lambda denylist: quantize_calibrated(calibrated, denylist),
        inputs.float32_model(), inputs.real_calibration, inputs.output_kind,
        settings.budget_points, settings.max_latency_vs_int8, settings.max_layers)
    check_float_ops(selection, model)
    return model, record_fields(selection), {SELECTION_FILE: selection}
