"""Measure ai-edge-quantizer variants against the TF converter's on the real shared models.

    nice -n 10 python benchmarks/edge_quantizer_study.py [--models v2 v1] [--out FILE.json]

For each model (``../shared/models/mobilenet_v2_1.0_224_imagenet.keras``,
``mobilenet_v1_0.5_160_imagenet.keras``): the 300 shared photos are split with a seeded
permutation into 100 calibration and 200 evaluation images (87.5% central crop + bilinear resize,
:func:`litequant.data.images.load_resized`; ``tf`` preprocessing x/127.5 - 1; label = row of the
synset in ``classes.tsv``). The ``.keras`` model is converted with ``tf.lite.TFLiteConverter`` to
``float32``, ``dynamic`` and ``int8`` (int8 I/O, the 100 calibration images), as the pipeline's
convert stage does; then every :data:`litequant.quantize.edge_quantizer.EDGE_QUANTIZER_VARIANTS`
entry is built from the ``float32`` bytes (timed; static int8 with the default ``global``
calibration ranges, plus ``static_int8_minmax@moving_average``: the library's own
moving-average ranges). Every model is evaluated in LiteRT (top-1 vs labels, top-1 agreement
with the float32 ``.tflite`` and with Keras), and its latency is measured at 1 thread,
interleaved: ``--rounds`` rounds, each running every model ``--runs`` times after a
warm-up, so that all models share the same machine conditions; p50 is over all runs.

TensorFlow is imported here (to build the float ``.tflite`` and the TF reference variants) and
never by :mod:`litequant.quantize.edge_quantizer`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from litequant.data.images import load_resized  # noqa: E402
from litequant.quantize import edge_quantizer as eq  # noqa: E402

SHARED = ROOT.parent / "shared"
MODELS = {
    "v2": ("mobilenet_v2_1.0_224_imagenet.keras", 224),
    "v1": ("mobilenet_v1_0.5_160_imagenet.keras", 160),
}


def load_images(size: int, seed: int, num_calibration: int):
    """``(calibration float32, evaluation float32, evaluation labels int)`` in [-1, 1]."""
    val = SHARED / "imagenet-sample" / "val"
    classes = [line.split("\t") for line in
               (SHARED / "imagenet-sample" / "classes.tsv").read_text().splitlines()[1:]]
    index = {synset: int(i) for i, synset, *_ in classes}
    files = sorted(p for p in val.glob("*/*") if p.is_file())
    labels = np.array([index[p.parent.name] for p in files])
    pixels = np.stack([load_resized(p, (size, size)) for p in files])
    inputs = pixels.astype(np.float32) / 127.5 - 1.0
    order = np.random.default_rng(seed).permutation(len(files))
    cal, ev = order[:num_calibration], order[num_calibration:]
    return inputs[np.sort(cal)], inputs[np.sort(ev)], labels[np.sort(ev)]


def tf_variants(keras_path: Path, calibration: np.ndarray) -> tuple[dict[str, dict], object]:
    """float32 / dynamic / int8 via the TF converter; each ``{"bytes" or "error", "seconds"}``."""
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(keras_path, compile=False)
    out = {}
    for variant in ("float32", "dynamic", "int8"):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if variant != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if variant == "int8":
            converter.representative_dataset = lambda: ([x[None]] for x in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        started = time.perf_counter()
        try:
            out[variant] = {"bytes": converter.convert()}
        except Exception as error:  # noqa: BLE001 - recorded
            out[variant] = {"error": f"{type(error).__name__}: {error}"}
        out[variant]["seconds"] = time.perf_counter() - started
    return out, model


class Runner:
    """One LiteRT interpreter; float inputs are quantized with the model's own scale/zero point."""

    def __init__(self, model: bytes, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_content=model, num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def feed(self, x: np.ndarray) -> None:
        dtype = self.input["dtype"]
        scale, zero = self.input["quantization"]
        if np.issubdtype(dtype, np.integer) and scale:
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        self.interpreter.set_tensor(self.input["index"], x.astype(dtype))

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.feed(x)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])
        scale, zero = self.output["quantization"]
        if np.issubdtype(out.dtype, np.integer) and scale:
            out = (out.astype(np.float32) - zero) * scale
        return out.astype(np.float32)


def evaluate(model: bytes, inputs: np.ndarray) -> np.ndarray:
    runner = Runner(model, threads=os.cpu_count() or 1)
    return np.array([int(np.argmax(runner.predict(x[None]))) for x in inputs])


