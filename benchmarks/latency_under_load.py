"""Speed-ups under a CPU hog: the acceptance measurement of the single benchmark session.

On a scratch copy of the project (../shared data, see :mod:`benchmarks.scratch`):

1. a clean full ``dvc repro`` (committed, so experiments have a baseline);
2. ``dvc exp run -S calibration.num_images=50`` while a CPU hog (one busy process per core)
   runs, so the benchmark stage re-measures every variant under load;

then prints each variant's speed-up vs float32 (``reports/variants.json``) of both runs and the
relative change of int8's, which should stay within 25 % because every model of a session sees
the same load, at every thread count the session did not find contended: at a thread count
whose threads did not have free cores (``contended_threads``, with the load other processes
caused, ``other_load_cores``) the report gives no speed-up and says why. It also reports every
stderr line the commands printed (TensorFlow/LiteRT leaks, DVC warnings), which should be none.
Run from the repository root::

    nice -n 10 python benchmarks/latency_under_load.py /tmp/litequant-load

Takes two full pipeline runs (about 10 minutes on a 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scratch import GIT_ENV, scratch_project  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _hog() -> None:
    while True:
        pass


def _run(project: Path, log: Path, *command: str) -> tuple[float, list[str]]:
    """Run a command; returns its wall time and its stderr lines (also saved in ``log``)."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=project, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV})
    log.write_text(f"$ {' '.join(command)}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed (see {log})")
    return time.perf_counter() - started, [line for line in done.stderr.splitlines() if line]


def _speedups(project: Path) -> dict[str, Any]:
    document = json.loads((project / "reports/variants.json").read_text())
    session = document["latency_session"]
    return {"session": session["id"], "other_load_cores": session.get("other_load_cores"),
            "contended_threads": session.get("contended_threads"),
            **{name: {key: row[key] for key in row if key.startswith("speedup_t")}
               for name, row in document.items() if isinstance(row, dict)
               and any(key.startswith("speedup_t") for key in row)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="an empty folder for the scratch project")
    args = parser.parse_args(argv)
    project = scratch_project(
        args.root, fetch={"source": "folder", "folder": str(SHARED / "imagenet-sample/val")},
        model={"weights": str(SHARED / "models/mobilenet_v2_1.0_224_imagenet.weights.h5")})
    python = sys.executable
    clean_time, clean_err = _run(project, args.root / "repro.log", python, "-m", "dvc", "repro")
    subprocess.run(["git", "add", "-A"], cwd=project, check=True, env={**os.environ, **GIT_ENV})
    subprocess.run(["git", "commit", "-qm", "clean run"], cwd=project, check=True,
                   env={**os.environ, **GIT_ENV})
    clean = _speedups(project)
    hogs = [multiprocessing.Process(target=_hog, daemon=True) for _ in range(os.cpu_count() or 1)]
    for hog in hogs:
        hog.start()
    try:
        load_time, load_err = _run(project, args.root / "exp_run.log", python, "-m", "dvc",
                                   "exp", "run", "-S", "calibration.num_images=50")
    finally:
        for hog in hogs:
            hog.terminate()
    loaded = _speedups(project)
    result = {"cores": os.cpu_count(), "hog_processes": len(hogs),
              "clean": clean, "under_load": loaded,
              "seconds": {"clean_repro": round(clean_time), "exp_run_under_load": round(load_time)},
              "stderr_lines": {"repro": clean_err, "exp_run": load_err}}
    for threads in sorted({k for row in clean.values() if isinstance(row, dict) for k in row}):
        before, after = clean["int8"].get(threads), loaded["int8"].get(threads)
        if before and after:
            result[f"int8_{threads}_change"] = round(after / before - 1, 3)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
