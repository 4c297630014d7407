"""Converting the exported SavedModel with TensorFlow's converter: the :class:`Converter` base.

:data:`SETTINGS` names every way the converter is set up (``float32``, ``float16``, ``dynamic``,
``int8``, ``int16x8``); a variant's base names one of them
(:class:`litequant.quantize.registry.Converter`). Also used by ``layer_errors`` (the
QuantizationDebugger on ``int8_plain``'s calibrated model) and by the denylist conversions of
:mod:`litequant.quantize.passes.selection` (:func:`calibrate_int8`, :func:`quantize_calibrated`).
TensorFlow is imported only when converting.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from litequant.core.errors import PipelineError
from litequant.core.layout import CALIBRATED_MODEL
from litequant.core.quiet import native_stderr_silenced

if TYPE_CHECKING:
    from litequant.quantize.context import BaseResult, PassInputs


def _float32(converter: Any) -> None:
    """The converter's defaults: float32 weights and activations."""


def _float16(converter: Any) -> None:
    import tensorflow as tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


def _dynamic(converter: Any) -> None:
    import tensorflow as tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]


def _int8(converter: Any) -> None:
    import tensorflow as tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8


def _int16x8(converter: Any) -> None:
    import tensorflow as tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    converter.inference_input_type = tf.int16
    converter.inference_output_type = tf.int16


#: How ``tf.lite.TFLiteConverter`` is set up, by name.
SETTINGS: dict[str, Callable[[Any], None]] = {
    "float32": _float32, "float16": _float16, "dynamic": _dynamic, "int8": _int8,
    "int16x8": _int16x8}
#: The settings that quantize activations, so need representative inputs.
CALIBRATED_SETTINGS = frozenset({"int8", "int16x8"})


def representative_dataset(inputs: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """A converter/debugger dataset factory: one ``[input[None]]`` sample per input."""
    def dataset() -> Iterator[list[np.ndarray]]:
        for sample in inputs:
            yield [sample[None]]
    return dataset


def build_converter(saved_model: Path, settings: str, representative: np.ndarray | None):
    """A ``tf.lite.TFLiteConverter`` set up by :data:`SETTINGS` ``[settings]``.

    ``representative`` (``float32`` ``(N, h, w, 3)``, the model's input range) is required for
    :data:`CALIBRATED_SETTINGS`.
    """
    import tensorflow as tf

    calibrated = settings in CALIBRATED_SETTINGS
    if calibrated and representative is None:
        raise PipelineError(f"converter settings {settings} need calibration data")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    SETTINGS[settings](converter)
    if calibrated:
        converter.representative_dataset = representative_dataset(representative)
    return converter


def convert_variant(saved_model: Path, settings: str,
                    representative: np.ndarray | None = None) -> bytes:
    """Convert ``saved_model`` with :data:`SETTINGS` ``[settings]``; returns the ``.tflite``
    bytes. Raises whatever the converter raises."""
    converter = build_converter(saved_model, settings, representative)
    with native_stderr_silenced():
        return converter.convert()


def build_base(base: Any, inputs: PassInputs) -> BaseResult:
    """The :class:`~litequant.quantize.registry.Converter` base: the converter with
    ``base.settings``, calibrated on ``inputs.calibration`` when ``base.calibrated``.

    The ``int8`` settings run as the converter runs them, in two steps kept apart:
    :func:`calibrate_int8`, then :func:`quantize_calibrated` with no denylist (the same model as
    ``converter.convert()``, output for output). The calibrated model is returned as the extra
    file :data:`litequant.core.layout.CALIBRATED_MODEL`, so that ``int8_selective`` and
    ``layer_errors`` quantize it again instead of calibrating again.
    """
    if base.settings == "int8":
        calibrated = calibrate_int8(inputs.saved_model, inputs.calibration)
        return quantize_calibrated(calibrated, []), {}, {CALIBRATED_MODEL: calibrated}
    representative = inputs.calibration if base.calibrated else None
    return convert_variant(inputs.saved_model, base.settings, representative), {}, {}


def calibrate_int8(saved_model: Path, representative: np.ndarray) -> bytes:
    """The float model with activation ranges recorded, as the ``int8`` settings calibrate it.

    The converter with :data:`SETTINGS` ``["int8"]`` stopped after calibration
    (``_experimental_calibrate_only``, what ``tf.lite.experimental.QuantizationDebugger`` does):
    a float ``.tflite`` whose tensors carry the min/max seen on ``representative`` (``float32``
    ``(N, h, w, 3)``, the model's input range). :func:`quantize_calibrated` turns it into int8
    models in about a second each, without calibrating again. Raises whatever the converter
    raises.
    """
    converter = build_converter(saved_model, "int8", representative)
    converter._experimental_calibrate_only = True  # noqa: SLF001 (TensorFlow's debugger does it)
    with native_stderr_silenced():
        return bytes(converter.convert())


def quantize_calibrated(calibrated: bytes, denylist: list[str]) -> bytes:
    """Full-integer int8 model from :func:`calibrate_int8`'s output, except the ops producing
    the ``denylist`` tensors (TFLite tensor names of the calibrated model), which stay float
    with dequantize/quantize ops around them; two adjacent float ops pass a float tensor. Input
    and output are int8, as in the ``int8`` settings' conversion (the same quantizer call the
    converter makes; with an empty denylist the same model, but for buffer deduplication).
    Raises whatever the quantizer raises.
    """
    import tensorflow as tf
    from tensorflow.lite.python import convert

    with native_stderr_silenced():
        return bytes(convert.mlir_quantize(
            calibrated, disable_per_channel=False, fully_quantize=False,
            input_data_type=tf.int8, output_data_type=tf.int8,
            denylisted_nodes=list(denylist) or None))


def debug_int8(calibrated: bytes, debug_inputs: np.ndarray) -> str:
    """Run the QuantizationDebugger on the int8 model of :func:`calibrate_int8`'s ``calibrated``
    model; returns its layer statistics CSV text.

    The debug model is the one the debugger builds from a converter (the same quantizer call,
    each quantized op followed by a numeric-verify op that compares it with the float op on the
    same dequantized inputs). ``debug_inputs`` (``float32`` ``(N, h, w, 3)``, the model's input
    range) are the inputs the per-layer errors are averaged over.
    """
    import tensorflow as tf
    from tensorflow.lite.python import convert

    with native_stderr_silenced():
        debug_model = convert.mlir_quantize(calibrated, disable_per_channel=False,
                                            fully_quantize=False, enable_numeric_verify=True)
        debugger = tf.lite.experimental.QuantizationDebugger(
            quant_debug_model_content=debug_model,
            debug_dataset=representative_dataset(debug_inputs))
        debugger.run()
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    return buffer.getvalue()
