"""The variant registry: every LiteRT variant the pipeline can build, in one place.

Each :class:`Variant` says how it is built (the tool and, for TensorFlow's converter, how the
converter is configured), whether it needs calibration images, which params section and which
extra file its ``convert@<name>`` stage depends on (the ``params``/``deps`` wiring that
``params.yaml`` repeats for DVC, checked against this registry by :mod:`litequant.core.params`), and
notes about its kernels. Imports nothing of the project; TensorFlow is imported only when a
converter is configured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The variant every size and latency ratio is taken against (measured in the same run).
FLOAT_VARIANT = "float32"
#: The variants whose weights and activations are all floating point (the rest are "integer").
FLOAT_WEIGHT_VARIANTS = frozenset({"float32", "float16"})

#: The extra dependency of every other variant (already a dependency of each convert stage).
EXPORT_DEP = "data/export"
#: The calibration split the calibrated variants read (``layout.CALIBRATION_SPLIT``).
CALIBRATION_DEP = "data/prepare/calibration"
#: What ai-edge-quantizer variants are built from, and what the bias-corrected, ``int8_grid``,
#: ``int8_gptq`` and ``int8_selective`` variants read: the float32 variant
#: (``layout.FLOAT32_MODEL``'s folder).
FLOAT32_DEP = "data/convert/float32"

TF_CONVERTER = "TFLiteConverter"
EDGE_QUANTIZER = "ai-edge-quantizer"


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


@dataclass(frozen=True)
class Variant:
    """One LiteRT variant.

    Attributes:
        name: the key in ``convert.variants`` and in every report.
        description: one line for tables and ``--help``.
        needs_calibration: converted with representative images (``calibration`` params).
        configure: sets up a ``tf.lite.TFLiteConverter`` (``None`` for a plain conversion).
        tool: what builds the ``.tflite`` file: TensorFlow's converter from the SavedModel, or
            ai-edge-quantizer from the ``float32`` variant (the recipe named like the variant in
            :data:`litequant.quantize.edge_quantizer.EDGE_QUANTIZER_VARIANTS`).
        kernel_note: what to expect of its CPU kernels (shown in the report), or ``""``.
        keeps_layers_float: ``int8`` except the fewest weight ops, ranked by the effect of their
            int8 weight rounding on the float32 variant's output, that keep the calibration
            agreement within a budget (:mod:`litequant.quantize.passes.sensitivity`); they stay
            float.
        regrids_weights: ``int8`` whose weight scales are then re-chosen per channel by
            reconstruction error (:mod:`litequant.quantize.passes.weight_grid`), from the float32
            variant's weights.
        rounds_with_gptq: ``int8`` whose weights are then re-rounded by GPTQ on the same grid
            (:mod:`litequant.quantize.passes.gptq`), from the float32 variant's weights and the
            calibration images.
        chooses_activation_ranges: the inner activations' int8 ranges are then chosen by
            quantization error instead of the calibration min/max (rare outliers clipped,
            :mod:`litequant.quantize.passes.activation_ranges`), from the float32 variant's
            activations on the calibration images.
        corrects_bias: its biases are corrected for the mean output shift of its weight
            rounding (:mod:`litequant.quantize.passes.bias_correction`,
            ``calibration.bias_correction``), from the float32 variant's weights and the
            calibration images.
    """

    name: str
    description: str
    needs_calibration: bool
    configure: Callable[[Any], None] | None
    tool: str = TF_CONVERTER
    kernel_note: str = ""
    keeps_layers_float: bool = False
    regrids_weights: bool = False
    rounds_with_gptq: bool = False
    chooses_activation_ranges: bool = False
    corrects_bias: bool = False

    @property
    def params_section(self) -> str:
        """The params its conversion depends on besides its own entry (DVC ``params:``)."""
        return "calibration" if self.needs_calibration else f"convert.variants.{self.name}"

    @property
    def extra_dep(self) -> str:
        """The one file or folder its conversion depends on besides the export (DVC ``deps:``)."""
        if (self.tool == EDGE_QUANTIZER or self.rewrites_from_float32 or self.corrects_bias
                or self.keeps_layers_float):
            return FLOAT32_DEP
        return EXPORT_DEP

    @property
    def rewrites_from_float32(self) -> bool:
        """The converter's model is then rewritten from the float32 variant's weights or
        activations (weight grid, GPTQ rounding, activation ranges)."""
        return self.regrids_weights or self.rounds_with_gptq or self.chooses_activation_ranges

    @property
    def wiring(self) -> dict[str, str]:
        """Its ``convert.variants`` entry in ``params.yaml`` (what its stages depend on)."""
        return {"params": self.params_section, "deps": self.extra_dep,
                "calibration": self.calibration_dep}

    @property
    def calibration_dep(self) -> str:
        """The calibration data its conversion reads (the export again when none)."""
        return CALIBRATION_DEP if self.needs_calibration else EXPORT_DEP


VARIANTS: dict[str, Variant] = {variant.name: variant for variant in (
    Variant("float32", "plain conversion: float32 weights and activations", False, None),
    Variant("float16", "float16 weights (dequantized to float32 at load)", False, _float16),
    Variant("dynamic", "dynamic range: int8 weights, activations quantized on the fly", False,
            _dynamic),
    Variant("int8_plain", "full integer int8 as the converter makes it (round to nearest, no "
            "bias correction): the baseline of the fidelity methods", True, _int8),
    Variant("int8", "full integer: int8 weights and activations, int8 input and output, "
            "biases corrected for the weight rounding", True, _int8, corrects_bias=True),
    Variant("int16x8", "16-bit activations, 8-bit weights, int16 input and output", True,
            _int16x8, corrects_bias=True,
            kernel_note="int16x8 ops run on TFLite reference kernels (no optimised CPU "
                        "implementation): expect it to be tens of times slower"),
    Variant("int8_selective", "int8 except the fewest layers, ranked by their effect on the "
            "output, that keep calibration agreement within a budget: kept float", True, _int8,
            keeps_layers_float=True, corrects_bias=True),
    Variant("int8_grid", "int8 with per-channel weight scales chosen by reconstruction error "
            "(better rounding than round-to-nearest), int8 input and output", True, _int8,
            regrids_weights=True, corrects_bias=True),
    Variant("int8_gptq", "int8 with weights rounded by GPTQ (each rounding error compensated "
            "by the channel's other weights, for the calibration inputs), int8 input and output",
            True, _int8, rounds_with_gptq=True, corrects_bias=True),
    Variant("int8_mse", "int8_grid with the inner activations' ranges chosen by quantization "
            "error (rare outliers clipped) instead of the calibration min/max, int8 input and "
            "output", True, _int8, regrids_weights=True, chooses_activation_ranges=True,
            corrects_bias=True),
    Variant("weight_only_int8", "int8 weights dequantized at load, float compute (ai-edge-"
            "quantizer): dynamic's size at float32 speed", False, None, tool=EDGE_QUANTIZER),
    Variant("weight_only_int4", "int4 weights (int8 where int4 is unsupported), float compute",
            False, None, tool=EDGE_QUANTIZER,
            kernel_note="int4 weight-only models run several times slower than float32 in "
                        "ai-edge-litert 2.3"),
    Variant("dynamic_int4", "dynamic range with int4 weights (int8 where unsupported)", False,
            None, tool=EDGE_QUANTIZER,
            kernel_note="int4 hybrid kernels in ai-edge-litert 2.3: several times slower than "
                        "float32"),
    Variant("static_int8_minmax", "full integer int8 by ai-edge-quantizer, min/max ranges "
            "calibrated over all images, int8 input and output", True, None,
            tool=EDGE_QUANTIZER, corrects_bias=True),
)}


def fidelity_methods(variant: str, bias_correction: str) -> list[str]:
    """What a variant does to stay faithful to the float model, for ``conversion.json`` and the
    report's fidelity section (``bias_correction``: the ``calibration.bias_correction`` param)."""
    recipe = VARIANTS[variant]
    if recipe.name in FLOAT_WEIGHT_VARIANTS:
        return []
    methods = ["weight grid" if recipe.regrids_weights
               else "GPTQ rounding" if recipe.rounds_with_gptq else "round to nearest"]
    if recipe.chooses_activation_ranges:
        methods.append("MSE activation ranges")
    if recipe.keeps_layers_float:
        methods.append("layers kept float")
    if recipe.corrects_bias and bias_correction != "none":
        methods.append(f"bias correction ({bias_correction})")
    return methods
