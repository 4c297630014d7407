"""Benchmark of the pipeline itself, on real data, all figures from one run on one machine.

Measures, in a scratch copy of the project (nothing is written to the repository):

1. wall time of a cold ``dvc repro`` (and of each stage in it), of a no-op ``dvc repro``, and of
   a one-param change (``calibration.num_images``), with the stages each run re-ran;
2. evaluation throughput of the ``float32``, ``float16``, ``dynamic`` and ``int8`` variants:
   the pipeline's way (decode once in ``prepare``, then ``evaluate`` per variant) against the
   straightforward per-image loop of the usual tutorials (per image: ``tf.io.read_file`` +
   ``tf.io.decode_image`` + central crop + ``tf.image.resize``; the deprecated
   ``tf.lite.Interpreter``; one invoke per image), on the same images, decode counted in both;
3. the evaluation's wall time against the sum of the pure invoke times of the same variants;
4. the benchmark stage's p50 latency against an independent plain-LiteRT timing loop;
5. import overhead of the light stages (``evaluate``, ``benchmark``), which must not import
   TensorFlow.

Usage (from the repository root)::

    python benchmarks/pipeline_benchmark.py --images ../shared/imagenet-sample/val \
        --weights ../shared/models/mobilenet_v2_1.0_224_imagenet.weights.h5

Results are printed as a Markdown report and written as JSON to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
FAST_VARIANTS = ["float32", "float16", "dynamic", "int8"]
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}


def scratch_project(workdir: Path, images: Path, weights: Path) -> Path:
    """Copy the project's tracked files to ``workdir`` as a fresh git repo, params set."""
    project = workdir / "litequant"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                             check=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        if (REPO / name).is_file():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, project / name)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["fetch"].update(source="folder", folder=str(images.resolve()))
    params["model"].update(weights=str(weights.resolve()))
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, **GIT_ENV}
    for command in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "commit", "-qm", "bench"]):
        subprocess.run(command, cwd=project, check=True, env=env)
    return project


def timed_repro(project: Path) -> dict:
    """Run ``dvc repro`` streaming its output; wall time overall and per stage."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=project,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **GIT_ENV})
    stages: dict[str, float] = {}
    current, current_start = None, started
    assert process.stdout is not None
    for line in process.stdout:
        match = re.match(r"Running stage '([^']+)'", line)
        if match:
            now = time.perf_counter()
            if current:
                stages[current] = now - current_start
            current, current_start = match.group(1), now
    process.wait()
    end = time.perf_counter()
    if current:
        stages[current] = end - current_start
    if process.returncode != 0:
        raise SystemExit(f"dvc repro failed in {project}")
    return {"seconds": end - started, "stages": stages}


def set_param(project: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params[section][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def tutorial_loop(project: Path, variant: str, rows: list[dict], size: int,
                  threads: int | None) -> float:
    """Seconds for the per-image tutorial loop (decode + resize + invoke) over ``rows``.

    ``threads=None`` is what tutorials do (the interpreter's default); an explicit count gives
    the tutorial the same threads as the pipeline.
    """
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(
        model_path=str(project / "data/convert" / variant / "model.tflite"), num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    output = interpreter.get_output_details()[0]
    scale, zero_point = detail["quantization"]
    started = time.perf_counter()
    for row in rows:
        raw = tf.io.read_file(str(project / "data/fetch" / row["path"]))
        image = tf.io.decode_image(raw, channels=3, expand_animations=False)
        image = tf.image.central_crop(image, 0.875)
        image = tf.image.resize(image, (size, size))
        x = image.numpy()[None] / 127.5 - 1.0
        if scale:
            x = np.clip(np.round(x / scale + zero_point), -128, 127)
        interpreter.set_tensor(detail["index"], x.astype(detail["dtype"]))
        interpreter.invoke()
        interpreter.get_tensor(output["index"])
    return time.perf_counter() - started


def pure_invoke_seconds(model_path: Path, images: np.ndarray, family: str, batch_size: int,
                        threads: int) -> float:
    """Seconds spent in ``invoke`` alone over pre-quantized batches (one interpreter)."""
    from stages.litert import LiteRTModel

    model = LiteRTModel(model_path, threads=threads, batch_size=batch_size)
    batches = list(model.batches(images, family))
    model.invoke_raw(batches[0])  # allocation and warm-up outside the timing
    total = 0.0
    for batch in batches:
        model._allocate(batch.shape[0])
        model.interpreter.set_tensor(model.input.index, batch)
        begin = time.perf_counter()
        model.interpreter.invoke()
        total += time.perf_counter() - begin
    return total


def plain_litert_p50(model_path: Path, threads: int, runs: int = 50) -> float:
    """p50 ms of single-image invokes with a bare ``ai_edge_litert`` loop (no project code)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path), num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    if detail["shape_signature"][0] == -1:
        interpreter.resize_tensor_input(detail["index"], [1, *detail["shape"][1:]])
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
    data = np.random.default_rng(1).integers(0, 100, detail["shape"]).astype(detail["dtype"])
    interpreter.set_tensor(detail["index"], data)
    for _ in range(5):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        begin = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - begin) * 1000)
    return float(np.median(times))


