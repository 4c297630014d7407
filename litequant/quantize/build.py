"""Building one variant: its base, then each of its passes, then a LiteRT smoke test.

:func:`build_variant` is the whole conversion of ``convert@<variant>``: it reads what the
variant's composition needs (:mod:`litequant.quantize.registry`), imports the base's and the
passes' modules by name, and returns a :class:`Built` (the model, ``conversion.json`` and the
files beside the model) that the stage writes. A failure of the converter, of ai-edge-quantizer,
of a pass or of LiteRT on the result is returned as a ``status: failed`` record, so the other
variants still complete; bad params or missing inputs raise :class:`PipelineError`.

Wall-clock times are logged (``on_step``), never recorded: ``conversion.json`` depends only on
the inputs, so a re-run that builds the same model changes nothing downstream.
"""

from __future__ import annotations

import functools
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from litequant.core import layout
from litequant.core.errors import PipelineError
from litequant.core.litert import LiteRTModel
from litequant.core.params import CalibrationParams
from litequant.quantize.context import PassInputs, calibration_inputs
from litequant.quantize.registry import (
    CALIBRATION,
    PASSES,
    REAL_CALIBRATION,
    VARIANTS,
    ConvertParams,
    FromVariant,
    Variant,
    built_from,
    fidelity_methods,
    needs,
    tool,
)


@dataclass
class Built:
    """One variant's conversion: ``model`` (``None`` when it failed), ``record``
    (``conversion.json``) and ``files`` to write beside the model (``{name: text, JSON data or
    bytes}``)."""

    record: dict[str, Any]
    model: bytes | None = None
    files: dict[str, Any] = field(default_factory=dict)


def conversion_record(variant: str, calibration: CalibrationParams | None,
                      registry: dict[str, Variant] | None = None) -> dict[str, Any]:
    """The ``conversion.json`` fields known before converting: variant, tool, composition,
    calibration data and the fidelity methods it uses."""
    registry = VARIANTS if registry is None else registry
    recipe = registry[variant]
    record: dict[str, Any] = {
        "variant": variant, "tool": tool(variant, registry),
        "base": recipe.base.describe(), "passes": list(recipe.passes), "calibration": None,
        "methods": fidelity_methods(variant, calibration.bias_correction if calibration
                                    else "none", registry)}
    if calibration is not None:
        record["calibration"] = {"source": calibration.source,
                                 "num_images": calibration.num_images,
                                 "seed": calibration.seed,
                                 "representative": calibration.source == "images"}
    return record


def failure(record: dict[str, Any], what: str, error: BaseException) -> dict[str, Any]:
    """``record`` marked ``status: failed`` with ``what`` and the error's message (one line)."""
    message = " ".join(str(error).split())[:2000] or repr(error)
    return {**record, "status": "failed", "error": f"{what}: {message}"}


def variant_model(variant: str, calibrated: bool = False) -> bytes:
    """The converted model of ``variant`` (``data/convert/<variant>/model.tflite``) or, with
    ``calibrated``, the calibrated float model its conversion kept
    (:func:`litequant.core.layout.calibrated_file`).

    Raises ``RuntimeError`` (recorded as the reading variant's failure) when it did not convert.
    """
    record = layout.read_conversion(layout.convert_dir(variant))
    path = layout.calibrated_file(variant) if calibrated else layout.model_file(variant)
    if record["status"] != "ok" or not path.is_file():
        raise RuntimeError(f"no {variant} {'calibrated model' if calibrated else 'model'} to "
                           f"start from ({record.get('error', record['status'])})")
    return path.read_bytes()


