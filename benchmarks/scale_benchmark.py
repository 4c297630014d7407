"""Scale benchmark: does the pipeline's memory stay flat and its time grow linearly with the
number of images? All figures from one run on one machine.

For each size (default 1,000, 4,000 and 16,000 images) it builds an ImageNet-style folder of
that many real photos by hard-linking ``--images`` photos under new names (each photo keeps
its synset, so labels stay real; a photo recurs ``size / len(photos)`` times), in a temporary
directory, and runs in a scratch copy of the project (:mod:`benchmarks.scratch`) the front of
the pipeline and the float32 and int8 evaluations, each stage as its own process exactly as
``dvc repro`` runs it: ``fetch``, ``export``, ``prepare``, ``evaluate_keras``,
``convert@float32``, ``convert@int8_plain``, ``convert@int8``, ``evaluate@float32``,
``evaluate@int8``.

Per stage it records the wall time, images/s (for the stages whose work is per image) and the
peak resident memory (RSS) of the stage process and of every process it started (its evaluate
workers), read from ``os.wait4``. Every figure is printed as a ratio to the smallest size, with
the acceptance bounds of issue 17: peak RSS of ``prepare`` and of the evaluate stages at the
largest size at most 1.3x their peak at the smallest, wall time of the per-image stages growing
linearly (16x the images: between 13x and 19x the time).

``calibration_size`` is 100 at every size (``fetch.calibration_size``), so the evaluation split
has ``size - 100`` images; ``export`` and ``convert`` do not depend on the number of images
(only on the model and the 100 calibration images) and are shown for completeness.

Usage (from the repository root)::

    python benchmarks/scale_benchmark.py --images ../shared/imagenet-sample/val \\
        --weights ../shared/models/mobilenet_v2_1.0_224_imagenet.weights.h5 \\
        --sizes 1000 4000 16000 --output /tmp/scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make the ``benchmarks`` package importable
    sys.path.insert(0, str(REPO))

from benchmarks.scratch import scratch_project  # noqa: E402
from litequant.data.images import looks_like_image  # noqa: E402

#: ``(stage command arguments, what its time is proportional to)``: ``images`` for the stages
#: that do per-image work, ``None`` for those that do not depend on the number of images.
STAGES = [
    (["fetch"], "images"),
    (["export"], None),
    (["prepare"], "images"),
    (["evaluate_keras"], "evaluation"),
    (["convert", "float32"], None),
    (["convert", "int8_plain"], None),  # int8 starts from its model
    (["convert", "int8"], None),
    (["evaluate", "float32"], "evaluation"),
    (["evaluate", "int8"], "evaluation"),
]
CALIBRATION_SIZE = 100
#: The acceptance bounds (issue 17).
MAX_RSS_RATIO = 1.3
TIME_RATIO_PER_SIZE_RATIO = (13 / 16, 19 / 16)


def build_folder(photos: Path, target: Path, size: int) -> Path:
    """``target/<synset>/<name>``: ``size`` hard links to the photos under ``photos/<synset>``,
    named ``<stem>_<copy><suffix>``, cycling through the photos in sorted order."""
    sources = sorted(p for p in photos.glob("*/*") if p.is_file() and looks_like_image(p))
    if not sources:
        raise SystemExit(f"error: no images under {photos}/<synset>/")
    for index in range(size):
        source = sources[index % len(sources)]
        link = target / source.parent.name / f"{source.stem}_{index // len(sources)}{source.suffix}"
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, link)
        except OSError:  # another filesystem: a copy measures the same
            shutil.copyfile(source, link)
    return target


def run_stage(project: Path, arguments: list[str]) -> dict:
    """Run ``python -m stages.<arguments>`` in ``project``; wall seconds and peak RSS (MB)
    of the stage and its worker processes."""
    begin = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", f"stages.{arguments[0]}", *arguments[1:]],
                               cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - begin
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"error: stage {' '.join(arguments)} failed:\n{output}")
    # ru_maxrss (kB on Linux): the largest of the stage process and its reaped children
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024.0,
            "output": output.strip().splitlines()[-1] if output.strip() else ""}


def run_size(photos: Path, weights: str, size: int, root: Path, last: str) -> dict:
    """:data:`STAGES` up to ``last`` on a ``size``-image folder in a fresh scratch project."""
    folder = build_folder(photos, root / "images", size)
    project = root / "project"
    project.mkdir()
    scratch_project(project, fetch={"source": "folder", "folder": str(folder),
                                    "calibration_size": CALIBRATION_SIZE,
                                    "evaluation_size": None},
                    model={"weights": weights}, peer={"path": None})
    counts = {"images": size, "evaluation": size - CALIBRATION_SIZE}
    results = {}
    for arguments, per in STAGES:
        name = "@".join(arguments)
        measured = run_stage(project, arguments)
        measured["images"] = counts[per] if per else None
        measured["images_per_s"] = counts[per] / measured["seconds"] if per else None
        results[name] = measured
        rate = f"{measured['images_per_s']:7.1f} images/s" if per else " " * 16
        print(f"  {size:>6} {name:<18} {measured['seconds']:8.1f} s {rate} "
              f"{measured['peak_rss_mb']:8.0f} MB   {measured['output'][:70]}", flush=True)
        if name == last:
            break
    return results


def report(results: dict[int, dict], machine: str) -> str:
    """Markdown tables: absolute figures, ratios to the smallest size, acceptance checks."""
    sizes = sorted(results)
    base = sizes[0]
    lines = [f"# Scale benchmark ({machine})", "",
             "| stage | " + " | ".join(f"{s} images: s, images/s, peak RSS MB" for s in sizes)
             + " |", "|---|" + "---|" * len(sizes)]
    for name in results[base]:
        cells = []
        for size in sizes:
            m = results[size][name]
            rate = f"{m['images_per_s']:.1f}" if m["images_per_s"] else "-"
            cells.append(f"{m['seconds']:.1f}, {rate}, {m['peak_rss_mb']:.0f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Ratios to the {base}-image run (images ratio " + ", ".join(
        f"{s / base:g}x" for s in sizes[1:]) + "):", "",
        "| stage | " + " | ".join(f"{s}: time, RSS" for s in sizes[1:]) + " |",
        "|---|" + "---|" * (len(sizes) - 1)]
    for name in results[base]:
        cells = [f"{results[s][name]['seconds'] / results[base][name]['seconds']:.2f}x, "
                 f"{results[s][name]['peak_rss_mb'] / results[base][name]['peak_rss_mb']:.2f}x"
                 for s in sizes[1:]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    per_image = [n for n, per in ((("@".join(a)), p) for a, p in STAGES)
                 if per and n in results[base]]
    lines += ["", "Acceptance (largest size against the smallest):", ""]
    top = sizes[-1]
    low, high = (r * top / base for r in TIME_RATIO_PER_SIZE_RATIO)
    for name in ["prepare", "evaluate_keras", "evaluate@float32", "evaluate@int8"]:
        if name not in results[top]:
            continue
        ratio = results[top][name]["peak_rss_mb"] / results[base][name]["peak_rss_mb"]
        verdict = "holds" if ratio <= MAX_RSS_RATIO else "FAILS"
        lines.append(f"- peak RSS of {name}: {ratio:.2f}x (at most {MAX_RSS_RATIO}x): {verdict}")
    total = {s: sum(results[s][n]["seconds"] for n in per_image) for s in sizes}
    ratio = total[top] / total[base]
    verdict = "holds" if low <= ratio <= high else "FAILS"
    lines.append(f"- wall time of the per-image stages ({', '.join(per_image)}): "
                 f"{ratio:.2f}x for {top / base:g}x the images (between {low:.1f}x and "
                 f"{high:.1f}x): {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, required=True,
                        help="an ImageNet-style folder of real photos (<synset>/<image>)")
    parser.add_argument("--weights", required=True,
                        help="MobileNetV2 1.0/224 ImageNet .weights.h5 (model.weights)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--output", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--until", default=STAGES[-1][0][0] + "@" + STAGES[-1][0][1],
                        choices=["@".join(a) for a, _ in STAGES],
                        help="last stage to run at each size (default: all of them)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the temporary folders go (default: the system temp dir)")
    args = parser.parse_args(argv)
    if min(args.sizes) <= CALIBRATION_SIZE:
        parser.error(f"--sizes must be larger than the calibration split ({CALIBRATION_SIZE})")
    results: dict[int, dict] = {}
    load = os.getloadavg()
    print(f"{os.cpu_count()} cores, load average {load[0]:.1f} at the start", flush=True)
    for size in sorted(args.sizes):
        with tempfile.TemporaryDirectory(prefix=f"scale{size}-", dir=args.workdir) as root:
            results[size] = run_size(args.images.resolve(), str(Path(args.weights).resolve()),
                                     size, Path(root), args.until)
        if args.output:
            args.output.write_text(json.dumps({str(k): v for k, v in results.items()},
                                              indent=2))
    load_end = os.getloadavg()
    print()
    print(report(results, f"{os.cpu_count()} cores, load average {load[0]:.1f} at the "
                          f"start, {load_end[0]:.1f} at the end"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
