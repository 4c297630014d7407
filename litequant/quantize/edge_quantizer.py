"""LiteRT variants built by Google's ``ai-edge-quantizer`` from a float ``.tflite``.

Imports numpy, ``ai_edge_quantizer``, ``ai_edge_litert``, the standard library and
:mod:`litequant.core.quiet` only (never TensorFlow, never ``stages``), so a convert stage
built on it starts fast and works on any float ``.tflite`` (the pipeline's ``float32``
variant). The registry's :class:`~litequant.quantize.registry.EdgeQuantizer` bases name the
recipes of :data:`EDGE_QUANTIZER_VARIANTS` (``tests/test_edge_quantizer.py`` checks both agree).

Variants (:data:`EDGE_QUANTIZER_VARIANTS`):

``weight_only_int8``
    int8 per-channel symmetric weights on every op the library supports, stored with an
    explicit ``DEQUANTIZE`` op; compute, input and output stay float32. LiteRT/XNNPACK folds the
    dequantized weights at load time, so it runs at float32 speed with ~1/4 of the size. Weight
    tensors of fewer than :data:`MIN_WEIGHT_ELEMENTS` elements stay float32, as TensorFlow's
    dynamic-range quantization keeps them: in an image classifier these are the stem
    convolution and the first blocks' small kernels, a few KB in all, whose rounding error
    every later layer carries (quantizing them cost 4.0-4.7 dB of output SQNR against
    ``dynamic`` on MobileNetV2 and EfficientNet-Lite1, see ``docs/results.md``); ai-edge-
    quantizer's own ``dynamic_legacy_wi8_afp32`` recipe uses the same threshold. The registry's
    ``weight_only_int8`` variant then puts the int8 weights on the
    :mod:`~litequant.quantize.passes.weight_grid` scales.
``weight_only_int4``
    like ``weight_only_int8`` but int4 (per-channel) weights where the library allows int4
    weight-only (``CONV_2D``, ``FULLY_CONNECTED``, ``BATCH_MATMUL``, ``EMBEDDING_LOOKUP``); the
    other weighted ops (``DEPTHWISE_CONV_2D``: no int4 in 0.10's policy) get int8 instead of
    staying float32.
``dynamic_int4``
    dynamic-range: int4 per-channel weights (``CONV_2D``, ``FULLY_CONNECTED``,
    ``EMBEDDING_LOOKUP``; int8 for the other weighted ops), float activations quantized on the
    fly by LiteRT's hybrid kernels, no ``DEQUANTIZE`` op; float32 input and output.
``static_int8_<algorithm>``
    full integer: int8 per-channel weights, int8 per-tensor asymmetric activations calibrated on
    real inputs, **int8 input and output** (the library quantizes the model's I/O; read the
    scale/zero point from the model). ``<algorithm>`` chooses how the *weight* ranges of the
    weighted ops are set: ``minmax`` (the library's ``min_max_uniform_quantize``), ``mse``
    (closed-form MSE-optimal clipping, conv/depthwise/fully-connected), ``octav`` (iterative
    optimal clipping, OCTAV) or ``gptq`` (Hessian-based rounding, ``FULLY_CONNECTED`` only in
    0.10). In all four the *activation* ranges come from min/max calibration; every other op
    (``ADD``, ``MEAN``, ``SOFTMAX``, ``RESHAPE`` ...) is min/max int8 too, so no float islands.

Calibration ranges (``ranges`` of :func:`quantize`): ai-edge-quantizer's ``Quantizer.calibrate``
merges the per-sample min/max of each tensor with a *moving average* (factor 0.95), so with one
image per sample the ranges are dominated by the last ~20 images and clip the others. That loses
20+ points of agreement on MobileNet v1 0.5 (see ``notes/issue15.md``). The default,
``"global"``, calibrates each image separately through the same public API and keeps the
overall min and max of every tensor (what the TF converter's calibrator does);
``"moving_average"`` is the library's own behaviour.

Recipes are plain JSON lists (:func:`build_recipe`), the library's own format: a list of
``{"regex", "operation", "algorithm_key", "op_config"}`` entries where a later matching entry
wins; ``regex`` is searched (``re.search``) in an op's output tensor name.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from ai_edge_quantizer import quantizer as aeq_quantizer
from ai_edge_quantizer.utils import qsv_utils, validation_utils

from litequant.core.quiet import native_stderr_silenced

if TYPE_CHECKING:
    from litequant.quantize.context import BaseResult, PassInputs

#: ``ai_edge_quantizer`` algorithm keys (``AlgorithmName`` values) of the static-int8 candidates.
STATIC_INT8_ALGORITHMS: dict[str, str] = {
    "minmax": "min_max_uniform_quantize",
    "mse": "MSE",
    "octav": "OCTAV",
    "gptq": "GPTQ",
}

#: The weighted ops whose weight ranges each algorithm sets in the static-int8 recipes (every
#: other op keeps min/max). ai-edge-quantizer 0.10 registers MSE for conv/depthwise/FC (+ ops an
#: image classifier lacks), OCTAV for every op (weights only; activations fall back to min/max)
#: and GPTQ for FULLY_CONNECTED only. EMBEDDING_LOOKUP is left out: an op-specific static entry
#: for it is rejected when the recipe is loaded ("Unsupported op for INTEGER: EMBEDDING_LOOKUP").
_ALGORITHM_OPS: dict[str, tuple[str, ...]] = {
    "minmax": (),
    "mse": ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"),
    "octav": ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"),
    "gptq": ("FULLY_CONNECTED",),
}

#: Ops with int4 weight-only / dynamic support in ai-edge-quantizer 0.10's default policy.
_INT4_WEIGHT_ONLY_OPS = ("CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "EMBEDDING_LOOKUP")
_INT4_DYNAMIC_OPS = ("CONV_2D", "FULLY_CONNECTED", "EMBEDDING_LOOKUP")

_MIN_MAX = "min_max_uniform_quantize"

#: ``weight_only_int8`` leaves weight tensors with fewer elements float32: the threshold of
#: TensorFlow's dynamic-range quantization (``min_elements_for_weights``, 1024), so both
#: quantize the same tensors. ``quantize(..., min_weight_elements=0)`` quantizes every one.
MIN_WEIGHT_ELEMENTS = 1024
_NO_QUANTIZE = "no_quantize"


@dataclass(frozen=True)
class EdgeVariant:
    """One ai-edge-quantizer variant.

    ``needs_calibration``: :func:`quantize` needs ``calibration_inputs``; ``description``: one
    line for reports; ``io_dtype``: numpy dtype name of the quantized model's input and output.
    """

    needs_calibration: bool
    description: str
    io_dtype: str


EDGE_QUANTIZER_VARIANTS: dict[str, EdgeVariant] = {
    "weight_only_int8": EdgeVariant(
        False, "int8 weights + explicit DEQUANTIZE, float compute (float32 speed)", "float32"),
    "weight_only_int4": EdgeVariant(
        False, "int4 weights (int8 where int4 is unsupported, e.g. depthwise) + DEQUANTIZE, "
               "float compute", "float32"),
    "dynamic_int4": EdgeVariant(
        False, "dynamic range: int4 weights (int8 where unsupported), activations quantized "
               "on the fly", "float32"),
    **{f"static_int8_{name}": EdgeVariant(
        True, f"full int8 (weights+activations, int8 I/O), {name} weight ranges, min/max "
              "activation calibration", "int8")
       for name in STATIC_INT8_ALGORITHMS},
}

#: The static-int8 algorithm the pipeline ships as its ``static_int8`` stage. Chosen by the
#: measurement in ``benchmarks/edge_quantizer_study.py`` (see ``notes/issue15.md``): best
#: agreement with float at int8 speed on both MobileNets.
DEFAULT_STATIC_INT8 = "static_int8_minmax"


def _weight_config(num_bits: int) -> dict[str, Any]:
    return {"num_bits": num_bits, "symmetric": True, "granularity": "CHANNELWISE", "dtype": "INT"}


def _entry(operation: str, algorithm_key: str, op_config: dict[str, Any] | None,
           regex: str = ".*") -> dict[str, Any]:
    entry: dict[str, Any] = {"regex": regex, "operation": operation, "algorithm_key": algorithm_key}
    if op_config is not None:
        entry["op_config"] = op_config
    return entry


def _weight_only(num_bits: int, min_weight_elements: int = 0) -> dict[str, Any]:
    return {"weight_tensor_config": _weight_config(num_bits), "compute_precision": "FLOAT",
            "explicit_dequantize": True, "skip_checks": False,
            "min_weight_elements": min_weight_elements}


def _dynamic(num_bits: int) -> dict[str, Any]:
    return {"weight_tensor_config": _weight_config(num_bits), "compute_precision": "INTEGER",
            "explicit_dequantize": False, "skip_checks": False, "min_weight_elements": 0}


def _static_int8() -> dict[str, Any]:
    return {"activation_tensor_config": {"num_bits": 8, "symmetric": False,
                                         "granularity": "TENSORWISE", "dtype": "INT"},
            "weight_tensor_config": _weight_config(8), "compute_precision": "INTEGER",
            "explicit_dequantize": False, "skip_checks": False, "min_weight_elements": 0}


def build_recipe(variant: str, exclude: Sequence[str] = (),
                 min_weight_elements: int = MIN_WEIGHT_ELEMENTS) -> list[dict[str, Any]]:
    """The ai-edge-quantizer recipe (JSON-serialisable list of dicts) for ``variant``.

    Args:
        variant: a key of :data:`EDGE_QUANTIZER_VARIANTS`.
        exclude: regular expressions (``re.search`` on an op's output tensor name, e.g. a Keras
            layer name such as ``"block_16_project"``) of ops to keep float: each becomes a
            trailing ``no_quantize`` entry, which wins over the earlier ones.
        min_weight_elements: ``weight_only_int8`` keeps weight tensors with fewer elements
            float32 (``>= 0``; ``0`` quantizes every one); the other variants ignore it.

    Raises:
        ValueError: unknown variant, negative ``min_weight_elements``, or an ``exclude`` entry
            that is not a valid regex.
    """
    if variant not in EDGE_QUANTIZER_VARIANTS:
        raise ValueError(f"unknown ai-edge-quantizer variant {variant!r}; known: "
                         f"{', '.join(EDGE_QUANTIZER_VARIANTS)}")
    if min_weight_elements < 0:
        raise ValueError(f"min_weight_elements must be >= 0, got {min_weight_elements}")
    if variant == "weight_only_int8":
        recipe = [_entry("*", _MIN_MAX, _weight_only(8, min_weight_elements))]
    elif variant == "weight_only_int4":
        recipe = [_entry("*", _MIN_MAX, _weight_only(8)),
                  *(_entry(op, _MIN_MAX, _weight_only(4)) for op in _INT4_WEIGHT_ONLY_OPS)]
    elif variant == "dynamic_int4":
        recipe = [_entry("*", _MIN_MAX, _dynamic(8)),
                  *(_entry(op, _MIN_MAX, _dynamic(4)) for op in _INT4_DYNAMIC_OPS)]
    else:
        algorithm = variant.removeprefix("static_int8_")
        recipe = [_entry("*", _MIN_MAX, _static_int8()),
                  *(_entry(op, STATIC_INT8_ALGORITHMS[algorithm], _static_int8())
                    for op in _ALGORITHM_OPS[algorithm])]
    for pattern in exclude:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"exclude: {pattern!r} is not a regular expression: {error}") from None
        recipe.append(_entry("*", _NO_QUANTIZE, None, regex=pattern))
    return recipe


def _signature_input(float_tflite: bytes) -> tuple[str, str, tuple[int, ...]]:
    """``(signature key, input name, input shape signature)`` of a one-input model."""
    interpreter = Interpreter(model_content=float_tflite)
    signatures = interpreter.get_signature_list()
    if len(signatures) != 1:
        raise ValueError(f"the float model has {len(signatures)} signatures; expected exactly 1")
    key, spec = next(iter(signatures.items()))
    if len(spec["inputs"]) != 1:
        raise ValueError(f"signature {key!r} has inputs {spec['inputs']}; expected exactly 1")
    runner = interpreter.get_signature_runner(key)
    detail = next(iter(runner.get_input_details().values()))
    return key, spec["inputs"][0], tuple(int(d) for d in detail["shape_signature"])


def signature_dataset(float_tflite: bytes, inputs: np.ndarray
                      ) -> dict[str, list[dict[str, np.ndarray]]]:
    """ai-edge-quantizer's dataset format: ``{signature: [{input_name: (1, h, w, c)}, ...]}``.

    ``inputs``: ``float32`` ``(N, h, w, c)`` in the model's input range; one sample per image.
    """
    key, name, _ = _signature_input(float_tflite)
    batch = np.asarray(inputs, dtype=np.float32)
    return {key: [{name: batch[i:i + 1]} for i in range(len(batch))]}


#: How calibration merges the per-image ranges (see the module docstring).
CALIBRATION_RANGES = ("global", "moving_average")


def _merge_qsv(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Two calibration statistics of one tensor: overall min/max; a GPTQ Hessian is averaged
    (weighted by sample counts) by the library's own update function."""
    if not old:
        return dict(new)
    if not new:
        return old
    merged = (qsv_utils.gptq_and_moving_average_update(old, new) if "hessian" in new
              else dict(old))
    merged["min"] = np.minimum(old["min"], new["min"])
    merged["max"] = np.maximum(old["max"], new["max"])
    return merged


