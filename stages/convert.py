"""Stage ``convert@<variant>``: convert the exported SavedModel to one LiteRT variant.

``python -m stages.convert <variant>`` reads ``params.yaml`` sections ``convert`` and (for
calibrated variants) ``calibration``, ``data/export/`` and ``data/prepare/calibration/``
(the bias-corrected variants, ``int8_grid``, ``int8_gptq``, ``int8_mse``, ``int8_selective``
and the ai-edge-quantizer variants also ``data/convert/float32/``), and writes
``data/convert/<variant>/``:

* ``model.tflite``: the converted model (absent when the conversion failed);
* ``conversion.json``: status (``ok``/``failed`` with the converter's message), size, the
  input/output dtypes and quantization, and the calibration data used;
* ``selection.json`` (``int8_selective``): the output-sensitivity ranking of every weight op
  and the agreement-vs-layers-kept curve.

Variants (``litequant.quantize.registry``):
    ``float32``   plain conversion, float weights and activations;
    ``float16``   weights stored as float16 (dequantized to float32 at load);
    ``dynamic``   dynamic-range: int8 weights, float activations quantized on the fly;
    ``int8_plain``  full integer: int8 weights and activations, int8 input and output, as the
                  converter makes them (weights rounded to nearest): the fidelity baseline;
    ``int8``      ``int8_plain``, then bias-corrected (below);
    ``int16x8``   16-bit activations, 8-bit weights, int16 input and output;
    ``int8_selective``  ``int8`` except the fewest weight ops that keep top-1 agreement with
                  the float32 model within ``convert.variants.int8_selective.budget_points``
                  (at most ``max_layers``), which stay float (the converter's denylist); int8
                  input and output. The ops are ranked by the effect of each one's int8 weight
                  rounding alone on the float32 model's output (KL divergence), simulated on
                  float32's weights on the first 32 calibration images
                  (:mod:`litequant.quantize.passes.sensitivity`); the budget is judged on all
                  calibration images, and the real model's agreement on them is recorded beside the
                  simulated one.
    ``int8_grid`` ``int8``, then every weight op's int8 weights and per-channel scales are
                  re-chosen from the float32 variant's weights: the scale ``max|w|/k``
                  (``k`` in 64..127) with the smallest reconstruction error, instead of the
                  converter's fixed ``max|w|/127`` (:mod:`litequant.quantize.passes.weight_grid`);
                  same ops, size and speed as ``int8``.
    ``int8_gptq`` ``int8``, then every weight op's int8 weights are re-rounded by GPTQ on the
                  converter's grid: each channel's weights are rounded one input at a time and
                  the rest compensate the error for the calibration inputs (``H = E[x xᵀ]``
                  from one float32 pass, :mod:`litequant.quantize.passes.gptq`); same scales, ops,
                  size and speed as ``int8``.
    ``int8_mse``  ``int8_grid``, then the inner activations' int8 ranges (outputs of convs,
                  dense ops and adds that only convs, dense ops and adds read) are shrunk to
                  the range with the smallest quantization error of the float32 variant's
                  values on the calibration images, instead of their min/max
                  (:mod:`litequant.quantize.passes.activation_ranges`); same ops, size and speed as
                  ``int8``.

Built by ai-edge-quantizer from ``data/convert/float32/model.tflite`` (no TensorFlow is
imported; the recipe used is written beside the model as ``recipe.json``):
    ``weight_only_int8``  int8 weights with explicit DEQUANTIZE, float compute and I/O;
    ``weight_only_int4``  the same with int4 weights where the library supports int4;
    ``dynamic_int4``      int4 weights, activations quantized on the fly;
    ``static_int8_minmax``  full integer int8, activation ranges the min/max over every
                  calibration image, int8 input and output.

Bias correction (``calibration.bias_correction: analytic``; ``int8``, ``int16x8``, ``int8_grid``,
``int8_gptq``, ``int8_mse``, ``static_int8_minmax``): each weight op's integer bias absorbs the
mean output shift its weight rounding causes on the calibration images, computed against the
float32 variant's weights (:mod:`litequant.quantize.passes.bias_correction`); ``conversion.json``
records it under ``bias_correction`` and every variant's fidelity methods under ``methods``.

Calibrated variants use ``calibration.num_images`` images of the calibration split (disjoint
from evaluation) with exactly the evaluation preprocessing, or, for ``calibration.source``
``random_normal``/``random_uniform``, the noise many tutorials feed (the result is marked as not
representative in every report).

A conversion that fails is recorded (``status: failed``) and the stage still succeeds, so the
other variants complete and the report shows this one as FAILED; ``stages.check`` fails on it.
The conversion runs in a child process, so that even a converter crash (a segfault or abort in
TensorFlow's C++ code) is recorded that way instead of stopping ``dvc repro``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from litequant.core import atomic, layout
from litequant.core.cli import die_with_parent, run_stage, run_supervised
from litequant.core.errors import PipelineError
from litequant.core.litert import LiteRTModel
from litequant.core.params import CalibrationParams, ConvertParams, VariantEntry, load, section
from litequant.core.quiet import native_stderr_silenced
from litequant.quantize.conversion import (
    calibration_inputs,
    conversion_record,
    convert_selective,
    convert_variant,
    failure,
)
from litequant.quantize.passes.activation_ranges import choose_activation_ranges
from litequant.quantize.passes.bias_correction import correct_biases
from litequant.quantize.passes.gptq import gptq_model
from litequant.quantize.passes.sensitivity import real_check, record_fields, select_float_ops
from litequant.quantize.passes.weight_grid import regrid
from litequant.quantize.registry import EDGE_QUANTIZER, VARIANTS


def write_failure(record: dict[str, Any]) -> dict[str, Any]:
    """Write a ``status: failed`` record (no model) so the other variants still complete."""
    with atomic.output_folder(layout.convert_dir(record["variant"])) as tmp:
        atomic.write_json(tmp / "conversion.json", record)
    print(f"convert: {record['variant']} FAILED: {record['error'][:300]}", file=sys.stderr)
    return record


def convert(variant: str, params_path: str) -> dict[str, Any]:
    """Convert one variant and write ``data/convert/<variant>/``; returns ``conversion.json``."""
    params = load(params_path)
    entry = section(params, ConvertParams, params_path).variants.get(variant)
    if entry is None:
        raise PipelineError(f"variant {variant!r} is not listed in params.yaml convert.variants")
    recipe = VARIANTS[variant]
    calibration = (section(params, CalibrationParams, params_path)
                   if recipe.needs_calibration else None)
    info = layout.read_model_info(layout.MODEL_INFO)
    record = conversion_record(variant, calibration)
    representative = selection_inputs = None
    if calibration is not None:
        calibration_images, _ = layout.load_split(layout.CALIBRATION_SPLIT)
        representative = calibration_inputs(calibration_images, calibration,
                                            info["preprocessing"])
        if recipe.keeps_layers_float:
            selection_inputs = real_images(calibration_images, calibration, representative,
                                           info["preprocessing"])
    float_model = functools.cache(float32_model_bytes)  # read once, only if a step needs it
    if recipe.tool == EDGE_QUANTIZER:
        return convert_edge(variant, record, representative, calibration, float_model)
    if not layout.SAVED_MODEL.is_dir():
        raise PipelineError(f"{layout.SAVED_MODEL} not found: run the export stage first")
    extra: dict[Path, Any] = {}
    try:
        if recipe.keeps_layers_float:
            model_bytes, selection = convert_kept_float(entry, float_model(), representative,
                                                        selection_inputs, info["output"])
            record.update(record_fields(selection, selection["real"]),
                          selection=layout.selection_file(variant).as_posix(),
                          built_from=layout.FLOAT32_MODEL.as_posix())
            extra[layout.selection_file(variant)] = selection
        else:
            model_bytes = convert_variant(layout.SAVED_MODEL, variant, representative)
        if recipe.rewrites_from_float32:
            record["built_from"] = layout.FLOAT32_MODEL.as_posix()
        if recipe.regrids_weights:
            model_bytes, record["weight_grid"] = regrid(model_bytes, float_model())
        if recipe.rounds_with_gptq:
            model_bytes, record["gptq"] = gptq_model(model_bytes, float_model(), representative)
        if recipe.chooses_activation_ranges:
            model_bytes, record["activation_ranges"] = choose_activation_ranges(
                model_bytes, float_model(), representative)
        model_bytes = bias_corrected(variant, model_bytes, record, representative, calibration,
                                     float_model)
    except PipelineError:
        raise
    except Exception as error:  # the converter raises many types; record it, keep going
        return write_failure(failure(record, "the converter failed", error))
    return write_model(variant, record, model_bytes, extra)


def real_images(calibration_images: Any, calibration: CalibrationParams,
                representative: np.ndarray, family: str) -> np.ndarray:
    """The calibration images, preprocessed: ``representative`` itself, or, when the variant is
    calibrated on noise, the images the same params would have chosen (the selection of the
    float layers is always judged on real images)."""
    if calibration.source == "images":
        return representative
    return calibration_inputs(calibration_images,
                              calibration.model_copy(update={"source": "images"}), family)


def convert_kept_float(entry: VariantEntry, float_model: bytes, representative: np.ndarray,
                       selection_inputs: np.ndarray, output_kind: str
                       ) -> tuple[bytes, dict[str, Any]]:
    """``int8_selective``: choose the float layers on float32's model, convert, check for real.

    Returns the model and the selection (``selection.json``, with the real model's check under
    ``real``). Raises ``RuntimeError`` (recorded as this variant's failure) when the converter
    kept other layers float than the chosen ones.
    """
    selection = select_float_ops(float_model, selection_inputs, output_kind,
                                 entry.budget_points, entry.max_layers)
    model_bytes = convert_selective(layout.SAVED_MODEL, representative,
                                    selection["float_layers"])
    selection["real"] = real_check(selection, model_bytes, float_model, selection_inputs,
                                   output_kind)
    return model_bytes, selection


def bias_corrected(variant: str, model_bytes: bytes, record: dict[str, Any],
                   representative: np.ndarray | None, calibration: CalibrationParams | None,
                   float_model: Callable[[], bytes]) -> bytes:
    """``model_bytes`` with its biases corrected for its weight rounding when the variant takes
    it and ``calibration.bias_correction`` asks for it (``float_model`` gives the float32
    variant's model, read only then); the summary goes to ``record``."""
    if not VARIANTS[variant].corrects_bias or calibration is None:
        return model_bytes
    model_bytes, record["bias_correction"] = correct_biases(
        model_bytes, float_model(), representative, calibration.bias_correction)
    return model_bytes


def float32_model_bytes() -> bytes:
    """The float32 variant's model, which the variants built from it or corrected against it read.

    Raises ``RuntimeError`` (recorded as this variant's failure) when float32 did not convert.
    """
    float32 = layout.read_conversion(layout.FLOAT32_MODEL.parent)
    if float32["status"] != "ok":
        raise RuntimeError(f"no float32 model to start from ({float32.get('error', 'failed')})")
    return layout.FLOAT32_MODEL.read_bytes()


def convert_edge(variant: str, record: dict[str, Any], representative: np.ndarray | None,
                 calibration: CalibrationParams | None, float_model: Callable[[], bytes]
                 ) -> dict[str, Any]:
    """Build an ai-edge-quantizer variant from the float32 variant's model (no TensorFlow)."""
    from litequant.quantize.edge_quantizer import CALIBRATION_RANGES, quantize, recipe_json

    record["built_from"] = layout.FLOAT32_MODEL.as_posix()
    record["calibration_ranges"] = CALIBRATION_RANGES[0] if representative is not None else None
    try:
        with native_stderr_silenced(), contextlib.redirect_stderr(io.StringIO()):
            model_bytes, used = quantize(float_model(), variant, representative)
        model_bytes = bias_corrected(variant, model_bytes, record, representative, calibration,
                                     float_model)
    except Exception as error:  # ai-edge-quantizer raises many types; record it, keep going
        return write_failure(failure(record, "ai-edge-quantizer failed", error))
    return write_model(variant, record, model_bytes,
                       {layout.recipe_file(variant): recipe_json(used)})


def write_model(variant: str, record: dict[str, Any], model_bytes: bytes,
                extra: dict[Path, Any] | None = None) -> dict[str, Any]:
    """Check that LiteRT runs ``model_bytes``, then write the model, its record and ``extra``
    files in the variant's folder (``{path: text, or data written as JSON}``: ``recipe.json``,
    ``selection.json``)."""
    try:
        model = LiteRTModel(layout.model_file(variant), model_content=model_bytes)
        model.smoke_test()
    except (PipelineError, RuntimeError, ValueError) as error:
        return write_failure(failure(record, "LiteRT cannot run the converted model", error))
    record.update(status="ok", size_bytes=len(model_bytes), **model.describe())
    with atomic.output_folder(layout.convert_dir(variant)) as tmp:
        (tmp / layout.model_file(variant).name).write_bytes(model_bytes)
        for path, content in (extra or {}).items():
            if isinstance(content, str):
                atomic.write_text(tmp / path.name, content)
            else:
                atomic.write_json(tmp / path.name, content)
        atomic.write_json(tmp / "conversion.json", record)
    calibrated = (f", calibrated on {record['calibration']['num_images']} "
                  f"{record['calibration']['source']}" if record["calibration"] else "")
    print(f"convert: {variant}: {len(model_bytes):,} bytes by {record['tool']}{calibrated}")
    return record


def convert_in_child(variant: str, params_path: str, verbose: bool) -> None:
    """:func:`convert` in a child process; a converter crash is recorded as a failed variant."""
    crash = run_supervised([sys.executable, "-m", "stages.convert", variant, "--params",
                            params_path, "--in-process", *(["--verbose"] if verbose else [])])
    if crash is not None:
        params = load(params_path)
        calibration = (section(params, CalibrationParams, params_path)
                       if VARIANTS[variant].needs_calibration else None)
        write_failure(failure(conversion_record(variant, calibration), "the converter crashed",
                              RuntimeError(f"the conversion process was killed by {crash}")))


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("variant", help="variant to convert (a key of convert.variants)")
    parser.add_argument("--in-process", action="store_true",
                        help="convert in this process (by default a child process converts, so "
                             "that a converter crash is recorded as a failed variant)")


def _run(args: argparse.Namespace) -> None:
    if args.in_process:
        die_with_parent()
        convert(args.variant, args.params)
    else:
        section(load(args.params), ConvertParams, args.params)  # bad params: one line, no child
        convert_in_child(args.variant, args.params, args.verbose)


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__, _run, configure=_arguments, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
