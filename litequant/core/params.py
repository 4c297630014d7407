"""``params.yaml``, declared once: one strict pydantic model per section.

Every section refuses unknown keys (``reference.pth``, ``check.max_size_grwth`` ...) and values of
the wrong type (``"8"`` for an integer, ``true`` for a number), naming the key in one line.
Defaults live in ``params.yaml`` only: every key is required here, so no value can differ between
the file and the code. A stage parses only the sections it reads
(:func:`read_section`), once, and passes the typed section down.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from litequant.core.errors import PipelineError
from litequant.core.preprocessing import APPLICATION_FAMILIES, FAMILIES

PARAMS_FILE = "params.yaml"

Family = Literal["tf", "caffe", "torch", "raw"]
assert set(Family.__args__) == set(FAMILIES)  # type: ignore[attr-defined]


class Section(BaseModel):
    """A params section: strict types, no unknown keys, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    #: The section's key in ``params.yaml``.
    name: ClassVar[str]


class FetchParams(Section):
    """``fetch``: which images form the calibration and evaluation splits."""

    name: ClassVar[str] = "fetch"
    source: Literal["tfds", "folder", "synthetic"]
    tfds_name: str
    tfds_data_dir: str | None
    tfds_manual_dir: str | None
    folder: str | None
    calibration_size: int = Field(ge=1)
    evaluation_size: int | None = Field(ge=1)
    seed: int = Field(ge=0)
    on_bad_image: Literal["skip", "fail"]

    @model_validator(mode="after")
    def _folder_given(self) -> FetchParams:
        if self.source == "folder" and not self.folder:
            raise ValueError("fetch.folder must name a folder of class folders "
                             "(<folder>/<class>/<image>) when fetch.source is 'folder'")
        return self


class ModelParams(Section):
    """``model``: the float Keras classifier to export."""

    name: ClassVar[str] = "model"
    source: str
    #: ``keras.applications`` class (``source: applications``); the field is ``model.name``.
    application: str = Field(alias="name")
    alpha: float = Field(gt=0)
    input_size: int | None = Field(ge=32)
    weights: str
    preprocessing: Literal["auto", "tf", "caffe", "torch", "raw"]
    #: ``imagenet`` | ``folders`` | ``dataset`` | path of a label file
    # (:mod:`litequant.data.labels`).
    labels: str = Field(min_length=1)

    @model_validator(mode="after")
    def _known_application(self) -> ModelParams:
        if self.source == "applications" and self.application not in APPLICATION_FAMILIES:
            raise ValueError(f"model.name: unknown keras.applications classifier "
                             f"{self.application!r}; supported: "
                             f"{', '.join(sorted(APPLICATION_FAMILIES))}")
        return self


class CalibrationParams(Section):
    """``calibration``: the representative data of the calibrated (integer) variants."""

    name: ClassVar[str] = "calibration"
    num_images: int = Field(ge=1)
    source: Literal["images", "random_normal", "random_uniform"]
    seed: int = Field(ge=0)
    #: ``analytic``: correct the biases for the weight rounding
    # (:mod:`litequant.quantize.passes.bias_correction`)  of the variants that take it; ``none``:
    # leave the converter's biases.
    bias_correction: Literal["analytic", "none"]


class PeerParams(Section):
    """``peer``: an external, already-converted ``.tflite`` model evaluated beside ours.

    ``path`` null means no peer row. ``label_offset`` leading outputs are dropped (1 for models
    with a background class at index 0); ``preprocessing`` is the float input range the model
    expects (``auto``: the exported Keras model's), integer inputs are then quantized with the
    model's own scale and zero point; ``output`` is ``probabilities`` or ``logits``.
    """

    name: ClassVar[str] = "peer"
    path: str | None
    label_offset: int = Field(ge=0)
    preprocessing: Literal["auto", "tf", "caffe", "torch", "raw"]
    output: Literal["probabilities", "logits"]


class EvaluateParams(Section):
    """``evaluate``: how the LiteRT evaluation runs."""

    name: ClassVar[str] = "evaluate"
    batch_size: int = Field(ge=1)
    threads: int = Field(ge=1)


#: ``user@host`` of an SSH target: no leading ``-`` (never an ssh option), no spaces or quotes.
SSH_TARGET = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*@[A-Za-z0-9_.:\[\]-]+")


class SshParams(Section):
    """``benchmark.ssh``: the target device of ``benchmark.device: ssh``.

    ``target`` is ``user@host``; ``key`` the path of the private key (null: ssh's default keys
    and agent); ``known_hosts`` a file holding the device's host key (null:
    ``~/.ssh/known_hosts``); ``python`` the device's Python (with numpy and a LiteRT runtime);
    ``connect_timeout`` seconds. Paths only: no key material ever goes in params.
    """

    name: ClassVar[str] = "benchmark.ssh"
    target: str | None
    port: int = Field(ge=1, le=65535)
    key: str | None = Field(min_length=1)
    known_hosts: str | None = Field(min_length=1)
    python: str = Field(min_length=1)
    connect_timeout: int = Field(ge=1)

    @model_validator(mode="after")
    def _user_at_host(self) -> SshParams:
        if self.target is not None and not SSH_TARGET.fullmatch(self.target):
            raise ValueError(f"benchmark.ssh.target must be user@host, got {self.target!r}")
        return self


