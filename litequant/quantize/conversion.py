"""Converting the exported SavedModel to a LiteRT variant with TensorFlow's converter.

Used by stage ``convert@<variant>`` (which writes ``data/convert/<variant>/``) and by
``layer_errors``. A conversion yields:

* ``model.tflite``: the converted model (absent when the conversion failed);
* ``conversion.json``: status (``ok``/``failed`` with the converter's message), size, the
  input/output dtypes and quantization, and the calibration data used.

Each variant's converter settings come from :mod:`litequant.quantize.registry`.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from litequant.core.arrays import NpyRows
from litequant.core.errors import PipelineError
from litequant.core.params import CalibrationParams
from litequant.core.preprocessing import preprocess
from litequant.core.quiet import native_stderr_silenced
from litequant.quantize.registry import VARIANTS, fidelity_methods


def calibration_inputs(calibration_images: np.ndarray | NpyRows, params: CalibrationParams,
                       family: str) -> np.ndarray:
    """The representative inputs: ``float32`` ``(num_images, h, w, 3)`` in the model's range.

    Args:
        calibration_images: ``uint8`` ``(N, h, w, 3)`` RGB 0..255, the prepared calibration
            split (disjoint from the evaluation split); only the ``num_images`` chosen rows
            are read.
        params: ``images`` takes the first ``num_images`` after a seeded permutation,
            preprocessed exactly as evaluation images are; ``random_normal``/``random_uniform``
            give standard normal / uniform [0, 1) noise of the same shape (what many tutorials
            do; not representative).
        family: the model's preprocessing family.
    """
    if params.num_images > len(calibration_images):
        raise PipelineError(f"params.yaml: calibration.num_images={params.num_images} is larger "
                            f"than the calibration split ({len(calibration_images)} images, "
                            "fetch.calibration_size)")
    rng = np.random.default_rng(params.seed)
    shape = (params.num_images, *calibration_images.shape[1:])
    if params.source == "random_normal":
        return rng.standard_normal(shape).astype(np.float32)
    if params.source == "random_uniform":
        return rng.random(shape, dtype=np.float32)
    chosen = np.sort(rng.permutation(len(calibration_images))[:params.num_images])
    return preprocess(calibration_images[chosen], family)


def representative_dataset(inputs: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """A converter/debugger dataset factory: one ``[input[None]]`` sample per input."""
    def dataset() -> Iterator[list[np.ndarray]]:
        for sample in inputs:
            yield [sample[None]]
    return dataset


def build_converter(saved_model: Path, variant: str, representative: np.ndarray | None):
    """A ``tf.lite.TFLiteConverter`` set up for ``variant``
    (:data:`~litequant.quantize.registry.VARIANTS`).

    ``representative`` (``float32`` ``(N, h, w, 3)``, the model's input range) is required for
    the calibrated variants.
    """
    import tensorflow as tf

    recipe = VARIANTS[variant]
    if recipe.needs_calibration and representative is None:
        raise PipelineError(f"variant {variant} needs calibration data")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if recipe.configure is not None:
        recipe.configure(converter)
    if recipe.needs_calibration:
        converter.representative_dataset = representative_dataset(representative)
    return converter


def convert_variant(saved_model: Path, variant: str,
                    representative: np.ndarray | None = None) -> bytes:
    """Convert ``saved_model`` to the ``variant`` recipe; returns the ``.tflite`` bytes.

    Raises whatever the converter raises.
    """
    converter = build_converter(saved_model, variant, representative)
    with native_stderr_silenced():
        return converter.convert()


def convert_selective(saved_model: Path, representative: np.ndarray,
                      denylist: list[str]) -> bytes:
    """Full-integer int8 conversion except the ops producing the ``denylist`` tensors.

    ``denylist`` holds TFLite tensor names (column ``tensor_name`` of ``layer_errors.csv``);
    those ops stay float, with quantize/dequantize ops around them. Input and output stay int8
    (``fully_quantize``). Raises whatever the converter raises.
    """
    import tensorflow as tf

    converter = build_converter(saved_model, "int8", representative)
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(denylist),
                                                            fully_quantize=True)
    with native_stderr_silenced():
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=representative_dataset(representative),
            debug_options=options)
        return debugger.get_nondebug_quantized_model()


def debug_int8(saved_model: Path, representative: np.ndarray, debug_inputs: np.ndarray) -> str:
    """Run the QuantizationDebugger on the int8 recipe; returns its layer statistics CSV text.

    ``representative`` calibrates (``float32`` ``(N, h, w, 3)``, model input range);
    ``debug_inputs`` (same layout) are the inputs the per-layer errors are averaged over.
    """
    import tensorflow as tf

    converter = build_converter(saved_model, "int8", representative)
    with native_stderr_silenced():
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=representative_dataset(debug_inputs))
        debugger.run()
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    return buffer.getvalue()


def conversion_record(variant: str, calibration: CalibrationParams | None) -> dict[str, Any]:
    """The ``conversion.json`` fields known before converting: variant, tool, calibration data
    and the fidelity methods it uses (:func:`litequant.quantize.registry.fidelity_methods`)."""
    record: dict[str, Any] = {"variant": variant, "tool": VARIANTS[variant].tool,
                              "calibration": None, "methods": fidelity_methods(
                                  variant, calibration.bias_correction if calibration
                                  else "none")}
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
