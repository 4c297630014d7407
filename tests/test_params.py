"""``params.yaml`` sections (:mod:`litequant.core.params`): strict, every key required, one-line
errors.

For every section, an unknown key and a value of the wrong type stop with one
:class:`~litequant.core.errors.PipelineError` line naming ``<section>.<key>``, both through
:func:`~litequant.core.params.section` and through the command line of a stage that reads the
section (``python -m stages.<stage> --params bad.yaml``: exit 1, a single ``error: ...`` line on
stderr, nothing written; exit 2 for the gate, ``stages.check``, whose bad limits are unusable
input).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from litequant.core.errors import PipelineError
from litequant.core.params import (
    BenchmarkParams,
    CalibrationParams,
    CheckParams,
    EvaluateParams,
    FetchParams,
    ModelParams,
    PeerParams,
    RecommendParams,
    Section,
    load,
    read_section,
    section,
)
from litequant.quantize.registry import VARIANTS, ConvertParams
from tests.conftest import REPO, params_section, repo_params

MODELS: dict[str, type[Section]] = {model.name: model for model in (
    FetchParams, ModelParams, CalibrationParams, ConvertParams, PeerParams, EvaluateParams,
    BenchmarkParams, CheckParams, RecommendParams)}

#: section -> (a misspelt key added beside the real ones, its value)
UNKNOWN_KEYS = {
    "fetch": ("on_bad_imag", "fail"),
    "model": ("weight", "random"),
    "calibration": ("num_image", 8),
    "convert": ("varients", {"int8": True}),
    "peer": ("pth", "/models/peer.tflite"),
    "evaluate": ("thread", 2),
    "benchmark": ("warmup", 5),
    "check": ("max_size_grwth", 0.05),
    "recommend": ("max_p50", 5.0),
}

#: section -> (dotted key below the section, a value of the wrong type)
WRONG_TYPES = {
    "fetch": ("calibration_size", "100"),
    "model": ("alpha", "wide"),
    "calibration": ("num_images", "8"),
    "convert": ("variants.int8", "yes"),
    "peer": ("label_offset", "1"),
    "evaluate": ("batch_size", "8"),
    "benchmark": ("threads", 2),  # must be a list of thread counts
    "check": ("max_size_growth", "5%"),
    "recommend": ("max_p50_ms", "5 ms"),
}

#: section -> (the stage command line that reads it, its exit code on bad params)
STAGE_OF_SECTION = {
    "fetch": (["stages.fetch"], 1),
    "model": (["stages.export"], 1),
    "calibration": (["stages.layer_errors"], 1),
    "convert": (["stages.report"], 1),
    "peer": (["stages.evaluate_peer"], 1),
    "evaluate": (["stages.evaluate", "float32"], 1),
    "benchmark": (["stages.benchmark"], 1),
    "check": (["stages.check", "--no-baseline"], 2),
    "recommend": (["stages.report"], 1),
}


def with_unknown_key(name: str) -> tuple[dict[str, Any], str]:
    """The repo's params with a misspelt key added to section ``name``, and that dotted key."""
    params = repo_params()
    key, value = UNKNOWN_KEYS[name]
    params[name][key] = value
    return params, f"{name}.{key}"


def with_wrong_type(name: str) -> tuple[dict[str, Any], str]:
    """The repo's params with a wrongly typed value in section ``name``, and its dotted key."""
    params = repo_params()
    key, value = WRONG_TYPES[name]
    *parents, last = key.split(".")
    target = params[name]
    for part in parents:
        target = target[part]
    target[last] = value
    return params, f"{name}.{key}"


def refusal(params: dict[str, Any], name: str) -> str:
    with pytest.raises(PipelineError) as error:
        section(params, MODELS[name])
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_every_section_model_is_listed() -> None:
    assert set(MODELS) == set(UNKNOWN_KEYS) == set(WRONG_TYPES) == set(STAGE_OF_SECTION)
    assert set(MODELS) <= set(repo_params())


@pytest.mark.parametrize("name", list(MODELS))
def test_repo_params_validate_in_every_section(name: str) -> None:
    validated = read_section(MODELS[name], REPO / "params.yaml")
    assert isinstance(validated, MODELS[name])


