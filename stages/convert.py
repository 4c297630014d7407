"""Stage ``convert@<variant>``: convert the exported SavedModel to one LiteRT variant.

``python -m stages.convert <variant>`` reads ``params.yaml`` sections ``convert`` and (for
calibrated variants) ``calibration``, ``data/export/saved_model`` and ``data/prepare/
calibration.npz``, and writes ``data/convert/<variant>/``:

* ``model.tflite``: the converted model (absent when the conversion failed);
* ``conversion.json``: status (``ok``/``failed`` with the converter's message), size, the
  input/output dtypes and quantization, and the calibration data used.

Variants:
    ``float32``   plain conversion, float weights and activations;
    ``float16``   weights stored as float16 (dequantized to float32 at load);
    ``dynamic``   dynamic-range: int8 weights, float activations quantized on the fly;
    ``int8``      full integer: int8 weights and activations, int8 input and output;
    ``int16x8``   16-bit activations, 8-bit weights, int16 input and output;
    ``int8_selective``  ``int8`` except the ``convert.variants.int8_selective.float_layers``
                  layers with the largest quantization error in ``reports/layer_errors.csv``
                  (stage ``layer_errors``), which stay float (the converter's denylist, applied
                  through ``tf.lite.experimental.QuantizationDebugger``); int8 input and output.

Calibrated variants (``int8``, ``int16x8``, ``int8_selective``) use ``calibration.num_images``
images of the calibration split (disjoint from evaluation) with exactly the evaluation
preprocessing, or, for ``calibration.source`` ``random_normal``/``random_uniform``, the noise
many tutorials feed (the result is marked as not representative in every report).

A conversion that fails is recorded (``status: failed``) and the stage still succeeds, so the
other variants complete and the report shows this one as FAILED; ``stages.check`` fails on it.
The conversion runs in a child process, so that even a converter crash (a segfault or abort in
TensorFlow's C++ code) is recorded that way instead of stopping ``dvc repro``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from stages import atomic
from stages.cli import native_stderr_silenced, run_stage
from stages.errors import PipelineError
from stages.export import read_model_info
from stages.params import (
    VARIANT_KINDS,
    CalibrationParams,
    calibration_params,
    check_variant,
    load,
    selective_float_layers,
)
from stages.prepare import load_split
from stages.preprocessing import preprocess

OUTPUT = Path("data/convert")


def calibration_inputs(params: CalibrationParams, family: str,
                       prepare_dir: Path = Path("data/prepare")) -> np.ndarray:
    """The representative inputs: ``float32`` ``(num_images, h, w, 3)`` in the model's range.

    ``images``: the first ``num_images`` of the calibration split after a seeded permutation,
    preprocessed exactly as evaluation images are. ``random_normal``/``random_uniform``: standard
    normal / uniform [0, 1) noise of the same shape (what many tutorials do; not representative).
    """
    images, _ = load_split("calibration", prepare_dir)
    if params.num_images > len(images):
        raise PipelineError(f"params.yaml: calibration.num_images={params.num_images} is larger "
                            f"than the calibration split ({len(images)} images, "
                            "fetch.calibration_size)")
    rng = np.random.default_rng(params.seed)
    shape = (params.num_images, *images.shape[1:])
    if params.source == "random_normal":
        return rng.standard_normal(shape).astype(np.float32)
    if params.source == "random_uniform":
        return rng.random(shape, dtype=np.float32)
    chosen = np.sort(rng.permutation(len(images))[:params.num_images])
    return preprocess(images[chosen], family)


def build_converter(saved_model: Path, variant: str, representative: np.ndarray | None):
    """A ``tf.lite.TFLiteConverter`` set up for ``variant`` (not yet converted).

    ``int8_selective`` gets the ``int8`` settings; its denylist is applied by
    :func:`convert_selective`.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if variant == "float32":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
        return converter
    if variant == "dynamic":
        return converter
    assert representative is not None
    converter.representative_dataset = representative_dataset(representative)
    if variant in ("int8", "int8_selective"):
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif variant == "int16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        converter.inference_input_type = tf.int16
        converter.inference_output_type = tf.int16
    else:
        raise PipelineError(f"unknown variant {variant!r}")
    return converter


