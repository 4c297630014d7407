"""Building a variant as a base plus passes (:mod:`litequant.quantize.build`), and the registry's
checks of a composition. Adding a pass is its module, one :data:`PASSES` line and its test: the
trivial pass below (``apply`` in this module) goes through the real orchestration."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from litequant.core import layout
from litequant.core.params import ModelParams
from litequant.model.models import export
from litequant.quantize import registry
from litequant.quantize.build import build_variant
from litequant.quantize.registry import (
    PASSES,
    VARIANTS,
    Converter,
    FromVariant,
    Pass,
    Variant,
    check_registry,
    fidelity_methods,
)
from tests.conftest import params_section, repo_params, small_classifier

CALLS: list[int] = []


def apply(model_bytes: bytes, inputs: Any) -> tuple[bytes, dict[str, Any]]:
    """A trivial pass: the model unchanged, its size as the summary."""
    CALLS.append(len(model_bytes))
    return model_bytes, {"bytes_seen": len(model_bytes)}


def broken(model_bytes: bytes, inputs: Any) -> tuple[bytes, dict[str, Any]]:
    raise ValueError("this pass always fails")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder with a tiny Keras classifier exported (``data/export``)."""
    project = tmp_path_factory.mktemp("build")
    model_path = project / "tiny.keras"
    small_classifier().save(model_path)
    previous = Path.cwd()
    os.chdir(project)
    try:
        export(params_section(ModelParams, source=str(model_path), preprocessing="tf"),
               layout.EXPORT_DIR)
    finally:
        os.chdir(previous)
    return project


def convert_params():
    from litequant.core.params import section

    return section(repo_params(), registry.ConvertParams)