def test_repo_params_values_come_through() -> None:
    params = load(REPO / "params.yaml")
    assert section(params, ModelParams).application == params["model"]["name"]
    assert section(params, BenchmarkParams).threads == params["benchmark"]["threads"]
    assert set(section(params, ConvertParams).variants) == set(VARIANTS)
    assert section(params, PeerParams).path is None


@pytest.mark.parametrize("name", list(MODELS))
def test_unknown_key_is_refused_naming_it(name: str) -> None:
    params, key = with_unknown_key(name)
    message = refusal(params, name)
    assert f"{key}: unknown key" in message, message
    assert message.startswith("params.yaml: ")


@pytest.mark.parametrize("name", list(MODELS))
def test_wrong_type_is_refused_naming_the_key(name: str) -> None:
    params, key = with_wrong_type(name)
    message = refusal(params, name)
    assert f"{key}:" in message, message
    assert repr(WRONG_TYPES[name][1]) in message  # the offending value is shown


@pytest.mark.parametrize("name, key, typo", [("peer", "path", "pth"),
                                             ("check", "max_size_growth", "max_size_grwth"),
                                             ("convert", "variants", "varients")])
def test_a_misspelt_key_that_replaces_the_real_one_is_named(name: str, key: str,
                                                           typo: str) -> None:
    params = repo_params()
    params[name][typo] = params[name].pop(key)
    assert f"{name}.{typo}" in refusal(params, name)


def test_missing_key_and_missing_section_are_named() -> None:
    params = repo_params()
    del params["fetch"]["seed"]
    assert "fetch.seed is missing" in refusal(params, "fetch")
    params = repo_params()
    del params["check"]
    with pytest.raises(PipelineError, match="section 'check' is missing"):
        section(params, CheckParams)


def test_nested_unknown_keys_and_types_are_named() -> None:
    params = repo_params()
    params["check"]["per_variant"] = {"int8": {"max_top1_drop": 3.0}}
    assert "check.per_variant.int8.max_top1_drop: unknown key" in refusal(params, "check")
    params["check"]["per_variant"] = {"int8": {"max_top1_drop_vs_float": "3"}}
    assert "check.per_variant.int8.max_top1_drop_vs_float:" in refusal(params, "check")
    params = repo_params()
    params["convert"]["selection"]["budget_point"] = 3
    assert "convert.selection.budget_point: unknown key" in refusal(params, "convert")
    params = repo_params()
    params["benchmark"]["threads"] = ["a"]
    assert "benchmark.threads.0:" in refusal(params, "benchmark")


@pytest.mark.parametrize("name, key, value", [
    ("fetch", "evaluation_size", True),     # a bool is not an integer
    ("fetch", "seed", 1.5),
    ("benchmark", "min_seconds", True),     # nor a number
    ("model", "input_size", "96"),
    ("model", "name", 5),                   # the field is `application`, the key `name`
    ("fetch", "folder", 5),
])
def test_strict_types_refuse_lookalike_values(name: str, key: str, value: Any) -> None:
    params = repo_params()
    params[name][key] = value
    assert f"{name}.{key}:" in refusal(params, name)


def test_convert_variants_unknown_missing_and_off_sources_are_named() -> None:
    params = repo_params()
    params["convert"]["variants"]["int4"] = True
    assert "convert.variants.int4: unknown variant" in refusal(params, "convert")
    params = repo_params()
    del params["convert"]["variants"]["int8_gptq"]
    assert "convert.variants.int8_gptq is missing" in refusal(params, "convert")
    params = repo_params()
    params["convert"]["variants"]["float32"] = False  # int8's bias correction reads float32
    message = refusal(params, "convert")
    assert "is built from float32, which is off" in message
    assert "convert.variants.float32: true" in message
    params = repo_params()
    params["convert"]["variants"]["int8_plain"] = False  # int8 starts from int8_plain's model
    assert "int8 is built from int8_plain, which is off" in refusal(params, "convert")
    params = repo_params()
    params["convert"]["variants"] = dict.fromkeys(params["convert"]["variants"], False)
    assert "turn at least one on" in refusal(params, "convert")


