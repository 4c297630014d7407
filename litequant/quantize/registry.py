"""The variant registry: every LiteRT variant the pipeline can build, as a base plus passes.

A variant is a **base**, which builds a ``.tflite`` model, followed by an ordered list of
**passes**, each of which rewrites the model it is given:

* bases (:class:`Converter`, :class:`EdgeQuantizer`, :class:`KeptFloat`, :class:`FromVariant`):
  TensorFlow's converter with named settings (:data:`litequant.quantize.conversion.SETTINGS`),
  ai-edge-quantizer with a named recipe, a denylist conversion whose float layers are chosen by
  output sensitivity, or an existing variant's output (so variants that share a conversion
  convert once);
* passes (:data:`PASSES`, each registered once): a module with
  ``apply(model_bytes, inputs) -> (model_bytes, summary)``
  (:class:`litequant.quantize.context.PassInputs`), and what it needs.

Everything else is derived from the composition: whether a variant needs calibration images or
the float32 variant's model, the DVC wiring of its ``convert@<variant>`` stage (which
``tests/structure.py --write-deps`` writes into ``dvc.yaml``: the code of its base and passes, the
variants it is built from, the calibration split), the fidelity methods the report names, and
the checks of ``convert.variants`` in ``params.yaml`` (:class:`ConvertParams`).

``python -m litequant.quantize.registry`` prints every variant's composition.

This module imports no pass and no converter (modules are named, imported when a variant is
built), so editing a pass re-runs only the conversions that use it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field, model_validator

from litequant.core import layout
from litequant.core.params import Section

#: The variant every size and latency ratio is taken against (measured in the same run).
FLOAT_VARIANT = "float32"

TF_CONVERTER = "TFLiteConverter"
EDGE_QUANTIZER = "ai-edge-quantizer"

#: What a base or a pass may need besides the model it is given.
FLOAT32 = "float32 model"
CALIBRATION = "calibration images"
#: The calibration images themselves even when the variant is calibrated on noise (what a
#: selection of float layers is judged on).
REAL_CALIBRATION = "real calibration images"

_QUANTIZE = "litequant.quantize"
_PASSES = f"{_QUANTIZE}.passes"


# --- bases -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Converter:
    """TensorFlow's converter on the exported SavedModel, set up by ``settings`` (a key of
    :data:`litequant.quantize.conversion.SETTINGS`)."""

    settings: str
    calibrated: bool = False
    module: ClassVar[str] = f"{_QUANTIZE}.conversion"
    tool: ClassVar[str] = TF_CONVERTER
    failure: ClassVar[str] = "the converter failed"

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({CALIBRATION} if self.calibrated else ())

    def describe(self) -> str:
        return f"TFLiteConverter({self.settings})"


@dataclass(frozen=True)
class EdgeQuantizer:
    """ai-edge-quantizer's ``recipe`` (:func:`litequant.quantize.edge_quantizer.build_recipe`)
    applied to the float32 variant's model (no TensorFlow)."""

    recipe: str
    calibrated: bool = False
    module: ClassVar[str] = f"{_QUANTIZE}.edge_quantizer"
    tool: ClassVar[str] = EDGE_QUANTIZER
    failure: ClassVar[str] = "ai-edge-quantizer failed"

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({FLOAT32, CALIBRATION} if self.calibrated else {FLOAT32})

    def describe(self) -> str:
        return f"ai-edge-quantizer({self.recipe})"


@dataclass(frozen=True)
class KeptFloat:
    """A full-integer int8 conversion whose denylist (the ops kept float) is chosen on the real
    int8 model within the ``convert.selection`` budget of agreement and latency
    (:mod:`litequant.quantize.passes.selection`): the calibrated model of the variant
    ``calibrated_by`` (:func:`litequant.core.layout.calibrated_file`) re-quantized per denylist,
    never calibrated again."""

    calibrated_by: str
    module: ClassVar[str] = f"{_PASSES}.selection"
    tool: ClassVar[str] = TF_CONVERTER
    failure: ClassVar[str] = "the converter failed"
    method: ClassVar[str] = "layers kept float"
    legend: ClassVar[str] = ("the fewest activations kept float (with the ops around them), each "
                             "measured on the real int8 model, that keep calibration agreement "
                             "within `convert.selection` at a bounded latency")
    params: ClassVar[str] = "convert.selection"

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({FLOAT32, CALIBRATION, REAL_CALIBRATION})

    def describe(self) -> str:
        return "TFLiteConverter(int8, denylist chosen on the real int8 model)"