class BenchmarkParams(Section):
    """``benchmark``: the latency and runtime (memory, start-up) measurement, and where it runs
    (``device``: ``local``, this machine, or ``ssh``, the machine ``ssh`` names)."""

    name: ClassVar[str] = "benchmark"
    threads: list[int] = Field(min_length=1)
    warmup_runs: int = Field(ge=0)
    min_runs: int = Field(ge=1)
    min_seconds: float = Field(gt=0)
    runtime_repeats: int = Field(ge=1)
    device: Literal["local", "ssh"]
    ssh: SshParams

    @model_validator(mode="after")
    def _positive_threads(self) -> BenchmarkParams:
        if any(t < 1 for t in self.threads):
            raise ValueError(f"benchmark.threads must be positive integers, got {self.threads}")
        if self.device == "ssh" and self.ssh.target is None:
            raise ValueError("benchmark.ssh.target must name the device (user@host) when "
                             "benchmark.device is 'ssh'")
        return self


class CheckLimits(Section):
    """Limits of the CI regression gate; ``null`` disables a check."""

    name: ClassVar[str] = "check.per_variant.<variant>"
    max_top1_drop_vs_float: float | None = Field(default=None, ge=0)
    max_top1_regression: float | None = Field(default=None, ge=0)
    max_size_growth: float | None = Field(default=None, ge=0)
    max_latency_regression: float | None = Field(default=None, ge=0)


#: The limits of ``stages.check``.
CHECK_LIMITS = tuple(CheckLimits.model_fields)


class CheckParams(Section):
    """``check``: the limits of the CI regression gate (``python -m stages.check``).

    ``per_variant`` maps a variant name to its own overrides of the limits.
    """

    name: ClassVar[str] = "check"
    max_top1_drop_vs_float: float | None = Field(ge=0)
    max_top1_regression: float | None = Field(ge=0)
    max_size_growth: float | None = Field(ge=0)
    max_latency_regression: float | None = Field(ge=0)
    latency_threads: int = Field(ge=1)
    per_variant: dict[str, CheckLimits]

    def limit(self, variant: str, name: str) -> float | None:
        """The limit ``name`` for ``variant`` (its override if set, else the default)."""
        override = self.per_variant.get(variant)
        if override is not None and name in override.model_fields_set:
            return getattr(override, name)
        return getattr(self, name)


class RecommendParams(Section):
    """``recommend``: the budgets the report's recommended variant must meet, stated once.

    A variant qualifies when it loses at most ``max_top1_drop`` top-1 points against the float
    Keras model of the same run, agrees with it on at least ``min_agreement`` percent of the
    evaluation images, and stays under each ceiling that is not ``None``: p50 latency
    (``max_p50_ms``, at ``threads`` benchmark threads), ``.tflite`` size (``max_size_mb``,
    10^6 bytes) and runtime memory (``max_memory_mib``, 2^20 bytes). Among the qualifying
    variants the report recommends the one best on ``rank_by``; values within
    ``rank_tolerance`` (relative) of the best count as equal, and the more faithful of those
    wins (:mod:`litequant.report.recommend`).
    """

    name: ClassVar[str] = "recommend"
    max_top1_drop: float = Field(ge=0)
    min_agreement: float = Field(ge=0, le=100)
    threads: int = Field(ge=1)
    max_p50_ms: float | None = Field(gt=0)
    max_size_mb: float | None = Field(gt=0)
    max_memory_mib: float | None = Field(gt=0)
    rank_by: Literal["latency", "size", "memory"]
    rank_tolerance: float = Field(ge=0, le=1)


S = TypeVar("S", bound=Section)


def load(path: str | os.PathLike = PARAMS_FILE) -> dict[str, Any]:
    """The whole params file as plain data (``yaml.safe_load``)."""
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


def section(params: dict[str, Any], model: type[S], source: str = PARAMS_FILE) -> S:
    """Validate section ``model.name`` of ``params``; any problem is one line naming the key."""
    value = params.get(model.name)
    if not isinstance(value, dict):
        raise PipelineError(f"{source}: section {model.name!r} is missing or not a mapping")
    try:
        return model.model_validate(value)
    except ValidationError as error:
        raise PipelineError(f"{source}: {_describe(error, model)}") from None


def read_section(model: type[S], path: str | os.PathLike = PARAMS_FILE) -> S:
    """Read ``path`` and validate the one section ``model`` describes."""
    return section(load(path), model, str(path))


def _describe(error: ValidationError, model: type[Section]) -> str:
    """The first problem of a validation error as ``<section>.<key>: <what is wrong>``."""
    problems = error.errors(include_url=False)
    # a misspelt key (``pth:``) also makes the real one (``path``) missing: name the typo
    problem = next((p for p in problems if p["type"] == "extra_forbidden"), problems[0])
    location = [str(part) for part in problem["loc"]]
    # a union (``int | None``) reports each alternative: keep the key path, drop the type names
    location = [part for part in location if part not in ("int", "float", "str", "none",
                                                          "list[int]", "literal['auto']")]
    key = ".".join([model.name, *location])
    if problem["type"] == "extra_forbidden":
        parent = _section_model(model, location[:-1])
        known = ", ".join(f.alias or name for name, f in parent.model_fields.items())
        return f"{key}: unknown key (known keys: {known})"
    if problem["type"] == "missing":
        return f"{key} is missing"
    if problem["type"] == "value_error":
        return str(problem["ctx"]["error"])
    return f"{key}: {problem['msg'].lower()}, got {problem['input']!r}"


def _section_model(model: type[Section], path: list[str]) -> type[Section]:
    """The sub-model at ``path`` below ``model`` (dict keys are skipped)."""
    current = model
    for part in path:
        field = current.model_fields.get(part)
        if field is None:
            continue
        for candidate in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, Section):
                current = candidate
    return current
