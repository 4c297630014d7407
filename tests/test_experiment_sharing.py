"""A sweep spread over machines with DVC's own experiment sharing (docs/guide.md, "Sweeps
across machines"): a bare git repository is the shared git remote, a local directory the shared DVC
remote; two clones each run one experiment of a calibration sweep and ``dvc exp push`` it, the
second reusing the first one's unchanged stages through the pushed run-cache; a third clone
``dvc exp pull``s both, lists them with ``dvc exp show`` and gates one against the other with
``python -m stages.check --baseline <experiment>``.

Tiny setup (synthetic images, tests/conftest.py's block classifier of a few layers as the user's
``.keras`` model, the float32 and int8 variants only); every command is the real one a user
types.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path

import pytest

from benchmarks.scratch import GIT_ENV, scratch_project
from tests.conftest import block_classifier, select_variants, tiny_params

pytestmark = pytest.mark.slow  # ~2-3 min: two real dvc exp runs of the tiny pipeline

SWEEP = {"calib-4": 4, "calib-8": 8}  # experiment name: calibration.num_images


def run(cwd: Path, *command: str) -> str:
    """Run ``command`` in ``cwd`` (with a git identity); its stdout, or a failure showing both
    output streams."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV})
    assert done.returncode == 0, (f"{' '.join(command)} in {cwd} exited {done.returncode}:\n"
                                  f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def clone(origin: Path, target: Path) -> Path:
    run(origin.parent, "git", "clone", "-q", "--branch", "main", str(origin), str(target))
    return target


def build_sweep(root: Path) -> dict[str, Path | str]:
    """The shared remotes in ``root`` after two clones each ran and pushed one experiment
    (about two minutes of one core: DVC and stage processes, one at a time). Returns the git
    remote, ``root`` and the second run's output."""
    origin, storage = root / "origin.git", root / "dvc-storage"
    run(root, "git", "init", "-q", "--bare", str(origin))
    # what the project commits once: the pipeline, its params and the DVC remote (.dvc/config)
    model = root / "block_classifier.keras"  # outside the clones: every machine reads it
    block_classifier(32, 1000, channels=64).save(model)
    params = tiny_params(None, model={"source": str(model), "preprocessing": "tf"})
    select_variants(params, ("float32", "int8"))
    # latency of a tiny model on a shared runner is noise: the gate checks accuracy and size
    params["check"]["max_latency_regression"] = None
    seed = root / "seed"
    seed.mkdir()
    scratch_project(seed, **params)
    run(seed, "dvc", "remote", "add", "-d", "storage", str(storage))
    if (seed / "dvc.lock").exists():  # a lock whose outputs are not in the remote breaks --pull
        run(seed, "git", "rm", "-q", "dvc.lock")
    run(seed, "git", "commit", "-qam", "DVC remote for sharing experiments")
    run(seed, "git", "push", "-q", str(origin), "HEAD:refs/heads/main")

    first = clone(origin, root / "machine-a")
    run(first, "dvc", "exp", "run", "-n", "calib-4", "-S",
        f"calibration.num_images={SWEEP['calib-4']}")
    run(first, "dvc", "exp", "push", "--run-cache", "origin", "calib-4")

    second = clone(origin, root / "machine-b")
    reran = run(second, "dvc", "exp", "run", "--pull", "-n", "calib-8", "-S",
                f"calibration.num_images={SWEEP['calib-8']}")
    run(second, "dvc", "exp", "push", "--run-cache", "origin", "calib-8")
    return {"origin": origin, "root": root, "second_run": reran}


@pytest.fixture(scope="module")
def shared_sweep(sharing_sweep: Future) -> dict[str, Path | str]:
    """:func:`build_sweep`'s result: tests/conftest.py's ``sharing_sweep`` runs it in a worker
    process, started by tests/test_end_to_end.py when that module runs too (both keep one core
    busy with DVC commands for minutes, so they overlap on CI's 2 cores), else now."""
    return sharing_sweep.result()


def test_second_machine_reuses_the_first_machines_unchanged_stages(shared_sweep) -> None:
    log = shared_sweep["second_run"]
    for stage in ("fetch", "export", "prepare", "evaluate_keras"):  # no calibration param
        assert f"Stage '{stage}' is cached - skipping run" in log, log
    for stage in ("convert@int8", "evaluate@int8"):  # calibration.num_images changed
        assert f"Running stage '{stage}'" in log, log


def test_third_machine_pulls_compares_and_gates(shared_sweep) -> None:
    third = clone(shared_sweep["origin"], shared_sweep["root"] / "machine-c")
    run(third, "dvc", "exp", "pull", "origin", *SWEEP)

    shown = json.loads(run(third, "dvc", "exp", "show", "--json"))
    experiments = {exp["name"]: exp for baseline in shown
                   for exp in baseline.get("experiments") or []}
    assert set(SWEEP) <= set(experiments)
    metrics, variants = {}, {}
    for name, value in SWEEP.items():
        revision = experiments[name]["revs"][0]
        data = revision["data"]
        assert data["params"]["params.yaml"]["data"]["calibration"]["num_images"] == value
        metrics[name] = data["metrics"]["reports/metrics.json"]["data"]
        assert isinstance(metrics[name]["int8"]["top1"], float)
        # the rest of the report (not a DVC metric) travels in the experiment's commit
        variants[name] = json.loads(run(third, "git", "show",
                                        f"{revision['rev']}:reports/variants.json"))
        assert variants[name]["int8"]["failed"] is False
    assert metrics["calib-4"]["keras"] == metrics["calib-8"]["keras"]  # same float baseline

    # the outputs came through the DVC remote: applying an experiment re-runs nothing. Only the
    # latency outputs (cache: false, machine-specific, not shared; their figures are in
    # reports/metrics.json) are missing, and the report that reads them.
    run(third, "dvc", "exp", "apply", "calib-8")
    status = json.loads(run(third, "dvc", "status", "--json") or "{}")
    assert set(status) <= {"benchmark", "report"}
    assert (third / "data/convert/int8/model.tflite").is_file()
    assert (third / "data/evaluate/int8/metrics.json").is_file()

    def gate(baseline: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "stages.check", "--baseline", baseline],
                              cwd=third, capture_output=True, text=True,
                              env={**os.environ, **GIT_ENV})

    done = gate("calib-4")
    assert done.returncode == 0, done.stdout + done.stderr
    table = (third / "reports/check.md").read_text()
    assert "baseline `calib-4`" in table
    size_rows = [line for line in table.splitlines() if line.startswith("| int8 | size")]
    assert size_rows and f"| {variants['calib-4']['int8']['size_bytes']} |" in size_rows[0], table
    assert gate("calib-404").returncode == 2  # an experiment nobody pushed: cannot judge
