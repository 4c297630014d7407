"""Benchmark of the pipeline itself, on real data, all figures from one run on one machine.

Measures, in a scratch copy of the project (nothing is written to the repository):

1. wall time of a cold ``dvc repro`` (and of each stage in it), of a no-op ``dvc repro``, and of
   a one-param change (``calibration.num_images``), with the stages each run re-ran;
2. evaluation throughput of the ``float32``, ``float16``, ``dynamic`` and ``int8`` variants:
   the pipeline's way (decode once in ``prepare``, then ``evaluate`` per variant) against the
   straightforward per-image loop of the usual tutorials (per image: ``tf.io.read_file`` +
   ``tf.io.decode_image`` + central crop + ``tf.image.resize``; the deprecated
   ``tf.lite.Interpreter`` with its default threads, as tutorials leave it, and again with the
   pipeline's worker count; one invoke per image), on the same images, decode counted in both.
   Compared warm (in-process, TensorFlow already imported) and cold (stage processes against a
   tutorial script that imports TensorFlow), each figure the median of ``--repeats``
   interleaved runs;
3. the evaluation's wall time against the sum of the pure invoke times of the same variants,
   invoked the way the evaluate stage does (worker processes, batches), and each variant's
   single-image invoke time in both runtimes (``tf.lite`` and ``ai_edge_litert``), which shows
   where the two builds' kernels differ;
4. the benchmark stage's p50 latency (the stage run by this script) against an independent
   plain-LiteRT timing loop, interleaved, medians of ``--repeats``;
5. import overhead of the light stages (``evaluate``, ``benchmark``), which must not import
   TensorFlow.

Usage (from the repository root)::

    python benchmarks/pipeline_benchmark.py --images ../shared/imagenet-sample/val \
        --weights ../shared/models/mobilenet_v2_1.0_224_imagenet.weights.h5

Results are printed as a Markdown report and written as JSON to ``--output``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make the ``benchmarks`` package importable
    sys.path.insert(0, str(REPO))

from benchmarks.scratch import GIT_ENV, scratch_project, set_params  # noqa: E402

FAST_VARIANTS = ["float32", "float16", "dynamic", "int8"]


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


_POOL_IMAGES: dict[str, np.ndarray] = {}


def _timed_invokes(job: tuple[str, int, int, str, int]) -> float:
    """Worker: seconds inside ``invoke`` for images ``[lo, hi)``, batches prepared beforehand."""
    from litequant.core.litert import LiteRTModel

    path, lo, hi, family, batch_size = job
    model = LiteRTModel(path, threads=1, batch_size=batch_size)
    batches = list(model.batches(_POOL_IMAGES["images"][lo:hi], family))
    model.invoke_raw(batches[0])  # allocation and XNNPACK weight packing outside the timing
    total = 0.0
    for batch in batches:
        model._allocate(batch.shape[0])
        model.interpreter.set_tensor(model.input.index, batch)
        begin = time.perf_counter()
        model.interpreter.invoke()
        total += time.perf_counter() - begin
    return total


def pure_invoke_seconds(model_path: Path, images: np.ndarray, family: str, batch_size: int,
                        workers: int) -> float:
    """Seconds spent in ``invoke`` alone, laid out as the evaluate stage runs it.

    ``workers`` processes with one single-threaded interpreter each invoke on their half of the
    images at the same time (as :func:`litequant.core.litert.predict_chunks` does), every batch
    already preprocessed and quantized; the result is the slowest worker's invoke time, i.e. the
    wall time of the evaluation if it did nothing but invoke.
    """
    import multiprocessing

    bounds = np.linspace(0, len(images), max(1, workers) + 1).astype(int)
    jobs = [(str(model_path), int(lo), int(hi), family, batch_size)
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    _POOL_IMAGES["images"] = images
    try:
        with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
            return max(pool.map(_timed_invokes, jobs))
    finally:
        _POOL_IMAGES.clear()


def per_image_invoke_ms(model_path: Path, images: np.ndarray, family: str, runtime: str
                        ) -> float:
    """Mean ms of a single-image, single-thread invoke with ``tensorflow`` or ``litert``.

    Both runtimes get the same model and the same quantized inputs; the comparison shows where
    the two builds' kernels differ (``tf.lite.Interpreter`` is the tutorials' runtime).
    """
    if runtime == "tensorflow":
        import tensorflow as tf

        interpreter = tf.lite.Interpreter(model_path=str(model_path), num_threads=1)
    else:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(model_path), num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    from litequant.core.litert import _spec, pixels_to_input

    inputs = pixels_to_input(images, _spec(detail), family)
    interpreter.set_tensor(detail["index"], inputs[:1])
    interpreter.invoke()
    begin = time.perf_counter()
    for index in range(len(inputs)):
        interpreter.set_tensor(detail["index"], inputs[index:index + 1])
        interpreter.invoke()
    return (time.perf_counter() - begin) * 1000.0 / len(inputs)


PLAIN_LOOP = """
import sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter

