"""The CI regression gate (``stages.check``) on two real metric states of the real model.

State 1: MobileNetV2 (real ImageNet weights) quantized to int8 with real calibration images.
State 2: the same pipeline with ``calibration.source=random_uniform`` (tutorial noise) for int8.
Both come from running the stage functions on real photos of ../shared; the baseline is read
through ``dvc metrics diff`` from a git commit of state 1 in a throwaway DVC project.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import yaml

from litequant.core import layout
from litequant.core.params import (
    BenchmarkParams,
    CheckParams,
    EvaluateParams,
    FetchParams,
    ModelParams,
    PeerParams,
    RecommendParams,
    load,
    section,
)
from litequant.data.fetching import fetch
from litequant.model.models import export
from litequant.quantize.registry import ConvertParams
from litequant.report import gate
from stages import benchmark, check, convert, evaluate, evaluate_keras, prepare, report
from tests.conftest import (
    REPO,
    SHARED_VAL,
    SHARED_WEIGHTS,
    convert_in_workers,
    needs_shared,
    select_variants,
    tiny_params,
)

#: Evaluation images: enough that int8 with real calibration stays within a few points of the
#: float model, few enough to keep the test around a minute (one image = 100/60 = 1.7 points).
EVALUATION_IMAGES = 60
CALIBRATION_IMAGES = 20
VARIANTS = ("float32", "int8_plain", "int8")


def _git(project: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _run_variants(params: dict, variants: tuple[str, ...],
                  converted: tuple[str, ...] = ()) -> None:
    """Convert (but those in ``converted``) and evaluate ``variants``, benchmark every variant
    (one session), then the report (in the current directory, whose ``params.yaml`` is
    ``params``)."""
    for variant in variants:
        if variant not in converted:
            convert.convert(variant, "params.yaml")
        evaluate.evaluate(variant, section(params, EvaluateParams))
    benchmark.benchmark(section(params, ConvertParams).built,
                        section(params, PeerParams), section(params, BenchmarkParams))
    report.report(section(params, ConvertParams), section(params, RecommendParams))


@pytest.fixture(scope="module")
def states(tmp_path_factory: pytest.TempPathFactory, workers: ProcessPoolExecutor) -> dict:
    """A DVC project whose HEAD commit holds state 1 and whose workspace holds state 2.

    State 1's conversions run in the workers (float32 and int8_plain at once, each a core's
    work of seconds), the rest in this process, the benchmark sessions once no conversion
    runs. Returns the project path and both metrics documents.
    """
    if not SHARED_VAL.is_dir():
        pytest.skip("../shared (real ImageNet sample) is not beside the repo")
    project = tmp_path_factory.mktemp("gate") / "project"
    project.mkdir()
    params = tiny_params(SHARED_VAL)
    params["fetch"].update(calibration_size=CALIBRATION_IMAGES, evaluation_size=EVALUATION_IMAGES)
    params["model"].update(alpha=1.0, input_size=224, weights=str(SHARED_WEIGHTS))
    params["calibration"].update(num_images=CALIBRATION_IMAGES, source="images")
    select_variants(params, VARIANTS)
    # the repo's limits except the float drop: one image is 1.7 points on 60 images
    params["check"]["max_top1_drop_vs_float"] = 5.0
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(REPO / "dvc.yaml", project / "dvc.yaml")
    previous = Path.cwd()
    os.chdir(project)
    try:
        _git(project, "init", "-q", "-b", "main")
        _git(project, "config", "user.email", "test@example.com")
        _git(project, "config", "user.name", "test")
        subprocess.run(["dvc", "init", "-q"], cwd=project, check=True)
        (project / ".gitignore").write_text("/data/\n")

        loaded = load()
        fetch(section(loaded, FetchParams), layout.FETCH_DIR)
        export(section(loaded, ModelParams), layout.EXPORT_DIR)
        prepare.prepare()
        evaluate_keras.evaluate_keras()
        _run_variants(loaded, VARIANTS, tuple(convert_in_workers(workers, project, VARIANTS)))
        first = gate.read_metrics(layout.METRICS)
        _git(project, "add", "-A")
        _git(project, "commit", "-q", "-m", "state 1: int8 calibrated on real images")

        params["calibration"]["source"] = "random_uniform"
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        _run_variants(load(), ("int8_plain", "int8"))  # int8 starts from int8_plain
        second = gate.read_metrics(layout.METRICS)
    finally:
        os.chdir(previous)
    return {"project": project, "first": first, "second": second,
            "first_commit": _git(project, "rev-parse", "HEAD")}


def _gate(project: Path, capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    previous = Path.cwd()
    os.chdir(project)
    try:
        code = check.main(list(argv))
    finally:
        os.chdir(previous)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _rows(table: str, variant: str) -> dict[str, str]:
    """``{metric: result}`` of ``variant``'s rows in a gate table."""
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0] == variant:
            rows[cells[1]] = cells[6]
    return rows


