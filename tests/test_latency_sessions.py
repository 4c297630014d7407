"""Speed-ups only within one benchmark session: the report and the gate refuse to divide
latencies measured at different times (the "float16 0.23x" case of issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from litequant.core.params import CheckParams
from litequant.report import gate
from litequant.report.summary import NOT_COMPARABLE, build_rows, markdown, model_records
from tests.conftest import params_section


def _session(session_id: str, p50_ms: dict[str, float]) -> dict:
    """A benchmark session document with one thread count (1) and the given p50 latencies."""
    return {"session": {"id": session_id, "started_utc": "2026-11-25T10:00:00+00:00",
                        "finished_utc": "2026-11-25T10:01:00+00:00",
                        "device": {"kind": "local", "hostname": "ci", "cpu": "test cpu",
                                   "cores": 2, "runtime": "ai-edge-litert 2.3.0",
                                   "python": "3.11.7"},
                        "rounds": 10},
            "models": {name: {"status": "ok", "size_bytes": 1000, "note": "",
                              "latency": {"1": {"p50_ms": p50, "mean_ms": p50, "p90_ms": p50,
                                                "std_ms": 0.0, "runs": 20}}}
                       for name, p50 in p50_ms.items()}}


def _collected(latency: dict[str, dict]) -> dict:
    """What the report stage collects, for float32 and float16 with the given latency records."""
    evaluation = {"status": "ok", "top1": 70.0, "top5": 90.0, "agreement": 99.0,
                  "top5_overlap": 98.0, "kl_divergence": 0.001, "sqnr_db": 40.0, "images": 50}
    conversion = {"status": "ok", "size_bytes": 1000, "tool": "TFLiteConverter"}
    return {"keras": {"top1": 70.0, "top5": 90.0, "images": 50},
            "data": {"evaluation_images": 50, "calibration_images": 10, "bad_image_count": 0,
                     "synthetic": False, "description": "test images"},
            "model": {"name": "MobileNetV2", "input_size": [224, 224], "preprocessing": "tf",
                      "num_classes": 1000, "labels": {"kind": "imagenet"}},
            **{variant: {"conversion": conversion, "evaluation": evaluation,
                         "benchmark": latency[variant]} for variant in latency}}


def test_float16_is_not_divided_by_a_float32_remeasured_alone() -> None:
    # float16 measured while the machine was busy (21.7 ms); float32 later re-measured alone on
    # a quiet machine (5.0 ms). Dividing them gave "float16 0.23x" before.
    busy = model_records(_session("busy", {"float32": 21.0, "float16": 21.7}))
    quiet = model_records(_session("quiet", {"float32": 5.0}))
    collected = _collected({"float32": quiet["float32"], "float16": busy["float16"]})
    rows = {row["variant"]: row for row in build_rows(collected, ["float32", "float16"])}
    assert "speedup_t1" not in rows["float16"]
    assert rows["float16"]["latency_p50_ms_t1"] == 21.7  # the measurement itself is shown
    assert NOT_COMPARABLE in rows["float16"]["notes"]
    assert "busy" in rows["float16"]["notes"] and "quiet" in rows["float16"]["notes"]
    text = markdown(list(rows.values()), collected)
    assert "**Speed-ups not computed** for float16" in text
    assert "0.23x" not in text and f"{5.0 / 21.7:.2f}x" not in text

    # the same two variants measured together: the ratio of that session
    together = model_records(_session("together", {"float32": 21.0, "float16": 21.7}))
    rows = {row["variant"]: row for row in build_rows(
        _collected(together), ["float32", "float16"])}
    assert rows["float16"]["speedup_t1"] == pytest.approx(21.0 / 21.7, abs=1e-3)
    assert rows["float32"]["speedup_t1"] == 1.0
    assert NOT_COMPARABLE not in rows["float16"]["notes"]


def test_gate_says_not_comparable_instead_of_judging() -> None:
    limits = params_section(CheckParams, latency_threads=1, max_latency_regression=0.25)
    row = {"top1": 70.0, "size_bytes": 1000, "failed": False, "latency_p50_ms_t1": 21.7}
    current = {"keras": {"top1": 70.0}, "float32": {**row, "latency_p50_ms_t1": 5.0,
                                                    "speedup_t1": 1.0},
               "float16": row}  # no speed-up: measured in another session than float32
    baseline = {"keras": {"top1": 70.0}, "float32": {**row, "speedup_t1": 1.0},
                "float16": {**row, "speedup_t1": 1.0}}
    latency = [c for c in gate.run_checks(current, baseline, limits)
               if c.variant == "float16" and c.metric.startswith("p50 latency")]
    assert len(latency) == 1 and latency[0].ok
    assert latency[0].note.startswith(gate.NOT_COMPARABLE) and latency[0].current == "–"
    # with a ratio of one session on both sides, the gate judges (and here fails: 2x slower)
    current["float16"] = {**row, "speedup_t1": 0.5}
    failing = [c for c in gate.run_checks(current, baseline, limits) if not c.ok]
    assert [(c.variant, c.metric) for c in failing] == [("float16",
                                                         "p50 latency / float32 (1 thr)")]


# --- sessions measured while other processes kept the cores busy -----------------------------

def test_other_load_subtracts_this_process() -> None:
    from litequant.measure.benchmarking import other_load

    # 10 s of wall time; the machine was busy 18 CPU seconds, 5 of them this process's
    assert other_load((100.0, 50.0, 1.0), (110.0, 68.0, 6.0)) == pytest.approx(1.3)
    assert other_load(None, (110.0, 68.0, 6.0)) is None  # no /proc/stat: not measured


@pytest.mark.parametrize("load, cores, contended", [
    (0.05, 2, []),        # idle
    (0.9, 2, [2]),        # one busy process: 2 threads no longer have 2 free cores
    (1.3, 2, [2]),        # two busy processes sharing the cores with ours
    (1.6, 2, [1, 2]),     # not even one core left
    (0.9, 4, []),         # the same process on 4 cores leaves 3 free
    (None, 2, []),        # not measured
])
def test_contended_threads(load: float | None, cores: int, contended: list[int]) -> None:
    from litequant.measure.benchmarking import contended_threads

    assert contended_threads(load, cores, [1, 2]) == contended


def test_no_speed_up_at_a_contended_thread_count() -> None:
    document = _session("loaded", {"float32": 8.0, "int8": 2.0})
    for model in document["models"].values():  # a second thread count, 2
        model["latency"]["2"] = {**model["latency"]["1"], "p50_ms": model["latency"]["1"][
            "p50_ms"] * 0.6}
    document["session"].update(other_load_cores=1.3, contended_threads=[2])
    records = model_records(document)
    rows = {row["variant"]: row for row in build_rows(
        _collected({"float32": records["float32"], "int8": records["int8"]}),
        ["float32", "int8"])}
    assert rows["int8"]["speedup_t1"] == pytest.approx(4.0)   # 1 thread: still fair
    assert "speedup_t2" not in rows["int8"] and rows["int8"]["latency_p50_ms_t2"] > 0
    assert "at 2 thread(s) the machine was busy (other processes kept 1.3 of 2 cores" in rows[
        "int8"]["notes"]
    collected = _collected({"float32": records["float32"], "int8": records["int8"]})
    text = markdown(list(rows.values()), {**collected, "latency_session": document["session"]})
    assert "**Speed-ups not computed** for float32, int8: at 2 thread(s) the machine" in text
    assert "other processes keeping 1.3 cores busy" in text
    # the gate says why instead of judging the 2-thread ratio
    limits = params_section(CheckParams, latency_threads=2, max_latency_regression=0.25)
    current = {"keras": {"top1": 70.0}, "latency_session": document["session"],
               **{name: {key: value for key, value in row.items() if key != "speedup_refused"}
                  for name, row in rows.items() if name != "keras"}}  # as in variants.json
    baseline = {"keras": {"top1": 70.0}, "float32": {**current["float32"], "speedup_t2": 1.0},
                "int8": {**current["int8"], "speedup_t2": 4.0}}
    check = [c for c in gate.run_checks(current, baseline, limits)
             if c.variant == "int8" and c.metric.startswith("p50 latency")]
    assert len(check) == 1 and check[0].ok
    assert check[0].note == ("not comparable: the current run has no speed-up at 2 thread(s): the "
                             "machine was busy (other processes kept 1.3 of 2 cores busy while "
                             "it was timed)")


@pytest.mark.slow  # a real session timed for 2 s with every core hogged (its arithmetic: above)
def test_a_session_under_a_cpu_hog_marks_multi_thread_counts(tmp_path: Path) -> None:
    """Real processes: with one busy process per core, the session measures the load (while
    timing latency and while measuring the runtime figures) and marks the 2-thread measurement
    as contended."""
    import multiprocessing
    import os

    import tensorflow as tf

    from litequant.core.params import BenchmarkParams
    from litequant.measure.benchmarking import measure_session
    from tests.conftest import small_classifier

    if not os.path.exists("/proc/stat"):
        pytest.skip("load is measured from /proc/stat (Linux)")
    model = tmp_path / "tiny.tflite"
    model.write_bytes(tf.lite.TFLiteConverter.from_keras_model(small_classifier()).convert())
    # (one fresh process for the runtime figures, not the repo's 5: the load is measured while
    # the latency is timed, and five start-ups on hogged cores took seconds)
    settings = params_section(BenchmarkParams, threads=[1, 2], warmup_runs=1, min_runs=10,
                              min_seconds=1.0, runtime_repeats=1)
    cores = os.cpu_count() or 1
    hogs = [multiprocessing.get_context("fork").Process(target=_spin, daemon=True)
            for _ in range(cores)]
    for hog in hogs:
        hog.start()
    try:
        loaded = measure_session({"tiny": (model, "tf")}, settings)["session"]
    finally:
        for hog in hogs:
            hog.terminate()
            hog.join()
    assert loaded["other_load_cores"] > 0.5 and 2 in loaded["contended_threads"]
    # and while the fresh processes measured memory and start-up (their own CPU not counted)
    assert loaded["runtime_other_load_cores"] > 0.5


def _spin() -> None:
    while True:
        pass
