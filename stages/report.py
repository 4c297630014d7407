"""Stage ``report``: one table of what each variant costs, as DVC metrics, Markdown, CSV, plots.

Reads every variant's ``data/convert`` and ``data/evaluate`` output (the variants of
``convert.variants``), the benchmark session ``data/benchmark/latency.json``, the float Keras
model's metrics, ``data/fetch/fetch.json``, ``data/export/model.json``, the peer model's
``data/evaluate_peer`` and ``reports/layer_errors.csv``, and writes

* ``reports/metrics.json``: the DVC metrics: the recommended variant's name
  (``recommendation.variant``) and the top-1 of each row (``keras``, then each variant);
* ``reports/variants.json``: every other number, flag and name per row, and the latency session
  (not a DVC metric: it would make ``dvc metrics show`` thousands of characters wide);
* ``reports/summary.md`` opens with the variant to ship within the ``recommend`` budgets of
  ``params.yaml`` (:mod:`litequant.report.recommend`: the figures that qualify it, the
  runner-up, a reason for every other variant) and a compact table ordered by the budgets;
  ``variants.json`` records it under ``recommendation``;
* ``reports/summary.md`` and ``reports/summary.csv``: one row per variant: size, compression vs
  float32, latency p50 per thread count, speed-up vs float32 (same benchmark session only),
  top-1, top-k, Δtop-1 vs the float Keras model, agreement, top-k overlap, KL divergence, SQNR,
  notes (k = min(5, classes - 1));
* ``reports/plots/variants.csv``: the plot data of ``dvc plots show``;
* ``reports/plots/accuracy_vs_size.png``, ``accuracy_vs_latency.png`` and
  ``accuracy_vs_memory.png``: the same figures as static images, the recommended variant ringed
  (:mod:`litequant.report.plots`);
* ``reports/plots/selection_curve.csv`` and ``selection_curve.png``: ``int8_selective``'s
  calibration agreement vs the number of layers kept float (from its ``selection.json``; header
  only / a blank figure when it was not built);
* ``reports/plots/confusion.csv``: ``actual, predicted`` class per evaluation image of ``int8``
  (else the first integer variant), for label spaces of up to 100 classes (header only above),
  and in ``summary.md`` a per-class top-1 table, float model vs each integer variant (from
  ``data/prepare/classes.json``, the evaluation labels and every ``predictions.npy``);
  ``summary.md``'s fidelity section also counts, per integer variant, the evaluation images on
  which it agrees with the float model and ``int8_plain`` does not, and the reverse (from every
  ``predictions.npy``).

Variants calibrated on noise are marked NOT REPRESENTATIVE, and ``summary.md`` explains why their
accuracy collapses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from litequant.core import atomic, layout
from litequant.core.cli import run_stage
from litequant.core.params import RecommendParams, load, section
from litequant.data.labels import PER_CLASS_LIMIT
from litequant.quantize.registry import VARIANTS, ConvertParams, KeptFloat
from litequant.report import recommend
from litequant.report.plots import selection_png, write_figures
from litequant.report.summary import (
    FLOAT_MODEL_ROW,
    PEER_ROW,
    SELECTION_CURVE_COLUMNS,
    build_rows,
    confusion_rows,
    confusion_variant,
    csv_text,
    markdown,
    metrics_document,
    model_records,
    paired_changes,
    plot_columns,
    plot_rows,
    plot_threads,
    table_columns,
    variants_document,
)


def collect(variants: list[str]) -> dict[str, Any]:
    """Every stage output the report reads, keyed as :func:`litequant.report.summary.build_rows`
    wants."""
    collected: dict[str, Any] = {
        "data": layout.read_json(layout.FETCH_INFO, "fetch"),
        "model": layout.read_model_info(layout.MODEL_INFO),
        FLOAT_MODEL_ROW: layout.read_json(layout.KERAS_METRICS, "evaluate_keras"),
    }
    peer = layout.PEER_EVALUATION_DIR / "metrics.json"
    if peer.is_file():
        collected[PEER_ROW] = layout.read_json(peer, "evaluate_peer")
    session = layout.read_json(layout.BENCHMARK_LATENCY, "benchmark")
    collected["latency_session"] = session["session"]
    latency = model_records(session)
    collected["peer_benchmark"] = latency.get(PEER_ROW, {})
    if layout.LAYER_ERRORS_CSV.is_file():
        collected["layer_errors"] = layout.read_layer_errors(layout.LAYER_ERRORS_CSV)
    for variant in variants:
        collected[variant] = {
            "conversion": layout.read_conversion(layout.CONVERT_DIR / variant),
            "evaluation": layout.read_json(layout.EVALUATE_DIR / variant / "metrics.json",
                                           f"evaluate@{variant}"),
            "benchmark": latency.get(variant, {}),
        }
    predictions = evaluated_predictions(variants, collected)
    collected["predictions"] = predictions
    collected["per_class"] = per_class(predictions)
    collected["fidelity_changes"] = paired_changes(predictions)
    collected["peer_changes"] = peer_changes(predictions, collected.get(PEER_ROW, {}))
    collected["selection"] = selection(variants, collected)
    return collected


def selection(variants: list[str], collected: dict[str, Any]) -> dict[str, Any] | None:
    """``int8_selective``'s ``selection.json`` when it was built, else ``None``."""
    variant = next((v for v in variants if isinstance(VARIANTS[v].base, KeptFloat)), None)
    if variant is None or collected[variant]["conversion"]["status"] != "ok":
        return None
    return layout.read_json(layout.selection_file(variant), f"convert@{variant}")