def test_convert_selection_settings_are_checked() -> None:
    params = repo_params()
    params["convert"]["selection"]["float_layers"] = 5  # the old fixed K
    assert "convert.selection.float_layers: unknown key" in refusal(params, "convert")
    params = repo_params()
    params["convert"]["selection"]["budget_points"] = -1
    assert "convert.selection.budget_points" in refusal(params, "convert")
    params = repo_params()
    params["convert"]["selection"]["max_latency_vs_int8"] = 0.9  # faster than int8: never
    assert "convert.selection.max_latency_vs_int8" in refusal(params, "convert")
    params = repo_params()
    del params["convert"]["selection"]["max_layers"]
    assert "convert.selection.max_layers is missing" in refusal(params, "convert")


def test_params_section_helper_overrides_the_repo_values(tmp_path: Path) -> None:
    fetched = params_section(FetchParams, source="folder", folder=str(tmp_path), seed=3)
    assert (fetched.source, fetched.folder, fetched.seed) == ("folder", str(tmp_path), 3)
    assert fetched.calibration_size == repo_params()["fetch"]["calibration_size"]
    with pytest.raises(PipelineError, match="fetch.folder must name"):
        params_section(FetchParams, source="folder", folder=None)


def test_sections_are_immutable() -> None:
    evaluate = params_section(EvaluateParams)
    with pytest.raises(Exception):  # noqa: B017 (pydantic's frozen-instance error)
        evaluate.threads = 3  # type: ignore[misc]


# --- the same refusals through each stage's command line ----------------------------------------

def start_stage(arguments: list[str], params: dict[str, Any], project: Path
                ) -> subprocess.Popen:
    """Start ``python -m <arguments> --params bad.yaml`` in ``project``, ``params`` written to
    ``project/bad.yaml``."""
    project.mkdir(parents=True, exist_ok=True)
    (project / "bad.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return subprocess.Popen([sys.executable, "-m", *arguments, "--params", "bad.yaml"],
                            cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_stage(arguments: list[str], params: dict[str, Any], project: Path
              ) -> subprocess.CompletedProcess:
    return finish(start_stage(arguments, params, project))


PROBLEMS = {"unknown_key": with_unknown_key, "wrong_type": with_wrong_type}


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory
             ) -> dict[tuple[str, str], tuple[Path, str, subprocess.CompletedProcess]]:
    """(section, problem) → (the command's folder, the bad dotted key, the finished command):
    every section's two refusals through its stage's command line, the 18 commands started at
    once (each is a Python start-up of a few tenths of a second of one core)."""
    root = tmp_path_factory.mktemp("refusals")
    started = {}
    for name, (arguments, _) in STAGE_OF_SECTION.items():
        for problem, make in PROBLEMS.items():
            bad, key = make(name)
            project = root / f"{name}-{problem}"
            started[(name, problem)] = project, key, start_stage(arguments, bad, project)
    return {case: (project, key, finish(process))
            for case, (project, key, process) in started.items()}


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("name", list(MODELS))
def test_stage_command_refuses_bad_params_in_one_line_and_writes_nothing(
        name: str, problem: str, refusals: dict) -> None:
    _, exit_code = STAGE_OF_SECTION[name]
    project, key, result = refusals[(name, problem)]
    assert result.returncode == exit_code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    # (stages that read two sections name "params.yaml" instead of the --params file: reported)
    assert lines[0].startswith("error: ") and f"{key}:" in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in project.iterdir()) == ["bad.yaml"]  # nothing written


def test_convert_command_refuses_bad_params_before_starting_a_child(tmp_path: Path) -> None:
    bad, key = with_unknown_key("convert")
    result = run_stage(["stages.convert", "int8"], bad, tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{key}: unknown key" in lines[0], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_recommend_budgets_are_checked() -> None:
    params = repo_params()
    params["recommend"]["rank_by"] = "speed"
    assert "recommend.rank_by:" in refusal(params, "recommend")
    params = repo_params()
    params["recommend"]["min_agreement"] = 101.0
    assert "recommend.min_agreement:" in refusal(params, "recommend")
    params = repo_params()
    params["recommend"]["max_p50_ms"] = 2  # what `dvc exp run -S recommend.max_p50_ms=2` gives
    assert section(params, RecommendParams).max_p50_ms == 2.0