def import_seconds(module: str, project: Path) -> dict:
    """Wall seconds of ``import <module>`` plus the LiteRT interpreter, and whether TF came in."""
    code = (f"import time; t=time.perf_counter(); import {module}; "
            "import ai_edge_litert.interpreter; import sys; "
            "print(time.perf_counter()-t, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True,
                         text=True, check=True).stdout.split()
    return {"seconds": float(out[0]), "imports_tensorflow": out[1] == "True"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, required=True,
                        help="ImageNet-style folder <folder>/<synset>/<image>")
    parser.add_argument("--weights", type=Path, required=True,
                        help="MobileNetV2 .weights.h5 file")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/pipeline.json")
    parser.add_argument("--keep", action="store_true", help="keep the scratch project")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    workdir = Path(tempfile.mkdtemp(prefix="litequant-bench-"))
    results: dict = {}
    try:
        project = scratch_project(workdir, args.images, args.weights)
        print(f"scratch project: {project}", file=sys.stderr)
        results["cold_repro"] = timed_repro(project)
        results["noop_repro"] = timed_repro(project)
        params = yaml.safe_load((project / "params.yaml").read_text())
        set_param(project, "calibration", "num_images",
                  max(10, params["calibration"]["num_images"] // 2))
        results["calibration_change_repro"] = timed_repro(project)

        sys.path.insert(0, str(project))
        os.chdir(project)
        from stages.export import read_model_info
        from stages.fetch import read_manifest
        from stages.prepare import load_split

        rows = [r for r in read_manifest() if r["split"] == "evaluation"]
        images, _ = load_split("evaluation")
        size = images.shape[1]
        family = read_model_info()["preprocessing"]
        evaluation = {}
        for variant in FAST_VARIANTS:
            begin = time.perf_counter()
            subprocess.run([sys.executable, "-m", "stages.evaluate", variant], cwd=project,
                           check=True, capture_output=True)
            stage_wall = time.perf_counter() - begin
            from stages import evaluate as evaluate_module
            from stages.params import load

            begin = time.perf_counter()
            evaluate_module.evaluate(variant, load())
            in_process = time.perf_counter() - begin
            model_path = project / "data/convert" / variant / "model.tflite"
            threads = load()["evaluate"]["threads"]
            pure = pure_invoke_seconds(model_path, images, family,
                                       load()["evaluate"]["batch_size"], threads)
            tutorial = tutorial_loop(project, variant, rows, size, threads)
            tutorial_default = tutorial_loop(project, variant, rows, size, None)
            evaluation[variant] = {"stage_wall_s": stage_wall, "in_process_s": in_process,
                                   "pure_invoke_s": pure, "tutorial_s": tutorial,
                                   "tutorial_default_threads_s": tutorial_default}
        prepare_s = results["cold_repro"]["stages"].get("prepare", 0.0)
        ours = prepare_s + sum(v["stage_wall_s"] for v in evaluation.values())
        tutorial_total = sum(v["tutorial_s"] for v in evaluation.values())
        tutorial_default_total = sum(v["tutorial_default_threads_s"] for v in evaluation.values())
        decode_share = prepare_s * len(rows) / (len(rows) + len(load_split("calibration")[1]))
        in_process = decode_share + sum(v["in_process_s"] for v in evaluation.values())
        results["evaluation"] = {
            "images": len(rows), "variants": evaluation, "prepare_s": prepare_s,
            "pipeline_total_s": ours, "tutorial_total_s": tutorial_total,
            "speedup_vs_tutorial": tutorial_total / ours,
            "tutorial_default_threads_total_s": tutorial_default_total,
            "speedup_vs_tutorial_default_threads": tutorial_default_total / ours,
            "pipeline_in_process_total_s": in_process,
            "in_process_speedup_vs_tutorial": tutorial_total / in_process,
            "in_process_over_pure_invoke": sum(v["in_process_s"] for v in evaluation.values())
            / sum(v["pure_invoke_s"] for v in evaluation.values()),
            "stage_wall_over_pure_invoke": sum(v["stage_wall_s"] for v in evaluation.values())
            / sum(v["pure_invoke_s"] for v in evaluation.values()),
        }
        latency = {}
        for variant in ("float32", "int8"):
            stage = json.loads((project / "data/benchmark" / variant / "latency.json").read_text())
            for threads, stats in stage["latency"].items():
                plain = plain_litert_p50(project / "data/convert" / variant / "model.tflite",
                                         int(threads))
                latency[f"{variant}_t{threads}"] = {
                    "stage_p50_ms": stats["p50_ms"], "plain_p50_ms": plain,
                    "ratio": stats["p50_ms"] / plain}
        results["latency_check"] = latency
        results["imports"] = {m: import_seconds(m, project)
                              for m in ("stages.evaluate", "stages.benchmark")}
    finally:
        os.chdir(REPO)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))