def peer_changes(predictions: dict[str, np.ndarray], peer: dict[str, Any]
                 ) -> dict[str, tuple[int, int]]:
    """Per variant, images won / lost against the peer (:func:`paired_changes`); empty without
    an evaluated peer."""
    if peer.get("status") != "ok":
        return {}
    peer_predictions = layout.load_predictions(layout.PEER_PREDICTIONS, "evaluate_peer")
    return paired_changes({**predictions, PEER_ROW: peer_predictions}, baseline=PEER_ROW)


def evaluated_predictions(variants: list[str], collected: dict[str, Any]
                          ) -> dict[str, np.ndarray]:
    """Top-1 predictions ``int32`` ``(N,)`` of the float Keras model (``keras``) and of every
    variant that evaluated."""
    predictions = {FLOAT_MODEL_ROW: layout.load_predictions(layout.KERAS_PREDICTIONS,
                                                            "evaluate_keras")}
    for variant in variants:
        if collected[variant]["evaluation"].get("status") == "ok":
            predictions[variant] = layout.load_predictions(layout.predictions_file(variant),
                                                           f"evaluate@{variant}")
    return predictions


def per_class(predictions: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """Class names, evaluation labels and every model's top-1 predictions, for label spaces of
    up to :data:`~litequant.data.labels.PER_CLASS_LIMIT` classes (else ``None``)."""
    names = layout.read_json(layout.CLASSES, "prepare")["names"]
    if len(names) > PER_CLASS_LIMIT:
        return None
    return {"names": names, "labels": layout.load_labels(layout.EVALUATION_SPLIT),
            "predictions": predictions, "confusion_variant": confusion_variant(predictions)}


def report(params: ConvertParams, budgets: RecommendParams) -> list[dict[str, Any]]:
    """Write every report file (the recommendation within ``budgets`` first in ``summary.md``);
    returns the table rows."""
    variants = params.built
    collected = collect(variants)
    rows = build_rows(collected, variants)
    answer = recommend.recommend(rows, budgets, collected["predictions"],
                                 recommend.latency_sessions(collected, variants),
                                 collected.get("latency_session"))
    atomic.write_json(layout.METRICS, {"recommendation": recommend.metrics(answer),
                                       **metrics_document(rows)})
    atomic.write_json(layout.VARIANTS_JSON, {"recommendation": recommend.document(answer),
                                             **variants_document(rows, collected)})
    summary = markdown(rows, collected, recommend.opening(answer, rows))
    atomic.write_text(layout.SUMMARY_MD, summary)
    atomic.write_text(layout.SUMMARY_CSV, csv_text(rows, table_columns(rows)))
    points = plot_rows(rows)
    atomic.write_text(layout.VARIANTS_PLOT_CSV, csv_text(points, plot_columns(rows)))
    model, data = collected["model"], collected["data"]
    write_figures(points, plot_threads(rows), collected[FLOAT_MODEL_ROW]["top1"],
                  layout.ACCURACY_VS_SIZE_PNG, layout.ACCURACY_VS_LATENCY_PNG,
                  f"{model['name']} {model['input_size'][0]}x{model['input_size'][1]}, "
                  f"{data['evaluation_images']} images", memory_png=layout.ACCURACY_VS_MEMORY_PNG,
                  highlight=answer.recommended)
    view = collected["per_class"]
    confusion = [] if view is None else confusion_rows(
        view["names"], view["labels"], view["predictions"][view["confusion_variant"]])
    atomic.write_text(layout.CONFUSION_CSV, csv_text(confusion, ["actual", "predicted"]))
    chosen = collected["selection"]
    atomic.write_text(layout.SELECTION_CURVE_CSV, csv_text(
        chosen["curve"] if chosen else [], SELECTION_CURVE_COLUMNS))
    atomic.write_bytes(layout.SELECTION_CURVE_PNG, selection_png(
        chosen, f"int8_selective: layers kept float, {model['name']}"))
    print(summary)
    return rows


def main(argv: list[str] | None = None) -> int:
    def run(args: Any) -> None:
        params = load(args.params)
        report(section(params, ConvertParams, args.params),
               section(params, RecommendParams, args.params))

    return run_stage(__doc__, run, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
