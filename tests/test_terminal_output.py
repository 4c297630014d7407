"""What a user reads in the terminal: ``dvc metrics show`` and ``dvc exp show --only-changed``
stay under 300 characters a line with the default variants (issue 13: 4,000 before)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from litequant.quantize.registry import needs_calibration
from litequant.report.summary import build_rows, metrics_document, model_records
from tests.conftest import repo_params
from tests.test_latency_sessions import _collected, _session

MAX_LINE = 300
DEFAULT_VARIANTS = [v for v, on in repo_params()["convert"]["variants"].items() if on]
CALIBRATED = [v for v in DEFAULT_VARIANTS if needs_calibration(v)]


def _metrics(run: int) -> dict:
    """The report's metrics of a run of every default variant; ``run`` changes the calibrated
    variants' accuracy and every latency (a new benchmark session), as a calibration change
    does."""
    session = model_records(_session(f"s{run}", {v: 10.0 + i + run for i, v
                                                 in enumerate(DEFAULT_VARIANTS)}))
    collected = _collected(session)
    for index, variant in enumerate(DEFAULT_VARIANTS):
        evaluation = dict(collected[variant]["evaluation"])
        evaluation["top1"] = 84.5 - index * 0.25 - (run * 0.5 if variant in CALIBRATED else 0)
        evaluation["agreement"] = 99.0 - index * 0.5 - (run if variant in CALIBRATED else 0)
        collected[variant] = {**collected[variant], "evaluation": evaluation}
    # the report's recommendation is one more column (a name, as stages.report writes it)
    return {"recommendation": {"variant": DEFAULT_VARIANTS[-1 - run]},
            **metrics_document(build_rows(collected, DEFAULT_VARIANTS))}


def _run(project: Path, *command: str) -> str:
    # a terminal as wide as the table needs: DVC's table would otherwise be cut to 80 columns
    env = {**os.environ, "COLUMNS": "5000", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow  # eight git and dvc commands
def test_metrics_and_exp_show_lines_stay_short(tmp_path: Path) -> None:
    assert len(DEFAULT_VARIANTS) >= 7  # every default variant of params.yaml
    project = tmp_path / "project"
    (project / "reports").mkdir(parents=True)
    params = repo_params()
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (project / "dvc.yaml").write_text("params:\n  - params.yaml\nmetrics:\n"
                                      "  - reports/metrics.json\n")
    (project / "reports/metrics.json").write_text(json.dumps(_metrics(0)))
    dvc = [sys.executable, "-m", "dvc"]
    _run(project, "git", "init", "-q")
    _run(project, *dvc, "init", "-q")
    _run(project, "git", "add", "-A")
    _run(project, "git", "commit", "-qm", "a committed run (README: what to commit)")
    for run, images in ((1, 50), (2, 25)):  # two calibration experiments
        params["calibration"]["num_images"] = images
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        (project / "reports/metrics.json").write_text(json.dumps(_metrics(run)))
        _run(project, *dvc, "exp", "save", "-q", "-n", f"cal-{images}")
    shown = {"metrics show": _run(project, *dvc, "metrics", "show"),
             "exp show --only-changed": _run(project, *dvc, "exp", "show", "--only-changed",
                                             "--no-pager")}
    for command, text in shown.items():
        widths = [len(line) for line in text.splitlines()]
        assert widths and max(widths) < MAX_LINE, f"dvc {command}:\n{text}"
    assert "int8_mse.top1" in shown["metrics show"]
    assert "calibration.num_images" in shown["exp show --only-changed"]
    assert "int8.top1" in shown["exp show --only-changed"]
    assert "recommendation.variant" in shown["metrics show"]
    assert DEFAULT_VARIANTS[-1] in shown["metrics show"]
