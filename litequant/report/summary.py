"""The report's tables: one row per variant of what it costs, as DVC metrics, Markdown, CSV, plots.

Stage ``report`` gathers every stage's output (:func:`build_rows` takes them as a ``collected``
mapping) and writes

* ``reports/metrics.json``: the DVC metrics, kept short enough for one terminal line (``dvc
  metrics show``, ``dvc exp show``): the top-1 accuracy of each row (``keras``, then each
  variant), numbers only;
* ``reports/variants.json``: everything else per row (sizes, agreement, latencies, speed-ups,
  failure flags, names and lists such as int8_selective's float layers) and the latency session
  (not a DVC metric; the CI gate reads it beside the metrics);
* ``reports/summary.md`` and ``reports/summary.csv``: one row per variant: size, compression vs
  float32, latency p50 per thread count, speed-up vs float32, top-1, top-k, Δtop-1 vs the float
  Keras model, agreement, top-k overlap, KL divergence, SQNR, notes (k = min(5, classes - 1):
  ``top5``/``top5_overlap`` for ImageNet, ``top2`` for 3 classes, none for 2);
* ``reports/plots/variants.csv``: the plot data (accuracy and agreement vs size, latency and
  runtime memory);
* for label spaces of up to 100 classes, a per-class top-1 table (float model vs each integer
  variant, the classes that lose most first) in ``summary.md`` and
  ``reports/plots/confusion.csv`` (actual and predicted class per evaluation image of
  :func:`confusion_variant`, for DVC's ``confusion`` template).

Speed-ups are ratios of latencies measured in the same benchmark session (:func:`same_session`);
across sessions the report prints no number and says why.

A peer model (an external ``.tflite``) is one more row; the int8 per-layer errors list the worst
layers in ``summary.md``. Variants calibrated on noise are marked NOT REPRESENTATIVE, and
``summary.md`` explains why their accuracy collapses."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import numpy as np

from litequant.core.metrics import top_k_key, top_k_size
from litequant.quantize.registry import (
    EDGE_QUANTIZER,
    FLOAT_VARIANT,
    FLOAT_WEIGHT_VARIANTS,
    PASSES,
    ROUND_TO_NEAREST,
    TF_CONVERTER,
    KeptFloat,
)

#: The row of the float Keras model, which every variant is compared with.
FLOAT_MODEL_ROW = "keras"
#: The row of the peer model (``peer.path``).
PEER_ROW = "peer"
WORST_LAYERS_SHOWN = 10


#: The notes' wording when a latency cannot be divided by float32's.
NOT_COMPARABLE = "speed-up not computed"


#: The row the fidelity section measures every method's gain against: the converter's int8.
FIDELITY_BASELINE = "int8_plain"


def model_records(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each model's entry of a benchmark session document (``data/benchmark/latency.json``),
    with the session's ``id`` as ``session``, and its ``contended_threads``,
    ``other_load_cores`` and ``device`` (:mod:`litequant.measure.benchmarking`)."""
    session = document["session"]
    shared = {"session": session["id"],
              "contended_threads": [str(t) for t in session.get("contended_threads") or []],
              "other_load_cores": session.get("other_load_cores"),
              "device": session.get("device")}
    return {name: {**entry, **shared} for name, entry in document["models"].items()}


def busy_machine(session: dict[str, Any]) -> str:
    """Why a contended thread count gets no speed-up, from anything holding the session's
    ``other_load_cores`` and ``device`` (the session record or a :func:`model_records` entry)."""
    cores = (session.get("device") or {}).get("cores")
    return (f"the machine was busy (other processes kept {session.get('other_load_cores')} of "
            f"{cores} cores busy while it was timed)")