@dataclass(frozen=True)
class FromVariant:
    """Another variant's converted model (``data/convert/<variant>/model.tflite``)."""

    variant: str
    needs: ClassVar[frozenset[str]] = frozenset()
    failure: ClassVar[str] = "its base variant failed"

    def describe(self) -> str:
        return self.variant


Base = Converter | EdgeQuantizer | KeptFloat | FromVariant


# --- passes ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pass:
    """A rewrite of a converted model, implemented once in ``module`` as
    ``apply(model_bytes, inputs) -> (model_bytes, summary)``; ``summary`` is recorded in
    ``conversion.json`` under ``name``.

    Attributes:
        name: its key in compositions and in ``conversion.json``.
        module: the dotted module that implements ``apply``.
        method: what the report calls it (``{bias_correction}`` is replaced by that
            ``calibration`` param).
        needs: :data:`FLOAT32` and/or :data:`CALIBRATION`.
        rounding: it replaces the converter's round-to-nearest weights (at most one a variant).
        switch: the ``calibration`` param that turns it off when ``none`` (the pass then
            returns the model unchanged and is not named among the methods).
        legend: what it does, in one clause (the report's legend of the methods).
    """

    name: str
    module: str
    method: str
    needs: frozenset[str]
    rounding: bool = False
    switch: str | None = None
    legend: str = ""


#: The converter's own rounding, what every integer variant starts from.
ROUND_TO_NEAREST = "int8 (or int4) weights on the per-channel grid max|w|/127"

PASSES: dict[str, Pass] = {p.name: p for p in (
    Pass("weight_grid", f"{_PASSES}.weight_grid", "weight grid", frozenset({FLOAT32}),
         rounding=True, legend="per-channel scales chosen by reconstruction error"),
    Pass("gptq", f"{_PASSES}.gptq", "GPTQ rounding", frozenset({FLOAT32, CALIBRATION}),
         rounding=True, legend="the same grid, each channel's rounding errors compensated by "
                               "its other weights for the calibration inputs"),
    Pass("activation_ranges", f"{_PASSES}.activation_ranges", "MSE activation ranges",
         frozenset({FLOAT32, CALIBRATION}),
         legend="the int8 ranges of inner activations chosen by quantization error on the "
                "calibration images instead of their min/max"),
    Pass("bias_correction", f"{_PASSES}.bias_correction", "bias correction ({bias_correction})",
         frozenset({FLOAT32, CALIBRATION}), switch="bias_correction",
         legend="biases absorb the mean output shift of the weight rounding on the calibration "
                "images"),
    Pass("empirical_bias", f"{_PASSES}.empirical_bias", "empirical bias correction",
         frozenset({FLOAT32, CALIBRATION}),
         legend="op by op, biases set so each op's mean pre-activation in the real int8 model "
                "equals the float model's on the calibration images (activation error too)"),
)}