def calibrate(qt: aeq_quantizer.Quantizer, float_tflite: bytes, inputs: np.ndarray,
              ranges: str = "global", num_threads: int | None = None) -> dict[str, Any]:
    """Calibration statistics ``{tensor name: {"min", "max", ...}}`` for ``qt``'s recipe.

    ``inputs``: ``float32`` ``(N, h, w, c)`` in the model's input range. ``ranges``:
    ``"global"`` (overall min/max over all images) or ``"moving_average"`` (the library's own
    ``calibrate`` on all images at once).
    """
    if ranges not in CALIBRATION_RANGES:
        raise ValueError(f"ranges must be one of {CALIBRATION_RANGES}, not {ranges!r}")
    threads = num_threads or os.cpu_count() or 1
    dataset = signature_dataset(float_tflite, inputs)
    if ranges == "moving_average":
        return qt.calibrate(dataset, num_threads=threads)
    (key, samples), = dataset.items()
    merged: dict[str, Any] = {}
    for sample in samples:
        for name, qsv in qt.calibrate({key: [sample]}, num_threads=threads).items():
            merged[name] = _merge_qsv(merged.get(name, {}), qsv)
    return merged


def quantize(float_tflite: bytes, variant: str, calibration_inputs: np.ndarray | None,
             exclude: Sequence[str] = (), num_threads: int | None = None,
             ranges: str = "global", min_weight_elements: int = MIN_WEIGHT_ELEMENTS
             ) -> tuple[bytes, list[dict[str, Any]]]:
    """Quantize a float ``.tflite`` with ai-edge-quantizer; returns ``(model bytes, recipe)``.

    Args:
        float_tflite: a float32 LiteRT model with one signature and one input.
        variant: a key of :data:`EDGE_QUANTIZER_VARIANTS`.
        calibration_inputs: ``float32`` ``(N, h, w, 3)`` already preprocessed to the model's
            input range (e.g. [-1, 1]); required when the variant ``needs_calibration``,
            ignored otherwise.
        exclude: regexes of ops kept float (see :func:`build_recipe`).
        num_threads: LiteRT threads for calibration (default: ``os.cpu_count()``; the library's
            own default is 16).
        ranges: how calibration merges per-image activation ranges, ``"global"`` (default,
            overall min/max) or ``"moving_average"`` (the library's default), see
            :func:`calibrate`.
        min_weight_elements: the smallest weight tensor ``weight_only_int8`` quantizes (see
            :func:`build_recipe`).

    Returns:
        the quantized ``.tflite`` bytes and the recipe used (JSON-serialisable, the library's
        format, loadable with ``ai_edge_quantizer.Quantizer(model, recipe)``).

    Raises:
        ValueError: unknown variant, missing/ill-shaped calibration data, bad exclude regex.
        Anything ai-edge-quantizer raises (the pipeline records it as a failed variant).
    """
    recipe = build_recipe(variant, exclude, min_weight_elements)
    needs = EDGE_QUANTIZER_VARIANTS[variant].needs_calibration
    if needs:
        if calibration_inputs is None or len(calibration_inputs) == 0:
            raise ValueError(f"variant {variant} needs calibration inputs")
        calibration_inputs = np.asarray(calibration_inputs, dtype=np.float32)
        _, _, shape = _signature_input(float_tflite)
        got = calibration_inputs.shape
        if len(got) != len(shape) or any(
                want not in (-1, have) for want, have in zip(shape[1:], got[1:], strict=True)):
            raise ValueError(f"calibration inputs have shape {got}; the model "
                             f"expects (N, {', '.join(map(str, shape[1:]))})")
    qt = aeq_quantizer.Quantizer(bytearray(float_tflite), copy.deepcopy(recipe))
    calibration = None
    if qt.need_calibration:
        calibration = calibrate(qt, float_tflite, calibration_inputs, ranges, num_threads)
    result = qt.quantize(calibration, enable_progress_bar=False, enable_progress_report=False)
    # The recipe as the library resolved it (same content, its own normalised form).
    used = json.loads(json.dumps(result.recipe))
    return bytes(result.quantized_model), used