def render(results: dict) -> str:
    """The results as a Markdown report."""
    lines = ["# Pipeline benchmark", ""]
    for key in ("cold_repro", "noop_repro", "calibration_change_repro"):
        run = results[key]
        stages = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in run["stages"].items())
        lines.append(f"- {key}: {run['seconds']:.1f} s; stages run: {stages or 'none'}")
    e = results["evaluation"]
    lines += ["", f"Evaluation on {e['images']} images (decoded once: prepare "
              f"{e['prepare_s']:.1f}s)",
              "", "| variant | evaluate stage s | in-process s | pure invoke s | tutorial s | "
              "tutorial img/s | pipeline img/s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, v in e["variants"].items():
        lines.append(f"| {name} | {v['stage_wall_s']:.2f} | {v['in_process_s']:.2f} | "
                     f"{v['pure_invoke_s']:.2f} | {v['tutorial_s']:.2f} | "
                     f"{e['images'] / v['tutorial_s']:.1f} | "
                     f"{e['images'] / v['stage_wall_s']:.1f} |")
    lines += ["", f"- pipeline (prepare + 4 evaluate stages) {e['pipeline_total_s']:.1f}s vs "
              f"tutorial loop {e['tutorial_total_s']:.1f}s (same threads): "
              f"**{e['speedup_vs_tutorial']:.2f}x**; vs tutorial with the interpreter's default "
              f"threads {e['tutorial_default_threads_total_s']:.1f}s: "
              f"**{e['speedup_vs_tutorial_default_threads']:.2f}x**",
              f"- in-process (evaluation images' share of prepare + evaluate() calls, no "
              f"process start-up) {e['pipeline_in_process_total_s']:.1f}s: "
              f"{e['in_process_speedup_vs_tutorial']:.2f}x vs the same-threads tutorial",
              f"- evaluation wall / pure invoke: in-process "
              f"**{e['in_process_over_pure_invoke']:.2f}x**, as stage processes "
              f"{e['stage_wall_over_pure_invoke']:.2f}x", ""]
    for name, v in results["latency_check"].items():
        lines.append(f"- latency {name}: benchmark stage p50 {v['stage_p50_ms']:.2f} ms, plain "
                     f"LiteRT loop {v['plain_p50_ms']:.2f} ms, ratio {v['ratio']:.3f}")
    for name, v in results["imports"].items():
        lines.append(f"- import {name} + ai_edge_litert: {v['seconds']:.2f}s, "
                     f"imports TensorFlow: {v['imports_tensorflow']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