def convert_variant(saved_model: Path, variant: str,
                    representative: np.ndarray | None = None,
                    configure: Callable[[Any], None] | None = None) -> bytes:
    """Convert ``saved_model`` to the ``variant`` recipe; returns the ``.tflite`` bytes.

    ``representative`` (``float32`` ``(N, h, w, 3)``, model input range) is required for the
    calibrated variants. ``configure`` may adjust the converter further (e.g. a denylist).
    Raises whatever the converter raises.
    """
    if VARIANT_KINDS.get(variant) and representative is None:
        raise PipelineError(f"variant {variant} needs calibration data")
    converter = build_converter(saved_model, variant, representative)
    if configure is not None:
        configure(converter)
    with native_stderr_silenced():
        return converter.convert()


def representative_dataset(images: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """A converter/debugger dataset factory: one ``[image[None]]`` sample per image."""
    def dataset() -> Iterator[list[np.ndarray]]:
        for image in images:
            yield [image[None]]
    return dataset


def convert_selective(saved_model: Path, representative: np.ndarray,
                      denylist: list[str]) -> bytes:
    """Full-integer int8 conversion except the ops producing the ``denylist`` tensors.

    ``denylist`` holds TFLite tensor names (column ``tensor_name`` of ``layer_errors.csv``);
    those ops stay float, with quantize/dequantize ops around them. Input and output stay int8
    (``fully_quantize``). Raises whatever the converter raises.
    """
    import tensorflow as tf

    converter = build_converter(saved_model, "int8", representative)
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(denylist),
                                                            fully_quantize=True)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=representative_dataset(representative),
        debug_options=options)
    return debugger.get_nondebug_quantized_model()


def tensor_summary(model_bytes: bytes) -> dict[str, Any]:
    """Input/output dtype, shape signature and quantization of a converted model.

    Also proves that LiteRT can run the model: allocates its tensors and invokes it once on a
    zero input. Raises ``RuntimeError``/``ValueError`` with LiteRT's message when it cannot.
    """
    from ai_edge_litert.interpreter import Interpreter

    with native_stderr_silenced():
        interpreter = Interpreter(model_content=model_bytes)
        interpreter.allocate_tensors()
    first_input = interpreter.get_input_details()[0]
    interpreter.set_tensor(first_input["index"],
                           np.zeros(first_input["shape"], dtype=first_input["dtype"]))
    interpreter.invoke()

    def describe(detail: dict) -> dict[str, Any]:
        scale, zero_point = detail["quantization"]
        return {"dtype": np.dtype(detail["dtype"]).name, "scale": float(scale),
                "zero_point": int(zero_point),
                "shape": [int(d) for d in detail["shape_signature"]]}

    return {"input": describe(interpreter.get_input_details()[0]),
            "output": describe(interpreter.get_output_details()[0])}


def _new_record(variant: str, params: dict[str, Any]) -> dict[str, Any]:
    """The ``conversion.json`` fields known before converting: variant and calibration data."""
    record: dict[str, Any] = {"variant": variant, "calibration": None}
    if VARIANT_KINDS[variant]:
        calibration = calibration_params(params)
        record["calibration"] = {"source": calibration.source,
                                 "num_images": calibration.num_images,
                                 "seed": calibration.seed,
                                 "representative": calibration.source == "images"}
    return record


def _record_failure(record: dict[str, Any], what: str, error: Exception,
                    output_root: Path) -> dict[str, Any]:
    """Write a ``status: failed`` record (no model) so the other variants still complete."""
    message = " ".join(str(error).split())[:2000] or repr(error)
    record.update(status="failed", error=f"{what}: {message}")
    with atomic.output_folder(output_root / record["variant"]) as tmp:
        atomic.write_json(tmp / "conversion.json", record)
    print(f"convert: {record['variant']} FAILED: {record['error'][:300]}", file=sys.stderr)
    return record