def pass_inputs(variant: str, convert: ConvertParams, calibration: CalibrationParams | None,
                registry: dict[str, Variant]) -> PassInputs:
    """What ``variant``'s base and passes read: the calibration inputs only when one of them
    needs them (the real images beside noise only when one needs those too), the float32
    model read on first use."""
    info = layout.read_model_info(layout.MODEL_INFO)
    wanted = needs(variant, registry)
    representative = real = None
    if calibration is not None and CALIBRATION in wanted:
        images, _ = layout.load_split(layout.CALIBRATION_SPLIT)
        representative = calibration_inputs(images, calibration, info["preprocessing"])
        if calibration.source == "images":
            real = representative
        elif REAL_CALIBRATION in wanted:
            real = calibration_inputs(images, calibration.model_copy(
                update={"source": "images"}), info["preprocessing"])
    base = registry[variant].base
    return PassInputs(
        saved_model=layout.SAVED_MODEL,
        float32_model=functools.cache(functools.partial(variant_model, "float32")),
        calibration=representative, real_calibration=real, calibration_params=calibration,
        settings=convert.selection if getattr(base, "params", None) else None,
        output_kind=info["output"])


def build_variant(variant: str, convert: ConvertParams, calibration: CalibrationParams | None,
                  registry: dict[str, Variant] | None = None,
                  on_step: Callable[[str, float], None] | None = None) -> Built:
    """Build ``variant``: its base, then its passes in order, then check LiteRT runs it.

    Args:
        variant: a key of ``registry``.
        convert: the ``convert`` params (settings a base declares).
        calibration: the ``calibration`` params, or ``None`` for a variant not calibrated.
        registry: the variants (default :data:`~litequant.quantize.registry.VARIANTS`).
        on_step: called with each step's name and wall seconds (the stage logs them).

    Returns:
        the :class:`Built` conversion; ``record["status"]`` is ``ok`` or ``failed``.
    """
    registry = VARIANTS if registry is None else registry
    record = conversion_record(variant, calibration, registry)
    sources = built_from(variant, registry)
    if sources:
        record["built_from"] = sources
    if not layout.SAVED_MODEL.is_dir():
        raise PipelineError(f"{layout.SAVED_MODEL} not found: run the export stage first")
    inputs = pass_inputs(variant, convert, calibration, registry)
    recipe = registry[variant]
    built = Built(record)
    step = recipe.base.describe()
    try:
        started = time.perf_counter()
        if isinstance(recipe.base, FromVariant):
            model_bytes = variant_model(recipe.base.variant)
        else:
            module = importlib.import_module(recipe.base.module)
            model_bytes, fields, built.files = module.build_base(recipe.base, inputs)
            record.update(fields)
        _report(on_step, step, started)
        for name in recipe.passes:
            step, started = name, time.perf_counter()
            module = importlib.import_module(PASSES[name].module)
            model_bytes, record[name] = module.apply(model_bytes, inputs)
            _report(on_step, step, started)
    except PipelineError:
        raise
    except Exception as error:  # converters and passes raise many types: record, keep going
        what = recipe.base.failure if step == recipe.base.describe() else f"pass {step} failed"
        built.record = failure(record, what, error)
        return built
    return smoke_tested(built, variant, model_bytes)


def _report(on_step: Callable[[str, float], None] | None, step: str, started: float) -> None:
    if on_step is not None:
        on_step(step, time.perf_counter() - started)


def smoke_tested(built: Built, variant: str, model_bytes: bytes) -> Built:
    """``built`` with the model when LiteRT loads and runs it (and its I/O described), else
    marked failed."""
    try:
        model = LiteRTModel(layout.model_file(variant), model_content=model_bytes)
        model.smoke_test()
    except (PipelineError, RuntimeError, ValueError) as error:
        built.record = failure(built.record, "LiteRT cannot run the converted model", error)
        return built
    built.record.update(status="ok", size_bytes=len(model_bytes), **model.describe())
    built.model = model_bytes
    return built


def skipped(variant: str) -> Built:
    """The record of a variant turned off in ``convert.variants`` (no model)."""
    return Built({"variant": variant, "status": "off",
                  "error": f"not built: convert.variants.{variant} is false"})


def describe_calibration(record: dict[str, Any]) -> str:
    """``, calibrated on 100 images`` for the stage's log line ("" when not calibrated)."""
    calibration = record.get("calibration")
    return (f", calibrated on {calibration['num_images']} {calibration['source']}"
            if calibration else "")

