"""The copyable CI workflow is valid GitHub Actions YAML and calls only what the repo provides."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "quantization-regression.yml"
#: Programs the workflow may call besides this repo's modules (preinstalled on the runner or
#: installed by the project's dependencies).
KNOWN_PROGRAMS = {"python", "dvc", "git", "cat", "echo", "true"}
KNOWN_ACTIONS = {"actions/checkout", "actions/setup-python", "actions/cache",
                 "actions/upload-artifact"}


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML reads ``on:`` as the boolean ``True`` (YAML 1.1); GitHub reads YAML 1.2."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|false)$"),
                                    list("tf"))


def load_workflow() -> dict:
    return yaml.load(WORKFLOW.read_text("utf-8"), Loader=_Yaml12Loader)  # noqa: S506


def run_steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]


def commands(workflow: dict) -> list[list[str]]:
    """Every simple command of every ``run:`` script, split into words, ``$SUBSET`` expanded."""
    subset = shlex.split(workflow["env"]["SUBSET"])
    found = []
    for step in run_steps(workflow):
        script = re.sub(r"\$\{\{[^}]*\}\}", "EXPR", step["run"])
        for line in script.splitlines():
            line = line.split(" #")[0].strip()
            if not line or line.startswith("#"):
                continue
            for part in re.split(r"&&|\|\||;|\$\(|\)", line):
                words = shlex.split(part.replace(">>", " >> "))
                words = [w for word in words for w in (subset if word == "$SUBSET" else [word])]
                if words and words[0] in ("if", "then", "else", "fi"):
                    words = words[1:]
                while words and "=" in words[0]:  # variable assignments
                    words = words[1:]
                if words and words[0] != "[":
                    found.append(words)
    return found


def test_workflow_has_the_gate_jobs_structure() -> None:
    workflow = load_workflow()
    assert set(workflow["on"]) == {"pull_request", "workflow_dispatch"}
    for name, job in workflow["jobs"].items():
        assert job["runs-on"], name
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step
            if "uses" in step:
                action, _, version = step["uses"].partition("@")
                assert action in KNOWN_ACTIONS and re.fullmatch(r"v\d+", version), step["uses"]
    used = {step["uses"].split("@")[0] for job in workflow["jobs"].values()
            for step in job["steps"] if "uses" in step}
    assert used == KNOWN_ACTIONS  # checkout, python, DVC cache, artifact upload
    cache = next(step for job in workflow["jobs"].values() for step in job["steps"]
                 if step.get("uses", "").startswith("actions/cache"))
    assert ".dvc/cache" in cache["with"]["path"]
    upload = next(step for job in workflow["jobs"].values() for step in job["steps"]
                  if step.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["with"]["path"] == "reports/" and upload["if"] == "always()"


def test_workflow_matches_the_github_workflow_schema() -> None:
    """Validate against SchemaStore's github-workflow schema as vendored by check-jsonschema."""
    spec = importlib.util.find_spec("check_jsonschema")
    if spec is None or spec.origin is None:
        pytest.skip("check-jsonschema is not installed (pip install -e '.[test]')")
    import jsonschema

    schema_file = Path(spec.origin).parent / "builtin_schemas/vendor/github-workflows.json"
    schema = json.loads(schema_file.read_text("utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(load_workflow()), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    broken = load_workflow()
    broken["jobs"]["gate"]["steps"][0]["uses"] = 3  # the schema does catch mistakes
    assert list(validator.iter_errors(broken))


def test_workflow_calls_only_existing_commands_modules_options_and_params() -> None:
    workflow = load_workflow()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    found = commands(workflow)
    programs = {words[0] for words in found}
    assert programs <= KNOWN_PROGRAMS, programs - KNOWN_PROGRAMS
    checked = set()
    for words in found:
        if words[0] == "python" and words[1] == "-m" and words[2].startswith("stages."):
            module = words[2]
            assert (REPO / (module.replace(".", "/") + ".py")).is_file(), module
            usage = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO,
                                   capture_output=True, text=True, check=True).stdout
            for option in (w for w in words[3:] if w.startswith("--")):
                assert option in usage, f"{module} has no option {option}"
            checked.add(module)
        if words[0] == "dvc":
            sub = [w for w in words[1:3] if not w.startswith("-")]
            usage = subprocess.run(["dvc", *sub, "--help"], capture_output=True, text=True,
                                   check=True).stdout
            for option in (w for w in words[len(sub) + 1:] if w.startswith("-")):
                assert option in usage, f"dvc {' '.join(sub)} has no option {option}"
            for i, word in enumerate(words):
                if word == "-S":  # every overridden param exists in params.yaml
                    section, key = words[i + 1].split("=")[0].split(".")
                    assert key in params[section], words[i + 1]
            checked.add("dvc " + " ".join(sub))
    assert {"stages.check", "dvc exp run"} <= checked
    assert ["python", "-m", "pip", "install", "-e", "."] in found  # installs the project
    gate_options = [w for words in found if words[:3] == ["python", "-m", "stages.check"]
                    for w in words[3:]]
    assert gate_options == ["EXPR"]  # filled by the baseline step's output:
    baseline_step = next(s for s in run_steps(workflow) if s.get("id") == "baseline")
    assert "--baseline ci-baseline" in baseline_step["run"]
    assert "--no-baseline" in baseline_step["run"]
    # the baseline run and the pull request run use the same subset
    assert sum("$SUBSET" in s["run"] for s in run_steps(workflow)) == 2

