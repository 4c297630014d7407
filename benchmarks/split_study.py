"""Issue 14's fidelity rows on repeated random calibration/evaluation splits of one folder.

One split of ../shared's 300 photos leaves 200 evaluation images: one image is 0.5 points, and
two variants of equal quality differ by a few borderline photos. This study repeats the pipeline
with ``fetch.seed`` = 0 .. K-1: each seed is a new random choice of the calibration photos,
every other photo is evaluated ("repeated random sub-sampling"). Per seed it builds and
evaluates only the fidelity rows (:data:`ROWS`), the float Keras model and the peer
(``dvc repro`` of their evaluate stages, default params otherwise), then prints per split and
pooled over all splits:

* top-1 agreement with the float Keras model and top-1, as the report computes them;
* images won / lost against ``int8_plain`` and against the peer, when one is given (the float
  model's class where the other misses it, and the reverse), summed over the splits, with the
  report's sign test.
  A photo is evaluated in about two splits of three, each time under another calibration set,
  so the pooled counts are not fully independent: read the test as a guide.

``--mixed`` adds ``int8_selective`` and ``int16x8`` to the rows (``--rows``), with
issue 25's check (the budgeted variant against int16x8 and float); ``--peer`` may be left out (a
model without a QAT twin). E.g. for EfficientNet-Lite1::

    python benchmarks/split_study.py /tmp/splits-lite1 --splits 3 --mixed \
        --images ../shared/imagenet-sample/val \
        --model ../shared/models/efficientnet_lite1_imagenet.keras \
        --preprocessing tf

Latency is not measured (every default row has ``int8``'s ops and speed; ``fidelity_study.py``
measures it, and ``selection_latency.py`` int8_selective's against int8's). Run from the
repository root, e.g.::

    python benchmarks/split_study.py /tmp/splits-v2 --splits 3 \\
        --images ../shared/imagenet-sample/val \\
        --model ../shared/models/mobilenet_v2_1.0_224_imagenet.weights.h5 \\
        --peer ../shared/models/reference/mobilenet_v2_1.0_224_quant.tflite

A genuinely float-trained model has no QAT peer: leave ``--peer`` out. ``--rows`` chooses the
variants (turned on in ``convert.variants`` whatever params.yaml says), ``--preprocessing`` sets
``model.preprocessing`` (a ``.keras`` file's family is not always detected), e.g.::

    python benchmarks/split_study.py /tmp/splits-lite1 --splits 3 \\
        --images ../shared/imagenet-sample/val \\
        --model ../shared/models/efficientnet_lite1_imagenet.keras --preprocessing tf \\
        --rows int8_plain,int8,int8_grid,int8_mse,int16x8

About 3 minutes per split on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from benchmarks.fidelity_study import (  # noqa: E402
    acceptance_lines,
    model_params,
    study_arguments,
)
from benchmarks.scratch import GIT_ENV, REPO, scratch_project, set_params  # noqa: E402
from litequant.core import layout  # noqa: E402
from litequant.quantize.registry import VARIANTS as REGISTRY  # noqa: E402
from litequant.report.summary import (  # noqa: E402
    FIDELITY_BASELINE,
    FLOAT_MODEL_ROW,
    PEER_ROW,
    beyond_noise,
    paired_changes,
)

#: The variants measured: the baseline and the fidelity methods built by default.
ROWS = (FIDELITY_BASELINE, "int8", "int8_grid", "int8_mse")
#: ``--mixed`` adds these rows: the budgeted mixed-precision variant and 16-bit activations.
MIXED_ROWS = ("int8_selective", "int16x8")
#: Issue 25's acceptance: the budgeted variant's agreement at least int16x8's minus this ...
MIXED_AGREEMENT_MARGIN = 0.5
#: ... and its top-1 at most this far below the float Keras model's (points, pooled).
MIXED_TOP1_MARGIN = 0.3


def run_split(project: Path, seed: int, rows: tuple[str, ...] = ROWS, peer: bool = True
              ) -> dict[str, Any]:
    """``dvc repro`` the rows' evaluations for one ``fetch.seed``; returns per row its metrics
    and its per-image top-1 classes (the peer's too when ``peer``)."""
    set_params(project, fetch={"seed": seed})
    targets = [f"evaluate@{name}" for name in rows] + ["evaluate_keras"]
    targets += ["evaluate_peer"] if peer else []
    done = subprocess.run([sys.executable, "-m", "dvc", "repro", *targets], cwd=project,
                          text=True, capture_output=True, env={**os.environ, **GIT_ENV})
    if done.returncode != 0:
        raise SystemExit(f"dvc repro failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    outputs = {name: (layout.evaluate_dir(name) / "metrics.json", layout.predictions_file(name))
               for name in rows}
    outputs[FLOAT_MODEL_ROW] = (layout.KERAS_METRICS, layout.KERAS_PREDICTIONS)
    if peer:
        outputs[PEER_ROW] = (layout.PEER_EVALUATION_DIR / "metrics.json",
                             layout.PEER_PREDICTIONS)
    split: dict[str, Any] = {"metrics": {}, "predictions": {}}
    for name, (metrics, predictions) in outputs.items():
        split["metrics"][name] = json.loads((project / metrics).read_text())
        split["predictions"][name] = np.load(project / predictions)
    return split


def pooled(splits: list[dict[str, Any]], name: str, key: str) -> float:
    """``key`` (a percentage) over every evaluation of every split."""
    hits = sum(split["metrics"][name][key] * split["metrics"][name]["images"] for split in splits)
    return hits / sum(split["metrics"][name]["images"] for split in splits)


def changes_cell(changes: list[dict[str, tuple[int, int]]], name: str) -> str:
    """Images won / lost summed over the splits, marked when a fair coin would give them."""
    if not all(name in change for change in changes):
        return "–"
    won = sum(change[name][0] for change in changes)
    lost = sum(change[name][1] for change in changes)
    return f"{won} / {lost}" + ("" if beyond_noise(won, lost) else " (noise)")


def render(splits: list[dict[str, Any]], model: Path, rows: tuple[str, ...] = ROWS) -> str:
    """The Markdown table and the pooled acceptance lines (those against the peer only when
    the splits have one)."""
    images = sum(split["metrics"][FLOAT_MODEL_ROW]["images"] for split in splits)
    peer = PEER_ROW in splits[0]["metrics"]
    against_plain = [paired_changes(split["predictions"]) for split in splits]
    against_peer = ([paired_changes(split["predictions"], baseline=PEER_ROW) for split in splits]
                    if peer else [{} for _ in splits])
    lines = [f"### {model.name}: {len(splits)} splits, {images} evaluations in all", "",
             "| row | " + " | ".join(f"agreement, split {seed}" for seed in range(len(splits)))
             + " | agreement, pooled | top-1, pooled | won / lost vs int8_plain |"
             + (" won / lost vs peer |" if peer else ""),
             "|---|" + "---:|" * (len(splits) + 3 + peer)]
    for name in (*rows, *([PEER_ROW] if peer else []), FLOAT_MODEL_ROW):
        cells = [f"{split['metrics'][name].get('agreement', 100.0):.1f}" for split in splits]
        agreement = ("100.0" if name == FLOAT_MODEL_ROW
                     else f"{pooled(splits, name, 'agreement'):.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {agreement} | "
                     f"{pooled(splits, name, 'top1'):.2f} | {changes_cell(against_plain, name)} |"
                     + (f" {changes_cell(against_peer, name)} |" if peer else ""))
    integer = [name for name in rows if name not in (FIDELITY_BASELINE, "int16x8")]
    best = max(integer, key=lambda name: pooled(splits, name, "agreement"))

    def row(name: str) -> dict[str, float]:
        return {key: pooled(splits, name, key) for key in ("agreement", "top1")}

    if all(name in rows for name in MIXED_ROWS):
        lines += ["", mixed_acceptance(row("int8_selective"), row("int16x8"),
                                       pooled(splits, FLOAT_MODEL_ROW, "top1"))]
    if not peer or "int8" not in rows:
        return "\n".join([*lines, "", f"- pooled, best integer row `{best}`: agreement "
                          f"{pooled(splits, best, 'agreement'):.2f}, won / lost vs int8_plain "
                          f"{changes_cell(against_plain, best)}"])
    lines += [""] + acceptance_lines(
        f"pooled, best row `{best}`", row(best), pooled(splits, PEER_ROW, "agreement"),
        pooled(splits, FLOAT_MODEL_ROW, "top1"), row("int8"), row(FIDELITY_BASELINE), digits=2)
    return "\n".join(lines)


def mixed_acceptance(selective: dict[str, float], int16x8: dict[str, float],
                     float_top1: float) -> str:
    """Issue 25's figures check of the budgeted variant (latency is measured elsewhere)."""
    verdict = {True: "holds", False: "FAILS"}
    agreement = selective["agreement"] >= int16x8["agreement"] - MIXED_AGREEMENT_MARGIN
    top1 = selective["top1"] >= float_top1 - MIXED_TOP1_MARGIN
    return (f"- pooled int8_selective agreement {selective['agreement']:.2f} vs int16x8 "
            f"{int16x8['agreement']:.2f} − {MIXED_AGREEMENT_MARGIN} → {verdict[agreement]}; "
            f"top-1 {selective['top1']:.2f} vs float {float_top1:.2f} − {MIXED_TOP1_MARGIN} → "
            f"{verdict[top1]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    study_arguments(parser, peer_required=False)
    parser.add_argument("--rows", default=",".join(ROWS),
                        help=f"comma-separated variants, int8_plain first (default "
                             f"{','.join(ROWS)})")
    parser.add_argument("--splits", type=int, default=3, help="seeds 0 .. K-1 (default 3)")
    parser.add_argument("--mixed", action="store_true",
                        help=f"also measure {' and '.join(MIXED_ROWS)} (issue 25)")
    args = parser.parse_args(argv)
    if args.splits < 1:
        parser.error(f"--splits must be at least 1, got {args.splits}")
    rows = tuple(filter(None, args.rows.split(","))) + (MIXED_ROWS if args.mixed else ())
    if rows[:1] != (FIDELITY_BASELINE,):
        parser.error(f"--rows must start with {FIDELITY_BASELINE}")
    unknown = [name for name in rows if name not in REGISTRY]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}")
    variants = yaml.safe_load((REPO / "params.yaml").read_text())["convert"]["variants"]
    variants.update({name: True for name in rows})
    model = model_params(args.model)
    if args.preprocessing:
        model["preprocessing"] = args.preprocessing
    sections: dict[str, dict[str, Any]] = {
        "fetch": {"source": "folder", "folder": str(args.images.resolve())}, "model": model,
        "convert": {"variants": variants}}
    if args.peer is not None:
        sections["peer"] = {"path": str(args.peer.resolve()), "label_offset": 1}
    project = scratch_project(args.root, **sections)
    splits = []
    for seed in range(args.splits):
        splits.append(run_split(project, seed, rows, peer=args.peer is not None))
        print(f"split {seed} done", file=sys.stderr, flush=True)
    print(render(splits, args.model, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
