"""Issue 6 item 5: a stage killed at any moment leaves no partial output, and a re-run gives the
clean run's results exactly.

Stages run as subprocesses (``python -m stages.convert int8_plain``) in a tiny project and are
killed with SIGKILL (no cleanup code can run), at a random moment and at the moment their output
is being written.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from litequant.core import atomic
from tests.conftest import (
    REPO,
    run_front_stages,
    small_classifier,
    write_image_folder,
    write_user_model_project,
)

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(".") and
                  p.name.endswith(".tmp")) if folder.is_dir() else []


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env=ENV, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill(process: subprocess.Popen, group: bool = False) -> None:
    """SIGKILL the stage process (``group``: and its children at the same instant)."""
    if group:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)  # returns when every holder of its pipes is gone
    assert process.returncode == -signal.SIGKILL


def conversion_children(project: Path) -> list[int]:
    """Processes still converting in ``project`` (supervised children of stages.convert)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if (proc.name.isdigit() and b"--in-process" in (proc / "cmdline").read_bytes()
                    and os.readlink(proc / "cwd") == str(project)):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def kill_when_writing(args: list[str], cwd: Path, output: Path, timeout: float = 300) -> bool:
    """Start the stage and SIGKILL it as soon as its temporary output folder appears.

    Returns False if the stage finished before the temporary folder was seen.
    """
    process = start(args, cwd)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if temporaries(output.parent):
            kill(process, group=True)  # the writer may be a child: kill it without delay
            return True
        if process.poll() is not None:
            process.communicate()
            return False
        time.sleep(0.001)
    kill(process, group=True)
    raise AssertionError(f"{args} did not write {output} within {timeout} s")


def kill_at_random(args: list[str], cwd: Path, delay: float) -> bool:
    """Start the stage and SIGKILL it after ``delay`` s; False if it finished before that."""
    process = start(args, cwd)
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        kill(process)
        return True
    process.communicate()
    return False


def run(args: list[str], cwd: Path) -> float:
    began = time.monotonic()
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=ENV, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return time.monotonic() - began


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of ``folder`` (relative path -> bytes); must not contain temporaries."""
    files = {p.relative_to(folder).as_posix(): p.read_bytes()
             for p in sorted(folder.rglob("*")) if p.is_file()}
    assert not [name for name in files if name.rsplit("/", 1)[-1].startswith(".")]
    return files


def assert_absent_or_complete(output: Path, clean: dict[str, bytes],
                              comparable: list[str]) -> None:
    """After a kill: the output folder is absent, or complete; nothing else but temporaries."""
    others = [p for p in output.parent.iterdir() if p != output and p not in
              temporaries(output.parent)]
    assert not [p for p in others if p.name == output.name]
    if output.exists():
        files = snapshot(output)
        assert sorted(files) == sorted(clean)
        for name in comparable:
            assert files[name] == clean[name]


@pytest.fixture(scope="module")
def prepared_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny project with fetch, export, prepare and evaluate_keras done (in this process)."""
    root = tmp_path_factory.mktemp("interrupt")
    # a model of a few conv layers: quick to convert, many times
    project = write_user_model_project(root, write_image_folder(root / "images"),
                                       small_classifier(), ["int8_plain"])
    run_front_stages(project)
    return project