@needs_shared
@pytest.mark.slow  # ~1-2 min: exports, converts and evaluates the real 224x224 MobileNetV2
def test_gate_passes_real_calibration_and_fails_random_calibration(
        states: dict, capsys: pytest.CaptureFixture) -> None:
    project, first, second = states["project"], states["first"], states["second"]
    keras_top1 = first["keras"]["top1"]
    # the states really differ where the issue says: real vs noise calibration of int8
    assert first["int8"]["top1"] >= keras_top1 - 5.0
    assert second["int8"]["top1"] < keras_top1 - 5.0
    assert second["float32"]["top1"] == first["float32"]["top1"]

    # state 2 in the workspace, state 1 committed at HEAD: the gate fails on int8 accuracy
    code, out, err = _gate(project, capsys, "--baseline", "HEAD")
    assert code == 1
    int8 = _rows(out, "int8")
    assert int8["top1 vs float (keras, same run)"] == "**FAIL**"
    assert int8["top1 vs baseline"] == "**FAIL**"
    assert all(result == "ok" for result in _rows(out, "float32").values())
    assert err.startswith("error: quantization regression gate failed: int8 top1 vs float")
    assert (project / "reports/check.md").read_text() == out
    assert f"| int8 | top1 vs baseline | {first['int8']['top1']:.2f} |" in out

    # state 1 in the workspace: passes against its own commit, and against the merge base
    # with main (the default baseline)
    previous = Path.cwd()
    os.chdir(project)
    try:
        _git(project, "stash", "-q")
        assert gate.read_metrics(layout.METRICS)["int8"]["top1"] == first["int8"]["top1"]
        code, out, _ = _gate(project, capsys, "--baseline", states["first_commit"])
        assert code == 0, out
        assert "**PASS**" in out and "**FAIL**" not in out
        assert set(_rows(out, "int8")) == {"top1 vs float (keras, same run)", "top1 vs baseline",
                                           "size (bytes)", "p50 latency / float32 (1 thr)"}
        code, out, _ = _gate(project, capsys)
        assert code == 0
        assert f"baseline `{states['first_commit']}`" in out
    finally:
        _git(project, "stash", "pop", "-q")
        os.chdir(previous)


@needs_shared
@pytest.mark.slow  # shares the module's states fixture (built once)
def test_gate_exit_code_2_on_unusable_input(states: dict, capsys: pytest.CaptureFixture) -> None:
    project = states["project"]
    code, out, err = _gate(project, capsys, "--baseline", "no-such-revision")
    assert code == 2 and out == ""
    assert err.startswith("error: dvc metrics diff no-such-revision:")

    code, _, err = _gate(project, capsys, "--no-baseline", "--metrics", "reports/missing.json")
    assert code == 2
    assert "reports/missing.json not found" in err

    code, _, err = _gate(project, capsys, "--base-branch", "no-such-branch")
    assert code == 2 and "merge base" in err

    # a revision that exists but has no metrics (an empty commit outside the history)
    empty_tree = subprocess.run(["git", "mktree"], cwd=project, input="", capture_output=True,
                                text=True, check=True).stdout.strip()
    bare = _git(project, "commit-tree", empty_tree, "-m", "no pipeline yet")
    code, _, err = _gate(project, capsys, "--baseline", bare)
    assert code == 2 and "has no reports/metrics.json metrics" in err


@needs_shared
@pytest.mark.slow  # shares the module's states fixture (built once)
def test_latency_is_compared_as_a_ratio_to_float32_of_the_same_session(states: dict) -> None:
    first = states["first"]
    limits = section(yaml.safe_load((REPO / "params.yaml").read_text()), CheckParams)
    key = f"speedup_t{limits.latency_threads}"
    assert first["int8"][key] > 0  # float32 and int8 were measured in one session
    # a baseline measured on a machine 3x slower for every variant: the ratios are unchanged
    slower_machine = copy.deepcopy(first)
    for variant in VARIANTS:
        slower_machine[variant][f"latency_p50_ms_t{limits.latency_threads}"] *= 3
    assert all(c.ok for c in gate.run_checks(first, slower_machine, limits))
    # a baseline where int8 was twice as fast relative to float32: int8 regressed
    faster_int8 = copy.deepcopy(first)
    faster_int8["int8"][key] *= 2
    failing = [c for c in gate.run_checks(first, faster_int8, limits) if not c.ok]
    assert [(c.variant, c.metric) for c in failing] == [("int8", "p50 latency / float32 (1 thr)")]