# --- variants ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One LiteRT variant: ``base`` then ``passes`` (names of :data:`PASSES`), in order.

    Attributes:
        name: the key in ``convert.variants`` and in every report.
        description: one line for tables and ``--help``.
        base: what builds the model the passes start from.
        passes: the rewrites applied in order.
        kernel_note: what to expect of its CPU kernels (shown in the report), or ``""``.
        float_weights: its weights and activations stay floating point (float32, float16).
    """

    name: str
    description: str
    base: Base
    passes: tuple[str, ...] = ()
    kernel_note: str = ""
    float_weights: bool = False


_BC = "bias_correction"
_INT16_NOTE = ("int16x8 ops run on TFLite reference kernels (no optimised CPU implementation): "
               "expect it to be tens of times slower")

VARIANTS: dict[str, Variant] = {variant.name: variant for variant in (
    Variant("float32", "plain conversion: float32 weights and activations", Converter("float32"),
            float_weights=True),
    Variant("float16", "float16 weights (dequantized to float32 at load)", Converter("float16"),
            float_weights=True),
    Variant("dynamic", "dynamic range: int8 weights, activations quantized on the fly",
            Converter("dynamic")),
    Variant("int8_plain", "full integer int8 as the converter makes it (round to nearest, no "
            "bias correction): the baseline of the fidelity methods", Converter("int8", True)),
    Variant("int8", "full integer: int8 weights and activations, int8 input and output, "
            "biases corrected for the weight rounding", FromVariant("int8_plain"), (_BC,)),
    Variant("int16x8", "16-bit activations, 8-bit weights, int16 input and output",
            Converter("int16x8", True), (_BC,), kernel_note=_INT16_NOTE),
    Variant("int8_selective", "int8 except the fewest ops, chosen by their effect on the real int8 "
            "model's output, that keep calibration agreement within a budget at a bounded "
            "latency: kept float; the int8 rest as int8_mse makes it (weight grid, activation "
            "ranges, bias correction)", KeptFloat("int8_plain"),
            ("weight_grid", "activation_ranges", _BC)),
    Variant("int8_grid", "int8 with per-channel weight scales chosen by reconstruction error "
            "(better rounding than round-to-nearest), int8 input and output",
            FromVariant("int8_plain"), ("weight_grid", _BC)),
    Variant("int8_gptq", "int8 with weights rounded by GPTQ (each rounding error compensated "
            "by the channel's other weights, for the calibration inputs), int8 input and output",
            FromVariant("int8_plain"), ("gptq", _BC)),
    Variant("int8_mse", "int8_grid with the inner activations' ranges chosen by quantization "
            "error (rare outliers clipped) instead of the calibration min/max, int8 input and "
            "output", FromVariant("int8_plain"), ("weight_grid", "activation_ranges", _BC)),
    Variant("int8_empirical", "int8 with biases corrected empirically, op by op, for the mean "
            "error of the real int8 model's activations as well as its weights, int8 input and "
            "output", FromVariant("int8_plain"), ("empirical_bias",)),
    Variant("weight_only_int8", "int8 weights on per-channel scales chosen by reconstruction "
            "error, dequantized at load, float compute (ai-edge-quantizer; small tensors kept "
            "float as in dynamic): dynamic's size at float32 speed",
            EdgeQuantizer("weight_only_int8"), ("weight_grid",)),
    Variant("weight_only_int4", "int4 weights (int8 where int4 is unsupported), float compute",
            EdgeQuantizer("weight_only_int4"),
            kernel_note="int4 weight-only models run several times slower than float32 in "
                        "ai-edge-litert 2.3"),
    Variant("dynamic_int4", "dynamic range with int4 weights (int8 where unsupported)",
            EdgeQuantizer("dynamic_int4"),
            kernel_note="int4 hybrid kernels in ai-edge-litert 2.3: several times slower than "
                        "float32"),
    Variant("static_int8_minmax", "full integer int8 by ai-edge-quantizer, min/max ranges "
            "calibrated over all images, int8 input and output",
            EdgeQuantizer("static_int8_minmax", True), (_BC,)),
)}

#: The variants whose weights and activations are all floating point (the rest are "integer").
FLOAT_WEIGHT_VARIANTS = frozenset(v.name for v in VARIANTS.values() if v.float_weights)


def chain(variant: str, registry: dict[str, Variant] | None = None
          ) -> tuple[Base, tuple[str, ...]]:
    """The root base (never :class:`FromVariant`) and every pass from it to ``variant``."""
    registry = VARIANTS if registry is None else registry
    recipe = registry[variant]
    if isinstance(recipe.base, FromVariant):
        root, before = chain(recipe.base.variant, registry)
        return root, before + recipe.passes
    return recipe.base, recipe.passes


def needs(variant: str, registry: dict[str, Variant] | None = None) -> frozenset[str]:
    """What building ``variant`` reads besides the export and the model of the variant it is
    built from: :data:`FLOAT32` and/or :data:`CALIBRATION`, as its own base and passes declare
    (what the variant it is built from needed, it read when it was built)."""
    registry = VARIANTS if registry is None else registry
    recipe = registry[variant]
    wanted = set(recipe.base.needs)
    for name in recipe.passes:
        wanted |= PASSES[name].needs
    return frozenset(wanted)


def needs_calibration(variant: str, registry: dict[str, Variant] | None = None) -> bool:
    """Whether ``variant`` (its base or any pass along its chain) is calibrated on images."""
    registry = VARIANTS if registry is None else registry
    root, passes = chain(variant, registry)
    return CALIBRATION in root.needs or any(CALIBRATION in PASSES[p].needs for p in passes)


def built_from(variant: str, registry: dict[str, Variant] | None = None) -> list[str]:
    """The variants whose outputs building ``variant`` reads (its base variant or the variant
    whose calibration it re-quantizes, float32)."""
    registry = VARIANTS if registry is None else registry
    recipe = registry[variant]
    names = ([recipe.base.variant] if isinstance(recipe.base, FromVariant)
             else [recipe.base.calibrated_by] if isinstance(recipe.base, KeptFloat) else [])
    if FLOAT32 in needs(variant, registry) and FLOAT_VARIANT not in names:
        names.append(FLOAT_VARIANT)
    return names


def code_modules(variant: str, registry: dict[str, Variant] | None = None) -> list[str]:
    """The modules that build ``variant`` itself: its base's and its passes' (not those of the
    variant it is built from, whose output it reads)."""
    registry = VARIANTS if registry is None else registry
    recipe = registry[variant]
    modules = [] if isinstance(recipe.base, FromVariant) else [recipe.base.module]
    return modules + [PASSES[name].module for name in recipe.passes]


def tool(variant: str, registry: dict[str, Variant] | None = None) -> str:
    """What built the model: TensorFlow's converter or ai-edge-quantizer."""
    return chain(variant, registry)[0].tool


