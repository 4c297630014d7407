"""Converting the exported SavedModel with TensorFlow's converter: the :class:`Converter` base.

:data:`SETTINGS` names every way the converter is set up (``float32``, ``float16``, ``dynamic``,
``int8``, ``int16x8``); a variant's base names one of them
(:class:`litequant.quantize.registry.Converter`). Also used by ``layer_errors`` (the
QuantizationDebugger on the ``int8`` settings) and by the denylist conversion of
:mod:`litequant.quantize.passes.selection`. TensorFlow is imported only when converting.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from litequant.core.errors import PipelineError
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
    ``base.settings``, calibrated on ``inputs.calibration`` when ``base.calibrated``."""
    representative = inputs.calibration if base.calibrated else None
    return convert_variant(inputs.saved_model, base.settings, representative), {}, {}


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
