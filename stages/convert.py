"""Stage ``convert@<variant>``: build one LiteRT variant, a base plus passes.

``python -m stages.convert <variant>`` reads ``params.yaml`` sections ``convert`` and (for
calibrated variants) ``calibration``, ``data/export/``, the outputs of the variants it is built
from and the calibration split when its composition needs them, and writes
``data/convert/<variant>/``:

* ``model.tflite``: the converted model (absent when the conversion failed or the variant is
  off);
* ``conversion.json``: status (``ok``, ``failed`` with the message, or ``off``), size, the
  input/output dtypes and quantization, the composition (``base``, ``passes``), the calibration
  data used, the fidelity ``methods`` and each pass's summary under its name;
* the base's extra files: ``recipe.json`` (ai-edge-quantizer), ``selection.json``
  (``int8_selective``), ``calibrated.tflite`` (``int8_plain``: the calibrated float model that
  ``int8_selective`` and ``layer_errors`` quantize again).

Every variant's composition is in ``litequant/quantize/registry.py``; print them with
``python -m litequant.quantize.registry``. The wiring of each ``convert@<variant>`` stage in
``dvc.yaml`` (code, data and params it depends on) is derived from that composition by
``python -m tests.structure --write-deps``.

A variant set to ``false`` in ``convert.variants`` writes only ``conversion.json`` with
``status: off``. A conversion that fails is recorded (``status: failed``) and the stage still
succeeds, so the other variants complete and the report shows it as FAILED; ``stages.check``
fails on it. The conversion runs in a child process, so that even a converter crash (a segfault
or abort in TensorFlow's C++ code) is recorded that way instead of stopping ``dvc repro``.
Each step's wall time goes to the log only, never to an output.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from litequant.core import atomic, layout
from litequant.core.cli import die_with_parent, run_stage, run_supervised
from litequant.core.errors import PipelineError
from litequant.core.params import CalibrationParams, load, section
from litequant.quantize.build import (
    Built,
    build_variant,
    conversion_record,
    describe_calibration,
    failure,
    skipped,
)
from litequant.quantize.registry import VARIANTS, ConvertParams, needs_calibration


def read_params(variant: str, params_path: str) -> tuple[ConvertParams, CalibrationParams | None]:
    """The ``convert`` section and, when ``variant`` is calibrated, ``calibration``."""
    params = load(params_path)
    convert = section(params, ConvertParams, params_path)
    if variant not in VARIANTS:
        raise PipelineError(f"unknown variant {variant!r}; known variants: {', '.join(VARIANTS)}")
    calibration = (section(params, CalibrationParams, params_path)
                   if needs_calibration(variant) else None)
    return convert, calibration


def convert(variant: str, params_path: str) -> dict[str, Any]:
    """Build one variant and write ``data/convert/<variant>/``; returns ``conversion.json``."""
    convert_params, calibration = read_params(variant, params_path)
    if not convert_params.variants[variant]:
        return write(skipped(variant))
    steps: list[str] = []
    built = build_variant(variant, convert_params, calibration,
                          on_step=lambda step, seconds: steps.append(f"{step} {seconds:.1f} s"))
    return write(built, ", ".join(steps))


def write(built: Built, timing: str = "") -> dict[str, Any]:
    """Write the variant's folder atomically (the model, ``conversion.json``, the base's extra
    files) and log one line."""
    record = built.record
    variant = record["variant"]
    with atomic.output_folder(layout.convert_dir(variant)) as tmp:
        if built.model is not None:
            (tmp / layout.model_file(variant).name).write_bytes(built.model)
        for name, content in built.files.items():
            if isinstance(content, bytes):
                (tmp / name).write_bytes(content)
            elif isinstance(content, str):
                atomic.write_text(tmp / name, content)
            else:
                atomic.write_json(tmp / name, content)
        atomic.write_json(tmp / "conversion.json", record)
    if record["status"] == "ok":
        print(f"convert: {variant}: {record['size_bytes']:,} bytes by {record['tool']}"
              f"{describe_calibration(record)} ({timing})")
    elif record["status"] == "off":
        print(f"convert: {variant}: off (convert.variants.{variant} is false)")
    else:
        print(f"convert: {variant} FAILED: {record['error'][:300]}", file=sys.stderr)
    return record


def convert_in_child(variant: str, params_path: str, verbose: bool) -> None:
    """:func:`convert` in a child process; a converter crash is recorded as a failed variant."""
    crash = run_supervised([sys.executable, "-m", "stages.convert", variant, "--params",
                            params_path, "--in-process", *(["--verbose"] if verbose else [])])
    if crash is not None:
        _, calibration = read_params(variant, params_path)
        write(Built(failure(conversion_record(variant, calibration), "the converter crashed",
                            RuntimeError(f"the conversion process was killed by {crash}"))))


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("variant", help="variant to build (a key of convert.variants; "
                                        "python -m litequant.quantize.registry lists them)")
    parser.add_argument("--in-process", action="store_true",
                        help="convert in this process (by default a child process converts, so "
                             "that a converter crash is recorded as a failed variant)")


def _run(args: argparse.Namespace) -> None:
    if args.in_process:
        die_with_parent()
        convert(args.variant, args.params)
    else:
        convert_params, _ = read_params(args.variant, args.params)  # bad params: one line
        if convert_params.variants[args.variant]:
            convert_in_child(args.variant, args.params, args.verbose)
        else:  # off: nothing to convert, no child
            convert(args.variant, args.params)


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__, _run, configure=_arguments, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
