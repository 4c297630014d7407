"""Reading and validating ``params.yaml``: one typed section per stage, checked up front.

Every error names the offending key (``fetch.evaluation_size must be ...``). The YAML is read
with ``yaml.safe_load`` only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from stages.errors import PipelineError
from stages.preprocessing import FAMILIES

#: Conversion recipes known to ``stages.convert`` and whether each needs calibration data.
VARIANT_KINDS: dict[str, bool] = {
    "float32": False,
    "float16": False,
    "dynamic": False,
    "int8": True,
    "int16x8": True,
    "int8_selective": True,   # int8 with the worst layers of stages.layer_errors kept float
}

FETCH_SOURCES = ("tfds", "folder", "synthetic")
CALIBRATION_SOURCES = ("images", "random_normal", "random_uniform")


def load(path: str | os.PathLike = "params.yaml") -> dict[str, Any]:
    """Load the whole params file with ``yaml.safe_load``."""
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise PipelineError(f"{path}: params file not found (run from the project root)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PipelineError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def _section(params: dict[str, Any], name: str, schema: type | None = None) -> dict[str, Any]:
    """The ``name`` section as a mapping; with ``schema`` (a params dataclass), unknown keys
    (typos such as ``on_bad_imag``, which would otherwise silently fall back to a default) are
    refused, naming the key and the known ones."""
    value = params.get(name)
    if not isinstance(value, dict):
        raise PipelineError(f"params.yaml: section {name!r} is missing or not a mapping")
    if schema is not None:
        known = [f.name for f in fields(schema)]
        for key in value:
            if key not in known:
                raise PipelineError(f"params.yaml: {name}.{key}: unknown key (known keys of "
                                    f"{name}: {', '.join(known)})")
    return value


def _get(section: dict[str, Any], prefix: str, key: str, default: Any = ...) -> Any:
    if key not in section:
        if default is ...:
            raise PipelineError(f"params.yaml: {prefix}.{key} is missing")
        return default
    return section[key]


def _int(section: dict, prefix: str, key: str, minimum: int = 1, default: Any = ...,
         allow_none: bool = False) -> int | None:
    value = _get(section, prefix, key, default)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PipelineError(f"params.yaml: {prefix}.{key} must be an integer >= {minimum}, "
                            f"got {value!r}")
    return value


def _float(section: dict, prefix: str, key: str, minimum: float = 0.0,
           default: Any = ...) -> float:
    value = _get(section, prefix, key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= minimum:
        raise PipelineError(f"params.yaml: {prefix}.{key} must be a number > {minimum}, "
                            f"got {value!r}")
    return float(value)


def _choice(section: dict, prefix: str, key: str, choices: tuple[str, ...],
            default: Any = ...) -> str:
    value = _get(section, prefix, key, default)
    if value not in choices:
        raise PipelineError(f"params.yaml: {prefix}.{key} must be one of "
                            f"{', '.join(choices)}; got {value!r}")
    return value


def _optional_str(section: dict, prefix: str, key: str) -> str | None:
    value = section.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PipelineError(f"params.yaml: {prefix}.{key} must be a string (a path or name), "
                            f"got {value!r}")
    return value


@dataclass(frozen=True)
class FetchParams:
    """``fetch``: which images form the calibration and evaluation splits."""

    source: str
    folder: str | None
    tfds_name: str
    tfds_data_dir: str | None
    tfds_manual_dir: str | None
    calibration_size: int
    evaluation_size: int | None
    seed: int
    on_bad_image: str


def fetch_params(params: dict[str, Any]) -> FetchParams:
    s = _section(params, "fetch", FetchParams)
    fetched = FetchParams(
        source=_choice(s, "fetch", "source", FETCH_SOURCES),
        folder=_optional_str(s, "fetch", "folder"),
        tfds_name=_optional_str(s, "fetch", "tfds_name") or "imagenet_v2/matched-frequency",
        tfds_data_dir=_optional_str(s, "fetch", "tfds_data_dir"),
        tfds_manual_dir=_optional_str(s, "fetch", "tfds_manual_dir"),
        calibration_size=_int(s, "fetch", "calibration_size"),
        evaluation_size=_int(s, "fetch", "evaluation_size", default=None, allow_none=True),
        seed=_int(s, "fetch", "seed", minimum=0, default=0),
        on_bad_image=_choice(s, "fetch", "on_bad_image", ("skip", "fail"), default="skip"),
    )
    if fetched.source == "folder" and fetched.folder is None:
        raise PipelineError("params.yaml: fetch.folder must name an ImageNet-style folder "
                            "(<folder>/<synset>/<image>) when fetch.source is 'folder'")
    return fetched


@dataclass(frozen=True)
class ModelParams:
    """``model``: the float Keras classifier to export."""

    source: str
    name: str
    alpha: float
    input_size: int | None
    weights: str
    preprocessing: str


def model_params(params: dict[str, Any]) -> ModelParams:
    s = _section(params, "model", ModelParams)
    source = _optional_str(s, "model", "source") or "applications"
    return ModelParams(
        source=source,
        name=str(_get(s, "model", "name", "MobileNetV2")),
        alpha=_float(s, "model", "alpha", default=1.0),
        input_size=_int(s, "model", "input_size", minimum=32, default=None, allow_none=True),
        weights=_optional_str(s, "model", "weights") or "imagenet",
        preprocessing=_choice(s, "model", "preprocessing", ("auto", *FAMILIES), default="auto"),
    )


@dataclass(frozen=True)
class CalibrationParams:
    """``calibration``: the representative data of calibrated (integer) variants."""

    num_images: int
    source: str
    seed: int


def calibration_params(params: dict[str, Any]) -> CalibrationParams:
    s = _section(params, "calibration", CalibrationParams)
    return CalibrationParams(
        num_images=_int(s, "calibration", "num_images"),
        source=_choice(s, "calibration", "source", CALIBRATION_SOURCES, default="images"),
        seed=_int(s, "calibration", "seed", minimum=0, default=0),
    )


def variant_names(params: dict[str, Any]) -> list[str]:
    """The variants listed in ``convert.variants`` (validated against the known recipes)."""
    s = _section(params, "convert")
    variants = s.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise PipelineError("params.yaml: convert.variants must map variant names to their "
                            f"settings; known variants: {', '.join(VARIANT_KINDS)}")
    for name, settings in variants.items():
        if name not in VARIANT_KINDS:
            raise PipelineError(f"params.yaml: convert.variants.{name}: unknown variant; known "
                                f"variants: {', '.join(VARIANT_KINDS)}")
        if not isinstance(settings, dict) or not isinstance(settings.get("params"), str) \
                or not isinstance(settings.get("deps"), str):
            raise PipelineError(f"params.yaml: convert.variants.{name} must be a mapping with a "
                                "'params' entry naming the params section its conversion "
                                "depends on and a 'deps' entry naming the file or folder it "
                                "depends on (e.g. {params: calibration, deps: data/export}), "
                                f"got {settings!r}")
    return list(variants)


def check_variant(params: dict[str, Any], variant: str) -> str:
    """Validate that ``variant`` is listed in ``convert.variants`` and return it."""
    if variant not in variant_names(params):
        raise PipelineError(f"variant {variant!r} is not listed in params.yaml convert.variants "
                            f"({', '.join(variant_names(params))})")
    return variant


def selective_float_layers(params: dict[str, Any], variant: str = "int8_selective") -> int:
    """``convert.variants.<variant>.float_layers``: how many of the worst layers stay float."""
    entry = _section(params, "convert")["variants"].get(variant)
    if not isinstance(entry, dict):
        raise PipelineError(f"params.yaml: convert.variants.{variant} must be a mapping with "
                            "float_layers (the number of worst layers kept float)")
    return _int(entry, f"convert.variants.{variant}", "float_layers")


@dataclass(frozen=True)
class ReferenceParams:
    """``reference``: an external, already-converted ``.tflite`` model evaluated beside ours.

    ``path`` null means no reference row. ``label_offset`` leading outputs are dropped (1 for
    models with a background class at index 0); ``preprocessing`` is the float input range the
    model expects (``auto``: the exported Keras model's); integer inputs are then quantized with
    the model's own scale and zero point; ``output`` is ``probabilities`` or ``logits``.
    """

    path: str | None
    label_offset: int
    preprocessing: str
    output: str


def reference_params(params: dict[str, Any]) -> ReferenceParams:
    s = _section(params, "reference")
    return ReferenceParams(
        path=_optional_str(s, "reference", "path"),
        label_offset=_int(s, "reference", "label_offset", minimum=0, default=0),
        preprocessing=_choice(s, "reference", "preprocessing", ("auto", *FAMILIES),
                              default="auto"),
        output=_choice(s, "reference", "output", ("probabilities", "logits"),
                       default="probabilities"),
    )


@dataclass(frozen=True)
class EvaluateParams:
    """``evaluate``: how the LiteRT evaluation runs."""

    batch_size: int
    threads: int


def evaluate_params(params: dict[str, Any]) -> EvaluateParams:
    s = _section(params, "evaluate", EvaluateParams)
    return EvaluateParams(batch_size=_int(s, "evaluate", "batch_size", default=32),
                          threads=_int(s, "evaluate", "threads", default=2))


@dataclass(frozen=True)
class BenchmarkParams:
    """``benchmark``: the latency measurement."""

    threads: tuple[int, ...]
    warmup_runs: int
    min_runs: int
    min_seconds: float


def benchmark_params(params: dict[str, Any]) -> BenchmarkParams:
    s = _section(params, "benchmark", BenchmarkParams)
    threads = _get(s, "benchmark", "threads", [1])
    if isinstance(threads, int) and not isinstance(threads, bool):
        threads = [threads]
    if (not isinstance(threads, list) or not threads
            or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in threads)):
        raise PipelineError("params.yaml: benchmark.threads must be a positive integer or a "
                            f"list of them, got {threads!r}")
    return BenchmarkParams(
        threads=tuple(threads),
        warmup_runs=_int(s, "benchmark", "warmup_runs", minimum=0, default=5),
        min_runs=_int(s, "benchmark", "min_runs", default=20),
        min_seconds=_float(s, "benchmark", "min_seconds", default=2.0),
    )


#: The limits of ``stages.check``; each may be ``null`` in params.yaml to disable that check.
CHECK_LIMITS = ("max_top1_drop_vs_float", "max_top1_regression", "max_size_growth",
                "max_latency_regression")


@dataclass(frozen=True)
class CheckParams:
    """``check``: the limits of the CI regression gate (``python -m stages.check``).

    ``limits`` maps each name in :data:`CHECK_LIMITS` to a non-negative number or ``None``
    (disabled); ``per_variant`` maps a variant name to its own overrides of those limits.
    """

    limits: dict[str, float | None]
    latency_threads: int
    per_variant: dict[str, dict[str, float | None]]

    def limit(self, variant: str, name: str) -> float | None:
        """The limit ``name`` for ``variant`` (its override if any, else the default)."""
        return self.per_variant.get(variant, {}).get(name, self.limits[name])


def _limits(section: dict[str, Any], prefix: str, required: bool) -> dict[str, float | None]:
    limits: dict[str, float | None] = {}
    for name in CHECK_LIMITS:
        if name not in section:
            if required:
                raise PipelineError(f"params.yaml: {prefix}.{name} is missing (a number, or "
                                    "null to disable the check)")
            continue
        value = section[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or value < 0):
            raise PipelineError(f"params.yaml: {prefix}.{name} must be a number >= 0 or null, "
                                f"got {value!r}")
        limits[name] = None if value is None else float(value)
    return limits


def check_params(params: dict[str, Any]) -> CheckParams:
    s = _section(params, "check")
    overrides = s.get("per_variant") or {}
    if not isinstance(overrides, dict):
        raise PipelineError("params.yaml: check.per_variant must map variant names to limits, "
                            f"got {overrides!r}")
    per_variant = {}
    for variant, values in overrides.items():
        prefix = f"check.per_variant.{variant}"
        if not isinstance(values, dict):
            raise PipelineError(f"params.yaml: {prefix} must map limit names to numbers")
        unknown = set(values) - set(CHECK_LIMITS)
        if unknown:
            raise PipelineError(f"params.yaml: {prefix}.{sorted(unknown)[0]}: unknown limit; "
                                f"known: {', '.join(CHECK_LIMITS)}")
        per_variant[str(variant)] = _limits(values, prefix, required=False)
    return CheckParams(limits=_limits(s, "check", required=True),
                       latency_threads=_int(s, "check", "latency_threads", default=1),
                       per_variant=per_variant)
