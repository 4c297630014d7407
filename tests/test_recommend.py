"""The recommended variant (``params.yaml`` ``recommend``): hand-made report records whose
answer is worked out by hand, budgets that flip it, the reasons given for the others, the summary
it opens, the CI gate's check; and the report stage on the small pipeline with changed budgets."""

from __future__ import annotations

import json
import os
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
                        "finished_utc": "2026-12-06T10:01:00+00:00", "host": "ci",
                        "cpu": "test cpu", "cores": 2, "ai_edge_litert": "2.3.0", "rounds": 10,
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