path, threads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
interpreter = Interpreter(model_path=path, num_threads=threads)
detail = interpreter.get_input_details()[0]
interpreter.resize_tensor_input(detail["index"], [1, *detail["shape"][1:]])
interpreter.allocate_tensors()
rng = np.random.default_rng(0)
if np.issubdtype(detail["dtype"], np.integer):
    info = np.iinfo(detail["dtype"])
    data = rng.integers(info.min, info.max + 1, detail["shape"]).astype(detail["dtype"])
else:
    data = rng.uniform(-1, 1, detail["shape"]).astype(detail["dtype"])
interpreter.set_tensor(detail["index"], data)
for _ in range(5):
    interpreter.invoke()
times, started = [], time.perf_counter()
while time.perf_counter() - started < seconds:
    begin = time.perf_counter()
    interpreter.invoke()
    times.append((time.perf_counter() - begin) * 1000)
print(float(np.median(times)))
"""


def plain_litert_p50(model_path: Path, threads: int, seconds: float = 2.0) -> float:
    """p50 ms of single-image invokes in a bare ``ai_edge_litert`` loop (no project code).

    Runs in a fresh process, as the benchmark stage does, on random inputs over the input
    tensor's whole range, for ``seconds`` of invokes after 5 warm-up runs.
    """
    out = subprocess.run([sys.executable, "-c", PLAIN_LOOP, str(model_path), str(threads),
                          str(seconds)], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def import_seconds(module: str, project: Path) -> dict:
    """Wall seconds of ``import <module>`` plus the LiteRT interpreter, and whether TF came in."""
    code = (f"import time; t=time.perf_counter(); import {module}; "
            "import ai_edge_litert.interpreter; import sys; "
            "print(time.perf_counter()-t, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True,
                         text=True, check=True).stdout.split()
    return {"seconds": float(out[0]), "imports_tensorflow": out[1] == "True"}


def measure_latency(project: Path, repeats: int) -> dict:
    """The benchmark stage's p50 against the plain LiteRT loop, interleaved.

    The stage runs as DVC runs it (``python -m stages.benchmark``: every variant in one
    session), then the plain loop
    times the same model in a fresh process, ``repeats`` times in turn, so both sides see the
    same machine load. Ratios are given of the medians and of the best (lowest) p50 of each side:
    on a shared machine, interference from other tenants only ever adds time, and a two-second
    window of it can move one 2-thread p50 by tens of percent.
    """
    samples: dict[str, dict[str, list[float]]] = {}
    for _ in range(repeats):
        subprocess.run([sys.executable, "-m", "stages.benchmark"], cwd=project, check=True,
                       capture_output=True)
        session = json.loads((project / "data/benchmark/latency.json").read_text())["models"]
        for variant in ("float32", "int8"):
            for threads, stats in session[variant]["latency"].items():
                plain = plain_litert_p50(project / "data/convert" / variant / "model.tflite",
                                         int(threads))
                entry = samples.setdefault(f"{variant}_t{threads}", {})
                entry.setdefault("stage_p50_ms", []).append(stats["p50_ms"])
                entry.setdefault("plain_p50_ms", []).append(plain)
    latency = {}
    for name, entry in samples.items():
        stage_p50, plain = entry["stage_p50_ms"], entry["plain_p50_ms"]
        latency[name] = {"stage_p50_ms": stage_p50, "plain_p50_ms": plain,
                         "ratio_of_medians": float(np.median(stage_p50) / np.median(plain)),
                         "ratio_of_best": float(min(stage_p50) / min(plain))}
    return latency


def seconds_to_import_tensorflow() -> float:
    """Wall seconds of ``import tensorflow`` in a fresh process (a tutorial script pays it)."""
    code = "import time; t=time.perf_counter(); import tensorflow; print(time.perf_counter()-t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return float(out.stdout.split()[-1])


def measure_evaluation(project: Path, prepare_stage_s: float, repeats: int) -> dict:
    """Evaluation of the fast variants: the pipeline's way against the tutorial loop.

    Every figure is the median of ``repeats`` interleaved measurements (variant by variant, all
    ways in turn), so a background hiccup hits one sample, not one side of a ratio.
    """
    from litequant.core import layout
    from litequant.core.params import EvaluateParams, read_section
    from litequant.data.images import decode_chunks
    from stages import evaluate as evaluate_stage

    settings = read_section(EvaluateParams)
    rows = [r for r in layout.read_manifest(layout.FETCH_MANIFEST) if r["split"] == "evaluation"]
    images, _ = layout.load_split(layout.EVALUATION_SPLIT)
    calibration_count = len(layout.load_split(layout.CALIBRATION_SPLIT)[1])
    size = images.shape[1]
    family = layout.read_model_info(layout.MODEL_INFO)["preprocessing"]
    paths = [project / "data/fetch" / row["path"] for row in rows]
    decode = [0.0] * repeats
    samples: dict[str, dict[str, list[float]]] = {v: {} for v in FAST_VARIANTS}
    for repeat in range(repeats):
        begin = time.perf_counter()
        for _ in decode_chunks(paths, (size, size), "decode"):  # as prepare decodes
            pass
        decode[repeat] = time.perf_counter() - begin
        for variant in FAST_VARIANTS:
            model_path = project / "data/convert" / variant / "model.tflite"
            measured = samples[variant]
            begin = time.perf_counter()
            subprocess.run([sys.executable, "-m", "stages.evaluate", variant], cwd=project,
                           check=True, capture_output=True)
            measured.setdefault("stage_wall_s", []).append(time.perf_counter() - begin)
            begin = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # the stage's one-line summary
                evaluate_stage.evaluate(variant, settings)
            measured.setdefault("in_process_s", []).append(time.perf_counter() - begin)
            measured.setdefault("pure_invoke_s", []).append(pure_invoke_seconds(
                model_path, images, family, settings.batch_size, settings.threads))
            measured.setdefault("tutorial_s", []).append(
                tutorial_loop(project, variant, rows, size, None))
            measured.setdefault("tutorial_same_threads_s", []).append(
                tutorial_loop(project, variant, rows, size, settings.threads))
    variants = {v: {k: float(np.median(x)) for k, x in m.items()} for v, m in samples.items()}
    for variant in FAST_VARIANTS:
        model_path = project / "data/convert" / variant / "model.tflite"
        subset = images[:100]
        variants[variant]["tensorflow_invoke_ms"] = per_image_invoke_ms(
            model_path, subset, family, "tensorflow")
        variants[variant]["litert_invoke_ms"] = per_image_invoke_ms(
            model_path, subset, family, "litert")

    def total(key: str) -> float:
        return sum(v[key] for v in variants.values())

    decode_s = float(np.median(decode))
    prepare_share = prepare_stage_s * len(rows) / (len(rows) + calibration_count)
    tf_import = seconds_to_import_tensorflow()
    in_process = decode_s + total("in_process_s")
    stages_wall = prepare_share + total("stage_wall_s")
    ceiling = decode_s + total("pure_invoke_s")
    return {
        "images": len(rows), "repeats": repeats, "workers": settings.threads,
        "batch_size": settings.batch_size, "variants": variants,
        "decode_s": decode_s, "prepare_stage_share_s": prepare_share,
        "tensorflow_import_s": tf_import,
        "tutorial_total_s": total("tutorial_s"),
        "tutorial_same_threads_total_s": total("tutorial_same_threads_s"),
        "pipeline_in_process_s": in_process,
        "pipeline_stages_s": stages_wall,
        # warm against warm: both already imported, decode counted in both
        "speedup_in_process": total("tutorial_s") / in_process,
        "speedup_in_process_vs_same_threads": total("tutorial_same_threads_s") / in_process,
        # cold against cold: the stage processes against a tutorial script that imports TF
        "speedup_cold": (tf_import + total("tutorial_s")) / stages_wall,
        # stage processes against the warm tutorial: the least favourable pairing
        "speedup_stages_vs_warm_tutorial": total("tutorial_s") / stages_wall,
        "in_process_over_pure_invoke": total("in_process_s") / total("pure_invoke_s"),
        "stages_over_pure_invoke": total("stage_wall_s") / total("pure_invoke_s"),
        # no overhead at all: decode once + invoke only
        "zero_overhead_speedup": total("tutorial_s") / ceiling,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, required=True,
                        help="ImageNet-style folder <folder>/<synset>/<image>")
    parser.add_argument("--weights", type=Path, required=True,
                        help="MobileNetV2 .weights.h5 file")
    parser.add_argument("--repeats", type=int, default=5,
                        help="interleaved repeats of each evaluation measurement (median)")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/pipeline.json")
    parser.add_argument("--keep", action="store_true", help="keep the scratch project")
    parser.add_argument("--repro-only", action="store_true",
                        help="only time the cold, no-op and calibration-change dvc repro")
    parser.add_argument("--compare", metavar="REV",
                        help="only time a cold dvc repro of git revision REV and of this "
                             "checkout, one after the other in this run, and their ratio")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.compare:
        return print(render_comparison(compare_cold_repro(args.compare, args.images,
                                                          args.weights)))
    workdir = Path(tempfile.mkdtemp(prefix="litequant-bench-"))
    results: dict = {}
    try:
        project = scratch_project(
            workdir / "litequant",
            fetch={"source": "folder", "folder": str(args.images.resolve())},
            model={"weights": str(args.weights.resolve())})
        print(f"scratch project: {project}", file=sys.stderr)
        results["cold_repro"] = timed_repro(project)
        results["noop_repro"] = timed_repro(project)
        params = yaml.safe_load((project / "params.yaml").read_text())
        set_params(project, calibration={
            "num_images": max(10, params["calibration"]["num_images"] // 2)})
        results["calibration_change_repro"] = timed_repro(project)
        if args.repro_only:
            return print(render_repro(results))

        sys.path.insert(0, str(project))
        os.chdir(project)
        results["evaluation"] = measure_evaluation(
            project, results["cold_repro"]["stages"].get("prepare", 0.0), args.repeats)
        latency = measure_latency(project, args.repeats)
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


def compare_cold_repro(revision: str, images: Path, weights: Path) -> dict[str, dict]:
    """Cold ``dvc repro`` of ``revision`` and of this checkout, same params, one after the other
    (scratch copies removed afterwards): ``{label: timed_repro result}``."""
    sources = {"source": "folder", "folder": str(images.resolve())}
    results = {}
    for label, rev in ((revision, revision), ("this checkout", None)):
        workdir = Path(tempfile.mkdtemp(prefix="litequant-compare-"))
        try:
            project = scratch_project(workdir / "litequant", revision=rev, fetch=sources,
                                      model={"weights": str(weights.resolve())})
            print(f"cold dvc repro of {label} in {project}", file=sys.stderr)
            results[label] = timed_repro(project)
            results[label]["variants"] = json.loads(
                (project / "reports/variants.json").read_text())
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


def render_comparison(results: dict[str, dict]) -> str:
    """Both cold runs: total, the convert stages' sum, and the ratio of this checkout's."""
    lines = ["# Cold dvc repro, two revisions in one run", "",
             "| revision | cold repro s | convert stages s | stages run |", "|---|---:|---:|---:|"]
    for label, run in results.items():
        convert = sum(s for name, s in run["stages"].items() if name.startswith("convert@"))
        lines.append(f"| {label} | {run['seconds']:.1f} | {convert:.1f} | {len(run['stages'])} |")
    before, after = (run["seconds"] for run in results.values())
    lines += ["", f"this checkout / {next(iter(results))}: {after / before:.2f}x the wall time"]
    same, differ = compare_values(*(run["variants"] for run in results.values()))
    lines += ["", f"reports/variants.json: {same} values identical, {len(differ)} differ "
                  "(latency, speed-up and session values left out: they differ run to run)"]
    lines += [f"- {path}: {a!r} -> {b!r}" for path, a, b in differ[:30]]
    return "\n".join(lines)


#: Keys whose values are timings or describe a measurement session.
TIMING_KEYS = ("latency", "speedup", "session", "contended", "load", "_ms", "seconds", "utc",
               "rounds")


def compare_values(before: Any, after: Any, path: str = "") -> tuple[int, list[tuple]]:
    """How many leaf values of two JSON documents are equal, and the ``(path, before, after)``
    of those that differ, keys naming a timing left out."""
    if isinstance(before, dict) and isinstance(after, dict):
        same, differ = 0, []
        for key in sorted(set(before) | set(after)):
            if any(part in key for part in TIMING_KEYS):
                continue
            if key not in before or key not in after:
                differ.append((f"{path}.{key}", before.get(key), after.get(key)))
                continue
            s, d = compare_values(before[key], after[key], f"{path}.{key}")
            same, differ = same + s, differ + d
        return same, differ
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        same, differ = 0, []
        for index, (a, b) in enumerate(zip(before, after, strict=True)):
            s, d = compare_values(a, b, f"{path}[{index}]")
            same, differ = same + s, differ + d
        return same, differ
    return (1, []) if before == after else (0, [(path, before, after)])


def render_repro(results: dict) -> str:
    """The three timed ``dvc repro`` runs as Markdown lines."""
    lines = ["# Pipeline benchmark", ""]
    for key in ("cold_repro", "noop_repro", "calibration_change_repro"):
        run = results[key]
        stages = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in run["stages"].items())
        lines.append(f"- {key}: {run['seconds']:.1f} s; stages run: {stages or 'none'}")
    return "\n".join(lines)


def render(results: dict) -> str:
    """The results as a Markdown report."""
    lines = render_repro(results).split("\n")
    e = results["evaluation"]
    n = e["images"]
    lines += ["", f"Evaluation of {len(e['variants'])} variants on {n} images, median of "
              f"{e['repeats']} interleaved runs; evaluate: {e['workers']} worker process(es), "
              f"batch {e['batch_size']}. Decoding the {n} images once: {e['decode_s']:.2f}s "
              f"in-process ({e['prepare_stage_share_s']:.2f}s as their share of the prepare "
              "stage).", "",
              "| variant | evaluate stage s | in-process s | pure invoke s | tutorial s "
              "| tutorial (same threads) s | pipeline img/s | tutorial img/s "
              "| 1-thread invoke ms: tf.lite / ai_edge_litert |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, v in e["variants"].items():
        lines.append(f"| {name} | {v['stage_wall_s']:.2f} | {v['in_process_s']:.2f} | "
                     f"{v['pure_invoke_s']:.2f} | {v['tutorial_s']:.2f} | "
                     f"{v['tutorial_same_threads_s']:.2f} | {n / v['in_process_s']:.0f} | "
                     f"{n / v['tutorial_s']:.0f} | {v['tensorflow_invoke_ms']:.1f} / "
                     f"{v['litert_invoke_ms']:.1f} |")
    lines += ["",
              "Speed-up against the tutorial loop (interpreter's default threads; decode counted "
              "in both):",
              f"- warm, in-process (decode {e['decode_s']:.2f}s + evaluate() calls "
              f"{e['pipeline_in_process_s'] - e['decode_s']:.2f}s vs tutorial "
              f"{e['tutorial_total_s']:.2f}s): **{e['speedup_in_process']:.2f}x** "
              f"({e['speedup_in_process_vs_same_threads']:.2f}x vs the tutorial given "
              f"{e['workers']} threads, {e['tutorial_same_threads_total_s']:.2f}s)",
              f"- cold, processes (prepare share + 4 evaluate stages "
              f"{e['pipeline_stages_s']:.2f}s vs a tutorial script: import tensorflow "
              f"{e['tensorflow_import_s']:.2f}s + loops): **{e['speedup_cold']:.2f}x**",
              "- stage processes vs the warm tutorial: "
              f"{e['speedup_stages_vs_warm_tutorial']:.2f}x",
              f"- with no overhead at all (decode once + pure invoke): "
              f"{e['zero_overhead_speedup']:.2f}x",
              f"- evaluation wall / pure invoke: in-process "
              f"**{e['in_process_over_pure_invoke']:.2f}x**, as stage processes "
              f"{e['stages_over_pure_invoke']:.2f}x", ""]
    lines += ["| latency | benchmark stage p50s (ms) | plain LiteRT loop p50s (ms) "
              "| ratio of medians | ratio of best |", "|---|---|---|---:|---:|"]
    for name, v in results["latency_check"].items():
        stage = ", ".join(f"{x:.2f}" for x in v["stage_p50_ms"])
        plain = ", ".join(f"{x:.2f}" for x in v["plain_p50_ms"])
        lines.append(f"| {name} | {stage} | {plain} | {v['ratio_of_medians']:.3f} | "
                     f"{v['ratio_of_best']:.3f} |")
    lines.append("")
    for name, v in results["imports"].items():
        lines.append(f"- import {name} + ai_edge_litert: {v['seconds']:.2f}s, "
                     f"imports TensorFlow: {v['imports_tensorflow']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