def test_a_trivial_pass_added_in_one_line_runs_after_its_base(
        exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stages.convert import write

    monkeypatch.chdir(exported)
    # the diff that adds a pass: its module (``apply`` above) and one registry line
    monkeypatch.setitem(PASSES, "noop", Pass("noop", __name__, "no-op", frozenset()))
    variants = {"float32": VARIANTS["float32"],
                "float32_noop": Variant("float32_noop", "float32, then the no-op pass",
                                        FromVariant("float32"), ("noop",))}
    check_registry(variants)
    write(build_variant("float32", convert_params(), None, variants))
    CALLS.clear()
    built = build_variant("float32_noop", convert_params(), None, variants)
    float32 = layout.model_file("float32").read_bytes()
    assert built.record["status"] == "ok" and built.model == float32
    assert CALLS == [len(float32)]
    assert built.record["noop"] == {"bytes_seen": len(float32)}
    assert built.record["base"] == "float32" and built.record["passes"] == ["noop"]
    assert built.record["built_from"] == ["float32"]
    assert built.record["methods"] == ["round to nearest", "no-op"]


def test_a_failing_pass_is_recorded_as_the_variant_failure(
        exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stages.convert import write

    monkeypatch.chdir(exported)
    monkeypatch.setitem(PASSES, "broken", Pass("broken", f"{__name__}", "broken",
                                               frozenset()))
    monkeypatch.setattr(__import__(__name__, fromlist=["apply"]), "apply", broken)
    variants = {"float32": VARIANTS["float32"],
                "float32_broken": Variant("float32_broken", "fails", FromVariant("float32"),
                                          ("broken",))}
    write(build_variant("float32", convert_params(), None, variants))
    built = build_variant("float32_broken", convert_params(), None, variants)
    assert built.model is None and built.record["status"] == "failed"
    assert built.record["error"] == "pass broken failed: this pass always fails"


def test_a_variant_built_from_a_failed_variant_fails_naming_it(
        exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from litequant.core import atomic

    monkeypatch.chdir(exported)
    with atomic.output_folder(layout.convert_dir("int8_plain")) as tmp:
        atomic.write_json(tmp / "conversion.json", {"status": "failed", "error": "boom"})
    variants = {"int8_plain": VARIANTS["int8_plain"],
                "grid": Variant("grid", "", FromVariant("int8_plain"), ())}
    record = build_variant("grid", convert_params(), None, variants).record
    assert record["status"] == "failed"
    assert record["error"] == "its base variant failed: no int8_plain model to start from (boom)"


def test_the_registry_refuses_compositions_it_cannot_build() -> None:
    base = Converter("int8", True)
    with pytest.raises(ValueError, match="unknown pass"):
        check_registry({"a": Variant("a", "", base, ("no_such_pass",))})
    with pytest.raises(ValueError, match="built from unknown variant 'b'"):
        check_registry({"a": Variant("a", "", FromVariant("b"))})
    with pytest.raises(ValueError, match="variants built from each other: a -> b -> a"):
        check_registry({"a": Variant("a", "", FromVariant("b")),
                        "b": Variant("b", "", FromVariant("a"))})
    with pytest.raises(ValueError, match="each replace the rounding"):
        check_registry({"a": Variant("a", "", base, ("weight_grid",)),
                        "b": Variant("b", "", FromVariant("a"), ("gptq",))})


def test_methods_come_from_the_whole_chain() -> None:
    assert fidelity_methods("float32", "analytic") == []
    assert fidelity_methods("int8_plain", "analytic") == ["round to nearest"]
    assert fidelity_methods("int8", "analytic") == ["round to nearest",
                                                    "bias correction (analytic)"]
    assert fidelity_methods("int8_mse", "none") == ["weight grid", "MSE activation ranges"]
    assert fidelity_methods("weight_only_int8", "analytic") == ["weight grid"]
    assert fidelity_methods("int8_selective", "analytic") == [
        "weight grid", "layers kept float", "MSE activation ranges", "bias correction (analytic)"]
    # a variant built on int8_grid keeps its weight grid
    variants = {**VARIANTS, "x": Variant("x", "", FromVariant("int8_grid"),
                                         ("activation_ranges",))}
    assert fidelity_methods("x", "analytic", variants) == [
        "weight grid", "bias correction (analytic)", "MSE activation ranges"]


def test_what_a_variant_reads_follows_its_composition() -> None:
    assert registry.data_deps("float16") == ["data/export"]
    assert registry.data_deps("int8_plain") == ["data/export", "data/prepare/calibration"]
    assert registry.data_deps("int8") == ["data/export", "data/convert/int8_plain",
                                          "data/convert/float32", "data/prepare/calibration"]
    assert registry.data_deps("weight_only_int8") == ["data/export", "data/convert/float32"]
    assert registry.params_sections("int8_selective") == ["calibration", "convert.selection"]
    assert registry.params_sections("dynamic_int4") == []
    assert registry.needs_calibration("int8") and not registry.needs_calibration("float16")


def test_the_composition_command_prints_every_variant(capsys: pytest.CaptureFixture) -> None:
    assert registry.main([]) == 0
    printed = capsys.readouterr().out
    for name in VARIANTS:
        assert f"\n{name} " in f"\n{printed}"
    assert "int8_mse           = int8_plain + weight_grid + activation_ranges + " \
           "bias_correction" in printed


def test_real_images_are_read_beside_noise_only_for_a_variant_that_needs_them(
        exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from litequant.core.params import CalibrationParams
    from litequant.core.preprocessing import preprocess
    from litequant.quantize.build import pass_inputs

    monkeypatch.chdir(exported)
    split = layout.CALIBRATION_SPLIT
    split.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    np.save(split / layout.SPLIT_IMAGES, pixels)
    np.save(split / layout.SPLIT_LABELS, np.zeros(6, dtype=np.int32))
    noise = params_section(CalibrationParams, num_images=6, source="random_uniform")
    selective = pass_inputs("int8_selective", convert_params(), noise, VARIANTS)
    assert selective.calibration.shape == (6, 32, 32, 3)
    assert selective.calibration.min() >= 0 and selective.calibration.max() < 1  # the noise
    # the selection is judged on the real images, preprocessed as for evaluation
    np.testing.assert_array_equal(np.sort(selective.real_calibration, axis=None),
                                  np.sort(preprocess(pixels, "tf"), axis=None))
    assert pass_inputs("int8", convert_params(), noise, VARIANTS).real_calibration is None
    images = params_section(CalibrationParams, num_images=6, source="images")
    same = pass_inputs("int8", convert_params(), images, VARIANTS)
    assert same.real_calibration is same.calibration
