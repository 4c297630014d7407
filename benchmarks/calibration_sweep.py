"""Collect a calibration-size sweep run as DVC experiments into one plot table.

Each experiment of the sweep is an ordinary pipeline run with a different
``calibration.num_images`` (see README, "Calibration sweep")::

    for n in 10 25 50 100 150; do dvc exp run --queue -n cal-$n -S calibration.num_images=$n; done
    dvc queue start && dvc queue status      # wait until every task says Success
    python benchmarks/calibration_sweep.py   # -> reports/plots/calibration_sweep.csv
    dvc plots show                           # calibration_sweep_top1 / _agreement

A DVC plot shows one revision's file; a sweep is many revisions, so this script reads every
experiment's params and ``reports/metrics.json`` from ``dvc exp show --json`` and writes one row
per calibration size: the experiments whose params differ from their baseline commit's only in
``calibration.num_images`` (``calibration.source: images``; the newest wins when a size was run
twice; experiments that also changed e.g. ``fetch`` are left out, they measure other images).
Columns: ``num_images``, ``experiment``, ``keras_top1`` and, per calibrated variant,
``<variant>_top1``, ``<variant>_delta_top1`` and ``<variant>_agreement``. Noise-calibrated
experiments are printed separately (they are not representative, see ``summary.md``).
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

OUTPUT = Path("reports/plots/calibration_sweep.csv")
VARIANTS = ("int8", "int8_selective", "int16x8")
WITHIN_POINTS = 0.5


def _revisions(entries: list[dict[str, Any]], baseline: str | None = None
               ) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """``(baseline rev, revision)`` for every revision in ``dvc exp show --json`` output."""
    for entry in entries:
        rev = baseline or (None if entry.get("rev") == "workspace" else entry.get("rev"))
        yield rev, entry
        for experiment in entry.get("experiments") or []:
            yield from _revisions(experiment.get("revs") or [], rev)


def _params(revision: dict[str, Any]) -> dict[str, Any]:
    data = revision.get("data") or {}
    return ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}


def _signature(params: dict[str, Any], *calibration_keys: str) -> str:
    """The params without the given ``calibration`` keys, as comparable text."""
    calibration = {key: value for key, value in (params.get("calibration") or {}).items()
                   if key not in calibration_keys}
    return json.dumps({**params, "calibration": calibration}, sort_keys=True)


def experiment_points(exp_show: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per revision with metrics: calibration params, the variants' scores, and
    ``sweep`` (params differ from the baseline commit's in ``calibration.num_images`` at most)
    or ``noise`` (... in ``calibration.source`` too, which is not ``images``)."""
    baselines = {entry.get("rev"): _params(entry) for entry in exp_show}
    points = []
    for baseline, revision in _revisions(exp_show):
        data = revision.get("data") or {}
        params = _params(revision)
        metrics = ((data.get("metrics") or {}).get("reports/metrics.json") or {}).get("data")
        calibration = params.get("calibration") or {}
        if not metrics or "keras" not in metrics or "num_images" not in calibration:
            continue
        point: dict[str, Any] = {
            "experiment": revision.get("name") or str(revision.get("rev", ""))[:7],
            "timestamp": data.get("timestamp") or "", "num_images": calibration["num_images"],
            "source": calibration.get("source", "images"),
            "keras_top1": metrics["keras"]["top1"]}
        base = baselines.get(baseline)
        point["sweep"] = (base is not None and point["source"] == "images"
                          and _signature(params, "num_images") == _signature(base, "num_images"))
        point["noise"] = (base is not None and point["source"] != "images"
                          and _signature(params, "num_images", "source")
                          == _signature(base, "num_images", "source"))
        for variant in VARIANTS:
            row = metrics.get(variant)
            if row and not row.get("failed") and "top1" in row:
                point[f"{variant}_top1"] = row["top1"]
                point[f"{variant}_delta_top1"] = row["delta_top1"]
                point[f"{variant}_agreement"] = row["agreement"]
        points.append(point)
    return points


def sweep_rows(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sweep points, one per calibration size (the newest wins), by increasing size."""
    newest: dict[int, dict[str, Any]] = {}
    for point in points:
        if not point["sweep"]:
            continue
        known = newest.get(point["num_images"])
        if known is None or point["timestamp"] > known["timestamp"]:
            newest[point["num_images"]] = point
    return [newest[size] for size in sorted(newest)]


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
    points = experiment_points(json.loads(text))
    rows = sweep_rows(points)
    if not rows:
        print("error: no finished experiment that changes only calibration.num_images; "
              "run the sweep first (see the module docstring)", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(csv_text(rows), encoding="utf-8")
    print(f"{args.output}: {len(rows)} calibration sizes")
    for row in rows:
        print(f"  {row['num_images']:>5} images ({row['experiment']}): "
              f"float {row['keras_top1']:.2f}"
              + "".join(f", {v} {row[f'{v}_top1']:.2f} (agreement {row[f'{v}_agreement']:.2f})"
                        for v in VARIANTS if f"{v}_top1" in row))
    for variant in VARIANTS:
        smallest = smallest_within(rows, variant)
        if any(f"{variant}_top1" in row for row in rows):
            print(f"  {variant}: smallest calibration size losing at most {WITHIN_POINTS} "
                  f"top-1 points vs float: {smallest if smallest is not None else 'none'}")
    for point in points:
        if point["noise"]:
            print(f"  NOT REPRESENTATIVE ({point['num_images']} {point['source']} samples, "
                  f"{point['experiment']}): "
                  + ", ".join(f"{v} top-1 {point[f'{v}_top1']:.2f}" for v in VARIANTS
                              if f"{v}_top1" in point) + f" vs float {point['keras_top1']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
