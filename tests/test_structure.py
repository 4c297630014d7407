"""The shape of the code: thin stages over the ``litequant`` library, library groups that import
only the groups below them, and ``dvc.yaml`` deps that are exactly what each stage imports and
reads (derived by ``tests/structure.py``; the ``convert@<variant>`` wiring from the registry)."""

from __future__ import annotations

from pathlib import Path

import pytest

from litequant.core.layout import CALIBRATION_SPLIT
from litequant.quantize import registry
from tests.structure import (
    CONVERT,
    REPO,
    SHARED_BY_PASSES,
    code_files,
    convert_stage,
    depth,
    imports_of,
    layout_paths,
    project_modules,
)

#: Which library group may import which (besides itself): the data flow, bottom to top.
LAYERS = {
    "core": set(),
    "data": {"core"},
    "model": {"core", "data"},
    "quantize": {"core"},
    "measure": {"core", "quantize"},
    "report": {"core", "quantize", "measure"},
}


def group(module: str) -> str:
    """``litequant.quantize.passes.gptq`` -> ``quantize``; ``stages.fetch`` -> ``stages``."""
    parts = module.split(".")
    return parts[1] if parts[0] == "litequant" else parts[0]


def test_every_library_module_is_in_a_known_group() -> None:
    groups = {group(m) for m in project_modules() if m.startswith("litequant.")}
    assert groups == set(LAYERS)


def test_library_groups_import_only_the_groups_below_them() -> None:
    for module in project_modules():
        if not module.startswith("litequant."):
            continue
        allowed = LAYERS[group(module)] | {group(module)}
        wrong = sorted(m for m in imports_of(module) if group(m) not in allowed)
        assert not wrong, f"{module} ({group(module)}) imports {wrong}"


def test_no_import_cycle() -> None:
    for module in project_modules():
        depth(module)  # raises ValueError naming the cycle if there is one


def test_no_stage_imports_another_stage_and_no_library_module_imports_a_stage() -> None:
    for module in project_modules():
        assert not [m for m in imports_of(module) if m.startswith("stages.")], module


def _covers(declared: str, referenced: str) -> bool:
    return referenced == declared or referenced.startswith(declared.rstrip("/") + "/")


@pytest.fixture(scope="module")
def resolved_stages() -> dict[str, tuple[set[str], set[str], set[str]]]:
    """``{stage address: (deps, outs, params)}`` as DVC resolves ``dvc.yaml`` with
    ``params.yaml``."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        resolved = {}
        for stage in repo.index.stages:
            params = {key for d in stage.deps if d.def_path == "params.yaml"
                      for key in d.params}
            resolved[stage.addressing] = (
                {Path(d.def_path).as_posix() for d in stage.deps
                 if d.def_path != "params.yaml"},
                {Path(o.def_path).as_posix() for o in stage.outs}, params)
        return resolved


def test_dvc_yaml_convert_stage_is_generated_from_the_registry() -> None:
    assert convert_stage() in (REPO / "dvc.yaml").read_text("utf-8"), (
        "dvc.yaml is stale: run python -m tests.structure --write-deps")


def test_code_deps_are_exactly_the_imported_files(resolved_stages) -> None:
    assert resolved_stages, "dvc.yaml has no stages"
    for address, (deps, _, _) in resolved_stages.items():
        name, _, key = address.partition("@")
        module = "stages." + name
        declared = {d for d in deps if d.startswith(("stages/", "litequant/"))}
        if module == CONVERT:
            assert declared == code_files(module, key) | SHARED_BY_PASSES, address
        else:
            assert declared == code_files(module), address


def test_data_deps_and_outs_are_exactly_the_layout_paths_the_stage_names(resolved_stages
                                                                        ) -> None:
    groups: dict[str, set[str]] = {}
    for address, (deps, outs, _) in resolved_stages.items():
        name, _, key = address.partition("@")
        declared = {d for d in deps | outs if not d.startswith(("stages/", "litequant/"))}
        referenced = layout_paths(f"stages.{name}", key or "${key}")
        if f"stages.{name}" == CONVERT:  # what its composition reads (the library names it)
            referenced |= set(registry.data_deps(key))
        for path in declared:  # nothing declared that the code never touches
            assert any(_covers(path, r) for r in referenced), f"{address}: {path} unused"
        groups.setdefault(name, set()).update(
            p.replace(f"/{key}", "/${key}") if key else p for p in declared)
    for name, declared in groups.items():  # everything the code touches is declared
        for path in layout_paths(f"stages.{name}"):
            assert any(_covers(d, path) for d in declared), f"{name}: {path} not declared"


def test_each_conversion_depends_on_exactly_what_its_composition_reads(resolved_stages) -> None:
    built = [address.split("@", 1)[1] for address in resolved_stages
             if address.startswith("convert@")]
    assert built == list(registry.VARIANTS)
    for name in built:
        deps, _, params = resolved_stages[f"convert@{name}"]
        calibrated = registry.CALIBRATION in registry.needs(name)
        assert (CALIBRATION_SPLIT.as_posix() in deps) == calibrated, name
        assert ("calibration" in params) == calibrated, name
        assert {d for d in deps if d.startswith("data/convert/")} == {
            f"data/convert/{source}" for source in registry.built_from(name)}, name
    # the pass modules: only the variants that run a pass depend on its code
    for name in built:
        deps, _, _ = resolved_stages[f"convert@{name}"]
        for step, spec in registry.PASSES.items():
            path = spec.module.replace(".", "/") + ".py"
            assert (path in deps) == (step in registry.VARIANTS[name].passes), (name, step)
