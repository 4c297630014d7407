"""The recommended variant (``params.yaml`` ``recommend``): hand-made report records whose
answer is worked out by hand, budgets that flip it, the reasons given for the others, the summary
it opens, the CI gate's check; and the report stage on the small pipeline with changed budgets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from litequant.core.errors import PipelineError
from litequant.core.params import CheckParams, RecommendParams
from litequant.report import gate, recommend
from litequant.report.summary import build_rows, markdown, model_records
from tests.conftest import params_section

IMAGES = 200
#: variant -> (size MB, memory MiB, p50 ms at 1 thread, top-1 %, images it disagrees with the
#: float model on). The float Keras model: top-1 85.0 %. One image is 0.5 points.
FIGURES = {
    "float32": (14.0, 30.0, 3.06, 85.0, []),
    "float16": (7.04, 30.0, 3.08, 85.5, [10]),
    "int8_plain": (4.02, 9.0, 1.43, 84.5, [0, 1, 2, 3, 4]),
    "int8": (4.02, 9.0, 1.43, 84.5, [0, 1, 2, 3, 5]),
    "int8_grid": (4.02, 9.0, 1.44, 85.5, [0, 1, 2, 3]),
    "int8_mse": (4.02, 9.0, 1.43, 84.5, [0, 1]),
    "weight_only_int8": (3.81, 30.0, 3.03, 83.5, [0, 1, 2, 3, 4, 5]),
}
FAILED = "dynamic_int4"
VARIANTS = [*FIGURES, FAILED]


def _session(contended: list[int] | None = None) -> dict:
    """The benchmark session document of :data:`FIGURES` (issue 26's ``runtime`` entries)."""
    models = {name: {"status": "ok", "size_bytes": int(size * 1e6), "note": "",
                     "latency": {"1": {"p50_ms": p50, "mean_ms": p50, "p90_ms": p50,
                                       "std_ms": 0.0, "runs": 20}},
                     "runtime": {"peak_memory_bytes": int(memory * 2 ** 20), "init_ms": 12.5,
                                 "first_invoke_ms": 4.25, "threads": 1}}
              for name, (size, memory, p50, _, _) in FIGURES.items()}
    return {"session": {"id": "s1", "started_utc": "2026-12-06T10:00:00+00:00",
                        "finished_utc": "2026-12-06T10:01:00+00:00",
                        "device": {"kind": "local", "hostname": "ci", "cpu": "test cpu",
                                   "cores": 2, "runtime": "ai-edge-litert 2.3.0",
                                   "python": "3.11.7"}, "rounds": 10,
                        "contended_threads": contended or [], "other_load_cores": 1.4},
            "models": models}


def collected(contended: list[int] | None = None) -> dict:
    """What the report stage collects for :data:`FIGURES` plus a failed conversion."""
    latency = model_records(_session(contended))
    records: dict = {
        "keras": {"top1": 85.0, "top5": 95.0, "images": IMAGES},
        "data": {"evaluation_images": IMAGES, "calibration_images": 100, "bad_image_count": 0,
                 "synthetic": False, "description": "test images"},
        "model": {"name": "MobileNetV2", "input_size": [224, 224], "preprocessing": "tf",
                  "num_classes": 1000, "labels": {"kind": "imagenet"}},
        "latency_session": _session(contended)["session"],
        FAILED: {"conversion": {"status": "failed", "error": "converter crashed"},
                 "evaluation": {"status": "failed"}, "benchmark": {}},
    }
    for name, (size, _, _, top1, wrong) in FIGURES.items():
        records[name] = {
            "conversion": {"status": "ok", "size_bytes": int(size * 1e6),
                           "tool": "TFLiteConverter"},
            "evaluation": {"status": "ok", "top1": top1, "top5": 95.0,
                           "agreement": 100.0 * (IMAGES - len(wrong)) / IMAGES,
                           "top5_overlap": 98.0, "kl_divergence": 0.001, "sqnr_db": 30.0,
                           "images": IMAGES},
            "benchmark": latency[name]}
    return records


def predictions() -> dict[str, np.ndarray]:
    """Top-1 per image: the float model predicts class i for image i; each variant differs on
    its listed images."""
    keras = np.arange(IMAGES, dtype=np.int32)
    result = {"keras": keras}
    for name, (*_, wrong) in FIGURES.items():
        predicted = keras.copy()
        predicted[wrong] = (predicted[wrong] + 1) % 1000
        result[name] = predicted
    return result


def budgets(**overrides) -> RecommendParams:
    return params_section(RecommendParams, **{
        "max_top1_drop": 1.0, "min_agreement": 98.0, "threads": 1, "max_p50_ms": None,
        "max_size_mb": None, "max_memory_mib": None, "rank_by": "latency",
        "rank_tolerance": 0.05, **overrides})


def answer(contended: list[int] | None = None, **overrides) -> tuple[recommend.Recommendation,
                                                                       list[dict]]:
    records = collected(contended)
    rows = build_rows(records, VARIANTS)
    return recommend.recommend(rows, budgets(**overrides), predictions(),
                               recommend.latency_sessions(records, VARIANTS),
                               records["latency_session"]), rows


def test_default_budgets_pick_the_fastest_faithful_variant_and_say_why_not_the_others() -> None:
    result, rows = answer()
    # qualifying (drop <= 1 point, agreement >= 98 %): float32, float16, int8_grid (98.0),
    # int8_mse (99.0). 1.43 and 1.44 ms are within 5 %: the more faithful int8_mse wins; float32
    # and float16 (3.06, 3.08 ms) likewise, float32 (100 %) first
    assert result.recommended == "int8_mse" and result.runner_up == "int8_grid"
    assert result.ranked == ["int8_mse", "int8_grid", "float32", "float16"]
    why = {name: verdict.reason for name, verdict in result.verdicts.items()}
    assert why["int8"] == ("too unfaithful: agreement 97.50 % < 98.00 %, 1 of 200 images short")
    assert why["weight_only_int8"].startswith("too unfaithful: top-1 -1.50 points vs the float "
                                              "model (budget -1.00), agreement "
                                              "97.00 % < 98.00 %, 2 of 200 images short")
    assert why[FAILED].startswith("conversion failed: converter crashed")
    # float16 agrees on images 0 and 1, which int8_mse does not, and loses image 10: 2 won,
    # 1 lost, a fair coin's result
    assert why["float16"] == ("qualifies; slower than `int8_mse` (3.08 ms vs 1.43 ms at 1 "
                              "thread, 2.15x), more faithful (agreement 99.50 vs 99.00 %; 2 "
                              "images won / 1 lost against it: within noise)")
    assert why["int8_grid"] == ("qualifies; as fast as `int8_mse` (within 5%), less faithful "
                                "(agreement 98.00 vs 99.00 %; 0 images won / 2 lost against it: "
                                "within noise)")
    assert [v.kind for v in result.verdicts.values()] == [
        "recommended", "runner-up", "qualifies", "qualifies", "too unfaithful", "too unfaithful",
        "too unfaithful", "conversion failed"]
    document = recommend.document(result)
    assert document["variant"] == "int8_mse" and document["qualifying"] == result.ranked
    assert document["budgets"]["min_agreement"] == 98.0 and "int8_mse" not in document["reasons"]


def test_budgets_chosen_so_the_answer_flips() -> None:
    # a tighter top-1 budget: int8_mse (-0.5 points) is out, int8_grid (+0.5) is the answer
    assert answer(max_top1_drop=0.25)[0].recommended == "int8_grid"
    # and a latency ceiling under its 1.44 ms: nothing qualifies (float32 and float16 take
    # 3 ms); int8_grid misses one budget only, the closest
    result = answer(max_top1_drop=0.25, max_p50_ms=1.435)[0]
    assert result.recommended is None and result.closest == "int8_grid"
    assert result.verdicts["int8_grid"].reason == (
        "too slow: p50 1.44 ms at 1 thread > 1.435 ms")
    # smallest instead of fastest, with looser fidelity budgets: weight_only_int8 (3.81 MB is
    # more than 5 % under 4.02 MB)
    assert answer(rank_by="size")[0].recommended == "int8_mse"
    assert answer(rank_by="size", max_top1_drop=2.0, min_agreement=97.0)[0].recommended \
        == "weight_only_int8"
    # memory: float32 and float16 take 30 MiB, the integer models 9
    result = answer(max_memory_mib=20.0)[0]
    assert result.ranked == ["int8_mse", "int8_grid"]
    assert result.verdicts["float32"].reason == "too much memory: 30.0 MiB > 20 MiB"
    # a size ceiling under every model: nothing qualifies; of those missing that one budget
    # only, the 4.02 MB models are the nearest, and int8_mse the most faithful of them
    result = answer(max_size_mb=1.0)[0]
    assert result.recommended is None and result.closest == "int8_mse"


def test_the_summary_opens_with_the_recommendation_then_the_compact_table() -> None:
    result, rows = answer()
    text = markdown(rows, collected(), recommend.opening(result, rows))
    lines = text.splitlines()
    assert lines[0].startswith("# litequant summary") and lines[2] == (
        "## Recommendation: ship `int8_mse`")
    assert lines[4].startswith("**`int8_mse`**: 4.02 MB, 9.0 MiB runtime memory, p50 1.43 ms at "
                               "1 thread (2.14x float32), top-1 84.50 % (-0.50 vs the float "
                               "model), agreement 99.00 % of 200 images. It meets every budget")
    assert lines[6].startswith("Runner-up: **`int8_grid`**")
    # the compact table, qualifying variants first in rank order, before the full one
    glance = text.index("### At a glance")
    assert glance < text.index("## All figures") < text.index("| variant | built by |")
    table = [line.split(" | ")[:2] for line in lines if line.startswith("| `")]
    assert table == [["| `int8_mse`", "**ship**"], ["| `int8_grid`", "runner-up"],
                     ["| `float32`", "qualifies"], ["| `float16`", "qualifies"],
                     ["| `int8_plain`", "too unfaithful"], ["| `int8`", "too unfaithful"],
                     ["| `weight_only_int8`", "too unfaithful"],
                     ["| `dynamic_int4`", "conversion failed"]]
    assert "| `int8_mse` | **ship** | 4.02 | 9.0 | 1.43 | 2.14x | 84.50 (-0.50) | 99.00 |" in lines


def test_memory_not_measured_drops_the_column_and_fails_a_memory_budget() -> None:
    records = collected()
    for name in FIGURES:
        del records[name]["benchmark"]["runtime"]
    rows = build_rows(records, VARIANTS)
    result = recommend.recommend(rows, budgets(), predictions())
    assert result.recommended == "int8_mse"
    assert "memory MiB" not in "\n".join(recommend.compact_table(result, rows))
    result = recommend.recommend(rows, budgets(max_memory_mib=100.0), predictions())
    assert result.recommended is None
    assert result.verdicts["float32"].reason == "not measured: runtime memory not measured"


def test_latency_of_another_session_is_not_comparable_and_a_busy_machine_is_said() -> None:
    records = collected(contended=[1])
    rows = build_rows(records, VARIANTS)
    sessions = recommend.latency_sessions(records, VARIANTS)
    sessions["int8_mse"] = "other"
    result = recommend.recommend(rows, budgets(), predictions(), sessions,
                                 records["latency_session"])
    assert result.recommended == "int8_grid"
    assert result.verdicts["int8_mse"].reason == (
        "not comparable: latency from benchmark session other, the others from s1 (dvc repro -f "
        "benchmark)")
    assert result.caveats and "other processes kept 1.4 of 2 cores busy" in result.caveats[0]
    # ranked by size, the latency session does not matter
    assert recommend.recommend(rows, budgets(rank_by="size"), predictions(),
                               sessions).recommended == "int8_mse"


def test_a_thread_count_that_was_not_measured_is_one_line() -> None:
    rows = build_rows(collected(), VARIANTS)
    with pytest.raises(PipelineError, match=r"recommend.threads: 4 was not measured "
                                            r"\(benchmark.threads: 1\)"):
        recommend.recommend(rows, budgets(threads=4))


def _gate_document(**overrides) -> dict:
    """The merged metrics document the gate reads, with the report's recommendation."""
    result, rows = answer(**overrides)
    document = {row["variant"]: {k: v for k, v in row.items() if v is not None}
                for row in rows}
    for row in document.values():
        row["failed"] = row.get("status") != "ok"
    document["recommendation"] = recommend.document(result)
    return document


def test_the_gate_checks_the_recommendation_and_says_when_it_changed() -> None:
    current = _gate_document()
    checks = gate.recommendation_checks(current, None, budgets())
    assert [(c.variant, c.ok) for c in checks] == [("recommended: int8_mse", True)]
    # budgets tightened since the report: the recommended variant no longer meets them
    checks = gate.recommendation_checks(current, None, budgets(max_top1_drop=0.25))
    assert not checks[0].ok and checks[0].note.startswith("too unfaithful: top-1 -0.50 points")
    # against a baseline that recommended int8_grid: said, not failed
    baseline = _gate_document(max_top1_drop=0.25)
    assert baseline["recommendation"]["variant"] == "int8_grid"
    checks = gate.recommendation_checks(current, baseline, budgets())
    assert [(c.metric, c.baseline, c.current, c.ok) for c in checks] == [
        ("meets the budgets", "int8_grid", "int8_mse", True),
        ("changed vs baseline", "int8_grid", "int8_mse", True)]
    assert checks[1].note.startswith("int8_grid now: qualifies; as fast as `int8_mse`")
    # a report that recommends nothing fails the gate
    nothing = _gate_document(max_size_mb=1.0)
    checks = gate.recommendation_checks(nothing, current, budgets(max_size_mb=1.0))
    assert [(c.current, c.ok) for c in checks] == [("none", False)]
    # the gate's variant rows skip the recommendation entry
    assert "recommendation" not in gate.variant_rows(current)
    limits = params_section(CheckParams)
    assert all(c.variant != "recommendation" for c in gate.run_checks(current, None, limits))


def test_the_memory_figure_is_drawn_with_the_recommended_variant_marked(tmp_path: Path) -> None:
    from litequant.report.plots import write_figures
    from litequant.report.summary import plot_columns, plot_rows

    result, rows = answer()
    points = plot_rows(rows)
    assert "memory_mib" in plot_columns(rows)
    assert {p["variant"]: p["memory_mib"] for p in points}["float32"] == 30.0
    paths = [tmp_path / f"{name}.png" for name in ("size", "latency", "memory")]
    write_figures(points, ["1"], 85.0, *paths[:2], "MobileNetV2 224x224, 200 images",
                  memory_png=paths[2], highlight=result.recommended)
    assert all(path.read_bytes()[:4] == b"\x89PNG" for path in paths)


# --- the report stage on the session's small pipeline, budgets changed in params.yaml ----------

def _report_with(project: Path, variants: dict[str, bool] | None = None,
                 **values) -> tuple[dict, list[str]]:
    """Run the report stage in ``project`` with ``recommend`` ``values`` (and
    ``convert.variants`` ``variants``) set in params.yaml; returns variants.json and summary.md's
    lines."""
    from stages import report

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["recommend"].update(values)
    params["convert"]["variants"].update(variants or {})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert report.main([]) == 0
    metrics = json.loads((project / "reports/metrics.json").read_text())
    document = json.loads((project / "reports/variants.json").read_text())
    assert metrics["recommendation"] == {"variant": document["recommendation"]["variant"]}
    return document, (project / "reports/summary.md").read_text().splitlines()


def test_the_report_stage_flips_its_recommendation_when_the_budgets_change(
        small_pipeline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    project = tmp_path / "project"
    shutil.copytree(small_pipeline, project)
    monkeypatch.chdir(project)
    # the smallest model within the default fidelity budgets (98 % agreement), ranked by size
    # (sizes do not vary between runs). `dynamic` is left out: smallest and exact on this tiny
    # model, it would win every size ranking
    by_size = {"rank_by": "size", "rank_tolerance": 0.0}
    document, summary = _report_with(project, {"dynamic": False}, **by_size)
    rows = {name: row for name, row in document.items()
            if isinstance(row, dict) and "size_bytes" in row and not row["failed"]}
    assert "dynamic" not in rows
    # the float models give the float model's top-1 class on all 12 images; the integer ones,
    # the smallest, miss 2-3 of them (one image is 8.3 points)
    exact = sorted((name for name, row in rows.items() if row["agreement"] >= 98.0),
                   key=lambda name: rows[name]["size_bytes"])
    assert exact == ["float16", "float32"]
    assert document["recommendation"]["variant"] == "float16"
    assert summary[2] == "## Recommendation: ship `float16`"
    smallest = min(rows, key=lambda name: (rows[name]["size_bytes"], -rows[name]["agreement"]))
    assert rows[smallest]["agreement"] < 98.0
    assert document["recommendation"]["reasons"][smallest].startswith("too unfaithful: agreement")
    # a looser agreement budget flips it to the smallest integer model (the most faithful of
    # those of equal size)
    document, summary = _report_with(project, min_agreement=0.0)
    # (variants of the same size and agreement, e.g. int8_mse and an int8_selective that kept
    # nothing float, are equally good answers)
    best = (rows[smallest]["size_bytes"], -rows[smallest]["agreement"])
    assert document["recommendation"]["variant"] in {
        name for name, row in rows.items() if (row["size_bytes"], -row["agreement"]) == best}
    smallest = document["recommendation"]["variant"]
    assert summary[2] == f"## Recommendation: ship `{smallest}`"
    assert document["recommendation"]["reasons"]["float16"].startswith(
        f"qualifies; larger than `{smallest}`")
    # a size ceiling no model meets: no recommendation, the closest named
    document, summary = _report_with(project, max_size_mb=0.001)
    assert document["recommendation"]["variant"] is None
    assert document["recommendation"]["closest"] == smallest
    assert summary[2] == "## Recommendation: no variant meets the budgets"
    capsys.readouterr()


def test_the_closest_is_the_most_faithful_of_the_nearly_equal_misses() -> None:
    # int8_plain, int8 and int8_mse take 1.43 ms, int8_grid 1.44: a 1.40 ms ceiling misses all
    # four by 2-3 %, within the 5 % tolerance; int8_mse agrees most (99.0 %)
    result = answer(max_p50_ms=1.40, min_agreement=97.0)[0]
    assert result.recommended is None and result.closest == "int8_mse"
    # without a tolerance the least excess alone decides (1.43 ms before 1.44 ms; among the
    # 1.43 ms ones the most faithful)
    result = answer(max_p50_ms=1.40, min_agreement=97.0, rank_tolerance=0.0)[0]
    assert result.closest == "int8_mse"
    result = answer(max_p50_ms=1.40, min_agreement=97.0, rank_tolerance=0.0,
                    max_top1_drop=0.25)[0]
    assert result.closest == "int8_grid"  # int8_mse misses two budgets now


def test_without_memory_figures_the_memory_plot_says_so(tmp_path: Path) -> None:
    from PIL import Image

    from litequant.report.plots import write_figures
    from litequant.report.summary import plot_rows

    records = collected()
    for name in FIGURES:
        del records[name]["benchmark"]["runtime"]
    points = plot_rows(build_rows(records, VARIANTS))
    paths = [tmp_path / f"{name}.png" for name in ("size", "latency", "memory")]
    write_figures(points, [], 85.0, *paths[:2], "test", memory_png=paths[2])
    assert Image.open(paths[2]).size == (700, 150)  # the one-line message, not empty axes