@pytest.mark.slow  # kills real stage processes at random moments, then re-runs them
def test_killed_convert_and_evaluate_leave_no_partial_output_and_rerun_exactly(
        prepared_project: Path) -> None:
    project = prepared_project
    rng = random.Random(6)
    convert_args = ["-m", "stages.convert", "int8_plain"]  # the converter alone: no float32 to
    evaluate_args = ["-m", "stages.evaluate", "int8_plain"]  # read (int8's bias correction does)
    converted, evaluated = project / "data/convert/int8_plain", project / "data/evaluate/int8_plain"

    # the clean, uninterrupted run
    convert_seconds = run(convert_args, project)
    evaluate_seconds = run(evaluate_args, project)
    clean_conversion, clean_metrics = snapshot(converted), snapshot(evaluated)
    assert json.loads(clean_conversion["conversion.json"])["status"] == "ok"

    # convert, killed at a random moment and at the moment it writes its output folder (with no
    # previous output, as after DVC removed the stage's outs before running it; a kill over a
    # previous output is test_sigkill_mid_write_keeps_the_previous_output...)
    shutil.rmtree(converted)
    killed = kill_at_random(convert_args, project, rng.uniform(0.2, 0.9) * convert_seconds)
    deadline = time.monotonic() + 10  # only the stage process was killed: its child follows
    while conversion_children(project) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not conversion_children(project), "the converting child outlived its stage"
    assert_absent_or_complete(converted, clean_conversion, ["conversion.json", "model.tflite"])
    for _ in range(3):  # the write takes milliseconds: retry until the kill lands inside it
        shutil.rmtree(converted, ignore_errors=True)
        assert kill_when_writing(convert_args, project, converted)
        assert_absent_or_complete(converted, clean_conversion, ["conversion.json",
                                                                "model.tflite"])
        if temporaries(converted.parent):
            break
    assert temporaries(converted.parent), "no kill landed while the output was written"
    # the re-run removes the temporaries and writes exactly the clean run's output
    run(convert_args, project)
    assert not temporaries(converted.parent)
    assert snapshot(converted) == clean_conversion, f"first kill hit: {killed}"

    # evaluate, killed the same two ways
    shutil.rmtree(evaluated)
    kill_at_random(evaluate_args, project, rng.uniform(0.2, 0.9) * evaluate_seconds)
    assert_absent_or_complete(evaluated, clean_metrics, ["metrics.json"])
    if kill_when_writing(evaluate_args, project, evaluated):
        assert_absent_or_complete(evaluated, clean_metrics, ["metrics.json"])
    run(evaluate_args, project)
    assert not temporaries(evaluated.parent)
    assert snapshot(evaluated) == clean_metrics


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from litequant.core import atomic
    target = Path(sys.argv[1])
    if sys.argv[2] == "folder":
        with atomic.output_folder(target) as tmp:
            (tmp / "half.bin").write_bytes(b"new" * 1000)
            print("writing", flush=True)
            time.sleep(120)
            (tmp / "other.bin").write_bytes(b"new")
    else:
        print("writing", flush=True)
        atomic.write_bytes(target, b"n" * 200_000_000)
""")


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_sigkill_mid_write_keeps_the_previous_output_and_the_next_write_cleans_up(
        tmp_path: Path, kind: str) -> None:
    target = tmp_path / "data" / ("int8" if kind == "folder" else "metrics.json")
    if kind == "folder":
        with atomic.output_folder(target) as tmp:
            (tmp / "old.bin").write_bytes(b"old")
    else:
        atomic.write_bytes(target, b"old")
    process = start(["-c", CHILD, str(target), kind], tmp_path)
    assert process.stdout.readline().strip() == "writing"
    deadline = time.monotonic() + 60
    while not temporaries(target.parent) and time.monotonic() < deadline:
        time.sleep(0.001)
    kill(process)
    leftovers = temporaries(target.parent)
    assert len(leftovers) == 1 and leftovers[0].name.startswith(f".{target.name}.")
    if kind == "folder":
        assert snapshot(target) == {"old.bin": b"old"}
        with atomic.output_folder(target) as tmp:
            (tmp / "new.bin").write_bytes(b"new")
        assert snapshot(target) == {"new.bin": b"new"}
    else:
        assert target.read_bytes() == b"old"
        atomic.write_bytes(target, b"new")
        assert target.read_bytes() == b"new"
    assert not temporaries(target.parent)


DVC_YAML = """
stages:
  convert:
    cmd: mkdir -p data/convert/int8 && echo model > data/convert/int8/model.tflite
    outs:
      - data/convert/int8
  report:
    cmd: ls data/convert > report.txt
    deps:
      - data/convert
    outs:
      - report.txt:
          cache: false
"""


@pytest.mark.skipif(shutil.which("dvc") is None or shutil.which("git") is None,
                    reason="needs the dvc and git commands")
@pytest.mark.slow  # git and five dvc commands
def test_leftover_temporaries_do_not_change_dvc_status(tmp_path: Path) -> None:
    """A killed stage's ``.int8.*.tmp`` inside a directory dependency (``data/convert``) and a
    ``.fetch.*.tmp`` beside an output are invisible to DVC thanks to the project's .dvcignore."""
    def sh(*command: str) -> str:
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                                timeout=120, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
        assert result.returncode == 0, result.stderr
        return result.stdout

    sh("git", "init", "-q")
    sh("dvc", "init", "-q")
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    sh("dvc", "repro", "-q")
    assert "up to date" in sh("dvc", "status")
    (tmp_path / "data/convert/.int8.k1ll3d.tmp").mkdir()
    (tmp_path / "data/convert/.int8.k1ll3d.tmp/model.tflite").write_text("half")
    (tmp_path / "data/.fetch.k1ll3d.tmp").mkdir()
    assert "modified" in sh("dvc", "status")  # DVC's default sees the leftover ...
    shutil.copyfile(REPO / ".dvcignore", tmp_path / ".dvcignore")
    assert "up to date" in sh("dvc", "status")  # ... the project's .dvcignore hides it