def params_sections(variant: str, registry: dict[str, Variant] | None = None) -> list[str]:
    """The params its conversion depends on besides ``convert.variants.<variant>``."""
    registry = VARIANTS if registry is None else registry
    sections = ["calibration"] if CALIBRATION in needs(variant, registry) else []
    if isinstance(registry[variant].base, KeptFloat):
        sections.append(KeptFloat.params)
    return sections


def data_deps(variant: str, registry: dict[str, Variant] | None = None) -> list[str]:
    """The data its ``convert@<variant>`` stage reads: the export, the variants it is built
    from, the calibration split when it needs it."""
    registry = VARIANTS if registry is None else registry
    deps = [layout.EXPORT_DIR.as_posix()]
    deps += [layout.convert_dir(name).as_posix() for name in built_from(variant, registry)]
    if CALIBRATION in needs(variant, registry):
        deps.append(layout.CALIBRATION_SPLIT.as_posix())
    return deps


def fidelity_methods(variant: str, bias_correction: str,
                     registry: dict[str, Variant] | None = None) -> list[str]:
    """What a variant does to stay faithful to the float model, in order, for
    ``conversion.json`` and the report (``bias_correction``: the ``calibration`` param)."""
    registry = VARIANTS if registry is None else registry
    if registry[variant].float_weights:
        return []
    root, passes = chain(variant, registry)
    steps = [PASSES[name] for name in passes]
    switches = {"bias_correction": bias_correction}
    rounding = [step.method for step in steps if step.rounding] or ["round to nearest"]
    kept = [root.method] if isinstance(root, KeptFloat) else []
    others = [step.method.format(**switches) for step in steps if not step.rounding
              and not (step.switch and switches.get(step.switch) == "none")]
    return rounding + kept + others