def same_session(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """True when two latency records (:func:`model_records`) come from one benchmark session:
    the only latencies that may be divided by each other."""
    return first.get("session") is not None and first.get("session") == second.get("session")


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def top_k_columns(metrics: dict[str, Any]) -> list[str]:
    """The top-k columns (``top5``, ``top5_overlap`` ...; k > 1) present in ``metrics``."""
    return sorted(key for key in metrics if re.fullmatch(r"top([2-9]|\d\d+)(_overlap)?", key))


def build_rows(collected: dict[str, Any], variants: list[str]) -> list[dict[str, Any]]:
    """One flat row per model (``keras`` first): the values of every table column."""
    float_model = collected[FLOAT_MODEL_ROW]
    float32 = collected.get(FLOAT_VARIANT)
    float32_ok = float32 is not None and float32["conversion"]["status"] == "ok"
    top_k = {key: _round(float_model[key]) for key in top_k_columns(float_model)}
    top_k.update({f"{key}_overlap": 100.0 for key in list(top_k)})
    rows: list[dict[str, Any]] = [{
        "variant": FLOAT_MODEL_ROW, "status": "ok", "size_bytes": None,
        "top1": _round(float_model["top1"]), **top_k,
        "delta_top1": 0.0, "agreement": 100.0, "kl_divergence": 0.0,
        "sqnr_db": None, "images": float_model["images"], "notes": "float Keras model",
    }]
    for variant in variants:
        entry = collected[variant]
        conversion, evaluation, bench = entry["conversion"], entry["evaluation"], entry["benchmark"]
        notes = []
        if conversion["status"] != "ok":
            rows.append({"variant": variant, "tool": conversion.get("tool"), "status": "failed",
                         "notes": f"conversion failed: {conversion.get('error', '')[:200]}"})
            continue
        calibration = conversion.get("calibration")
        if calibration:
            if calibration["representative"]:
                notes.append(f"calibrated on {calibration['num_images']} real images")
            else:
                notes.append(f"NOT REPRESENTATIVE: calibrated on {calibration['num_images']} "
                             f"{calibration['source']} noise samples, not images "
                             "(see Calibration below)")
        if conversion.get("float_layers") is not None:
            notes.append(selection_note(conversion, collected.get("selection")))
        if bench.get("note"):
            notes.append(bench["note"])
        if conversion.get("tool") == EDGE_QUANTIZER:
            ranges = conversion.get("calibration_ranges")
            notes.append(f"built from float32 by ai-edge-quantizer (recipe.json beside the "
                         f"model{f'; {ranges} min/max activation ranges' if ranges else ''})")
        row: dict[str, Any] = {
            "variant": variant, "tool": conversion.get("tool", TF_CONVERTER), "status": "ok",
            "size_bytes": conversion["size_bytes"], **accuracy_columns(evaluation, float_model),
        }
        row["quantized_output"] = bool(conversion.get("output", {}).get("scale"))
        if conversion.get("methods"):
            row["methods"] = list(conversion["methods"])
        if calibration:
            row["calibration_images"] = calibration["num_images"]
            row["calibration_representative"] = bool(calibration["representative"])
        if conversion.get("float_layers") is not None:
            row["float_layers"] = list(conversion["float_layers"])
            row["budget_points"] = conversion["budget_points"]
            row["budget_met"] = conversion["budget_met"]
            row["calibration_agreement"] = conversion["calibration_agreement"]["selected"]
        if float32_ok:
            row["compression"] = _round(float32["conversion"]["size_bytes"]
                                        / conversion["size_bytes"], 3)
        row.update(latency_columns(bench, float32["benchmark"] if float32_ok else {}))
        row.update(runtime_columns(bench))
        if row.get("speedup_refused"):
            notes.append(row["speedup_refused"])
        row["notes"] = "; ".join(notes)
        rows.append(row)
    if collected.get(PEER_ROW, {}).get("status") == "ok":
        row = peer_row(collected[PEER_ROW], float_model,
                       float32["conversion"]["size_bytes"] if float32_ok else None)
        row.update(latency_columns(collected.get("peer_benchmark", {}),
                                   float32["benchmark"] if float32_ok else {}))
        row.update(runtime_columns(collected.get("peer_benchmark", {})))
        if row.get("speedup_refused"):
            row["notes"] += "; " + row["speedup_refused"]
        rows.append(row)
    return rows


def selection_note(conversion: dict[str, Any], selection: dict[str, Any] | None = None) -> str:
    """What ``int8_selective`` kept float, its real calibration agreement against the all-int8
    model's, whether its budget held, and its latency cost (``conversion.json`` fields of
    :func:`litequant.quantize.passes.selection.record_fields`; the latency from
    ``selection.json``, when given)."""
    agreement = conversion["calibration_agreement"]
    verdict = "met" if conversion["budget_met"] else "NOT met: the closest model within limits"
    kept = ", ".join(conversion["float_ops"]) or "none"
    lost = conversion.get("expected_loss_points")
    expected = ("" if lost is None else f" (expected loss {lost['selected']:.2f} points "
                f"against {lost['int8']:.2f})")
    latency = (selection or {}).get("latency_vs_int8")
    cost = ("" if latency is None else
            f"; p50 {latency:.2f}x the all-int8 model's at 1 thread, measured while selecting "
            f"(ceiling {conversion['max_latency_vs_int8']:g}x)")
    return (f"{conversion['layers_kept']} weight op(s) kept float, chosen on the real int8 model "
            f"(budget {conversion['budget_points']:g} points of agreement with float32 on "
            f"{conversion['budget_images']} calibration images: {agreement['selected']:.1f}% "
            f"against all-int8 {agreement['int8']:.1f}%{expected}, {verdict}{cost}): {kept}")


#: The columns of ``reports/plots/selection_curve.csv``.
SELECTION_CURVE_COLUMNS = ["step", "added", "float_ops", "layers_kept", "accepted", "skipped",
                           "agreement", "kl_divergence", "latency_vs_int8"]


def accuracy_columns(evaluation: dict[str, Any], float_model: dict[str, Any]
                     ) -> dict[str, float | int | None]:
    """Accuracy and fidelity columns of an evaluated model (an ``evaluate``-style metrics.json).

    ``delta_top1`` is against ``float_model`` (the float Keras model's metrics, same run).
    """
    return {"top1": _round(evaluation["top1"]),
            **{key: _round(evaluation[key]) for key in top_k_columns(evaluation)},
            "delta_top1": _round(evaluation["top1"] - float_model["top1"]),
            "agreement": _round(evaluation["agreement"]),
            "kl_divergence": _round(evaluation["kl_divergence"], 6),
            "sqnr_db": _round(evaluation["sqnr_db"], 2), "images": evaluation["images"]}


def latency_columns(benchmark: dict[str, Any], reference: dict[str, Any]
                    ) -> dict[str, Any]:
    """``latency_{p50,mean,p90}_ms_t<threads>`` and ``speedup_t<threads>`` (vs float32's p50).

    ``benchmark`` and ``reference`` (the float32 variant's) are latency records of
    :func:`model_records` (empty or without ``latency``: no columns). A speed-up is computed only
    when both come from the same session, and only at thread counts that session did not find
    contended by other processes; otherwise ``speedup_refused`` says why, and no number is given.
    """
    columns: dict[str, Any] = {}
    reference_latency = reference.get("latency") or {}
    comparable = same_session(benchmark, reference)
    contended = benchmark.get("contended_threads") or []
    for threads, stats in (benchmark.get("latency") or {}).items():
        columns[f"latency_p50_ms_t{threads}"] = _round(stats["p50_ms"], 3)
        columns[f"latency_mean_ms_t{threads}"] = _round(stats["mean_ms"], 3)
        columns[f"latency_p90_ms_t{threads}"] = _round(stats["p90_ms"], 3)
        reference_stats = reference_latency.get(threads)
        if reference_stats and comparable and threads not in contended:
            columns[f"speedup_t{threads}"] = _round(reference_stats["p50_ms"] / stats["p50_ms"], 3)
    if benchmark.get("latency") and reference_latency and not comparable:
        columns["speedup_refused"] = (
            f"{NOT_COMPARABLE}: measured in benchmark session {benchmark.get('session')}, "
            f"{FLOAT_VARIANT} in session {reference.get('session')} (different times, different "
            "machine load); re-run dvc repro benchmark to measure both together")
    elif benchmark.get("latency") and reference_latency and contended:
        columns["speedup_refused"] = (
            f"{NOT_COMPARABLE}: at {' and '.join(contended)} thread(s) {busy_machine(benchmark)}; "
            "re-run dvc repro -f benchmark when it is quiet")
    return columns


def runtime_columns(benchmark: dict[str, Any]) -> dict[str, float]:
    """``memory_mib`` (peak resident-set growth, MiB, 1 decimal), ``init_ms`` and
    ``first_invoke_ms`` (2 decimals) of a latency record's ``runtime`` figures (a fresh process,
    1 thread; :mod:`litequant.measure.device_runner`); none in records without them."""
    runtime = benchmark.get("runtime")
    if not runtime:
        return {}
    return {"memory_mib": round(runtime["peak_memory_bytes"] / 2**20, 1),
            "init_ms": round(float(runtime["init_ms"]), 2),
            "first_invoke_ms": round(float(runtime["first_invoke_ms"]), 2)}


def device_label(session: dict[str, Any]) -> str:
    """Where a session's latencies were measured: ``host (CPU, N cores; runtime)``, with
    ``over SSH`` for a target device (``session.device``)."""
    device = session["device"]
    where = " (target device over SSH)" if device["kind"] == "ssh" else ""
    return (f"{device['hostname']}{where} ({device['cpu']}, {device['cores']} cores; "
            f"{device['runtime']})")


def peer_row(peer: dict[str, Any], float_model: dict[str, Any],
             float32_size: int | None) -> dict[str, Any]:
    """The table row of the peer model (``data/evaluate_peer``)."""
    tensor = peer["input"]
    quantized = (f"{tensor['dtype']} input scale {tensor['scale']:.6g} zero point "
                 f"{tensor['zero_point']}" if tensor["scale"] else f"{tensor['dtype']} input")
    row = {"variant": PEER_ROW, "tool": "external .tflite", "status": "ok",
           "size_bytes": peer["size_bytes"],
           **accuracy_columns(peer, float_model),
           "quantized_output": bool(peer["output"]["scale"]),
           "notes": f"peer model {Path(peer['path']).name} (sha256 "
                    f"{peer['sha256'][:12]}): {quantized}, "
                    f"{peer['output']['shape'][-1]} outputs, label_offset "
                    f"{peer['label_offset']}"}
    if float32_size:
        row["compression"] = _round(float32_size / peer["size_bytes"], 3)
    return row


#: Per-row keys of ``variants.json`` that are names or text, not numbers.
_TEXT_KEYS = ("variant", "notes", "speedup_refused")


def metrics_document(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The DVC metrics: the top-1 accuracy (%) of each row, keyed by row name (``int8.top1``).

    Deliberately short: ``dvc metrics show`` prints every key of the file on one line, and
    ``dvc exp show`` one column per key. Everything else is in :func:`variants_document`.
    """
    return {row["variant"]: {"top1": row["top1"]} for row in rows
            if row["status"] == "ok" and row.get("top1") is not None}


def variants_document(rows: list[dict[str, Any]], collected: dict[str, Any]) -> dict[str, Any]:
    """``reports/variants.json``: the data facts (with the label space: ``classes``,
    ``labels`` kind and the ``top_k`` of the top-k metrics), the latency session and every row's
    values (numbers, flags, ``tool``, ``status``, ``float_layers``...), keyed by row name."""
    data, model = collected["data"], collected["model"]
    height, width = model["input_size"]
    document: dict[str, Any] = {"data": {
        "evaluation_images": data["evaluation_images"],
        "calibration_images": data["calibration_images"],
        "bad_images": data["bad_image_count"], "synthetic": data["synthetic"],
        "input_size": height, **({"input_width": width} if width != height else {}),
        "classes": model["num_classes"], "labels": model["labels"]["kind"],
        "top_k": top_k_size(model["num_classes"])}}
    if collected.get("latency_session"):
        document["latency_session"] = collected["latency_session"]
    for row in rows:
        document[row["variant"]] = {key: value for key, value in row.items()
                                    if key not in _TEXT_KEYS and value is not None}
        document[row["variant"]]["failed"] = row["status"] != "ok"
    return document


def _format(value: Any, column: str) -> str:
    if value is None or value == "":
        return "–"
    if column == "size_bytes":
        return f"{value / 1e6:.2f} MB"
    if column in ("compression",) or column.startswith("speedup"):
        return f"{value:.2f}x"
    if column == "delta_top1":
        return f"{value:+.2f}"
    if column == "kl_divergence":
        return f"{value:.4f}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


_HEADERS = {"variant": "variant", "tool": "built by", "size_bytes": "size",
            "compression": "compression",
            "top1": "top-1 %", "delta_top1": "Δtop-1 vs float",
            "agreement": "agreement %",
            "kl_divergence": "KL", "sqnr_db": "SQNR dB", "images": "images", "notes": "notes",
            "memory_mib": "memory MiB", "init_ms": "init ms", "first_invoke_ms": "1st invoke ms"}

#: The runtime columns (:func:`runtime_columns`), in the tables when the benchmark measured them.
RUNTIME_COLUMNS = ("memory_mib", "init_ms", "first_invoke_ms")


def table_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Columns present in ``rows``, in reading order (latency columns per thread count; the
    runtime columns when measured)."""
    threads = sorted({key.rsplit("_t", 1)[1] for row in rows for key in row
                      if key.startswith("latency_p50_ms_t")}, key=int)
    latency = [c for t in threads for c in (f"latency_p50_ms_t{t}", f"speedup_t{t}")]
    top_k = top_k_columns(rows[0]) if rows else []
    accuracy = [c for c in top_k if not c.endswith("_overlap")]
    overlap = [c for c in top_k if c.endswith("_overlap")]
    runtime = [c for c in RUNTIME_COLUMNS if any(row.get(c) is not None for row in rows)]
    return ["variant", "tool", "size_bytes", "compression", *runtime, *latency, "top1", *accuracy,
            "delta_top1", "agreement", *overlap, "kl_divergence", "sqnr_db", "images", "notes"]


def _header(column: str) -> str:
    if column.startswith("latency_p50_ms_t"):
        return f"p50 ms ({column.rsplit('_t', 1)[1]} thr)"
    if column.startswith("speedup_t"):
        return f"speed-up ({column.rsplit('_t', 1)[1]} thr)"
    top_k = re.fullmatch(r"top(\d+)(_overlap)?", column)
    if top_k and column != "top1":
        return f"top-{top_k.group(1)}{' overlap' if top_k.group(2) else ''} %"
    return _HEADERS[column]


def markdown(rows: list[dict[str, Any]], collected: dict[str, Any],
             opening: list[str] | None = None) -> str:
    """``summary.md``: the data/model description, the table, and notes; ``opening`` (the
    recommendation and the compact table, :mod:`litequant.report.recommend`) right under the
    title, the full table then under its own heading."""
    data, model = collected["data"], collected["model"]
    columns = table_columns(rows)
    lines = []
    if data["synthetic"]:
        lines += ["> **SYNTHETIC DATA** — these images are generated noise with random labels; "
                  "accuracy figures are meaningless (smoke test only).", ""]
    lines += [f"# litequant summary: {model['name']} {model['input_size'][0]}x"
              f"{model['input_size'][1]}", "", *(opening or []),
              *(["## All figures", ""] if opening else []),
              f"Evaluation: {data['evaluation_images']} images from {data['description']}; "
              f"calibration split: {data['calibration_images']} other images "
              f"(disjoint). Preprocessing: `{model['preprocessing']}`.", ""]
    if data["bad_image_count"]:
        lines += [f"{data['bad_image_count']} undecodable file(s) were skipped while fetching "
                  "(listed in data/fetch/fetch.json).", ""]
    lines.append("| " + " | ".join(_header(c) for c in columns) + " |")
    lines.append("|" + "|".join("---" if c in ("variant", "tool", "notes") else "---:"
                                for c in columns) + "|")
    for row in rows:
        if row["status"] != "ok":
            lines.append("| " + " | ".join(
                row["variant"] if c == "variant" else row.get("tool") or "–" if c == "tool"
                else "**FAILED**" if c == "size_bytes"
                else row["notes"] if c == "notes" else "–" for c in columns) + " |")
            continue
        lines.append("| " + " | ".join(_format(row.get(c), c) for c in columns) + " |")
    classes = model["num_classes"]
    key = top_k_key(classes)
    lines += ["", f"Δtop-1, agreement (same top-1 class), "
              f"{f'top-{key[3:]} overlap, ' if key else ''}KL divergence and SQNR "
              "are measured against the float Keras model on the same images. Latency: one "
              "image per invoke, p50 of repeated timed runs after warm-up"
              + (f", measured on {device_label(collected['latency_session'])}"
                 if collected.get("latency_session") else "") + ".", ""]
    lines += [f"Label space: {classes} classes ({_label_space(model)}); "
              + (f"top-k accuracy and overlap use k = {key[3:]} (min(5, classes - 1))."
                 if key else "with two classes top-k would be top-1 (k = min(5, classes - 1) "
                 "= 1), so no top-k columns are shown."), ""]
    lines += latency_section(collected.get("latency_session"), rows)
    quantized = [row["variant"] for row in rows if row.get("quantized_output")]
    if quantized and key:
        lines += [f"Top-{key[3:]} overlap of {', '.join(quantized)} (integer outputs) is "
                  "limited by "
                  "the output quantization itself: the softmax is stored in 256 steps, so beyond "
                  "the few likely classes most scores tie at zero and their order is arbitrary. "
                  "Top-1 agreement, KL divergence and SQNR are the meaningful fidelity measures "
                  "there.", ""]
    lines += fidelity_section(rows, collected.get("fidelity_changes") or {},
                              collected.get("peer_changes") or {})
    lines += calibration_section(rows)
    lines += per_class_section(collected.get("per_class"))
    lines += layer_errors_section(collected.get("layer_errors"), rows)
    return "\n".join(lines)


def latency_section(session: dict[str, Any] | None, rows: list[dict[str, Any]]) -> list[str]:
    """Where and when the latencies were measured, and any speed-up the report refused."""
    lines = []
    if session:
        lines += [f"Latency session `{session['id']}`: {session['started_utc']} to "
                  f"{session['finished_utc']} (UTC) on {device_label(session)}, every "
                  f"model interleaved in {session['rounds']} rounds"
                  + (f", other processes keeping {session['other_load_cores']} cores busy"
                     if session.get("other_load_cores") is not None else "")
                  + (f" ({session['runtime_other_load_cores']} while memory, init and first "
                     "invoke were measured)"
                     if session.get("runtime_other_load_cores") is not None else "")
                  + ". Speed-ups divide latencies of this one session only.", ""]
    refused = [row for row in rows if row.get("speedup_refused")]
    if refused:
        lines += ["**Speed-ups not computed** for " + ", ".join(
            row["variant"] for row in refused) + ": " + refused[0]["speedup_refused"]
            .split(": ", 1)[1] + ".", ""]
    return lines


def _label_space(model: dict[str, Any]) -> str:
    labels = model["labels"]
    single = ", one sigmoid output p read as (1 - p, p)" if model.get("outputs") == 1 else ""
    if labels["kind"] == "imagenet":
        return "ImageNet-1k" + single
    if labels["kind"] == "file":
        return f"label file {Path(labels['path']).name}{single}"
    return f"model.labels: {labels['kind']}{single}"


def integer_variants(variants: list[str]) -> list[str]:
    """The variants with integer weights or activations (every one but float32/float16)."""
    return [variant for variant in variants if variant not in FLOAT_WEIGHT_VARIANTS]


def confusion_variant(predictions: dict[str, np.ndarray]) -> str:
    """The variant of the confusion plot: ``int8`` when it was evaluated, else the first
    evaluated integer variant, else the float model (``predictions`` keyed by row name)."""
    candidates = integer_variants([name for name in predictions if name != FLOAT_MODEL_ROW])
    if "int8" in candidates:
        return "int8"
    return candidates[0] if candidates else FLOAT_MODEL_ROW


def per_class_rows(names: list[str], labels: np.ndarray,
                   predictions: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Top-1 accuracy (percent) per class of the float model and each integer variant.

    Args:
        names: class names in output order.
        labels: ``int`` ``(N,)`` class index of each evaluation image.
        predictions: ``int`` ``(N,)`` predicted class per row name (``keras`` and variants that
            were evaluated).

    Returns:
        One row per class with evaluation images: ``class``, ``images``, one accuracy per row
        name and ``worst_drop`` (the largest loss of an integer variant vs the float model,
        points), sorted by ``worst_drop`` (largest first), then by class index.
    """
    variants = integer_variants([name for name in predictions if name != FLOAT_MODEL_ROW])
    rows = []
    for index, name in enumerate(names):
        chosen = labels == index
        if not chosen.any():
            continue
        row: dict[str, Any] = {"class": name, "images": int(chosen.sum())}
        for model, predicted in ((FLOAT_MODEL_ROW, predictions[FLOAT_MODEL_ROW]),
                                 *((v, predictions[v]) for v in variants)):
            row[model] = float(100.0 * np.mean(predicted[chosen] == index))
        row["worst_drop"] = max((row[FLOAT_MODEL_ROW] - row[v] for v in variants), default=0.0)
        row["order"] = index
        rows.append(row)
    rows.sort(key=lambda row: (-row["worst_drop"], row["order"]))
    return rows


def per_class_section(per_class: dict[str, Any] | None) -> list[str]:
    """The per-class top-1 table of ``summary.md`` (label spaces of up to 100 classes)."""
    if not per_class:
        return []
    rows = per_class_rows(per_class["names"], per_class["labels"], per_class["predictions"])
    variants = integer_variants([name for name in per_class["predictions"]
                                 if name != FLOAT_MODEL_ROW])
    empty = len(per_class["names"]) - len(rows)
    lines = ["## Per-class top-1 accuracy: float model vs integer variants", "",
             "Top-1 % per class on the evaluation images, the classes whose accuracy an integer "
             "variant loses most first (worst drop vs the float model, points)."
             + (f" {empty} class(es) have no evaluation image." if empty else "")
             + f" Confusion plot (`dvc plots show`): {per_class['confusion_variant']}.", "",
             "| class | images | float % | " + " | ".join(f"{v} %" for v in variants)
             + " | worst drop (points) |",
             "|---|---:|---:|" + "---:|" * len(variants) + "---:|"]
    for row in rows:
        lines.append(f"| {row['class']} | {row['images']} | {row[FLOAT_MODEL_ROW]:.1f} | "
                     + "".join(f"{row[v]:.1f} | " for v in variants)
                     + f"{row['worst_drop']:.1f} |")
    lines.append("")
    return lines


def confusion_rows(names: list[str], labels: np.ndarray, predicted: np.ndarray
                   ) -> list[dict[str, str]]:
    """``actual``, ``predicted`` class name per evaluation image (DVC ``confusion`` template)."""
    return [{"actual": names[int(a)], "predicted": names[int(p)]}
            for a, p in zip(labels, predicted, strict=True)]


def _gain(row: dict[str, Any], baseline: dict[str, Any] | None, key: str) -> str:
    """``row[key] - baseline[key]`` signed, or ``–`` (the baseline itself, or a value missing)."""
    if baseline is None or row is baseline or row.get(key) is None or baseline.get(key) is None:
        return "–"
    return f"{row[key] - baseline[key]:+.2f}"


def paired_changes(predictions: dict[str, np.ndarray],
                   baseline: str = FIDELITY_BASELINE) -> dict[str, tuple[int, int]]:
    """Per variant, ``(won, lost)`` against ``baseline`` on the same images: how many images it
    agrees with the float model on (same top-1 as ``keras``) where ``baseline`` does not, and
    the reverse. Empty when the baseline or the float model was not evaluated.

    Args:
        predictions: ``int`` ``(N,)`` top-1 per row name (``keras`` and variants).
    """
    if baseline not in predictions or FLOAT_MODEL_ROW not in predictions:
        return {}
    reference = np.asarray(predictions[FLOAT_MODEL_ROW])
    base = np.asarray(predictions[baseline]) == reference
    changes = {}
    for name, predicted in predictions.items():
        if name in (FLOAT_MODEL_ROW, baseline):
            continue
        agrees = np.asarray(predicted) == reference
        changes[name] = (int(np.sum(agrees & ~base)), int(np.sum(~agrees & base)))
    return changes


def beyond_noise(won: int, lost: int) -> bool:
    """Whether ``won`` against ``lost`` changed images is more than chance: a two-sided sign test
    at 95 % (normal approximation), ``|won - lost| > 1.96 * sqrt(won + lost)``."""
    return abs(won - lost) > 1.96 * (won + lost) ** 0.5


def _changes_cell(name: str, changes: dict[str, tuple[int, int]]) -> str:
    """``won / lost`` from :func:`paired_changes`, *(noise)* when a fair coin would give it."""
    if name not in changes:
        return "–"
    won, lost = changes[name]
    return f"{won} / {lost}" + ("" if beyond_noise(won, lost) else " (noise)")


def method_legend() -> str:
    """What each fidelity method does, from the registry (one clause each, ``;``-separated)."""
    methods = [("round to nearest", ROUND_TO_NEAREST), (KeptFloat.method, KeptFloat.legend),
               *((p.method.split(" (")[0], f"{p.legend} (`{p.module.replace('.', '/')}.py`)")
                 for p in PASSES.values())]
    return "; ".join(f"*{name}*, {legend}" for name, legend in methods)


def fidelity_section(rows: list[dict[str, Any]],
                     changes: dict[str, tuple[int, int]] | None = None,
                     peer_changes: dict[str, tuple[int, int]] | None = None) -> list[str]:
    """Which fidelity methods each integer variant used and what each bought: its agreement
    with the float model next to ``int8_plain``'s (the converter's int8), same images, with the
    images it won and lost against it (``changes``, :func:`paired_changes`) and, when a peer
    was evaluated, against the peer (``peer_changes``)."""
    changes = changes or {}
    peer_changes = peer_changes or {}
    measured = [row for row in rows if row.get("methods") and row.get("agreement") is not None]
    if not measured:
        return []
    baseline = next((row for row in measured if row["variant"] == FIDELITY_BASELINE), None)
    peer_column = " images won / lost vs peer |" if peer_changes else ""
    lines = ["## Fidelity: methods and what each bought", "",
             f"| variant | methods | agreement | vs {FIDELITY_BASELINE} | images won / lost "
             f"|{peer_column} SQNR dB | vs {FIDELITY_BASELINE} | Δtop-1 |",
             "|---|---|---:|---:|---:|" + ("---:|" if peer_changes else "") + "---:|---:|---:|"]
    for row in measured:
        peer_cell = f" {_changes_cell(row['variant'], peer_changes)} |" if peer_changes else ""
        lines.append(f"| {row['variant']} | {', '.join(row['methods'])} | "
                     f"{row['agreement']:.2f}% | {_gain(row, baseline, 'agreement')} | "
                     f"{_changes_cell(row['variant'], changes)} |{peer_cell} "
                     f"{_format(row.get('sqnr_db'), 'sqnr_db')} | "
                     f"{_gain(row, baseline, 'sqnr_db')} | {row['delta_top1']:+.2f} |")
    images = measured[0].get("images")
    lines += ["", "Methods: " + method_legend() + ".", "",
              "Agreement: the share of evaluation images whose top-1 class equals the float "
              "Keras model's. " + (f"One image is {100 / images:.2f} points here. " if images
                                   else "")
              + (f"Images won / lost: evaluation images on which the variant agrees with the "
                 f"float model and `{FIDELITY_BASELINE}` does not, and the reverse; *(noise)* "
                 "marks a difference a fair coin would give (a sign test at 95 %: |won − lost| "
                 "≤ 1.96·√(won + lost)). SQNR (the output's signal-to-noise ratio against the "
                 "float model) moves with every image."
                 if baseline else f"Set `convert.variants.{FIDELITY_BASELINE}: true` to see what "
                 "the methods buy against the converter's plain int8.")
              + (" Images won / lost vs peer: the same count against the peer model (for "
                 "example a quantization-aware-trained twin), so *(noise)* there means the "
                 "variant and the peer are not told apart by these images."
                 if peer_changes else ""), ""]
    return lines


def calibration_section(rows: list[dict[str, Any]]) -> list[str]:
    """Why noise-calibrated variants are not representative (with their measured numbers)."""
    noise = [row for row in rows if row.get("calibration_representative") is False]
    if not noise:
        return []
    lines = ["## Calibration: NOT REPRESENTATIVE runs", "",
             "These variants were calibrated on random noise instead of images: " + ", ".join(
                 f"{row['variant']} (top-1 {row['top1']:.2f}%, Δ {row['delta_top1']:+.2f}, "
                 f"agreement {row['agreement']:.2f}%)" for row in noise) + ".", "",
             "Why it collapses: full-integer conversion fixes every activation tensor's int8 "
             "range (scale and zero point) from the minimum and maximum values seen during "
             "calibration. Noise does not produce the activation statistics of real photos: "
             "layers that respond to edges, textures and objects see ranges that are too narrow "
             "(real activations are clipped at the range ends) or too wide (the real values "
             "fall into a few int8 steps), and the errors compound through the network. "
             "The figures above are what a tutorial-style noise calibration costs, not what "
             "int8 can do: calibrate on real images from the calibration split "
             "(`calibration.source: images`).", ""]
    return lines


def layer_errors_section(layer_rows: list[dict[str, str]] | None,
                         rows: list[dict[str, Any]]) -> list[str]:
    """The worst int8 layers of ``reports/layer_errors.csv`` and which ones stay float."""
    if not layer_rows:
        return []
    kept = {name for row in rows for name in row.get("float_layers") or []}
    worst = sorted(layer_rows, key=lambda row: int(row["rank"]))[:WORST_LAYERS_SHOWN]
    lines = ["## int8 layer-wise error (QuantizationDebugger, calibration images)", "",
             f"The {len(worst)} worst of {len(layer_rows)} quantized ops of the `int8` recipe, "
             "by RMSE between the quantized and float op output in units of the output's "
             "quantization step (about 0.29 is pure rounding noise). All rows: "
             "`reports/layer_errors.csv`.", "",
             "| rank | Keras layer | op | RMSE/scale | kept float in int8_selective | "
             "TFLite tensor |", "|---:|---|---|---:|---|---|"]
    for row in worst:
        tensor = row["tensor_name"] if len(row["tensor_name"]) <= 80 else (
            row["tensor_name"][:77] + "...")
        lines.append(f"| {row['rank']} | {row['keras_layer'] or '?'} | {row['op']} | "
                     f"{float(row['rmse_over_scale']):.3f} | "
                     f"{'yes' if row['tensor_name'] in kept else ''} | `{tensor}` |")
    lines.append("")
    return lines


def csv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Rows as CSV with the given columns (missing values empty)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    return buffer.getvalue()


def plot_threads(rows: list[dict[str, Any]]) -> list[str]:
    """The thread counts with a latency column in ``rows``, ascending."""
    return sorted({key.rsplit("_t", 1)[1] for row in rows for key in row
                   if key.startswith("latency_p50_ms_t")}, key=int)


def plot_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The columns of ``reports/plots/variants.csv``."""
    return ["variant", "size_mb", "memory_mib", "top1", "agreement", "latency_p50_ms", "threads",
            *(f"latency_p50_ms_t{threads}" for threads in plot_threads(rows))]


def plot_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Plot data: one point per converted variant and the peer model (size in MB, runtime
    memory in MiB when the benchmark measured it, top-1 and agreement in %, p50 latency in ms
    per thread count, and ``latency_p50_ms`` at ``threads``,
    the smallest thread count measured: what the latency plots show); the float Keras model
    has no file."""
    threads = plot_threads(rows)
    points = []
    for row in rows:
        if row["status"] != "ok" or row["size_bytes"] is None:
            continue
        points.append({"variant": row["variant"], "size_mb": round(row["size_bytes"] / 1e6, 4),
                       "memory_mib": row.get("memory_mib"),
                       "top1": row["top1"], "agreement": row["agreement"],
                       "latency_p50_ms": row.get(f"latency_p50_ms_t{threads[0]}")
                       if threads else None, "threads": int(threads[0]) if threads else None,
                       **{f"latency_p50_ms_t{threads}": row.get(f"latency_p50_ms_t{threads}")
                          for threads in plot_threads(rows)}})
    return points