def convert(variant: str, params: dict[str, Any], export_dir: Path = Path("data/export"),
            prepare_dir: Path = Path("data/prepare"), output_root: Path = OUTPUT,
            layer_errors_csv: Path = Path("reports/layer_errors.csv")) -> dict[str, Any]:
    """Convert one variant and write ``data/convert/<variant>/``; returns ``conversion.json``.

    ``layer_errors_csv`` (the ``layer_errors`` stage's output) is read by ``int8_selective``
    only.
    """
    check_variant(params, variant)
    info = read_model_info(export_dir)
    record = _new_record(variant, params)
    representative = None
    if VARIANT_KINDS[variant]:
        representative = calibration_inputs(calibration_params(params), info["preprocessing"],
                                            prepare_dir)
    saved_model = Path(export_dir) / "saved_model"
    if not saved_model.is_dir():
        raise PipelineError(f"{saved_model} not found: run the export stage first")
    try:
        if variant == "int8_selective":
            from stages.layer_errors import worst_layers

            worst = worst_layers(selective_float_layers(params), layer_errors_csv)
            record["denylist"] = [row["tensor_name"] for row in worst]
            record["float_keras_layers"] = [row["keras_layer"] for row in worst]
            model_bytes = convert_selective(saved_model, representative, record["denylist"])
        else:
            model_bytes = convert_variant(saved_model, variant, representative)
    except PipelineError:
        raise
    except Exception as error:  # the converter raises many types; record it, keep going
        return _record_failure(record, "the converter failed", error, output_root)
    try:
        tensors = tensor_summary(model_bytes)
    except (RuntimeError, ValueError) as error:
        return _record_failure(record, "LiteRT cannot run the converted model", error,
                               output_root)
    record.update(status="ok", size_bytes=len(model_bytes), **tensors)
    with atomic.output_folder(output_root / variant) as tmp:
        (tmp / "model.tflite").write_bytes(model_bytes)
        atomic.write_json(tmp / "conversion.json", record)
    calibrated = (f", calibrated on {record['calibration']['num_images']} "
                  f"{record['calibration']['source']}" if record["calibration"] else "")
    print(f"convert: {variant}: {len(model_bytes):,} bytes{calibrated}")
    return record


#: Signals by which the converter itself crashes (TensorFlow's C++ code segfaults or aborts on
#: some models, e.g. infinite calibration ranges); a stop (SIGKILL, SIGTERM, Ctrl-C) is not one.
CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGFPE,
                           signal.SIGILL})
_SUPERVISED = "LITEQUANT_CONVERT_SUPERVISED"


def convert_supervised(variant: str, params_path: str, verbose: bool = False) -> None:
    """Run :func:`convert` in a child process and record a converter crash as a failed variant.

    A crash kills only the child: this process then writes ``status: failed`` ("the converter
    crashed (SIGSEGV)") and succeeds, like any other conversion failure. A child stopped by
    another signal, or failing with a :class:`PipelineError` (already printed by the child),
    ends this process with the same exit code. The child dies with this process (SIGKILL).
    """
    params = load(params_path)
    check_variant(params, variant)
    command = [sys.executable, "-m", "stages.convert", variant, "--params", params_path,
               "--in-process", *(["--verbose"] if verbose else [])]
    source_root = str(Path(__file__).resolve().parents[1])  # run this very code in the child
    path = os.pathsep.join(p for p in (source_root, os.environ.get("PYTHONPATH")) if p)
    child = subprocess.run(command, env={**os.environ, "PYTHONPATH": path, _SUPERVISED: "1"})
    if child.returncode == 0:
        return
    if -child.returncode in CRASH_SIGNALS:
        name = signal.Signals(-child.returncode).name
        _record_failure(_new_record(variant, params), "the converter crashed",
                        RuntimeError(f"the conversion process was killed by {name}"), OUTPUT)
        return
    raise SystemExit(child.returncode if child.returncode > 0 else 128 - child.returncode)


def _die_with_parent() -> None:
    """In a supervised child: get SIGKILL when the supervising stage process dies (Linux)."""
    if os.environ.get(_SUPERVISED) != "1" or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    if os.getppid() == 1:  # the parent was already gone before prctl took effect
        os._exit(128 + int(signal.SIGKILL))


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("variant", help="variant to convert (a key of convert.variants)")
    parser.add_argument("--in-process", action="store_true",
                        help="convert in this process (by default a child process converts, so "
                             "that a converter crash is recorded as a failed variant)")


def _run(args: argparse.Namespace) -> None:
    if args.in_process:
        _die_with_parent()
        convert(args.variant, load(args.params))
    else:
        convert_supervised(args.variant, args.params, args.verbose)


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__, _run, configure=_arguments, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
