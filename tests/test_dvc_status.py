"""DVC re-runs exactly what changed: an edit of a pass module or of the registry marks only the
conversions that use it (and, for the registry, the stages that read it) in ``dvc status``.

The pipeline is not run: a scratch copy gets placeholder outputs, ``dvc commit`` records them
as up to date, then one library file is edited and ``dvc status`` lists the changed stages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks.scratch import GIT_ENV, scratch_project
from litequant.quantize.registry import PASSES, VARIANTS, needs_calibration

pytestmark = pytest.mark.slow  # about 30 s of dvc commands


def dvc(project: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, text=True,
                          capture_output=True, env={**os.environ, **GIT_ENV})
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


@pytest.fixture(scope="module")
def committed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch copy whose every stage is recorded as up to date (placeholder outputs)."""
    project = scratch_project(tmp_path_factory.mktemp("status"))
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        paths = [Path(item.def_path) for stage in repo.index.stages
                 for item in (*stage.outs, *stage.deps)]
    for path in paths:  # outputs, and the files inside outputs that stages depend on
        target = project / path
        if target.exists():
            continue
        if path.suffix:  # a file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("placeholder\n")
        else:
            target.mkdir(parents=True, exist_ok=True)
            (target / "placeholder").write_text(f"{path}\n")
    dvc(project, "commit", "--force", "--quiet")
    assert json.loads(dvc(project, "status", "--json")) == {}
    return project


def changed_after_editing(project: Path, file: str) -> set[str]:
    """The stages ``dvc status`` marks changed after a comment line is appended to ``file``
    (the file is restored afterwards)."""
    path = project / file
    original = path.read_text("utf-8")
    path.write_text(original + "# an edit\n", "utf-8")
    try:
        return set(json.loads(dvc(project, "status", "--json")))
    finally:
        path.write_text(original, "utf-8")


def module_file(module: str) -> str:
    return module.replace(".", "/") + ".py"


def test_editing_a_pass_marks_only_the_conversions_that_run_it(committed: Path) -> None:
    assert changed_after_editing(committed, module_file(PASSES["activation_ranges"].module)) \
        == {"convert@int8_mse", "convert@int8_selective"}
    assert changed_after_editing(committed, module_file(PASSES["gptq"].module)) \
        == {"convert@int8_gptq"}
    users = {f"convert@{name}" for name, variant in VARIANTS.items()
             if "bias_correction" in variant.passes}
    assert changed_after_editing(committed, module_file(PASSES["bias_correction"].module)) \
        == users
    assert "convert@int8_plain" not in users and "convert@int8" in users
    # their shared helpers: the variants of either bias pass
    assert changed_after_editing(committed, "litequant/quantize/biases.py") == users | {
        "convert@int8_empirical"}


def test_editing_the_registry_marks_the_conversions_and_their_readers_only(committed: Path
                                                                           ) -> None:
    changed = changed_after_editing(committed, "litequant/quantize/registry.py")
    conversions = {f"convert@{name}" for name in VARIANTS}
    assert conversions <= changed
    # benchmark and report read the registry (kernel notes, which variant is the reference)
    assert changed - conversions == {"benchmark", "report"}


def changed_after_setting(project: Path, section: str, key: str, value: object) -> set[str]:
    """The stages ``dvc status`` marks changed after ``params.yaml``'s ``section.key`` is set
    to ``value`` (restored afterwards)."""
    params = project / "params.yaml"
    original = params.read_text("utf-8")
    data = yaml.safe_load(original)
    target = data[section]
    *parents, last = key.split(".")
    for part in parents:
        target = target[part]
    target[last] = value
    params.write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")
    try:
        return set(json.loads(dvc(project, "status", "--json")))
    finally:
        params.write_text(original, "utf-8")


def test_turning_one_variant_on_marks_only_its_own_conversion(committed: Path) -> None:
    # the benchmark session and the report cover the list of variants
    assert changed_after_setting(committed, "convert", "variants.int8_gptq", True) == {
        "convert@int8_gptq", "benchmark", "report"}


def test_a_calibration_change_marks_the_calibrated_conversions_and_layer_errors(
        committed: Path) -> None:
    calibrated = {f"convert@{name}" for name in VARIANTS if needs_calibration(name)}
    assert "convert@float16" not in calibrated and "convert@int8" in calibrated
    # (their evaluate stages, the benchmark and the report follow when the models change)
    assert changed_after_setting(committed, "calibration", "num_images", 50) == calibrated | {
        "layer_errors"}
    assert changed_after_setting(committed, "convert", "selection.budget_points", 1.0) == {
        "convert@int8_selective"}
    assert changed_after_setting(committed, "benchmark", "threads", [2]) == {"benchmark"}
    # a budget of the recommendation: only the report decides again (`dvc exp run -S
    # recommend.max_p50_ms=2.0` re-runs nothing else)
    assert changed_after_setting(committed, "recommend", "max_p50_ms", 2.0) == {"report"}