def composition(variant: str, registry: dict[str, Variant] | None = None) -> str:
    """``variant = base + pass + ...`` in one line."""
    registry = VARIANTS if registry is None else registry
    recipe = registry[variant]
    return " + ".join([recipe.base.describe(), *recipe.passes])


def check_registry(registry: dict[str, Variant] | None = None) -> None:
    """Raise ``ValueError`` for a registry that cannot be built: an unknown pass or base
    variant, a cycle, or two passes that both replace the rounding."""
    registry = VARIANTS if registry is None else registry
    for name, recipe in registry.items():
        unknown = [p for p in recipe.passes if p not in PASSES]
        if unknown:
            raise ValueError(f"variant {name}: unknown pass(es) {unknown}; known: "
                             f"{', '.join(PASSES)}")
        seen, current = [name], recipe
        while isinstance(current.base, FromVariant):
            parent = current.base.variant
            if parent not in registry:
                raise ValueError(f"variant {name} is built from unknown variant {parent!r}")
            if parent in seen:
                raise ValueError("variants built from each other: " + " -> ".join(
                    [*seen, parent]))
            seen.append(parent)
            current = registry[parent]
        rounding = [p for p in chain(name, registry)[1] if PASSES[p].rounding]
        if len(rounding) > 1:
            raise ValueError(f"variant {name}: passes {rounding} each replace the rounding; "
                             "keep one")


check_registry()


# --- params ------------------------------------------------------------------------------------
class SelectionParams(Section):
    """``convert.selection``: the budget of ``int8_selective``'s float ops."""

    name: ClassVar[str] = KeptFloat.params
    #: The most top-1 agreement (percentage points) with the float32 model that the selected
    #: model may lose on the (real) calibration images, measured on the real int8 model.
    budget_points: float = Field(ge=0, le=100)
    #: The most p50 latency (1 thread) relative to the all-int8 model, measured interleaved.
    max_latency_vs_int8: float = Field(ge=1.0)
    #: The most weight ops (convolutions, fully connected) kept float.
    max_layers: int = Field(ge=1)


class ConvertParams(Section):
    """``convert``: which variants to build, and the settings of those that take some.

    ``variants`` maps every variant of :data:`VARIANTS` to ``true`` (built, evaluated,
    benchmarked, reported) or ``false``.
    """

    name: ClassVar[str] = "convert"
    variants: dict[str, bool]
    selection: SelectionParams

    @model_validator(mode="after")
    def _known_and_complete(self) -> ConvertParams:
        unknown = [key for key in self.variants if key not in VARIANTS]
        if unknown:
            raise ValueError(f"convert.variants.{unknown[0]}: unknown variant; known variants: "
                             f"{', '.join(VARIANTS)}")
        missing = [key for key in VARIANTS if key not in self.variants]
        if missing:
            raise ValueError(f"convert.variants.{missing[0]} is missing: list every variant "
                             "with true (build it) or false")
        if not self.built:
            raise ValueError("convert.variants: every variant is false; turn at least one on")
        for key in self.built:
            for needed in built_from(key):
                if not self.variants[needed]:
                    raise ValueError(f"convert.variants: {key} is built from {needed}, which is "
                                     f"off: set convert.variants.{needed}: true (or turn {key} "
                                     "off)")
        return self

    @property
    def built(self) -> list[str]:
        """The variants turned on, in registry order."""
        return [name for name in VARIANTS if self.variants.get(name)]


def main(argv: list[str] | None = None) -> int:
    """Print every variant's composition and what it needs."""
    parser = argparse.ArgumentParser(
        prog="python -m litequant.quantize.registry",
        description="Print every LiteRT variant as a base plus passes, with what its "
                    "conversion reads and the fidelity methods the report names.")
    parser.add_argument("variants", nargs="*", help="variants to show (default: all)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    width = max(map(len, VARIANTS))
    for name in args.variants or VARIANTS:
        print(f"{name:<{width}} = {composition(name)}")
        print(f"{'':<{width}}   reads: {', '.join(data_deps(name))}; methods: "
              f"{', '.join(fidelity_methods(name, 'analytic')) or '-'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
