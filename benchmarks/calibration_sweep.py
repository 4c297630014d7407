"""Collect a calibration-size sweep run as DVC experiments into one table (and one figure).

Each experiment of the sweep is an ordinary pipeline run with a different
``calibration.num_images`` (see docs/guide.md, "Calibration sweep")::

    for n in 10 25 50 100; do dvc exp run --queue -n cal-$n -S calibration.num_images=$n; done
    dvc queue start && dvc queue status      # wait until every task says Success
    python benchmarks/calibration_sweep.py   # -> reports/sweeps/calibration_sweep.{csv,png}

A DVC plot shows one revision's file; a sweep is many revisions, so this script reads every
revision's params and ``reports/metrics.json`` from ``dvc exp show --json`` (and, through
``git show``, its ``reports/variants.json`` for the agreement) and keeps the experiments whose
params differ *from each other* only in ``calibration`` params: runs are grouped by all their
other params (the largest group with real-image calibration is the sweep, whatever it shares
with the commit it started from). One row per calibration size (the newest wins when a size was
run twice). Every revision left out is named on one ``skipped`` line with the reason (other
fetch/model/... params than the sweep, superseded by a newer run of the same size, no metrics).
Noise-calibrated experiments of the group are printed separately (not representative).
Columns: ``num_images``, ``experiment``, ``keras_top1`` and, per calibrated variant,
``<variant>_top1``, ``<variant>_delta_top1`` and ``<variant>_agreement``. The output is not a
DVC-tracked file (``reports/sweeps/`` is git-ignored): ``dvc plots show
reports/sweeps/calibration_sweep.csv -x num_images -y int8_top1`` plots it, or read the PNG.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from litequant.quantize.registry import VARIANTS as REGISTRY
from litequant.quantize.registry import needs_calibration

OUTPUT = Path("reports/sweeps/calibration_sweep.csv")
#: The variants a calibration change affects (the registry's calibrated ones), in its order.
VARIANTS = tuple(name for name in REGISTRY if needs_calibration(name))
WITHIN_POINTS = 0.5


def _revisions(entries: list[dict[str, Any]], baseline: str | None = None,
               state: str | None = None) -> Iterator[tuple[str | None, dict[str, Any], str | None]]:
    """``(baseline rev, revision, executor state)`` for every revision in ``dvc exp show
    --json`` output; the state is DVC's for a queued experiment (``queued``, ``running``,
    ``failed`` ...), ``None`` for a finished run or a commit."""
    for entry in entries:
        rev = baseline or (None if entry.get("rev") == "workspace" else entry.get("rev"))
        yield rev, entry, state
        for experiment in entry.get("experiments") or []:
            executor = (experiment.get("executor") or {}).get("state")
            yield from _revisions(experiment.get("revs") or [], rev, executor)


def _params(revision: dict[str, Any]) -> dict[str, Any]:
    data = revision.get("data") or {}
    return ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}


def _other_params(params: dict[str, Any]) -> dict[str, Any]:
    """Every param except the ``calibration`` section (what a sweep's runs must share)."""
    return {key: value for key, value in params.items() if key != "calibration"}


def _differences(params: dict[str, Any], reference: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two params documents."""
    keys = []
    for key in sorted(set(params) | set(reference)):
        mine, theirs = params.get(key), reference.get(key)
        if isinstance(mine, dict) and isinstance(theirs, dict):
            keys += _differences(mine, theirs, f"{prefix}{key}.")
        elif mine != theirs:
            keys.append(f"{prefix}{key}")
    return keys


def _details(rev: str | None) -> dict[str, Any]:
    """``reports/variants.json`` of a git revision (empty when it cannot be read)."""
    if not rev:
        return {}
    done = subprocess.run(["git", "show", f"{rev}:reports/variants.json"], capture_output=True,
                          text=True)
    try:
        return json.loads(done.stdout) if done.returncode == 0 else {}
    except json.JSONDecodeError:
        return {}


def experiment_points(exp_show: list[dict[str, Any]], read_details: bool = False
                      ) -> tuple[list[dict[str, Any]], list[str]]:
    """One point per revision with metrics (calibration params, the variants' scores, its other
    params) and one ``skipped`` line per revision without metrics. With ``read_details``, the
    agreement comes from each revision's ``reports/variants.json`` (``git show``)."""
    points, skipped = [], []
    for _, revision, state in _revisions(exp_show):
        data = revision.get("data") or {}
        params = _params(revision)
        rev = str(revision.get("rev", ""))
        name = revision.get("name") or (rev if rev == "workspace" else rev[:7])
        if state in ("queued", "running"):  # its metrics are still the baseline's
            skipped.append(f"skipped {name}: still {state} (see dvc queue status)")
            continue
        if state == "failed":
            skipped.append(f"skipped {name}: failed (dvc queue logs {name})")
            continue
        metrics = ((data.get("metrics") or {}).get("reports/metrics.json") or {}).get("data")
        calibration = params.get("calibration") or {}
        if not metrics or "keras" not in metrics or "num_images" not in calibration:
            skipped.append(f"skipped {name}: no reports/metrics.json (not run, or failed)")
            continue
        details = _details(rev) if read_details and rev != "workspace" else {}
        point: dict[str, Any] = {
            "experiment": name, "timestamp": data.get("timestamp") or "",
            "num_images": calibration["num_images"],
            "source": calibration.get("source", "images"),
            "keras_top1": metrics["keras"]["top1"], "other_params": _other_params(params)}
        for variant in VARIANTS:
            row = metrics.get(variant)
            if row and "top1" in row:
                point[f"{variant}_top1"] = row["top1"]
                point[f"{variant}_delta_top1"] = round(row["top1"] - point["keras_top1"], 4)
                agreement = (details.get(variant) or {}).get("agreement")
                if agreement is not None:
                    point[f"{variant}_agreement"] = agreement
        points.append(point)
    return points, skipped


def sweep_group(points: list[dict[str, Any]]
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Split ``points`` into the sweep (one row per calibration size, the newest wins, by size),
    the noise-calibrated runs of the same group, and one ``skipped`` line per other point.

    The sweep is the largest group of real-image runs sharing every non-calibration param.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for point in points:
        groups.setdefault(json.dumps(point["other_params"], sort_keys=True), []).append(point)

    def size(group: list[dict[str, Any]]) -> tuple[int, str]:
        images = [p for p in group if p["source"] == "images"]
        return len({p["num_images"] for p in images}), max(p["timestamp"] for p in group)

    if not groups:
        return [], [], []
    chosen = max(groups.values(), key=size)
    reference = chosen[0]["other_params"]
    skipped = []
    for point in points:
        if point in chosen:
            continue
        differs = _differences(point["other_params"], reference)
        skipped.append(f"skipped {point['experiment']}: its params differ from the sweep's in "
                       f"{', '.join(differs[:4])}{' ...' if len(differs) > 4 else ''} "
                       "(not only in calibration)")
    newest: dict[int, dict[str, Any]] = {}
    for point in sorted((p for p in chosen if p["source"] == "images"),
                        key=lambda p: p["timestamp"]):
        known = newest.get(point["num_images"])
        if known is not None:
            skipped.append(f"skipped {known['experiment']}: {point['experiment']} is a newer run "
                           f"with {point['num_images']} calibration images")
        newest[point["num_images"]] = point
    noise = [p for p in chosen if p["source"] != "images"]
    return [newest[size] for size in sorted(newest)], noise, skipped


def smallest_within(rows: list[dict[str, Any]], variant: str,
                    points: float = WITHIN_POINTS) -> int | None:
    """The smallest calibration size whose ``variant`` top-1 loses at most ``points`` vs float.

    One-sided: a variant that beats the float model (usually by one image) counts as within.
    """
    for row in rows:
        delta = row.get(f"{variant}_delta_top1")
        if delta is not None and delta >= -points:
            return row["num_images"]
    return None


def csv_text(rows: list[dict[str, Any]]) -> str:
    columns = ["num_images", "experiment", "keras_top1"] + [
        f"{variant}_{metric}" for variant in VARIANTS
        for metric in ("top1", "delta_top1", "agreement")]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({column: row.get(column, "") for column in columns})
    return buffer.getvalue()


def write_figure(rows: list[dict[str, Any]], path: Path) -> None:
    """Top-1 and agreement vs calibration images (log x), one line per calibrated variant."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 4.5), layout="constrained")
    left, right = figure.subplots(1, 2)
    sizes = [row["num_images"] for row in rows]
    left.plot(sizes, [row["keras_top1"] for row in rows], "k--", label="float Keras model")
    for variant in VARIANTS:
        for axes, metric in ((left, "top1"), (right, "agreement")):
            points = [(row["num_images"], row[f"{variant}_{metric}"]) for row in rows
                      if f"{variant}_{metric}" in row]
            if points:
                axes.plot([x for x, _ in points], [y for _, y in points], "o-", label=variant)
    for axes, title in ((left, "top-1 accuracy (%)"), (right, "agreement with float (%)")):
        axes.set_xscale("log")
        axes.set_xlabel("calibration images (log scale)")
        axes.set_ylabel(title)
        axes.grid(True, which="both", linewidth=0.3)
        if axes.lines:
            axes.legend(fontsize=8)
    figure.suptitle("Calibration sweep (dvc experiments that differ only in calibration)")
    figure.savefig(path, format="png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp-json", type=Path,
                        help="saved `dvc exp show --json` output (default: run it here)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    if args.exp_json:
        text = args.exp_json.read_text("utf-8")
    else:
        done = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"error: dvc exp show failed: {done.stderr.strip()}", file=sys.stderr)
            return 1
        text = done.stdout
    points, skipped = experiment_points(json.loads(text), read_details=not args.exp_json)
    rows, noise, more = sweep_group(points)
    for line in skipped + more:
        print(line)
    if not rows:
        print("error: no finished experiments that differ only in calibration params; "
              "run the sweep first (see the module docstring)", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(csv_text(rows), encoding="utf-8")
    write_figure(rows, args.output.with_suffix(".png"))
    print(f"{args.output} (and .png): {len(rows)} calibration sizes")
    for row in rows:
        print(f"  {row['num_images']:>5} images ({row['experiment']}): "
              f"float {row['keras_top1']:.2f}"
              + "".join(f", {v} {row[f'{v}_top1']:.2f}"
                        + (f" (agreement {row[f'{v}_agreement']:.2f})"
                           if f"{v}_agreement" in row else "")
                        for v in VARIANTS if f"{v}_top1" in row))
    for variant in VARIANTS:
        smallest = smallest_within(rows, variant)
        if any(f"{variant}_top1" in row for row in rows):
            print(f"  {variant}: smallest calibration size losing at most {WITHIN_POINTS} "
                  f"top-1 points vs float: {smallest if smallest is not None else 'none'}")
    for point in noise:
        print(f"  NOT REPRESENTATIVE ({point['num_images']} {point['source']} samples, "
              f"{point['experiment']}): "
              + ", ".join(f"{v} top-1 {point[f'{v}_top1']:.2f}" for v in VARIANTS
                          if f"{v}_top1" in point) + f" vs float {point['keras_top1']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