def output_errors(float_tflite: bytes, quantized_tflite: bytes, inputs: np.ndarray,
                  num_threads: int | None = None) -> dict[str, float]:
    """ai-edge-quantizer's ``validate()`` on the output tensor only, averaged over ``inputs``.

    ``inputs``: ``float32`` ``(N, h, w, c)`` in the float model's input range (the library feeds
    the quantized model the same float values; an int8-input model is fed through the library's
    own quantization). Returns ``{"mse": ..., "cosine_similarity": ..., "snr": ...}`` of the
    output tensor (``snr``: signal power / MSE as a plain ratio, not dB). ``validate()`` can
    compare every tensor; this keeps the output only, which is what accuracy depends on.
    """
    qt = aeq_quantizer.Quantizer(bytearray(float_tflite),
                                 previous_quantized_model=bytearray(quantized_tflite))
    metric = validation_utils.ValidationErrorMetric
    result = qt.validate(signature_dataset(float_tflite, inputs),
                         error_metrics=[metric.MSE, metric.COSINE_SIMILARITY, metric.SNR],
                         num_threads=num_threads or os.cpu_count() or 1,
                         validate_output_tensors_only=True)
    key = result.available_signature_keys()[0]
    outputs = result.get_signature_comparison_result(key).output_tensors
    values = next(iter(outputs.values()))
    return {name: float(value) for name, value in values.items()}


