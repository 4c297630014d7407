"""The shape of the code: thin stages over the ``litequant`` library, and ``dvc.yaml`` deps that
are exactly what each stage imports and reads (derived by ``tests/structure.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from litequant.core.layout import CALIBRATION_SPLIT, EXPORT_DIR, FLOAT32_MODEL
from litequant.quantize import registry as variants
from tests.structure import (
    REPO,
    code_files,
    depth,
    imports_of,
    layout_paths,
    project_modules,
    stage_modules,
)


def test_no_stage_imports_another_stage() -> None:
    for stage in stage_modules():
        assert not [m for m in imports_of(stage) if m.startswith("stages.")], stage


def test_no_import_cycle_and_stages_are_at_most_four_layers_deep() -> None:
    for stage in stage_modules():
        assert depth(stage) <= 4, stage  # raises ValueError naming a cycle if there is one


def test_library_imports_no_stage() -> None:
    for module in project_modules():
        if module.startswith("litequant."):
            assert not [m for m in imports_of(module) if m.startswith("stages.")], module


def test_registry_dependency_strings_are_the_layout_paths() -> None:
    assert variants.EXPORT_DEP == EXPORT_DIR.as_posix()
    assert variants.CALIBRATION_DEP == CALIBRATION_SPLIT.as_posix()
    assert variants.FLOAT32_DEP == FLOAT32_MODEL.parent.as_posix()
    assert FLOAT32_MODEL.parent.name == variants.FLOAT_VARIANT


def _covers(declared: str, referenced: str) -> bool:
    return referenced == declared or referenced.startswith(declared.rstrip("/") + "/")


@pytest.fixture(scope="module")
def resolved_stages() -> dict[str, tuple[set[str], set[str]]]:
    """``{stage address: (deps, outs)}`` as DVC resolves ``dvc.yaml`` with ``params.yaml``."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        return {stage.addressing: ({Path(d.def_path).as_posix() for d in stage.deps
                                    if d.def_path != "params.yaml"},
                                   {Path(o.def_path).as_posix() for o in stage.outs})
                for stage in repo.index.stages}


def test_code_deps_are_exactly_the_imported_files(resolved_stages) -> None:
    assert resolved_stages, "dvc.yaml has no stages"
    for address, (deps, _) in resolved_stages.items():
        module = "stages." + address.split("@")[0]
        declared = {d for d in deps if d.startswith(("stages/", "litequant/"))}
        assert declared == code_files(module), address


def test_data_deps_and_outs_are_exactly_the_layout_paths_the_stage_names(resolved_stages
                                                                        ) -> None:
    groups: dict[str, set[str]] = {}
    for address, (deps, outs) in resolved_stages.items():
        name, _, key = address.partition("@")
        declared = {d for d in deps | outs if not d.startswith(("stages/", "litequant/"))}
        referenced = layout_paths(f"stages.{name}", key or "${key}")
        for path in declared:  # nothing declared that the code never touches
            assert any(_covers(path, r) for r in referenced), f"{address}: {path} unused"
        groups.setdefault(name, set()).update(
            p.replace(f"/{key}", "/${key}") if key else p for p in declared)
    for name, declared in groups.items():  # everything the code touches is declared
        for path in layout_paths(f"stages.{name}"):
            assert any(_covers(d, path) for d in declared), f"{name}: {path} not declared"


def test_uncalibrated_variants_do_not_depend_on_calibration_data(resolved_stages) -> None:
    built = [address.split("@", 1)[1] for address in resolved_stages
             if address.startswith("convert@")]
    assert len(built) >= 10  # the default list
    for name in built:
        deps, _ = resolved_stages[f"convert@{name}"]
        needs = variants.VARIANTS[name].needs_calibration
        assert (CALIBRATION_SPLIT.as_posix() in deps) == needs, name
    # and the params entry of every variant, opt-in ones included, is wired the same way
    for name, variant in variants.VARIANTS.items():
        calibrated = variant.wiring["calibration"] == CALIBRATION_SPLIT.as_posix()
        assert calibrated == variant.needs_calibration, name