def latencies(models: dict[str, bytes], sample: np.ndarray, rounds: int, runs: int,
              warmup: int) -> dict[str, list[float]]:
    runners = {name: Runner(model, threads=1) for name, model in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, runner in runners.items():
            runner.feed(sample)
            for _ in range(warmup):
                runner.interpreter.invoke()
            for _ in range(runs):
                begin = time.perf_counter()
                runner.interpreter.invoke()
                times[name].append((time.perf_counter() - begin) * 1000.0)
    return times


def study(key: str, args: argparse.Namespace) -> dict:
    filename, size = MODELS[key]
    print(f"== {filename}", flush=True)
    calibration, evaluation, labels = load_images(size, args.seed, args.calibration)
    tf_models, keras_model = tf_variants(SHARED / "models" / filename, calibration)
    keras_top = np.argmax(keras_model.predict(evaluation, batch_size=25, verbose=0), axis=1)
    float_bytes = tf_models["float32"]["bytes"]
    rows = {f"tf:{name}": {**info, "tool": "tf"} for name, info in tf_models.items()}
    jobs = [(variant, variant, "global") for variant in eq.EDGE_QUANTIZER_VARIANTS]
    jobs.append(("static_int8_minmax@moving_average", "static_int8_minmax", "moving_average"))
    for name, variant, ranges in jobs:
        spec = eq.EDGE_QUANTIZER_VARIANTS[variant]
        started = time.perf_counter()
        try:
            model, recipe = eq.quantize(float_bytes, variant,
                                        calibration if spec.needs_calibration else None,
                                        ranges=ranges)
            row = {"bytes": model, "recipe": recipe}
        except Exception as error:  # noqa: BLE001 - recorded as a failed variant
            row = {"error": f"{type(error).__name__}: {' '.join(str(error).split())[:600]}"}
        row["seconds"] = time.perf_counter() - started
        rows[f"aeq:{name}"] = {**row, "tool": "ai-edge-quantizer"}
        print(f"  {name}: {row.get('error') or len(row['bytes'])} "
              f"({row['seconds']:.1f} s)", flush=True)
    ok = {name: row for name, row in rows.items() if "bytes" in row}
    float_top = evaluate(float_bytes, evaluation)
    for name, row in ok.items():
        top = float_top if name == "tf:float32" else evaluate(row["bytes"], evaluation)
        row.update(top1=float(np.mean(top == labels)),
                   agreement=float(np.mean(top == float_top)),
                   agreement_keras=float(np.mean(top == keras_top)))
        if name.startswith("aeq:") or name == "tf:int8":
            try:
                row["output_errors"] = eq.output_errors(float_bytes, row["bytes"],
                                                        evaluation[:args.validate])
            except Exception as error:  # noqa: BLE001
                row["output_errors"] = {"error": f"{type(error).__name__}: {error}"}
    times = latencies({name: row["bytes"] for name, row in ok.items()}, evaluation[:1],
                      args.rounds, args.runs, args.warmup)
    for name, row in ok.items():
        row["p50_ms"] = float(np.median(times[name]))
        row["round_p50_ms"] = [float(np.median(times[name][i * args.runs:(i + 1) * args.runs]))
                               for i in range(args.rounds)]
    result = {"model": filename, "keras_top1": float(np.mean(keras_top == labels)),
              "float_tflite_vs_keras": float(np.mean(float_top == keras_top)),
              "num_calibration": len(calibration), "num_evaluation": len(evaluation),
              "rows": {}}
    for name, row in rows.items():
        result["rows"][name] = {k: v for k, v in row.items() if k != "bytes"}
        if "bytes" in row:
            result["rows"][name]["size_bytes"] = len(row["bytes"])
    return result


def table(result: dict) -> str:
    rows = result["rows"]
    float_row = rows["tf:float32"]
    lines = [f"### {result['model']} ({result['num_evaluation']} eval images, "
             f"Keras top-1 {result['keras_top1']:.3f}, float32 tflite = Keras on "
             f"{result['float_tflite_vs_keras']:.3f})", "",
             "| variant | tool | size MB | x int8 size | top-1 | agreement | p50 ms (1 thr) | "
             "x float32 | quantize s | out cos / SNR |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    int8_size = rows.get("aeq:weight_only_int8", {}).get("size_bytes")
    for name, row in rows.items():
        variant = name.split(":", 1)[1]
        if "error" in row:
            lines.append(f"| {variant} | {row['tool']} | FAILED: {row['error'][:160]} "
                         f"| | | | | | {row['seconds']:.1f} | |")
            continue
        errors = row.get("output_errors") or {}
        quality = (f"{errors['cosine_similarity']:.4f} / {errors['snr']:.0f}"
                   if "snr" in errors else "")
        ratio = f"{row['size_bytes'] / int8_size:.2f}" if int8_size else ""
        lines.append(
            f"| {variant} | {row['tool']} | {row['size_bytes'] / 1e6:.2f} | {ratio} | "
            f"{row['top1']:.3f} | {row['agreement']:.3f} | {row['p50_ms']:.2f} | "
            f"{row['p50_ms'] / float_row['p50_ms']:.2f} | {row['seconds']:.1f} | {quality} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibration", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--validate", type=int, default=10,
                        help="evaluation images fed to ai-edge-quantizer's validate()")
    parser.add_argument("--out", type=Path, default=Path("/tmp/edge_quantizer_study.json"))
    args = parser.parse_args(argv)
    results = [study(key, args) for key in args.models]
    args.out.write_text(json.dumps(results, indent=1, default=str))
    for result in results:
        print(table(result), "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