def tensor_names(model_tflite: bytes) -> list[str]:
    """All tensor names of a model (what ``exclude`` regexes are matched against)."""
    interpreter = Interpreter(model_content=model_tflite)
    return [detail["name"] for detail in interpreter.get_tensor_details()]


def recipe_json(recipe: Iterable[dict[str, Any]]) -> str:
    """The recipe as pretty JSON text (what the pipeline writes beside the model)."""
    return json.dumps(list(recipe), indent=2, sort_keys=True) + "\n"



#: The file beside the model that holds the recipe used.
RECIPE_FILE = "recipe.json"


def build_base(base: Any, inputs: PassInputs) -> BaseResult:
    """The :class:`~litequant.quantize.registry.EdgeQuantizer` base: :func:`quantize` the
    float32 variant's model with ``base.recipe`` (calibrated on ``inputs.calibration`` when
    ``base.calibrated``); the library's own output is silenced.

    Returns the model, ``{"calibration_ranges"}`` for ``conversion.json`` and the recipe used
    (``recipe.json``).
    """
    representative = inputs.calibration if base.calibrated else None
    float_model = inputs.float32_model()
    with native_stderr_silenced(), contextlib.redirect_stderr(io.StringIO()):
        model_bytes, used = quantize(float_model, base.recipe, representative)
    fields = {"calibration_ranges": CALIBRATION_RANGES[0] if representative is not None else None}
    return model_bytes, fields, {RECIPE_FILE: recipe_json(used)}
